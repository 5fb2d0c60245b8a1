//! The gateway as the OAuth 2.1 authorization server of MCP clients: its metadata (RFC 8414), the
//! protected-resource metadata of every registered server (RFC 9728) and client registration
//! (RFC 7591). Every URL in these documents comes from the configured public URL, never from the
//! request's `Host` or `X-Forwarded-*`. Browser-based clients (the MCP Inspector, web apps) read them
//! across origins: CORS allows any origin, without credentials.

pub(crate) mod authorize;
pub(crate) mod clients;
pub(crate) mod discovery;
mod error;
mod flow_store;
pub(crate) mod metadata_document;
mod refresh_store;
pub(crate) mod registration;
pub(crate) mod revocation;
pub(crate) mod token;

use axum::Router;
use axum::http::{HeaderName, Method, header};
use tower_http::cors::{Any, CorsLayer};

use crate::state::AppState;

pub use error::OAuthError;

/// The routes, with CORS.
pub fn routes() -> Router<AppState> {
    let cross_origin = discovery::routes()
        .merge(registration::routes())
        .merge(token::routes())
        .merge(revocation::routes())
        .layer(cors());
    // The browser's pages: no CORS (a page of another origin has no business reading them).
    cross_origin.merge(authorize::routes())
}

/// The fields of a token or revocation request: a form (`application/x-www-form-urlencoded`), each
/// parameter at most once (RFC 6749 §3.1).
pub(crate) fn form_fields(
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> Result<std::collections::HashMap<String, String>, OAuthError> {
    let form_typed = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case("application/x-www-form-urlencoded")
    });
    if !form_typed {
        return Err(OAuthError::bad_request("invalid_request", "send the form as application/x-www-form-urlencoded"));
    }
    crate::params::unique_pairs(body)
        .map_err(|name| OAuthError::bad_request("invalid_request", format!("{name} is sent more than once")))
}

/// Appends `event` to its grant's authorization log (`oauth-<session>`, or a log of its own before a
/// sign-in: see [`domain::oauth::AuthorizationEvent::grant_session`]), a log rather than an aggregate:
/// nothing is decided on it. The audit trail files it under its client. A failure is logged; the answer
/// stands.
pub(crate) async fn record(
    state: &AppState,
    context: &commands::servers::CommandContext,
    event: domain::oauth::AuthorizationEvent,
) {
    let recorded = async {
        let log = event.grant_session().unwrap_or_else(uuid::Uuid::now_v7);
        let stream = eventstore::StreamName::from_parts(domain::oauth::AUTHORIZATION_CATEGORY, log)
            .map_err(|_| "an invalid stream name")?;
        let data = eventstore::EventData {
            event_id: eventstore::EventData::deterministic_id(context.command_id, 0),
            event_type: event.event_type().to_owned(),
            schema_version: 1,
            data: event.to_json().map_err(|_| "an event that does not serialize")?,
            metadata: context.metadata.clone(),
        };
        state
            .store
            .append(&stream, eventstore::ExpectedRevision::Any, vec![data])
            .await
            .map_err(|_| "the store refused")?;
        Ok::<(), &str>(())
    };
    if let Err(error) = recorded.await {
        tracing::warn!(error, "could not record an authorization event");
    }
}

/// CORS for what MCP clients in browsers call: any origin, no credentials (cookies never count here),
/// the challenge and the session id readable.
pub(crate) fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("mcp-protocol-version"),
            HeaderName::from_static("mcp-session-id"),
            HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([header::WWW_AUTHENTICATE, header::RETRY_AFTER, HeaderName::from_static("mcp-session-id")])
}
