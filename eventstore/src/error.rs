//! What can go wrong in the event store, split into the caller's mistakes, conflicts and outages.

use uuid::Uuid;

use crate::{ExpectedRevision, Position, StreamName, UpcastError};

/// An event store error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The stream was not at the expected revision. `actual` is `None` when the stream does not exist.
    #[error("wrong expected revision on {stream}: expected {expected}, actual {}", actual.map_or("no stream".to_owned(), |r| r.to_string()))]
    WrongExpectedRevision {
        /// The stream appended to.
        stream: StreamName,
        /// What the writer expected.
        expected: ExpectedRevision,
        /// The stream's revision at the time of the check.
        actual: Option<u64>,
    },
    /// Some but not all of the event ids are already in the stream: not a retry, not new. Nothing was written.
    #[error("partial duplicate append to {stream}: some event ids are already in the stream")]
    PartialDuplicate {
        /// The stream appended to.
        stream: StreamName,
    },
    /// An event id is already used in another stream. Nothing was written.
    #[error("an event id given for {stream} is already used in another stream")]
    DuplicateEventId {
        /// The stream appended to.
        stream: StreamName,
    },
    /// Another stream holds a claim the append takes. Nothing was written.
    #[error("{scope} {value:?} is held by another stream")]
    ClaimTaken {
        /// The claim's scope.
        scope: String,
        /// The value claimed.
        value: String,
    },
    /// A claim is malformed (empty or too long), or taken and released by the same append.
    #[error("invalid claim: {0}")]
    InvalidClaim(&'static str),
    /// The same event id appears twice in one append.
    #[error("event id {0} appears twice in one append")]
    RepeatedEventId(Uuid),
    /// An event is larger than the store accepts.
    #[error("event {event_id} is {size} bytes; the limit is {limit}")]
    EventTooLarge {
        /// The event.
        event_id: Uuid,
        /// Its data plus metadata, in bytes.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// An append carried no events.
    #[error("an append needs at least one event")]
    EmptyAppend,
    /// An event's type or schema version is malformed, or its data is not JSON.
    #[error("invalid event {event_id}: {reason}")]
    InvalidEvent {
        /// The event.
        event_id: Uuid,
        /// What is wrong.
        reason: &'static str,
    },
    /// A stored event could not be read back (bad metadata, an upcaster failed, a bad stream name).
    #[error("stored event at {position} cannot be read")]
    Corrupt {
        /// Where it sits.
        position: Position,
        /// Why.
        #[source]
        source: CorruptKind,
    },
    /// The database could not be reached, the connection broke, or it asked to try again later (deadlock,
    /// serialization failure, lock or statement timeout). Safe to retry.
    #[error("event store unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// The database refused or failed in a way no caller can fix.
    #[error("event store failure")]
    Database(#[source] sqlx::Error),
    /// The task reading the next `$all` page ahead of a subscriber panicked or was cancelled.
    #[error("reading ahead of a subscription failed")]
    ReadAheadFailed,
    /// The task running a group append panicked before it answered; whether the append was written is
    /// unknown. Safe to retry with the same event ids.
    #[error("the group append running this append failed")]
    GroupAbandoned,
    /// Applying the schema failed.
    #[error("event store migration failed")]
    Migration(#[source] sqlx::migrate::MigrateError),
}

/// Why a stored event could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CorruptKind {
    /// The metadata is not the expected JSON.
    #[error("bad metadata")]
    Metadata(#[source] serde_json::Error),
    /// The upcaster failed.
    #[error(transparent)]
    Upcast(#[from] UpcastError),
    /// The stream name is invalid.
    #[error(transparent)]
    StreamName(#[from] crate::StreamNameError),
    /// The hash column is not 32 bytes, or a number is out of range.
    #[error("malformed column {0}")]
    Column(&'static str),
}

impl Error {
    /// True for the caller's mistakes: retrying the same request cannot succeed.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            Self::PartialDuplicate { .. }
                | Self::DuplicateEventId { .. }
                | Self::RepeatedEventId(_)
                | Self::ClaimTaken { .. }
                | Self::InvalidClaim(_)
                | Self::EventTooLarge { .. }
                | Self::EmptyAppend
                | Self::InvalidEvent { .. }
        )
    }

    /// True for optimistic-concurrency conflicts: reload, decide again, retry.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::WrongExpectedRevision { .. })
    }

    /// True when the store could not be reached: the same request may succeed later.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::GroupAbandoned)
    }
}

impl From<sqlx::Error> for Error {
    /// For callers that run their own SQL in a unit of work: the same outage/failure split.
    fn from(err: sqlx::Error) -> Self {
        from_sqlx(err)
    }
}

/// Sorts a driver error into outage or failure.
pub(crate) fn from_sqlx(err: sqlx::Error) -> Error {
    match &err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => Error::Unavailable(err),
        sqlx::Error::Database(db)
            if db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().is_some()
                && is_outage_code(db.code().as_deref()) =>
        {
            Error::Unavailable(err)
        }
        sqlx::Error::Database(db)
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() && is_sqlite_busy(db.code().as_deref()) =>
        {
            Error::Unavailable(err)
        }
        _ => Error::Database(err),
    }
}

/// Postgres errors that mean "try again later", not "your request is wrong": 08 connection exception,
/// 53 insufficient resources, 57P01..57P03 shutdown or cannot connect now, 40001 serialization failure,
/// 40P01 deadlock, 55P03 lock not available, 57014 statement timeout, 25P03 idle-in-transaction timeout.
fn is_outage_code(code: Option<&str>) -> bool {
    code.is_some_and(|c| {
        c.starts_with("08")
            || c.starts_with("53")
            || matches!(c, "57P01" | "57P02" | "57P03" | "40001" | "40P01" | "55P03" | "57014" | "25P03")
    })
}

/// SQLite's "busy" and "locked" (primary codes 5 and 6, with their extended codes): another process held
/// the write lock past the busy timeout.
fn is_sqlite_busy(code: Option<&str>) -> bool {
    code.and_then(|c| c.parse::<u32>().ok()).is_some_and(|c| matches!(c & 0xff, 5 | 6))
}

/// Results of event store calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;
