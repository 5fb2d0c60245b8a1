//! The runner of a [`TableProjection`]: batches applied in one transaction with the checkpoint.

use std::sync::Arc;
use std::time::Duration;

use eventstore::{EventStore, LeaderLock, PgEventStore, Position, RecordedEvent};
use sqlx::PgPool;
use tokio::sync::watch;

use crate::filter::Relevance;
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
}

impl Default for RunnerOptions {
    fn default() -> Self {
        Self { batch_size: 500, poll_interval: Duration::from_millis(200), retry_after: Duration::from_millis(500) }
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
    /// A runner of `projection` over `store`; its read model lives in the store's database.
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
        loop {
            let error = match self.run_term().await {
                Ok(never) => match never {},
                Err(e) => e,
            };
            if error.is_permanent() {
                tracing::error!(projection = self.projection.name(), error = %error, "projection halted");
                metrics::gauge!("projection_ready", "projection" => self.projection.name().to_owned()).set(0.0);
                self.status.send_modify(|s| s.state = ProjectionState::Halted(error.to_string()));
                return error;
            }
            tracing::warn!(projection = self.projection.name(), error = %error, "projection runner stopped; starting again");
            self.status.send_modify(|s| s.state = ProjectionState::Starting);
            tokio::time::sleep(self.options.retry_after).await;
        }
    }

    /// Becomes the active runner, then applies until something fails.
    async fn run_term(&self) -> Result<std::convert::Infallible, ProjectionError> {
        let name = self.projection.name();
        let pool = self.store.pool();
        let mut lock = LeaderLock::acquire(pool, &format!("projection:{name}"), self.options.poll_interval).await?;
        sqlx::query(
            "INSERT INTO es.checkpoints (name, transaction_id, global_position) VALUES ($1, 0, 0)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .execute(pool)
        .await?;
        let mut checkpoint = load_checkpoint(pool, name).await?;
        let head_at_start = self.store.head().await?;
        let caught_up = |checkpoint: Option<Position>| checkpoint >= head_at_start;
        self.set_progress(checkpoint, 0, caught_up(checkpoint));
        let mut woken = self.store.appended();
        loop {
            lock.confirm().await?;
            let page = self.store.read_all(checkpoint, self.options.batch_size).await?;
            let Some(last) = page.last().map(|e| e.position) else {
                self.set_progress(checkpoint, 0, true);
                let _ = tokio::time::timeout(self.options.poll_interval, woken.changed()).await;
                continue;
            };
            let (handled, through, unknown) = self.sort_page(page, last);
            let applied = handled.len() as u64;
            if through != checkpoint {
                self.commit(&handled, checkpoint, through).await?;
                checkpoint = through;
            }
            self.set_progress(checkpoint, applied, caught_up(checkpoint));
            if let Some(error) = unknown {
                return Err(error);
            }
        }
    }

    /// The handled events of a page, the position they are applied through (the page's last event, or the
    /// one before the first event of unknown type), and that unknown event's error.
    fn sort_page(
        &self,
        page: Vec<RecordedEvent>,
        last: Position,
    ) -> (Vec<RecordedEvent>, Option<Position>, Option<ProjectionError>) {
        let filter = self.projection.filter();
        let mut handled = Vec::new();
        let mut before = None;
        for event in page {
            match filter.relevance(&event) {
                Relevance::Elsewhere => {}
                Relevance::Handled => handled.push(event.clone()),
                Relevance::Unknown => {
                    let error = ProjectionError::UnknownEventType {
                        projection: self.projection.name().to_owned(),
                        event_type: event.event_type.clone(),
                        position: event.position,
                    };
                    return (handled, before, Some(error));
                }
            }
            before = Some(event.position);
        }
        (handled, Some(last), None)
    }

    /// Applies `events` and moves the checkpoint from `from` to `to`, in one transaction. The checkpoint
    /// moves only if it still is `from`: otherwise another runner got there, and nothing is written.
    async fn commit(
        &self,
        events: &[RecordedEvent],
        from: Option<Position>,
        to: Option<Position>,
    ) -> Result<(), ProjectionError> {
        let name = self.projection.name();
        let mut tx = self.store.pool().begin().await?;
        if !events.is_empty() {
            self.projection.apply(&mut tx, events).await?;
        }
        let (from_tx, from_gp) = columns(from);
        let (to_tx, to_gp) = columns(to);
        let moved = sqlx::query(
            "UPDATE es.checkpoints SET transaction_id = $4, global_position = $5, updated_at = now()
              WHERE name = $1 AND transaction_id = $2 AND global_position = $3",
        )
        .bind(name)
        .bind(from_tx)
        .bind(from_gp)
        .bind(to_tx)
        .bind(to_gp)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if moved != 1 {
            return Err(ProjectionError::CheckpointMoved(name.to_owned()));
        }
        tx.commit().await?;
        Ok(())
    }

    fn set_progress(&self, checkpoint: Option<Position>, applied: u64, caught_up: bool) {
        let name = self.projection.name().to_owned();
        metrics::counter!("projection_events_applied_total", "projection" => name.clone()).increment(applied);
        metrics::gauge!("projection_ready", "projection" => name).set(if caught_up { 1.0 } else { 0.0 });
        self.status.send_modify(|s| {
            s.checkpoint = checkpoint;
            s.applied += applied;
            s.state = if caught_up { ProjectionState::Live } else { ProjectionState::CatchingUp };
        });
    }
}

/// The stored checkpoint of `name`: the position it handled last (`None`: nothing yet).
pub async fn load_checkpoint(pool: &PgPool, name: &str) -> Result<Option<Position>, ProjectionError> {
    let row: Option<(i64, i64)> =
        sqlx::query_as("SELECT transaction_id, global_position FROM es.checkpoints WHERE name = $1")
            .bind(name)
            .fetch_optional(pool)
            .await?;
    Ok(row
        .filter(|&(tx, gp)| (tx, gp) != (0, 0))
        .map(|(tx, gp)| Position { transaction_id: tx as u64, global_position: gp as u64 }))
}

/// The checkpoint's columns; `(0, 0)` stands for "nothing yet".
fn columns(position: Option<Position>) -> (i64, i64) {
    position.map_or((0, 0), |p| {
        (i64::try_from(p.transaction_id).unwrap_or(i64::MAX), i64::try_from(p.global_position).unwrap_or(i64::MAX))
    })
}
