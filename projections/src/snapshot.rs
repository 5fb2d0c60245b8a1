//! Snapshots of in-memory read models: what a model knew after one event of `$all`, so that a start
//! replays only the events after it instead of the whole log.
//!
//! A snapshot names the event it was taken after by position, stream, revision, id and chain link (the
//! stream's hash chain covers the stream's whole history up to that event). Loading one reads that event
//! back from the log: when the log there is not that event (another database, a restored backup, a
//! rewritten log), when the body's digest does not match, or when the snapshot was written by another
//! format of the model, it is ignored and the model is replayed from the start. A snapshot is only ever
//! a shortcut: the log stays the truth.

use std::time::Duration;

use chrono::{DateTime, Utc};
use eventstore::{Direction, EventStore, Hash, Position, RecordedEvent, StreamCursor, StreamName};
use sha2::{Digest, Sha256};
use sqlx::{PgPool, SqlitePool};
use uuid::Uuid;

use crate::ProjectionError;

/// The event a snapshot was taken after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    /// Its `$all` position: the replay resumes after it.
    pub position: Position,
    /// Its stream.
    pub stream: String,
    /// Its revision in the stream.
    pub revision: u64,
    /// Its id.
    pub event_id: Uuid,
    /// Its link in the stream's hash chain.
    pub hash: Hash,
}

impl Anchor {
    /// The anchor of `event`.
    pub fn of(event: &RecordedEvent) -> Self {
        Self {
            position: event.position,
            stream: event.stream.as_str().to_owned(),
            revision: event.revision,
            event_id: event.event_id,
            hash: event.hash,
        }
    }
}

/// One stored snapshot.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The model's name.
    pub name: String,
    /// The model's snapshot format and the build that wrote it: another format is never loaded.
    pub format: String,
    /// The event it was taken after.
    pub anchor: Anchor,
    /// What [`crate::MemoryProjection::save_state`] wrote.
    pub body: Vec<u8>,
    /// When it was taken.
    pub taken_at: DateTime<Utc>,
}

/// When a runner takes snapshots, and where it keeps them.
#[derive(Debug, Clone)]
pub struct SnapshotPolicy {
    /// Where snapshots are kept.
    pub tables: SnapshotTables,
    /// The format written and the only one loaded: the model's format and the build.
    pub format: String,
    /// A snapshot is taken once this many events were read since the last one...
    pub every_events: u64,
    /// ...and at least this long after it.
    pub min_interval: Duration,
}

/// The snapshots' table, on whichever backend holds the read models.
#[derive(Debug, Clone)]
pub enum SnapshotTables {
    /// `es.snapshots` on PostgreSQL.
    Postgres(PgPool),
    /// `snapshots` on SQLite.
    Sqlite(SqlitePool),
}

/// Snapshots of other formats are kept this long after they were taken (an older instance of a rolling
/// upgrade still loads its own), then deleted by the next save.
const OTHER_FORMATS_KEPT: Duration = Duration::from_secs(7 * 24 * 3600);

type Row = (i64, i64, String, i64, Uuid, Vec<u8>, Vec<u8>, Vec<u8>, DateTime<Utc>);

impl SnapshotTables {
    /// The snapshot of `name` in `format`, if one was saved; its body is checked against its digest.
    pub async fn load(&self, name: &str, format: &str) -> Result<Option<Snapshot>, ProjectionError> {
        const COLUMNS: &str =
            "transaction_id, global_position, stream, revision, event_id, event_hash, body, body_sha256, taken_at";
        let row: Option<Row> = match self {
            Self::Postgres(pool) => {
                let sql = format!("SELECT {COLUMNS} FROM es.snapshots WHERE name = $1 AND format = $2");
                sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(name).bind(format).fetch_optional(pool).await?
            }
            Self::Sqlite(pool) => {
                let sql = format!("SELECT {COLUMNS} FROM snapshots WHERE name = ?1 AND format = ?2");
                sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(name).bind(format).fetch_optional(pool).await?
            }
        };
        let Some((tx, gp, stream, revision, event_id, hash, body, digest, taken_at)) = row else {
            return Ok(None);
        };
        if Sha256::digest(&body).as_slice() != digest.as_slice() {
            return Err(ProjectionError::Snapshot(format!("the snapshot of {name} does not match its digest")));
        }
        let hash: Hash = hash
            .try_into()
            .map_err(|_| ProjectionError::Snapshot(format!("the snapshot of {name} has a malformed chain link")))?;
        let anchor = Anchor {
            position: Position { transaction_id: tx as u64, global_position: gp as u64 },
            stream,
            revision: revision as u64,
            event_id,
            hash,
        };
        Ok(Some(Snapshot { name: name.to_owned(), format: format.to_owned(), anchor, body, taken_at }))
    }

    /// Keeps `snapshot` as its model's snapshot in its format, unless one taken further along is kept
    /// already (another instance's); deletes the model's snapshots of other formats that are old.
    pub async fn save(&self, snapshot: &Snapshot) -> Result<(), ProjectionError> {
        let Snapshot { name, format, anchor, body, taken_at } = snapshot;
        let digest = Sha256::digest(body).to_vec();
        let tx = i64::try_from(anchor.position.transaction_id).unwrap_or(i64::MAX);
        let gp = i64::try_from(anchor.position.global_position).unwrap_or(i64::MAX);
        let revision = i64::try_from(anchor.revision).unwrap_or(i64::MAX);
        let stale_before = *taken_at - chrono::Duration::from_std(OTHER_FORMATS_KEPT).unwrap_or_default();
        let (table, sigil) = match self {
            Self::Postgres(_) => ("es.snapshots", '$'),
            Self::Sqlite(_) => ("snapshots", '?'),
        };
        let p = |n: usize| format!("{sigil}{n}");
        let upsert = format!(
            "INSERT INTO {table} AS s (name, format, transaction_id, global_position, stream, revision, event_id, \
             event_hash, body, body_sha256, taken_at) VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}) \
             ON CONFLICT (name, format) DO UPDATE SET transaction_id = excluded.transaction_id, \
             global_position = excluded.global_position, stream = excluded.stream, revision = excluded.revision, \
             event_id = excluded.event_id, event_hash = excluded.event_hash, body = excluded.body, \
             body_sha256 = excluded.body_sha256, taken_at = excluded.taken_at \
             WHERE (s.transaction_id, s.global_position) <= (excluded.transaction_id, excluded.global_position)",
            p(1),
            p(2),
            p(3),
            p(4),
            p(5),
            p(6),
            p(7),
            p(8),
            p(9),
            p(10),
            p(11)
        );
        let prune = format!("DELETE FROM {table} WHERE name = {} AND format <> {} AND taken_at < {}", p(1), p(2), p(3));
        macro_rules! run {
            ($pool:expr) => {{
                let mut db = $pool.begin().await?;
                sqlx::query(sqlx::AssertSqlSafe(upsert))
                    .bind(name)
                    .bind(format)
                    .bind(tx)
                    .bind(gp)
                    .bind(&anchor.stream)
                    .bind(revision)
                    .bind(anchor.event_id)
                    .bind(anchor.hash.as_slice())
                    .bind(body.as_slice())
                    .bind(digest.as_slice())
                    .bind(*taken_at)
                    .execute(&mut *db)
                    .await?;
                sqlx::query(sqlx::AssertSqlSafe(prune))
                    .bind(name)
                    .bind(format)
                    .bind(stale_before)
                    .execute(&mut *db)
                    .await?;
                db.commit().await?;
            }};
        }
        match self {
            Self::Postgres(pool) => run!(pool),
            Self::Sqlite(pool) => run!(pool),
        }
        Ok(())
    }
}

/// Whether the log holds, at the snapshot's position, the very event the snapshot was taken after: the
/// reason when it does not.
pub(crate) async fn anchored(store: &dyn EventStore, anchor: &Anchor) -> Result<(), String> {
    let stream = StreamName::parse(&anchor.stream).map_err(|e| format!("its stream name is invalid: {e}"))?;
    let events = store
        .read_stream(&stream, Direction::Forwards, StreamCursor::Revision(anchor.revision), 1)
        .await
        .map_err(|e| format!("its event could not be read: {e}"))?;
    let Some(event) = events.first().filter(|e| e.revision == anchor.revision) else {
        return Err(format!("the log has no event {}@{}", anchor.stream, anchor.revision));
    };
    if Anchor::of(event) != *anchor {
        return Err(format!(
            "the log's event {}@{} is not the one it was taken after (id, position or chain link differ)",
            anchor.stream, anchor.revision
        ));
    }
    Ok(())
}
