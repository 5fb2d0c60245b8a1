//! [`PgEventStore`]: the [`EventStore`] contract on PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::sync::watch;

use super::append::{AppendFailure, PreparedAppend, append_claiming, append_prepared, explain_refusal};
use super::append_group::{AppendGroups, Completion, Entry};
use super::head_cache::HeadCache;
use super::index_plans::INDEX_DRIVEN_PLANS;
use super::rows::{decode_row, select_events};
use super::unit_of_work::PgUnitOfWork;
use crate::error::from_sqlx;
use crate::store::{Direction, StreamCursor, sql_limit};
use crate::tail_cache::{TailCache, TailCacheLimits};
use crate::{
    AppendResult, Claim, Claims, DEFAULT_MAX_EVENT_BYTES, Error, EventData, EventStore, ExpectedRevision, Position,
    RecordedEvent, Result, StreamAppend, StreamName, Upcasters, VerifyReport,
};

/// Settings of a [`PgEventStore`].
#[derive(Debug, Clone)]
pub struct PgEventStoreOptions {
    /// Largest event accepted (data plus metadata, bytes).
    pub max_event_bytes: usize,
    /// Upcasters applied on every read.
    pub upcasters: Upcasters,
    /// Standalone appends that run at once. Appends beyond that wait and then share one statement and one
    /// commit (`append_group.rs`): under concurrency that costs less than a transaction each. 0 turns
    /// grouping off. Keep it below the pool size.
    pub append_lanes: usize,
    /// How long an append waits for a group before it runs alone (every lane may be stuck behind a row
    /// lock held by a caller that is itself waiting for this append).
    pub group_wait: Duration,
    /// How much of `$all`'s tail followers share from memory ([`EventStore::read_all_following`]).
    pub tail_cache: TailCacheLimits,
}

impl Default for PgEventStoreOptions {
    fn default() -> Self {
        Self {
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            upcasters: Upcasters::new(),
            append_lanes: 2,
            group_wait: Duration::from_millis(100),
            tail_cache: TailCacheLimits::default(),
        }
    }
}

/// The event store on PostgreSQL. Cheap to clone; clones share the pool and the wake-up channel.
#[derive(Clone)]
pub struct PgEventStore {
    pub(super) pool: PgPool,
    /// Connections for the statements that insert streams and claims for several callers: they give up
    /// waiting for a lock after [`GROUP_LOCK_TIMEOUT`] and plan by key ([`INDEX_DRIVEN_PLANS`]).
    pub(super) group_pool: PgPool,
    /// Connections for reading `$all` while following it: every subscriber reads a few times per
    /// second per append burst, and a custom plan per read cost more than the read
    /// ([`INDEX_DRIVEN_PLANS`]: planned once per connection).
    feed_pool: PgPool,
    pub(super) options: Arc<PgEventStoreOptions>,
    pub(super) appended: Arc<watch::Sender<u64>>,
    pub(super) heads: Arc<HeadCache>,
    pub(super) groups: Arc<AppendGroups>,
    tail: Arc<TailCache>,
}

/// How long a group statement waits for a row lock before it fails and its appends run alone. Group
/// statements skip locked stream rows, but an insert (a new stream, a claim) waits for a competing
/// transaction that inserted the same key; should that transaction wait for the group (a unit of work
/// whose caller's next append joined it), the timeout breaks the cycle.
const GROUP_LOCK_TIMEOUT: &str = "1s";

/// Connections reading `$all` at once: the in-process subscribers (a gateway runs four or five).
const FEED_CONNECTIONS: u32 = 4;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

impl PgEventStore {
    /// A store on `pool`. Run [`PgEventStore::migrate`] first (or `sqlx migrate run`).
    pub fn new(pool: PgPool, options: PgEventStoreOptions) -> Self {
        let (appended, _) = watch::channel(0);
        let groups = Arc::new(AppendGroups::new(options.append_lanes, options.group_wait));
        // Connected on first use: a store that never groups never opens one.
        // The side pools give up acquiring when the main pool does: an outage surfaces, with the same delay.
        let acquire_timeout = pool.options().get_acquire_timeout();
        let group_pool = PgPoolOptions::new()
            .acquire_timeout(acquire_timeout)
            // A lane's group or lone append, plus lone appends with claims that take no lane.
            .max_connections(u32::try_from(options.append_lanes + 4).unwrap_or(u32::MAX))
            .idle_timeout(Duration::from_secs(60))
            .connect_lazy_with(
                (*pool.connect_options())
                    .clone()
                    .options([("lock_timeout", GROUP_LOCK_TIMEOUT)])
                    .options(INDEX_DRIVEN_PLANS),
            );
        let feed_pool = PgPoolOptions::new()
            .acquire_timeout(acquire_timeout)
            .max_connections(FEED_CONNECTIONS)
            .idle_timeout(Duration::from_secs(60))
            .connect_lazy_with((*pool.connect_options()).clone().options(INDEX_DRIVEN_PLANS));
        Self {
            pool,
            group_pool,
            feed_pool,
            tail: Arc::new(TailCache::new(options.tail_cache)),
            options: Arc::new(options),
            appended: Arc::new(appended),
            heads: Arc::default(),
            groups,
        }
    }

    /// Applies the schema migrations in `migrations/postgres`.
    pub async fn migrate(pool: &PgPool) -> Result<()> {
        MIGRATOR.run(pool).await.map_err(Error::Migration)
    }

    /// The position of the one row `sql` selects, if any.
    async fn last_position(&self, sql: &'static str) -> Result<Option<Position>> {
        let row: Option<(i64, i64)> = sqlx::query_as(sql).fetch_optional(&self.pool).await.map_err(from_sqlx)?;
        Ok(row.map(|(tx, gp)| Position { transaction_id: tx as u64, global_position: gp as u64 }))
    }

    /// The connection pool, for callers that keep their own tables next to the store.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Standalone appends waiting for a lane to run them as a group (see [`PgEventStoreOptions::append_lanes`]):
    /// a gauge of write pressure.
    pub fn waiting_appends(&self) -> usize {
        self.groups.waiting()
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
        PreparedAppend::new(stream, expected, events, Claims::none(), self.options.max_event_bytes)
    }

    /// Wakes this process's readers (subscriptions, projection runners) as if it had appended: for a
    /// signal that another process appended, such as a relayed NATS message.
    pub fn notify_appended(&self) {
        self.signal_appended();
    }

    pub(super) fn signal_appended(&self) {
        self.appended.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// One attempt, in autocommit: at most a head read and one append statement; with claims, maybe a
    /// transaction.
    async fn append_once(&self, prepared: &PreparedAppend) -> Result<AppendResult, AppendFailure> {
        let acquire = |pool: &PgPool| {
            let pool = pool.clone();
            async move { pool.acquire().await.map_err(|e| AppendFailure::Failed(from_sqlx(e))) }
        };
        if prepared.claims.is_empty() {
            return append_prepared(&mut *acquire(&self.pool).await?, prepared, &self.heads).await;
        }
        // Claims are taken by the append's statement when it creates the stream, on a group connection
        // (custom plans; it gives up waiting for a lock). The statement skips a locked stream row, so an
        // append to an existing stream with claims, which must wait for the lock instead, runs in a
        // transaction, as does one whose claim turns out held or whose statement gave up waiting.
        if prepared.expected == ExpectedRevision::NoStream {
            // With no group connection free, the transaction below does the same on the main pool.
            if let Ok(mut conn) = acquire(&self.group_pool).await {
                match append_prepared(&mut conn, prepared, &self.heads).await {
                    Err(AppendFailure::ClaimHeld) => {}
                    Err(AppendFailure::Failed(e)) if e.is_unavailable() => {}
                    other => return other,
                }
            }
        }
        append_claiming(&mut *acquire(&self.pool).await?, prepared, &self.heads).await
    }

    /// A multi-stream append hit stored ids and rolled back: a retry of the whole append (every part's
    /// ids already in its stream: the original results), or say which part is wrong.
    async fn explain_multi(&self, appends: &[StreamAppend]) -> Result<Vec<AppendResult>> {
        let mut conn = self.pool.acquire().await.map_err(from_sqlx)?;
        let mut results = Vec::with_capacity(appends.len());
        let mut new_part = None;
        for a in appends {
            let prepared = self.prepare(&a.stream, a.expected, &a.events)?;
            match explain_refusal(&mut conn, &prepared).await {
                Ok(result) => results.push(result),
                Err(AppendFailure::Failed(e @ (Error::PartialDuplicate { .. } | Error::DuplicateEventId { .. }))) => {
                    return Err(e);
                }
                Err(_) => new_part = new_part.or(Some(a.stream.clone())),
            }
        }
        match new_part {
            // Some parts were retries and this one was new: not a retry of the whole append.
            Some(stream) => Err(Error::PartialDuplicate { stream }),
            None => Ok(results),
        }
    }

    fn decode_all(&self, rows: Vec<sqlx::postgres::PgRow>) -> Result<Vec<RecordedEvent>> {
        rows.iter().map(|row| decode_row(row, &self.options.upcasters)).collect()
    }
}

/// How many times an append runs again after losing a race that its next run resolves. Each lost race
/// means another append succeeded, so the store as a whole always makes progress; the bound only keeps
/// one unlucky `Any` writer from looping forever under contention.
const RACE_RETRIES: usize = 50;

#[async_trait]
impl EventStore for PgEventStore {
    #[tracing::instrument(skip_all, fields(stream = %stream, expected = %expected, events = events.len()))]
    async fn append_claiming(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: Vec<EventData>,
        claims: Claims,
    ) -> Result<AppendResult> {
        let prepared = PreparedAppend::new(stream, expected, &events, claims, self.options.max_event_bytes)?;
        // Under concurrency, join a group; alone, or when the group could not write it, run it alone.
        let (prepared, _lane) = match self.groups.groupable(self, &prepared) {
            None => (prepared, None),
            Some(head) => match AppendGroups::enter(self, prepared, head) {
                Entry::Lane(lane, prepared) => (*prepared, Some(lane)),
                Entry::Queued(ticket) => match AppendGroups::wait(self, ticket).await {
                    Some(Completion::Done(result)) => return Ok(result),
                    Some(Completion::Alone(prepared)) => (*prepared, None),
                    None => return Err(Error::GroupAbandoned),
                },
            },
        };
        for _ in 0..RACE_RETRIES {
            match self.append_once(&prepared).await {
                Ok(result) => {
                    if !result.idempotent {
                        self.signal_appended();
                    }
                    return Ok(result);
                }
                Err(AppendFailure::KnownIds) => {
                    let mut conn = self.pool.acquire().await.map_err(from_sqlx)?;
                    match explain_refusal(&mut conn, &prepared).await {
                        Ok(result) => return Ok(result),
                        Err(AppendFailure::Failed(e)) => return Err(e),
                        // Not there after all (the other writer rolled back): run again.
                        Err(_) => continue,
                    }
                }
                // (`append_once` answers a held claim itself.)
                Err(AppendFailure::Raced | AppendFailure::ClaimHeld) => continue,
                Err(AppendFailure::Failed(e)) => return Err(e),
            }
        }
        Err(prepared.lost_race())
    }

    #[tracing::instrument(skip_all, fields(streams = appends.len()))]
    async fn append_multi(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>> {
        for _ in 0..RACE_RETRIES {
            let mut unit = self.begin().await?;
            match unit.append_multi_raw(&appends).await {
                Ok(results) => {
                    unit.commit().await?;
                    return Ok(results);
                }
                // (No part takes claims.)
                Err(AppendFailure::Raced | AppendFailure::ClaimHeld) => continue,
                Err(AppendFailure::KnownIds) => return self.explain_multi(&appends).await,
                Err(AppendFailure::Failed(e)) => return Err(e),
            }
        }
        Err(appends.first().map_or(Error::EmptyAppend, StreamAppend::stream_conflict))
    }

    async fn read_stream(
        &self,
        stream: &StreamName,
        direction: Direction,
        from: StreamCursor,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let from = from.sql_bound();
        let query = match direction {
            Direction::Forwards => sqlx::query(select_events!(
                "WHERE e.stream_id = $1 AND e.stream_revision >= $2 ORDER BY e.stream_revision LIMIT $3"
            )),
            Direction::Backwards => sqlx::query(select_events!(
                "WHERE e.stream_id = $1 AND e.stream_revision <= $2 ORDER BY e.stream_revision DESC LIMIT $3"
            )),
        };
        let rows = query
            .bind(stream.as_str())
            .bind(from)
            .bind(sql_limit(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(from_sqlx)?;
        let events = self.decode_all(rows)?;
        // The newest event read may be the head: remember it for the next append's chain link.
        if let Some(newest) = events.iter().max_by_key(|e| e.revision) {
            self.heads.put(stream.as_str(), newest.revision, newest.hash);
        }
        Ok(events)
    }

    async fn read_all(&self, after: Option<Position>, limit: usize) -> Result<Vec<RecordedEvent>> {
        let after = after.unwrap_or(Position::START);
        // Runs as its own statement, outside any transaction holding an xid: below the horizon, every
        // transaction of this database that could still append has ended (migration 0011).
        let rows = sqlx::query(select_events!(
            "WHERE (e.transaction_id, e.global_position) > ($1::bigint::text::xid8, $2)
               AND e.transaction_id < es.read_horizon()
             ORDER BY e.transaction_id, e.global_position
             LIMIT $3"
        ))
        .bind(i64::try_from(after.transaction_id).unwrap_or(i64::MAX))
        .bind(i64::try_from(after.global_position).unwrap_or(i64::MAX))
        .bind(sql_limit(limit))
        .fetch_all(&self.feed_pool)
        .await
        .map_err(from_sqlx)?;
        self.decode_all(rows)
    }

    async fn read_all_following(&self, after: Option<Position>, limit: usize) -> Result<Vec<RecordedEvent>> {
        self.tail.read_following(after, limit, |after, limit| self.read_all(after, limit)).await
    }

    async fn head(&self) -> Result<Option<Position>> {
        self.last_position(
            "SELECT e.transaction_id::text::bigint AS tx, e.global_position FROM es.events e
              WHERE e.transaction_id < es.read_horizon()
              ORDER BY e.transaction_id DESC, e.global_position DESC LIMIT 1",
        )
        .await
    }

    async fn committed_head(&self) -> Result<Option<Position>> {
        self.last_position(
            "SELECT e.transaction_id::text::bigint AS tx, e.global_position FROM es.events e
              ORDER BY e.transaction_id DESC, e.global_position DESC LIMIT 1",
        )
        .await
    }

    async fn held_claims(&self) -> Result<Vec<(Claim, StreamName)>> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            r#"SELECT scope, value, stream_id FROM es.claims ORDER BY scope COLLATE "C", value COLLATE "C""#,
        )
        .fetch_all(&self.pool)
        .await
        .map_err(from_sqlx)?;
        crate::claim::held(rows)
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
