//! The `audit` read model: one entry per event, in `$all` order, hash-chained.
//!
//! Every event of the gateway maps to an entry (actor, action, target, outcome, time, origin, correlation,
//! reason, changed fields; never a secret). Entries are numbered densely and chained:
//! `entry_hash = SHA-256(prev_hash ‖ canonical entry)`, where the canonical entry includes its number and
//! `$all` position, so a modified, deleted, inserted or reordered row breaks the chain at that row.
//! Replaying the store rebuilds the same chain, hash for hash (no clock, no randomness in `apply`).

mod checkpoint;
mod entry;
mod export;
mod mapping;
mod projection;
mod query;
mod retention;
mod sqlite;
mod verify;

pub use checkpoint::{
    AuditKeyError, AuditKeys, CheckpointPolicy, CheckpointViolation, CheckpointViolationKind, run_checkpointer,
    verify_checkpoints, write_checkpoint,
};
pub use entry::{AuditEntry, GENESIS};
pub use export::{ExportLine, ExportReport, ExportTrailer, ExportedCheckpoint, checkpoints_between, verify_export};
pub use mapping::{AUDITED_CATEGORIES, CHAIN_VERSION, TargetState, audited_types, entry_for, state_after};
pub use projection::AuditProjection;
pub use query::{AuditFilter, AuditRecord, query};
pub use retention::{PruneMark, latest_prune, prunable, prune};
pub use sqlite::{SqliteAuditProjection, SqliteAuditTrail};
pub use verify::{AuditReport, AuditViolation, AuditViolationKind, verify};
