//! `bench eventstore` on SQLite, the embedded default: the store's appends against plain INSERTs into a
//! table in the same file (same durability: WAL, every commit synced), and its `$all` replay against a
//! plain ordered SELECT drain. SQLite has one writer at a time, so the baseline's writers take turns too.
//! No targets: the issue asks that the table shows both backends; the ratios say what the store costs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use eventstore::{EventStore, ExpectedRevision, SqliteEventStore, SqliteEventStoreOptions, StreamName};
use futures_util::TryStreamExt;
use sqlx::SqlitePool;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::eventstore_bench::{store_appends, store_replay};
use crate::payload;
use crate::report::Row;
use crate::runner::{Outcome, RunStats, median, run_writers};

/// What to measure.
pub(crate) struct Plan {
    pub(crate) seconds: u64,
    pub(crate) rounds: usize,
    pub(crate) replay_events: u64,
    pub(crate) replay_rounds: usize,
    pub(crate) appends: bool,
    pub(crate) replay: bool,
}

const BASELINE_DDL: &str = "CREATE TABLE bench_plain (
    id INTEGER PRIMARY KEY, event_id BLOB NOT NULL, stream_id TEXT NOT NULL, event_type TEXT NOT NULL,
    data TEXT NOT NULL, metadata TEXT NOT NULL)";

pub(crate) async fn run(plan: Plan) -> anyhow::Result<Vec<Row>> {
    let dir = tempfile::Builder::new().prefix("mgw-bench-sqlite-").tempdir()?;
    let store =
        Arc::new(SqliteEventStore::open(&dir.path().join("events.db"), SqliteEventStoreOptions::default()).await?);
    let pool = store.pool().clone();
    sqlx::query(BASELINE_DDL).execute(&pool).await?;
    let duration = Duration::from_secs(plan.seconds);
    let mut rows = Vec::new();
    let scenarios: &[(usize, u64)] = if plan.appends { &[(1, 1), (16, 1), (1, 100), (16, 100)] } else { &[] };
    for &(writers, batch) in scenarios {
        let (mut base, mut ours, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..plan.rounds {
            let b = baseline_inserts(&pool, writers, batch, duration).await?.events_per_sec();
            let o = store_appends(&store, writers, batch, duration).await?.events_per_sec();
            ratios.push(o / b.max(1.0));
            base.push(b);
            ours.push(o);
        }
        eprintln!("sqlite appends {writers}w×{batch}: store {ours:?} vs INSERT {base:?}");
        rows.push(Row::compared(
            format!("SQLite: append {batch} event/tx, {writers} writer(s), distinct streams (vs plain INSERT)"),
            median(&mut ours),
            "events/s",
            median(&mut base),
            median(&mut ratios),
        ));
    }
    if plan.replay {
        let total = load(&store, plan.replay_events).await?;
        let (mut drains, mut ours, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..plan.replay_rounds {
            let d = select_drain(&pool, total).await?;
            let o = store_replay(store.clone(), total).await?;
            ratios.push(o / d.max(1.0));
            drains.push(d);
            ours.push(o);
        }
        eprintln!("sqlite replay: store {ours:?} vs SELECT {drains:?}");
        rows.push(Row::compared(
            format!("SQLite: replay $all ({total} events) into an in-memory fold (vs ordered SELECT drain)"),
            median(&mut ours),
            "events/s",
            median(&mut drains),
            median(&mut ratios),
        ));
    }
    Ok(rows)
}

/// A plain INSERT of `batch` rows per transaction (one statement), writers taking turns as SQLite's one
/// writer requires.
async fn baseline_inserts(
    pool: &SqlitePool,
    writers: usize,
    batch: u64,
    duration: Duration,
) -> anyhow::Result<RunStats> {
    let (pool, turn) = (pool.clone(), Arc::new(Mutex::new(())));
    run_writers(writers, duration, move |w, _| {
        let (pool, turn) = (pool.clone(), turn.clone());
        async move {
            let stream = format!("plain-{w}");
            let (ids, data, metadata) = payload::columns(batch);
            // All rows in one statement, as the store writes them.
            let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO bench_plain (event_id, stream_id, event_type, data, metadata) ",
            );
            insert.push_values(0..ids.len(), |mut row, i| {
                row.push_bind(ids[i])
                    .push_bind(&stream)
                    .push_bind("ServerRegistered")
                    .push_bind(&data[i])
                    .push_bind(&metadata[i]);
            });
            let _turn = turn.lock().await;
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
            insert.build().execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(Outcome { events: batch, conflicts: 0 })
        }
    })
    .await
}

/// Fills the store up to `events` events in 1000-event appends; returns how many it holds.
async fn load(store: &Arc<SqliteEventStore>, events: u64) -> anyhow::Result<u64> {
    let existing: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(store.pool()).await?;
    let to_load = events.saturating_sub(existing as u64);
    let started = Instant::now();
    for b in 0..to_load.div_ceil(1000) {
        let n = 1000.min(to_load - b * 1000);
        let stream = StreamName::from_parts("replay", Uuid::now_v7())?;
        store.append(&stream, ExpectedRevision::NoStream, payload::many(n)).await?;
    }
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(store.pool()).await?;
    eprintln!("sqlite: loaded {to_load} events in {:.1}s; {total} in the store", started.elapsed().as_secs_f64());
    Ok(total as u64)
}

/// The lower bound: the same ordered rows, streamed by one SELECT and counted.
async fn select_drain(pool: &SqlitePool, expected: u64) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut rows = sqlx::query(
        "SELECT transaction_id, global_position, event_id, stream_id, stream_revision, event_type, schema_version,
                data, metadata, hash FROM events ORDER BY global_position",
    )
    .fetch(pool);
    let mut count = 0u64;
    while rows.try_next().await?.is_some() {
        count += 1;
    }
    anyhow::ensure!(count == expected, "SELECT returned {count} rows, expected {expected}");
    Ok(count as f64 / started.elapsed().as_secs_f64())
}
