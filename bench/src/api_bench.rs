//! `bench api`: Add Server commands and catalogue reads through the gateway's router, next to the event
//! store's 16-writer single-event appends measured on the same server in the same run.
//!
//! Requests go through the whole axum stack (routing, middleware, authentication, JSON, the command
//! handler, the read model) in process, as `tower` calls: no sockets, so the figures are the gateway's
//! own cost, not the loopback's.

use std::sync::Arc;
use std::time::Duration;

use api::{Gateway, GatewayConfig, router};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use commands::servers::CommandContext;
use eventstore::{Actor, Metadata, PgEventStore, PgEventStoreOptions};
use sqlx::postgres::PgPoolOptions;
use tests::{PostgresOptions, PostgresServer};
use tower::ServiceExt;
use uuid::Uuid;

use crate::eventstore_bench::{store_appends, write_heavy_settings};
use crate::report::Row;
use crate::runner::{Outcome, median, run_writers};

/// Options of `bench api`.
#[derive(Debug, clap::Args)]
pub(crate) struct Options {
    /// Seconds per measured run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Rounds (each: the append baseline, then Add Server); medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
}

pub(crate) async fn run(options: Options) -> anyhow::Result<Vec<Row>> {
    let server = PostgresServer::start(PostgresOptions { durable: true, settings: write_heavy_settings() })?;
    let db = server.create_database().await?;
    let config = GatewayConfig { max_connections: 24, ..crate::serving::config(&db.url) };
    let gateway = Gateway::start(&config, None).await?;
    let command_id = Uuid::now_v7();
    let context =
        CommandContext { command_id, metadata: Metadata::new(command_id, Actor::system("bench"), chrono::Utc::now()) };
    let owner = commands::identity::bootstrap(&*gateway.state.store, "bench", &context).await?;
    let key = Arc::new(format!("Bearer {}", owner.api_key.expose()));
    let app = router(gateway.state.clone());
    // Wait until the authorization model knows the key.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while call(&app, &key, "GET", "/api/v1/servers?limit=1", None).await?.0 != StatusCode::OK {
        anyhow::ensure!(std::time::Instant::now() < deadline, "the gateway did not become ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The baseline: the event store's own single-event appends, 16 writers on distinct streams.
    let pool = PgPoolOptions::new().max_connections(24).connect(&db.url).await?;
    let store = Arc::new(PgEventStore::new(pool, PgEventStoreOptions::default()));
    let duration = Duration::from_secs(options.seconds);
    let (mut appends, mut commands, mut p50, mut p99, mut ratios) = (vec![], vec![], vec![], vec![], vec![]);
    let mut ids: Vec<String> = Vec::new();
    for round in 0..options.rounds {
        caught_up(&gateway, &store).await?;
        let baseline = store_appends(&store, options.clients, 1, duration).await?.events_per_sec();
        caught_up(&gateway, &store).await?;
        eprintln!("round {round}: appends {baseline:.0}/s; measuring Add Server");
        let (app2, key2) = (app.clone(), key.clone());
        let created = Arc::new(std::sync::Mutex::new(Vec::new()));
        let created2 = created.clone();
        let stats = run_writers(options.clients, duration, move |w, i| {
            let (app, key, created) = (app2.clone(), key2.clone(), created2.clone());
            async move {
                let body = serde_json::json!({
                    "name": format!("io.example/bench-{round}-{w}-{i}"),
                    "description": "A server registered by the benchmark",
                    "tags": ["bench"],
                    "transport": "streamable_http",
                    "url": "https://93.184.216.34/mcp",
                    "upstream_auth": {"mode": "bearer", "token": "bench-token"},
                });
                let (status, reply) = call(&app, &key, "POST", "/api/v1/servers", Some(body.to_string())).await?;
                anyhow::ensure!(
                    status == StatusCode::CREATED,
                    "Add Server answered {status}: {}",
                    String::from_utf8_lossy(&reply)
                );
                if i % 16 == 0 {
                    let id: serde_json::Value = serde_json::from_slice(&reply)?;
                    created
                        .lock()
                        .map_err(|_| anyhow::anyhow!("poisoned"))?
                        .push(id["id"].as_str().unwrap_or_default().to_owned());
                }
                Ok(Outcome { events: 1, conflicts: 0 })
            }
        })
        .await?;
        let per_sec = stats.events_per_sec();
        eprintln!("round {round}: Add Server {per_sec:.0}/s vs appends {baseline:.0}/s");
        ratios.push(per_sec / baseline.max(1.0));
        appends.push(baseline);
        commands.push(per_sec);
        p50.push(stats.percentile_ms(50.0));
        p99.push(stats.percentile_ms(99.0));
        ids.extend(created.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.drain(..));
        // Let the registry projection apply the backlog before the next baseline, so that its catching up
        // is charged to Add Server (it is part of the command's cost), not to the next baseline.
        caught_up(&gateway, &store).await?;
    }
    let mut rows = vec![
        Row::against(
            format!(
                "Add Server, {} concurrent clients (vs store appends, 1 event/tx, {} writers)",
                options.clients, options.clients
            ),
            median(&mut commands),
            "commands/s",
            median(&mut appends),
            median(&mut ratios),
            0.8,
        ),
        Row::info("  Add Server p50", median(&mut p50), "ms"),
        Row::info("  Add Server p99", median(&mut p99), "ms"),
    ];

    // Reads: GET /api/v1/servers/{id} for servers registered above, once the read model has them.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !ready_for(&app, &key, ids.last()).await? {
        anyhow::ensure!(std::time::Instant::now() < deadline, "the registry did not catch up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ids = Arc::new(ids);
    let (mut reads, mut read_p50, mut read_p99) = (vec![], vec![], vec![]);
    for _ in 0..options.rounds {
        let (app2, key2, ids2) = (app.clone(), key.clone(), ids.clone());
        let stats = run_writers(options.clients, duration, move |w, i| {
            let (app, key, ids) = (app2.clone(), key2.clone(), ids2.clone());
            async move {
                let id = &ids[(w * 7919 + i as usize * 104_729) % ids.len()];
                let (status, reply) = call(&app, &key, "GET", &format!("/api/v1/servers/{id}"), None).await?;
                anyhow::ensure!(status == StatusCode::OK, "GET answered {status}: {}", String::from_utf8_lossy(&reply));
                Ok(Outcome { events: 1, conflicts: 0 })
            }
        })
        .await?;
        reads.push(stats.events_per_sec());
        read_p50.push(stats.percentile_ms(50.0));
        read_p99.push(stats.percentile_ms(99.0));
    }
    rows.push(Row::at_least(
        format!("GET /api/v1/servers/{{id}}, {} concurrent clients", options.clients),
        median(&mut reads),
        "reads/s",
        10_000.0,
    ));
    rows.push(Row::info("  GET p50", median(&mut read_p50), "ms"));
    rows.push(Row::info("  GET p99", median(&mut read_p99), "ms"));

    // Catalogue pages of 20, from places spread over the catalogue (a cursor after a name prefix), against
    // the reads by id of the same run; then the official registry's listing from the same places
    // (`<seq>:<name>` cursors).
    let by_id = median(&mut reads.clone());
    for (path, cursor_prefix) in [("/api/v1/servers", ""), ("/v0.1/servers", "0:")] {
        eprintln!("measuring {path} pages");
        let (mut pages, mut page_p50, mut page_p99) = (vec![], vec![], vec![]);
        for _ in 0..options.rounds {
            let (app2, key2) = (app.clone(), key.clone());
            let stats = run_writers(options.clients, duration, move |w, i| {
                let (app, key) = (app2.clone(), key2.clone());
                async move {
                    let after = format!("{cursor_prefix}io.example/bench-{}-{}-{}", i % 3, w % 16, (i * 7919) % 1000);
                    let uri = format!("{path}?limit=20&cursor={}", api::cursor::encode(&after));
                    let (status, reply) = call(&app, &key, "GET", &uri, None).await?;
                    let text = || String::from_utf8_lossy(&reply).into_owned();
                    anyhow::ensure!(status == StatusCode::OK, "GET {path} answered {status}: {}", text());
                    Ok(Outcome { events: 1, conflicts: 0 })
                }
            })
            .await?;
            pages.push(stats.events_per_sec());
            page_p50.push(stats.percentile_ms(50.0));
            page_p99.push(stats.percentile_ms(99.0));
        }
        let page_rate = median(&mut pages);
        rows.push(Row::compared(
            format!("GET {path}?limit=20 (vs GET by id), {} concurrent clients", options.clients),
            page_rate,
            "pages/s",
            by_id,
            page_rate / by_id,
        ));
        rows.push(Row::at_least("  pages of 20", page_rate, "pages/s", 10_000.0));
        rows.push(Row::info("  page p50", median(&mut page_p50), "ms"));
        rows.push(Row::info("  page p99", median(&mut page_p99), "ms"));
    }
    gateway.stop();
    Ok(rows)
}

/// Waits until the registry read model has applied everything committed so far, then vacuums and
/// checkpoints, so that each measured run starts from the same state (without this, autovacuum and
/// checkpoints after an Add Server run fell on the next baseline and cut it by up to 8×).
async fn caught_up(gateway: &Gateway, store: &PgEventStore) -> anyhow::Result<()> {
    use eventstore::EventStore;
    let pool = gateway.state.tables.postgres().ok_or_else(|| anyhow::anyhow!("a gateway on Postgres"))?;
    let head = store.committed_head().await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while projections::load_checkpoint(pool, "registry").await? < head {
        anyhow::ensure!(std::time::Instant::now() < deadline, "the registry did not catch up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Separate statements: a multi-statement string runs as one transaction block, which VACUUM refuses.
    sqlx::raw_sql("VACUUM (ANALYZE)").execute(pool).await?;
    sqlx::raw_sql("CHECKPOINT").execute(pool).await?;
    Ok(())
}

async fn ready_for(app: &Router, key: &str, id: Option<&String>) -> anyhow::Result<bool> {
    let Some(id) = id else { return Ok(true) };
    Ok(call(app, key, "GET", &format!("/api/v1/servers/{id}"), None).await?.0 == StatusCode::OK)
}

async fn call(
    app: &Router,
    key: &str,
    method: &str,
    uri: &str,
    body: Option<String>,
) -> anyhow::Result<(StatusCode, axum::body::Bytes)> {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, key)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.map(Body::from).unwrap_or_else(Body::empty))?;
    let response = app.clone().oneshot(request).await?;
    let status = response.status();
    // The body read whole, as a client does; decoded only when a caller needs it.
    Ok((status, axum::body::to_bytes(response.into_body(), 1 << 20).await?))
}
