//! How a follower of `$all` waits when it read nothing.

use std::time::Duration;

/// The wait of a follower whose last read of `$all` came back empty.
///
/// Normally it waits for an append in this process or for the poll interval. But an append it was woken
/// for can be invisible for a moment: `$all` readers see only transactions older than the oldest one still
/// running, so a commit stays hidden while an older transaction runs on. Waiting a whole poll interval
/// then (250 ms for the relay) put a revocation 254 ms behind at the 99th percentile in `bench authz`.
/// So after a wake whose read found nothing, the follower looks again soon, doubling the wait from 1 ms
/// until it reaches the poll interval.
#[derive(Debug, Clone)]
pub struct FollowWait {
    poll: Duration,
    soon: Option<Duration>,
}

impl FollowWait {
    /// Waits of at most `poll`.
    pub fn new(poll: Duration) -> Self {
        Self { poll, soon: None }
    }

    /// How long to wait for a wake-up before reading again.
    pub fn next(&self) -> Duration {
        self.soon.unwrap_or(self.poll)
    }

    /// After the wait: `woken` when an append woke it (rather than the time running out).
    pub fn waited(&mut self, woken: bool) {
        self.soon =
            if woken { Some(Duration::from_millis(1)) } else { self.soon.map(|d| d * 2).filter(|d| *d < self.poll) };
    }

    /// A read found events: back to waiting for wakes.
    pub fn found(&mut self) {
        self.soon = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_a_wake_it_looks_again_soon_then_less_and_less_often() {
        let mut wait = FollowWait::new(Duration::from_millis(10));
        assert_eq!(wait.next(), Duration::from_millis(10));
        wait.waited(true);
        let seen: Vec<u128> = (0..5)
            .map(|_| {
                let next = wait.next().as_millis();
                wait.waited(false);
                next
            })
            .collect();
        assert_eq!(seen, [1, 2, 4, 8, 10]);
        wait.waited(true);
        wait.found();
        assert_eq!(wait.next(), Duration::from_millis(10));
    }
}
