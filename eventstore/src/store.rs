//! The store's contract, shared by every backend.

use async_trait::async_trait;
use tokio::sync::watch;

use crate::{Claim, Claims, EventData, ExpectedRevision, Position, RecordedEvent, Result, StreamName, VerifyReport};

/// The outcome of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    /// Revision of the first event appended.
    pub first_revision: u64,
    /// Revision of the last event appended: pass `Exact(last_revision)` to append after it.
    pub last_revision: u64,
    /// `$all` position of the first event.
    pub first_position: Position,
    /// `$all` position of the last event: wait for a reader to pass it to read your own write.
    pub position: Position,
    /// True when every event was already in the stream: a retry, nothing written.
    pub idempotent: bool,
}

/// One stream's part of a multi-stream append.
#[derive(Debug, Clone)]
pub struct StreamAppend {
    /// The stream.
    pub stream: StreamName,
    /// What the writer expects of it.
    pub expected: ExpectedRevision,
    /// The events, in order.
    pub events: Vec<EventData>,
}

impl StreamAppend {
    /// The conflict reported when this part could not be written and no more is known.
    pub(crate) fn stream_conflict(&self) -> crate::Error {
        crate::Error::WrongExpectedRevision { stream: self.stream.clone(), expected: self.expected, actual: None }
    }
}

/// Which way to read a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Oldest first.
    Forwards,
    /// Newest first.
    Backwards,
}

/// Where a stream read starts (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamCursor {
    /// The first event.
    Start,
    /// The last event (for backward reads).
    End,
    /// The event at this revision.
    Revision(u64),
}

impl StreamCursor {
    /// The revision bound a backend's query compares with (`>=` forwards, `<=` backwards).
    pub(crate) fn sql_bound(self) -> i64 {
        match self {
            StreamCursor::Start => 0,
            StreamCursor::End => i64::MAX,
            StreamCursor::Revision(r) => i64::try_from(r).unwrap_or(i64::MAX),
        }
    }
}

/// A row count as SQL takes it.
pub(crate) fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// An event store with EventStoreDB semantics.
///
/// Appends check an expected revision and are idempotent by event id; `$all` is read in commit
/// order without ever skipping an event that commits late; every stream is a hash chain.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends `events` to `stream` if it is at `expected`.
    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: Vec<EventData>,
    ) -> Result<AppendResult> {
        self.append_claiming(stream, expected, events, Claims::none()).await
    }

    /// [`append`](Self::append), taking and releasing `claims` for `stream` atomically with the events:
    /// when another stream holds a claim taken, nothing is written ([`Error::ClaimTaken`](crate::Error::ClaimTaken)).
    /// A retry of an append already written returns its original result without looking at claims.
    async fn append_claiming(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: Vec<EventData>,
        claims: Claims,
    ) -> Result<AppendResult>;

    /// Appends to several streams in one transaction: all or nothing. Results come in the order given.
    async fn append_multi(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>>;

    /// Reads up to `limit` events of one stream from `from` (inclusive) in `direction`.
    /// A stream that does not exist reads as empty.
    async fn read_stream(
        &self,
        stream: &StreamName,
        direction: Direction,
        from: StreamCursor,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>>;

    /// Reads up to `limit` events of `$all` after `after` (exclusive; `None`: from the start), in
    /// commit order. Events of transactions that may still commit below them are withheld.
    async fn read_all(&self, after: Option<Position>, limit: usize) -> Result<Vec<RecordedEvent>>;

    /// [`read_all`](Self::read_all) for a reader following the head (a projection, the relay, alerting):
    /// what this process read of the tail of `$all` lately comes from memory (see `tail_cache.rs`), the
    /// rest from the database. A page comes back short only when the database had no more. Replays start
    /// where they like, and verification must see the database itself: both call `read_all`.
    async fn read_all_following(&self, after: Option<Position>, limit: usize) -> Result<Vec<RecordedEvent>> {
        self.read_all(after, limit).await
    }

    /// The position of the last event a reader of `$all` can see now.
    async fn head(&self) -> Result<Option<Position>>;

    /// The position of the last committed event, whether readers can see it yet or not (a transaction
    /// still running below it holds them back). A reader that has passed it holds every event committed
    /// before the call: the mark of a read model ready to serve.
    async fn committed_head(&self) -> Result<Option<Position>>;

    /// Every claim held, with the stream holding it, in (scope, value) order.
    async fn held_claims(&self) -> Result<Vec<(Claim, StreamName)>>;

    /// Verifies one stream's hash chain.
    async fn verify_stream(&self, stream: &StreamName) -> Result<VerifyReport>;

    /// Verifies every stream's hash chain.
    async fn verify_all(&self) -> Result<VerifyReport>;

    /// Ticks after every append this process committed, so subscribers wake at once instead of at the
    /// next poll. Appends by other processes are found by polling.
    fn appended(&self) -> watch::Receiver<u64>;
}
