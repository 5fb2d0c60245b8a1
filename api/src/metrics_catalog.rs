//! Every metric family the gateway exports, described once: Prometheus shows each `# HELP` line, and a
//! family missing here is caught by the test that reads `/metrics` (every `# TYPE` needs its `# HELP`).

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Describes every family to the installed recorder (call once, after installing it).
pub fn describe() {
    describe_counter!("mgw_http_requests_total", "HTTP requests answered, by method, route template and status");
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
