//! The runner of a [`MemoryProjection`]: rebuilt from the whole store at start, then live.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use eventstore::{EventFeed, EventStore, Subscription, SubscriptionOptions};
use tokio::sync::watch;

use crate::filter::Relevance;
use crate::{MemoryProjection, ProjectionError, ProjectionState, ProjectionStatus};

/// Events between progress reports while rebuilding.
const STATUS_EVERY: u64 = 4096;

/// Pause after a failed read before reading again.
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// Runs one in-memory projection. Readers take [`MemoryRunner::model`]'s read lock.
pub struct MemoryRunner<P: MemoryProjection> {
    store: Arc<dyn EventStore>,
    model: Arc<RwLock<P>>,
    feed: Box<dyn EventFeed>,
    status: watch::Sender<ProjectionStatus>,
}

impl<P: MemoryProjection> MemoryRunner<P> {
    /// A runner folding `store` into `projection` (normally empty: it is rebuilt from the start).
    pub fn new(store: Arc<dyn EventStore>, projection: P, options: SubscriptionOptions) -> Self {
        let feed = Box::new(Subscription::new(store.clone(), None, options));
        Self::with_feed(store, projection, feed)
    }

    /// A runner folding what `feed` delivers into `projection`; `feed` must start at the beginning of
    /// `$all` (e.g. `eventstore::relay::NatsSubscription` from `None`: the past from the store, then NATS).
    pub fn with_feed(store: Arc<dyn EventStore>, projection: P, feed: Box<dyn EventFeed>) -> Self {
        let (status, _) = watch::channel(ProjectionStatus::new(projection.name()));
        Self { store, model: Arc::new(RwLock::new(projection)), feed, status }
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
    pub async fn run(mut self) -> ProjectionError {
        let head = loop {
            match self.store.committed_head().await {
                Ok(head) => break head,
                Err(e) => {
                    tracing::warn!(error = %e, "memory projection cannot read the head yet");
                    tokio::time::sleep(RETRY_AFTER).await;
                }
            }
        };
        let mut live = head.is_none();
        self.status.send_modify(|s| s.state = if live { ProjectionState::Live } else { ProjectionState::CatchingUp });
        let name = self.status.borrow().name.clone();
        let (mut pending, mut counted) = (0u64, 0u64);
        // The filter does not change: deciding relevance needs no lock, so the events the model does
        // not handle (most of them: recorded tool calls) never take the write lock readers wait on.
        let filter = self.model.read().unwrap_or_else(|poisoned| poisoned.into_inner()).filter().clone();
        loop {
            let event = match self.feed.next().await {
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
                    let mut model = self.model.write().unwrap_or_else(|poisoned| poisoned.into_inner());
                    if let Err(error) = model.apply(&event) {
                        drop(model);
                        return self.halt(error);
                    }
                    true
                }
                Relevance::Unknown => {
                    let error = ProjectionError::UnknownEventType {
                        projection: name.clone(),
                        event_type: event.event_type.clone(),
                        position: event.position,
                    };
                    return self.halt(error);
                }
            };
            // While rebuilding, report progress every so often rather than per event (each report wakes
            // the watchers); once live, every event.
            pending += u64::from(applied);
            let caught_up = Some(event.position) >= head;
            live |= caught_up;
            counted += 1;
            if live || counted.is_multiple_of(STATUS_EVERY) {
                self.status.send_modify(|s| {
                    s.checkpoint = Some(event.position);
                    s.applied += pending;
                    if live {
                        s.state = ProjectionState::Live;
                    }
                });
                pending = 0;
            }
        }
    }

    fn halt(&self, error: ProjectionError) -> ProjectionError {
        self.status.send_modify(|s| s.halt(&error));
        error
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
