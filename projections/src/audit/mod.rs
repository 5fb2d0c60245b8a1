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
mod recompute;
mod retention;
mod sqlite;
mod verify;

pub use checkpoint::{
    AuditKeyError, AuditKeys, CheckpointPolicy, CheckpointStore, CheckpointViolation, CheckpointViolationKind,
    run_checkpointer, verify_checkpoints, write_checkpoint,
};
pub use entry::{AuditEntry, GENESIS, NUL_ESCAPE};
pub use export::{ExportLine, ExportReport, ExportTrailer, ExportedCheckpoint, checkpoints_between, verify_export};
pub use mapping::{AUDITED_CATEGORIES, CHAIN_VERSION, TargetState, audited_types, entry_for, state_after};
pub use projection::AuditProjection;
pub use query::{AuditFilter, AuditRecord, query};
pub use recompute::verify_content;
pub use retention::{PruneMark, latest_prune, prunable, prune};
pub use sqlite::{SqliteAuditProjection, SqliteAuditTrail};
pub use verify::{AuditReport, AuditViolation, AuditViolationKind, verify};

/// The audit trail's queries and checks, on whichever backend holds it.
#[derive(Debug, Clone)]
pub enum AuditSource {
    /// `rm_audit` and `audit_sig` on PostgreSQL.
    Postgres(sqlx::PgPool),
    /// `audit_entries` and `audit_checkpoints` on SQLite.
    Sqlite(SqliteAuditTrail),
}

impl AuditSource {
    /// A page of entries matching `filter`, and the number to continue after.
    pub async fn query(&self, filter: &AuditFilter) -> Result<(Vec<AuditRecord>, Option<i64>), crate::ProjectionError> {
        match self {
            Self::Postgres(pool) => query(pool, filter).await,
            Self::Sqlite(trail) => trail.query(filter).await,
        }
    }

    /// The chain and the completeness against the store.
    pub async fn verify(&self) -> Result<AuditReport, crate::ProjectionError> {
        match self {
            Self::Postgres(pool) => verify(pool).await,
            Self::Sqlite(trail) => trail.verify().await,
        }
    }

    /// The signed checkpoints.
    pub async fn verify_checkpoints(
        &self,
        keys: &AuditKeys,
    ) -> Result<(u64, Option<CheckpointViolation>), crate::ProjectionError> {
        match self {
            Self::Postgres(pool) => verify_checkpoints(pool, keys).await,
            Self::Sqlite(trail) => trail.verify_checkpoints(keys).await,
        }
    }

    /// The entries a prune of everything before `before` would remove.
    pub async fn prunable(
        &self,
        before: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<(i64, i64)>, crate::ProjectionError> {
        match self {
            Self::Postgres(pool) => prunable(pool, before).await,
            Self::Sqlite(trail) => trail.prunable(before).await,
        }
    }

    /// Deletes archived entries `first..=last` and records where the trail now starts.
    pub async fn prune(&self, first: i64, last: i64, archive_sha256: [u8; 32]) -> Result<u64, crate::ProjectionError> {
        match self {
            Self::Postgres(pool) => prune(pool, first, last, archive_sha256).await,
            Self::Sqlite(trail) => trail.prune(first, last, archive_sha256).await,
        }
    }

    /// Signs the current chain head, if it moved since the last checkpoint.
    pub async fn write_checkpoint(&self, keys: &AuditKeys) -> Result<Option<i64>, crate::ProjectionError> {
        match self {
            Self::Postgres(pool) => write_checkpoint(pool, keys).await,
            Self::Sqlite(trail) => CheckpointStore::write_checkpoint(trail, keys).await,
        }
    }

    /// The checkpoints signing entries `first..=last`.
    pub async fn checkpoints_between(
        &self,
        first: i64,
        last: i64,
    ) -> Result<Vec<ExportedCheckpoint>, crate::ProjectionError> {
        match self {
            Self::Postgres(pool) => checkpoints_between(pool, first, last).await,
            Self::Sqlite(trail) => trail.checkpoints_between(first, last).await,
        }
    }
}
