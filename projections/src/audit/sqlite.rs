//! The audit read model on SQLite (the embedded default): the same entries, numbered and chained the same
//! way as `rm_audit.entries` (the fold is shared), in `audit_entries` and `audit_target_names`.

use std::collections::HashMap;

use async_trait::async_trait;
use eventstore::RecordedEvent;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection, SqlitePool};

use super::AuditKeys;
use super::checkpoint::{CheckpointRow, CheckpointStore, CheckpointViolation, check_checkpoints, next_checkpoint};
use super::entry::{AuditEntry, GENESIS};
use super::export::{ExportedCheckpoint, StoredCheckpoint, exported};
use super::mapping::{AUDITED_CATEGORIES, CHAIN_VERSION, TargetState, audited_types};
use super::projection::{Chained, NAME, fold, wanted_targets};
use super::query::{AuditFilter, AuditRecord};
use super::retention::{PruneMark, check_prune_range};
use super::verify::{AuditReport, Walk};
use crate::{EventFilter, ProjectionError, SqliteProjection};

/// Entries per INSERT statement (23 parameters each, below SQLite's limit of 32,766).
const ROWS_PER_INSERT: usize = 500;

/// The audit projection on SQLite.
pub struct SqliteAuditProjection {
    filter: EventFilter,
}

impl Default for SqliteAuditProjection {
    fn default() -> Self {
        Self { filter: EventFilter::new(AUDITED_CATEGORIES, audited_types()) }
    }
}

#[async_trait]
impl SqliteProjection for SqliteAuditProjection {
    fn name(&self) -> &str {
        NAME
    }

    fn version(&self) -> u32 {
        // As the Postgres projection: chain format 2, names and fields in `audit_target_names`.
        3
    }

    fn filter(&self) -> &EventFilter {
        &self.filter
    }

    fn tables(&self) -> &[&'static str] {
        &["audit_entries", "audit_target_names"]
    }

    async fn create(&self, conn: &mut SqliteConnection) -> Result<(), ProjectionError> {
        sqlx::raw_sql(
            "CREATE TABLE audit_entries (
                 seq            INTEGER PRIMARY KEY,
                 tx             INTEGER NOT NULL,
                 gp             INTEGER NOT NULL,
                 event_id       BLOB    NOT NULL UNIQUE,
                 occurred_at    TEXT    NOT NULL,
                 actor_id       TEXT    NOT NULL,
                 actor_kind     TEXT    NOT NULL,
                 actor_name     TEXT,
                 action         TEXT    NOT NULL,
                 target_kind    TEXT    NOT NULL,
                 target_id      TEXT    NOT NULL,
                 target_name    TEXT,
                 outcome        TEXT    NOT NULL,
                 source_ip      TEXT,
                 user_agent     TEXT,
                 correlation_id BLOB    NOT NULL,
                 causation_id   BLOB,
                 reason         TEXT,
                 changes        TEXT    NOT NULL,
                 prev_hash      BLOB    NOT NULL,
                 entry_hash     BLOB    NOT NULL
             );
             CREATE INDEX audit_entries_actor_time ON audit_entries (actor_id, occurred_at, seq);
             CREATE INDEX audit_entries_target ON audit_entries (target_kind, target_id, seq);
             CREATE INDEX audit_entries_action ON audit_entries (action, seq);
             CREATE INDEX audit_entries_time ON audit_entries (occurred_at, seq);
             CREATE INDEX audit_entries_correlation ON audit_entries (correlation_id);
             CREATE TABLE audit_target_names (
                 target_kind TEXT NOT NULL,
                 target_id   TEXT NOT NULL,
                 name        TEXT NOT NULL,
                 fields      TEXT NOT NULL,
                 PRIMARY KEY (target_kind, target_id)
             ) WITHOUT ROWID;",
        )
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    async fn apply(&self, conn: &mut SqliteConnection, events: &[RecordedEvent]) -> Result<(), ProjectionError> {
        let last: Option<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT seq, entry_hash FROM audit_entries ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *conn)
                .await?;
        let (seq, previous) = match last {
            Some((seq, hash)) => (seq, <[u8; 32]>::try_from(hash.as_slice()).unwrap_or(GENESIS)),
            None => (0, GENESIS),
        };
        let mut states: HashMap<(String, String), TargetState> = HashMap::new();
        for (kind, id) in wanted_targets(events) {
            let known: Option<(String, String)> =
                sqlx::query_as("SELECT name, fields FROM audit_target_names WHERE target_kind = ? AND target_id = ?")
                    .bind(kind)
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?;
            if let Some((name, fields)) = known {
                let fields = serde_json::from_str(&fields).map_err(|e| corrupt(events, e))?;
                states.insert((kind.to_owned(), id.to_owned()), TargetState { name: Some(name), fields });
            }
        }
        let chained = fold(events, seq, previous, &mut states)?;
        for rows in chained.chunks(ROWS_PER_INSERT) {
            insert(conn, rows).await.map_err(|source| write_failed(events, source))?;
        }
        for ((kind, id), state) in states {
            let Some(name) = state.name else { continue };
            sqlx::query(
                "INSERT INTO audit_target_names (target_kind, target_id, name, fields) VALUES (?, ?, ?, ?)
                 ON CONFLICT (target_kind, target_id) DO UPDATE SET name = excluded.name, fields = excluded.fields",
            )
            .bind(kind)
            .bind(id)
            .bind(name)
            .bind(state.fields.to_string())
            .execute(&mut *conn)
            .await
            .map_err(|source| write_failed(events, source))?;
        }
        Ok(())
    }
}

fn corrupt(events: &[RecordedEvent], error: serde_json::Error) -> ProjectionError {
    let position = events.first().map(|e| e.position).unwrap_or(eventstore::Position::START);
    ProjectionError::Apply { projection: NAME.to_owned(), position, reason: format!("target fields: {error}") }
}

/// A write of the batch `events` failed: classified by the database's error (see
/// [`crate::error::sql_error_is_permanent`]).
fn write_failed(events: &[RecordedEvent], source: sqlx::Error) -> ProjectionError {
    let position = events.first().map(|e| e.position).unwrap_or(eventstore::Position::START);
    ProjectionError::Write { projection: NAME.to_owned(), position, source }
}

async fn insert(conn: &mut SqliteConnection, rows: &[Chained]) -> Result<(), sqlx::Error> {
    let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
        "INSERT INTO audit_entries (seq, tx, gp, event_id, occurred_at, actor_id, actor_kind, actor_name, action,
                                    target_kind, target_id, target_name, outcome, source_ip, user_agent,
                                    correlation_id, causation_id, reason, changes, prev_hash, entry_hash) ",
    );
    insert.push_values(rows, |mut row, (e, previous, hash)| {
        row.push_bind(e.seq)
            .push_bind(e.tx)
            .push_bind(e.gp)
            .push_bind(e.event_id)
            .push_bind(e.occurred_at)
            .push_bind(&e.actor_id)
            .push_bind(&e.actor_kind)
            .push_bind(&e.actor_name)
            .push_bind(&e.action)
            .push_bind(&e.target_kind)
            .push_bind(&e.target_id)
            .push_bind(&e.target_name)
            .push_bind(&e.outcome)
            .push_bind(&e.source_ip)
            .push_bind(&e.user_agent)
            .push_bind(e.correlation_id)
            .push_bind(e.causation_id)
            .push_bind(&e.reason)
            .push_bind(e.changes.to_string())
            .push_bind(previous.as_slice())
            .push_bind(hash.as_slice());
    });
    insert.build().execute(&mut *conn).await?;
    Ok(())
}

/// Reads one stored entry back, with its links.
fn stored(row: &SqliteRow) -> Result<Chained, sqlx::Error> {
    let changes: String = row.try_get("changes")?;
    let link = |name: &str| -> Result<[u8; 32], sqlx::Error> {
        let bytes: Vec<u8> = row.try_get(name)?;
        <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|e| sqlx::Error::ColumnDecode { index: name.to_owned(), source: e.into() })
    };
    let entry = AuditEntry {
        seq: row.try_get("seq")?,
        tx: row.try_get("tx")?,
        gp: row.try_get("gp")?,
        event_id: row.try_get("event_id")?,
        occurred_at: row.try_get("occurred_at")?,
        actor_id: row.try_get("actor_id")?,
        actor_kind: row.try_get("actor_kind")?,
        actor_name: row.try_get("actor_name")?,
        action: row.try_get("action")?,
        target_kind: row.try_get("target_kind")?,
        target_id: row.try_get("target_id")?,
        target_name: row.try_get("target_name")?,
        outcome: row.try_get("outcome")?,
        source_ip: row.try_get("source_ip")?,
        user_agent: row.try_get("user_agent")?,
        correlation_id: row.try_get("correlation_id")?,
        causation_id: row.try_get("causation_id")?,
        reason: row.try_get("reason")?,
        changes: serde_json::from_str(&changes)
            .map_err(|e| sqlx::Error::ColumnDecode { index: "changes".into(), source: e.into() })?,
    };
    Ok((entry, link("prev_hash")?, link("entry_hash")?))
}

/// The audit trail on SQLite: its entries in order, and the check of their chain.
#[derive(Debug, Clone)]
pub struct SqliteAuditTrail {
    pool: SqlitePool,
}

impl SqliteAuditTrail {
    /// The trail in `pool`'s file.
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }

    /// Up to `limit` entries after `after_seq`, in order.
    pub async fn entries(&self, after_seq: i64, limit: u32) -> Result<Vec<AuditEntry>, ProjectionError> {
        let rows = sqlx::query("SELECT * FROM audit_entries WHERE seq > ? ORDER BY seq LIMIT ?")
            .bind(after_seq)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(stored).map(|r| r.map(|(e, _, _)| e)).collect::<Result<_, _>>()?)
    }

    /// A page of entries matching `filter` in number order, and the number to continue after (as
    /// [`query`](super::query) on Postgres).
    pub async fn query(&self, filter: &AuditFilter) -> Result<(Vec<AuditRecord>, Option<i64>), ProjectionError> {
        let limit = filter.limit.clamp(1, 500);
        // Times compare as instants (`julianday`), not as text: the stored text's fraction varies in length.
        let rows = sqlx::query(
            "SELECT * FROM audit_entries
              WHERE (?1 IS NULL OR actor_id = ?1)
                AND (?2 IS NULL OR substr(action, 1, length(?2)) = ?2)
                AND (?3 IS NULL OR target_kind = ?3)
                AND (?4 IS NULL OR target_id = ?4)
                AND (?5 IS NULL OR outcome = ?5)
                AND (?6 IS NULL OR julianday(occurred_at) >= julianday(?6))
                AND (?7 IS NULL OR julianday(occurred_at) < julianday(?7))
                AND (?8 IS NULL OR correlation_id = ?8)
                AND seq > ?9
                AND (?11 IS NULL OR seq <= ?11)
              ORDER BY seq LIMIT ?10",
        )
        .bind(&filter.actor)
        .bind(&filter.action_prefix)
        .bind(&filter.target_kind)
        .bind(&filter.target_id)
        .bind(&filter.outcome)
        .bind(filter.from)
        .bind(filter.to)
        .bind(filter.correlation_id)
        .bind(filter.after.unwrap_or(0))
        .bind(i64::from(limit) + 1)
        .bind(filter.through)
        .fetch_all(&self.pool)
        .await?;
        let mut records = Vec::with_capacity(rows.len());
        for row in &rows {
            let (e, previous, hash) = stored(row)?;
            records.push(AuditRecord {
                seq: e.seq,
                position: format!("{}:{}", e.tx, e.gp),
                event_id: e.event_id,
                occurred_at: e.occurred_at,
                actor_id: e.actor_id,
                actor_kind: e.actor_kind,
                actor_name: e.actor_name,
                action: e.action,
                target_kind: e.target_kind,
                target_id: e.target_id,
                target_name: e.target_name,
                outcome: e.outcome,
                source_ip: e.source_ip,
                user_agent: e.user_agent,
                correlation_id: e.correlation_id,
                causation_id: e.causation_id,
                reason: e.reason,
                changes: e.changes,
                prev_hash: hex::encode(previous),
                entry_hash: hex::encode(hash),
            });
        }
        Ok(crate::sql::page(records, limit, |r| r.seq))
    }
}

#[async_trait]
impl CheckpointStore for SqliteAuditTrail {
    async fn unsigned(&self) -> Result<i64, ProjectionError> {
        let unsigned: Option<i64> = sqlx::query_scalar(
            "SELECT coalesce((SELECT max(seq) FROM audit_entries), 0)
                  - coalesce((SELECT max(seq) FROM audit_checkpoints), 0)",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(unsigned.unwrap_or(0))
    }

    async fn write_checkpoint(&self, keys: &AuditKeys) -> Result<Option<i64>, ProjectionError> {
        if !keys.can_sign() {
            return Ok(None);
        }
        // The write lock: one checkpoint at a time, each after the one it reads as the last.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let head: Option<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT seq, entry_hash FROM audit_entries ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *tx)
                .await?;
        let last: Option<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT seq, signature FROM audit_checkpoints ORDER BY id DESC LIMIT 1")
                .fetch_optional(&mut *tx)
                .await?;
        let Some(new) = next_checkpoint(keys, head, last) else { return Ok(None) };
        sqlx::query(
            "INSERT INTO audit_checkpoints (seq, entry_hash, prev_signature, key_id, signature, signed_at, chain_version)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(new.seq)
        .bind(&new.entry_hash)
        .bind(&new.prev_signature)
        .bind(&new.key_id)
        .bind(&new.signature)
        .bind(chrono::Utc::now())
        .bind(CHAIN_VERSION)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(new.seq))
    }
}

impl SqliteAuditTrail {
    /// Checks every checkpoint: linked to the one before, signed by a known key, matching the entry it
    /// signed. The number checked and the first violation.
    pub async fn verify_checkpoints(
        &self,
        keys: &AuditKeys,
    ) -> Result<(u64, Option<CheckpointViolation>), ProjectionError> {
        let rows: Vec<CheckpointRow> = sqlx::query_as(
            "SELECT c.id, c.seq, c.entry_hash, c.prev_signature, c.key_id, c.signature, e.entry_hash, c.chain_version
               FROM audit_checkpoints c LEFT JOIN audit_entries e ON e.seq = c.seq
              ORDER BY c.id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mark = latest_prune(&mut *self.pool.acquire().await?).await?;
        Ok(check_checkpoints(rows, mark.as_ref(), keys))
    }

    /// The checkpoints (of the current chain format) signing entries `first..=last`, for a signed export.
    pub async fn checkpoints_between(&self, first: i64, last: i64) -> Result<Vec<ExportedCheckpoint>, ProjectionError> {
        let rows: Vec<StoredCheckpoint> = sqlx::query_as(
            "SELECT seq, entry_hash, prev_signature, key_id, signature FROM audit_checkpoints
              WHERE seq BETWEEN ? AND ? AND chain_version = ? ORDER BY id",
        )
        .bind(first)
        .bind(last)
        .bind(CHAIN_VERSION)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(exported).collect())
    }

    /// Checks every entry's link and content, their numbering, and that they are exactly the audited
    /// events of the store up to the trail's checkpoint, in order; names the first entry that is wrong.
    pub async fn verify(&self) -> Result<AuditReport, ProjectionError> {
        // One read transaction: one snapshot of the entries, their checkpoint and the events.
        let mut snapshot = self.pool.begin().await?;
        let checkpoint: Option<(Option<i64>, Option<i64>)> =
            sqlx::query_as("SELECT transaction_id, global_position FROM read_model_checkpoints WHERE name = ?")
                .bind(NAME)
                .fetch_optional(&mut *snapshot)
                .await?;
        let through = checkpoint.and_then(|(_, gp)| gp).unwrap_or(0);
        let categories = serde_json::to_string(&AUDITED_CATEGORIES).unwrap_or_default();
        // A pruned trail starts after the last pruned entry, from its recorded link (unless a rebuild has
        // brought the pruned entries back).
        let oldest: Option<i64> =
            sqlx::query_scalar("SELECT min(seq) FROM audit_entries").fetch_one(&mut *snapshot).await?;
        let mut walk = match latest_prune(&mut snapshot).await? {
            Some(mark) if oldest != Some(1) => Walk::after(
                mark.seq,
                mark.entry_hash,
                (mark.position.transaction_id as i64, mark.position.global_position as i64),
            ),
            _ => Walk::after(0, GENESIS.to_vec(), (0, 0)),
        };
        loop {
            let rows = sqlx::query("SELECT * FROM audit_entries WHERE seq >= ? ORDER BY seq LIMIT ?")
                .bind(walk.expected_seq)
                .bind(PAGE)
                .fetch_all(&mut *snapshot)
                .await?;
            let events: Vec<(uuid::Uuid, i64, i64)> = sqlx::query_as(
                "SELECT event_id, transaction_id, global_position FROM events
                  WHERE substr(stream_id, 1, instr(stream_id, '-') - 1) IN (SELECT value FROM json_each(?))
                    AND global_position > ? AND global_position <= ?
                  ORDER BY global_position LIMIT ?",
            )
            .bind(&categories)
            .bind(walk.after_event.1)
            .bind(through)
            .bind(PAGE)
            .fetch_all(&mut *snapshot)
            .await?;
            let mut events = events.into_iter();
            for row in &rows {
                let (entry, previous, hash) = stored(row)?;
                let link = entry.chain_hash(&previous);
                if let Some(violation) = walk.step(&entry, &previous, &hash, &link, events.next()) {
                    return Ok(AuditReport { checked: walk.checked, violation: Some(violation) });
                }
            }
            if rows.len() < PAGE as usize {
                return Ok(walk.finish(events.next()));
            }
        }
    }
}

/// Entries (and events) read per page by [`SqliteAuditTrail::verify`].
const PAGE: i64 = 10_000;

/// The newest prune of the SQLite trail, if any.
async fn latest_prune(conn: &mut SqliteConnection) -> Result<Option<PruneMark>, ProjectionError> {
    let row: Option<(i64, Vec<u8>, i64, i64)> = sqlx::query_as(
        "SELECT through_seq, through_hash, through_tx, through_gp FROM audit_prunes ORDER BY id DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|(seq, entry_hash, tx, gp)| PruneMark {
        seq,
        entry_hash,
        position: eventstore::Position { transaction_id: tx as u64, global_position: gp as u64 },
    }))
}

impl SqliteAuditTrail {
    /// The entries a prune of everything before `before` would remove, as (first, last); the newest entry
    /// always stays (as [`prunable`](super::prunable) on Postgres).
    pub async fn prunable(&self, before: chrono::DateTime<chrono::Utc>) -> Result<Option<(i64, i64)>, ProjectionError> {
        let range: (Option<i64>, Option<i64>) = sqlx::query_as(
            "SELECT min(seq), max(seq) FROM audit_entries
              WHERE julianday(occurred_at) < julianday(?) AND seq < (SELECT max(seq) FROM audit_entries)",
        )
        .bind(before)
        .fetch_one(&self.pool)
        .await?;
        Ok(range.0.zip(range.1))
    }

    /// Deletes the archived entries `first..=last` and records where the trail now starts (as
    /// [`prune`](super::prune) on Postgres).
    pub async fn prune(&self, first: i64, last: i64, archive_sha256: [u8; 32]) -> Result<u64, ProjectionError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let bounds: (Option<i64>, Option<i64>) =
            sqlx::query_as("SELECT min(seq), max(seq) FROM audit_entries").fetch_one(&mut *tx).await?;
        check_prune_range(first, last, bounds)?;
        let (entry_hash, tx_id, gp): (Vec<u8>, i64, i64) =
            sqlx::query_as("SELECT entry_hash, tx, gp FROM audit_entries WHERE seq = ?")
                .bind(last)
                .fetch_one(&mut *tx)
                .await?;
        let deleted = sqlx::query("DELETE FROM audit_entries WHERE seq BETWEEN ? AND ?")
            .bind(first)
            .bind(last)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query(
            "INSERT INTO audit_prunes (through_seq, through_hash, through_tx, through_gp, entries, archive_sha256,
                                       pruned_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(last)
        .bind(&entry_hash)
        .bind(tx_id)
        .bind(gp)
        .bind(i64::try_from(deleted).unwrap_or(i64::MAX))
        .bind(archive_sha256.as_slice())
        .bind(chrono::Utc::now())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(deleted)
    }
}
