//! The event store on SQLite: the embedded default, one file, no server.
//!
//! The contract is the one [`PgEventStore`](crate::PgEventStore) keeps; the way there is simpler,
//! because SQLite has one writer at a time. Appends in this process queue on a mutex and run in
//! `BEGIN IMMEDIATE` transactions (which also hold off other processes on the same file), so positions
//! are allocated in commit order, and `$all` read by position can never later grow an event below one
//! a reader has passed. Each write transaction takes the next commit number as the `transaction_id` of
//! its events, so positions compare exactly as they do on Postgres.

mod append;
mod rows;
mod store;
mod verify;

pub use store::{SqliteEventStore, SqliteEventStoreOptions};
