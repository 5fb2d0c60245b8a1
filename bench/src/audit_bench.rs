//! `bench audit`: the audit trail over millions of entries: a server's history and an actor's 30 days
//! (p95), the export (rows/s) and verification (entries/s). The store is filled with real server events
//! (a registration and 99 updates per server, 1,000 actors, a year of timestamps) and the audit projection
//! builds the trail from them, as in production.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use domain::server::{
    Description, Endpoint, NetworkPolicy, ServerChanges, ServerEvent, ServerName, ServerRegistered, ServerVersion,
    Tags, Transport, UpstreamAuth,
};
use eventstore::{Actor, ActorKind, EventData, EventStore, ExpectedRevision, Metadata, PgEventStore, StreamName};
use projections::audit::{AuditFilter, AuditProjection};
use projections::{RunnerOptions, TableRunner};
use sqlx::postgres::PgPoolOptions;
use tests::{PostgresOptions, PostgresServer};
use uuid::Uuid;

use crate::eventstore_bench::write_heavy_settings;
use crate::report::Row;
use crate::runner::percentile;

/// Options of `bench audit`.
#[derive(Debug, clap::Args)]
pub(crate) struct Options {
    /// Entries in the trail.
    #[arg(long, default_value_t = 5_000_000)]
    entries: u64,
    /// Queries of each kind.
    #[arg(long, default_value_t = 200)]
    queries: usize,
}

const PER_SERVER: u64 = 100;
const ACTORS: u64 = 1_000;

/// The events of server `n`: its registration and 99 updates, spread over the past year.
fn server_events(n: u64) -> anyhow::Result<Vec<EventData>> {
    let policy = NetworkPolicy::default();
    let server_id = Uuid::now_v7();
    let mut events = Vec::with_capacity(PER_SERVER as usize);
    for i in 0..PER_SERVER {
        let event = if i == 0 {
            ServerEvent::Registered(Box::new(ServerRegistered {
                server_id,
                name: ServerName::parse(format!("io.example/server-{n}"))?,
                version: ServerVersion::parse("1.0.0")?,
                title: None,
                description: Description::parse("A server of the audit benchmark")?,
                tags: Tags::parse(["bench"])?,
                repository: None,
                packages: Default::default(),
                transport: Transport::StreamableHttp,
                endpoint: Endpoint::parse(&format!("https://mcp.example.com/{n}/mcp"), &policy)?,
                upstream_auth: UpstreamAuth::None,
                access: Default::default(),
                owner: format!("user-{}", n % ACTORS),
            }))
        } else {
            ServerEvent::Updated(ServerChanges {
                description: Some(Description::parse(&format!("revision {i}"))?),
                ..Default::default()
            })
        };
        // Actors and days spread evenly: each actor has entries on every day of the year.
        let k = n * PER_SERVER + i;
        let actor = Actor { id: format!("user-{}", k % ACTORS), kind: ActorKind::User };
        let at = Utc::now() - chrono::Duration::minutes(((k * 7919) % (365 * 24 * 60)) as i64);
        events.push(EventData {
            event_id: EventData::deterministic_id(Uuid::now_v7(), 0),
            event_type: event.event_type().to_owned(),
            schema_version: 1,
            data: event.to_json()?,
            metadata: Metadata::new(Uuid::now_v7(), actor, at),
        });
    }
    Ok(events)
}

pub(crate) async fn run(options: Options) -> anyhow::Result<Vec<Row>> {
    let server = PostgresServer::start(PostgresOptions { durable: true, settings: write_heavy_settings() })?;
    let db = server.create_database().await?;
    let pool = PgPoolOptions::new().max_connections(8).connect(&db.url).await?;
    PgEventStore::migrate(&pool).await?;
    let store = Arc::new(PgEventStore::new(pool.clone(), Default::default()));
    let servers = options.entries.div_ceil(PER_SERVER);

    let started = Instant::now();
    let loaders: Vec<_> = (0..2)
        .map(|l| {
            let store = store.clone();
            tokio::spawn(async move {
                for n in (l..servers).step_by(2) {
                    let stream = StreamName::from_parts(domain::server::CATEGORY, Uuid::now_v7())?;
                    store.append(&stream, ExpectedRevision::NoStream, server_events(n)?).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for loader in loaders {
        loader.await??;
    }
    eprintln!("loaded {} events in {:.0}s", servers * PER_SERVER, started.elapsed().as_secs_f64());

    let started = Instant::now();
    let runner = TableRunner::new(
        (*store).clone(),
        Arc::new(AuditProjection::default()),
        RunnerOptions { batch_size: 2_000, ..Default::default() },
    );
    let mut status = runner.status();
    let task = tokio::spawn(runner.run());
    let head = store.committed_head().await?;
    tokio::time::timeout(Duration::from_secs(3_600), status.wait_for(|s| s.checkpoint >= head)).await??;
    let built = (servers * PER_SERVER) as f64 / started.elapsed().as_secs_f64();
    task.abort();
    sqlx::query("VACUUM ANALYZE rm_audit.entries").execute(&pool).await?;
    eprintln!("trail built at {built:.0} entries/s");

    // An actor's last 30 days, first page.
    let mut actor_ms = Vec::new();
    for q in 0..options.queries as u64 {
        let to = Utc::now() - chrono::Duration::days(((q * 37) % 300) as i64);
        let filter = AuditFilter {
            actor: Some(format!("user-{}", (q * 131) % ACTORS)),
            from: Some(to - chrono::Duration::days(30)),
            to: Some(to),
            limit: 100,
            ..Default::default()
        };
        let t = Instant::now();
        let (page, _) = projections::audit::query(&pool, &filter).await?;
        actor_ms.push(t.elapsed().as_micros() as u64);
        anyhow::ensure!(!page.is_empty(), "an actor's 30 days are never empty here");
    }
    // A server's history.
    let targets: Vec<String> = sqlx::query_scalar(
        "SELECT target_id FROM rm_audit.entries WHERE action = 'server.registered' ORDER BY seq LIMIT $1",
    )
    .bind(options.queries as i64)
    .fetch_all(&pool)
    .await?;
    let mut target_ms = Vec::new();
    for target in targets {
        let filter = AuditFilter {
            target_kind: Some("server".into()),
            target_id: Some(target),
            limit: 100,
            ..Default::default()
        };
        let t = Instant::now();
        let (page, _) = projections::audit::query(&pool, &filter).await?;
        target_ms.push(t.elapsed().as_micros() as u64);
        anyhow::ensure!(page.len() == PER_SERVER as usize, "a server's whole history in one page");
    }

    // The export: every entry, in pages of 500, as JSON lines.
    let started = Instant::now();
    let (mut exported, mut bytes, mut filter) = (0u64, 0usize, AuditFilter { limit: 500, ..Default::default() });
    loop {
        let (page, next) = projections::audit::query(&pool, &filter).await?;
        for record in &page {
            bytes += serde_json::to_string(record)?.len() + 1;
        }
        exported += page.len() as u64;
        match next {
            Some(after) => filter.after = Some(after),
            None => break,
        }
    }
    let export_rate = exported as f64 / started.elapsed().as_secs_f64();
    eprintln!("exported {exported} entries ({} MB)", bytes / 1_000_000);

    let started = Instant::now();
    let report = projections::audit::verify(&pool).await?;
    anyhow::ensure!(report.violation.is_none(), "the trail verifies: {:?}", report.violation);
    let verify_rate = report.checked as f64 / started.elapsed().as_secs_f64();

    let ms = |values: &[u64]| percentile(values, 95.0) as f64 / 1000.0;
    Ok(vec![
        Row::info(
            format!("build the trail from {} events (projection, batches of 2000)", servers * PER_SERVER),
            built,
            "entries/s",
        ),
        Row::at_most("query: one actor, 30 days, first 100 entries (p95)", ms(&actor_ms), "ms", 50.0),
        Row::at_most("query: one server's history (p95)", ms(&target_ms), "ms", 50.0),
        Row::at_least("export, JSON lines, pages of 500", export_rate, "rows/s", 100_000.0),
        Row::at_least("verify: chain, content and completeness", verify_rate, "entries/s", 150_000.0),
    ])
}
