//! What a writer expects of a stream before it appends.

use std::fmt;

/// The optimistic-concurrency expectation of an append, as in EventStoreDB.
///
/// Command handlers pass [`ExpectedRevision::Exact`] or [`ExpectedRevision::NoStream`]: `Any` gives up
/// the lost-update protection and exists for imports and administration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpectedRevision {
    /// No check at all.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must exist, at any revision.
    StreamExists,
    /// The stream's last event must have exactly this revision (0-based).
    Exact(u64),
}

impl ExpectedRevision {
    /// The expectation for a stream whose last known revision is `last` (`None`: no events yet).
    pub fn after(last: Option<u64>) -> Self {
        last.map_or(Self::NoStream, Self::Exact)
    }

    /// The wire encoding shared with the SQL function `es.append` (EventStoreDB's numbers).
    pub(crate) fn as_wire(self) -> i64 {
        match self {
            Self::Any => -2,
            Self::NoStream => -1,
            Self::StreamExists => -4,
            // revisions are below 2^63 in any store that exists
            Self::Exact(n) => i64::try_from(n).unwrap_or(i64::MAX),
        }
    }
}

impl fmt::Display for ExpectedRevision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any"),
            Self::NoStream => f.write_str("no stream"),
            Self::StreamExists => f.write_str("stream exists"),
            Self::Exact(n) => write!(f, "{n}"),
        }
    }
}
