//! `/api/v1/me` and `/api/v1/users`: principals, their roles, their API keys, disabling, and the TOTP
//! step-up. Every change answers once this instance's authorization model has applied it, so the next
//! request, the caller's or anybody's, is decided with it.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use chrono::{DateTime, Utc};
use commands::principals::{KeyInput, RoleRequest};
use commands::servers::CommandContext;
use domain::Role;
use domain::authz::{Action, Resource};
use domain::identity::{PrincipalKind, RoleChange};
use eventstore::Position;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::Caller;
use crate::json_body;
use crate::problem::Problem;
use crate::state::AppState;

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/me", get(me))
        .route("/api/v1/me/mfa/totp", post(enroll_totp))
        .route("/api/v1/me/mfa/totp/verify", post(verify_totp))
        .route("/api/v1/users/{id}/mfa/approval", post(approve_mfa))
        .route("/api/v1/users", get(list).post(create))
        .route("/api/v1/users/{id}", get(read))
        .route("/api/v1/users/{id}/roles", post(grant))
        .route("/api/v1/users/{id}/roles/{role}", delete(revoke))
        .route("/api/v1/users/{id}/disable", post(disable))
        .route("/api/v1/users/{id}/enable", post(enable))
        .route("/api/v1/users/{id}/api-keys", post(issue_key).get(list_keys))
        .route("/api/v1/users/{id}/api-keys/{key_id}", delete(revoke_key))
}

fn context(caller: &Caller) -> CommandContext {
    let command_id = Uuid::now_v7();
    let actor = caller.actor();
    CommandContext { command_id, metadata: caller.1.metadata(actor, command_id) }
}

/// `me` or a principal id.
fn principal_id(caller: &Caller, raw: &str) -> Result<Uuid, Problem> {
    if raw == "me" {
        return Ok(caller.0.id);
    }
    Uuid::parse_str(raw).map_err(|_| Problem::not_found())
}

/// A principal.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PrincipalReply {
    /// Id.
    pub id: Uuid,
    /// `user` or `service`.
    pub kind: PrincipalKind,
    /// Display name.
    pub display_name: String,
    /// Roles, highest first.
    pub roles: Vec<Role>,
    /// Disabled principals authenticate nowhere.
    pub disabled: bool,
}

impl From<projections::authz::PrincipalSummary> for PrincipalReply {
    fn from(p: projections::authz::PrincipalSummary) -> Self {
        Self { id: p.id, kind: p.kind, display_name: p.display_name, roles: p.roles, disabled: p.disabled }
    }
}

/// The caller, as the credential it presented shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MeReply {
    /// The principal.
    #[serde(flatten)]
    pub principal: PrincipalReply,
    /// The API key used for this request.
    pub key_id: Uuid,
    /// The key's scopes (empty: whatever the roles allow).
    pub scopes: Vec<String>,
    /// With a session cookie: the session's CSRF token, for `X-CSRF-Token` (a page that lost it asks here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csrf_token: Option<String>,
}

/// Principals.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PrincipalList {
    /// Every principal, by id.
    pub users: Vec<PrincipalReply>,
}

/// What a change answers.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ChangeReply {
    /// The principal (or key) changed.
    pub id: Uuid,
    /// Where the change sits in `$all` (`null` when nothing changed).
    pub position: Option<String>,
}

/// Credentials are made from credentials that can be revoked on their own (an API key, a session), never
/// from an access token: a stolen token, good for minutes, must not buy a key good for months.
fn not_from_a_token(caller: &Caller) -> Result<(), Problem> {
    if caller.0.credential == projections::authz::Credential::AccessToken {
        return Err(Problem::forbidden(
            "API keys and second factors are managed with an API key or a session, not an access token".into(),
        ));
    }
    Ok(())
}

fn invalid_field(field: &str, detail: String) -> Problem {
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-field", "Invalid field").field(field).detail(detail)
}

/// The answer to a change, once this instance's authorization model has applied it (when there was one).
async fn changed(state: &AppState, status: StatusCode, id: Uuid, position: Option<Position>) -> Response {
    if let Some(position) = position {
        crate::authz_lag::applied(state, position).await;
    }
    (status, axum::Json(ChangeReply { id, position: position.map(|p| p.to_string()) })).into_response()
}

async fn read_model<T>(state: &AppState, read: impl FnOnce(&projections::authz::Authz) -> T) -> Result<T, Problem> {
    let model = state.authz.read().map_err(|_| Problem::internal())?;
    Ok(read(&model))
}

#[utoipa::path(get, path = "/api/v1/me", operation_id = "me", responses((status = 200, body = MeReply), (status = 401, body = Problem, content_type = "application/problem+json")), security(("api_key" = [])))]
pub(crate) async fn me(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<axum::Json<MeReply>, Problem> {
    let csrf_token = (caller.0.credential == projections::authz::Credential::Session)
        .then(|| crate::cookies::cookie(&headers, &state.cookies.name("session")))
        .flatten()
        .map(crate::cookies::csrf_token);
    let principal = read_model(&state, |m| m.principal(caller.0.id)).await?.ok_or_else(Problem::unauthenticated)?;
    Ok(axum::Json(MeReply {
        principal: principal.into(),
        key_id: caller.0.key_id,
        scopes: caller.0.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
        csrf_token,
    }))
}

#[utoipa::path(get, path = "/api/v1/users", operation_id = "list_users", responses((status = 200, body = PrincipalList), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem)), security(("api_key" = [])))]
pub(crate) async fn list(State(state): State<AppState>, caller: Caller) -> Result<axum::Json<PrincipalList>, Problem> {
    caller.authorize(&state, Action::ReadUsers, "users").await?;
    let users = read_model(&state, |m| m.principals()).await?;
    Ok(axum::Json(PrincipalList { users: users.into_iter().map(Into::into).collect() }))
}

#[utoipa::path(get, path = "/api/v1/users/{id}", operation_id = "get_user", params(("id" = String, Path, description = "a principal id, or `me`")), responses((status = 200, body = PrincipalReply), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem), (status = 404, body = Problem)), security(("api_key" = [])))]
pub(crate) async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<PrincipalReply>, Problem> {
    let id = principal_id(&caller, &id)?;
    if id != caller.0.id {
        caller.authorize(&state, Action::ReadUsers, &format!("principal:{id}")).await?;
    }
    let principal = read_model(&state, |m| m.principal(id)).await?.ok_or_else(Problem::not_found)?;
    Ok(axum::Json(principal.into()))
}

/// Body of `POST /api/v1/users`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    /// Display name.
    display_name: String,
    /// `service` (the default: a machine client that authenticates with API keys) or `user`.
    #[serde(default = "service")]
    kind: PrincipalKind,
}

fn service() -> PrincipalKind {
    PrincipalKind::Service
}

#[utoipa::path(post, path = "/api/v1/users", operation_id = "create_user", request_body = CreateBody, responses((status = 201, body = ChangeReply), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)), security(("api_key" = [])))]
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    caller.authorize(&state, Action::ManageUsers, "users").await?;
    let body: CreateBody = json_body::parse(&json_body::bytes(body)?)?;
    let id = Uuid::now_v7();
    let done = state.principals.create(id, body.kind, &body.display_name, &context(&caller)).await?;
    Ok(changed(&state, StatusCode::CREATED, id, Some(done.position)).await)
}

/// Body of a role grant.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantBody {
    /// The role.
    role: Role,
    /// Why (kept in the audit trail).
    reason: String,
}

#[utoipa::path(post, path = "/api/v1/users/{id}/roles", operation_id = "grant_role", request_body = GrantBody, params(("id" = Uuid, Path)), responses((status = 200, body = ChangeReply), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)), security(("api_key" = [])))]
pub(crate) async fn grant(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let id = principal_id(&caller, &id)?;
    caller.authorize(&state, Action::GrantRoles, &format!("principal:{id}")).await?;
    let body: GrantBody = json_body::parse(&json_body::bytes(body)?)?;
    let ctx = context(&caller);
    let done = state
        .principals
        .change_role(
            caller.credential(),
            RoleRequest { target: id, change: RoleChange::Grant, role: body.role, reason: &body.reason },
            Utc::now(),
            &ctx,
        )
        .await?;
    Ok(changed(&state, StatusCode::OK, id, Some(done.position)).await)
}

/// Query of a role revocation and of key revocations.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReasonQuery {
    reason: Option<String>,
}

#[utoipa::path(delete, path = "/api/v1/users/{id}/roles/{role}", operation_id = "revoke_role", params(("id" = Uuid, Path), ("role" = Role, Path), ("reason" = String, Query, description = "why (kept in the audit trail)")), responses((status = 200, body = ChangeReply), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)), security(("api_key" = [])))]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, role)): Path<(String, String)>,
    Query(query): Query<ReasonQuery>,
) -> Result<Response, Problem> {
    let id = principal_id(&caller, &id)?;
    caller.authorize(&state, Action::GrantRoles, &format!("principal:{id}")).await?;
    let role: Role = role.parse().map_err(|e: domain::role::UnknownRole| {
        Problem::new(StatusCode::NOT_FOUND, "unknown-role", "Unknown role").detail(e.to_string())
    })?;
    let reason = query.reason.unwrap_or_default();
    let ctx = context(&caller);
    let done = state
        .principals
        .change_role(
            caller.credential(),
            RoleRequest { target: id, change: RoleChange::Revoke, role, reason: &reason },
            Utc::now(),
            &ctx,
        )
        .await?;
    Ok(changed(&state, StatusCode::OK, id, Some(done.position)).await)
}

/// Body of `disable`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisableBody {
    /// Why (kept in the audit trail).
    reason: String,
}

#[utoipa::path(post, path = "/api/v1/users/{id}/disable", operation_id = "disable_user", request_body = DisableBody, params(("id" = Uuid, Path)), responses((status = 200, body = ChangeReply), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)), security(("api_key" = [])))]
pub(crate) async fn disable(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let id = principal_id(&caller, &id)?;
    caller.authorize(&state, Action::ManageUsers, &format!("principal:{id}")).await?;
    let body: DisableBody = json_body::parse(&json_body::bytes(body)?)?;
    set_disabled(&state, &caller, id, true, &body.reason).await
}

#[utoipa::path(post, path = "/api/v1/users/{id}/enable", operation_id = "enable_user", params(("id" = Uuid, Path)), responses((status = 200, body = ChangeReply), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem), (status = 404, body = Problem)), security(("api_key" = [])))]
pub(crate) async fn enable(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = principal_id(&caller, &id)?;
    caller.authorize(&state, Action::ManageUsers, &format!("principal:{id}")).await?;
    set_disabled(&state, &caller, id, false, "").await
}

async fn set_disabled(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    disable: bool,
    reason: &str,
) -> Result<Response, Problem> {
    let done = state.principals.set_disabled(caller.0.id, id, disable, reason, &context(caller)).await?;
    Ok(changed(state, StatusCode::OK, id, done.map(|d| d.position)).await)
}

/// Body of a key issue.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyBody {
    /// What the key is for.
    #[serde(default)]
    name: Option<String>,
    /// When it stops working (RFC 3339); absent: never.
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
    /// Actions it may be used for (`servers.read`, `servers.manage`, …); absent or empty: whatever the
    /// principal's roles allow.
    #[serde(default)]
    scopes: Vec<String>,
}

/// A key just issued: the only time the key is shown.
#[derive(Serialize, utoipa::ToSchema)]
pub struct IssuedKeyReply {
    /// The key's id.
    pub id: Uuid,
    /// The key. Stored nowhere: keep it now.
    pub key: String,
    /// Its display prefix.
    pub prefix: String,
    /// When it stops working.
    pub expires_at: Option<DateTime<Utc>>,
}

#[utoipa::path(post, path = "/api/v1/users/{id}/api-keys", operation_id = "issue_api_key", request_body = KeyBody, params(("id" = String, Path, description = "a principal id, or `me`")), responses((status = 201, body = IssuedKeyReply), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)), security(("api_key" = [])))]
pub(crate) async fn issue_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let id = principal_id(&caller, &id)?;
    caller
        .authorize_on(&state, Action::ManageOwnCredentials, Resource::Principal(id), &format!("principal:{id}"))
        .await?;
    not_from_a_token(&caller)?;
    let body = json_body::bytes(body)?;
    let body: KeyBody = json_body::parse(if body.is_empty() { b"{}" } else { &body })?;
    let mut scopes = body
        .scopes
        .iter()
        .map(|s| s.parse::<Action>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid_field("scopes", e.to_string()))?;
    // The key is shown once and kept nowhere, so an `Idempotency-Key` cannot replay the answer: it
    // names the key instead, and a retry learns that its key was issued (409), to be revoked if lost.
    let key_id = match crate::idempotency::key(&headers)? {
        Some(idempotency) => {
            Uuid::new_v5(&Uuid::NAMESPACE_OID, format!("api-key\n{}\n{idempotency}", caller.0.id).as_bytes())
        }
        None => Uuid::now_v7(),
    };
    // A key never begets a stronger one: a scoped key issues keys within its scopes (none asked: the
    // same), an expiring key issues keys that expire no later.
    let own = &caller.0;
    if !own.scopes.is_empty() {
        if scopes.is_empty() {
            scopes = own.scopes.clone();
        }
        if let Some(wider) = scopes.iter().find(|s| !own.scopes.contains(s)) {
            return Err(invalid_field("scopes", format!("{} is not among the scopes of the key used", wider.as_str())));
        }
    }
    let expires_at = match (own.key_expires_at, body.expires_at) {
        (Some(limit), Some(asked)) if asked > limit => {
            return Err(invalid_field(
                "expires_at",
                format!("the key used expires at {limit}; a new key cannot outlive it"),
            ));
        }
        (Some(limit), None) => Some(limit),
        (_, asked) => asked,
    };
    let input = KeyInput { name: body.name, expires_at, scopes };
    let issued = match state.principals.issue_key(caller.0.id, id, key_id, input, Utc::now(), &context(&caller)).await {
        Err(commands::CommandError::PrincipalExists) => {
            return Err(Problem::new(StatusCode::CONFLICT, "already-issued", "Key already issued").detail(format!(
                "this Idempotency-Key already issued key {key_id}; a key is shown once: revoke it and issue \
                     another if it was lost"
            )));
        }
        other => other?,
    };
    let reply = IssuedKeyReply {
        id: issued.key_id,
        key: issued.key.expose().to_owned(),
        prefix: issued.prefix,
        expires_at: issued.expires_at,
    };
    // Issued keys are usable at once on this instance.
    let mut model_has_it = state.authz_status.clone();
    let _ = tokio::time::timeout(crate::authz_lag::AUTHZ_WAIT, async {
        while read_model(&state, |m| m.keys_of(id).iter().all(|k| k.key_id != issued.key_id)).await.unwrap_or(false) {
            if model_has_it.changed().await.is_err() {
                return;
            }
        }
    })
    .await;
    Ok((StatusCode::CREATED, axum::Json(reply)).into_response())
}

/// A key as listed: never the key.
#[derive(Serialize, utoipa::ToSchema)]
pub struct KeyReply {
    /// Id.
    pub id: Uuid,
    /// Display prefix.
    pub prefix: String,
    /// What it is for.
    pub name: Option<String>,
    /// When it stops working.
    pub expires_at: Option<DateTime<Utc>>,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// Revoked keys are refused.
    pub revoked: bool,
    /// When it (or a token minted from it) was last used, to about a minute.
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A principal's keys.
#[derive(Serialize, utoipa::ToSchema)]
pub struct KeyList {
    /// By id.
    pub keys: Vec<KeyReply>,
}

#[utoipa::path(get, path = "/api/v1/users/{id}/api-keys", operation_id = "list_api_keys", params(("id" = String, Path, description = "a principal id, or `me`")), responses((status = 200, body = KeyList), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem)), security(("api_key" = [])))]
pub(crate) async fn list_keys(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<KeyList>, Problem> {
    let id = principal_id(&caller, &id)?;
    if id == caller.0.id {
        caller.authorize_on(&state, Action::ManageOwnCredentials, Resource::Principal(id), "api_keys").await?;
    } else {
        caller.authorize(&state, Action::ReadUsers, &format!("principal:{id}")).await?;
    }
    let keys = read_model(&state, |m| m.keys_of(id)).await?;
    let ids: Vec<Uuid> = keys.iter().map(|k| k.key_id).collect();
    let used = crate::key_usage::KeyUsage::last_used(&state.tables, &ids)
        .await
        .map_err(|_| Problem::unavailable("the database is unreachable"))?;
    Ok(axum::Json(KeyList {
        keys: keys
            .into_iter()
            .map(|k| KeyReply {
                last_used_at: used.get(&k.key_id).copied(),
                id: k.key_id,
                prefix: k.prefix,
                name: k.name,
                expires_at: k.expires_at,
                scopes: k.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
                revoked: k.revoked,
            })
            .collect(),
    }))
}

#[utoipa::path(delete, path = "/api/v1/users/{id}/api-keys/{key_id}", operation_id = "revoke_api_key", params(("id" = String, Path, description = "a principal id, or `me`"), ("key_id" = Uuid, Path), ("reason" = Option<String>, Query)), responses((status = 200, body = ChangeReply), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem), (status = 404, body = Problem)), security(("api_key" = [])))]
pub(crate) async fn revoke_key(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, key_id)): Path<(String, String)>,
    Query(query): Query<ReasonQuery>,
) -> Result<Response, Problem> {
    let id = principal_id(&caller, &id)?;
    let key_id = Uuid::parse_str(&key_id).map_err(|_| Problem::not_found())?;
    caller
        .authorize_on(&state, Action::ManageOwnCredentials, Resource::Principal(id), &format!("api_key:{key_id}"))
        .await?;
    let reason = query.reason.unwrap_or_else(|| "revoked through the API".to_owned());
    let done = state.principals.revoke_key(caller.0.id, id, key_id, &reason, &context(&caller)).await?;
    Ok(changed(&state, StatusCode::OK, key_id, done.map(|d| d.position)).await)
}

/// Body of an enrolment: replacing an enrolled factor needs a current code from it.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrolBody {
    /// A current code of the enrolled factor (required when one is enrolled).
    #[serde(default)]
    code: Option<String>,
}

/// A TOTP enrolment: shown once.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TotpReply {
    /// The shared secret, base32, for an authenticator app.
    pub secret: String,
    /// The same as an `otpauth://` URI (for a QR code).
    pub otpauth_uri: String,
}

#[utoipa::path(post, path = "/api/v1/me/mfa/totp", operation_id = "enroll_totp", request_body = EnrolBody, responses((status = 201, body = TotpReply), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem), (status = 429, body = Problem)), security(("api_key" = [])))]
pub(crate) async fn enroll_totp(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let id = caller.0.id;
    caller.authorize_on(&state, Action::ManageOwnCredentials, Resource::Principal(id), "mfa").await?;
    not_from_a_token(&caller)?;
    let body = json_body::bytes(body)?;
    let body: EnrolBody = json_body::parse(if body.is_empty() { b"{}" } else { &body })?;
    let enrolment =
        state.principals.enroll_totp(caller.credential(), body.code.as_deref(), Utc::now(), &context(&caller)).await?;
    let reply = TotpReply {
        secret: enrolment.secret_base32.expose().to_owned(),
        otpauth_uri: enrolment.otpauth_uri.expose().to_owned(),
    };
    Ok((StatusCode::CREATED, axum::Json(reply)).into_response())
}

/// Body of `verify`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeBody {
    /// The 6-digit code the authenticator shows now.
    code: String,
}

#[utoipa::path(post, path = "/api/v1/me/mfa/totp/verify", operation_id = "verify_totp", request_body = CodeBody, responses((status = 204), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem), (status = 422, body = Problem), (status = 429, body = Problem)), security(("api_key" = [])))]
pub(crate) async fn verify_totp(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, Problem> {
    let id = caller.0.id;
    caller.authorize_on(&state, Action::ManageOwnCredentials, Resource::Principal(id), "mfa").await?;
    not_from_a_token(&caller)?;
    let body: CodeBody = json_body::parse(&json_body::bytes(body)?)?;
    state.principals.verify_totp(caller.credential(), &body.code, Utc::now(), &context(&caller)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/users/{id}/mfa/approval", operation_id = "approve_mfa_enrolment", params(("id" = Uuid, Path)), responses((status = 200, body = ChangeReply), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)), security(("api_key" = [])))]
/// `POST /api/v1/users/{id}/mfa/approval`: an owner lets a person enrol a first TOTP secret without a
/// login whose IdP reported MFA (for a day).
pub(crate) async fn approve_mfa(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = principal_id(&caller, &id)?;
    caller.authorize(&state, Action::GrantRoles, &format!("principal:{id}")).await?;
    let done = state.principals.approve_enrolment(Some(caller.credential()), id, Utc::now(), &context(&caller)).await?;
    Ok(changed(&state, StatusCode::OK, id, Some(done.position)).await)
}
