//! [`SqliteEventStore`]: the [`EventStore`] contract on SQLite.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tokio::sync::{Mutex, watch};

use super::append::{is_known_id, retried, write};
use super::rows::{select_events, stored_row};
use crate::error::from_sqlx;
use crate::prepare::PreparedAppend;
use crate::store::{Direction, StreamCursor, sql_limit};
use crate::tail_cache::{TailCache, TailCacheLimits};
use crate::{
    AppendResult, Claim, Claims, DEFAULT_MAX_EVENT_BYTES, Error, EventData, EventStore, ExpectedRevision, Position,
    RecordedEvent, Result, StreamAppend, StreamName, Upcasters, VerifyReport,
};

/// Settings of a [`SqliteEventStore`].
#[derive(Debug, Clone)]
pub struct SqliteEventStoreOptions {
    /// Largest event accepted (data plus metadata, bytes).
    pub max_event_bytes: usize,
    /// Upcasters applied on every read.
    pub upcasters: Upcasters,
    /// How much of `$all`'s tail followers share from memory ([`EventStore::read_all_following`]).
    pub tail_cache: TailCacheLimits,
}

impl Default for SqliteEventStoreOptions {
    fn default() -> Self {
        Self {
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            upcasters: Upcasters::new(),
            tail_cache: TailCacheLimits::default(),
        }
    }
}

/// Connections of the pool: readers run side by side in WAL mode; writers take turns.
const CONNECTIONS: u32 = 8;

/// How long a statement waits for another process's write lock before it reports the store busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long opening a store keeps trying while another process holds the file (it is switching the file
/// to WAL, or migrating it): SQLite answers "busy" at once where waiting could deadlock.
const OPEN_PATIENCE: Duration = Duration::from_secs(10);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// The event store on SQLite. Cheap to clone; clones share the pool, the writer's turn and the wake-up
/// channel.
#[derive(Clone)]
pub struct SqliteEventStore {
    pool: SqlitePool,
    /// Appends in this process take turns here, so they never spin on SQLite's busy handler.
    writer: Arc<Mutex<()>>,
    options: Arc<SqliteEventStoreOptions>,
    appended: Arc<watch::Sender<u64>>,
    tail: Arc<TailCache>,
}

/// Creates the store file at `path`, readable and writable by this user only, if it does not exist:
/// the log holds people's names and sealed secrets. SQLite gives its `-wal` and `-shm` files the main
/// file's permissions.
fn create_private(path: &Path) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::Unavailable(sqlx::Error::Io(e))),
    }
}

impl SqliteEventStore {
    /// Opens the database file at `path` (created when missing), applies the migrations, and returns the
    /// store.
    pub async fn open(path: &Path, options: SqliteEventStoreOptions) -> Result<Self> {
        create_private(path)?;
        let started = std::time::Instant::now();
        loop {
            let opened = async {
                let pool = SqlitePoolOptions::new()
                    .max_connections(CONNECTIONS)
                    .connect_with(Self::connect_options(path))
                    .await
                    .map_err(from_sqlx)?;
                Self::migrate(&pool).await?;
                Ok::<_, Error>(pool)
            };
            match opened.await {
                Ok(pool) => return Ok(Self::new(pool, options)),
                // Another process opening the same new file at once: its migration, or ours, ran into the
                // other's lock or tables; a fresh start finds them applied.
                Err(e) if racing(&e) && started.elapsed() < OPEN_PATIENCE => {
                    tracing::debug!(error = %e, "opening the SQLite store again");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// How every connection to a store file is opened: WAL (readers never block the writer), every
    /// commit synced (an acknowledged append survives a power cut), and a busy timeout for the write
    /// lock another process may hold.
    pub fn connect_options(path: &Path) -> SqliteConnectOptions {
        SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
    }

    /// A store on `pool`, migrated already ([`SqliteEventStore::migrate`]).
    pub fn new(pool: SqlitePool, options: SqliteEventStoreOptions) -> Self {
        let (appended, _) = watch::channel(0);
        let tail = Arc::new(TailCache::new(options.tail_cache));
        Self { pool, writer: Arc::default(), options: Arc::new(options), appended: Arc::new(appended), tail }
    }

    /// Applies the schema migrations in `migrations/sqlite`.
    pub async fn migrate(pool: &SqlitePool) -> Result<()> {
        MIGRATOR.run(pool).await.map_err(Error::Migration)
    }

    /// The connection pool, for callers that keep their own tables next to the store.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Wakes this process's readers as if it had appended.
    pub fn notify_appended(&self) {
        self.appended.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Writes `parts` in one transaction, all or nothing. A retry of the whole append (every part's ids
    /// already in its stream) returns the original results; some parts retried and others new is a
    /// partial duplicate.
    async fn append_parts(&self, parts: &[PreparedAppend]) -> Result<Vec<AppendResult>> {
        let _turn = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(from_sqlx)?;
        let written = async {
            let commit: i64 = sqlx::query_scalar("UPDATE commits SET last = last + 1 RETURNING last")
                .fetch_one(&mut *tx)
                .await
                .map_err(from_sqlx)?;
            let mut results = Vec::with_capacity(parts.len());
            for part in parts {
                results.push(write(&mut tx, part, commit).await?);
            }
            Ok(results)
        }
        .await;
        match written {
            Ok(results) => {
                tx.commit().await.map_err(from_sqlx)?;
                self.notify_appended();
                Ok(results)
            }
            Err(e) => {
                // Roll back before the next writer's turn.
                let rolled_back = tx.rollback().await;
                let refused = matches!(e, Error::WrongExpectedRevision { .. } | Error::ClaimTaken { .. });
                if !refused && !is_known_id(&e) {
                    return Err(e);
                }
                rolled_back.map_err(from_sqlx)?;
                self.explain(parts, e).await
            }
        }
    }

    /// An append was refused (an expectation, a claim) or ran into stored event ids: a retry of the whole
    /// append (every part's ids already in its stream, whatever the stream and its claims did since)
    /// returns the original results; some parts retried and others new is a partial duplicate; an id in
    /// another stream says so; otherwise the refusal stands.
    async fn explain(&self, parts: &[PreparedAppend], refusal: Error) -> Result<Vec<AppendResult>> {
        let mut conn = self.pool.acquire().await.map_err(from_sqlx)?;
        let mut earlier = Vec::with_capacity(parts.len());
        for part in parts {
            earlier.push(retried(&mut conn, part).await?);
        }
        if earlier.iter().all(Option::is_some) {
            return Ok(earlier.into_iter().flatten().collect());
        }
        if earlier.iter().all(Option::is_none) && !is_known_id(&refusal) {
            return Err(refusal);
        }
        // Some parts were retries and this one is new: not a retry of the whole append.
        let new = parts.iter().zip(&earlier).find(|(_, e)| e.is_none()).map(|(part, _)| &part.stream);
        Err(Error::PartialDuplicate { stream: new.unwrap_or(&parts[0].stream).clone() })
    }

    fn decode_all(&self, rows: Vec<sqlx::sqlite::SqliteRow>) -> Result<Vec<RecordedEvent>> {
        rows.iter().map(|row| crate::decode::decode_stored(stored_row(row)?, &self.options.upcasters)).collect()
    }

    async fn last_position(&self) -> Result<Option<Position>> {
        let row: Option<(i64, i64)> =
            sqlx::query_as("SELECT transaction_id, global_position FROM events ORDER BY global_position DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await
                .map_err(from_sqlx)?;
        Ok(row.map(|(tx, gp)| Position { transaction_id: tx as u64, global_position: gp as u64 }))
    }
}

/// An error another process opening the same file at once can cause: busy, or a migration that ran into
/// the other's tables (never a missing or changed migration).
fn racing(error: &Error) -> bool {
    use sqlx::migrate::MigrateError;
    error.is_unavailable()
        || matches!(error, Error::Migration(MigrateError::Execute(_) | MigrateError::ExecuteMigration(..)))
}

#[async_trait]
impl EventStore for SqliteEventStore {
    #[tracing::instrument(skip_all, fields(stream = %stream, expected = %expected, events = events.len()))]
    async fn append_claiming(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: Vec<EventData>,
        claims: Claims,
    ) -> Result<AppendResult> {
        let prepared = PreparedAppend::new(stream, expected, &events, claims, self.options.max_event_bytes)?;
        let mut results = self.append_parts(std::slice::from_ref(&prepared)).await?;
        results.pop().ok_or(Error::EmptyAppend)
    }

    #[tracing::instrument(skip_all, fields(streams = appends.len()))]
    async fn append_multi(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>> {
        if appends.is_empty() {
            return Err(Error::EmptyAppend);
        }
        let parts = appends
            .iter()
            .map(|a| {
                PreparedAppend::new(&a.stream, a.expected, &a.events, Claims::none(), self.options.max_event_bytes)
            })
            .collect::<Result<Vec<_>>>()?;
        let streams: std::collections::HashSet<&StreamName> = parts.iter().map(|p| &p.stream).collect();
        if streams.len() != parts.len() {
            return Err(Error::InvalidEvent {
                event_id: uuid::Uuid::nil(),
                reason: "a stream appears twice in one multi-stream append",
            });
        }
        self.append_parts(&parts).await
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
                "WHERE e.stream_id = ? AND e.stream_revision >= ? ORDER BY e.stream_revision LIMIT ?"
            )),
            Direction::Backwards => sqlx::query(select_events!(
                "WHERE e.stream_id = ? AND e.stream_revision <= ? ORDER BY e.stream_revision DESC LIMIT ?"
            )),
        };
        let rows = query
            .bind(stream.as_str())
            .bind(from)
            .bind(sql_limit(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(from_sqlx)?;
        self.decode_all(rows)
    }

    async fn read_all(&self, after: Option<Position>, limit: usize) -> Result<Vec<RecordedEvent>> {
        // Positions are allocated in commit order (one writer at a time), so the global position alone
        // orders `$all` and nothing can commit below a position already visible.
        let after = after.unwrap_or(Position::START);
        let rows = sqlx::query(select_events!("WHERE e.global_position > ? ORDER BY e.global_position LIMIT ?"))
            .bind(i64::try_from(after.global_position).unwrap_or(i64::MAX))
            .bind(sql_limit(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(from_sqlx)?;
        self.decode_all(rows)
    }

    async fn read_all_following(&self, after: Option<Position>, limit: usize) -> Result<Vec<RecordedEvent>> {
        self.tail.read_following(after, limit, |after, limit| self.read_all(after, limit)).await
    }

    async fn head(&self) -> Result<Option<Position>> {
        self.last_position().await
    }

    async fn committed_head(&self) -> Result<Option<Position>> {
        self.last_position().await
    }

    async fn held_claims(&self) -> Result<Vec<(Claim, StreamName)>> {
        let rows: Vec<(String, String, String)> =
            sqlx::query_as("SELECT scope, value, stream_id FROM claims ORDER BY scope, value")
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
