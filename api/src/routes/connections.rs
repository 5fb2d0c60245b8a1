//! Connecting a person's own account at a server that acts on it (`oauth_per_person`): the gateway runs
//! the authorization-code flow with PKCE against the server's authorization server, once per person and
//! server, and keeps the tokens sealed in the person's connection.
//!
//! The flow is stateless across instances: its state (who, which server, the PKCE verifier, a hash of a
//! browser-binding cookie, an expiry) travels sealed in the `state` parameter. The callback needs the
//! cookie set in the browser that started: someone who starts a connection for their own principal and
//! gets a victim to finish it at the authorization server would bind the victim's account to theirs.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use domain::authz::{Action, Resource};
use domain::server::UpstreamAuth;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use uuid::Uuid;

use crate::auth::Caller;
use crate::html_page::{html, page};
use crate::problem::Problem;
use crate::state::AppState;

/// How long a started connection may take to finish.
const FLOW_SECONDS: i64 = 600;
/// The cookie that binds a connection to the browser that started it.
const BINDING_COOKIE: &str = "connect";
/// The sealing context of the flow's state.
const STATE_CONTEXT: &str = "upstream-connect-state";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/servers/{id}/connect", get(connect))
        .route("/api/v1/servers/{id}/connection", delete(disconnect))
        .route("/connect/callback/{server}", get(callback))
}

/// What the `state` parameter carries, sealed.
#[derive(Serialize, Deserialize)]
struct FlowState {
    principal: Uuid,
    server: Uuid,
    verifier: String,
    /// SHA-256 (hex) of the binding cookie.
    binding: String,
    expires: i64,
}

fn digest(value: &str) -> String {
    hex::encode(sha2::Sha256::digest(value.as_bytes()))
}

/// Each server's own redirect URI: an answer names the server whose flow it ends, so that a server whose
/// authorization server sends the browser on to another's cannot receive that one's code (the mix-up
/// attack: the flow's state would otherwise send the other's code and verifier to its token endpoint).
fn redirect_uri(state: &AppState, server: Uuid) -> String {
    format!("{}/connect/callback/{server}", state.tokens.issuer())
}

/// Server `id`'s per-person OAuth settings, when it acts on people's accounts.
fn per_person(state: &AppState, id: Uuid) -> Result<(projections::authz::ServerAccess, UpstreamAuth), Problem> {
    let access = state.authz.read().map_err(|_| Problem::unavailable("the authorization model is unavailable"))?;
    let access = access.server_access(id).cloned().ok_or_else(Problem::not_found)?;
    match &access.upstream.auth {
        auth @ UpstreamAuth::OauthPerPerson { .. } => {
            let auth = auth.clone();
            Ok((access, auth))
        }
        _ => Err(Problem::new(StatusCode::CONFLICT, "not-per-person", "The server does not act on people's accounts")
            .detail("only servers registered with upstream_auth mode oauth_per_person are connected per person")),
    }
}

#[utoipa::path(get, path = "/api/v1/servers/{id}/connect", operation_id = "connect_account", params(("id" = Uuid, Path)), responses((status = 303, description = "to the server's authorization server, with a browser-binding cookie"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 503, body = Problem)), security(("api_key" = [])))]
/// Starts connecting the caller's own account at server `id` (one that acts on people's accounts):
/// redirects the browser to the server's authorization server (code flow, PKCE S256). The URL MCP
/// clients are given when a request needs the connection (`-32042`).
pub(crate) async fn connect(State(state): State<AppState>, caller: Caller, Path(id): Path<Uuid>) -> Response {
    match start(&state, &caller, id).await {
        Ok(response) => response,
        Err(problem) => problem.into_response(),
    }
}

async fn start(state: &AppState, caller: &Caller, id: Uuid) -> Result<Response, Problem> {
    let (access, auth) = per_person(state, id)?;
    let on = Resource::ServerAccess { owner: &access.owner, policy: &access.policy, suspended: access.suspended };
    caller.authorize_on(state, Action::UseServers, on, &format!("server:{id}")).await?;
    let UpstreamAuth::OauthPerPerson { authorization_url, client_id, scopes, .. } = auth else {
        return Err(Problem::internal());
    };
    let (verifier, binding) = (crate::oauth::authorize::random_secret(), crate::oauth::authorize::random_secret());
    let flow = FlowState {
        principal: caller.0.id,
        server: id,
        verifier: verifier.clone(),
        binding: digest(&binding),
        expires: Utc::now().timestamp() + FLOW_SECONDS,
    };
    let plain = serde_json::to_string(&flow).map_err(|_| Problem::internal())?;
    let mut sealed =
        state.keyring.seal(&commands::Secret::new(plain), STATE_CONTEXT).map_err(|_| Problem::internal())?;
    sealed.fingerprint = None;
    let sealed = serde_json::to_vec(&sealed).map_err(|_| Problem::internal())?;
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    let mut url = url::Url::parse(authorization_url.as_str()).map_err(|_| Problem::internal())?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &client_id)
        .append_pair("redirect_uri", &redirect_uri(state, id))
        .append_pair("state", &URL_SAFE_NO_PAD.encode(sealed))
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    if !scopes.is_empty() {
        url.query_pairs_mut().append_pair("scope", &scopes.join(" "));
    }
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, HeaderValue::from_str(url.as_str()).map_err(|_| Problem::internal())?);
    let cookie = state.cookies.set(BINDING_COOKIE, &binding, FLOW_SECONDS);
    headers.insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).map_err(|_| Problem::internal())?);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct CallbackQuery {
    /// The authorization code.
    code: Option<String>,
    /// The flow's sealed state.
    state: Option<String>,
    /// The authorization server's refusal.
    error: Option<String>,
}

/// The end of a connection, shown in the browser.
fn finished(status: StatusCode, title: &str, message: &str) -> Response {
    page(status, title, &format!("<p>{}</p>", html(message)))
}

#[utoipa::path(get, path = "/connect/callback/{server}", operation_id = "connect_account_callback", params(("server" = String, Path, description = "the server's id"), CallbackQuery), responses((status = 200, description = "connected: a page", content_type = "text/html"), (status = 400, description = "a refusal, an expired or foreign flow: a page", content_type = "text/html"), (status = 502, description = "the token endpoint failed: a page", content_type = "text/html"), (status = 503, description = "the connection could not be stored: a page", content_type = "text/html")))]
/// The authorization server's answer: checked against the flow's sealed state and the browser that
/// started it, the code redeemed (with the PKCE verifier), the tokens kept sealed in the person's
/// connection (`AccountConnected`, audited). Answers a page.
pub(crate) async fn callback(
    State(state): State<AppState>,
    Path(server): Path<String>,
    headers: HeaderMap,
    query: Result<Query<CallbackQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let clear = state.cookies.set(BINDING_COOKIE, "", 0);
    // A browser is answered with a page, whatever is wrong with the address.
    let (Ok(server), Ok(Query(query))) = (server.parse::<Uuid>(), query) else {
        return finished(StatusCode::BAD_REQUEST, "Not connected", "this address is not one this gateway sent you to");
    };
    let mut response = match finish(&state, server, &headers, query).await {
        Ok(()) => finished(
            StatusCode::OK,
            "Connected",
            "Your account is connected: go back to your MCP client and try again. You can close this window.",
        ),
        Err((status, message)) => finished(status, "Not connected", &message),
    };
    if let Ok(value) = HeaderValue::from_str(&clear) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

async fn finish(
    state: &AppState,
    server: Uuid,
    headers: &HeaderMap,
    query: CallbackQuery,
) -> Result<(), (StatusCode, String)> {
    let bad = |message: &str| (StatusCode::BAD_REQUEST, message.to_owned());
    let sealed = query.state.as_deref().ok_or_else(|| bad("the answer has no state"))?;
    let flow = URL_SAFE_NO_PAD
        .decode(sealed)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<domain::Sealed>(&bytes).ok())
        .and_then(|sealed| state.keyring.open(&sealed, STATE_CONTEXT).ok())
        .and_then(|plain| serde_json::from_str::<FlowState>(plain.expose()).ok())
        .ok_or_else(|| bad("the answer's state is not one this gateway started"))?;
    if flow.server != server {
        return Err(bad("the answer came back for another server than the one being connected"));
    }
    if flow.expires < Utc::now().timestamp() {
        return Err(bad("this connection took too long; start it again"));
    }
    let cookie = crate::cookies::cookie(headers, &state.cookies.name(BINDING_COOKIE)).unwrap_or_default();
    if !crate::constant_time::equal(digest(cookie).as_bytes(), flow.binding.as_bytes()) {
        return Err(bad("this connection was started in another browser; start it again here"));
    }
    if let Some(error) = query.error {
        tracing::info!(server = %flow.server, principal = %flow.principal, %error, "a connection was refused");
        return Err(bad(&format!(
            "the server's authorization server refused: {}",
            error.chars().take(64).collect::<String>()
        )));
    }
    let code = query.code.ok_or_else(|| bad("the answer has no code"))?;
    let (_, auth) =
        per_person(state, flow.server).map_err(|_| bad("the server no longer acts on people's accounts"))?;
    let UpstreamAuth::OauthPerPerson { token_url, client_id, client_secret, .. } = &auth else {
        return Err(bad("the server no longer acts on people's accounts"));
    };
    let form = vec![
        ("grant_type", "authorization_code".to_owned()),
        ("code", code),
        ("redirect_uri", redirect_uri(state, flow.server)),
        ("code_verifier", flow.verifier),
    ];
    let failed = |e: crate::proxy::UpstreamError| (StatusCode::BAD_GATEWAY, e.to_string());
    let tokens = state
        .proxy
        .redeem(state, flow.server, token_url, client_id, client_secret.as_ref(), form)
        .await
        .map_err(failed)?;
    let command_id = Uuid::now_v7();
    let actor = eventstore::Actor { id: flow.principal.to_string(), kind: eventstore::ActorKind::User };
    let metadata = eventstore::Metadata::new(command_id, actor, Utc::now());
    let context = commands::servers::CommandContext { command_id, metadata };
    state
        .connections
        .connect(flow.principal, flow.server, &tokens, &context)
        .await
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, format!("the connection could not be kept: {e}")))?;
    state.proxy.person_tokens.forget(flow.server, flow.principal);
    tracing::info!(server = %flow.server, principal = %flow.principal, "an account was connected");
    Ok(())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct DisconnectQuery {
    /// Why (kept in the audit trail).
    reason: Option<String>,
}

#[utoipa::path(delete, path = "/api/v1/servers/{id}/connection", operation_id = "disconnect_account", params(("id" = Uuid, Path), DisconnectQuery), responses((status = 204, description = "the tokens are forgotten"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)), security(("api_key" = [])))]
/// Forgets the caller's tokens at server `id` (`AccountDisconnected`, audited); the next request asks
/// to connect again.
pub(crate) async fn disconnect(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Query(query): Query<DisconnectQuery>,
) -> Result<StatusCode, Problem> {
    per_person(&state, id)?;
    let command_id = Uuid::now_v7();
    let context =
        commands::servers::CommandContext { command_id, metadata: caller.1.metadata(caller.actor(), command_id) };
    let reason = query.reason.unwrap_or_else(|| "disconnected by the person".to_owned());
    let forgotten = state.connections.disconnect(caller.0.id, id, reason, &context).await?;
    state.proxy.person_tokens.forget(id, caller.0.id);
    if forgotten { Ok(StatusCode::NO_CONTENT) } else { Err(Problem::not_found()) }
}
