//! `bench pipeline`: the read side. The NATS relay's throughput, and replays of the store into an
//! in-memory projection (against the COPY drain of the same rows) and into a table projection.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use eventstore::relay::{NatsFeedOptions, NatsSubscription, Relay, RelayOptions};
use eventstore::{EventStore, PgEventStore, PgEventStoreOptions, RecordedEvent, SubscriptionOptions};
use projections::{
    EventFilter, MemoryProjection, MemoryRunner, ProjectionError, RunnerOptions, TableProjection, TableRunner,
};
use sqlx::PgConnection;
use sqlx::postgres::PgPoolOptions;
use tests::{NatsServer, PostgresOptions, PostgresServer};

use crate::eventstore_bench::{copy_drain, load, write_heavy_settings};
use crate::report::Row;
use crate::runner::median;

/// Options of `bench pipeline`.
#[derive(Debug, clap::Args)]
pub(crate) struct Options {
    /// Events in the store for the replays.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Events published by the relay run (the first ones of the store).
    #[arg(long, default_value_t = 200_000)]
    relay_events: u64,
    /// Replay runs per contender; medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Seconds of appends at 500 events/s for the append → visible latency.
    #[arg(long, default_value_t = 10)]
    latency_seconds: u64,
}

/// The deadline of one measured run: a run that takes longer is broken, not slow.
const RUN_DEADLINE: Duration = Duration::from_secs(600);

pub(crate) async fn run(options: Options) -> anyhow::Result<Vec<Row>> {
    let server = PostgresServer::start(PostgresOptions { durable: true, settings: write_heavy_settings() })?;
    let db = server.create_database().await?;
    let pool = PgPoolOptions::new().max_connections(24).connect(&db.url).await?;
    PgEventStore::migrate(&pool).await?;
    let store = Arc::new(PgEventStore::new(pool.clone(), PgEventStoreOptions::default()));
    let total = load(&store, &pool, options.events.max(options.relay_events)).await?;
    let mut rows = Vec::new();

    let (mut copy, mut memory, mut table) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..options.rounds {
        copy.push(copy_drain(&pool, total).await?);
        memory.push(memory_replay(&store, total).await?);
        table.push(table_replay(&store, &pool, total, round).await?);
    }
    eprintln!("replay: memory {memory:?}, table {table:?}, COPY {copy:?}");
    let mut ratios: Vec<f64> = memory.iter().zip(&copy).map(|(m, c)| m / c.max(1.0)).collect();
    rows.push(Row::against(
        format!("replay {total} events into an in-memory projection (vs COPY drain)"),
        median(&mut memory),
        "events/s",
        median(&mut copy),
        median(&mut ratios),
        0.75,
    ));
    rows.push(Row::at_least(
        format!("replay {total} events into a table projection (per-stream upsert, batches of 2000)"),
        median(&mut table),
        "events/s",
        30_000.0,
    ));

    // In a database of its own, so the relay has no backlog to publish first.
    let latency_db = server.create_database().await?;
    let (p50, p99, count) = append_to_visible(&latency_db.url, options.latency_seconds).await?;
    rows.push(Row::info(
        format!("append → visible in another instance via NATS, p50 ({count} events at 500/s)"),
        p50,
        "ms",
    ));
    rows.push(Row::at_most("  same, p99 (from the append's return: commit excluded)", p99, "ms", 25.0));

    let relayed = relay_throughput(&store, options.relay_events.min(total)).await?;
    rows.push(Row::at_least(
        format!("relay: {} events published to JetStream and acknowledged", options.relay_events.min(total)),
        relayed,
        "events/s",
        20_000.0,
    ));
    Ok(rows)
}

/// Events per stream: the shape of the authorization model's fold.
struct Counts {
    filter: EventFilter,
    per_stream: HashMap<String, u64>,
}

impl MemoryProjection for Counts {
    fn name(&self) -> &str {
        "bench_counts"
    }
    fn filter(&self) -> &EventFilter {
        &self.filter
    }
    fn apply(&mut self, event: &RecordedEvent) -> Result<(), ProjectionError> {
        // Look up before inserting: a key is allocated once per stream, not once per event.
        match self.per_stream.get_mut(event.stream.as_str()) {
            Some(count) => *count += 1,
            None => {
                self.per_stream.insert(event.stream.to_string(), 1);
            }
        }
        Ok(())
    }
}

async fn memory_replay(store: &Arc<PgEventStore>, total: u64) -> anyhow::Result<f64> {
    let projection = Counts { filter: EventFilter::new(["replay"], ["ServerRegistered"]), per_stream: HashMap::new() };
    let options = SubscriptionOptions { page_size: 5000, ..Default::default() };
    let started = Instant::now();
    let runner = MemoryRunner::new(store.clone(), projection, options);
    let (model, mut status) = (runner.model(), runner.status());
    let task = tokio::spawn(runner.run());
    tokio::time::timeout(RUN_DEADLINE, status.wait_for(|s| s.is_ready())).await??;
    let elapsed = started.elapsed().as_secs_f64();
    task.abort();
    let folded: u64 = model.read().map_err(|_| anyhow::anyhow!("poisoned model"))?.per_stream.values().sum();
    anyhow::ensure!(folded == total, "the in-memory projection folded {folded} events, expected {total}");
    Ok(total as f64 / elapsed)
}

/// Per-stream counts in a table: one upsert per batch, rows folded per stream first (as the registry
/// and audit read models will write).
struct StreamCounts {
    name: String,
    filter: EventFilter,
}

#[async_trait]
impl TableProjection for StreamCounts {
    fn name(&self) -> &str {
        &self.name
    }
    fn version(&self) -> u32 {
        1
    }
    fn filter(&self) -> &EventFilter {
        &self.filter
    }
    async fn create(&self, tx: &mut PgConnection) -> Result<(), ProjectionError> {
        sqlx::query(
            "CREATE TABLE counts (stream text PRIMARY KEY, events bigint NOT NULL, last_revision bigint NOT NULL)",
        )
        .execute(tx)
        .await?;
        Ok(())
    }
    async fn apply(&self, tx: &mut PgConnection, events: &[RecordedEvent]) -> Result<(), ProjectionError> {
        let mut folded: HashMap<&str, (i64, i64)> = HashMap::new();
        for e in events {
            let entry = folded.entry(e.stream.as_str()).or_default();
            entry.0 += 1;
            entry.1 = entry.1.max(e.revision as i64);
        }
        let (streams, (counts, revisions)): (Vec<&str>, (Vec<i64>, Vec<i64>)) = folded.into_iter().unzip();
        sqlx::query(
            "INSERT INTO counts (stream, events, last_revision)
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[])
             ON CONFLICT (stream) DO UPDATE
                SET events = counts.events + excluded.events, last_revision = excluded.last_revision",
        )
        .bind(&streams)
        .bind(&counts)
        .bind(&revisions)
        .execute(tx)
        .await?;
        Ok(())
    }
}

async fn table_replay(store: &Arc<PgEventStore>, pool: &sqlx::PgPool, total: u64, round: usize) -> anyhow::Result<f64> {
    let name = format!("bench_counts_{round}");
    let table = format!("{}.counts", projections::schema_of(&name));
    let projection = Arc::new(StreamCounts { name, filter: EventFilter::new(["replay"], ["ServerRegistered"]) });
    let options = RunnerOptions { batch_size: 2000, ..Default::default() };
    let started = Instant::now();
    let runner = TableRunner::new((**store).clone(), projection, options);
    let mut status = runner.status();
    let task = tokio::spawn(runner.run());
    tokio::time::timeout(RUN_DEADLINE, status.wait_for(|s| s.is_ready())).await??;
    let elapsed = started.elapsed().as_secs_f64();
    task.abort();
    let folded: i64 =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COALESCE(sum(events), 0)::bigint FROM {table}")))
            .fetch_one(pool)
            .await?;
    anyhow::ensure!(folded as u64 == total, "the table projection folded {folded} events, expected {total}");
    Ok(total as f64 / elapsed)
}

/// Starts a relay over a store holding at least `events` events and times it until JetStream holds them.
async fn relay_throughput(store: &Arc<PgEventStore>, events: u64) -> anyhow::Result<f64> {
    let nats = NatsServer::start()?;
    let client = async_nats::connect(nats.url()).await?;
    let js = async_nats::jetstream::new(client);
    // Publish exactly `events`: a relay from a store holding more would keep going, so stop at the count.
    let options = RelayOptions::default();
    let started = Instant::now();
    let task = tokio::spawn(Relay::new((**store).clone(), js.clone(), options.clone()).run());
    let deadline = Instant::now() + RUN_DEADLINE;
    let elapsed = loop {
        if let Ok(mut stream) = js.get_stream(&options.stream).await
            && let Ok(info) = stream.info().await
            && info.state.messages >= events
        {
            break started.elapsed().as_secs_f64();
        }
        anyhow::ensure!(Instant::now() < deadline, "the relay did not publish {events} events in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    task.abort();
    Ok(events as f64 / elapsed)
}

/// When each event became visible to a projection.
struct Arrivals {
    filter: EventFilter,
    at: HashMap<uuid::Uuid, Instant>,
}

impl MemoryProjection for Arrivals {
    fn name(&self) -> &str {
        "bench_arrivals"
    }
    fn filter(&self) -> &EventFilter {
        &self.filter
    }
    fn apply(&mut self, event: &RecordedEvent) -> Result<(), ProjectionError> {
        self.at.insert(event.event_id, Instant::now());
        Ok(())
    }
}

/// Appends single events at 500/s for `seconds` to an empty store at `url` (with a relay running), and measures how
/// long after each append returned another instance's in-memory projection, fed by the relayed NATS
/// messages (`NatsSubscription`), applied it. Returns p50 and p99 in ms, and the count.
async fn append_to_visible(url: &str, seconds: u64) -> anyhow::Result<(f64, f64, usize)> {
    let pool = PgPoolOptions::new().max_connections(8).connect(url).await?;
    PgEventStore::migrate(&pool).await?;
    let store = PgEventStore::new(pool, PgEventStoreOptions::default());
    let nats = NatsServer::start()?;
    let client = async_nats::connect(nats.url()).await?;
    let js = async_nats::jetstream::new(client);
    let options = RelayOptions::default();
    let relay = tokio::spawn(Relay::new(store.clone(), js.clone(), options.clone()).run());
    // Measure from the moment the relay has created its stream: a reader that starts before it reads the
    // store until it can consume (the first second of a new installation).
    let deadline = Instant::now() + RUN_DEADLINE;
    while js.get_stream(&options.stream).await.is_err() {
        anyhow::ensure!(Instant::now() < deadline, "the relay did not create its stream");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The other instance: its own pool and store (it hears nothing of the appends in process), fed by the
    // relay's messages; the store fills gaps.
    let other: Arc<dyn eventstore::EventStore> =
        Arc::new(PgEventStore::new(PgPoolOptions::new().max_connections(4).connect(url).await?, Default::default()));
    let (source, feed_options) = (other.clone(), NatsFeedOptions::for_relay(&options));
    let feed_from: projections::FeedFrom = Box::new(move |from| {
        Box::new(NatsSubscription::new(source, js, from, feed_options)) as Box<dyn eventstore::EventFeed>
    });
    let projection = Arrivals { filter: EventFilter::new(["latency"], ["ServerRegistered"]), at: HashMap::new() };
    let runner = MemoryRunner::with_feed(other, projection, feed_from);
    let (model, mut status) = (runner.model(), runner.status());
    let follow = tokio::spawn(runner.run());
    tokio::time::timeout(RUN_DEADLINE, status.wait_for(|s| s.is_ready())).await??;

    let mut appended = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    for _ in 0..seconds * 500 {
        tick.tick().await;
        let stream = eventstore::StreamName::from_parts("latency", uuid::Uuid::now_v7())?;
        let events = crate::payload::many(1);
        let id = events[0].event_id;
        store.append(&stream, eventstore::ExpectedRevision::NoStream, events).await?;
        appended.push((id, Instant::now()));
    }
    let deadline = Instant::now() + RUN_DEADLINE;
    let mut latencies = loop {
        let arrived: Option<Vec<f64>> = {
            let model = model.read().map_err(|_| anyhow::anyhow!("poisoned model"))?;
            appended
                .iter()
                .map(|(id, at)| model.at.get(id).map(|seen| seen.saturating_duration_since(*at).as_secs_f64() * 1e3))
                .collect()
        };
        if let Some(latencies) = arrived {
            break latencies;
        }
        anyhow::ensure!(Instant::now() < deadline, "not every append became visible in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    relay.abort();
    follow.abort();
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    Ok((at(0.5), at(0.99), latencies.len()))
}
