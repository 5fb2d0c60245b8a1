//! People log in: `GET /auth/{idp}/login` sends the browser to the identity provider (code flow, PKCE,
//! nonce, state in a sealed cookie); `GET /auth/{idp}/callback` verifies what comes back, provisions the
//! person, maps their roles from the claims, and starts a session (an `HttpOnly`, `SameSite=Lax` cookie,
//! `__Host-` prefixed and `Secure` when the gateway is served over https). Sessions are listed and ended
//! under `/api/v1/me/sessions` and, for administrators, `/api/v1/users/{id}/sessions`.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use commands::Secret;
use commands::servers::CommandContext;
use domain::Role;
use domain::authz::{Action, Resource};
use eventstore::{Actor, ActorKind};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::{Caller, Origin};
pub use crate::cookies::{Cookies, cookie, csrf_token};
use crate::oidc::PendingLogin;
use crate::problem::Problem;
use crate::state::AppState;
use crate::upstream_login::{login_refused, oidc_problem, sign_in};

/// How long a begun login may take.
const LOGIN_TTL_MINUTES: i64 = 10;
pub use crate::upstream_login::SESSION_HOURS;
/// The sealing context of the login cookie: a value sealed for anything else does not open as one.
const LOGIN_COOKIE_CONTEXT: &str = "cookie:login";

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/{idp}/login", get(login))
        .route("/auth/{idp}/callback", get(callback))
        .route("/auth/refresh", axum::routing::post(refresh))
        .route("/api/v1/me/sessions", get(my_sessions))
        .route("/api/v1/me/sessions/{id}", delete(end_my_session))
        .route("/api/v1/users/{id}/sessions", get(user_sessions))
        .route("/api/v1/users/{id}/sessions/{session}", delete(end_user_session))
}

#[utoipa::path(get, path = "/auth/{idp}/login", operation_id = "login", params(("idp" = String, Path)), responses((status = 303, description = "to the identity provider"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 502, body = Problem)))]
pub(crate) async fn login(State(state): State<AppState>, Path(idp): Path<String>) -> Result<Response, Problem> {
    let (url, pending) =
        state.idps.begin(&idp, chrono::Duration::minutes(LOGIN_TTL_MINUTES)).await.map_err(oidc_problem)?;
    let json = serde_json::to_string(&pending).map_err(|_| Problem::internal())?;
    let sealed = state.keyring.seal(&Secret::new(json), LOGIN_COOKIE_CONTEXT).map_err(|_| Problem::internal())?;
    let value = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&sealed).map_err(|_| Problem::internal())?);
    let cookie = state.cookies.set("login", &value, LOGIN_TTL_MINUTES * 60);
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, HeaderValue::from_str(&url).map_err(|_| Problem::internal())?);
    headers.insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).map_err(|_| Problem::internal())?);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The callback's query.
#[derive(Deserialize)]
pub(crate) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    /// RFC 9207: the issuer of the response.
    iss: Option<String>,
}

/// A started session.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionReply {
    /// The person.
    pub principal_id: Uuid,
    /// The session (also in the cookie, as a secret).
    pub session_id: Uuid,
    /// Their roles after this login.
    pub roles: Vec<Role>,
    /// When the session ends.
    pub expires_at: DateTime<Utc>,
    /// Send as `X-CSRF-Token` with every state-changing request made with the session cookie.
    pub csrf_token: String,
}

fn open_pending(state: &AppState, headers: &HeaderMap, idp: &str) -> Result<PendingLogin, Problem> {
    let raw = cookie(headers, &state.cookies.name("login")).ok_or_else(|| login_refused("no login in progress"))?;
    let sealed = URL_SAFE_NO_PAD
        .decode(raw)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<domain::Sealed>(&bytes).ok())
        .ok_or_else(|| login_refused("the login cookie is malformed"))?;
    let json = state
        .keyring
        .open(&sealed, LOGIN_COOKIE_CONTEXT)
        .map_err(|_| login_refused("the login cookie does not open"))?;
    let pending: PendingLogin =
        serde_json::from_str(json.expose()).map_err(|_| login_refused("the login cookie is malformed"))?;
    if pending.idp != idp {
        return Err(login_refused("the login was begun at another identity provider"));
    }
    if pending.expires < Utc::now().timestamp() {
        return Err(login_refused("the login took too long; begin again"));
    }
    Ok(pending)
}

#[utoipa::path(get, path = "/auth/{idp}/callback", operation_id = "login_callback", params(("idp" = String, Path)), responses((status = 200, body = SessionReply), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem), (status = 403, body = Problem), (status = 502, body = Problem)))]
pub(crate) async fn callback(
    State(state): State<AppState>,
    Path(idp): Path<String>,
    Query(query): Query<CallbackQuery>,
    origin: Origin,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    if let Some(error) = query.error {
        let detail = query.error_description.unwrap_or_default();
        return Err(Problem::new(StatusCode::BAD_REQUEST, "login-refused", "The identity provider refused the login")
            .detail(format!("{error}: {detail}")));
    }
    let pending = open_pending(&state, &headers, &idp)?;
    // The state binds the answer to this browser's login: a callback forged or replayed into another
    // browser carries a state its cookie does not.
    let state_matches =
        query.state.as_deref().is_some_and(|s| crate::constant_time::equal(s.as_bytes(), pending.state.as_bytes()));
    if !state_matches {
        return Err(login_refused("the state does not match the login in progress"));
    }
    let code = query.code.ok_or_else(|| login_refused("no code"))?;
    let device_id = cookie(&headers, &state.cookies.name("device"))
        .and_then(|d| Uuid::parse_str(d).ok())
        .unwrap_or_else(Uuid::now_v7);
    // A browser session ends by itself within hours: it is not renewed at the IdP.
    let (session, _) = sign_in(&state, &idp, &pending, &code, query.iss.as_deref(), &origin, device_id).await?;
    // The browser's next request is decided with the session in the model.
    crate::authz_lag::applied(&state, session.position).await;
    let reply = SessionReply {
        principal_id: session.principal_id,
        session_id: session.session_id,
        roles: session.roles.iter().copied().collect(),
        expires_at: session.expires_at,
        csrf_token: csrf_token(session.secret.expose()),
    };
    let mut response = (StatusCode::OK, axum::Json(reply)).into_response();
    let headers = response.headers_mut();
    let cookies = [
        state.cookies.set("session", session.secret.expose(), SESSION_HOURS * 3600),
        state.cookies.set("login", "", 0),
        state.cookies.set("device", &device_id.to_string(), 400 * 24 * 3600),
    ];
    for value in cookies {
        headers.append(header::SET_COOKIE, HeaderValue::from_str(&value).map_err(|_| Problem::internal())?);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// A session as listed.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionItem {
    /// Id.
    pub id: Uuid,
    /// How it started.
    pub method: String,
    /// The device cookie's id.
    pub device_id: Uuid,
    /// The user agent at the start.
    pub user_agent: Option<String>,
    /// The address at the start.
    pub ip: Option<String>,
    /// Started.
    pub started_at: DateTime<Utc>,
    /// Ends.
    pub expires_at: DateTime<Utc>,
    /// `active`, `revoked` or `expired`.
    pub status: &'static str,
    /// The session this request came with.
    pub current: bool,
}

/// Sessions.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionList {
    /// Newest first.
    pub sessions: Vec<SessionItem>,
}

fn list_for(state: &AppState, caller: &Caller, id: Uuid) -> Result<SessionList, Problem> {
    let model = state.authz.read().map_err(|_| Problem::internal())?;
    let now = Utc::now();
    let sessions = model
        .sessions_of(id)
        .into_iter()
        .map(|s| SessionItem {
            id: s.session_id,
            method: s.method,
            device_id: s.device_id,
            user_agent: s.user_agent,
            ip: s.ip,
            started_at: s.started_at,
            expires_at: s.expires_at,
            status: if s.revoked {
                "revoked"
            } else if s.expired || s.expires_at <= now || now - s.last_active >= domain::identity::SESSION_IDLE {
                "expired"
            } else {
                "active"
            },
            current: s.session_id == caller.0.key_id,
        })
        .collect();
    Ok(SessionList { sessions })
}

#[utoipa::path(get, path = "/api/v1/me/sessions", operation_id = "my_sessions", responses((status = 200, body = SessionList), (status = 401, body = Problem, content_type = "application/problem+json")), security(("api_key" = [])))]
pub(crate) async fn my_sessions(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<SessionList>, Problem> {
    let id = caller.0.id;
    caller.authorize_on(&state, Action::ManageOwnCredentials, Resource::Principal(id), "sessions").await?;
    Ok(axum::Json(list_for(&state, &caller, id)?))
}

#[utoipa::path(get, path = "/api/v1/users/{id}/sessions", operation_id = "user_sessions", params(("id" = Uuid, Path)), responses((status = 200, body = SessionList), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem)), security(("api_key" = [])))]
pub(crate) async fn user_sessions(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<SessionList>, Problem> {
    caller.authorize(&state, Action::ReadUsers, &format!("principal:{id}")).await?;
    Ok(axum::Json(list_for(&state, &caller, id)?))
}

async fn end_session(state: &AppState, caller: &Caller, principal: Uuid, session: Uuid) -> Result<Response, Problem> {
    caller
        .authorize_on(
            state,
            Action::ManageOwnCredentials,
            Resource::Principal(principal),
            &format!("session:{session}"),
        )
        .await?;
    let command_id = Uuid::now_v7();
    let actor = caller.actor();
    let context = CommandContext { command_id, metadata: caller.1.metadata(actor, command_id) };
    let done =
        state.principals.revoke_session(caller.0.id, principal, session, "ended through the API", &context).await?;
    if let Some(done) = &done {
        crate::authz_lag::applied(state, done.position).await;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(delete, path = "/api/v1/me/sessions/{id}", operation_id = "end_my_session", params(("id" = Uuid, Path)), responses((status = 204), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem)), security(("api_key" = [])))]
pub(crate) async fn end_my_session(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Response, Problem> {
    end_session(&state, &caller, caller.0.id, id).await
}

#[utoipa::path(delete, path = "/api/v1/users/{id}/sessions/{session}", operation_id = "end_user_session", params(("id" = Uuid, Path), ("session" = Uuid, Path)), responses((status = 204), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem), (status = 404, body = Problem)), security(("api_key" = [])))]
pub(crate) async fn end_user_session(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, session)): Path<(Uuid, Uuid)>,
) -> Result<Response, Problem> {
    end_session(&state, &caller, id, session).await
}

/// What a refresh answers.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RefreshReply {
    /// The session.
    pub session_id: Uuid,
    /// The new CSRF token (it follows the rotated secret).
    pub csrf_token: String,
}

#[utoipa::path(post, path = "/auth/refresh", operation_id = "refresh_session", responses((status = 200, body = RefreshReply), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem)))]
pub(crate) async fn refresh(
    State(state): State<AppState>,
    origin: Origin,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let secret = cookie(&headers, &state.cookies.name("session")).ok_or_else(Problem::unauthenticated)?;
    let sent = headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !crate::constant_time::equal(sent.as_bytes(), csrf_token(secret).as_bytes()) {
        return Err(Problem::new(StatusCode::FORBIDDEN, "csrf", "CSRF token missing or wrong")
            .detail("send the session's csrf_token as X-CSRF-Token"));
    }
    let device_id = cookie(&headers, &state.cookies.name("device")).and_then(|d| Uuid::parse_str(d).ok());
    let command_id = Uuid::now_v7();
    // The actor is the session's holder, as far as this instance's model knows the session.
    let holder = secret
        .split_once('.')
        .and_then(|(id, _)| Uuid::parse_str(id).ok())
        .and_then(|id| state.authz.read().ok().and_then(|m| m.session(id)))
        .map(|s| s.principal_id.to_string())
        .unwrap_or_else(|| "unknown-session".into());
    let actor = Actor { id: holder, kind: ActorKind::User };
    let context = CommandContext { command_id, metadata: origin.metadata(actor, command_id) };
    let ip = origin.source_ip.map(|ip| ip.to_string());
    let refreshed = match state.principals.refresh_session(secret, device_id, ip, Utc::now(), &context).await {
        Err(commands::CommandError::SessionSuspicious) => {
            // The revocation is written: answer once this instance enforces it.
            if let Ok(Some(head)) = state.store.committed_head().await {
                crate::authz_lag::applied(&state, head).await;
            }
            return Err(commands::CommandError::SessionSuspicious.into());
        }
        other => other?,
    };
    crate::authz_lag::applied(&state, refreshed.position).await;
    let reply = RefreshReply { session_id: refreshed.session_id, csrf_token: csrf_token(refreshed.secret.expose()) };
    let mut response = (StatusCode::OK, axum::Json(reply)).into_response();
    let value = state.cookies.set("session", refreshed.secret.expose(), SESSION_HOURS * 3600);
    response.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&value).map_err(|_| Problem::internal())?);
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
