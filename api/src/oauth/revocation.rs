//! `POST /revoke` (RFC 7009): a client gives up a token. A refresh token takes its whole grant and the
//! session it lives in with it; an access token, its session. The answer is 200 whether or not the
//! token was known (§2.2), so that the endpoint tells nothing about tokens.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use commands::servers::CommandContext;
use eventstore::Actor;
use uuid::Uuid;

use super::OAuthError;
use super::refresh_store;
use super::token::authenticate_client;
use crate::auth::Origin;
use crate::state::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/revoke", post(revoke))
}

#[utoipa::path(post, path = "/revoke", operation_id = "oauth_revoke", tag = "oauth",
    description = "Token revocation (RFC 7009): `token` (a refresh token: its grant and session; an access token: its session) with the client's authentication. 200 whether or not the token was known.",
    request_body(content = Object, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "revoked, or nothing to revoke"),
        (status = 400, description = "`invalid_request`", body = Object, content_type = "application/json"),
        (status = 401, description = "`invalid_client`", body = Object, content_type = "application/json"),
        (status = 503, description = "the store is unreachable", body = Object, content_type = "application/json"),
    ))]
pub(crate) async fn revoke(State(state): State<AppState>, origin: Origin, headers: HeaderMap, body: Bytes) -> Response {
    match answer(&state, &origin, &headers, &body).await {
        Ok(()) => {
            let mut response = StatusCode::OK.into_response();
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(error) => error.into_response(),
    }
}

async fn answer(state: &AppState, origin: &Origin, headers: &HeaderMap, body: &[u8]) -> Result<(), OAuthError> {
    let form = super::form_fields(headers, body)?;
    let client = authenticate_client(state, headers, &form).await?;
    let token = form
        .get("token")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| OAuthError::bad_request("invalid_request", "the request has no token"))?;
    let actor = Actor { id: client.client_id.clone(), kind: eventstore::ActorKind::McpClient };
    let end_session = |principal: Uuid, session: Uuid| {
        let (actor, origin) = (actor.clone(), origin.clone());
        async move {
            let command_id = Uuid::now_v7();
            let context = CommandContext { command_id, metadata: origin.metadata(actor, command_id) };
            match state
                .principals
                .revoke_session(principal, principal, session, "revoked by the client", &context)
                .await
            {
                // Answered once this instance refuses the session's tokens.
                Ok(Some(done)) => crate::authz_lag::applied(state, done.position).await,
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "could not end a revoked grant's session"),
            }
        }
    };
    match refresh_store::grant_of(&state.tables, token).await {
        Ok(Some(grant)) if grant.client_id == client.client_id => {
            refresh_store::revoke_grant(&state.tables, grant.grant_id).await.map_err(|_| OAuthError::unavailable())?;
            end_session(grant.principal_id, grant.session_id).await;
            return Ok(());
        }
        // Another client's refresh token is not this client's to revoke (§2.1): nothing happens.
        Ok(Some(_)) => return Ok(()),
        Ok(None) => {}
        Err(_) => return Err(OAuthError::unavailable()),
    }
    // An access token: only one issued to this client (RFC 7009 §2.1); another client's is left alone.
    if let Ok(claims) = state.tokens.verify_any_resource(token)
        && claims.client_id.as_deref() == Some(client.client_id.as_str())
        && let (Ok(principal), Ok(session)) = (claims.sub.parse::<Uuid>(), claims.sid.parse::<Uuid>())
    {
        end_session(principal, session).await;
    }
    Ok(())
}
