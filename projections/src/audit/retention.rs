//! Retention of the hot audit table: entries older than the retention leave `rm_audit.entries` once
//! archived, and the trail records where it now starts.
//!
//! The caller archives first (a signed export of the entries up to the boundary, which verifies offline),
//! then [`prune`] deletes them and records the boundary's link in `audit_sig.prunes` with the archive's
//! digest, in one transaction. `verify` then starts from that link, and checkpoints that signed pruned
//! entries are still checked for their signatures and their order. Events are never deleted: a rebuild of
//! the projection restores every entry, hash for hash.

use chrono::{DateTime, Utc};
use eventstore::Position;
use sqlx::{PgConnection, PgPool};

use crate::ProjectionError;

/// Where the trail starts after a prune: the last pruned entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneMark {
    /// Its number: the trail continues at `seq + 1`.
    pub seq: i64,
    /// Its link: the next entry's `prev_hash`.
    pub entry_hash: Vec<u8>,
    /// Its event's `$all` position.
    pub position: Position,
}

/// The newest prune, if any.
pub async fn latest_prune(conn: &mut PgConnection) -> Result<Option<PruneMark>, ProjectionError> {
    let row: Option<(i64, Vec<u8>, i64, i64)> = sqlx::query_as(
        "SELECT through_seq, through_hash, through_tx, through_gp FROM audit_sig.prunes ORDER BY id DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|(seq, entry_hash, tx, gp)| PruneMark {
        seq,
        entry_hash,
        position: Position { transaction_id: tx as u64, global_position: gp as u64 },
    }))
}

/// The range of entries a prune of everything that happened before `before` would remove, as (first,
/// last) numbers; `None` when there is nothing to prune. The newest entry always stays: the projection
/// continues the chain from it.
pub async fn prunable(pool: &PgPool, before: DateTime<Utc>) -> Result<Option<(i64, i64)>, ProjectionError> {
    let range: (Option<i64>, Option<i64>) = sqlx::query_as(
        "SELECT min(seq), max(seq) FROM rm_audit.entries
          WHERE occurred_at < $1 AND seq < (SELECT max(seq) FROM rm_audit.entries)",
    )
    .bind(before)
    .fetch_one(pool)
    .await?;
    Ok(match range {
        (Some(first), Some(last)) => Some((first, last)),
        _ => None,
    })
}

/// Refuses a prune of `first..=last` that does not begin at the oldest entry of the trail's `(oldest,
/// newest)` bounds, or that would remove the newest entry (the projection continues the chain from it).
pub(crate) fn check_prune_range(
    first: i64,
    last: i64,
    bounds: (Option<i64>, Option<i64>),
) -> Result<(), ProjectionError> {
    let refuse = |reason: &str| ProjectionError::Apply {
        projection: super::projection::NAME.to_owned(),
        position: Position { transaction_id: 0, global_position: 0 },
        reason: format!("prune of entries {first}..={last} refused: {reason}"),
    };
    match bounds {
        (Some(oldest), Some(newest)) if oldest == first && last < newest && first <= last => Ok(()),
        (Some(_), Some(newest)) if last >= newest => Err(refuse("the newest entry stays")),
        _ => Err(refuse("the range must start at the oldest entry")),
    }
}

/// Deletes the entries numbered `first..=last` (as [`prunable`] returned them, and archived since in a
/// file whose SHA-256 is `archive_sha256`) and records where the trail now starts. Refuses a range that
/// does not begin where the trail begins, or that would remove the newest entry. Returns the number of
/// entries deleted.
pub async fn prune(pool: &PgPool, first: i64, last: i64, archive_sha256: [u8; 32]) -> Result<u64, ProjectionError> {
    let mut tx = pool.begin().await?;
    let bounds: (Option<i64>, Option<i64>) =
        sqlx::query_as("SELECT min(seq), max(seq) FROM rm_audit.entries").fetch_one(&mut *tx).await?;
    check_prune_range(first, last, bounds)?;
    let (entry_hash, tx_id, gp): (Vec<u8>, i64, i64) =
        sqlx::query_as("SELECT entry_hash, tx, gp FROM rm_audit.entries WHERE seq = $1")
            .bind(last)
            .fetch_one(&mut *tx)
            .await?;
    let deleted = sqlx::query("DELETE FROM rm_audit.entries WHERE seq BETWEEN $1 AND $2")
        .bind(first)
        .bind(last)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    sqlx::query(
        "INSERT INTO audit_sig.prunes (through_seq, through_hash, through_tx, through_gp, entries, archive_sha256)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(last)
    .bind(&entry_hash)
    .bind(tx_id)
    .bind(gp)
    .bind(i64::try_from(deleted).unwrap_or(i64::MAX))
    .bind(archive_sha256.as_slice())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(deleted)
}
