//! The gateway as the OAuth 2.1 authorization server of MCP clients: its metadata (RFC 8414), the
//! protected-resource metadata of every registered server (RFC 9728) and client registration
//! (RFC 7591). Every URL in these documents comes from the configured public URL, never from the
//! request's `Host` or `X-Forwarded-*`. Browser-based clients (the MCP Inspector, web apps) read them
//! across origins: CORS allows any origin, without credentials.

pub(crate) mod discovery;
mod error;
pub(crate) mod registration;

use axum::Router;
use axum::http::{HeaderName, Method, header};
use tower_http::cors::{Any, CorsLayer};

use crate::state::AppState;

pub use error::OAuthError;

/// The routes, with CORS.
pub fn routes() -> Router<AppState> {
    discovery::routes().merge(registration::routes()).layer(cors())
}

/// CORS for what MCP clients in browsers call: any origin, no credentials (cookies never count here),
/// the challenge and the session id readable.
pub(crate) fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("mcp-protocol-version"),
            HeaderName::from_static("mcp-session-id"),
            HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([header::WWW_AUTHENTICATE, HeaderName::from_static("mcp-session-id")])
}
