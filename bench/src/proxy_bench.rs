//! `bench proxy`: MCP `tools/call` through the gateway against the same calls sent straight to the
//! upstream, in the same run, with the same client: a fast echo MCP server in this crate
//! ([`crate::echo_mcp`]), 64 concurrent clients, every call authenticated, authorized and recorded
//! (`ToolCalled` through the batching appender, the audit trail following). Rounds alternate direct and
//! gateway so that drift on this 2-core machine falls on both.
//!
//! - At a fixed rate (1,000 calls/s by default): the latency of each call, p50 and p99, direct and
//!   through the gateway; the gateway's added latency is the difference of the percentiles.
//! - At the maximum rate: calls per second, direct and through the gateway.
//! - Memory: the process's resident set after opening 1,000 sessions through the gateway (the process
//!   also holds the client and the echo server, so this bounds the gateway's from above).
//! - Beside it, IBM ContextForge in front of the same echo server ([`crate::contextforge`], set up by the
//!   bench itself, paused while the others are measured): the latency of each at a rate ContextForge
//!   sustains (20 calls/s by default), the added p50s compared, and the maximum rates compared.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use api::{Gateway, GatewayConfig};
use serde_json::json;
use tests::{PostgresOptions, PostgresServer};
use tokio::sync::Semaphore;

use crate::report::Row;
use crate::runner::percentile;

#[derive(clap::Args)]
pub(crate) struct Options {
    /// Rounds of the fixed-rate phase (each: direct, then through the gateway).
    #[arg(long, default_value_t = 4)]
    rounds: usize,
    /// Seconds per target per round of the fixed-rate phase.
    #[arg(long, default_value_t = 3)]
    round_seconds: u64,
    /// Calls per second in the fixed-rate phase.
    #[arg(long, default_value_t = 1_000)]
    rate: u64,
    /// Seconds per target of the maximum-rate phase.
    #[arg(long, default_value_t = 5)]
    max_seconds: u64,
    /// Rounds of the monitoring-overhead phase (each: the monitored gateway, then the bare one); a round's
    /// ratio swings by several percent on a busy 2-core machine, so the median of many is reported.
    #[arg(long, default_value_t = 9)]
    overhead_rounds: usize,
    /// What the overhead phase compares: both (the target), or one of metrics and analytics alone (the other
    /// on both sides, or off on both).
    #[arg(long, value_enum, default_value = "both")]
    overhead_of: Monitoring,
    /// Sessions opened through the gateway for the memory figure.
    #[arg(long, default_value_t = 1_000)]
    sessions: usize,
    /// Leave ContextForge out (it is set up on first use: a virtual environment, about 250 MB).
    #[arg(long)]
    no_contextforge: bool,
    /// Calls per second in the phase that compares with ContextForge (a rate it sustains).
    #[arg(long, default_value_t = 20)]
    contextforge_rate: u64,
    /// Seconds per target of the phases that compare with ContextForge.
    #[arg(long, default_value_t = 5)]
    contextforge_seconds: u64,
}

const CLIENTS: usize = 64;

/// What monitoring the overhead phase takes away on the bare side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Monitoring {
    /// Metrics and usage analytics.
    Both,
    /// Metrics only (analytics kept on both sides).
    Metrics,
    /// Usage analytics only (metrics off on both sides).
    Analytics,
}

/// Where calls go, with what credential, in which session, and the echo tool's name there.
struct Target {
    url: String,
    bearer: Option<String>,
    session: String,
    tool: String,
}

fn post(http: &reqwest::Client, url: &str, bearer: Option<&str>, session: Option<&str>) -> reqwest::RequestBuilder {
    let mut request = http
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18");
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    request
}

/// A new session at `url`: its id.
async fn initialize(http: &reqwest::Client, url: &str, bearer: Option<&str>) -> anyhow::Result<String> {
    let body = json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "bench", "version": "1" } } });
    let answer = post(http, url, bearer, None).body(body.to_string()).send().await?;
    anyhow::ensure!(answer.status() == 200, "initialize: {}", answer.status());
    let session = answer.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    answer.bytes().await?;
    let session = session.ok_or_else(|| anyhow::anyhow!("no session id"))?;
    let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    post(http, url, bearer, Some(&session)).body(initialized.to_string()).send().await?.bytes().await?;
    Ok(session)
}

/// One `tools/call` of `echo`.
async fn echo(http: &reqwest::Client, target: &Target, n: u64) -> anyhow::Result<()> {
    let body = json!({ "jsonrpc": "2.0", "id": n, "method": "tools/call",
                       "params": { "name": target.tool, "arguments": { "message": "hello" } } });
    let answer =
        post(http, &target.url, target.bearer.as_deref(), Some(&target.session)).body(body.to_string()).send().await?;
    let status = answer.status();
    let bytes = answer.bytes().await?;
    anyhow::ensure!(status == 200 && bytes.windows(6).any(|w| w == b"hello\""), "echo: {status}");
    Ok(())
}

/// Calls at `rate` per second for `duration`, at most [`CLIENTS`] in flight: each call's latency (µs).
async fn fixed_rate(
    http: &reqwest::Client,
    target: &Arc<Target>,
    rate: u64,
    duration: Duration,
) -> anyhow::Result<Vec<u64>> {
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let clients = Arc::new(Semaphore::new(CLIENTS));
    let counter = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let end = Instant::now() + duration;
    while Instant::now() < end {
        ticker.tick().await;
        let permit = clients.clone().acquire_owned().await?;
        let (http, target, counter) = (http.clone(), target.clone(), counter.clone());
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let result = echo(&http, &target, counter.fetch_add(1, Ordering::Relaxed)).await;
            drop(permit);
            result.map(|()| started.elapsed().as_micros() as u64)
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    for task in tasks {
        latencies.push(task.await??);
    }
    Ok(latencies)
}

/// [`CLIENTS`] clients calling as fast as they are answered for `duration`: calls per second.
async fn max_rate(http: &reqwest::Client, target: &Arc<Target>, duration: Duration) -> anyhow::Result<f64> {
    let (calls, elapsed) = max_calls(http, target, duration).await?;
    Ok(calls as f64 / elapsed.as_secs_f64())
}

/// [`CLIENTS`] clients calling as fast as they are answered for `duration`: the calls answered, and the
/// time until the last answer.
async fn max_calls(
    http: &reqwest::Client,
    target: &Arc<Target>,
    duration: Duration,
) -> anyhow::Result<(u64, Duration)> {
    let calls = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let end = started + duration;
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (http, target, calls) = (http.clone(), target.clone(), calls.clone());
            tokio::spawn(async move {
                while Instant::now() < end {
                    echo(&http, &target, calls.fetch_add(1, Ordering::Relaxed)).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok((calls.load(Ordering::Relaxed), started.elapsed()))
}

/// This process's resident set, in MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// A gateway in front of the echo server, served on a loopback port: its owner's key, the echo server's
/// MCP URL through it, and a session there.
struct Served {
    gateway: Gateway,
    key: String,
    through: String,
    session: String,
    _db: tests::TestDatabase,
}

impl Served {
    /// A gateway on a new database of `server`, keeping usage analytics or not.
    async fn start(
        server: &PostgresServer,
        http: &reqwest::Client,
        upstream: &str,
        analytics: bool,
        metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    ) -> anyhow::Result<Self> {
        let db = server.create_database().await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let gateway_url = format!("http://{}", listener.local_addr()?);
        let config = GatewayConfig {
            listen: listener.local_addr()?,
            upstream_allowlist: vec!["127.0.0.1".into()],
            max_connections: 16,
            public_url: Some(gateway_url.clone()),
            call_journal: Some(std::env::temp_dir().join(format!("mgw-bench-calls-{}", uuid::Uuid::now_v7()))),
            proxy_limits: api::ProxyLimits { per_principal: 1024, per_server: 1024 },
            analytics,
            ..crate::serving::config(&db.url)
        };
        let gateway = Gateway::start(&config, metrics).await?;
        let key = crate::serving::serve_with_owner(&gateway, listener).await?;
        let server_body = json!({ "name": "io.example/echo", "description": "d", "transport": "streamable_http",
                                  "url": upstream, "access": { "roles": ["developer"] } });
        let server_id = crate::serving::register_server(http, &gateway_url, &key, &server_body).await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let through = format!("{gateway_url}/servers/{server_id}/mcp");
        let session = loop {
            match initialize(http, &through, Some(&key)).await {
                Ok(session) => break session,
                Err(error) => {
                    anyhow::ensure!(Instant::now() < deadline, "the server through the gateway: {error:#}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        Ok(Self { gateway, key, through, session, _db: db })
    }

    fn target(&self) -> Arc<Target> {
        Arc::new(Target {
            url: self.through.clone(),
            bearer: Some(self.key.clone()),
            session: self.session.clone(),
            tool: "echo".to_owned(),
        })
    }

    /// Waits until the gateway has recorded every call it forwarded and its audit trail and analytics
    /// (when kept) have applied them: the work calls leave behind.
    async fn settle(&self) -> anyhow::Result<()> {
        let state = &self.gateway.state;
        anyhow::ensure!(self.gateway.drain_recorded_calls(Duration::from_secs(60)).await, "calls left unrecorded");
        let head = state.store.committed_head().await?;
        let deadline = Instant::now() + Duration::from_secs(120);
        for status in [&state.audit_status, &state.analytics_status] {
            let mut status = status.clone();
            loop {
                let now = status.borrow().clone();
                if now.state == projections::ProjectionState::Disabled || now.checkpoint >= head {
                    break;
                }
                anyhow::ensure!(Instant::now() < deadline, "{} did not apply the calls", now.name);
                let _ = tokio::time::timeout(Duration::from_millis(20), status.changed()).await;
            }
        }
        Ok(())
    }
}

pub(crate) async fn run(options: Options) -> anyhow::Result<Vec<Row>> {
    let (metrics, switch) = crate::switched_metrics::install()?;
    let upstream = crate::echo_mcp::start().await?;
    let server = PostgresServer::start(PostgresOptions {
        durable: true,
        settings: crate::eventstore_bench::write_heavy_settings(),
    })?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(CLIENTS * 2).tcp_nodelay(true).build()?;
    let monitored = Served::start(&server, &http, &upstream, true, Some(metrics)).await?;
    // Beside it, a gateway that keeps no usage analytics, measured with the metrics switched off.
    let bare = Served::start(&server, &http, &upstream, options.overhead_of == Monitoring::Metrics, None).await?;
    let (key, through) = (monitored.key.clone(), monitored.through.clone());
    let echo = || "echo".to_owned();
    let gateway_target = monitored.target();
    let direct_session = initialize(&http, &upstream, None).await?;
    let direct_target = Arc::new(Target { url: upstream.clone(), bearer: None, session: direct_session, tool: echo() });
    let contextforge = if options.no_contextforge {
        None
    } else {
        let forge = crate::contextforge::ContextForge::start(&http, tests::free_port()?, &upstream).await?;
        let session = initialize(&http, &forge.mcp_url, Some(&forge.token)).await?;
        let target = Arc::new(Target {
            url: forge.mcp_url.clone(),
            bearer: Some(forge.token.clone()),
            session,
            tool: forge.tool.clone(),
        });
        crate::python_peer::signal(&forge.child, "STOP")?;
        Some((forge, target))
    };

    // Warm-up: connections opened, caches filled, the audit trail following.
    max_rate(&http, &direct_target, Duration::from_secs(1)).await?;
    max_rate(&http, &gateway_target, Duration::from_secs(1)).await?;

    let round = Duration::from_secs(options.round_seconds);
    let (mut direct, mut through_gateway) = (Vec::new(), Vec::new());
    for _ in 0..options.rounds {
        direct.extend(fixed_rate(&http, &direct_target, options.rate, round).await?);
        through_gateway.extend(fixed_rate(&http, &gateway_target, options.rate, round).await?);
    }
    let ms = |us: u64| us as f64 / 1000.0;
    let (direct_p50, direct_p99) = (ms(percentile(&direct, 50.0)), ms(percentile(&direct, 99.0)));
    let (gateway_p50, gateway_p99) = (ms(percentile(&through_gateway, 50.0)), ms(percentile(&through_gateway, 99.0)));

    let span = Duration::from_secs(options.max_seconds);
    let direct_max = max_rate(&http, &direct_target, span).await?;
    let gateway_max = max_rate(&http, &gateway_target, span).await?;

    // What monitoring costs: rounds alternating the monitored gateway (metrics recorded, usage analytics
    // kept; traces are off on both) and the bare one (metrics switched off, no analytics). A round's
    // calls/s counts the time its gateway takes afterwards to record the calls and bring its audit trail
    // and analytics up to them, so the work calls leave behind is charged to the round that made them.
    let bare_target = bare.target();
    max_rate(&http, &bare_target, Duration::from_secs(1)).await?;
    let (mut with_monitoring, mut without, mut overheads) = (Vec::new(), Vec::new(), Vec::new());
    let mut cpu_overheads = Vec::new();
    let pg_data = server.directory().join("data");
    monitored.settle().await?;
    bare.settle().await?;
    for _ in 0..options.overhead_rounds.max(1) {
        let (mut rates, mut cpu_per_call) = ([0.0; 2], [0.0; 2]);
        for (slot, (served, target, on)) in
            [(&monitored, &gateway_target, options.overhead_of != Monitoring::Analytics), (&bare, &bare_target, false)]
                .into_iter()
                .enumerate()
        {
            switch.set(on);
            let (began, cpu_before) = (Instant::now(), crate::cpu_time::used_seconds(&pg_data)?);
            let (calls, _) = max_calls(&http, target, span).await?;
            served.settle().await?;
            rates[slot] = calls as f64 / began.elapsed().as_secs_f64();
            cpu_per_call[slot] = (crate::cpu_time::used_seconds(&pg_data)? - cpu_before) / calls.max(1) as f64;
        }
        switch.set(true);
        eprintln!(
            "monitoring overhead round: {:.0} calls/s monitored, {:.0} bare; CPU per call {:.1} µs monitored, {:.1} bare",
            rates[0],
            rates[1],
            cpu_per_call[0] * 1e6,
            cpu_per_call[1] * 1e6
        );
        cpu_overheads.push(100.0 * (cpu_per_call[0] / cpu_per_call[1] - 1.0));
        with_monitoring.push(rates[0]);
        without.push(rates[1]);
        overheads.push(100.0 * (1.0 - rates[0] / rates[1]));
    }
    let overhead = crate::runner::median(&mut overheads);
    let cpu_overhead = crate::runner::median(&mut cpu_overheads);
    let (with_monitoring, without) = (crate::runner::median(&mut with_monitoring), crate::runner::median(&mut without));

    let mut compared = Vec::new();
    if let Some((forge, forge_target)) = &contextforge {
        let (rate, span) = (options.contextforge_rate, Duration::from_secs(options.contextforge_seconds));
        let p50 = |latencies: Vec<u64>| ms(percentile(&latencies, 50.0));
        let direct_slow = p50(fixed_rate(&http, &direct_target, rate, span).await?);
        let gateway_slow = p50(fixed_rate(&http, &gateway_target, rate, span).await?);
        crate::python_peer::signal(&forge.child, "CONT")?;
        // New connections: those kept from before the pause have outlived ContextForge's keep-alive.
        let fresh = reqwest::Client::builder().pool_max_idle_per_host(CLIENTS * 2).tcp_nodelay(true).build()?;
        max_rate(&fresh, forge_target, Duration::from_secs(1)).await?;
        let forge_slow = p50(fixed_rate(&fresh, forge_target, rate, span).await?);
        let forge_max = max_rate(&fresh, forge_target, span).await?;
        crate::python_peer::signal(&forge.child, "STOP")?;
        let (gateway_added, forge_added) = (gateway_slow - direct_slow, forge_slow - direct_slow);
        compared = vec![
            Row::compared(
                format!("p50 latency at {rate} calls/s, gateway (baseline: ContextForge; direct {direct_slow:.2} ms)"),
                gateway_slow,
                "ms",
                forge_slow,
                gateway_slow / forge_slow,
            ),
            Row::against_at_most(
                format!("added latency p50 at {rate} calls/s, gateway (baseline: ContextForge)"),
                gateway_added,
                "ms",
                forge_added,
                gateway_added / forge_added,
                0.1,
            ),
            Row::against(
                "maximum calls/s, 64 clients, gateway (baseline: ContextForge)",
                gateway_max,
                "calls/s",
                forge_max,
                gateway_max / forge_max,
                10.0,
            ),
        ];
    }
    drop(contextforge);

    bare.gateway.stop();
    let before_sessions = rss_mib();
    for _ in 0..options.sessions {
        initialize(&http, &through, Some(&key)).await?;
    }
    let with_sessions = rss_mib();
    monitored.gateway.stop();

    let rate = options.rate;
    let mut rows = vec![
        Row::compared(
            format!("p50 latency at {rate} calls/s, gateway (baseline: direct)"),
            gateway_p50,
            "ms",
            direct_p50,
            gateway_p50 / direct_p50,
        ),
        Row::compared(
            format!("p99 latency at {rate} calls/s, gateway (baseline: direct)"),
            gateway_p99,
            "ms",
            direct_p99,
            gateway_p99 / direct_p99,
        ),
        Row::at_most("added latency p50", gateway_p50 - direct_p50, "ms", 0.3),
        Row::at_most("added latency p99", gateway_p99 - direct_p99, "ms", 1.5),
        Row::against(
            "maximum calls/s, 64 clients, gateway (baseline: direct)",
            gateway_max,
            "calls/s",
            direct_max,
            gateway_max / direct_max,
            0.5,
        ),
        Row::compared(
            match options.overhead_of {
                Monitoring::Both => "maximum calls/s with metrics and usage analytics, settled (baseline: neither)",
                Monitoring::Metrics => "maximum calls/s with metrics, settled (baseline: without; analytics on both)",
                Monitoring::Analytics => {
                    "maximum calls/s with usage analytics, settled (baseline: without; no metrics)"
                }
            },
            with_monitoring,
            "calls/s",
            without,
            with_monitoring / without,
        ),
        Row::at_most("  monitoring overhead (median of the rounds' ratios)", overhead, "%", 5.0),
        Row::at_most(
            "  monitoring overhead in CPU per call (the process: client, gateways, echo server; and PostgreSQL; median)",
            cpu_overhead,
            "%",
            5.0,
        ),
        Row::info("process RSS before opening sessions (gateway, client and echo server)", before_sessions, "MiB"),
        Row::at_most(format!("process RSS with {} more sessions open", options.sessions), with_sessions, "MiB", 100.0),
    ];
    rows.extend(compared);
    Ok(rows)
}
