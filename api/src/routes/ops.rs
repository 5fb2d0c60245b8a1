//! `/health`, `/ready`, `/metrics`.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use projections::ProjectionState;

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

/// Readiness: every component this instance needs, each with its status.
///
/// 503 when the instance cannot serve: the database does not answer, or a projection is not ready or
/// halted (named with the event it stopped at). 200 `degraded`, naming the check, when it serves with
/// something missing: NATS, which only carries wake-ups and the live feed (the store is the truth, and
/// projections follow it without NATS), or an authorization model past its lag bound but following
/// (requests with a change pending are refused, the others served). A load balancer then does not turn
/// either into a full outage.
#[utoipa::path(get, path = "/ready", operation_id = "ready", tag = "operations", responses((status = 200, description = "the instance serves (`status` ok or degraded, each check named)", body = Object), (status = 503, description = "the instance cannot serve; the failing checks say why", body = Object)))]
pub(crate) async fn ready(State(state): State<AppState>) -> Response {
    let store = state.tables.ping().await;
    let nats = match &state.nats {
        Some(client) => Some(nats_check(client, &state.nats_stream).await),
        None => None,
    };
    let lagging = state.authz_lag.exceeded();
    let mut checks = serde_json::Map::new();
    checks.insert("event_store".into(), check(&store));
    checks.insert("nats".into(), nats.as_ref().map_or(json!("not configured"), check));
    let mut serving = store.is_ok();
    let mut degraded = false;
    for status in state.projections() {
        let status = status.borrow().clone();
        let lag = (status.name == "authz").then(|| lagging.map(|d| d.as_millis() as u64)).flatten();
        let ready = status.is_ready();
        serving &= ready;
        // Behind but following: requests whose facts have a change pending are refused, the rest served.
        degraded |= ready && lag.is_some();
        let mut detail = json!({
            "status": if !ready { "unavailable" } else if lag.is_some() { "behind" } else { "ok" },
            "state": state_name(&status.state),
            "checkpoint": status.checkpoint.map(|p| p.to_string()),
        });
        if let ProjectionState::Halted(error) = &status.state {
            detail["halted_at"] = json!(status.halted_at.map(|p| p.to_string()));
            detail["error"] = json!(error);
        } else if let Some(error) = &status.last_error {
            detail["retrying_after"] = json!(error);
        }
        if let Some(lag) = lag {
            detail["behind_ms"] = json!(lag);
        }
        checks.insert(format!("projection.{}", status.name), detail);
    }
    degraded |= nats.as_ref().is_some_and(Result::is_err);
    let overall = if !serving {
        "unavailable"
    } else if degraded {
        "degraded"
    } else {
        "ok"
    };
    let body = json!({ "status": overall, "checks": checks });
    let status = if serving { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(body)).into_response()
}

fn check(result: &Result<(), String>) -> serde_json::Value {
    match result {
        Ok(()) => json!("ok"),
        Err(error) => json!({ "status": "unavailable", "error": error }),
    }
}

fn state_name(state: &ProjectionState) -> &'static str {
    match state {
        ProjectionState::Starting => "starting",
        ProjectionState::CatchingUp => "catching_up",
        ProjectionState::Live => "live",
        ProjectionState::Standby { current: true } => "standby",
        ProjectionState::Standby { current: false } => "standby_behind",
        ProjectionState::Halted(_) => "halted",
    }
}

/// NATS is connected and holds the relay's stream: a server restarted with an empty store has lost it,
/// and the relay's next publish would only find out after its acknowledgement timed out.
async fn nats_check(client: &async_nats::Client, stream: &str) -> Result<(), String> {
    if client.connection_state() != async_nats::connection::State::Connected {
        return Err("not connected".into());
    }
    let jetstream = async_nats::jetstream::new(client.clone());
    match tokio::time::timeout(std::time::Duration::from_secs(2), jetstream.get_stream(stream)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("stream {stream}: {e}")),
        Err(_) => Err(format!("stream {stream}: no answer in 2 s")),
    }
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
