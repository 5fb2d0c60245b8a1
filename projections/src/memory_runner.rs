//! The runner of a [`MemoryProjection`]: rebuilt at start (from its last snapshot when it has one, else
//! from the whole store), then live.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use eventstore::{EventFeed, EventStore, Position, RecordedEvent, Subscription, SubscriptionOptions};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::filter::Relevance;
use crate::snapshot::{Anchor, Snapshot, SnapshotPolicy, anchored};
use crate::{MemoryProjection, ProjectionError, ProjectionState, ProjectionStatus};

/// Makes the runner's feed: `$all` after the position given (`None`: from the start).
pub type FeedFrom = Box<dyn FnOnce(Option<Position>) -> Box<dyn EventFeed> + Send>;

/// Events between progress reports while rebuilding.
const STATUS_EVERY: u64 = 4096;

/// Pause after a failed read before reading again.
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// Runs one in-memory projection. Readers take [`MemoryRunner::model`]'s read lock.
pub struct MemoryRunner<P: MemoryProjection> {
    store: Arc<dyn EventStore>,
    model: Arc<RwLock<P>>,
    feed_from: FeedFrom,
    status: watch::Sender<ProjectionStatus>,
    snapshots: Option<SnapshotPolicy>,
}

impl<P: MemoryProjection> MemoryRunner<P> {
    /// A runner folding `store` into `projection` (normally empty: it is rebuilt from the start).
    pub fn new(store: Arc<dyn EventStore>, projection: P, options: SubscriptionOptions) -> Self {
        let source = store.clone();
        let feed_from: FeedFrom =
            Box::new(move |from| Box::new(Subscription::new(source, from, options)) as Box<dyn EventFeed>);
        Self::with_feed(store, projection, feed_from)
    }

    /// A runner folding what `feed_from` delivers into `projection`; the feed it makes must deliver `$all`
    /// after the position it is given (e.g. `eventstore::relay::NatsSubscription`: the past from the
    /// store, then NATS).
    pub fn with_feed(store: Arc<dyn EventStore>, projection: P, feed_from: FeedFrom) -> Self {
        let (status, _) = watch::channel(ProjectionStatus::new(projection.name()));
        Self { store, model: Arc::new(RwLock::new(projection)), feed_from, status, snapshots: None }
    }

    /// Starts from the last snapshot that matches the log, and takes snapshots as `policy` says.
    pub fn with_snapshots(mut self, policy: SnapshotPolicy) -> Self {
        self.snapshots = Some(policy);
        self
    }

    /// The read model.
    pub fn model(&self) -> Arc<RwLock<P>> {
        self.model.clone()
    }

    /// Follows the runner's state: ready once caught up with the head seen at start.
    pub fn status(&self) -> watch::Receiver<ProjectionStatus> {
        self.status.subscribe()
    }

    /// Rebuilds, then follows, until the future is dropped or the projection halts (returned, and
    /// reported as [`ProjectionState::Halted`]).
    pub async fn run(self) -> ProjectionError {
        let Self { store, model, feed_from, status, snapshots } = self;
        let name = status.borrow().name.clone();
        let start = match &snapshots {
            Some(policy) => restore(&*store, &*model, &name, policy).await,
            None => None,
        };
        let halt = |error: ProjectionError| {
            status.send_modify(|s| s.halt(&error));
            error
        };
        let mut feed = feed_from(start);
        let head = loop {
            match store.committed_head().await {
                Ok(head) => break head,
                Err(e) => {
                    tracing::warn!(error = %e, "memory projection cannot read the head yet");
                    tokio::time::sleep(RETRY_AFTER).await;
                }
            }
        };
        let mut live = head.is_none() || start >= head;
        status.send_modify(|s| {
            s.checkpoint = start;
            s.state = if live { ProjectionState::Live } else { ProjectionState::CatchingUp };
        });
        let (mut pending, mut counted) = (0u64, 0u64);
        let mut snapshotter = Snapshotter::default();
        // The filter does not change: deciding relevance needs no lock, so the events the model does
        // not handle (most of them: recorded tool calls) never take the write lock readers wait on.
        let filter = model.read().unwrap_or_else(|poisoned| poisoned.into_inner()).filter().clone();
        loop {
            let event = match feed.next().await {
                Ok(event) => event,
                Err(e) => {
                    tracing::warn!(error = %e, "memory projection read failed; reading again");
                    tokio::time::sleep(RETRY_AFTER).await;
                    continue;
                }
            };
            let applied = match filter.relevance(&event) {
                Relevance::Elsewhere => false,
                Relevance::Handled => {
                    let mut model = model.write().unwrap_or_else(|poisoned| poisoned.into_inner());
                    if let Err(error) = model.apply(&event) {
                        drop(model);
                        return halt(error);
                    }
                    true
                }
                Relevance::Unknown => {
                    let error = ProjectionError::UnknownEventType {
                        projection: name.clone(),
                        event_type: event.event_type.clone(),
                        position: event.position,
                    };
                    return halt(error);
                }
            };
            // While rebuilding, report progress every so often rather than per event (each report wakes
            // the watchers); once live, every event.
            pending += u64::from(applied);
            let caught_up = Some(event.position) >= head;
            live |= caught_up;
            counted += 1;
            if live || counted.is_multiple_of(STATUS_EVERY) {
                status.send_modify(|s| {
                    s.checkpoint = Some(event.position);
                    s.applied += pending;
                    if live {
                        s.state = ProjectionState::Live;
                    }
                });
                pending = 0;
            }
            if let Some(policy) = &snapshots {
                snapshotter.after(&event, live, policy, &model);
            }
        }
    }
}

/// Loads `model`'s snapshot when `policy` has one that the log matches: the position to follow
/// from (`None`: from the start, the model untouched).
async fn restore<P: MemoryProjection>(
    store: &dyn EventStore,
    model: &RwLock<P>,
    name: &str,
    policy: &SnapshotPolicy,
) -> Option<Position> {
    let began = Instant::now();
    let snapshot = match policy.tables.load(name, &policy.format).await {
        Ok(Some(snapshot)) => snapshot,
        Ok(None) => return None,
        Err(error) => {
            tracing::warn!(projection = %name, %error, "the snapshot cannot be read; replaying from the start");
            return None;
        }
    };
    if let Err(reason) = anchored(store, &snapshot.anchor).await {
        tracing::warn!(projection = %name, %reason, "the snapshot does not match the log; replaying from the start");
        return None;
    }
    let loaded = model.write().unwrap_or_else(|poisoned| poisoned.into_inner()).load_state(&snapshot.body);
    if let Err(error) = loaded {
        tracing::warn!(projection = %name, %error, "the snapshot cannot be loaded; replaying from the start");
        return None;
    }
    tracing::info!(
        projection = %name,
        after = %snapshot.anchor.position,
        taken_at = %snapshot.taken_at,
        bytes = snapshot.body.len(),
        elapsed_ms = began.elapsed().as_millis() as u64,
        "loaded the snapshot; replaying the events after it"
    );
    Some(snapshot.anchor.position)
}

/// When the runner last took a snapshot, and the one being saved.
#[derive(Default)]
struct Snapshotter {
    /// Events read since the last snapshot (or since start).
    since: u64,
    last: Option<Instant>,
    saving: Option<JoinHandle<()>>,
    /// The model said it takes no snapshots: none is tried again.
    unsupported: bool,
}

impl Snapshotter {
    /// Counts `event`, and takes a snapshot after it when the model is `live` (a replay at start takes
    /// its snapshot once caught up), `policy` says one is due and the last one is saved. The body is
    /// written under the model's read lock (readers go on; the next event waits), saved in the background.
    fn after<P: MemoryProjection>(
        &mut self,
        event: &RecordedEvent,
        live: bool,
        policy: &SnapshotPolicy,
        model: &RwLock<P>,
    ) {
        self.since += 1;
        let due = live
            && !self.unsupported
            && self.since >= policy.every_events.max(1)
            && self.last.is_none_or(|last| last.elapsed() >= policy.min_interval)
            && self.saving.as_ref().is_none_or(JoinHandle::is_finished);
        if !due {
            return;
        }
        let (name, body) = {
            let model = model.read().unwrap_or_else(|poisoned| poisoned.into_inner());
            (model.name().to_owned(), model.save_state())
        };
        self.since = 0;
        self.last = Some(Instant::now());
        let body = match body {
            Some(Ok(body)) => body,
            Some(Err(error)) => {
                tracing::warn!(projection = %name, %error, "the snapshot could not be written");
                return;
            }
            None => {
                self.unsupported = true;
                return;
            }
        };
        let snapshot = Snapshot {
            name,
            format: policy.format.clone(),
            anchor: Anchor::of(event),
            body,
            taken_at: chrono::Utc::now(),
        };
        let tables = policy.tables.clone();
        self.saving = Some(tokio::spawn(async move {
            match tables.save(&snapshot).await {
                Ok(()) => tracing::info!(
                    projection = %snapshot.name,
                    after = %snapshot.anchor.position,
                    bytes = snapshot.body.len(),
                    "saved a snapshot"
                ),
                Err(error) => tracing::warn!(projection = %snapshot.name, %error, "the snapshot could not be saved"),
            }
        }));
    }
}

/// `model` with every event of `store` up to its committed head applied, once, without following: for
/// tools that read a model offline (the command line's listings).
pub async fn replay_once<P: MemoryProjection>(store: &dyn EventStore, mut model: P) -> Result<P, ProjectionError> {
    let Some(head) = store.committed_head().await? else {
        return Ok(model);
    };
    let mut after = None;
    loop {
        let page = store.read_all(after, 1_000).await?;
        let Some(last) = page.last() else {
            return Ok(model);
        };
        after = Some(last.position);
        for event in page.iter().take_while(|e| e.position <= head) {
            match model.filter().relevance(event) {
                Relevance::Elsewhere => {}
                Relevance::Handled => model.apply(event)?,
                Relevance::Unknown => {
                    return Err(ProjectionError::UnknownEventType {
                        projection: model.name().to_owned(),
                        event_type: event.event_type.clone(),
                        position: event.position,
                    });
                }
            }
        }
        if last.position >= head {
            return Ok(model);
        }
    }
}
