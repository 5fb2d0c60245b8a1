//! `bench eventstore`: appends and replay against plain-SQL baselines on the same server.
//!
//! Baselines: a bare table with the same payload columns, written by one sqlx `INSERT` per
//! transaction (or 100 rows through `UNNEST`), and `COPY (SELECT … ORDER BY …) TO STDOUT` drained by
//! the client for reads. Runs alternate baseline and store for several rounds; medians are reported.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use eventstore::{
    Error, EventData, EventStore, ExpectedRevision, PgEventStore, PgEventStoreOptions, StreamName, Subscription,
    SubscriptionOptions,
};
use futures_util::TryStreamExt;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tests::{PostgresOptions, PostgresServer};
use uuid::Uuid;

use crate::payload;
use crate::report::Row;
use crate::runner::{Outcome, RunStats, median, run_writers};

/// Options of `bench eventstore`.
#[derive(Debug, clap::Args)]
pub(crate) struct Options {
    /// Seconds per append run.
    #[arg(long, default_value_t = 4)]
    seconds: u64,
    /// Rounds of (baseline, store) per append scenario; medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Events loaded for the replay benchmark.
    #[arg(long, default_value_t = 1_000_000)]
    replay_events: u64,
    /// Replay runs per contender; medians are reported.
    #[arg(long, default_value_t = 3)]
    replay_rounds: usize,
    /// Skip the append scenarios (measure replay only).
    #[arg(long)]
    skip_appends: bool,
    /// Run only these append scenarios, as `<writers>x<events per append>` (e.g. `16x1`); all when empty.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Lanes of the store's group appends (see `PgEventStoreOptions::append_lanes`); the store's default
    /// when absent.
    #[arg(long)]
    append_lanes: Option<usize>,
    /// Skip the replay benchmark.
    #[arg(long)]
    skip_replay: bool,
    /// Which backends to measure.
    #[arg(long, value_enum, default_value = "both")]
    backend: Backends,
}

/// The backends `bench eventstore` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Backends {
    /// PostgreSQL (production).
    Postgres,
    /// SQLite (the embedded default).
    Sqlite,
    /// Both, Postgres first.
    Both,
}

const BASELINE_DDL: &str = "CREATE TABLE bench_plain (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id uuid NOT NULL, stream_id text NOT NULL, event_type text NOT NULL, data json NOT NULL, metadata json NOT NULL)";

/// A second, informative baseline: the same plain INSERT into a table with the uniqueness an event store
/// cannot do without (event id; stream and revision), to show what the store costs beyond its indexes.
const INDEXED_DDL: &str = "CREATE TABLE bench_indexed (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id uuid NOT NULL UNIQUE, stream_id text NOT NULL, revision bigint NOT NULL, event_type text NOT NULL,
    data json NOT NULL, metadata json NOT NULL, UNIQUE (stream_id, revision))";

/// Server settings for a write-heavy database, as docker-compose.yml sets them: room for the WAL between
/// checkpoints, so runs measure appends rather than checkpoints and the creation of WAL segments.
pub(crate) fn write_heavy_settings() -> Vec<(String, String)> {
    [("max_wal_size", "8GB"), ("min_wal_size", "2GB"), ("checkpoint_timeout", "30min"), ("wal_buffers", "64MB")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(crate) async fn run(options: Options) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    if options.backend != Backends::Sqlite {
        rows.extend(run_postgres(&options).await?);
    }
    if options.backend != Backends::Postgres {
        let sqlite = crate::sqlite_bench::Plan {
            seconds: options.seconds,
            rounds: options.rounds,
            replay_events: options.replay_events,
            replay_rounds: options.replay_rounds,
            appends: !options.skip_appends,
            replay: !options.skip_replay,
        };
        rows.extend(crate::sqlite_bench::run(sqlite).await?);
    }
    Ok(rows)
}

async fn run_postgres(options: &Options) -> anyhow::Result<Vec<Row>> {
    let server = PostgresServer::start(PostgresOptions { durable: true, settings: write_heavy_settings() })?;
    let db = server.create_database().await?;
    let pool = PgPoolOptions::new().max_connections(24).connect(&db.url).await?;
    PgEventStore::migrate(&pool).await?;
    sqlx::query(BASELINE_DDL).execute(&pool).await?;
    sqlx::query(INDEXED_DDL).execute(&pool).await?;
    let mut store_options = PgEventStoreOptions::default();
    store_options.append_lanes = options.append_lanes.unwrap_or(store_options.append_lanes);
    let store = Arc::new(PgEventStore::new(pool.clone(), store_options));
    let duration = Duration::from_secs(options.seconds);
    let mut rows = Vec::new();

    let scenarios: &[(usize, u64, f64)] =
        if options.skip_appends { &[] } else { &[(1, 1, 0.9), (16, 1, 0.9), (1, 100, 0.8), (16, 100, 0.8)] };
    let selected = |writers: usize, batch: u64| {
        options.only.is_empty() || options.only.iter().any(|o| *o == format!("{writers}x{batch}"))
    };
    for &(writers, batch, min_ratio) in scenarios.iter().filter(|(w, b, _)| selected(*w, *b)) {
        let (mut base, mut ours, mut p99, mut indexed) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..options.rounds {
            base.push(baseline_inserts(&pool, writers, batch, duration).await?.events_per_sec());
            indexed.push(indexed_inserts(&pool, writers, batch, duration).await?.events_per_sec());
            let stats = store_appends(&store, writers, batch, duration).await?;
            ours.push(stats.events_per_sec());
            p99.push(stats.percentile_ms(99.0));
        }
        let baseline_name = if batch == 1 { "INSERT" } else { "UNNEST" };
        eprintln!("appends {writers}w×{batch}: store {ours:?} vs {baseline_name} {base:?}");
        // Pair each round with its own baselines before any median sorts the lists.
        let mut ratios: Vec<f64> = ours.iter().zip(&base).map(|(o, b)| o / b.max(1.0)).collect();
        let mut vs_indexed: Vec<f64> = ours.iter().zip(&indexed).map(|(o, i)| o / i.max(1.0)).collect();
        rows.push(Row::against(
            format!("append {batch} event/tx, {writers} writer(s), distinct streams (vs plain {baseline_name})"),
            median(&mut ours),
            "events/s",
            median(&mut base),
            median(&mut ratios),
            min_ratio,
        ));
        rows.push(Row::info(
            format!(
                "  same, plain {baseline_name} into a table with the same unique indexes (store ÷ it = {:.2}×)",
                median(&mut vs_indexed)
            ),
            median(&mut indexed),
            "events/s",
        ));
        rows.push(Row::info(
            format!("  store p99 latency, {batch} event/tx, {writers} writer(s)"),
            median(&mut p99),
            "ms",
        ));
    }

    if !options.skip_appends && options.only.is_empty() {
        let contended = one_stream_contention(&store, 16, duration).await?;
        rows.push(Row::info("append 1 event/tx, 16 writers, one stream", contended.events_per_sec(), "events/s"));
        let attempts = contended.ops + contended.conflicts;
        rows.push(Row::info(
            "  conflict rate (WrongExpectedRevision / attempts)",
            100.0 * contended.conflicts as f64 / attempts.max(1) as f64,
            "%",
        ));
    }

    if !options.skip_replay {
        rows.extend(replay(&store, &pool, options).await?);
    }
    Ok(rows)
}

/// Plain INSERTs into the bare table: `batch` rows per transaction.
async fn baseline_inserts(pool: &PgPool, writers: usize, batch: u64, duration: Duration) -> anyhow::Result<RunStats> {
    let pool = pool.clone();
    run_writers(writers, duration, move |w, _| {
        let pool = pool.clone();
        async move {
            let stream = format!("plain-{w}");
            if batch == 1 {
                let (data, metadata) = payload::texts(0);
                sqlx::query(
                    "INSERT INTO bench_plain (event_id, stream_id, event_type, data, metadata) VALUES ($1, $2, $3, $4::json, $5::json)",
                )
                .bind(EventData::deterministic_id(Uuid::now_v7(), 0))
                .bind(&stream)
                .bind("ServerRegistered")
                .bind(data)
                .bind(metadata)
                .execute(&pool)
                .await?;
            } else {
                let (ids, data, metadata) = payload::columns(batch);
                sqlx::query(
                    "INSERT INTO bench_plain (event_id, stream_id, event_type, data, metadata)
                     SELECT i, $2, 'ServerRegistered', d::json, m::json FROM UNNEST($1::uuid[], $3::text[], $4::text[]) AS u(i, d, m)",
                )
                .bind(&ids)
                .bind(&stream)
                .bind(&data)
                .bind(&metadata)
                .execute(&pool)
                .await?;
            }
            Ok(Outcome { events: batch, conflicts: 0 })
        }
    })
    .await
}

/// Plain INSERTs into the table with the event store's unique indexes, each writer numbering its own stream.
async fn indexed_inserts(pool: &PgPool, writers: usize, batch: u64, duration: Duration) -> anyhow::Result<RunStats> {
    let pool = pool.clone();
    let run = Uuid::now_v7();
    run_writers(writers, duration, move |w, i| {
        let pool = pool.clone();
        async move {
            let stream = format!("indexed-{run}-{w}");
            let (ids, data, metadata) = payload::columns(batch);
            let revisions: Vec<i64> = (0..batch).map(|n| (i * batch + n) as i64).collect();
            sqlx::query(
                "INSERT INTO bench_indexed (event_id, stream_id, revision, event_type, data, metadata)
                 SELECT i, $2, r, 'ServerRegistered', d::json, m::json
                   FROM UNNEST($1::uuid[], $3::bigint[], $4::text[], $5::text[]) AS u(i, r, d, m)",
            )
            .bind(&ids)
            .bind(&stream)
            .bind(&revisions)
            .bind(&data)
            .bind(&metadata)
            .execute(&pool)
            .await?;
            Ok(Outcome { events: batch, conflicts: 0 })
        }
    })
    .await
}

/// Store appends, each writer to its own stream with an exact expected revision.
pub(crate) async fn store_appends<S: EventStore>(
    store: &Arc<S>,
    writers: usize,
    batch: u64,
    duration: Duration,
) -> anyhow::Result<RunStats> {
    let streams: Arc<Vec<(StreamName, AtomicU64)>> = Arc::new(
        (0..writers)
            .map(|_| Ok((StreamName::from_parts("bench", Uuid::now_v7())?, AtomicU64::new(u64::MAX))))
            .collect::<anyhow::Result<_>>()?,
    );
    let store = store.clone();
    run_writers(writers, duration, move |w, _| {
        let (store, streams) = (store.clone(), streams.clone());
        async move {
            let (stream, last) = &streams[w];
            let previous = last.load(Ordering::Relaxed);
            let expected = ExpectedRevision::after((previous != u64::MAX).then_some(previous));
            let result = store.append(stream, expected, payload::many(batch)).await?;
            last.store(result.last_revision, Ordering::Relaxed);
            Ok(Outcome { events: batch, conflicts: 0 })
        }
    })
    .await
}

/// `writers` writers appending to one stream; each conflict is retried with the revision it reports.
async fn one_stream_contention(
    store: &Arc<PgEventStore>,
    writers: usize,
    duration: Duration,
) -> anyhow::Result<RunStats> {
    let stream = StreamName::from_parts("bench", Uuid::now_v7())?;
    let first = store.append(&stream, ExpectedRevision::NoStream, payload::many(1)).await?;
    let hint = Arc::new(AtomicU64::new(first.last_revision));
    let store = store.clone();
    run_writers(writers, duration, move |_, _| {
        let (store, stream, hint) = (store.clone(), stream.clone(), hint.clone());
        async move {
            let mut conflicts = 0;
            loop {
                let expected = hint.load(Ordering::Relaxed);
                match store.append(&stream, ExpectedRevision::Exact(expected), payload::many(1)).await {
                    Ok(r) => {
                        hint.fetch_max(r.last_revision, Ordering::Relaxed);
                        return Ok(Outcome { events: 1, conflicts });
                    }
                    Err(Error::WrongExpectedRevision { actual: Some(actual), .. }) => {
                        conflicts += 1;
                        hint.fetch_max(actual, Ordering::Relaxed);
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
    })
    .await
}

/// Loads `replay_events`, then times a full `$all` replay into an in-memory fold against a COPY drain.
async fn replay(store: &Arc<PgEventStore>, pool: &PgPool, options: &Options) -> anyhow::Result<Vec<Row>> {
    let total = load(store, pool, options.replay_events).await?;

    let (mut copy_rates, mut ours) = (Vec::new(), Vec::new());
    for _ in 0..options.replay_rounds {
        copy_rates.push(copy_drain(pool, total).await?);
        ours.push(store_replay(store.clone(), total).await?);
    }
    eprintln!("replay: store {ours:?} vs COPY {copy_rates:?}");
    let mut ratios: Vec<f64> = ours.iter().zip(&copy_rates).map(|(o, b)| o / b.max(1.0)).collect();
    Ok(vec![Row::against(
        format!("replay $all ({total} events) into an in-memory fold (vs COPY drain)"),
        median(&mut ours),
        "events/s",
        median(&mut copy_rates),
        median(&mut ratios),
        0.75,
    )])
}

/// Fills the store up to `events` events, in 1000-event appends to new `replay-*` streams from two
/// writers; returns how many events it holds.
pub(crate) async fn load(store: &Arc<PgEventStore>, pool: &PgPool, events: u64) -> anyhow::Result<u64> {
    let existing: i64 = sqlx::query_scalar("SELECT count(*) FROM es.events").fetch_one(pool).await?;
    let to_load = events.saturating_sub(existing as u64);
    let started = Instant::now();
    let batches = to_load.div_ceil(1000);
    let loaders: Vec<_> = (0..2)
        .map(|l| {
            let store = store.clone();
            tokio::spawn(async move {
                for b in (l..batches).step_by(2) {
                    let n = 1000.min(to_load - b * 1000);
                    let stream = StreamName::from_parts("replay", Uuid::now_v7())?;
                    store.append(&stream, ExpectedRevision::NoStream, payload::many(n)).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for l in loaders {
        l.await??;
    }
    sqlx::query("VACUUM ANALYZE es.events").execute(pool).await?;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM es.events").fetch_one(pool).await?;
    eprintln!("loaded {to_load} events in {:.1}s; {total} in the store", started.elapsed().as_secs_f64());
    Ok(total as u64)
}

/// The server-side lower bound: the same ordered query through COPY, drained by the client.
pub(crate) async fn copy_drain(pool: &PgPool, expected: u64) -> anyhow::Result<f64> {
    let mut conn = pool.acquire().await?;
    let started = Instant::now();
    let mut stream = conn
        .copy_out_raw(
            "COPY (SELECT transaction_id::text::bigint, global_position, event_id, stream_id, stream_revision, event_type,
                          schema_version, data::text, metadata::text, hash
                     FROM es.events ORDER BY transaction_id, global_position) TO STDOUT",
        )
        .await?;
    let mut rows = 0u64;
    while let Some(chunk) = stream.try_next().await? {
        rows += chunk.iter().filter(|b| **b == b'\n').count() as u64;
    }
    anyhow::ensure!(rows == expected, "COPY returned {rows} rows, expected {expected}");
    Ok(rows as f64 / started.elapsed().as_secs_f64())
}

/// Reads `$all` through a subscription (the projections' path) into a fold: events per stream and per
/// type, bytes of data.
pub(crate) async fn store_replay(store: Arc<dyn EventStore>, expected: u64) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut per_stream: HashMap<StreamName, u64> = HashMap::new();
    let mut per_type: HashMap<String, u64> = HashMap::new();
    let mut bytes = 0usize;
    let options = SubscriptionOptions { page_size: 5000, ..Default::default() };
    let mut subscription = Subscription::new(store, None, options);
    for _ in 0..expected {
        let event = subscription.next().await?;
        bytes += event.data.len();
        *per_type.entry(event.event_type).or_default() += 1;
        *per_stream.entry(event.stream).or_default() += 1;
    }
    let count: u64 = per_stream.values().sum();
    anyhow::ensure!(count == expected, "replay folded {count} events, expected {expected} ({bytes} bytes)");
    Ok(count as f64 / started.elapsed().as_secs_f64())
}
