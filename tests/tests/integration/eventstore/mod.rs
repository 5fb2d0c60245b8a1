//! The event store against a real PostgreSQL.

mod appends;
mod claims;
mod concurrency;
mod grouping;
mod limits;
mod ordering;
mod reads;
mod tamper;
mod upcasting;
