//! Waiting for asynchronous effects by polling with a deadline.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// How often a condition is polled.
const POLL_EVERY: Duration = Duration::from_millis(10);

/// Polls `check` until it returns `Some`, or panics naming `what` after `deadline`.
#[track_caller]
pub fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> impl Future<Output = T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let caller = std::panic::Location::caller();
    let what = what.to_owned();
    async move {
        let until = Instant::now() + deadline;
        loop {
            if let Some(value) = check().await {
                return value;
            }
            assert!(Instant::now() < until, "{caller}: timed out after {deadline:?} waiting for {what}");
            tokio::time::sleep(POLL_EVERY).await;
        }
    }
}

/// Polls `attempt` until it succeeds, or returns its last error after `deadline`.
pub async fn eventually_ok<T, E, F, Fut>(deadline: Duration, mut attempt: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let until = Instant::now() + deadline;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(e) if Instant::now() >= until => return Err(e),
            Err(_) => tokio::time::sleep(POLL_EVERY).await,
        }
    }
}
