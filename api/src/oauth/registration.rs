//! `POST /register`: dynamic client registration (RFC 7591). Open to anyone, as MCP clients need it
//! (they arrive unknown), so it is bounded: registrations per client address are rate-limited (the `registration` route group),
//! bodies are small, and every registration is an event in the audit trail.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use commands::CommandError;
use commands::servers::CommandContext;
use domain::oauth::{ClientKind, ClientMetadata};
use eventstore::Actor;
use serde_json::json;

use super::OAuthError;
use crate::auth::Origin;
use crate::state::AppState;

/// Largest registration body, in bytes.
const MAX_BODY_BYTES: usize = 16 * 1024;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/register", post(register))
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case("application/json"))
}

#[utoipa::path(post, path = "/register", operation_id = "oauth_register_client", tag = "oauth",
    description = "Dynamic client registration (RFC 7591). Public clients (`token_endpoint_auth_method: none`, the default) get no secret; confidential ones get `client_secret` once. Redirect URIs: https, http only to loopback, a reverse-domain scheme for native apps; no fragments, user information, wildcards or dot segments.",
    request_body(content = Object, content_type = "application/json"),
    responses(
        (status = 201, description = "the client: `client_id`, `client_id_issued_at` and every registered field", body = Object, content_type = "application/json"),
        (status = 400, description = "`invalid_redirect_uri` or `invalid_client_metadata`", body = Object, content_type = "application/json"),
        (status = 413, description = "the body is larger than 16 KiB", body = Object, content_type = "application/json"),
        (status = 429, description = "too many registrations from this address; `Retry-After` says when to try again", body = Object, content_type = "application/json"),
        (status = 503, description = "the store is unreachable", body = Object, content_type = "application/json"),
    ))]
pub(crate) async fn register(
    State(state): State<AppState>,
    origin: Origin,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(OAuthError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_client_metadata",
            "at most 16 KiB of metadata",
        ));
    }
    if !is_json(&headers) {
        return Err(OAuthError::bad_request(
            "invalid_client_metadata",
            "the metadata is JSON: send Content-Type: application/json",
        ));
    }
    let metadata: ClientMetadata = serde_json::from_slice(&body).map_err(|e| {
        OAuthError::bad_request("invalid_client_metadata", format!("the metadata is not a client registration: {e}"))
    })?;
    let command_id = uuid::Uuid::now_v7();
    let metadata_of_event = eventstore::Metadata::new(
        origin.correlation_id.unwrap_or(command_id),
        Actor::system("oauth-registration"),
        chrono::Utc::now(),
    )
    .from_client(origin.source_ip, origin.user_agent.as_deref());
    let context = CommandContext { command_id, metadata: metadata_of_event };
    let registration = match state.oauth_clients.register(metadata, ClientKind::Dynamic, &context).await {
        Ok(registration) => registration,
        Err(CommandError::ClientRegistration(refused)) => {
            return Err(OAuthError::bad_request(refused.code(), refused.to_string()));
        }
        Err(CommandError::Store(e)) if e.is_unavailable() => return Err(OAuthError::unavailable()),
        Err(error) => {
            tracing::error!(%error, "client registration failed");
            return Err(OAuthError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "the registration failed"));
        }
    };
    let client = registration.client;
    let mut answer = serde_json::to_value(&client.metadata).unwrap_or_else(|_| json!({}));
    answer["client_id"] = json!(client.client_id);
    answer["client_id_issued_at"] = json!(context.metadata.occurred_at.timestamp());
    if let Some(secret) = &registration.secret {
        answer["client_secret"] = json!(secret.expose());
        answer["client_secret_expires_at"] = json!(0);
    }
    let mut response = (StatusCode::CREATED, axum::Json(answer)).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
