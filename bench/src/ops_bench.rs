//! `bench ops`: what operating the gateway costs at scale.
//!
//! - **Start with a million events.** The log holds `--events` events: principals and their API keys (what
//!   the authorization model holds) and, for the rest, recorded tool calls. The baseline is the work a
//!   start without snapshots must do: a replay of the whole log into the authorization model, timed in
//!   the same run. The gateway starts once (replaying, then taking its snapshot), is stopped, and is
//!   started again `--restarts` times: each time from `Gateway::start` to `/ready` answering 200.
//! - **`/metrics` and `/ready`** answered by the restarted gateway, one request after another.
//! - **Analytics over `--calls` calls**: the analytics read model holds the rows `--calls` calls over
//!   seven days make (written in SQL, minute rows and their hour sums, the way the projection folds
//!   them), and `GET /api/v1/analytics/usage` and `/series` are asked over an hour, a day and a week.

use std::time::{Duration, Instant};

use api::{Gateway, GatewayConfig, router};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use domain::access::{AccessEvent, CallOutcome, ToolCalled};
use domain::identity::{ApiKeyIssued, IdentityEvent, PrincipalCreated, PrincipalKind};
use eventstore::{
    Actor, EventData, EventStore, ExpectedRevision, Metadata, PgEventStore, PgEventStoreOptions, StreamAppend,
    StreamName,
};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tests::{PostgresOptions, PostgresServer};
use tower::ServiceExt;
use uuid::Uuid;

use crate::eventstore_bench::write_heavy_settings;
use crate::report::Row;
use crate::runner::{median, percentile};

/// Options of `bench ops`.
#[derive(Debug, clap::Args)]
pub(crate) struct Options {
    /// Events in the log the gateway starts on.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Restarts measured (medians are reported).
    #[arg(long, default_value_t = 3)]
    restarts: usize,
    /// Tool calls the analytics read model holds.
    #[arg(long, default_value_t = 10_000_000)]
    calls: u64,
    /// Requests per measured endpoint and query.
    #[arg(long, default_value_t = 300)]
    requests: usize,
}

/// Principals per hundred events; each has two API keys.
const PRINCIPALS_PER_HUNDRED: u64 = 1;
/// Events per append (one transaction).
const BATCH: usize = 5_000;

pub(crate) async fn run(options: Options) -> anyhow::Result<Vec<Row>> {
    let server = PostgresServer::start(PostgresOptions { durable: true, settings: write_heavy_settings() })?;
    let db = server.create_database().await?;
    let pool = PgPoolOptions::new().max_connections(8).connect(&db.url).await?;
    PgEventStore::migrate(&pool).await?;
    let store = PgEventStore::new(pool.clone(), PgEventStoreOptions::default());
    let filled = Instant::now();
    let relevant = fill_log(&store, options.events).await?;
    eprintln!("{} events appended in {:.1} s ({relevant} for the authorization model)", options.events, secs(filled));

    // The baseline: the replay a start without a snapshot does.
    let began = Instant::now();
    let replayed = projections::replay_once(&store, projections::authz::Authz::default()).await?;
    let replay = secs(began);
    drop(replayed);
    eprintln!("whole replay into the authorization model: {replay:.2} s");

    let metrics = api::metrics_catalog::install()?;
    let config = GatewayConfig { max_connections: 16, ..crate::serving::config(&db.url) };
    let began = Instant::now();
    let gateway = Gateway::start(&config, Some(metrics.clone())).await?;
    ready(&router(gateway.state.clone()), Duration::from_secs(3600)).await?;
    let first = secs(began);
    eprintln!("first start (every read model built from the log): {first:.1} s; waiting for the snapshot");
    snapshot_saved(&pool).await?;
    gateway.stop();

    let mut starts = Vec::new();
    let mut gateway = None;
    for _ in 0..options.restarts.max(1) {
        if let Some(previous) = gateway.take() {
            Gateway::stop(previous);
        }
        let began = Instant::now();
        let started = Gateway::start(&config, Some(metrics.clone())).await?;
        ready(&router(started.state.clone()), Duration::from_secs(60)).await?;
        starts.push(secs(began));
        eprintln!("restart: ready in {:.3} s", starts.last().copied().unwrap_or_default());
        gateway = Some(started);
    }
    let gateway = gateway.ok_or_else(|| anyhow::anyhow!("no restart"))?;
    let app = router(gateway.state.clone());
    let start = median(&mut starts);
    let mut rows = vec![
        Row::at_most(format!("ready after a restart, {} events in the log", options.events), start, "s", 1.0),
        Row::compared(
            "  (vs a whole replay into the authorization model)".to_owned(),
            start,
            "s",
            replay,
            start / replay.max(f64::EPSILON),
        ),
        Row::info("  first start, every read model built from the log", first, "s"),
    ];

    let key = owner_key(&gateway).await?;
    for (name, uri) in [("/metrics", "/metrics"), ("/ready", "/ready")] {
        let p95 = p95_of(&app, &key, uri, options.requests).await?;
        rows.push(Row::at_most(format!("{name} p95"), p95, "ms", 50.0));
    }

    let filled = Instant::now();
    let (now, analytics_rows) = fill_analytics(&pool, options.calls).await?;
    eprintln!("analytics: {analytics_rows} rows for {} calls in {:.1} s", options.calls, secs(filled));
    let at = |seconds: i64| {
        chrono::DateTime::from_timestamp(now - seconds, 0)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let (to, hour, six, day, week) = (at(0), at(3600), at(6 * 3600), at(86_400), at(7 * 86_400 - 60));
    let queries = [
        ("usage by server, last hour (minutes)", format!("/api/v1/analytics/usage?by=server&from={hour}&to={to}")),
        ("usage by tool, last day (hours)", format!("/api/v1/analytics/usage?by=tool&from={day}&to={to}")),
        ("usage by principal, last week (hours)", format!("/api/v1/analytics/usage?by=principal&from={week}&to={to}")),
        ("usage by tool, last 6 hours (minutes)", format!("/api/v1/analytics/usage?by=tool&from={six}&to={to}")),
        (
            "series of one server, last week (hours)",
            format!("/api/v1/analytics/series?by=server&key=srv-07&from={week}&to={to}"),
        ),
        ("series, last hour (minutes)", format!("/api/v1/analytics/series?from={hour}&to={to}")),
    ];
    for (name, uri) in queries {
        let uri = uri.replace('+', "%2B");
        let p95 = p95_of(&app, &key, &uri, options.requests).await?;
        rows.push(Row::at_most(format!("analytics over {} calls: {name}, p95", options.calls), p95, "ms", 50.0));
    }
    rows.push(Row::info("  analytics rows", analytics_rows as f64, "rows"));
    gateway.stop();
    Ok(rows)
}

fn secs(since: Instant) -> f64 {
    since.elapsed().as_secs_f64()
}

/// Appends `events` events: principals with two API keys each, and tool calls of those principals for
/// the rest, `BATCH` to a transaction. The count the authorization model applies.
async fn fill_log(store: &PgEventStore, events: u64) -> anyhow::Result<u64> {
    let principals: Vec<Uuid> = (0..(events * PRINCIPALS_PER_HUNDRED / 100).max(1)).map(|_| Uuid::now_v7()).collect();
    let metadata = {
        let command = Uuid::now_v7();
        Metadata::new(command, Actor::system("bench"), chrono::Utc::now())
    };
    let data = |event_type: &str, data: String| EventData {
        event_id: Uuid::now_v7(),
        event_type: event_type.to_owned(),
        schema_version: 1,
        data,
        metadata: metadata.clone(),
    };
    let (mut written, mut batch, mut in_batch) = (0u64, Vec::<StreamAppend>::new(), 0usize);
    let mut identity = Vec::new();
    for (n, principal) in principals.iter().enumerate() {
        identity.push(IdentityEvent::PrincipalCreated(PrincipalCreated {
            principal_id: *principal,
            kind: PrincipalKind::User,
            display_name: format!("user {n}"),
            roles: vec![domain::Role::Developer],
        }));
        for _ in 0..2 {
            let (_, sha256) = commands::identity::new_api_key();
            identity.push(IdentityEvent::ApiKeyIssued(ApiKeyIssued {
                key_id: Uuid::now_v7(),
                principal_id: *principal,
                prefix: "mgw_".into(),
                sha256,
                name: None,
                expires_at: None,
                scopes: vec![],
            }));
        }
    }
    let relevant = identity.len() as u64;
    for event in identity {
        let (category, id) = match &event {
            IdentityEvent::PrincipalCreated(p) => ("principal", p.principal_id),
            IdentityEvent::ApiKeyIssued(k) => ("apikey", k.key_id),
            _ => unreachable!("only principals and keys are made"),
        };
        let stream = StreamName::from_parts(category, id)?;
        batch.push(StreamAppend {
            stream,
            expected: ExpectedRevision::NoStream,
            events: vec![data(event.event_type(), event.to_json()?)],
        });
        in_batch += 1;
        if in_batch >= BATCH {
            written += flush(store, &mut batch, &mut in_batch).await?;
        }
    }
    written += flush(store, &mut batch, &mut in_batch).await?;
    // Tool calls, a principal's calls of a batch in one append to its stream.
    let servers: Vec<Uuid> = (0..20).map(|_| Uuid::now_v7()).collect();
    let mut n = 0u64;
    while written < events {
        let count = (events - written).min(BATCH as u64);
        let mut by_principal: std::collections::HashMap<Uuid, Vec<EventData>> = Default::default();
        for _ in 0..count {
            n += 1;
            // Runs of 50 calls by one principal: a batch appends to a hundred streams.
            let principal = principals[((n / 50) % principals.len() as u64) as usize];
            let call = AccessEvent::ToolCalled(ToolCalled {
                call_id: Uuid::now_v7(),
                principal_id: principal,
                credential_id: principal,
                client_id: None,
                server_id: servers[(n % 20) as usize],
                tool: format!("tool-{}", n % 5),
                outcome: if n.is_multiple_of(50) { CallOutcome::Error } else { CallOutcome::Answered },
                latency_ms: (n % 40) as f64 + 0.5,
                upstream_status: Some(200),
                arguments_hash: "0".repeat(64),
            });
            by_principal.entry(principal).or_default().push(data(call.event_type(), call.to_json()?));
        }
        for (principal, events) in by_principal {
            let stream = StreamName::from_parts(domain::access::ACCESS_CATEGORY, principal)?;
            in_batch += events.len();
            batch.push(StreamAppend { stream, expected: ExpectedRevision::Any, events });
        }
        written += flush(store, &mut batch, &mut in_batch).await?;
    }
    Ok(relevant)
}

async fn flush(store: &PgEventStore, batch: &mut Vec<StreamAppend>, in_batch: &mut usize) -> anyhow::Result<u64> {
    let appends = std::mem::take(batch);
    let count = std::mem::take(in_batch) as u64;
    if !appends.is_empty() {
        store.append_multi(appends).await?;
    }
    Ok(count)
}

/// Waits until the router's `/ready` answers 200.
async fn ready(app: &Router, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let request = Request::builder().uri("/ready").body(Body::empty())?;
        if app.clone().oneshot(request).await?.status() == StatusCode::OK {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "the gateway was not ready within {within:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Waits until the authorization model's snapshot is saved.
async fn snapshot_saved(pool: &PgPool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let saved: i64 =
            sqlx::query_scalar("SELECT count(*) FROM es.snapshots WHERE name = 'authz'").fetch_one(pool).await?;
        if saved > 0 {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "no snapshot was saved");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The bootstrapped owner's API key, once the authorization model knows it.
async fn owner_key(gateway: &Gateway) -> anyhow::Result<String> {
    let command_id = Uuid::now_v7();
    let context = commands::servers::CommandContext {
        command_id,
        metadata: Metadata::new(command_id, Actor::system("bench"), chrono::Utc::now()),
    };
    let owner = commands::identity::bootstrap(&*gateway.state.store, "bench", &context).await?;
    let key = format!("Bearer {}", owner.api_key.expose());
    let app = router(gateway.state.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    while get(&app, &key, "/api/v1/analytics/usage").await?.0 != StatusCode::OK {
        anyhow::ensure!(Instant::now() < deadline, "the owner's key was not known");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(key)
}

async fn get(app: &Router, key: &str, uri: &str) -> anyhow::Result<(StatusCode, usize)> {
    let request = Request::builder().uri(uri).header(header::AUTHORIZATION, key).body(Body::empty())?;
    let response = app.clone().oneshot(request).await?;
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 64 << 20).await?;
    Ok((status, bytes.len()))
}

/// The 95th percentile of `requests` sequential GETs of `uri`, in milliseconds (after a few unmeasured).
async fn p95_of(app: &Router, key: &str, uri: &str, requests: usize) -> anyhow::Result<f64> {
    let mut latencies = Vec::with_capacity(requests);
    for n in 0..requests + 10 {
        let began = Instant::now();
        let (status, _) = get(app, key, uri).await?;
        anyhow::ensure!(status == StatusCode::OK, "{uri} answered {status}");
        if n >= 10 {
            latencies.push(began.elapsed().as_micros() as u64);
        }
    }
    Ok(percentile(&latencies, 95.0) as f64 / 1000.0)
}

/// Writes the analytics rows of `calls` tool calls over the days before now: each minute, ten calls to each
/// of 100 (server, tool) pairs by a principal (of 50) and a client (of 2) that turn with the minute. The
/// calls are laid out in a scratch table, then summed into the read model's rows as the projection folds
/// them: per minute and per hour, per dimension. The current time (unix seconds) and the row count.
async fn fill_analytics(pool: &PgPool, calls: u64) -> anyhow::Result<(i64, u64)> {
    const PAIRS: i64 = 100;
    const PER_ROW: i64 = 10;
    let now = chrono::Utc::now().timestamp();
    // Rows go in in time order, as the projection writes them while time passes (a hash aggregate's order
    // would scatter a range's rows over the whole table). Before the current hour, which holds the rows of
    // the calls in the log.
    let end = now - now.rem_euclid(3600);
    let minutes = (calls as i64 / (PAIRS * PER_ROW)).max(1);
    let buckets = projections::analytics::HISTOGRAM_BUCKETS;
    let histogram: Vec<String> = (0..buckets).map(|i| format!("h{i}")).collect();
    // Calls fall in the 1, 2.5, 5 and 10 ms buckets by the pair.
    let spread: Vec<String> = (0..buckets)
        .map(|i| {
            if i < 4 {
                format!("CASE WHEN pair % 4 = {i} THEN {PER_ROW} ELSE 0 END AS h{i}")
            } else {
                format!("0 AS h{i}")
            }
        })
        .collect();
    let scratch = format!(
        "CREATE TEMP TABLE bench_calls AS
         SELECT {end} - m * 60 AS minute, 'srv-' || lpad((pair % 20)::text, 2, '0') AS server,
                'tool-' || (pair / 20) AS tool, 'principal-' || ((m + pair) % 50) AS principal,
                'client-' || ((m + pair) % 2) AS client, {PER_ROW} AS calls, (m + pair) % 3 / 2 AS errors,
                {PER_ROW} * (1 + pair % 4) * 2.0 AS latency_ms, {}
           FROM generate_series(1, {minutes}) AS m, generate_series(0, {PAIRS} - 1) AS pair",
        spread.join(", ")
    );
    let mut db = pool.acquire().await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(scratch)).execute(&mut *db).await?;
    let sums: Vec<String> = histogram.iter().map(|h| format!("sum({h})")).collect();
    for (granularity, bucket) in [(60, "minute"), (3600, "minute - minute % 3600")] {
        for (dimension, key) in [
            ("all", "''"),
            ("server", "server"),
            ("tool", "server || '/' || tool"),
            ("principal", "principal"),
            ("client", "client"),
        ] {
            let insert = format!(
                "INSERT INTO rm_analytics.calls (granularity, bucket, dimension, key, calls, errors, denials, latency_ms, {})
                 SELECT {granularity}, {bucket}, '{dimension}', {key}, sum(calls), sum(errors), 0, sum(latency_ms), {}
                   FROM bench_calls GROUP BY {bucket}{} ORDER BY {bucket}",
                histogram.join(", "),
                sums.join(", "),
                if dimension == "all" { String::new() } else { format!(", {key}") },
            );
            sqlx::raw_sql(sqlx::AssertSqlSafe(insert)).execute(&mut *db).await?;
        }
    }
    sqlx::raw_sql("DROP TABLE bench_calls").execute(&mut *db).await?;
    sqlx::raw_sql("VACUUM (ANALYZE) rm_analytics.calls").execute(&mut *db).await?;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_analytics.calls").fetch_one(&mut *db).await?;
    Ok((now, rows as u64))
}
