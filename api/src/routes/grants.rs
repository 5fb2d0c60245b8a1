//! `/api/v1/me/grants`: what each OAuth client holds for the caller, and taking it back. A grant lives in
//! the session of the sign-in that approved it, so revoking it ends that session: the client's access
//! tokens are refused from the next request and its refresh tokens no longer redeem.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use chrono::{DateTime, Utc};
use commands::servers::CommandContext;
use domain::authz::{Action, Resource};
use serde::Serialize;
use uuid::Uuid;

use crate::auth::Caller;
use crate::problem::Problem;
use crate::state::AppState;

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/me/grants", get(my_grants)).route("/api/v1/me/grants/{id}", delete(revoke_my_grant))
}

/// A grant as its holder sees it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct GrantItem {
    /// The grant (the session it lives in).
    pub id: Uuid,
    /// The client holding it.
    pub client_id: String,
    /// The name the client registered.
    pub client_name: Option<String>,
    /// The resource its tokens are for: one server's MCP endpoint, or the gateway (every server).
    pub resource: String,
    /// The scope approved.
    pub scope: String,
    /// When it was approved.
    pub granted_at: DateTime<Utc>,
    /// When the client last got a token with it.
    pub last_used_at: DateTime<Utc>,
    /// When it ends at the latest (its session's end).
    pub expires_at: DateTime<Utc>,
}

/// The caller's grants.
#[derive(Serialize, utoipa::ToSchema)]
pub struct GrantList {
    /// Live ones, newest first.
    pub grants: Vec<GrantItem>,
}

#[utoipa::path(get, path = "/api/v1/me/grants", operation_id = "my_grants", tag = "oauth",
    description = "What each OAuth client holds for the caller: live grants, newest first.",
    responses((status = 200, body = GrantList), (status = 401, body = Problem, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub(crate) async fn my_grants(State(state): State<AppState>, caller: Caller) -> Result<axum::Json<GrantList>, Problem> {
    let id = caller.0.id;
    caller.authorize_on(&state, Action::ManageOwnCredentials, Resource::Principal(id), "grants").await?;
    let model = state.authz.read().map_err(|_| Problem::unavailable("the authorization model is unavailable"))?;
    let grants = model
        .grants_of(id, Utc::now())
        .into_iter()
        .map(|g| GrantItem {
            id: g.session_id,
            client_name: model.client(&g.client_id).and_then(|c| c.name.clone()),
            expires_at: model.session(g.session_id).map_or(g.granted_at, |s| s.expires_at),
            client_id: g.client_id,
            resource: g.resource,
            scope: g.scope,
            granted_at: g.granted_at,
            last_used_at: g.last_used_at,
        })
        .collect();
    Ok(axum::Json(GrantList { grants }))
}

#[utoipa::path(delete, path = "/api/v1/me/grants/{id}", operation_id = "revoke_my_grant", tag = "oauth",
    description = "Takes a grant back: the client's access tokens are refused from the next request, its refresh tokens no longer redeem.",
    params(("id" = Uuid, Path)),
    responses((status = 204), (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub(crate) async fn revoke_my_grant(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Response, Problem> {
    let principal = caller.0.id;
    caller
        .authorize_on(&state, Action::ManageOwnCredentials, Resource::Principal(principal), &format!("grant:{id}"))
        .await?;
    let holder = {
        let model = state.authz.read().map_err(|_| Problem::unavailable("the authorization model is unavailable"))?;
        model.grant(id).map(|g| g.principal_id)
    };
    // Another person's grant is as unknown as none: its id tells the caller nothing.
    if holder != Some(principal) {
        return Err(Problem::not_found().detail(format!("no grant {id} of yours")));
    }
    let command_id = Uuid::now_v7();
    let context = CommandContext { command_id, metadata: caller.1.metadata(caller.actor(), command_id) };
    let done =
        state.principals.revoke_session(principal, principal, id, "grant revoked by its holder", &context).await?;
    if let Some(done) = &done {
        crate::authz_lag::applied(&state, done.position).await;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
