//! The read side: runners that fold the event store's `$all` into read models.
//!
//! - [`TableProjection`]s keep their read model in PostgreSQL. The [`TableRunner`] applies events in
//!   batches, and moves the projection's checkpoint in the same transaction with a compare-and-set on its
//!   old value: a crash never applies an event twice or skips one, and a second runner is refused. One
//!   runner per projection is active at a time (a [`eventstore::LeaderLock`]); others stand by.
//! - Each table projection owns a schema (`rm_<name>`). [`rebuild`] replays the store into a shadow schema
//!   while the live model serves and swaps them atomically; a new [`TableProjection::version`] makes the
//!   runner rebuild before it serves.
//! - [`MemoryProjection`]s live in the process and are rebuilt from the store at start
//!   ([`MemoryRunner`]); they report ready once caught up with the head seen at start. A model that
//!   takes [`snapshot`]s starts from the last one the log matches and replays only what follows it.
//! - A projection names the stream categories it reads and the event types it knows. An event of those
//!   categories with a type it does not know halts it, and it reports not ready: the authorization read
//!   model fails closed rather than deciding on a partial view.
//!
//! The store is the truth and the source of every event; wake-ups come from appends in this process, from
//! other instances through NATS (`eventstore::relay::wake_on_publish`), and from polling.

pub mod analytics;
pub mod audit;
pub mod authz;
mod error;
mod filter;
mod memory_runner;
mod projection;
mod rebuild;
pub mod registry;
pub mod snapshot;
mod sql;
mod sqlite_runner;
mod status;
mod table_runner;
mod target;

pub use error::ProjectionError;
pub use filter::{EventFilter, Relevance};
pub use memory_runner::{FeedFrom, MemoryRunner, replay_once};
pub use projection::{MemoryProjection, TableProjection};
pub use rebuild::{RebuildReport, rebuild};
pub use sqlite_runner::{SqliteProjection, SqliteRunner, load_sqlite_checkpoint, rebuild_sqlite};
pub use status::{ProjectionState, ProjectionStatus};
pub use table_runner::{RunnerOptions, TableRunner, load_checkpoint};
pub use target::schema_of;
