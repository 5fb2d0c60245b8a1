//! Fail closed when the authorization model falls behind: a revocation committed to the store but not yet
//! applied here must not keep working for long. A watcher compares the store's head with the model's
//! checkpoint once per interval; once the model has been behind for longer than the bound, a request is
//! refused (503) when it depends on a change not yet applied: the watcher reads which streams the
//! committed but unapplied events belong to, and a request whose principal, key or session is among them
//! is refused; the others are decided on facts that have not changed. When those streams cannot be read
//! (or are too many to hold), every request is refused, as before.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use eventstore::EventStore;
use projections::ProjectionStatus;
use tokio::sync::watch;

/// How often the watcher looks.
const INTERVAL: Duration = Duration::from_millis(250);

/// Most streams of pending events held; past it, every request is refused while the lag lasts.
const MAX_PENDING_STREAMS: usize = 10_000;

/// Milliseconds the model has been behind the store's head (0: caught up), and the streams of the events
/// committed but not applied yet (`None`: not known), shared with the requests.
#[derive(Debug, Clone, Default)]
pub struct AuthzLag {
    behind_ms: Arc<AtomicU64>,
    pending: Arc<RwLock<Option<HashSet<String>>>>,
    bound: Duration,
}

impl AuthzLag {
    /// A lag watch refusing requests after `bound`.
    pub fn new(bound: Duration) -> Self {
        Self { behind_ms: Arc::default(), pending: Arc::default(), bound }
    }

    /// Whether a request touching `streams` must be refused: the lag exceeds the bound and one of them
    /// has a change not yet applied (or which ones have is not known). The lag, when so.
    pub fn refuses(&self, streams: &[String]) -> Option<Duration> {
        let behind = self.exceeded()?;
        let pending = self.pending.read().ok()?;
        match pending.as_ref() {
            Some(pending) if streams.iter().all(|s| !pending.contains(s)) => None,
            _ => Some(behind),
        }
    }

    /// How long the model has been behind, when that is longer than the bound.
    pub fn exceeded(&self) -> Option<Duration> {
        let behind = Duration::from_millis(self.behind_ms.load(Ordering::Relaxed));
        (behind > self.bound).then_some(behind)
    }

    /// The bound.
    pub fn bound(&self) -> Duration {
        self.bound
    }

    /// Watches `status` against `store`'s head until the process ends.
    ///
    /// The lag is the age of the oldest head the model has not reached yet: under a steady stream of
    /// appends the model is always a little behind the newest head, but it keeps passing the heads seen
    /// a moment ago, and that is not lagging.
    pub async fn watch(
        self,
        store: std::sync::Arc<dyn EventStore>,
        tables: crate::tables::Tables,
        status: watch::Receiver<ProjectionStatus>,
    ) {
        let mut waiting: Option<(eventstore::Position, Instant)> = None;
        // Kept apart: nothing the model does can show it caught up with a store it cannot reach.
        let mut unreachable_since: Option<Instant> = None;
        loop {
            tokio::time::sleep(INTERVAL).await;
            let checkpoint = status.borrow().checkpoint;
            if waiting.is_some_and(|(head, _)| Some(head) <= checkpoint) {
                waiting = None;
            }
            match store.committed_head().await {
                Ok(head) => {
                    unreachable_since = None;
                    if head <= checkpoint {
                        // Caught up with everything committed (an empty store included).
                        waiting = None;
                    } else if waiting.is_none()
                        && let Some(head) = head
                    {
                        waiting = Some((head, Instant::now()));
                    }
                }
                Err(_) => unreachable_since = unreachable_since.or(Some(Instant::now())),
            }
            let oldest = [waiting.map(|(_, since)| since), unreachable_since].into_iter().flatten().min();
            let ms = oldest.map_or(0, |since| since.elapsed().as_millis() as u64);
            let pending = match oldest {
                None => Some(HashSet::new()),
                Some(_) => pending_streams(&tables, checkpoint).await,
            };
            if let Ok(mut held) = self.pending.write() {
                *held = pending;
            }
            self.behind_ms.store(ms, Ordering::Relaxed);
        }
    }
}

/// The streams of the events committed after `checkpoint`, whether readers of `$all` may see them yet or
/// not; `None` when they cannot be read or are too many.
async fn pending_streams(
    tables: &crate::tables::Tables,
    checkpoint: Option<eventstore::Position>,
) -> Option<HashSet<String>> {
    let (tx, gp) = checkpoint.map_or((0, 0), |p| (p.transaction_id as i64, p.global_position as i64));
    let limit = MAX_PENDING_STREAMS as i64 + 1;
    let streams: Vec<String> = match tables {
        crate::tables::Tables::Postgres(pool) => sqlx::query_scalar(
            "SELECT DISTINCT stream_id FROM es.events
              WHERE (transaction_id, global_position) > ($1::bigint::text::xid8, $2) LIMIT $3",
        )
        .bind(tx)
        .bind(gp)
        .bind(limit)
        .fetch_all(pool)
        .await
        .ok()?,
        crate::tables::Tables::Sqlite(pool) => {
            sqlx::query_scalar("SELECT DISTINCT stream_id FROM events WHERE global_position > ? LIMIT ?")
                .bind(gp)
                .bind(limit)
                .fetch_all(pool)
                .await
                .ok()?
        }
    };
    (streams.len() <= MAX_PENDING_STREAMS).then(|| streams.into_iter().collect())
}

/// How long a command waits for this instance's authorization model to apply its own change, so that the
/// caller's next request is decided with it.
pub(crate) const AUTHZ_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Waits, bounded, until this instance's authorization model has applied `position`.
pub(crate) async fn applied(state: &crate::state::AppState, position: eventstore::Position) {
    let mut status = state.authz_status.clone();
    let reached = tokio::time::timeout(AUTHZ_WAIT, async {
        loop {
            if status.borrow_and_update().checkpoint >= Some(position) {
                return;
            }
            if status.changed().await.is_err() {
                return;
            }
        }
    })
    .await;
    if reached.is_err() {
        tracing::warn!(%position, "the authorization model has not applied a change yet");
    }
}
