//! Table read models on SQLite, for the embedded default: a [`SqliteProjection`] keeps its tables in the
//! event store's own file, and a [`SqliteRunner`] applies each batch and its checkpoint in one write
//! transaction.
//!
//! Simpler than the Postgres runner because the embedded gateway is one process: no leader lock, no
//! standby. A projection whose version changed is rebuilt in place before the runner serves: its tables
//! are dropped, created again and filled by replay (an embedded installation is small; the Postgres
//! runner's shadow schema and swap keep a large one serving meanwhile).

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use eventstore::{EventStore, Position, RecordedEvent, SqliteEventStore};
use sqlx::{SqliteConnection, SqlitePool};
use tokio::sync::watch;

use crate::table_runner::{report_progress, run_until_halted, split_page};
use crate::{EventFilter, ProjectionError, ProjectionStatus, RunnerOptions};

/// A read model in SQLite tables, folded from `$all` in batches.
#[async_trait]
pub trait SqliteProjection: Send + Sync {
    /// Its name: its checkpoint's, and the prefix of its tables (`<name>_…`).
    fn name(&self) -> &str;
    /// Its version: another version than the one that wrote the tables rebuilds them.
    fn version(&self) -> u32;
    /// The events it handles.
    fn filter(&self) -> &EventFilter;
    /// Its tables, dropped before a rebuild.
    fn tables(&self) -> &[&'static str];
    /// Creates its tables (in the runner's transaction).
    async fn create(&self, conn: &mut SqliteConnection) -> Result<(), ProjectionError>;
    /// Applies a batch of handled events, in order (in the runner's transaction, with the checkpoint).
    async fn apply(&self, conn: &mut SqliteConnection, events: &[RecordedEvent]) -> Result<(), ProjectionError>;
}

/// Runs one SQLite table projection.
pub struct SqliteRunner {
    store: SqliteEventStore,
    projection: Arc<dyn SqliteProjection>,
    options: RunnerOptions,
    status: watch::Sender<ProjectionStatus>,
}

impl SqliteRunner {
    /// A runner of `projection` over `store`, writing into the store's file.
    pub fn new(store: SqliteEventStore, projection: Arc<dyn SqliteProjection>, options: RunnerOptions) -> Self {
        let (status, _) = watch::channel(ProjectionStatus::new(projection.name()));
        Self { store, projection, options, status }
    }

    /// Follows the runner's state.
    pub fn status(&self) -> watch::Receiver<ProjectionStatus> {
        self.status.subscribe()
    }

    /// Runs until dropped, or until an error that running again cannot fix (returned, and reported as
    /// [`ProjectionState::Halted`]).
    pub async fn run(self) -> ProjectionError {
        run_until_halted(self.projection.name(), &self.status, self.options.retry_after, || self.run_term()).await
    }

    async fn run_term(&self) -> Result<std::convert::Infallible, ProjectionError> {
        let projection = self.projection.as_ref();
        let name = projection.name();
        let pool = self.store.pool();
        let mut position = self.prepare(pool).await?;
        let head_at_start = self.store.committed_head().await?;
        self.report(position, 0, position >= head_at_start);
        let mut woken = self.store.appended();
        let mut last_read: Option<Instant> = None;
        let mut wait = eventstore::FollowWait::new(self.options.poll_interval);
        loop {
            if let Some(pause) = last_read.and_then(|at| self.options.min_read_interval.checked_sub(at.elapsed())) {
                tokio::time::sleep(pause).await;
            }
            let page = self.store.read_all_following(position, self.options.batch_size).await?;
            last_read = (page.len() < self.options.batch_size).then(Instant::now);
            if page.is_empty() {
                self.report(position, 0, true);
                let woke = tokio::time::timeout(wait.next(), woken.changed()).await.is_ok_and(|r| r.is_ok());
                wait.waited(woke);
                continue;
            }
            wait.found();
            let (handled, through, unknown) = split_page(projection.filter(), name, position, page);
            if through != position {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                if !handled.is_empty() {
                    projection.apply(&mut tx, &handled).await?;
                }
                save_checkpoint(&mut tx, name, through, projection.version()).await?;
                tx.commit().await?;
                position = through;
            }
            self.report(position, handled.len() as u64, unknown.is_none() && position >= head_at_start);
            if let Some(error) = unknown {
                return Err(error);
            }
        }
    }

    /// The checkpoint to go on from; a read model that is missing or of another version is (re)created
    /// empty first.
    async fn prepare(&self, pool: &SqlitePool) -> Result<Option<Position>, ProjectionError> {
        let projection = self.projection.as_ref();
        let name = projection.name();
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        let row: Option<(Option<i64>, Option<i64>, i64)> = sqlx::query_as(
            "SELECT transaction_id, global_position, version FROM read_model_checkpoints WHERE name = ?",
        )
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        let version = i64::from(projection.version());
        if let Some((tx_id, gp, stored)) = row
            && stored == version
        {
            tx.commit().await?;
            return Ok(tx_id.zip(gp).map(|(t, g)| Position { transaction_id: t as u64, global_position: g as u64 }));
        }
        if row.is_some() {
            tracing::info!(projection = name, "rebuilding: the projection's version changed");
        }
        for table in projection.tables() {
            // Table names are the projection's own constants, never input.
            let drop = format!("DROP TABLE IF EXISTS {table}");
            sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&mut *tx).await?;
        }
        projection.create(&mut tx).await?;
        save_checkpoint(&mut tx, name, None, projection.version()).await?;
        tx.commit().await?;
        Ok(None)
    }

    fn report(&self, checkpoint: Option<Position>, applied: u64, caught_up: bool) {
        report_progress(self.projection.name(), &self.status, checkpoint, applied, caught_up);
    }
}

async fn save_checkpoint(
    conn: &mut SqliteConnection,
    name: &str,
    position: Option<Position>,
    version: u32,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "INSERT INTO read_model_checkpoints (name, transaction_id, global_position, version) VALUES (?, ?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET transaction_id = excluded.transaction_id,
                                          global_position = excluded.global_position, version = excluded.version",
    )
    .bind(name)
    .bind(position.map(|p| p.transaction_id as i64))
    .bind(position.map(|p| p.global_position as i64))
    .bind(i64::from(version))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// How far the SQLite read model `name` has applied `$all` (`None`: nothing yet, or no such model).
pub async fn load_sqlite_checkpoint(pool: &SqlitePool, name: &str) -> Result<Option<Position>, ProjectionError> {
    let row: Option<(Option<i64>, Option<i64>)> =
        sqlx::query_as("SELECT transaction_id, global_position FROM read_model_checkpoints WHERE name = ?")
            .bind(name)
            .fetch_optional(pool)
            .await?;
    Ok(row.and_then(|(t, g)| t.zip(g)).map(|(t, g)| Position { transaction_id: t as u64, global_position: g as u64 }))
}

/// Rebuilds the SQLite read model of `projection` from the log, now: its tables and checkpoint are dropped,
/// created again and folded up to the head. Run it while no gateway serves from the file (the embedded
/// gateway is one process). Returns the events applied.
pub async fn rebuild_sqlite(
    store: &SqliteEventStore,
    projection: Arc<dyn SqliteProjection>,
) -> Result<u64, ProjectionError> {
    let pool = store.pool();
    sqlx::query("DELETE FROM read_model_checkpoints WHERE name = ?").bind(projection.name()).execute(pool).await?;
    let runner = SqliteRunner::new(store.clone(), projection.clone(), RunnerOptions::default());
    let name = projection.name().to_owned();
    runner.prepare(pool).await?;
    let mut position = None;
    let mut applied = 0u64;
    loop {
        let page = store.read_all(position, runner.options.batch_size).await?;
        if page.is_empty() {
            return Ok(applied);
        }
        let (handled, through, unknown) = split_page(projection.filter(), &name, position, page);
        if let Some(error) = unknown {
            return Err(error);
        }
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        if !handled.is_empty() {
            projection.apply(&mut tx, &handled).await?;
        }
        save_checkpoint(&mut tx, &name, through, projection.version()).await?;
        tx.commit().await?;
        (position, applied) = (through, applied + handled.len() as u64);
    }
}
