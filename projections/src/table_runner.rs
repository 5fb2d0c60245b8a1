//! The runner of a [`TableProjection`]: batches applied in one transaction with the checkpoint.

use std::sync::Arc;
use std::time::{Duration, Instant};

use eventstore::{EventStore, LockCandidate, PgEventStore, Position, RecordedEvent};
use sqlx::PgPool;
use tokio::sync::watch;

use crate::filter::Relevance;
use crate::rebuild::rebuild;
use crate::target::{self, Target, check_name};
use crate::{ProjectionError, ProjectionState, ProjectionStatus, TableProjection};

/// How a runner reads and waits.
#[derive(Debug, Clone, Copy)]
pub struct RunnerOptions {
    /// Events read per page; the handled ones among them are applied in one transaction.
    pub batch_size: usize,
    /// How long to wait for an in-process append before polling the store, and between tries for the
    /// leader lock.
    pub poll_interval: Duration,
    /// Pause after a failure that running again may fix (database down, another runner).
    pub retry_after: Duration,
    /// The least time between two reads while following live appends: a batch per interval's worth of
    /// appends rather than a batch (five statements and a commit) per wake-up. See
    /// [`eventstore::SubscriptionOptions::min_read_interval`].
    pub min_read_interval: Duration,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        Self {
            batch_size: 500,
            poll_interval: Duration::from_millis(200),
            retry_after: Duration::from_millis(500),
            min_read_interval: Duration::from_millis(2),
        }
    }
}

/// Runs one table projection. See the [crate docs](crate).
pub struct TableRunner {
    store: PgEventStore,
    projection: Arc<dyn TableProjection>,
    options: RunnerOptions,
    status: watch::Sender<ProjectionStatus>,
}

impl TableRunner {
    /// A runner of `projection` over `store`; its read model lives in the store's database, in the schema
    /// [`schema_of`](crate::schema_of) its name.
    pub fn new(store: PgEventStore, projection: Arc<dyn TableProjection>, options: RunnerOptions) -> Self {
        let (status, _) = watch::channel(ProjectionStatus::new(projection.name()));
        Self { store, projection, options, status }
    }

    /// Follows the runner's state (readiness for health checks, progress).
    pub fn status(&self) -> watch::Receiver<ProjectionStatus> {
        self.status.subscribe()
    }

    /// Runs until the future is dropped, or until an error that running again cannot fix (returned, and
    /// reported as [`ProjectionState::Halted`]).
    pub async fn run(self) -> ProjectionError {
        run_until_halted(self.projection.name(), &self.status, self.options.retry_after, || self.run_term()).await
    }

    /// Becomes the active runner, rebuilds if the projection's version changed, then applies until
    /// something fails.
    async fn run_term(&self) -> Result<std::convert::Infallible, ProjectionError> {
        let projection = self.projection.as_ref();
        let name = projection.name();
        check_name(name)?;
        let pool = self.store.pool();
        let live = Target::live(name);
        let mut candidate = LockCandidate::connect(pool, &format!("projection:{name}")).await?;
        let mut head_before = None;
        let mut lock = loop {
            match candidate.try_acquire().await? {
                Ok(lock) => break lock,
                Err(waiting) => candidate = waiting,
            }
            head_before = self.report_standby(head_before).await;
            tokio::time::sleep(self.options.poll_interval).await;
        };
        target::ensure(pool, projection, &live).await?;
        let mut checkpoint = read_checkpoint(pool, &live).await?;
        if checkpoint.version != i32::try_from(projection.version()).unwrap_or(i32::MAX) {
            tracing::info!(projection = name, from = checkpoint.version, to = projection.version(), "rebuilding");
            rebuild(&self.store, projection, self.options).await?;
            checkpoint = read_checkpoint(pool, &live).await?;
        }
        let head_at_start = self.store.committed_head().await?;
        let caught_up = |position: Option<Position>| position >= head_at_start;
        self.set_progress(checkpoint.position, 0, caught_up(checkpoint.position));
        let mut woken = self.store.appended();
        let mut confirmed = Instant::now();
        let mut last_read: Option<Instant> = None;
        let mut wait = eventstore::FollowWait::new(self.options.poll_interval);
        loop {
            // The lock's connection is checked once per poll interval, not per batch: a deposed runner's
            // batch cannot land anyway, since it moves the checkpoint only from where it read it.
            if confirmed.elapsed() >= self.options.poll_interval {
                lock.confirm().await?;
                confirmed = Instant::now();
            }
            if let Some(wait) = last_read.and_then(|at| self.options.min_read_interval.checked_sub(at.elapsed())) {
                tokio::time::sleep(wait).await;
            }
            let page = self.store.read_all_following(checkpoint.position, self.options.batch_size).await?;
            // A full page means catching up: the next read follows at once.
            last_read = (page.len() < self.options.batch_size).then(Instant::now);
            if page.is_empty() {
                self.set_progress(checkpoint.position, 0, true);
                metrics::gauge!("mgw_projection_lag_seconds", "projection" => name.to_owned()).set(0.0);
                let woke = tokio::time::timeout(wait.next(), woken.changed()).await.is_ok_and(|r| r.is_ok());
                wait.waited(woke);
                continue;
            }
            wait.found();
            let written_at = page.last().map(|e| e.metadata.occurred_at);
            let (handled, through, unknown) = split_page(projection.filter(), name, checkpoint.position, page);
            if through != checkpoint.position {
                let mut tx = pool.begin().await?;
                match target::apply_batch(&mut tx, projection, &live, &handled, &checkpoint, through).await {
                    Ok(()) => tx.commit().await?,
                    // A rebuild swapped a new model in (or an old runner was deposed): nothing of this batch
                    // was written. Carry on from the new checkpoint, still the leader and still ready.
                    Err(ProjectionError::CheckpointMoved(_)) => {
                        drop(tx);
                        checkpoint = read_checkpoint(pool, &live).await?;
                        continue;
                    }
                    Err(e) => return Err(e),
                }
                checkpoint.position = through;
            }
            // Not ready while an event it cannot apply is waiting, even when that event is the head.
            let ready = unknown.is_none() && caught_up(checkpoint.position);
            self.set_progress(checkpoint.position, handled.len() as u64, ready);
            if let Some(written_at) = written_at {
                // How far behind the newest event read was written: the projection's lag, in time.
                let lag = (chrono::Utc::now() - written_at).num_milliseconds().max(0) as f64 / 1000.0;
                metrics::gauge!("mgw_projection_lag_seconds", "projection" => name.to_owned()).set(lag);
            }
            if let Some(error) = unknown {
                return Err(error);
            }
        }
    }

    /// While another process runs the projection: reports whether the shared model has reached
    /// `head_before` (the head at the previous look), and returns the head now.
    async fn report_standby(&self, head_before: Option<Option<Position>>) -> Option<Option<Position>> {
        let name = self.projection.name();
        let looked = async {
            let checkpoint = load_checkpoint(self.store.pool(), name).await?;
            let head = self.store.committed_head().await?;
            Ok::<_, ProjectionError>((checkpoint, head))
        };
        let (current, head) = match looked.await {
            Ok((checkpoint, head)) => (head_before.is_some_and(|before| checkpoint >= before), Some(head)),
            Err(error) => {
                tracing::debug!(projection = name, %error, "standby cannot read the shared model's progress");
                (false, None)
            }
        };
        metrics::gauge!("mgw_projection_ready", "projection" => name.to_owned()).set(if current { 1.0 } else { 0.0 });
        self.status.send_modify(|s| s.state = ProjectionState::Standby { current });
        head
    }

    fn set_progress(&self, checkpoint: Option<Position>, applied: u64, caught_up: bool) {
        report_progress(self.projection.name(), &self.status, checkpoint, applied, caught_up);
    }
}

/// Runs `term` again after every error running again may fix (after `retry_after`), until one it cannot
/// (returned, and reported as [`ProjectionState::Halted`]): the life of every table runner.
pub(crate) async fn run_until_halted<F, Fut>(
    name: &str,
    status: &watch::Sender<ProjectionStatus>,
    retry_after: std::time::Duration,
    mut term: F,
) -> ProjectionError
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<std::convert::Infallible, ProjectionError>>,
{
    let mut backoff = retry_after;
    loop {
        let started = std::time::Instant::now();
        let error = match term().await {
            Ok(never) => match never {},
            Err(e) => e,
        };
        if error.is_permanent() {
            status.send_modify(|s| s.halt(&error));
            return error;
        }
        // A term that ran a while was healthy: the next failure starts the backoff afresh.
        if started.elapsed() > MAX_BACKOFF {
            backoff = retry_after;
        }
        tracing::warn!(projection = name, error = %error, retry_in_ms = backoff.as_millis() as u64, "projection runner stopped; starting again");
        metrics::counter!("mgw_projection_restarts_total", "projection" => name.to_owned()).increment(1);
        status.send_modify(|s| {
            s.state = ProjectionState::Starting;
            s.last_error = Some(error.to_string());
        });
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF.max(retry_after));
    }
}

/// The longest wait between two attempts of a runner whose database keeps failing.
const MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(15);

/// Reports a runner's progress: its status for `/ready`, and the metrics.
pub(crate) fn report_progress(
    name: &str,
    status: &watch::Sender<ProjectionStatus>,
    checkpoint: Option<Position>,
    applied: u64,
    caught_up: bool,
) {
    metrics::counter!("mgw_projection_events_applied_total", "projection" => name.to_owned()).increment(applied);
    metrics::gauge!("mgw_projection_ready", "projection" => name.to_owned()).set(if caught_up { 1.0 } else { 0.0 });
    status.send_modify(|s| {
        s.checkpoint = checkpoint;
        s.applied += applied;
        s.last_error = None;
        s.state = if caught_up { ProjectionState::Live } else { ProjectionState::CatchingUp };
    });
}

async fn read_checkpoint(pool: &PgPool, target: &Target) -> Result<target::Checkpoint, ProjectionError> {
    let mut conn = pool.acquire().await?;
    target::checkpoint(&mut conn, &target.checkpoint, false)
        .await?
        .ok_or_else(|| ProjectionError::CheckpointMoved(target.checkpoint.clone()))
}

/// The handled events of a page read after `start`, the position they are applied through (the page's
/// last event, or the one before the first event of unknown type: `start` if that is the first), and
/// that unknown event's error.
pub(crate) fn split_page(
    filter: &crate::EventFilter,
    name: &str,
    start: Option<Position>,
    page: Vec<RecordedEvent>,
) -> (Vec<RecordedEvent>, Option<Position>, Option<ProjectionError>) {
    let mut handled = Vec::new();
    let mut through = start;
    for event in page {
        let position = event.position;
        match filter.relevance(&event) {
            Relevance::Elsewhere => {}
            Relevance::Handled => handled.push(event),
            Relevance::Unknown => {
                let error = ProjectionError::UnknownEventType {
                    projection: name.to_owned(),
                    event_type: event.event_type.clone(),
                    position: event.position,
                };
                return (handled, through, Some(error));
            }
        }
        through = Some(position);
    }
    (handled, through, None)
}

/// The stored checkpoint of the live read model of `name`: the position it handled last (`None`: nothing
/// yet, or no such projection).
pub async fn load_checkpoint(pool: &PgPool, name: &str) -> Result<Option<Position>, ProjectionError> {
    let mut conn = pool.acquire().await?;
    Ok(target::checkpoint(&mut conn, name, false).await?.and_then(|c| c.position))
}
