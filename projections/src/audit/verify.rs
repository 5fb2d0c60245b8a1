//! Verifying the audit trail against itself (the chain) and against the event store (completeness).

use eventstore::Position;
use sqlx::PgPool;
use uuid::Uuid;

use super::entry::{AuditEntry, GENESIS};
use super::mapping::AUDITED_CATEGORIES;
use super::projection::NAME;
use super::retention::latest_prune;
use crate::ProjectionError;

/// Entries read per page.
const PAGE: i64 = 10_000;

/// What is wrong at the first bad entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditViolationKind {
    /// The entry's content does not hash to its stored link: modified.
    Modified,
    /// The entry does not link to the one before it: an entry was removed, inserted or moved before it.
    BrokenLink,
    /// The numbering skips: entries were deleted.
    Missing,
    /// The entry has no event at its position in the store: forged or moved.
    Unexpected,
    /// An event the trail has reached has no entry.
    Unrecorded,
}

/// The first bad entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditViolation {
    /// Its number (for `Missing`: the first number absent).
    pub seq: i64,
    /// The `$all` position concerned.
    pub position: Option<Position>,
    /// What is wrong.
    pub kind: AuditViolationKind,
}

/// The result of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditReport {
    /// Entries checked.
    pub checked: u64,
    /// The first violation, if any.
    pub violation: Option<AuditViolation>,
}

/// A stored entry with its links.
#[derive(sqlx::FromRow)]
struct Row {
    #[sqlx(flatten)]
    entry: AuditEntry,
    prev_hash: Vec<u8>,
    entry_hash: Vec<u8>,
}

/// Every row's link recomputed from its content and its stored predecessor link, in parallel.
fn recompute_links(rows: &[Row]) -> Vec<[u8; 32]> {
    let link = |row: &Row| {
        let previous = <[u8; 32]>::try_from(row.prev_hash.as_slice()).unwrap_or(GENESIS);
        row.entry.chain_hash(&previous)
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4);
    let chunk = rows.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let parts: Vec<_> =
            rows.chunks(chunk).map(|part| scope.spawn(move || part.iter().map(link).collect::<Vec<_>>())).collect();
        parts.into_iter().flat_map(|part| part.join().unwrap_or_default()).collect()
    })
}

fn position(tx: i64, gp: i64) -> Position {
    Position { transaction_id: tx as u64, global_position: gp as u64 }
}

/// Checks every entry's link and content, their numbering, and that they are exactly the audited events
/// of the store up to the trail's checkpoint, in order (after the last prune: from the link it recorded).
/// Names the first entry that is wrong.
pub async fn verify(pool: &PgPool) -> Result<AuditReport, ProjectionError> {
    // One snapshot for every read: the runner commits entries and their checkpoint together, so in a
    // snapshot every entry is at or before the checkpoint, and one beyond it was put there by hand.
    let mut snapshot = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *snapshot).await?;
    let checkpoint: Option<(i64, i64)> =
        sqlx::query_as("SELECT transaction_id, global_position FROM es.checkpoints WHERE name = $1")
            .bind(NAME)
            .fetch_optional(&mut *snapshot)
            .await?;
    let checkpoint = checkpoint.filter(|c| *c != (0, 0)).map(|(tx, gp)| position(tx, gp));
    let categories: Vec<String> = AUDITED_CATEGORIES.iter().map(|c| (*c).to_owned()).collect();
    // A pruned trail starts after the last pruned entry, from its recorded link (unless a rebuild has
    // brought the pruned entries back).
    let oldest: Option<i64> =
        sqlx::query_scalar("SELECT min(seq) FROM rm_audit.entries").fetch_one(&mut *snapshot).await?;
    let (mut expected_seq, mut previous, mut after_event) = match latest_prune(&mut snapshot).await? {
        Some(mark) if oldest != Some(1) => {
            (mark.seq + 1, mark.entry_hash, (mark.position.transaction_id as i64, mark.position.global_position as i64))
        }
        _ => (1i64, GENESIS.to_vec(), (0, 0)),
    };
    let mut checked = 0u64;
    loop {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT seq, tx, gp, event_id, occurred_at, actor_id, actor_kind, actor_name, action, target_kind, target_id,
                    target_name, outcome, source_ip, user_agent, correlation_id, causation_id, reason, changes,
                    prev_hash, entry_hash
               FROM rm_audit.entries WHERE seq >= $1 ORDER BY seq LIMIT $2",
        )
        .bind(expected_seq)
        .bind(PAGE)
        .fetch_all(&mut *snapshot)
        .await?;
        // The audited events that should correspond, in $all order.
        let events: Vec<(Uuid, i64, i64)> = sqlx::query_as(
            "SELECT e.event_id, e.transaction_id::text::bigint, e.global_position FROM es.events e
              WHERE split_part(e.stream_id, '-', 1) = ANY($1)
                AND (e.transaction_id, e.global_position) > ($2::bigint::text::xid8, $3)
                AND (e.transaction_id, e.global_position) <= ($4::bigint::text::xid8, $5)
              ORDER BY e.transaction_id, e.global_position LIMIT $6",
        )
        .bind(&categories)
        .bind(after_event.0)
        .bind(after_event.1)
        .bind(checkpoint.map_or(0, |p| p.transaction_id as i64))
        .bind(checkpoint.map_or(0, |p| p.global_position as i64))
        .bind(PAGE)
        .fetch_all(&mut *snapshot)
        .await?;
        let mut events = events.into_iter();
        // Each entry's link depends only on its own row (its stored predecessor link is checked against
        // the previous row below), so the hashing, the bulk of the work, runs on every core.
        let (rows, links) = tokio::task::spawn_blocking(move || {
            let links = recompute_links(&rows);
            (rows, links)
        })
        .await
        .map_err(|e| ProjectionError::Apply {
            projection: NAME.to_owned(),
            position: Position { transaction_id: 0, global_position: 0 },
            reason: format!("verification task failed: {e}"),
        })?;
        for (row, link) in rows.iter().zip(&links) {
            let at = Some(position(row.entry.tx, row.entry.gp));
            let violation =
                |kind, seq| Ok(AuditReport { checked, violation: Some(AuditViolation { seq, position: at, kind }) });
            if row.entry.seq != expected_seq {
                return violation(AuditViolationKind::Missing, expected_seq);
            }
            if row.prev_hash != previous {
                return violation(AuditViolationKind::BrokenLink, row.entry.seq);
            }
            if link.as_slice() != row.entry_hash.as_slice() {
                return violation(AuditViolationKind::Modified, row.entry.seq);
            }
            match events.next() {
                Some((id, tx, gp)) if id == row.entry.event_id && (tx, gp) == (row.entry.tx, row.entry.gp) => {
                    after_event = (tx, gp)
                }
                Some((_, tx, gp)) if (tx, gp) < (row.entry.tx, row.entry.gp) => {
                    return Ok(AuditReport {
                        checked,
                        violation: Some(AuditViolation {
                            seq: row.entry.seq,
                            position: Some(position(tx, gp)),
                            kind: AuditViolationKind::Unrecorded,
                        }),
                    });
                }
                _ => return violation(AuditViolationKind::Unexpected, row.entry.seq),
            }
            previous = row.entry_hash.clone();
            expected_seq += 1;
            checked += 1;
        }
        if rows.len() < PAGE as usize {
            // Entries end here: any audited event left up to the checkpoint has no entry.
            if let Some((_, tx, gp)) = events.next() {
                let violation = AuditViolation {
                    seq: expected_seq,
                    position: Some(position(tx, gp)),
                    kind: AuditViolationKind::Unrecorded,
                };
                return Ok(AuditReport { checked, violation: Some(violation) });
            }
            return Ok(AuditReport { checked, violation: None });
        }
    }
}
