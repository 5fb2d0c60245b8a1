//! Discovery: the authorization server's metadata (RFC 8414) and each protected resource's (RFC 9728).
//!
//! The issuer is the configured public URL without a trailing slash, byte-identical in every document
//! and token. Each registered server is its own resource, `{issuer}/servers/{id}/mcp`, so that a token
//! is bound to one server (its `aud`); the issuer itself is the umbrella resource for clients that send
//! none or strip the path.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use domain::oauth::MCP_SCOPE;
use serde_json::{Value, json};
use uuid::Uuid;

use super::OAuthError;
use crate::state::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/.well-known/oauth-authorization-server", get(authorization_server))
        // Clients that take a server's URL for the issuer probe the metadata with its path appended.
        .route("/.well-known/oauth-authorization-server/servers/{id}/mcp", get(authorization_server_for_server))
        .route("/.well-known/oauth-protected-resource", get(umbrella_resource))
        .route("/.well-known/oauth-protected-resource/servers/{id}/mcp", get(server_resource))
}

/// JSON that clients may cache for five minutes.
fn cacheable(document: Value) -> Response {
    let mut response = axum::Json(document).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    response
}

/// The authorization server's metadata.
pub(crate) fn metadata(issuer: &str) -> Value {
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "registration_endpoint": format!("{issuer}/register"),
        "revocation_endpoint": format!("{issuer}/revoke"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "scopes_supported": [MCP_SCOPE],
        "authorization_response_iss_parameter_supported": true,
        "client_id_metadata_document_supported": true,
    })
}

#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", operation_id = "oauth_authorization_server_metadata", tag = "oauth",
    description = "The authorization server's metadata (RFC 8414).",
    responses((status = 200, description = "the metadata", body = Object, content_type = "application/json")))]
pub(crate) async fn authorization_server(State(state): State<AppState>) -> Response {
    cacheable(metadata(state.tokens.issuer()))
}

#[utoipa::path(get, path = "/.well-known/oauth-authorization-server/servers/{id}/mcp", operation_id = "oauth_authorization_server_metadata_for_server", tag = "oauth",
    description = "The same metadata, where clients that take a server's URL for the issuer look for it (the issuer in it is still the gateway's).",
    params(("id" = String, Path, description = "the server's id")),
    responses((status = 200, description = "the metadata", body = Object, content_type = "application/json")))]
pub(crate) async fn authorization_server_for_server(State(state): State<AppState>) -> Response {
    cacheable(metadata(state.tokens.issuer()))
}

/// A protected resource's metadata.
fn resource(issuer: &str, resource: String, name: Option<&str>) -> Value {
    let mut document = json!({
        "resource": resource,
        "authorization_servers": [issuer],
        "scopes_supported": [MCP_SCOPE],
        "bearer_methods_supported": ["header"],
    });
    if let Some(name) = name {
        document["resource_name"] = json!(name);
    }
    document
}

#[utoipa::path(get, path = "/.well-known/oauth-protected-resource", operation_id = "oauth_umbrella_resource_metadata", tag = "oauth",
    description = "The umbrella resource (the gateway itself, RFC 9728), for clients that strip a server's path.",
    responses((status = 200, description = "the metadata", body = Object, content_type = "application/json")))]
pub(crate) async fn umbrella_resource(State(state): State<AppState>) -> Response {
    let issuer = state.tokens.issuer();
    cacheable(resource(issuer, issuer.to_owned(), Some("MCP Registry Gateway")))
}

#[utoipa::path(get, path = "/.well-known/oauth-protected-resource/servers/{id}/mcp", operation_id = "oauth_server_resource_metadata", tag = "oauth",
    description = "The metadata of one registered server as a protected resource (RFC 9728): tokens for it carry its URL as `aud`.",
    params(("id" = Uuid, Path, description = "the server's id")),
    responses(
        (status = 200, description = "the metadata", body = Object, content_type = "application/json"),
        (status = 404, description = "no such server", body = Object, content_type = "application/json"),
        (status = 503, description = "the catalogue is unreachable", body = Object, content_type = "application/json"),
    ))]
pub(crate) async fn server_resource(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, OAuthError> {
    let not_found = || OAuthError::new(StatusCode::NOT_FOUND, "invalid_target", "no registered server has this id");
    let id: Uuid = id.parse().map_err(|_| not_found())?;
    let server = state.registry.get(id).await.map_err(|_| OAuthError::unavailable())?.ok_or_else(not_found)?;
    let issuer = state.tokens.issuer();
    let name = server.title.as_deref().unwrap_or(&server.name);
    Ok(cacheable(resource(issuer, format!("{issuer}/servers/{id}/mcp"), Some(name))))
}
