//! Settings of the [`Relay`](super::Relay).

use std::time::Duration;

/// Where and how the relay publishes.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// The JetStream stream, created or updated at start.
    pub stream: String,
    /// Subjects are `<prefix>.<category>.<escaped stream id>`; the stream captures `<prefix>.>`.
    pub subject_prefix: String,
    /// How long JetStream remembers message ids to drop a repeated publish.
    pub duplicate_window: Duration,
    /// Copies of each message in a NATS cluster (1 for a single server).
    pub replicas: usize,
    /// Oldest message kept (zero: forever). Postgres stays the archive either way.
    pub max_age: Duration,
    /// Events read from `$all` per page.
    pub page_size: usize,
    /// Publishes awaiting their acknowledgement at once. Keep it below the JetStream context's
    /// `max_ack_inflight` (async-nats default 5,000): the context would otherwise wait for ack permits that
    /// only this relay's own unawaited acks hold.
    pub max_in_flight: usize,
    /// How often to look for new events when no in-process append woke the relay, and to retry
    /// the leader lock.
    pub poll_interval: Duration,
    /// Pause after a failure (NATS down, fenced by another publisher, database error) before resyncing.
    pub retry_after: Duration,
}

impl Default for RelayOptions {
    fn default() -> Self {
        Self {
            stream: "REGISTRY_EVENTS".into(),
            subject_prefix: "reg.evt".into(),
            duplicate_window: Duration::from_secs(120),
            replicas: 1,
            max_age: Duration::ZERO,
            page_size: 1_000,
            max_in_flight: 256,
            poll_interval: Duration::from_millis(250),
            retry_after: Duration::from_millis(500),
        }
    }
}
