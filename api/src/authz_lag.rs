//! Fail closed when the authorization model falls behind: a revocation committed to the store but not yet
//! applied here must not keep working for long. A watcher compares the store's head with the model's
//! checkpoint once per interval; once the model has been behind for longer than the bound, every request
//! is refused (503) and `/ready` says why, until it catches up.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use eventstore::EventStore;
use projections::ProjectionStatus;
use tokio::sync::watch;

/// How often the watcher looks.
const INTERVAL: Duration = Duration::from_millis(250);

/// Milliseconds the model has been behind the store's head (0: caught up), shared with the requests.
#[derive(Debug, Clone, Default)]
pub struct AuthzLag {
    behind_ms: Arc<AtomicU64>,
    bound: Duration,
}

impl AuthzLag {
    /// A lag watch refusing requests after `bound`.
    pub fn new(bound: Duration) -> Self {
        Self { behind_ms: Arc::default(), bound }
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
    pub async fn watch(self, store: std::sync::Arc<dyn EventStore>, status: watch::Receiver<ProjectionStatus>) {
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
            self.behind_ms.store(ms, Ordering::Relaxed);
        }
    }
}
