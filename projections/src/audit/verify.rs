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
    /// The entry does not say what its event says: rewritten, its links recomputed to hide it.
    Rewritten,
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

/// The walk of a trail against the audited events of the store, entry by entry: numbering, links,
/// content, and the event each entry stands for. The same on every backend.
pub(crate) struct Walk {
    /// The number the next entry must have.
    pub(crate) expected_seq: i64,
    /// The link the next entry must follow.
    previous: Vec<u8>,
    /// The position of the last event matched.
    pub(crate) after_event: (i64, i64),
    /// Entries checked.
    pub(crate) checked: u64,
}

impl Walk {
    /// A walk starting after entry `seq`, whose link is `previous`, and event `after_event`.
    pub(crate) fn after(seq: i64, previous: Vec<u8>, after_event: (i64, i64)) -> Self {
        Self { expected_seq: seq + 1, previous, after_event, checked: 0 }
    }

    /// Checks the next entry (`link`: its content's link recomputed from its stored predecessor link)
    /// against `event`, the next audited event of the store: the first violation, if any.
    pub(crate) fn step(
        &mut self,
        entry: &AuditEntry,
        prev_hash: &[u8],
        entry_hash: &[u8],
        link: &[u8; 32],
        event: Option<(Uuid, i64, i64)>,
    ) -> Option<AuditViolation> {
        let at = Some(position(entry.tx, entry.gp));
        let violation = |kind, seq| Some(AuditViolation { seq, position: at, kind });
        if entry.seq != self.expected_seq {
            return violation(AuditViolationKind::Missing, self.expected_seq);
        }
        if prev_hash != self.previous.as_slice() {
            return violation(AuditViolationKind::BrokenLink, entry.seq);
        }
        if link.as_slice() != entry_hash {
            return violation(AuditViolationKind::Modified, entry.seq);
        }
        match event {
            Some((id, tx, gp)) if id == entry.event_id && (tx, gp) == (entry.tx, entry.gp) => {
                self.after_event = (tx, gp)
            }
            Some((_, tx, gp)) if (tx, gp) < (entry.tx, entry.gp) => {
                return Some(AuditViolation {
                    seq: entry.seq,
                    position: Some(position(tx, gp)),
                    kind: AuditViolationKind::Unrecorded,
                });
            }
            _ => return violation(AuditViolationKind::Unexpected, entry.seq),
        }
        self.previous = entry_hash.to_vec();
        self.expected_seq += 1;
        self.checked += 1;
        None
    }

    /// The report once the entries end: an audited event left up to the checkpoint has no entry.
    pub(crate) fn finish(&self, left: Option<(Uuid, i64, i64)>) -> AuditReport {
        let violation = left.map(|(_, tx, gp)| AuditViolation {
            seq: self.expected_seq,
            position: Some(position(tx, gp)),
            kind: AuditViolationKind::Unrecorded,
        });
        AuditReport { checked: self.checked, violation }
    }
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
    let mut walk = match latest_prune(&mut snapshot).await? {
        Some(mark) if oldest != Some(1) => Walk::after(
            mark.seq,
            mark.entry_hash,
            (mark.position.transaction_id as i64, mark.position.global_position as i64),
        ),
        _ => Walk::after(0, GENESIS.to_vec(), (0, 0)),
    };
    loop {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT seq, tx, gp, event_id, occurred_at, actor_id, actor_kind, actor_name, action, target_kind, target_id,
                    target_name, outcome, source_ip, user_agent, correlation_id, causation_id, reason, changes,
                    prev_hash, entry_hash
               FROM rm_audit.entries WHERE seq >= $1 ORDER BY seq LIMIT $2",
        )
        .bind(walk.expected_seq)
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
        .bind(walk.after_event.0)
        .bind(walk.after_event.1)
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
            if let Some(violation) = walk.step(&row.entry, &row.prev_hash, &row.entry_hash, link, events.next()) {
                return Ok(AuditReport { checked: walk.checked, violation: Some(violation) });
            }
        }
        if rows.len() < PAGE as usize {
            return Ok(walk.finish(events.next()));
        }
    }
}
