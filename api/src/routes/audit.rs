//! `/api/v1/audit`: the audit trail for auditors (and owners). Every read is itself recorded before it is
//! answered: if the record cannot be written, the read does not happen (503).

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::routing::get;
use domain::access::{AccessEvent, AuditTrailRead};
use domain::authz::Action;
use projections::audit::{AuditFilter, AuditRecord};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::Caller;
use crate::params;
use crate::problem::Problem;
use crate::state::AppState;

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/audit", get(list)).route("/api/v1/audit/verify", get(verify))
}

/// A page of the trail.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    /// Entries in order.
    pub entries: Vec<AuditRecord>,
    /// Pass as `cursor` for the next page.
    pub next_cursor: Option<String>,
}

/// The result of verifying the trail.
#[derive(Serialize, utoipa::ToSchema)]
pub struct VerifyReply {
    /// Entries checked.
    pub checked: u64,
    /// The first bad entry: its number, `$all` position and what is wrong; `null` when all is well.
    #[schema(value_type = Option<Object>)]
    pub violation: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    target_kind: Option<String>,
    target_id: Option<String>,
    outcome: Option<String>,
    from: Option<chrono::DateTime<chrono::Utc>>,
    to: Option<chrono::DateTime<chrono::Utc>>,
    correlation_id: Option<Uuid>,
    cursor: Option<i64>,
    limit: Option<u32>,
}

/// Records that `caller` read the trail with `query`; the read does not happen when this fails.
async fn record_read(state: &AppState, caller: &Caller, query: String) -> Result<(), Problem> {
    let read = AccessEvent::AuditRead(AuditTrailRead { principal_id: caller.0.id, query });
    crate::access_log::record(state, caller, read)
        .await
        .map_err(|_| Problem::unavailable("the read of the audit trail could not be recorded"))
}

#[utoipa::path(get, path = "/api/v1/audit", operation_id = "query_audit", params(("actor" = Option<String>, Query), ("action" = Option<String>, Query, description = "action prefix, e.g. `server.`"), ("target_kind" = Option<String>, Query), ("target_id" = Option<String>, Query), ("outcome" = Option<String>, Query), ("from" = Option<String>, Query), ("to" = Option<String>, Query), ("correlation_id" = Option<Uuid>, Query), ("cursor" = Option<i64>, Query), ("limit" = Option<u32>, Query)), responses((status = 200, body = AuditPage), (status = 403, body = Problem), (status = 503, body = Problem)), security(("api_key" = [])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
    axum::extract::Query(query): axum::extract::Query<AuditQuery>,
) -> Result<axum::Json<AuditPage>, Problem> {
    caller.authorize(&state, Action::ReadAudit, "audit").await?;
    let filter = AuditFilter {
        actor: params::text("actor", query.actor)?,
        action_prefix: params::text("action", query.action)?,
        target_kind: params::text("target_kind", query.target_kind)?,
        target_id: params::text("target_id", query.target_id)?,
        outcome: params::text("outcome", query.outcome)?,
        from: query.from,
        to: query.to,
        correlation_id: query.correlation_id,
        after: query.cursor,
        limit: query.limit.unwrap_or(100),
    };
    record_read(&state, &caller, raw.unwrap_or_default()).await?;
    let (entries, next) = projections::audit::query(&state.pool, &filter)
        .await
        .map_err(|_| Problem::unavailable("the audit trail is unreachable"))?;
    Ok(axum::Json(AuditPage { entries, next_cursor: next.map(|n| n.to_string()) }))
}

#[utoipa::path(get, path = "/api/v1/audit/verify", operation_id = "verify_audit", responses((status = 200, body = VerifyReply), (status = 403, body = Problem), (status = 503, body = Problem)), security(("api_key" = [])))]
pub(crate) async fn verify(State(state): State<AppState>, caller: Caller) -> Result<axum::Json<VerifyReply>, Problem> {
    caller.authorize(&state, Action::ReadAudit, "audit").await?;
    record_read(&state, &caller, "verify".to_owned()).await?;
    let report = projections::audit::verify(&state.pool)
        .await
        .map_err(|_| Problem::unavailable("the audit trail is unreachable"))?;
    let violation = report.violation.map(|v| {
        serde_json::json!({
            "seq": v.seq,
            "position": v.position.map(|p| p.to_string()),
            "kind": format!("{:?}", v.kind),
        })
    });
    Ok(axum::Json(VerifyReply { checked: report.checked, violation }))
}
