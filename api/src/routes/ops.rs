//! `/health`, `/ready`, `/metrics`.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::state::AppState;

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/health", get(health)).route("/ready", get(ready)).route("/metrics", get(metrics))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", operation_id = "health", tag = "operations", responses((status = 200, description = "the process answers", body = Object)))]
pub(crate) async fn health() -> Response {
    axum::Json(json!({ "status": "ok" })).into_response()
}

/// `?strict=true`: a degraded check answers 503 too.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ReadyQuery {
    /// Answer 503 for `degraded` as well as `unavailable` (monitors and deployment gates; a load
    /// balancer leaves it off).
    #[serde(default)]
    strict: bool,
}

/// Readiness: the seven checks (event store, NATS, projections, authorization model, identity
/// providers, MCP servers, keys), each with its status, latency and what it found (the down servers and
/// the IdPs' errors for authenticated callers only).
///
/// 503 `draining` from SIGTERM until the instance stops; 503 when this instance cannot serve (`unavailable`: the database does not answer, a projection is
/// not caught up or halted, no signing key). 200 `degraded`, naming the check, when it serves with
/// something shared missing or about to be (NATS, an IdP, a server, a key near its expiry, the
/// authorization model behind): a load balancer then does not turn a shared dependency's outage into
/// a full one. `?strict=true` answers 503 for `degraded` too.
#[utoipa::path(get, path = "/ready", operation_id = "ready", tag = "operations", params(ReadyQuery), responses((status = 200, description = "the instance serves: `status` ok or degraded, and each check's `status`, `latency_ms` and `detail`", body = Object), (status = 503, description = "the instance cannot serve (or, with `strict`, something is degraded); the failing checks say why", body = Object)))]
pub(crate) async fn ready(
    State(state): State<AppState>,
    caller: Result<crate::auth::Caller, crate::problem::Problem>,
    Query(query): Query<ReadyQuery>,
) -> Response {
    use crate::readiness::CheckStatus;
    if state.draining.load(std::sync::atomic::Ordering::Acquire) {
        let body = json!({ "status": "draining", "failing": ["draining"], "checks": {} });
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    }
    let report = crate::readiness::run(&state).await;
    let overall = report.status();
    let failing: Vec<&str> =
        report.checks.iter().filter(|(_, c)| c.status > CheckStatus::Ok).map(|(n, _)| *n).collect();
    let mut checks = report.checks_json();
    // Load balancers and probes ask without a credential: they get every status, latency and count,
    // but not what names the gateway's surroundings (which servers are down and why, the IdPs' errors),
    // which is for its users.
    if caller.is_err() {
        if let Some(servers) = checks.pointer_mut("/servers/detail").and_then(|d| d.as_object_mut()) {
            servers.remove("down_servers");
        }
        if let Some(idps) = checks.pointer_mut("/idps/detail").and_then(|d| d.as_array_mut()) {
            for idp in idps.iter_mut().filter_map(|idp| idp.as_object_mut()) {
                if idp.remove("error").is_some() {
                    idp.insert("error".into(), json!("unavailable (authenticate to see why)"));
                }
            }
        }
    }
    let body = json!({ "status": overall, "failing": failing, "checks": checks });
    let unready = overall == CheckStatus::Unavailable || (query.strict && overall == CheckStatus::Degraded);
    let status = if unready { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    (status, axum::Json(body)).into_response()
}

/// Prometheus text. A halted projection's lag is the time since it halted, and grows with every scrape
/// (nothing else updates it once its runner stopped).
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "operations", responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain", body = String), (status = 404, description = "no metrics recorder in this process", body = crate::problem::Problem)))]
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let Some(handle) = &state.metrics else { return StatusCode::NOT_FOUND.into_response() };
    for status in state.projections() {
        let status = status.borrow();
        if let Some(since) = status.halted_since {
            metrics::gauge!("mgw_projection_lag_seconds", "projection" => status.name.clone())
                .set(since.elapsed().as_secs_f64());
        }
        metrics::gauge!("mgw_projection_halted", "projection" => status.name.clone())
            .set(if status.halted_since.is_some() { 1.0 } else { 0.0 });
        // From the same statuses as `/ready`, so the two always name the same projections.
        metrics::gauge!("mgw_projection_ready", "projection" => status.name.clone()).set(if status.is_ready() {
            1.0
        } else {
            0.0
        });
    }
    handle.render().into_response()
}
