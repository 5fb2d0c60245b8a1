//! `/health`, `/ready`, `/metrics`.

use axum::Router;
use axum::extract::State;
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
async fn health() -> Response {
    axum::Json(json!({ "status": "ok" })).into_response()
}

/// Readiness: every component this instance needs, each with its status.
async fn ready(State(state): State<AppState>) -> Response {
    let store = state.tables.ping().await;
    let nats = state.nats.as_ref().map(|c| c.connection_state() == async_nats::connection::State::Connected);
    let authz = state.authz_status.borrow().clone();
    let registry = state.registry_status.borrow().clone();
    let lagging = state.authz_lag.exceeded();
    let ok = store && nats.unwrap_or(true) && authz.is_ready() && lagging.is_none() && registry.is_ready();
    let component = |ready: bool| if ready { "ok" } else { "unavailable" };
    let body = json!({
        "status": component(ok),
        "checks": {
            "event_store": component(store),
            "nats": nats.map(component).unwrap_or("not configured"),
            "projection.authz": { "status": component(authz.is_ready() && lagging.is_none()), "state": format!("{:?}", authz.state), "checkpoint": authz.checkpoint.map(|p| p.to_string()), "behind_ms": lagging.map(|d| d.as_millis() as u64) },
            "projection.registry": { "status": component(registry.is_ready()), "state": format!("{:?}", registry.state), "checkpoint": registry.checkpoint.map(|p| p.to_string()) },
        }
    });
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(body)).into_response()
}

/// Prometheus text.
async fn metrics(State(state): State<AppState>) -> Response {
    match &state.metrics {
        Some(handle) => handle.render().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
