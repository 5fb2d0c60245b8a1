//! [`PgEventStore`]: the [`EventStore`] contract on PostgreSQL.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::PgPool;
use tokio::sync::watch;

use super::append::AppendFailure::Raced;
use super::append::{PreparedAppend, append_prepared};
use super::rows::{decode_row, select_events};
use super::unit_of_work::PgUnitOfWork;
use crate::error::from_sqlx;
use crate::store::{Direction, StreamCursor};
use crate::{
    AppendResult, DEFAULT_MAX_EVENT_BYTES, Error, EventData, EventStore, ExpectedRevision, Position, RecordedEvent,
    Result, StreamAppend, StreamName, Upcasters, VerifyReport,
};

/// Settings of a [`PgEventStore`].
#[derive(Debug, Clone)]
pub struct PgEventStoreOptions {
    /// Largest event accepted (data plus metadata, bytes).
    pub max_event_bytes: usize,
    /// Upcasters applied on every read.
    pub upcasters: Upcasters,
}

impl Default for PgEventStoreOptions {
    fn default() -> Self {
        Self { max_event_bytes: DEFAULT_MAX_EVENT_BYTES, upcasters: Upcasters::new() }
    }
}

/// The event store on PostgreSQL. Cheap to clone; clones share the pool and the wake-up channel.
#[derive(Clone)]
pub struct PgEventStore {
    pub(super) pool: PgPool,
    pub(super) options: Arc<PgEventStoreOptions>,
    pub(super) appended: Arc<watch::Sender<u64>>,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

impl PgEventStore {
    /// A store on `pool`. Run [`PgEventStore::migrate`] first (or `sqlx migrate run`).
    pub fn new(pool: PgPool, options: PgEventStoreOptions) -> Self {
        let (appended, _) = watch::channel(0);
        Self { pool, options: Arc::new(options), appended: Arc::new(appended) }
    }

    /// Applies the schema migrations in `migrations/postgres`.
    pub async fn migrate(pool: &PgPool) -> Result<()> {
        MIGRATOR.run(pool).await.map_err(Error::Migration)
    }

    /// The connection pool, for callers that keep their own tables next to the store.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Starts a transaction in which appends share the caller's other writes (a uniqueness reservation,
    /// say): all of it commits, or none.
    pub async fn begin(&self) -> Result<PgUnitOfWork> {
        let tx = self.pool.begin().await.map_err(from_sqlx)?;
        Ok(PgUnitOfWork::new(tx, self.clone()))
    }

    pub(super) fn prepare(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: &[EventData],
    ) -> Result<PreparedAppend> {
        PreparedAppend::new(stream, expected, events, self.options.max_event_bytes)
    }

    pub(super) fn signal_appended(&self) {
        self.appended.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn decode_all(&self, rows: Vec<sqlx::postgres::PgRow>) -> Result<Vec<RecordedEvent>> {
        rows.iter().map(|row| decode_row(row, &self.options.upcasters)).collect()
    }
}

/// How many times an append is retried when an identical append raced it on the event-id index.
const RACED_RETRIES: usize = 1;

#[async_trait]
impl EventStore for PgEventStore {
    #[tracing::instrument(skip_all, fields(stream = %stream, expected = %expected, events = events.len()))]
    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: Vec<EventData>,
    ) -> Result<AppendResult> {
        let prepared = self.prepare(stream, expected, &events)?;
        let mut attempt = 0;
        loop {
            let mut conn = self.pool.acquire().await.map_err(from_sqlx)?;
            match append_prepared(&mut conn, &prepared).await {
                Err(Raced) if attempt < RACED_RETRIES => attempt += 1,
                result => {
                    let result = result.map_err(|e| e.into_error(&prepared))?;
                    if !result.idempotent {
                        self.signal_appended();
                    }
                    return Ok(result);
                }
            }
        }
    }

    #[tracing::instrument(skip_all, fields(streams = appends.len()))]
    async fn append_multi(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>> {
        let mut attempt = 0;
        loop {
            let mut unit = self.begin().await?;
            match unit.append_multi_raw(&appends).await {
                Err(Raced) if attempt < RACED_RETRIES => attempt += 1,
                Err(other) => return Err(other.into_error_multi(&appends)),
                Ok(results) => {
                    unit.commit().await?;
                    return Ok(results);
                }
            }
        }
    }

    async fn read_stream(
        &self,
        stream: &StreamName,
        direction: Direction,
        from: StreamCursor,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let from = match from {
            StreamCursor::Start => 0,
            StreamCursor::End => i64::MAX,
            StreamCursor::Revision(r) => i64::try_from(r).unwrap_or(i64::MAX),
        };
        let query = match direction {
            Direction::Forwards => sqlx::query(select_events!(
                "WHERE stream_id = $1 AND stream_revision >= $2 ORDER BY stream_revision LIMIT $3"
            )),
            Direction::Backwards => sqlx::query(select_events!(
                "WHERE stream_id = $1 AND stream_revision <= $2 ORDER BY stream_revision DESC LIMIT $3"
            )),
        };
        let rows = query
            .bind(stream.as_str())
            .bind(from)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(from_sqlx)?;
        self.decode_all(rows)
    }

    async fn read_all(&self, after: Option<Position>, limit: usize) -> Result<Vec<RecordedEvent>> {
        let after = after.unwrap_or(Position::START);
        // Runs as its own statement, outside any transaction holding an xid, so its snapshot's xmin is
        // the oldest transaction still running anywhere in the cluster.
        let rows = sqlx::query(select_events!(
            "WHERE (transaction_id, global_position) > ($1::bigint::text::xid8, $2)
               AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
             ORDER BY transaction_id, global_position
             LIMIT $3"
        ))
        .bind(i64::try_from(after.transaction_id).unwrap_or(i64::MAX))
        .bind(i64::try_from(after.global_position).unwrap_or(i64::MAX))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(from_sqlx)?;
        self.decode_all(rows)
    }

    async fn head(&self) -> Result<Option<Position>> {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT transaction_id::text::bigint, global_position FROM es.events
              WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())
              ORDER BY transaction_id DESC, global_position DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(from_sqlx)?;
        Ok(row.map(|(tx, gp)| Position { transaction_id: tx as u64, global_position: gp as u64 }))
    }

    async fn verify_stream(&self, stream: &StreamName) -> Result<VerifyReport> {
        super::verify::verify(&self.pool, Some(stream.as_str())).await
    }

    async fn verify_all(&self) -> Result<VerifyReport> {
        super::verify::verify(&self.pool, None).await
    }

    fn appended(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }
}
