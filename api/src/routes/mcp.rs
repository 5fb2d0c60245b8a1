//! `/servers/{id}/mcp`: each registered server's MCP endpoint at the gateway, a protected resource of
//! its own. Until the proxy forwards MCP traffic (step 9), the gateway answers `initialize`, `ping` and
//! `tools/list` (with no tools) itself, so that clients can finish their authorization flow and see the
//! endpoint work; everything about who may call it is already what the proxy will enforce.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use domain::authz::{Action, Resource};
use domain::oauth::MCP_SCOPE;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::problem::Problem;
use crate::resource_auth::{Refusal, resource_caller};
use crate::state::AppState;

/// MCP protocol versions the endpoint speaks, newest first.
const PROTOCOL_VERSIONS: [&str; 3] = ["2025-11-25", "2025-06-18", "2025-03-26"];

/// JSON-RPC error codes (JSON-RPC 2.0 §5.1), and the one MCP servers use for a refused request.
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const REFUSED: i64 = -32001;

/// The routes, with CORS for browser clients (the challenge and the session id readable across origins).
pub fn routes() -> Router<AppState> {
    Router::new().route("/servers/{id}/mcp", post(call).get(no_stream)).layer(crate::oauth::cors())
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

/// A refusal of the gateway's own rules (the permission matrix, the server's access policy), as the REST
/// API records it, answered in JSON-RPC.
fn forbidden(problem: Problem) -> Response {
    let message = problem.detail.clone().unwrap_or_else(|| problem.title.to_owned());
    let mut response = problem.into_response();
    let body = json!({ "jsonrpc": "2.0", "id": null, "error": { "code": REFUSED, "message": message } });
    *response.body_mut() = axum::body::Body::from(body.to_string());
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.headers_mut().remove(header::CONTENT_LENGTH);
    response
}

#[utoipa::path(post, path = "/servers/{id}/mcp", operation_id = "mcp_call", tag = "mcp",
    description = "A registered server's MCP endpoint (streamable HTTP, JSON answers). The credential: `Authorization: Bearer` with a gateway access token for exactly this resource carrying `mcp:tools`, or an API key. Refusals carry `WWW-Authenticate: Bearer resource_metadata=…, scope=\"mcp:tools\"` (RFC 9728). Until the proxy (step 9) the gateway answers `initialize`, `ping` and `tools/list` itself.",
    params(("id" = String, Path, description = "the server's id")),
    request_body(content = Object, content_type = "application/json"),
    responses(
        (status = 200, description = "the JSON-RPC answer", body = Object, content_type = "application/json"),
        (status = 202, description = "a notification, accepted"),
        (status = 400, description = "not a JSON-RPC request, or a malformed Authorization header (`invalid_request`)", body = Object, content_type = "application/json"),
        (status = 401, description = "no credential, or one refused (`invalid_token`)", body = Object, content_type = "application/json"),
        (status = 403, description = "a token without `mcp:tools` (`insufficient_scope`), or a caller who may not use this server", body = Object, content_type = "application/json"),
        (status = 404, description = "no such server", body = Object, content_type = "application/json"),
        (status = 415, description = "the body is not JSON", body = Object, content_type = "application/json"),
        (status = 503, description = "the authorization model cannot decide now", body = Object, content_type = "application/json"),
    ),
    security((), ("api_key" = [])))]
pub(crate) async fn call(State(state): State<AppState>, Path(id): Path<String>, parts: Parts, body: Bytes) -> Response {
    let Ok(id) = id.parse::<Uuid>() else {
        return rpc_error(StatusCode::NOT_FOUND, Value::Null, REFUSED, "no registered server has this id");
    };
    let resource = format!("{}/servers/{id}/mcp", state.tokens.issuer());
    let caller = match resource_caller(&parts, &state, &resource).await {
        Ok(caller) => caller,
        Err(refusal) => return refused(&state, id, refusal),
    };
    let access = state.authz.read().ok().and_then(|model| model.server_access(id).cloned());
    let Some(access) = access else {
        return rpc_error(StatusCode::NOT_FOUND, Value::Null, REFUSED, "no registered server has this id");
    };
    let on = Resource::ServerAccess { owner: &access.owner, policy: &access.policy, suspended: access.suspended };
    if let Err(problem) = caller.authorize_on(&state, Action::UseServers, on, &format!("server:{id}")).await {
        return forbidden(problem);
    }
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
    answer(&message)
}

/// The gateway's own answer to one JSON-RPC message.
fn answer(message: &Value) -> Response {
    let Some(request) = message.as_object() else {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            Value::Null,
            INVALID_REQUEST,
            "one JSON-RPC message per request (no batches)",
        );
    };
    let id = request.get("id").cloned();
    let (Some("2.0"), Some(method)) =
        (request.get("jsonrpc").and_then(Value::as_str), request.get("method").and_then(Value::as_str))
    else {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            id.unwrap_or(Value::Null),
            INVALID_REQUEST,
            "not a JSON-RPC 2.0 request",
        );
    };
    // A notification (no id) gets no answer.
    let Some(id) = id.filter(|id| id.is_string() || id.is_number()) else {
        return StatusCode::ACCEPTED.into_response();
    };
    let result = match method {
        "initialize" => {
            let asked = request.get("params").and_then(|p| p.get("protocolVersion")).and_then(Value::as_str);
            let version = asked.filter(|v| PROTOCOL_VERSIONS.contains(v)).unwrap_or(PROTOCOL_VERSIONS[0]);
            json!({
                "protocolVersion": version,
                "capabilities": { "tools": { "listChanged": false } },
                "serverInfo": { "name": "mcp-gateway", "version": env!("CARGO_PKG_VERSION") },
            })
        }
        "ping" => json!({}),
        "tools/list" => json!({ "tools": [] }),
        _ => return rpc_error(StatusCode::OK, id, METHOD_NOT_FOUND, &format!("method {method:?} is not available")),
    };
    axum::Json(json!({ "jsonrpc": "2.0", "id": id, "result": result })).into_response()
}

#[utoipa::path(get, path = "/servers/{id}/mcp", operation_id = "mcp_stream", tag = "mcp",
    description = "No server-initiated stream yet (the proxy brings it): 405, as streamable HTTP allows.",
    params(("id" = String, Path, description = "the server's id")),
    responses((status = 405, description = "no stream: `Allow: POST`", body = Object, content_type = "application/json")))]
pub(crate) async fn no_stream() -> Response {
    let mut response = rpc_error(
        StatusCode::METHOD_NOT_ALLOWED,
        Value::Null,
        INVALID_REQUEST,
        "this endpoint takes POST only for now",
    );
    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
    response
}
