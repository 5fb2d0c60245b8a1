//! The periodic health checker: every server the gateway routes to is tested the way the connection
//! tester tests it (one code path, one timeout), and what changed is recorded on the server's stream:
//! `ServerHealthChanged` when a check passes where it failed or fails where it passed, and
//! `ServerToolsDiscovered` when the tools listed changed. Every instance checks; the aggregate records
//! only transitions, so instances that agree write one event between them.

use std::time::Duration;

use futures_util::StreamExt;
use uuid::Uuid;

use crate::state::AppState;

/// Servers tested at once.
const CONCURRENT_CHECKS: usize = 8;

/// Checks every server every `interval`, the first time one interval after start.
pub(crate) async fn run(state: AppState, interval: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        check_all(&state).await;
    }
}

/// One round: every routed (not suspended) server, a few at a time.
pub(crate) async fn check_all(state: &AppState) {
    let servers: Vec<(Uuid, projections::authz::Upstream)> = match state.authz.read() {
        Ok(model) => model.servers().filter(|(_, s)| !s.suspended).map(|(id, s)| (id, s.upstream.clone())).collect(),
        Err(_) => return,
    };
    futures_util::stream::iter(servers)
        .for_each_concurrent(CONCURRENT_CHECKS, |(id, upstream)| async move { check(state, id, &upstream).await })
        .await;
}

async fn check(state: &AppState, id: Uuid, upstream: &projections::authz::Upstream) {
    let report = super::tester::test(state, id, None, upstream).await;
    let health = report.health();
    let label = id.to_string();
    metrics::gauge!("mgw_upstream_up", "server" => label.clone()).set(if health.is_healthy() { 1.0 } else { 0.0 });
    metrics::histogram!("mgw_upstream_check_duration_seconds").record(report.elapsed_ms / 1000.0);
    let command_id = Uuid::now_v7();
    let metadata =
        eventstore::Metadata::new(command_id, eventstore::Actor::system("health-checker"), chrono::Utc::now());
    let context = commands::servers::CommandContext { command_id, metadata };
    let state_name = health.state();
    match state.servers.record_check(id, health, report.discovered, &context).await {
        Ok(outcome) if outcome.position.is_some() => {
            tracing::info!(server = %id, health = state_name, "a server's health or tools changed");
        }
        Ok(_) => {}
        // Deregistered meanwhile.
        Err(commands::CommandError::Domain(domain::server::ServerError::NotFound))
        | Err(commands::CommandError::Domain(domain::server::ServerError::Deregistered)) => {}
        Err(error) => tracing::warn!(server = %id, %error, "could not record a health check"),
    }
}
