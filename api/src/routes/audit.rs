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

/// The entries exported so far: first number and the link before it, last number and its link, count.
#[derive(Clone)]
struct Range {
    first: (i64, String),
    last: (i64, String),
    count: u64,
}

/// Where an export is.
enum Export {
    /// Entries after the filter's cursor, and the range exported so far.
    Page(AuditFilter, Option<Range>),
    /// The checkpoints signing the exported range, then the trailer.
    Checkpoints(Range),
    /// The signed trailer.
    Trailer(Range),
    /// Finished.
    Done,
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
    let header = csv.then(|| format!("{}\n", CSV_COLUMNS.join(",")));
    let pages = export_lines(audit(&state), state.audit_keys.clone(), filter, csv, signed);
    let body = futures_util::StreamExt::chain(futures_util::stream::iter(header.map(Ok)), pages);
    let content_type = if csv { "text/csv; charset=utf-8" } else { "application/x-ndjson" };
    axum::response::Response::builder()
        .header(axum::http::header::CONTENT_TYPE, content_type)
        .body(axum::body::Body::from_stream(body))
        .map_err(|_| Problem::internal())
}

/// The lines of an export of the entries `filter` selects, page by page in number order (constant
/// memory): JSON lines or CSV rows; when `signed`, followed by the checkpoints that sign the range and a
/// signed trailer, so that the file verifies offline (`mcp-gateway audit verify-export`). Also writes the
/// archive of `mcp-gateway audit prune`.
pub fn export_lines(
    source: projections::audit::AuditSource,
    keys: std::sync::Arc<projections::audit::AuditKeys>,
    filter: AuditFilter,
    csv: bool,
    signed: bool,
) -> impl futures_util::Stream<Item = Result<String, std::io::Error>> + Send {
    // Pages of entries, then (JSON lines) the signed checkpoints that cover them, so that the file
    // verifies offline (`mcp-gateway audit verify-export`).
    futures_util::stream::unfold(Export::Page(filter, None), move |step| {
        let (source, keys) = (source.clone(), keys.clone());
        async move {
            match step {
                Export::Page(mut filter, range) => match source.query(&filter).await {
                    Ok((records, next)) => {
                        let mut chunk = String::new();
                        for record in &records {
                            chunk.push_str(&if csv { csv_line(record) } else { json_line(record) });
                        }
                        let range = match (range, records.first(), records.last()) {
                            (Some(range), _, Some(last)) => Some(Range {
                                last: (last.seq, last.entry_hash.clone()),
                                count: range.count + records.len() as u64,
                                ..range
                            }),
                            (None, Some(first), Some(last)) => Some(Range {
                                first: (first.seq, first.prev_hash.clone()),
                                last: (last.seq, last.entry_hash.clone()),
                                count: records.len() as u64,
                            }),
                            (range, _, _) => range,
                        };
                        let following = match (next, range) {
                            (Some(after), range) => {
                                filter.after = Some(after);
                                Export::Page(filter, range)
                            }
                            (None, Some(range)) if signed => Export::Checkpoints(range),
                            (None, _) => Export::Done,
                        };
                        Some((Ok::<_, std::io::Error>(chunk), following))
                    }
                    Err(error) => {
                        tracing::warn!(%error, "audit export failed part way");
                        Some((Err(std::io::Error::other("the audit trail became unreachable")), Export::Done))
                    }
                },
                Export::Checkpoints(range) => match source.checkpoints_between(range.first.0, range.last.0).await {
                    Ok(checkpoints) => {
                        let chunk: String = checkpoints
                            .into_iter()
                            .map(|checkpoint| {
                                let line = projections::audit::ExportLine::Checkpoint { checkpoint };
                                format!("{}\n", serde_json::to_string(&line).unwrap_or_default())
                            })
                            .collect();
                        Some((Ok(chunk), Export::Trailer(range)))
                    }
                    Err(_) => Some((Err(std::io::Error::other("the audit trail became unreachable")), Export::Done)),
                },
                Export::Trailer(range) => {
                    let trailer = projections::audit::ExportTrailer::sign(
                        &keys,
                        (range.first.0, &range.first.1),
                        (range.last.0, &range.last.1),
                        range.count,
                    );
                    let chunk = trailer
                        .map(|trailer| {
                            let line = projections::audit::ExportLine::Trailer { trailer };
                            format!("{}\n", serde_json::to_string(&line).unwrap_or_default())
                        })
                        .unwrap_or_default();
                    Some((Ok(chunk), Export::Done))
                }
                Export::Done => None,
            }
        }
    })
}

/// The columns of a CSV export, in order.
const CSV_COLUMNS: [&str; 19] = [
    "seq",
    "position",
    "event_id",
    "occurred_at",
    "actor_id",
    "actor_kind",
    "actor_name",
    "action",
    "target_kind",
    "target_id",
    "target_name",
    "outcome",
    "source_ip",
    "user_agent",
    "correlation_id",
    "causation_id",
    "reason",
    "changes",
    "entry_hash",
];

fn json_line(record: &AuditRecord) -> String {
    let mut line = serde_json::to_string(record).unwrap_or_default();
    line.push('\n');
    line
}

/// One RFC 4180 line: fields with a comma, quote or line break are quoted, quotes doubled.
fn csv_line(r: &AuditRecord) -> String {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let fields = [
        r.seq.to_string(),
        r.position.clone(),
        r.event_id.to_string(),
        r.occurred_at.to_rfc3339(),
        r.actor_id.clone(),
        r.actor_kind.clone(),
        opt(&r.actor_name),
        r.action.clone(),
        r.target_kind.clone(),
        r.target_id.clone(),
        opt(&r.target_name),
        r.outcome.clone(),
        opt(&r.source_ip),
        opt(&r.user_agent),
        r.correlation_id.to_string(),
        r.causation_id.map(|c| c.to_string()).unwrap_or_default(),
        opt(&r.reason),
        r.changes.to_string(),
        r.entry_hash.clone(),
    ];
    let cells: Vec<String> = fields.iter().map(|f| csv_cell(f)).collect();
    format!("{}\n", cells.join(","))
}

/// One CSV cell (RFC 4180 quoting). A cell a spreadsheet would read as a formula (`=`, `+`, `-`, `@`, a
/// tab or a carriage return first: `=HYPERLINK(…)` in a display name) is neutralised with a leading
/// `'`, as OWASP advises: the trail's text comes from people and identity providers.
fn csv_cell(field: &str) -> String {
    let field = if field.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        std::borrow::Cow::Owned(format!("'{field}"))
    } else {
        std::borrow::Cow::Borrowed(field)
    };
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.into_owned()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_with_separators_are_quoted() {
        let record: AuditRecord = serde_json::from_value(serde_json::json!({
            "seq": 1, "position": "1:1", "event_id": Uuid::nil(), "occurred_at": "2026-01-01T00:00:00Z",
            "actor_id": "a", "actor_kind": "user", "action": "server.updated", "target_kind": "server",
            "target_id": "t", "target_name": "x,y", "outcome": "success", "source_ip": null,
            "user_agent": "say \"hi\"", "correlation_id": Uuid::nil(), "causation_id": null,
            "reason": null, "changes": {"a": 1}, "prev_hash": "00", "entry_hash": "00"
        }))
        .unwrap();
        let line = csv_line(&record);
        assert!(line.contains(",\"x,y\","), "{line}");
        assert!(line.contains(",\"say \"\"hi\"\"\","), "{line}");
        assert!(line.contains("\"{\"\"a\"\":1}\""), "{line}");
    }

    #[test]
    fn csv_cells_never_start_a_formula() {
        assert_eq!(csv_cell("=HYPERLINK(\"http://evil\",\"x\")"), "\"'=HYPERLINK(\"\"http://evil\"\",\"\"x\"\")\"");
        for formula in ["+1", "-1+2", "@SUM(A1)", "\tx", "\rx"] {
            assert!(csv_cell(formula).trim_start_matches('"').starts_with('\''), "{formula:?}");
        }
        assert_eq!(csv_cell("plain, with comma"), "\"plain, with comma\"");
        assert_eq!(csv_cell("Ada"), "Ada");
    }
}
