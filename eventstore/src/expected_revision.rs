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
