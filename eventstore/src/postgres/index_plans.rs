//! Planner settings for hot statements that should follow an index whatever the statistics say.
//!
//! The store's group statements and the projections' batches touch rows by key, a handful per
//! statement, in tables that grow from empty faster than autovacuum analyzes them (a benchmark writes
//! 30,000 streams in ten seconds; a rebuild millions of audit entries in minutes; autovacuum looks once a
//! minute); subscribers read `$all` from a position hundreds of times a second. A plan made from a
//! nearly empty table's statistics scans the whole table, and a cached one keeps doing so as the table
//! grows: the audit projection's chain-head query (no parameters, so always a cached generic plan) read
//! 300 pages per batch, and a name lookup took 75 ms per batch after 20,000 entries.
//!
//! Planning every run (custom plans) avoided that but cost a fifth of the machine's CPU under
//! `bench api`. Instead, these statements run with sequential scans, hash joins and merge joins
//! disabled and the generic plan forced: made once per connection, it is nested loops over index
//! lookups or an index range scan. "Disabled" only makes a path expensive: the planner still scans
//! where no index applies. One shape it may still choose is a nested loop driven by a whole-index scan
//! of a small table; statements join their keys through a `LATERAL` subquery with `LIMIT` (never turned
//! into a join) so that the keys drive the lookups.
pub const INDEX_DRIVEN_PLANS: [(&str, &str); 4] = [
    ("plan_cache_mode", "force_generic_plan"),
    ("enable_seqscan", "off"),
    ("enable_hashjoin", "off"),
    ("enable_mergejoin", "off"),
];
