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
    /// Writing the read model failed at an event: permanent when the database refused the data itself
    /// (see [`sql_error_is_permanent`]), otherwise the connection or the server's state, retried.
    #[error("projection {projection} could not write the event at {position}: {source}")]
    Write {
        /// The projection.
        projection: String,
        /// The event it failed on.
        position: Position,
        /// The database's error.
        #[source]
        source: sqlx::Error,
    },
    /// A catalogue entry could not be rendered as JSON.
    #[error("rendering: {0}")]
    Render(#[from] serde_json::Error),
    /// A snapshot could not be written or read back.
    #[error("snapshot: {0}")]
    Snapshot(String),
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
    /// True when running again cannot help: the projection's code or the events must change first. One
    /// classification for every projection on both backends: a decoding or contract error, or data the
    /// read model's database refuses, halts; a lost connection, a serialization failure, a timeout or a
    /// server shutting down is retried.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::UnknownEventType { .. } | Self::Apply { .. } | Self::InvalidName(_) => true,
            Self::Write { source, .. } => sql_error_is_permanent(source),
            Self::Store(_) | Self::Database(_) | Self::CheckpointMoved(_) | Self::Snapshot(_) | Self::Render(_) => {
                false
            }
        }
    }

    /// Where in `$all` the projection stopped, when the error names an event.
    pub fn position(&self) -> Option<Position> {
        match self {
            Self::UnknownEventType { position, .. } | Self::Write { position, .. } | Self::Apply { position, .. } => {
                Some(*position)
            }
            _ => None,
        }
    }
}

/// Whether a read model's database refused a write for what it contained, or for the code that wrote
/// it, rather than for its own state: the same write would fail again.
///
/// PostgreSQL: data exceptions (SQLSTATE class 22, a U+0000 in `text` among them), syntax or
/// undefined-object errors (class 42), NOT NULL and CHECK violations (only the data causes those).
/// SQLite: a value too big, a datatype mismatch, a malformed statement, NOT NULL and CHECK violations.
/// Decoding a row the projection reads back is its contract. Unique and foreign-key violations are not
/// here: a deposed runner racing the new one may meet them for a moment, and its retry finds the
/// checkpoint moved.
pub(crate) fn sql_error_is_permanent(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::TypeNotFound { .. }
        | sqlx::Error::Encode(_) => true,
        sqlx::Error::Database(db) => {
            let code = db.code();
            let code = code.as_deref().unwrap_or("");
            // SQLite's extended result codes are numbers: 18 too big, 20 mismatch, 1 a statement error.
            code.starts_with("22")
                || code.starts_with("42")
                || matches!(code, "23502" | "23514" | "1" | "18" | "20" | "25" | "275" | "1299")
        }
        _ => false,
    }
}
