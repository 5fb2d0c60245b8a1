//! `/servers/{id}/mcp`: each registered server's MCP endpoint at the gateway, a protected resource of
//! its own. Every request is authenticated and authorized (the caller may use this server; a
//! `tools/call` names a tool the server's rules allow), then forwarded to the server with the gateway's
//! credentials there (`crate::proxy`); `tools/list` answers lose the tools the rules hide. The client's
//! session id is the upstream's, sealed and bound to the caller.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use domain::access::{AccessDenied, AccessEvent, CallOutcome, ToolCalled};
use domain::authz::{Action, Resource};
use domain::oauth::MCP_SCOPE;
use domain::server::ToolRules;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::auth::Caller;
use crate::problem::Problem;
use crate::proxy::limits::{HeldBody, LimitHit, Slot};
use crate::proxy::metrics::McpMethod;
use crate::proxy::recorder::PendingCall;
use crate::proxy::session::Binding;
use crate::proxy::stream::StreamKind;
use crate::proxy::{Forward, SESSION_HEADER, UpstreamError, tool_filter};
use crate::resource_auth::{Refusal, resource_caller};
use crate::state::AppState;

/// The largest answer the gateway reads whole (a `tools/list` it filters, a JSON answer).
const MAX_BUFFERED: usize = 16 * 1024 * 1024;

/// JSON-RPC error codes (JSON-RPC 2.0 §5.1), and the one MCP servers use for a refused request.
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const INVALID_PARAMS: i64 = -32602;
const INTERNAL_ERROR: i64 = -32603;
const REFUSED: i64 = -32001;

/// The routes, with CORS for browser clients (the challenge and the session id readable across origins).
/// The largest JSON-RPC body forwarded: tool arguments carry documents and images (base64), so more than
/// the REST API's 64 KiB.
pub const MAX_MCP_BODY_BYTES: usize = 4 * 1024 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/servers/{id}/mcp", post(call).get(stream).delete(end))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_MCP_BODY_BYTES))
        .layer(crate::oauth::cors())
}

/// A JSON-RPC error answer with `status`.
fn rpc_error(status: StatusCode, id: Value, code: i64, message: &str) -> Response {
    let body = json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } });
    (status, axum::Json(body)).into_response()
}

/// A header parameter's value as a quoted string: without the quote and backslash it cannot hold.
fn quoted(value: &str) -> String {
    value.chars().filter(|c| *c != '"' && *c != '\\' && !c.is_control()).collect()
}

/// The answer to a refused request: the status, the RFC 6750 challenge naming the resource's metadata
/// and the scope the endpoint needs, and a JSON-RPC error.
fn refused(state: &AppState, id: Uuid, refusal: Refusal) -> Response {
    let metadata = format!("{}/.well-known/oauth-protected-resource/servers/{id}/mcp", state.tokens.issuer());
    let (status, error, message) = match refusal {
        Refusal::Missing => (StatusCode::UNAUTHORIZED, None, "authorization required".to_owned()),
        Refusal::Malformed(why) => (StatusCode::BAD_REQUEST, Some("invalid_request"), why.to_owned()),
        Refusal::Invalid(why) => (StatusCode::UNAUTHORIZED, Some("invalid_token"), why),
        Refusal::InsufficientScope => {
            (StatusCode::FORBIDDEN, Some("insufficient_scope"), format!("the token lacks the {MCP_SCOPE} scope"))
        }
        Refusal::Unavailable(why) => {
            return rpc_error(StatusCode::SERVICE_UNAVAILABLE, Value::Null, REFUSED, &why);
        }
        Refusal::Limited(problem) => return forbidden(problem),
    };
    let mut challenge = format!("Bearer resource_metadata=\"{metadata}\", scope=\"{MCP_SCOPE}\"");
    if let Some(error) = error {
        challenge.push_str(&format!(", error=\"{error}\", error_description=\"{}\"", quoted(&message)));
    }
    let mut response = rpc_error(status, Value::Null, REFUSED, &message);
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// A refusal of the gateway's own rules (the permission matrix, the server's access policy, a rate
/// limit), with the REST API's status and headers, answered in JSON-RPC.
fn forbidden(problem: Problem) -> Response {
    let message = problem.detail.clone().unwrap_or_else(|| problem.title.to_owned());
    let mut response = problem.into_response();
    let body = json!({ "jsonrpc": "2.0", "id": null, "error": { "code": REFUSED, "message": message } });
    *response.body_mut() = axum::body::Body::from(body.to_string());
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.headers_mut().remove(header::CONTENT_LENGTH);
    response
}

/// A request over one of the proxy's concurrency limits: 429 for the caller's own, 503 for the server's,
/// both with `Retry-After`.
fn over_limit(hit: LimitHit) -> Response {
    let (status, message) = match hit {
        LimitHit::Principal(n) => {
            (StatusCode::TOO_MANY_REQUESTS, format!("you have {n} requests in flight through the gateway, the most"))
        }
        LimitHit::Server(n) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("this server has {n} requests in flight, the most"))
        }
    };
    let mut response = rpc_error(status, Value::Null, REFUSED, &message);
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// A response whose body holds the request's place among those in flight until it ends.
fn held(response: Response, slot: Slot) -> Response {
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, HeldBody::wrap(body, slot))
}

/// The caller of server `id`'s endpoint, what the proxy needs of the server, and the request's place
/// among those in flight; or the refusal.
async fn admitted(state: &AppState, id: &str, parts: &Parts) -> Result<(Caller, Uuid, ServerRoute, Slot), Response> {
    let Ok(id) = id.parse::<Uuid>() else {
        return Err(rpc_error(StatusCode::NOT_FOUND, Value::Null, REFUSED, "no registered server has this id"));
    };
    let resource = format!("{}/servers/{id}/mcp", state.tokens.issuer());
    let caller = resource_caller(parts, state, &resource).await.map_err(|refusal| refused(state, id, refusal))?;
    let access = state.authz.read().ok().and_then(|model| model.server_access(id).cloned());
    let Some(access) = access else {
        return Err(rpc_error(StatusCode::NOT_FOUND, Value::Null, REFUSED, "no registered server has this id"));
    };
    let on = Resource::ServerAccess { owner: &access.owner, policy: &access.policy, suspended: access.suspended };
    caller.authorize_on(state, Action::UseServers, on, &format!("server:{id}")).await.map_err(forbidden)?;
    let slot = state.proxy.in_flight.enter(caller.0.id, id).map_err(over_limit)?;
    Ok((caller, id, ServerRoute { tools: access.policy.tools, upstream: access.upstream }, slot))
}

/// What forwarding to a server needs.
struct ServerRoute {
    tools: ToolRules,
    upstream: projections::authz::Upstream,
}

impl ServerRoute {
    /// What the sessions of `caller` at server `id` are sealed to.
    fn binding<'a>(&'a self, id: Uuid, caller: &Caller) -> Binding<'a> {
        Binding { server: id, principal: caller.0.id, endpoint: self.upstream.endpoint.as_str() }
    }
}

/// A session id that was not sealed for this server and caller: 404, MCP's signal to start a new one.
struct UnknownSession;

impl IntoResponse for UnknownSession {
    fn into_response(self) -> Response {
        rpc_error(StatusCode::NOT_FOUND, Value::Null, REFUSED, "no such session: initialize again")
    }
}

/// The upstream session of the client's `Mcp-Session-Id` (`None` without one).
fn upstream_session(state: &AppState, binding: Binding<'_>, parts: &Parts) -> Result<Option<String>, UnknownSession> {
    let Some(presented) = parts.headers.get(&SESSION_HEADER) else { return Ok(None) };
    presented
        .to_str()
        .ok()
        .and_then(|presented| state.proxy.sessions.open(binding, presented))
        .map(Some)
        .ok_or(UnknownSession)
}

/// An upstream that could not be used: 502 or 504, in JSON-RPC.
fn upstream_failed(id: Value, error: &UpstreamError) -> Response {
    let status = match error {
        UpstreamError::TimedOut => StatusCode::GATEWAY_TIMEOUT,
        UpstreamError::Unreachable(_) | UpstreamError::Credentials(_) | UpstreamError::TokenRefused(_) => {
            StatusCode::BAD_GATEWAY
        }
        UpstreamError::ConnectRequired => StatusCode::FORBIDDEN,
    };
    tracing::warn!(%error, "an MCP request could not be forwarded");
    rpc_error(status, id, INTERNAL_ERROR, &error.to_string())
}

/// JSON-RPC's `URLElicitationRequiredError` (MCP 2025-11-25): the user must open a URL first.
const URL_ELICITATION_REQUIRED: i64 = -32042;

/// A request that was not forwarded: the person must connect their account first (answered as MCP's
/// URL elicitation, 200 so that clients hand the error to the application), or the upstream failed.
fn not_forwarded(state: &AppState, server: Uuid, id: Value, error: &UpstreamError) -> Response {
    if !matches!(error, UpstreamError::ConnectRequired) {
        return upstream_failed(id, error);
    }
    let url = format!("{}/api/v1/servers/{server}/connect", state.tokens.issuer());
    let message = "This server acts on your own account there: open the link to connect it, then try again.";
    let body = json!({ "jsonrpc": "2.0", "id": id, "error": { "code": URL_ELICITATION_REQUIRED, "message": message,
        "data": { "elicitations": [{ "mode": "url", "elicitationId": Uuid::now_v7().to_string(), "url": url,
                                     "message": message }] } } });
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// The JSON-RPC id of a body holding one request, for an error answered in its place.
fn single_request_id(body: &Value) -> Value {
    body.get("id").cloned().filter(|id| id.is_string() || id.is_number()).unwrap_or(Value::Null)
}

#[utoipa::path(post, path = "/servers/{id}/mcp", operation_id = "mcp_call", tag = "mcp",
    description = "A registered server's MCP endpoint (streamable HTTP): JSON-RPC messages forwarded to the server with the gateway's own credentials there; JSON or SSE answers relayed (SSE streamed). The credential: `Authorization: Bearer` with a gateway access token for exactly this resource carrying `mcp:tools`, or an API key. Refusals carry `WWW-Authenticate: Bearer resource_metadata=…, scope=\"mcp:tools\"` (RFC 9728). A `tools/call` of a tool the server's rules hide is answered with a JSON-RPC error and recorded (`access.denied`); `tools/list` answers lose the hidden tools. `Mcp-Session-Id` is the gateway's (sealed, bound to the caller).",
    params(("id" = String, Path, description = "the server's id")),
    request_body(content = Object, content_type = "application/json"),
    responses(
        (status = 200, description = "the JSON-RPC answer, as JSON or as an SSE stream", body = Object, content_type = "application/json"),
        (status = 202, description = "a notification or response, accepted"),
        (status = 400, description = "not a JSON-RPC request, or a malformed Authorization header (`invalid_request`)", body = Object, content_type = "application/json"),
        (status = 401, description = "no credential, or one refused (`invalid_token`)", body = Object, content_type = "application/json"),
        (status = 403, description = "a token without `mcp:tools` (`insufficient_scope`), or a caller who may not use this server", body = Object, content_type = "application/json"),
        (status = 404, description = "no such server, or a session id not sealed for this server and caller", body = Object, content_type = "application/json"),
        (status = 413, description = "the body is larger than 4 MiB", body = Object, content_type = "application/json"),
        (status = 415, description = "the body is not JSON", body = Object, content_type = "application/json"),
        (status = 429, description = "the caller has as many requests in flight through the gateway as it may (`Retry-After`)", body = Object, content_type = "application/json"),
        (status = 502, description = "the upstream server could not be reached, failed, or refused the gateway's credentials", body = Object, content_type = "application/json"),
        (status = 503, description = "the authorization model cannot decide now, the server has as many requests in flight as it may (`Retry-After`), or the gateway cannot record tool calls now (its recording queue is full)", body = Object, content_type = "application/json"),
        (status = 504, description = "the upstream server did not answer in time", body = Object, content_type = "application/json"),
    ),
    security((), ("api_key" = [])))]
pub(crate) async fn call(
    State(state): State<AppState>,
    Path(id): Path<String>,
    parts: Parts,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    // Measured from arrival: refusals (401, 403, 429) count, and the gateway's own time includes
    // authentication and the decision.
    let started = std::time::Instant::now();
    let mut measured = Measured { method: McpMethod::INVALID, upstream: None };
    let metrics = state.clone();
    let response = admit_and_forward(state, id, parts, body, &mut measured).await;
    metrics.mcp_metrics.record(measured.method, response.status(), started.elapsed(), measured.upstream);
    response
}

async fn admit_and_forward(
    state: AppState,
    id: String,
    parts: Parts,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
    measured: &mut Measured,
) -> Response {
    let (caller, id, route, slot) = match admitted(&state, &id, &parts).await {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal,
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let message = format!("the body is larger than {MAX_MCP_BODY_BYTES} bytes");
            return rpc_error(StatusCode::PAYLOAD_TOO_LARGE, Value::Null, INVALID_REQUEST, &message);
        }
        Err(_) => return rpc_error(StatusCode::BAD_REQUEST, Value::Null, PARSE_ERROR, "the body could not be read"),
    };
    held(forward_call(state, caller, id, route, parts, body, measured).await, slot)
}

/// What the metrics of one MCP request need from its forwarding.
struct Measured {
    /// The JSON-RPC method.
    method: McpMethod,
    /// How long the upstream took to answer, when it was asked.
    upstream: Option<std::time::Duration>,
}

/// A POST, admitted: checked, decided on per tool, forwarded and relayed.
async fn forward_call(
    state: AppState,
    caller: Caller,
    id: Uuid,
    route: ServerRoute,
    parts: Parts,
    body: Bytes,
    measured: &mut Measured,
) -> Response {
    let json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return rpc_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Value::Null,
            PARSE_ERROR,
            "send JSON-RPC as application/json",
        );
    }
    let Ok(message) = serde_json::from_slice::<Value>(&body) else {
        return rpc_error(StatusCode::BAD_REQUEST, Value::Null, PARSE_ERROR, "the body is not JSON");
    };
    let messages = tool_filter::messages(&message);
    measured.method = McpMethod::of(&messages);
    let well_formed = !messages.is_empty()
        && messages.iter().all(|m| m.is_object() && m.get("jsonrpc").and_then(Value::as_str) == Some("2.0"));
    if !well_formed {
        return rpc_error(StatusCode::BAD_REQUEST, single_request_id(&message), INVALID_REQUEST, "not JSON-RPC 2.0");
    }
    for request in &messages {
        if let Err(malformed) = tool_filter::check(request) {
            let code = if malformed == tool_filter::Malformed::BadToolName { INVALID_PARAMS } else { INVALID_REQUEST };
            return rpc_error(StatusCode::BAD_REQUEST, single_request_id(request), code, malformed.message());
        }
        if let Some(tool) = tool_filter::called_tool(request)
            && !route.tools.allows_for(tool, &caller.0.id.to_string(), &caller.0.roles)
        {
            return tool_refused(&state, &caller, id, tool, request).await;
        }
    }
    let binding = route.binding(id, &caller);
    let session = match upstream_session(&state, binding, &parts) {
        Ok(session) => session,
        Err(unknown) => return unknown.into_response(),
    };
    // Each tool call has its record's place before it runs, or does not run.
    let mut calls = Vec::new();
    for request in &messages {
        let Some(tool) = tool_filter::called_tool(request) else { continue };
        match pending_call(&state, &caller, id, tool, request) {
            Some(call) => calls.push(call),
            None => {
                return rpc_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    single_request_id(request),
                    REFUSED,
                    "the gateway cannot record tool calls now; try again shortly",
                );
            }
        }
    }
    let lists_tools = messages.iter().any(|m| tool_filter::method(m) == Some("tools/list"));
    let error_id = single_request_id(&message);
    // What was decided on is what is sent: one spelling of each member, the last of any duplicates (as
    // serde_json read it), whatever the upstream's JSON decoder would have made of the original bytes.
    let Ok(decided) = serde_json::to_vec(&message) else {
        return rpc_error(StatusCode::BAD_REQUEST, error_id, PARSE_ERROR, "the body is not JSON");
    };
    let relay_as = Relay {
        filter: tool_filter::Visible::new(&route.tools, caller.0.id, &caller.0.roles),
        lists_tools,
        had_session: session.is_some(),
        error_id: error_id.clone(),
        kind: StreamKind::Answer,
        calls,
    };
    if route.upstream.transport == domain::server::Transport::Sse {
        let exchange = SseExchange { binding, route: &route, headers: &parts.headers, session, body: decided };
        return sse_call(&state, exchange, &messages, relay_as).await;
    }
    let forward = Forward {
        server: id,
        upstream: &route.upstream,
        method: axum::http::Method::POST,
        headers: &parts.headers,
        session,
        principal: Some(caller.0.id),
        body: Some(Bytes::from(decided)),
    };
    let asked = std::time::Instant::now();
    let sent = state.proxy.send(&state, forward).await;
    measured.upstream = Some(asked.elapsed());
    match sent {
        Ok(answer) => relay(&state, binding, answer, relay_as).await,
        Err(error) => {
            finish_all(relay_as.calls, CallOutcome::UpstreamFailed, None);
            not_forwarded(&state, id, error_id, &error)
        }
    }
}

/// A POST to a server that speaks HTTP+SSE.
struct SseExchange<'a> {
    binding: Binding<'a>,
    route: &'a ServerRoute,
    headers: &'a axum::http::HeaderMap,
    /// The client's session: the key of this instance's stream to the server.
    session: Option<String>,
    body: Vec<u8>,
}

/// Forwards to a server that speaks HTTP+SSE: `initialize` without a session opens a stream to the server
/// (its key sealed in the client's session id), and every request waits for its answer on that stream.
/// Answered as JSON (filtered, the tool calls recorded), or 202 when nothing asked for an answer.
async fn sse_call(state: &AppState, exchange: SseExchange<'_>, messages: &[&Value], relay: Relay) -> Response {
    let SseExchange { binding, route, headers, session, body } = exchange;
    let requests: Vec<Value> = messages
        .iter()
        .filter(|m| m.get("method").is_some() && m.get("id").is_some_and(|id| !id.is_null()))
        .map(|m| m["id"].clone())
        .collect();
    let (key, upstream, opened) = match session {
        Some(key) => match state.proxy.sse.get(&key, binding.server, binding.principal) {
            Some(upstream) => (key, upstream, false),
            None => {
                finish_all(relay.calls, CallOutcome::UpstreamFailed, None);
                return UnknownSession.into_response();
            }
        },
        None if messages.iter().any(|m| tool_filter::method(m) == Some("initialize")) => {
            match state.proxy.sse.open(&state.proxy, state, binding.server, binding.principal, &route.upstream).await {
                Ok((key, upstream)) => (key, upstream, true),
                Err(error) => {
                    finish_all(relay.calls, CallOutcome::UpstreamFailed, None);
                    return not_forwarded(state, binding.server, relay.error_id, &error);
                }
            }
        }
        None => {
            finish_all(relay.calls, CallOutcome::UpstreamFailed, None);
            return rpc_error(StatusCode::BAD_REQUEST, relay.error_id, INVALID_REQUEST, "no session: initialize first");
        }
    };
    let answers = match upstream.exchange(&state.proxy, state, headers, Bytes::from(body), &requests).await {
        Ok(answers) => answers,
        Err(error) => {
            if opened {
                state.proxy.sse.close(&key);
            }
            finish_all(relay.calls, CallOutcome::UpstreamFailed, None);
            return not_forwarded(state, binding.server, relay.error_id, &error);
        }
    };
    if answers.is_empty() {
        return StatusCode::ACCEPTED.into_response();
    }
    let batch = messages.len() > 1 || relay.error_id.is_null();
    let answer = if batch { Value::Array(answers) } else { answers.into_iter().next().unwrap_or(Value::Null) };
    let whole = Bytes::from(serde_json::to_vec(&answer).unwrap_or_default());
    let whole = match settle_json(whole, relay.calls, Some(200), relay.filter.as_ref(), relay.lists_tools) {
        Ok(whole) => whole,
        Err(error) => return upstream_failed(relay.error_id, &error),
    };
    let mut response = (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], whole).into_response();
    if opened {
        match state.proxy.sessions.seal(binding, &key).and_then(|sealed| HeaderValue::from_str(&sealed).ok()) {
            Some(sealed) => {
                response.headers_mut().insert(&SESSION_HEADER, sealed);
            }
            None => {
                state.proxy.sse.close(&key);
                return upstream_failed(Value::Null, &UpstreamError::Unreachable("sealing the session failed".into()));
            }
        }
    }
    response
}

/// The GET stream or the end of a session with a server that speaks HTTP+SSE: the server's own messages
/// on this instance's stream to it, relayed as they come (through the caller's tool rules); or the
/// stream closed.
fn sse_session(
    state: &AppState,
    binding: Binding<'_>,
    session: Option<String>,
    method: &axum::http::Method,
    filter: Option<tool_filter::Visible>,
) -> Response {
    let Some(key) = session else {
        return rpc_error(StatusCode::BAD_REQUEST, Value::Null, INVALID_REQUEST, "name the session in Mcp-Session-Id");
    };
    let Some(upstream) = state.proxy.sse.get(&key, binding.server, binding.principal) else {
        return UnknownSession.into_response();
    };
    if method == axum::http::Method::DELETE {
        state.proxy.sse.close(&key);
        return StatusCode::OK.into_response();
    }
    let messages = upstream.subscribe();
    // Ends when the instance stops, as a streamable HTTP server's GET stream does.
    let stopping = state.stopping.subscribe();
    let events =
        futures_util::stream::unfold((messages, filter, stopping), |(mut messages, filter, mut stopping)| async move {
            loop {
                let received = tokio::select! {
                    received = messages.recv() => received,
                    () = crate::proxy::stream::stopped(&mut stopping) => return None,
                };
                match received {
                    Ok(message) => {
                        let mut event = format!("event: message\ndata: {message}\n\n");
                        if let Some(rules) = &filter {
                            event =
                                String::from_utf8_lossy(&tool_filter::filter_sse(event.as_bytes(), rules)).into_owned();
                        }
                        return Some((Ok::<_, std::io::Error>(Bytes::from(event)), (messages, filter, stopping)));
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
    let mut response = axum::body::Body::from_stream(events).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The record of a call to `tool` about to be forwarded, with its place in the recorder's queue; `None`
/// when the queue is full.
fn pending_call(state: &AppState, caller: &Caller, server: Uuid, tool: &str, request: &Value) -> Option<PendingCall> {
    let arguments = request.get("params").and_then(|p| p.get("arguments")).map(Value::to_string).unwrap_or_default();
    let (key_id, digest) = state.keyring.fingerprint(&[b"mcp-gateway tool arguments", arguments.as_bytes()]);
    let call_id = Uuid::now_v7();
    let call = ToolCalled {
        call_id,
        principal_id: caller.0.id,
        credential_id: caller.0.key_id,
        client_id: caller.0.client_id.clone(),
        server_id: server,
        tool: tool.to_owned(),
        outcome: CallOutcome::Abandoned,
        latency_ms: 0.0,
        upstream_status: None,
        arguments_hash: format!("hmac-sha256:{key_id}:{}", hex::encode(digest)),
    };
    state.proxy.recorder.reserve(call, caller.1.metadata(caller.actor(), call_id))
}

/// Records every call with one outcome.
fn finish_all(calls: Vec<PendingCall>, outcome: CallOutcome, status: Option<u16>) {
    for call in calls {
        call.finish(outcome, status);
    }
}

/// A whole JSON answer: the tool calls it answers recorded with how it ended, and the tools the caller
/// may not see taken out; `Err` when a `tools/list` answer that must be filtered is not JSON.
fn settle_json(
    whole: Bytes,
    calls: Vec<PendingCall>,
    status: Option<u16>,
    filter: Option<&tool_filter::Visible>,
    lists_tools: bool,
) -> Result<Bytes, UpstreamError> {
    if !calls.is_empty() {
        finish_all(calls, answer_outcome(&whole), status);
    }
    let Some(rules) = filter else { return Ok(whole) };
    match tool_filter::filter_json(&whole, rules) {
        Some(filtered) => Ok(Bytes::from(filtered)),
        None if lists_tools => {
            Err(UpstreamError::Unreachable("the upstream server's tools/list answer is not JSON".into()))
        }
        None => Ok(whole),
    }
}

/// How a JSON answer to tool calls ended (not JSON: an error).
fn answer_outcome(body: &[u8]) -> CallOutcome {
    serde_json::from_slice::<Value>(body)
        .map_or(CallOutcome::Error, |answer| crate::proxy::stream::answer_outcome(&answer))
}

/// A `tools/call` the server's rules do not allow: recorded, and answered with a JSON-RPC error.
async fn tool_refused(state: &AppState, caller: &Caller, id: Uuid, tool: &str, request: &Value) -> Response {
    let reason = format!("the tool {tool:?} is not allowed on this server");
    tracing::info!(principal = %caller.0.id, server = %id, tool, "tool call refused");
    let denied = AccessEvent::Denied(AccessDenied {
        principal_id: caller.0.id,
        action: "tools/call".to_owned(),
        resource: format!("server:{id}:tool:{tool}"),
        reason: reason.clone(),
    });
    if let Err(error) = crate::access_log::record(state, caller, denied).await {
        tracing::warn!(%error, "could not record an access denial");
    }
    rpc_error(StatusCode::OK, single_request_id(request), REFUSED, &reason)
}

/// How an answer is relayed.
struct Relay {
    /// The server's tool rules as they apply to the caller, when they hide something: applied to every
    /// answer and event.
    filter: Option<tool_filter::Visible>,
    /// The request lists tools: an answer that cannot be filtered is not passed on.
    lists_tools: bool,
    /// The client named a session (an upstream 404 then means the session ended).
    had_session: bool,
    /// The request an error is answered for, if the upstream breaks off an SSE answer.
    error_id: Value,
    /// An answer to a request, or a GET stream: how silence and the instance's stop end an SSE relay.
    kind: StreamKind,
    /// The tool calls in the request, recorded when the answer ends.
    calls: Vec<PendingCall>,
}

/// The upstream's answer, passed to the client: its status (the upstream's refusal of the gateway's own
/// credentials, and its failures, become 502), its content type, its session id sealed, and its body
/// (filtered when `relay.filter` says so; SSE streamed as it comes).
async fn relay(state: &AppState, binding: Binding<'_>, answer: reqwest::Response, mut relay: Relay) -> Response {
    let status = answer.status();
    let failed = matches!(status.as_u16(), 401 | 403)
        || status.is_server_error()
        || status.is_redirection()
        || (status == StatusCode::NOT_FOUND && !relay.had_session);
    let mut calls = std::mem::take(&mut relay.calls);
    if failed {
        finish_all(std::mem::take(&mut calls), CallOutcome::UpstreamFailed, Some(status.as_u16()));
    } else {
        calls.iter_mut().for_each(|call| call.answered(status.as_u16()));
    }
    if matches!(status.as_u16(), 401 | 403) {
        return upstream_failed(
            relay.error_id,
            &UpstreamError::Credentials(format!("the upstream server answered {status}")),
        );
    }
    // Its failures, its redirects (never followed) and a 404 outside a session (a wrong URL: passed on, it
    // would send the client into starting session after session) are the gateway's 502.
    if status.is_server_error() || status.is_redirection() || (status == StatusCode::NOT_FOUND && !relay.had_session) {
        return upstream_failed(
            relay.error_id,
            &UpstreamError::Unreachable(format!("the upstream server answered {status}")),
        );
    }
    let mut response = Response::builder().status(status.as_u16());
    for name in [header::CONTENT_TYPE, header::CACHE_CONTROL] {
        if let Some(value) = answer.headers().get(&name) {
            response = response.header(name, value);
        }
    }
    if let Some(upstream) = answer.headers().get(&SESSION_HEADER).and_then(|v| v.to_str().ok()) {
        let Some(sealed) = state.proxy.sessions.seal(binding, upstream) else {
            return upstream_failed(
                relay.error_id,
                &UpstreamError::Unreachable("the upstream server's session id is not a valid one".into()),
            );
        };
        response = response.header(&SESSION_HEADER, sealed);
    }
    let body = if crate::proxy::is_event_stream(answer.headers()) {
        let relaying = crate::proxy::stream::Relaying::new(answer, relay.filter, relay.error_id, calls);
        axum::body::Body::from_stream(crate::proxy::stream::relayed(relaying, relay.kind))
    } else {
        let whole = match crate::proxy::stream::read_whole(answer, MAX_BUFFERED).await {
            Ok(whole) => whole,
            Err(error) => {
                finish_all(calls, CallOutcome::Broken, None);
                return upstream_failed(relay.error_id, &error);
            }
        };
        match settle_json(whole, calls, None, relay.filter.as_ref(), relay.lists_tools) {
            Ok(whole) => axum::body::Body::from(whole),
            Err(error) => return upstream_failed(relay.error_id, &error),
        }
    };
    response.body(body).unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
}

#[utoipa::path(get, path = "/servers/{id}/mcp", operation_id = "mcp_stream", tag = "mcp",
    description = "The server-to-client SSE stream of a session (`Mcp-Session-Id`), resumable with `Last-Event-ID`, relayed from the upstream server as it comes. The upstream's own answer when it offers no stream (405).",
    params(("id" = String, Path, description = "the server's id")),
    responses(
        (status = 200, description = "the SSE stream", content_type = "text/event-stream"),
        (status = 400, description = "the upstream server's refusal of a stream without a session it knows", body = Object, content_type = "application/json"),
        (status = 401, description = "no credential, or one refused", body = Object, content_type = "application/json"),
        (status = 403, description = "a token without `mcp:tools`, or a caller who may not use this server", body = Object, content_type = "application/json"),
        (status = 404, description = "no such server, or a session id not sealed for this server and caller", body = Object, content_type = "application/json"),
        (status = 405, description = "the upstream server offers no stream", body = Object, content_type = "application/json"),
        (status = 429, description = "the caller has as many requests in flight through the gateway as it may (`Retry-After`)", body = Object, content_type = "application/json"),
        (status = 502, description = "the upstream server could not be reached or failed", body = Object, content_type = "application/json"),
        (status = 503, description = "the authorization model cannot decide now, or the server has as many requests in flight as it may (`Retry-After`)", body = Object, content_type = "application/json"),
        (status = 504, description = "the upstream server did not answer in time", body = Object, content_type = "application/json"),
    ),
    security((), ("api_key" = [])))]
pub(crate) async fn stream(State(state): State<AppState>, Path(id): Path<String>, parts: Parts) -> Response {
    forward_without_body(state, id, parts, axum::http::Method::GET).await
}

#[utoipa::path(delete, path = "/servers/{id}/mcp", operation_id = "mcp_end_session", tag = "mcp",
    description = "Ends the session named by `Mcp-Session-Id` at the upstream server.",
    params(("id" = String, Path, description = "the server's id")),
    responses(
        (status = 200, description = "ended"),
        (status = 400, description = "no `Mcp-Session-Id`", body = Object, content_type = "application/json"),
        (status = 401, description = "no credential, or one refused", body = Object, content_type = "application/json"),
        (status = 403, description = "a token without `mcp:tools`, or a caller who may not use this server", body = Object, content_type = "application/json"),
        (status = 404, description = "no such server, or a session id not sealed for this server and caller", body = Object, content_type = "application/json"),
        (status = 405, description = "the upstream server does not let clients end sessions", body = Object, content_type = "application/json"),
        (status = 429, description = "the caller has as many requests in flight through the gateway as it may (`Retry-After`)", body = Object, content_type = "application/json"),
        (status = 502, description = "the upstream server could not be reached or failed", body = Object, content_type = "application/json"),
        (status = 503, description = "the authorization model cannot decide now, or the server has as many requests in flight as it may (`Retry-After`)", body = Object, content_type = "application/json"),
        (status = 504, description = "the upstream server did not answer in time", body = Object, content_type = "application/json"),
    ),
    security((), ("api_key" = [])))]
pub(crate) async fn end(State(state): State<AppState>, Path(id): Path<String>, parts: Parts) -> Response {
    if !parts.headers.contains_key(&SESSION_HEADER) {
        return rpc_error(StatusCode::BAD_REQUEST, Value::Null, INVALID_REQUEST, "name the session in Mcp-Session-Id");
    }
    forward_without_body(state, id, parts, axum::http::Method::DELETE).await
}

/// A GET or DELETE, authorized and forwarded.
async fn forward_without_body(state: AppState, id: String, parts: Parts, method: axum::http::Method) -> Response {
    let (caller, id, route, slot) = match admitted(&state, &id, &parts).await {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal,
    };
    held(forward_admitted(state, caller, id, route, parts, method).await, slot)
}

/// A GET or DELETE, admitted: forwarded and relayed.
async fn forward_admitted(
    state: AppState,
    caller: Caller,
    id: Uuid,
    route: ServerRoute,
    parts: Parts,
    method: axum::http::Method,
) -> Response {
    let binding = route.binding(id, &caller);
    let session = match upstream_session(&state, binding, &parts) {
        Ok(session) => session,
        Err(unknown) => return unknown.into_response(),
    };
    if route.upstream.transport == domain::server::Transport::Sse {
        let filter = tool_filter::Visible::new(&route.tools, caller.0.id, &caller.0.roles);
        return sse_session(&state, binding, session, &method, filter);
    }
    let had_session = session.is_some();
    let forward = Forward {
        server: id,
        upstream: &route.upstream,
        method,
        headers: &parts.headers,
        session,
        principal: Some(caller.0.id),
        body: None,
    };
    match state.proxy.send(&state, forward).await {
        Ok(answer) => {
            let relay_as = Relay {
                filter: tool_filter::Visible::new(&route.tools, caller.0.id, &caller.0.roles),
                lists_tools: false,
                had_session,
                error_id: Value::Null,
                kind: StreamKind::Standing(state.stopping.subscribe()),
                calls: Vec::new(),
            };
            relay(&state, binding, answer, relay_as).await
        }
        Err(error) => not_forwarded(&state, id, Value::Null, &error),
    }
}
