//! The event store against a real PostgreSQL: what only Postgres can show (its commit groups and
//! snapshots, a crash of its server, raw SQL against its tables). The contract every backend keeps is
//! in `conformance/`.

mod concurrency;
mod grouping;
mod ordering;
mod tamper;
