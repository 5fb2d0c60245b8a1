//! Every metric family the gateway exports, described once: Prometheus shows each `# HELP` line, and a
//! family missing here is caught by the test that reads `/metrics` (every `# TYPE` needs its `# HELP`).

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

/// Buckets of requests answered over the network (HTTP, MCP, upstream, IdP), in seconds.
pub const REQUEST_BUCKETS: [f64; 13] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Buckets of the gateway's own work on a request, in seconds: fine enough for microseconds, with the
/// 0.5 ms and 2 ms edges of its latency objectives.
pub const IN_PROCESS_BUCKETS: [f64; 13] =
    [1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2];
/// Buckets of a commit to the event store, in seconds (a flush costs 0.1–0.2 ms on a fast disk).
pub const STORE_BUCKETS: [f64; 12] = [1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 1.0];

/// Installs the process's Prometheus recorder, every histogram with buckets (an exporter histogram
/// without them renders as a summary, which cannot be aggregated across instances), describes every
/// family and sets `mgw_build_info`. Once per process.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    let handle = builder()?.install_recorder()?;
    announce();
    Ok(handle)
}

/// The gateway's Prometheus recorder, not installed: for a harness that wraps it (the benchmark that
/// measures what recording costs installs it behind a switch), then calls [`announce`].
pub fn recorder() -> Result<PrometheusRecorder, BuildError> {
    Ok(builder()?.build_recorder())
}

fn builder() -> Result<PrometheusBuilder, BuildError> {
    PrometheusBuilder::new()
        .set_buckets(&REQUEST_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full("mgw_gateway_overhead_seconds".into()), &IN_PROCESS_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full("mgw_eventstore_append_seconds".into()), &STORE_BUCKETS)
}

/// Describes every family to the installed recorder and sets `mgw_build_info` (once, after installing it).
pub fn announce() {
    describe();
    metrics::gauge!("mgw_build_info", "version" => env!("CARGO_PKG_VERSION"), "git_sha" => env!("MGW_GIT_SHA"))
        .set(1.0);
}

/// Describes every family to the installed recorder (call once, after installing it).
fn describe() {
    describe_gauge!("mgw_build_info", "Always 1; the version and commit of the running binary as labels");
    describe_counter!(
        "mgw_mcp_requests_total",
        "MCP requests through the proxy, by JSON-RPC method and outcome (ok, denied, client_error, upstream_error, gateway_error)"
    );
    describe_histogram!(
        "mgw_mcp_request_duration_seconds",
        Unit::Seconds,
        "Time from an MCP request's arrival to its answer's headers, by JSON-RPC method"
    );
    describe_histogram!(
        "mgw_upstream_duration_seconds",
        Unit::Seconds,
        "Time an upstream MCP server took to answer a forwarded request (to its headers)"
    );
    describe_histogram!(
        "mgw_gateway_overhead_seconds",
        Unit::Seconds,
        "The gateway's own share of a forwarded MCP request: its answer time less the upstream's"
    );
    describe_counter!(
        "mgw_alert_deliveries_total",
        "Alert deliveries, by channel and outcome (delivered, dead_lettered)"
    );
    describe_counter!(
        "mgw_break_glass_uses_total",
        "Uses of the break-glass credential, by outcome (used, refused while not enabled)"
    );
    describe_counter!(
        "mgw_authz_decisions_total",
        "Authorization decisions of the permission matrix and servers' access policies, by decision (allow, deny)"
    );
    describe_counter!("mgw_http_requests_total", "HTTP requests answered, by method, route template and status");
    describe_counter!(
        "mgw_rate_limited_total",
        "Requests refused with 429 by a rate limit, by route group and scope (address or principal)"
    );
    describe_histogram!(
        "mgw_http_request_duration_seconds",
        Unit::Seconds,
        "Time to answer an HTTP request, by method and route template"
    );
    describe_histogram!(
        "mgw_idp_request_duration_seconds",
        Unit::Seconds,
        "Time of the gateway's requests to upstream identity providers (discovery, keys, code exchange, refresh)"
    );
    describe_counter!(
        "mgw_eventstore_appends_total",
        "Appends to the event store, by backend and outcome (ok, conflict, refused, error)"
    );
    describe_histogram!(
        "mgw_eventstore_append_seconds",
        Unit::Seconds,
        "Time to append to the event store, by backend"
    );
    describe_counter!(
        "mgw_eventstore_conflicts_total",
        "Appends that lost to a concurrent writer (wrong expected revision or a claim taken), by backend"
    );
    describe_counter!("mgw_relay_events_published_total", "Events the relay published to NATS JetStream");
    describe_counter!("mgw_tool_calls_recorded_total", "Forwarded tool calls recorded (ToolCalled appended)");
    describe_gauge!(
        "mgw_upstream_up",
        "Whether a registered server passed its last health check (reachable, MCP, credentials), by server id"
    );
    describe_histogram!(
        "mgw_upstream_check_duration_seconds",
        Unit::Seconds,
        "Time of one health check of a registered server (initialize and tools/list)"
    );
    describe_gauge!(
        "mgw_relay_lag_seconds",
        Unit::Seconds,
        "Age of the newest event the relay published when it published it"
    );
    describe_counter!("mgw_nats_feed_messages_total", "Events received from NATS by the live feed of a projection");
    describe_counter!("mgw_projection_events_applied_total", "Events applied to a read model, by projection");
    describe_gauge!(
        "mgw_projection_ready",
        "1 when the projection serves (caught up or a current standby), by projection"
    );
    describe_gauge!(
        "mgw_projection_lag_seconds",
        Unit::Seconds,
        "How far behind its newest event a projection is; grows from the halt while it is halted"
    );
    describe_gauge!("mgw_projection_halted", "1 when the projection stopped on an error running again cannot fix");
    describe_counter!(
        "mgw_projection_restarts_total",
        "Times a projection runner started again after an error it retries (connection, timeout)"
    );
    describe_gauge!(
        "mgw_audit_checkpoint_overdue_seconds",
        Unit::Seconds,
        "How long the next signed audit checkpoint is overdue (0 when on time)"
    );
    describe_gauge!("mgw_audit_unsigned_entries", "Audit entries after the last signed checkpoint");
}

/// How often the exporter's upkeep runs.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs the exporter's upkeep every few seconds, for as long as the runtime lives. A recorder installed
/// with `install_recorder` keeps every histogram observation until upkeep (or a scrape) folds it into its
/// buckets: without this, an instance nobody scrapes grew by every request's latency sample (about 10 MB
/// per million requests).
pub fn spawn_upkeep(handle: metrics_exporter_prometheus::PrometheusHandle) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(UPKEEP_EVERY);
        loop {
            every.tick().await;
            handle.run_upkeep();
        }
    })
}
