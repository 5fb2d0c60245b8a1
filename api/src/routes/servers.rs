//! `/api/v1/servers`: the registry's commands and queries.

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use commands::servers::{CommandContext, Outcome, RegisterInput, UpdateInput, UpstreamAuthInput};
use domain::authz::{Action, Resource};
use eventstore::Position;
use projections::registry::CatalogueFilter;
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::Caller;
use crate::idempotency::{self, Stored, etag};
use crate::json_body;
use crate::params;
use crate::problem::Problem;
use crate::state::AppState;

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/servers", post(register).get(list))
        .route("/api/v1/servers/{id}", get(read).patch(update).delete(deregister))
        .route("/api/v1/servers/{id}/suspend", post(suspend))
        .route("/api/v1/servers/{id}/resume", post(resume))
        .route("/api/v1/servers/{id}/rotate-credential", post(rotate_credential))
        .route("/api/v1/servers/{id}/tool-rules", axum::routing::put(change_tool_rules))
        .route("/api/v1/servers/{id}/permissions", get(permissions))
        .route("/api/v1/servers/{id}/test", post(test_connection))
}

/// How long a read with `min_position` waits for the read model.
const CONSISTENCY_WAIT: Duration = Duration::from_secs(5);

fn context(caller: &Caller, command_id: Uuid) -> CommandContext {
    let actor = caller.actor();
    CommandContext { command_id, metadata: caller.1.metadata(actor, command_id) }
}

/// What a command answers: the server, its new revision (also the `ETag`), and the `$all` position to
/// pass as `min_position` to read the write back.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct CommandReply {
    /// The server.
    pub id: Uuid,
    /// Its revision after the command.
    pub revision: u64,
    /// Where the command's last event sits in `$all` (`null` when nothing changed).
    pub position: Option<String>,
}

/// A page of the catalogue.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ServerPage {
    /// The servers, in name order.
    pub servers: Vec<projections::registry::CatalogueEntry>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// Body of `suspend`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    /// Why (kept in the audit trail).
    reason: String,
}

/// Body of `rotate-credential`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateBody {
    /// The new upstream authentication.
    upstream_auth: UpstreamAuthInput,
}

fn outcome(status: StatusCode, outcome: Outcome) -> Stored {
    let reply = CommandReply {
        id: outcome.server_id,
        revision: outcome.revision,
        position: outcome.position.map(|p| p.to_string()),
    };
    let body = serde_json::to_value(&reply).unwrap_or_default();
    let location = (status == StatusCode::CREATED).then(|| format!("/api/v1/servers/{}", outcome.server_id));
    Stored { status, body, location, etag: Some(etag(outcome.revision)) }
}

#[utoipa::path(post, path = "/api/v1/servers", operation_id = "add_server", request_body = RegisterInput, params(("Idempotency-Key" = Option<String>, Header, description = "retries return the first response")), responses((status = 201, body = CommandReply), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)), security(("api_key" = [])))]
pub(crate) async fn register(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Stored, Problem> {
    caller.authorize(&state, Action::ManageServers, "servers").await?;
    let body = json_body::bytes(body)?;
    let input: RegisterInput = json_body::parse(&body)?;
    let servers = state.servers.clone();
    idempotency::run(&state, caller.0.id, &headers, &[b"register", &body], |command_id| async move {
        let server_id = Uuid::new_v5(&command_id, b"server");
        let ctx = context(&caller, command_id);
        let done = servers.register(server_id, input, &caller.0.id.to_string(), &ctx).await?;
        Ok(outcome(StatusCode::CREATED, done))
    })
    .await
}

/// `If-Match: "<revision>"`: required on PATCH (428 without it).
fn if_match(headers: &HeaderMap, required: bool) -> Result<Option<u64>, Problem> {
    match headers.get(header::IF_MATCH) {
        None if required => {
            Err(Problem::new(StatusCode::PRECONDITION_REQUIRED, "if-match-required", "If-Match required")
                .detail("send the server's ETag as If-Match"))
        }
        None => Ok(None),
        // Any current representation: the server must exist, which every command checks anyway.
        Some(value) if value.as_bytes() == b"*" => Ok(None),
        // Weak tags never match under If-Match (RFC 9110 §13.1.1).
        Some(value) if value.as_bytes().starts_with(b"W/") => {
            Err(Problem::new(StatusCode::PRECONDITION_FAILED, "revision-mismatch", "Stale revision")
                .detail("a weak ETag never matches If-Match"))
        }
        Some(value) => strong_revision_tag(value.as_bytes()).map(Some).ok_or_else(|| {
            Problem::new(StatusCode::BAD_REQUEST, "invalid-if-match", "Invalid If-Match")
                .detail("expected one strong entity tag, \"<revision>\" with the quotes (RFC 9110 §8.8.3)")
        }),
    }
}

/// The revision in a strong entity tag `"<digits>"`: quoted on both sides, digits only; a bare `0`, an
/// unterminated `"0` or a list is not one.
fn strong_revision_tag(value: &[u8]) -> Option<u64> {
    let tag = value.trim_ascii().strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    if tag.is_empty() || !tag.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(tag).ok()?.parse().ok()
}

#[utoipa::path(patch, path = "/api/v1/servers/{id}", operation_id = "update_server", request_body = UpdateInput, params(("id" = Uuid, Path), ("If-Match" = String, Header, description = "the ETag read")), responses((status = 200, body = CommandReply), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 412, body = Problem), (status = 422, body = Problem), (status = 428, body = Problem)), security(("api_key" = [])))]
pub(crate) async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Stored, Problem> {
    authorize_server(&state, &caller, id).await?;
    let expected = if_match(&headers, true)?;
    let input: UpdateInput = json_body::parse(&json_body::bytes(body)?)?;
    let done = state.servers.update(id, expected, input, &context(&caller, Uuid::now_v7())).await?;
    Ok(outcome(StatusCode::OK, done))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

/// `servers.manage` on server `id`: owners and admins manage every server, a server manager the ones it
/// owns (read from the server's own stream, not from the catalogue, which may lag).
async fn authorize_server(state: &AppState, caller: &Caller, id: Uuid) -> Result<(), Problem> {
    let label = format!("server:{id}");
    caller.authorize(state, Action::ManageServers, &label).await?;
    if caller.manages_all_servers() {
        return Ok(());
    }
    let owner = match state.servers.load(id).await?.0 {
        domain::server::ServerState::Live(server) | domain::server::ServerState::Deregistered(server) => server.owner,
        // The command answers "not found".
        domain::server::ServerState::New => return Ok(()),
    };
    caller.authorize_on(state, Action::ManageServers, Resource::Server { owner: &owner }, &label).await
}

/// A POST on one server: idempotent, `If-Match` optional.
async fn server_post<T, F, Fut>(
    state: &AppState,
    caller: Caller,
    id: Uuid,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    route: &'static str,
    command: F,
) -> Result<Stored, Problem>
where
    T: serde::de::DeserializeOwned,
    F: FnOnce(Option<u64>, T, CommandContext) -> Fut,
    Fut: Future<Output = Result<Outcome, commands::CommandError>>,
{
    authorize_server(state, &caller, id).await?;
    let expected = if_match(&headers, false)?;
    let body = json_body::bytes(body)?;
    let input: T = json_body::parse(if body.is_empty() { b"{}" } else { &body })?;
    let id_bytes = id.as_bytes().to_vec();
    idempotency::run(state, caller.0.id, &headers, &[route.as_bytes(), &id_bytes, &body], |command_id| async move {
        let done = command(expected, input, context(&caller, command_id)).await?;
        Ok(outcome(StatusCode::OK, done))
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/servers/{id}/suspend", operation_id = "suspend_server", request_body = ReasonBody, params(("id" = Uuid, Path)), responses((status = 200, body = CommandReply), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)), security(("api_key" = [])))]
pub(crate) async fn suspend(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Stored, Problem> {
    let servers = state.servers.clone();
    server_post(&state, caller, id, headers, body, "suspend", |expected, b: ReasonBody, ctx| async move {
        servers.suspend(id, expected, b.reason, &ctx).await
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/servers/{id}/resume", operation_id = "resume_server", params(("id" = Uuid, Path)), responses((status = 200, body = CommandReply), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)), security(("api_key" = [])))]
pub(crate) async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Stored, Problem> {
    let servers = state.servers.clone();
    server_post(&state, caller, id, headers, body, "resume", |expected, _: Empty, ctx| async move {
        servers.resume(id, expected, &ctx).await
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/servers/{id}/rotate-credential", operation_id = "rotate_server_credential", request_body = RotateBody, params(("id" = Uuid, Path)), responses((status = 200, body = CommandReply), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)), security(("api_key" = [])))]
pub(crate) async fn rotate_credential(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Stored, Problem> {
    let servers = state.servers.clone();
    server_post(&state, caller, id, headers, body, "rotate", |expected, b: RotateBody, ctx| async move {
        servers.rotate_credential(id, expected, b.upstream_auth, &ctx).await
    })
    .await
}

#[utoipa::path(put, path = "/api/v1/servers/{id}/tool-rules", operation_id = "change_server_tool_rules", request_body = domain::server::ToolRules, params(("id" = Uuid, Path)), responses((status = 200, body = CommandReply), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 412, body = Problem), (status = 422, body = Problem)), security(("api_key" = [])))]
/// Replaces server `id`'s tool rules (for everyone, per role, per principal), keeping who is admitted; in
/// force on the next forwarded request. `If-Match` optional.
pub(crate) async fn change_tool_rules(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Stored, Problem> {
    let servers = state.servers.clone();
    server_post(
        &state,
        caller,
        id,
        headers,
        body,
        "tool-rules",
        |expected, rules: domain::server::ToolRules, ctx| async move {
            servers.change_tool_rules(id, expected, rules, &ctx).await
        },
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeregisterQuery {
    reason: Option<String>,
}

#[utoipa::path(delete, path = "/api/v1/servers/{id}", operation_id = "deregister_server", params(("id" = Uuid, Path), ("reason" = Option<String>, Query)), responses((status = 200, body = CommandReply), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 412, body = Problem)), security(("api_key" = [])))]
pub(crate) async fn deregister(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Query(query): Query<DeregisterQuery>,
    headers: HeaderMap,
) -> Result<Stored, Problem> {
    authorize_server(&state, &caller, id).await?;
    let expected = if_match(&headers, false)?;
    let reason = query.reason.unwrap_or_else(|| "deregistered through the API".to_owned());
    let done = state.servers.deregister(id, expected, reason, &context(&caller, Uuid::now_v7())).await?;
    Ok(outcome(StatusCode::OK, done))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReadQuery {
    min_position: Option<String>,
}

/// Waits, bounded, until the registry has applied `min_position`.
async fn consistent(state: &AppState, min_position: Option<&str>) -> Result<(), Problem> {
    let Some(raw) = min_position else { return Ok(()) };
    let wanted: Position = raw.parse().map_err(|_| {
        Problem::new(StatusCode::BAD_REQUEST, "invalid-position", "Invalid min_position")
            .detail("expected <tx>:<position>")
    })?;
    let head =
        state.store.committed_head().await.map_err(|_| Problem::unavailable("the event store is unreachable"))?;
    if Some(wanted) > head {
        return Err(Problem::new(StatusCode::BAD_REQUEST, "invalid-position", "Unknown position")
            .detail(format!("{wanted} is beyond the last committed event")));
    }
    let deadline = tokio::time::Instant::now() + CONSISTENCY_WAIT;
    let mut progress = state.registry_status.clone();
    loop {
        let at = state.registry.position().await.map_err(|_| Problem::unavailable("the read model is unreachable"))?;
        if at >= Some(wanted) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Problem::unavailable(format!("the catalogue has not reached {wanted} yet; retry")));
        }
        // Woken when this instance's runner moves; a standby instance (another runs the projection)
        // looks again every 50 ms.
        let _ = tokio::time::timeout(Duration::from_millis(50), progress.changed()).await;
    }
}

#[utoipa::path(get, path = "/api/v1/servers/{id}", operation_id = "get_server", params(("id" = Uuid, Path), ("min_position" = Option<String>, Query, description = "wait until the catalogue has applied this position")), responses((status = 200, body = projections::registry::CatalogueEntry), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 503, body = Problem)), security(("api_key" = [])))]
pub(crate) async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Query(query): Query<ReadQuery>,
) -> Result<Response, Problem> {
    caller.authorize(&state, Action::ReadServers, &format!("server:{id}")).await?;
    consistent(&state, query.min_position.as_deref()).await?;
    let entry = state.registry.get(id).await.map_err(|_| Problem::unavailable("the read model is unreachable"))?;
    let entry = entry.ok_or_else(Problem::not_found)?;
    let mut response = axum::Json(&entry).into_response();
    if let Ok(value) = HeaderValue::from_str(&etag(entry.revision as u64)) {
        response.headers_mut().insert(header::ETAG, value);
    }
    Ok(response)
}

/// One action on a server, decided for the caller.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Permission {
    /// `servers.read`, `servers.manage` or `servers.use`.
    pub action: &'static str,
    /// Whether the caller may.
    pub allow: bool,
    /// Why (or why not).
    pub reason: String,
}

/// Whether the caller may see and call one tool of a server.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ToolPermission {
    /// The tool.
    pub name: String,
    /// Whether the caller may call it through the gateway.
    pub allow: bool,
    /// Which rule decided.
    pub reason: String,
}

/// What the caller may do with one server.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ServerPermissions {
    /// The server.
    pub server: Uuid,
    /// One decision per action on a server, in matrix order.
    pub permissions: Vec<Permission>,
    /// One decision per tool: the tools the server listed when last checked, and those asked about.
    pub tools: Vec<ToolPermission>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct PermissionsQuery {
    /// A tool to decide on besides those the server listed (one name).
    tool: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/servers/{id}/permissions", operation_id = "server_permissions", params(("id" = Uuid, Path), PermissionsQuery), responses((status = 200, body = ServerPermissions), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem), (status = 404, body = Problem), (status = 503, body = Problem)), security(("api_key" = [])))]
/// What the caller may do with server `id`, decided exactly as the actions themselves are: the permission
/// matrix, the credential's scopes, ownership, and the server's access policy (for `servers.use`); and per
/// tool, as the proxy decides a `tools/call`: the tool rules for everyone, the caller's roles and the caller.
pub(crate) async fn permissions(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Query(query): Query<PermissionsQuery>,
) -> Result<axum::Json<ServerPermissions>, Problem> {
    caller.authorize(&state, Action::ReadServers, &format!("server:{id}")).await?;
    // The authorization model's view of the server: the one every decision reads.
    let access = {
        let model = state.authz.read().map_err(|_| Problem::unavailable("the authorization model is unavailable"))?;
        model.server_access(id).cloned()
    };
    let access = access.ok_or_else(Problem::not_found)?;
    let subject = domain::authz::Subject { id: caller.0.id, roles: &caller.0.roles, scopes: &caller.0.scopes };
    let owner = access.owner.as_str();
    let on = [
        (Action::ReadServers, Resource::Server { owner }),
        (Action::ManageServers, Resource::Server { owner }),
        (Action::UseServers, Resource::ServerAccess { owner, policy: &access.policy, suspended: access.suspended }),
    ];
    let permissions: Vec<Permission> = on
        .into_iter()
        .map(|(action, resource)| {
            let decision = domain::authz::decide(&subject, action, resource);
            Permission { action: action.as_str(), allow: decision.allow, reason: decision.reason }
        })
        .collect();
    let usable = permissions.last().is_some_and(|p| p.allow);
    let principal = caller.0.id.to_string();
    let mut names: Vec<String> = access.tools.to_vec();
    if let Some(tool) = query.tool
        && !names.contains(&tool)
    {
        names.push(tool);
    }
    let tools = names
        .into_iter()
        .map(|name| {
            let (allow, reason) = if usable {
                access.policy.tools.decide_for(&name, &principal, &caller.0.roles)
            } else {
                (false, "the caller may not use this server".to_owned())
            };
            ToolPermission { name, allow, reason }
        })
        .collect();
    Ok(axum::Json(ServerPermissions { server: id, permissions, tools }))
}

#[utoipa::path(post, path = "/api/v1/servers/{id}/test", operation_id = "test_server", params(("id" = Uuid, Path)), responses((status = 200, body = crate::proxy::tester::TestReport), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem), (status = 404, body = Problem), (status = 503, body = Problem)), security(("api_key" = [])))]
/// Tests the connection to server `id` the way the proxy makes it (the same client, SSRF guard,
/// credentials and timeouts): whether it is reachable, speaks MCP (`initialize`, `tools/list`) and accepts
/// the gateway's credentials, each reported apart, with the tools it lists. For those who manage it.
pub(crate) async fn test_connection(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<crate::proxy::tester::TestReport>, Problem> {
    authorize_server(&state, &caller, id).await?;
    let upstream = {
        let model = state.authz.read().map_err(|_| Problem::unavailable("the authorization model is unavailable"))?;
        model.server_access(id).map(|access| access.upstream.clone())
    };
    let upstream = upstream.ok_or_else(Problem::not_found)?;
    Ok(axum::Json(crate::proxy::tester::test(&state, id, Some(caller.0.id), &upstream).await))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    tag: Option<String>,
    status: Option<String>,
    owner: Option<String>,
    q: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
    min_position: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/servers", operation_id = "list_servers", params(("tag" = Option<String>, Query), ("status" = Option<String>, Query), ("owner" = Option<String>, Query), ("q" = Option<String>, Query), ("cursor" = Option<String>, Query), ("limit" = Option<u32>, Query), ("min_position" = Option<String>, Query)), responses((status = 200, body = ServerPage), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem), (status = 403, body = Problem), (status = 503, body = Problem)), security(("api_key" = [])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> Result<Response, Problem> {
    caller.authorize(&state, Action::ReadServers, "servers").await?;
    consistent(&state, query.min_position.as_deref()).await?;
    let filter = CatalogueFilter {
        tag: params::text("tag", query.tag)?,
        status: params::one_of("status", query.status, &["active", "suspended"])?,
        owner: params::text("owner", query.owner)?,
        text: params::text("q", query.q)?,
        after: query.cursor.map(|c| crate::cursor::decode(&c)).transpose()?,
        limit: query.limit.unwrap_or(50),
    };
    let page = state.registry.page(&filter).await.map_err(|_| Problem::unavailable("the read model is unreachable"))?;
    let next_cursor = page.next.as_deref().map(crate::cursor::encode);
    // A [`ServerPage`] whose entries are JSON rendered already (see `projections::registry::EntryCache`).
    let servers: Vec<&serde_json::value::RawValue> = page.entries.iter().map(|entry| &**entry).collect();
    Ok(crate::rendered_page::json(&RenderedServerPage { servers, next_cursor }, page.entries.iter().map(|e| &**e)))
}

/// [`ServerPage`] with its entries rendered: the same JSON.
#[derive(serde::Serialize)]
struct RenderedServerPage<'a> {
    servers: Vec<&'a serde_json::value::RawValue>,
    next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::strong_revision_tag;

    #[test]
    fn only_a_quoted_revision_is_an_entity_tag() {
        assert_eq!(strong_revision_tag(b"\"0\""), Some(0));
        assert_eq!(strong_revision_tag(b" \"12\" "), Some(12));
        for bad in [&b"0"[..], b"\"0", b"0\"", b"\"\"", b"\"-1\"", b"\"1\", \"2\"", b"\"+1\"", b"\"1 \""] {
            assert_eq!(strong_revision_tag(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
