//! `/api/v1/oauth/clients`: the OAuth clients of the authorization server, for operators: who
//! registered, with which redirect URIs, and revoking one (its tokens stop working at once, its refresh
//! tokens and codes with them).

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::{delete, get};
use chrono::{DateTime, Utc};
use commands::servers::CommandContext;
use domain::authz::Action;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::Caller;
use crate::problem::Problem;
use crate::state::AppState;

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/oauth/clients", get(list)).route("/api/v1/oauth/clients/{client_id}", delete(revoke))
}

/// A client as listed.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ClientItem {
    /// Its id.
    pub client_id: String,
    /// The name it registered.
    pub name: Option<String>,
    /// Its redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Whether it has a secret.
    pub confidential: bool,
    /// When it registered.
    pub registered_at: DateTime<Utc>,
    /// Whether it is revoked.
    pub revoked: bool,
}

/// The clients.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ClientList {
    /// Newest first.
    pub clients: Vec<ClientItem>,
}

#[utoipa::path(get, path = "/api/v1/oauth/clients", operation_id = "list_oauth_clients", tag = "oauth",
    description = "The OAuth clients that registered (and were configured), newest first (access reviews: owner, admin, auditor).",
    responses((status = 200, body = ClientList)), security(("api_key" = [])))]
pub(crate) async fn list(State(state): State<AppState>, caller: Caller) -> Result<axum::Json<ClientList>, Problem> {
    caller.authorize(&state, Action::ReadUsers, "oauth-clients").await?;
    let model = state.authz.read().map_err(|_| Problem::unavailable("the authorization model is unavailable"))?;
    let clients = model
        .clients()
        .into_iter()
        .map(|c| ClientItem {
            client_id: c.client_id,
            name: c.name,
            redirect_uris: c.redirect_uris,
            confidential: c.confidential,
            registered_at: c.registered_at,
            revoked: c.revoked,
        })
        .collect();
    Ok(axum::Json(ClientList { clients }))
}

#[derive(Deserialize)]
pub(crate) struct RevokeQuery {
    reason: Option<String>,
}

/// A revocation done.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ClientRevokedReply {
    /// The client.
    pub client_id: String,
    /// Always true.
    pub revoked: bool,
}

#[utoipa::path(delete, path = "/api/v1/oauth/clients/{client_id}", operation_id = "revoke_oauth_client", tag = "oauth",
    description = "Revokes a client: its access tokens are refused from the next request on, its refresh tokens and codes no longer redeem, and it cannot start an authorization again (owner, admin).",
    params(("client_id" = String, Path), ("reason" = Option<String>, Query)),
    responses((status = 200, body = ClientRevokedReply)), security(("api_key" = [])))]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(client_id): Path<String>,
    Query(query): Query<RevokeQuery>,
) -> Result<axum::Json<ClientRevokedReply>, Problem> {
    caller.authorize(&state, Action::ManageUsers, &format!("oauth-client:{client_id}")).await?;
    let command_id = Uuid::now_v7();
    let context = CommandContext { command_id, metadata: caller.1.metadata(caller.actor(), command_id) };
    let reason = query.reason.unwrap_or_else(|| "revoked by an operator".to_owned());
    state.oauth_clients.revoke(&client_id, &reason, &context).await?;
    // The next request is decided with the revocation in this instance's model.
    if let Ok(Some(head)) = state.store.committed_head().await {
        crate::authz_lag::applied(&state, head).await;
    }
    Ok(axum::Json(ClientRevokedReply { client_id, revoked: true }))
}
