//! The event store: EventStoreDB semantics on PostgreSQL and SQLite through sqlx.
//!
//! Its one job is to keep the log, the only source of truth of the gateway, and to hand it out in
//! order. It knows nothing of the gateway's events: payloads are JSON text with a type and a schema
//! version.
//!
//! - Streams are named `<category>-<id>` ([`StreamName`]). An append names an [`ExpectedRevision`]
//!   and fails with [`Error::WrongExpectedRevision`] when the stream moved on.
//! - Event ids are chosen by the client. Appending the same ids to the same stream again returns the
//!   original result and writes nothing ([`AppendResult::idempotent`]); a partial overlap is refused.
//! - `$all` is ordered by [`Position`] = (transaction id, allocated position). Readers see only
//!   transactions older than every transaction still running, so an event that commits late can never
//!   appear behind a reader's checkpoint. [`Subscription`] reads `$all` from a checkpoint, then follows.
//! - Every stream is a hash chain ([`content_hash`], [`chain_link`]); [`EventStore::verify_all`] names
//!   rows that were modified, deleted, inserted or reordered behind the store's back. The table itself
//!   refuses UPDATE, DELETE and TRUNCATE.
//! - An append may take and release [`Claims`]: values unique among streams (set validation), written
//!   with the events or not at all.
//! - Old schema versions are upcast on read ([`Upcasters`]); stored events are never rewritten.
//! - [`relay::Relay`] publishes `$all` to NATS JetStream, in order, once.
//! - Two backends keep this contract: [`PgEventStore`] (production) and [`SqliteEventStore`] (the embedded
//!   default); [`copy_events`] moves a log from one to the other, [`verify_copy`] proves the copy.
//!
//! Design notes and the SQL behind each rule: `eventstore/README.md`.

mod claim;
mod content_hash;
mod copy;
mod decode;
mod error;
mod event;
mod expected_revision;
mod follow;
mod instrumented;
mod metadata;
mod position;
mod postgres;
mod prepare;
pub mod relay;
mod sqlite;
mod store;
mod stream_name;
mod subscription;
mod tail_cache;
mod upcast;
mod verify;

pub use claim::{Claim, Claims};
pub use content_hash::{GENESIS, Hash, chain, chain_link, content_hash};
pub use copy::{CopyError, CopyReport, copy_events, verify_copy};
pub use error::{CorruptKind, Error, Result};
pub use event::{DEFAULT_MAX_EVENT_BYTES, EventData, RecordedEvent};
pub use expected_revision::ExpectedRevision;
pub use follow::FollowWait;
pub use instrumented::Instrumented;
pub use metadata::{Actor, ActorKind, MAX_USER_AGENT_CHARS, Metadata};
pub use position::{Position, PositionParseError};
pub use postgres::{INDEX_DRIVEN_PLANS, LeaderLock, LockCandidate, PgEventStore, PgEventStoreOptions, PgUnitOfWork};
pub use sqlite::{SqliteEventStore, SqliteEventStoreOptions};
pub use store::{AppendResult, Direction, EventStore, StreamAppend, StreamCursor};
pub use stream_name::{MAX_STREAM_NAME_BYTES, StreamName, StreamNameError};
pub use subscription::{EventFeed, Subscription, SubscriptionOptions};
pub use tail_cache::TailCacheLimits;
pub use upcast::{UpcastError, UpcastFn, Upcasters};
pub use verify::{ChainVerifier, MAX_VIOLATIONS, StoredRow, VerifyReport, Violation, ViolationKind};
