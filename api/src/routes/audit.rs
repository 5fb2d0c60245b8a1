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
    Router::new()
        .route("/api/v1/audit", get(list))
        .route("/api/v1/audit/verify", get(verify))
        .route("/api/v1/audit/export", get(export))
        .route("/api/v1/audit/keys", get(keys))
        .route("/api/v1/audit/hash", axum::routing::post(hash))
        .route("/api/v1/audit/{seq}", get(one))
}

/// A page of the trail.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    /// Entries in order.
    pub entries: Vec<AuditRecord>,
    /// Pass as `cursor` for the next page.
    pub next_cursor: Option<String>,
}

/// The result of verifying the trail (the document `GET /api/v1/audit/verify` answers; built by
/// [`crate::verification::Verification::to_json`]).
#[derive(Serialize, utoipa::ToSchema)]
pub struct VerifyReply {
    /// True when every check passed.
    pub intact: bool,
    /// Entries whose chain and event were checked.
    pub checked: u64,
    /// The first bad entry: its number, `$all` position and what is wrong; `null` when all is well.
    #[schema(value_type = Option<Object>)]
    pub violation: Option<serde_json::Value>,
    /// Entries compared with the entry their event makes.
    pub content_checked: u64,
    /// The first entry that does not say what its event says (`Rewritten`); `null` when all is well.
    #[schema(value_type = Option<Object>)]
    pub content_violation: Option<serde_json::Value>,
    /// Signed checkpoints checked.
    pub checkpoints_checked: u64,
    /// The first bad checkpoint: its id, the entry it signed and what is wrong; `null` when all is well.
    #[schema(value_type = Option<Object>)]
    pub checkpoint_violation: Option<serde_json::Value>,
    /// The event store's hash chains: streams and events checked, and every violation.
    #[schema(value_type = Object)]
    pub store: serde_json::Value,
}

/// `GET /api/v1/audit/keys`: the public keys that verify checkpoints (public: they reveal nothing).
#[utoipa::path(get, path = "/api/v1/audit/keys", operation_id = "audit_keys", tag = "audit", responses((status = 200, description = "the public keys that verify the signed checkpoints", body = Object)))]
pub(crate) async fn keys(State(state): State<AppState>) -> axum::Json<serde_json::Value> {
    let keys: Vec<serde_json::Value> = state
        .audit_keys
        .public_keys()
        .into_iter()
        .map(|(key_id, public_key)| serde_json::json!({ "key_id": key_id, "algorithm": "Ed25519", "public_key": public_key }))
        .collect();
    axum::Json(serde_json::json!({ "keys": keys }))
}

/// A value to hash as the trail hashes secrets.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HashRequest {
    /// The candidate value (a token, a client secret).
    pub value: String,
    /// The fingerprint key to hash with, as named in the hash being compared (default: the current key).
    pub key_id: Option<String>,
}

/// The keyed hash of a value.
#[derive(Serialize, utoipa::ToSchema)]
pub struct HashReply {
    /// `hmac-sha256:<key id>:<hex>`: compare with the `credential` values of the trail.
    pub hash: String,
}

/// `POST /api/v1/audit/hash`: the keyed hash the trail would record for a secret value (Vault's
/// `sys/audit-hash`), so that an auditor holding a candidate (a leaked token, say) can find where it was
/// configured without the trail ever holding secrets. Asked by auditors only; the request is recorded,
/// never the value.
#[utoipa::path(post, path = "/api/v1/audit/hash", operation_id = "audit_hash", request_body = HashRequest, responses((status = 200, body = HashReply), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)), security(("api_key" = [])))]
pub(crate) async fn hash(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<axum::Json<HashReply>, Problem> {
    caller.authorize(&state, Action::ReadAudit, "audit").await?;
    let request: HashRequest = crate::json_body::parse(&crate::json_body::bytes(body)?)?;
    let key_id = request.key_id.unwrap_or_else(|| state.keyring.current_key_id().to_owned());
    let hash = state.keyring.secret_hash(&request.value, &key_id).ok_or_else(|| {
        Problem::new(axum::http::StatusCode::UNPROCESSABLE_ENTITY, "unknown-key", "Unknown key")
            .field("key_id")
            .detail("no fingerprint key with this id is configured")
    })?;
    record_read(&state, &caller, format!("hash?key_id={key_id}")).await?;
    Ok(axum::Json(HashReply { hash }))
}

#[derive(Deserialize, Clone)]
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
    format: Option<String>,
}

impl AuditQuery {
    fn filter(self) -> Result<AuditFilter, Problem> {
        Ok(AuditFilter {
            actor: params::text("actor", self.actor)?,
            action_prefix: params::text("action", self.action)?,
            target_kind: params::text("target_kind", self.target_kind)?,
            target_id: params::text("target_id", self.target_id)?,
            outcome: params::one_of("outcome", self.outcome, &["success", "denied"])?,
            from: self.from,
            to: self.to,
            correlation_id: self.correlation_id,
            after: self.cursor,
            through: None,
            limit: self.limit.unwrap_or(100),
        })
    }
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
    let filter = query.filter()?;
    record_read(&state, &caller, raw.unwrap_or_default()).await?;
    let (entries, next) = find(&state, &filter).await?;
    Ok(axum::Json(AuditPage { entries, next_cursor: next.map(|n| n.to_string()) }))
}

#[utoipa::path(get, path = "/api/v1/audit/verify", operation_id = "verify_audit", responses((status = 200, body = VerifyReply), (status = 403, body = Problem), (status = 429, body = Problem), (status = 503, body = Problem)), security(("api_key" = [])))]
/// `GET /api/v1/audit/verify`: the same verification as `mcp-gateway audit verify` (the store's chains,
/// the trail's chain and completeness, each entry's content against its event, the signed checkpoints).
pub(crate) async fn verify(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<serde_json::Value>, Problem> {
    caller.authorize(&state, Action::ReadAudit, "audit").await?;
    // It reads the whole log and the whole trail: one at a time per instance.
    let Ok(_running) = state.verifying.try_acquire() else {
        return Err(Problem::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "verification-running",
            "A verification is running",
        )
        .detail("one verification runs at a time; retry when it has finished"));
    };
    record_read(&state, &caller, "verify".to_owned()).await?;
    let report = crate::verification::verify(&*state.store, &audit(&state), &state.audit_keys).await.map_err(|e| {
        tracing::warn!(error = %e, "audit verification could not run");
        Problem::unavailable("the audit trail or the event store is unreachable")
    })?;
    Ok(axum::Json(report.to_json()))
}

/// Entries per page of an export: the export holds this many in memory at a time, whatever its size.
const EXPORT_PAGE: u32 = 500;

/// `GET /api/v1/audit/export?format=jsonl|csv` with the filters of the query: every matching entry,
/// streamed page by page in number order (constant memory).
#[utoipa::path(get, path = "/api/v1/audit/export", operation_id = "export_audit", tag = "audit", params(("format" = Option<String>, Query, description = "`jsonl` (default) or `csv`"), ("actor" = Option<String>, Query), ("action" = Option<String>, Query), ("target_kind" = Option<String>, Query), ("target_id" = Option<String>, Query), ("outcome" = Option<String>, Query), ("from" = Option<String>, Query), ("to" = Option<String>, Query), ("correlation_id" = Option<Uuid>, Query)), responses((status = 200, description = "the entries, as JSON lines (with checkpoints and a signed trailer for a whole range) or CSV", content_type = "application/x-ndjson", body = String), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 503, body = Problem)), security(("api_key" = [])))]
pub(crate) async fn export(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
    axum::extract::Query(query): axum::extract::Query<AuditQuery>,
) -> Result<axum::response::Response, Problem> {
    caller.authorize(&state, Action::ReadAudit, "audit").await?;
    let csv = match query.format.as_deref() {
        None | Some("jsonl") => false,
        Some("csv") => true,
        Some(_) => {
            return Err(Problem::new(axum::http::StatusCode::BAD_REQUEST, "invalid-parameter", "Invalid parameter")
                .field("format")
                .detail("jsonl or csv"));
        }
    };
    // Only a contiguous range (a cursor, nothing else) chains from entry to entry: other filters give a
    // plain extract, without checkpoints or trailer, that does not verify offline.
    let contiguous = query.actor.is_none()
        && query.action.is_none()
        && query.target_kind.is_none()
        && query.target_id.is_none()
        && query.outcome.is_none()
        && query.from.is_none()
        && query.to.is_none()
        && query.correlation_id.is_none();
    let mut filter = query.filter()?;
    filter.limit = EXPORT_PAGE;
    let signed = !csv && contiguous;
    record_read(&state, &caller, format!("export?{}", raw.unwrap_or_default())).await?;
    let header = csv.then(crate::audit_export::csv_header);
    let pages = crate::audit_export::export_lines(audit(&state), state.audit_keys.clone(), filter, csv, signed);
    let body = futures_util::StreamExt::chain(futures_util::stream::iter(header.map(Ok)), pages);
    let content_type = if csv { "text/csv; charset=utf-8" } else { "application/x-ndjson" };
    axum::response::Response::builder()
        .header(axum::http::header::CONTENT_TYPE, content_type)
        .body(axum::body::Body::from_stream(body))
        .map_err(|_| Problem::internal())
}

/// `GET /api/v1/audit/{seq}`: one entry.
#[utoipa::path(get, path = "/api/v1/audit/{seq}", operation_id = "read_audit_entry", tag = "audit", params(("seq" = i64, Path)), responses((status = 200, body = AuditRecord), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 503, body = Problem)), security(("api_key" = [])))]
pub(crate) async fn one(
    State(state): State<AppState>,
    caller: Caller,
    axum::extract::Path(seq): axum::extract::Path<i64>,
) -> Result<axum::Json<AuditRecord>, Problem> {
    caller.authorize(&state, Action::ReadAudit, "audit").await?;
    record_read(&state, &caller, format!("entry {seq}")).await?;
    let after = seq.checked_sub(1).ok_or_else(Problem::not_found)?;
    let filter = AuditFilter { after: Some(after), limit: 1, ..Default::default() };
    let (records, _) = find(&state, &filter).await?;
    records.into_iter().find(|r| r.seq == seq).map(axum::Json).ok_or_else(Problem::not_found)
}

/// A page of the trail, from whichever backend holds it.
async fn find(state: &AppState, filter: &AuditFilter) -> Result<(Vec<AuditRecord>, Option<i64>), Problem> {
    audit(state).query(filter).await.map_err(|_| Problem::unavailable("the audit trail is unreachable"))
}

/// The audit trail of the instance's backend.
pub fn audit(state: &AppState) -> projections::audit::AuditSource {
    match &state.tables {
        crate::tables::Tables::Postgres(pool) => projections::audit::AuditSource::Postgres(pool.clone()),
        crate::tables::Tables::Sqlite(pool) => {
            projections::audit::AuditSource::Sqlite(projections::audit::SqliteAuditTrail::new(pool.clone()))
        }
    }
}
