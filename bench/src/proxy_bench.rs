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
    /// Rounds of the monitoring-overhead phase (each: a fresh monitored gateway and a fresh bare one side
    /// by side, started in turn first); rounds count in pairs, and the median of the pairs' ratios is
    /// reported.
    #[arg(long, default_value_t = 16)]
    overhead_rounds: usize,
    /// Seconds per round of the monitoring-overhead phase.
    #[arg(long, default_value_t = 5)]
    overhead_seconds: u64,
    /// Calls per second to each gateway in the monitoring-overhead phase; 0: as many as they answer
    /// ([`CLIENTS`] clients each), the throughput the target is about.
    #[arg(long, default_value_t = 0)]
    overhead_rate: u64,
    /// What the overhead phase compares: both (the target), one of metrics and analytics alone (the other
    /// on both sides, or off on both), or nothing (two gateways alike: the method's own bias).
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
    /// Nothing: both gateways keep both, as a control.
    Nothing,
}

impl Monitoring {
    /// Whether the monitored gateway records metrics, and whether the bare one does.
    fn metrics(self) -> (bool, bool) {
        match self {
            Monitoring::Both | Monitoring::Metrics => (true, false),
            Monitoring::Analytics => (false, false),
            Monitoring::Nothing => (true, true),
        }
    }

    /// Whether the bare gateway keeps usage analytics (the monitored one always does).
    fn bare_analytics(self) -> bool {
        matches!(self, Monitoring::Metrics | Monitoring::Nothing)
    }
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

/// Calls to `target` for `duration`: at `rate` per second, or as fast as [`CLIENTS`] clients are
/// answered when `rate` is 0. How many were answered.
async fn load(http: &reqwest::Client, target: &Arc<Target>, rate: u64, duration: Duration) -> anyhow::Result<u64> {
    if rate == 0 {
        Ok(max_calls(http, target, duration).await?.0)
    } else {
        Ok(fixed_rate(http, target, rate, duration).await?.len() as u64)
    }
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

/// A tokio runtime of its own, whose threads all carry one name: what a gateway spawns runs there, and
/// the CPU its threads use is the gateway's ([`crate::cpu_time::threads_seconds`]).
struct OwnRuntime {
    name: String,
    runtime: Option<tokio::runtime::Runtime>,
}

impl OwnRuntime {
    /// Two worker threads named `name`, recording metrics or not.
    fn new(name: &str, metrics: bool) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(name)
            .on_thread_start(move || crate::switched_metrics::record_on_this_thread(metrics))
            .enable_all()
            .build()?;
        Ok(Self { name: name.to_owned(), runtime: Some(runtime) })
    }

    fn handle(&self) -> anyhow::Result<tokio::runtime::Handle> {
        self.runtime.as_ref().map(|r| r.handle().clone()).ok_or_else(|| anyhow::anyhow!("runtime shut down"))
    }
}

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        // Dropped inside the bench's own runtime, where waiting for its tasks is not allowed.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A gateway in front of the echo server, served on a loopback port (from a runtime of its own, or the
/// bench's): its owner's key, the echo server's MCP URL through it, and a session there.
struct Served {
    gateway: Gateway,
    key: String,
    through: String,
    session: String,
    db: tests::TestDatabase,
    runtime: Option<OwnRuntime>,
}

impl Served {
    /// A gateway on a new database of `server`, keeping usage analytics or not, on `runtime` (or the
    /// bench's).
    async fn start(
        server: &PostgresServer,
        http: &reqwest::Client,
        upstream: &str,
        analytics: bool,
        metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
        runtime: Option<OwnRuntime>,
    ) -> anyhow::Result<Self> {
        let db = server.create_database().await?;
        let database_url = db.url.clone();
        // Started, bound and served on its runtime; the client's calls below stay on the bench's.
        let serve = async move {
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
                ..crate::serving::config(&database_url)
            };
            let gateway = Gateway::start(&config, metrics).await?;
            let key = crate::serving::serve_with_owner(&gateway, listener).await?;
            anyhow::Ok((gateway, key, gateway_url))
        };
        let (gateway, key, gateway_url) = match &runtime {
            Some(runtime) => runtime.handle()?.spawn(serve).await??,
            None => serve.await?,
        };
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
        Ok(Self { gateway, key, through, session, db, runtime })
    }

    /// Seconds of CPU this gateway has used so far: its runtime's threads, and its database's backends.
    fn cpu_seconds(&self, pg_data: &std::path::Path) -> anyhow::Result<[f64; 2]> {
        let runtime = self.runtime.as_ref().ok_or_else(|| anyhow::anyhow!("a gateway on the bench's runtime"))?;
        Ok([
            crate::cpu_time::threads_seconds(&runtime.name)?,
            crate::cpu_time::database_seconds(pg_data, &self.db.name)?,
        ])
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
    let metrics = crate::switched_metrics::install()?;
    let upstream = crate::echo_mcp::start().await?;
    let server = PostgresServer::start(PostgresOptions {
        durable: true,
        settings: crate::eventstore_bench::write_heavy_settings(),
    })?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(CLIENTS * 2).tcp_nodelay(true).build()?;
    let primary = Served::start(&server, &http, &upstream, true, Some(metrics.clone()), None).await?;
    let (key, through) = (primary.key.clone(), primary.through.clone());
    let echo = || "echo".to_owned();
    let gateway_target = primary.target();
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

    let before_sessions = rss_mib();
    for _ in 0..options.sessions {
        initialize(&http, &through, Some(&key)).await?;
    }
    let with_sessions = rss_mib();
    primary.gateway.stop();

    let (cpu_monitored, cpu_bare, overhead) = monitoring_overhead(&options, &server, &http, &upstream, metrics).await?;

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
            format!(
                "gateway CPU per call side by side, {}, {} (its threads and its database's backends; median \
                 of {} rounds)",
                match options.overhead_rate {
                    0 => "each as fast as it answers".to_owned(),
                    rate => format!("{rate} calls/s each"),
                },
                match options.overhead_of {
                    Monitoring::Both => "with metrics and usage analytics (baseline: neither)",
                    Monitoring::Metrics => "with metrics (baseline: without; analytics on both)",
                    Monitoring::Analytics => "with usage analytics (baseline: without; no metrics)",
                    Monitoring::Nothing => "control: both alike (baseline: the other)",
                },
                options.overhead_rounds.max(2)
            ),
            cpu_monitored,
            "µs",
            cpu_bare,
            cpu_monitored / cpu_bare,
        ),
        Row::at_most(
            "  monitoring overhead in CPU per call (median over pairs of rounds, each pair's ratios' geometric mean)",
            overhead,
            "%",
            5.0,
        ),
        Row::info("process RSS before opening sessions (gateway, client and echo server)", before_sessions, "MiB"),
        Row::at_most(format!("process RSS with {} more sessions open", options.sessions), with_sessions, "MiB", 100.0),
    ];
    rows.extend(compared);
    Ok(rows)
}

/// What monitoring costs: a gateway with it and one without side by side, each sent the same calls per
/// second, each charged the CPU of its own runtime's threads and of its own database's backends (the
/// client's and the echo server's left out): the median CPU per call of each, in µs, and the overhead in
/// percent.
///
/// Run together, the two see the same machine: rates measured one after the other swung by 15 % between
/// rounds on this 2-core machine, more than the cost to be measured. Side by side, two gateways alike
/// still differed by 2–3 % with the same one always ahead (`--overhead-of nothing`), so each round starts
/// a fresh pair, the monitored one first in one round and second in the next, and a pair of rounds
/// counts the geometric mean of its two ratios: what the order adds to one it takes from the other. A
/// round's CPU counts the time its gateways take afterwards to record the calls and bring their audit
/// trail and analytics up to them, so the work calls leave behind is charged to the round.
async fn monitoring_overhead(
    options: &Options,
    server: &PostgresServer,
    http: &reqwest::Client,
    upstream: &str,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
) -> anyhow::Result<(f64, f64, f64)> {
    let (monitored_metrics, bare_metrics) = options.overhead_of.metrics();
    let (rate, span) = (options.overhead_rate, Duration::from_secs(options.overhead_seconds));
    let pg_data = server.directory().join("data");
    let (mut cpu_monitored, mut cpu_bare, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..options.overhead_rounds.max(2) {
        let monitored_first = round % 2 == 0;
        // Threads of a runtime shut down may linger a moment: each round's names are its own.
        let start_monitored = async {
            let runtime = OwnRuntime::new(&format!("gw-mon-{round}"), monitored_metrics)?;
            Served::start(server, http, upstream, true, Some(metrics.clone()), Some(runtime)).await
        };
        let start_bare = async {
            let runtime = OwnRuntime::new(&format!("gw-bare-{round}"), bare_metrics)?;
            Served::start(server, http, upstream, options.overhead_of.bare_analytics(), None, Some(runtime)).await
        };
        let (monitored, bare) = if monitored_first {
            let monitored = start_monitored.await?;
            (monitored, start_bare.await?)
        } else {
            let bare = start_bare.await?;
            (start_monitored.await?, bare)
        };
        let mut pair = [&monitored, &bare];
        if !monitored_first {
            pair.reverse();
        }
        let targets = pair.map(Served::target);
        for target in &targets {
            max_rate(http, target, Duration::from_secs(1)).await?;
        }
        for served in pair {
            served.settle().await?;
        }
        let before = [pair[0].cpu_seconds(&pg_data)?, pair[1].cpu_seconds(&pg_data)?];
        let (first, second) = tokio::join!(load(http, &targets[0], rate, span), load(http, &targets[1], rate, span));
        let calls = [first?, second?];
        for served in pair {
            served.settle().await?;
        }
        let after = [pair[0].cpu_seconds(&pg_data)?, pair[1].cpu_seconds(&pg_data)?];
        // Per call, in µs: [gateway threads, PostgreSQL backends] of each.
        let mut split: Vec<[f64; 2]> = (0..2)
            .map(|i| [0, 1].map(|part| (after[i][part] - before[i][part]) / calls[i].max(1) as f64 * 1e6))
            .collect();
        let mut calls = calls.to_vec();
        if !monitored_first {
            split.reverse();
            calls.reverse();
        }
        let per_call: Vec<f64> = split.iter().map(|[threads, backends]| threads + backends).collect();
        eprintln!(
            "monitoring overhead round {round} ({} first): CPU per call {:.1} µs monitored ({:.1} + {:.1} in \
             PostgreSQL), {:.1} µs bare ({:.1} + {:.1}); {} and {} calls",
            if monitored_first { "monitored" } else { "bare" },
            per_call[0],
            split[0][0],
            split[0][1],
            per_call[1],
            split[1][0],
            split[1][1],
            calls[0],
            calls[1],
        );
        cpu_monitored.push(per_call[0]);
        cpu_bare.push(per_call[1]);
        ratios.push(per_call[0] / per_call[1]);
        monitored.gateway.stop();
        bare.gateway.stop();
    }
    let mut overheads: Vec<f64> =
        ratios.chunks_exact(2).map(|pair| 100.0 * ((pair[0] * pair[1]).sqrt() - 1.0)).collect();
    let overhead = crate::runner::median(&mut overheads);
    Ok((crate::runner::median(&mut cpu_monitored), crate::runner::median(&mut cpu_bare), overhead))
}
