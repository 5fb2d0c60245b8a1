//! Why a projection stopped.

use eventstore::Position;

/// A projection's failure.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// Reading events or taking the leader lock failed.
    #[error("event store: {0}")]
    Store(#[from] eventstore::Error),
    /// The read model's database refused a write.
    #[error("read model database: {0}")]
    Database(#[from] sqlx::Error),
    /// An event of a category the projection reads has a type it does not know: it halts rather than
    /// serve a view that silently misses it.
    #[error("projection {projection} does not know event type {event_type} (at {position})")]
    UnknownEventType {
        /// The projection.
        projection: String,
        /// The unknown type.
        event_type: String,
        /// Where the event sits in `$all`.
        position: Position,
    },
    /// A projection name that cannot name a schema: `[a-z][a-z0-9_]{0,47}` without `__`.
    #[error("projection name {0:?} must match [a-z][a-z0-9_]{{0,47}} without `__`")]
    InvalidName(String),
    /// The checkpoint moved under this runner: another runner applied the same events.
    #[error("checkpoint of {0} moved under this runner")]
    CheckpointMoved(String),
    /// The projection's own code refused an event.
    #[error("projection {projection} failed at {position}: {reason}")]
    Apply {
        /// The projection.
        projection: String,
        /// The event it failed on.
        position: Position,
        /// Why.
        reason: String,
    },
}

impl ProjectionError {
    /// True when running again cannot help: the projection's code or the events must change first.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::UnknownEventType { .. } | Self::Apply { .. } | Self::InvalidName(_))
    }
}
