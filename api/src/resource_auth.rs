//! Who calls an MCP endpoint (`/servers/{id}/mcp`), the gateway as an OAuth protected resource
//! (RFC 6750, RFC 9728, MCP authorization): the credential comes from the `Authorization` header only
//! (never the query or the body); an access token must be one of the gateway's, for exactly this
//! resource (`aud`) or the umbrella resource (the gateway itself), carry the `mcp:tools` scope, and belong to a session or key that is still valid; an
//! API key is taken as on the REST API. What is refused is said in the `WWW-Authenticate` challenge,
//! which names the resource's metadata so that a client can start its authorization flow.

use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use domain::authz::Action;
use domain::oauth::MCP_SCOPE;

use crate::auth::{Caller, admit, authenticate_credential, verify_token};
use crate::state::AppState;

/// Why a request to an MCP endpoint was refused.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// No credential: 401 with the challenge and no error code (RFC 6750 §3.1).
    Missing,
    /// An `Authorization` header that is not one `Bearer <token>`: 400 `invalid_request`.
    Malformed(&'static str),
    /// A credential refused: 401 `invalid_token`.
    Invalid(String),
    /// A token without the scope the endpoint needs: 403 `insufficient_scope`.
    InsufficientScope,
    /// The authorization model cannot decide now: 503.
    Unavailable(String),
    /// Over the caller's rate limit: 429 with `Retry-After`.
    Limited(crate::problem::Problem),
}

/// The caller of the MCP endpoint whose resource URL is `resource`.
pub(crate) async fn resource_caller(parts: &Parts, state: &AppState, resource: &str) -> Result<Caller, Refusal> {
    if !state.authz_ready() {
        return Err(Refusal::Unavailable("the authorization model is still loading".into()));
    }
    let mut headers = parts.headers.get_all(AUTHORIZATION).iter();
    let Some(header) = headers.next() else { return Err(Refusal::Missing) };
    if headers.next().is_some() {
        return Err(Refusal::Malformed("send one Authorization header"));
    }
    let value = header.to_str().map_err(|_| Refusal::Malformed("the Authorization header is not text"))?;
    let token = match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => return Err(Refusal::Malformed("send the credential as Authorization: Bearer <token>")),
    };
    if token.is_empty() || token.contains(char::is_whitespace) {
        return Err(Refusal::Malformed("the bearer token is empty or has spaces"));
    }
    let principal = if token.starts_with(domain::identity::API_KEY_PREFIX) {
        authenticate_credential(state, token).await.map_err(|p| Refusal::Invalid(p.detail.unwrap_or_default()))?
    } else {
        // A token for this server, or for the umbrella resource (the gateway: what a client that names no
        // resource is granted), whose holder the server's access policy then decides on.
        let claims = match verify_token(state, token, resource).await {
            Ok(claims) => claims,
            Err(refused) => verify_token(state, token, state.tokens.issuer())
                .await
                .map_err(|_| Refusal::Invalid(refused.detail.unwrap_or_default()))?,
        };
        if !claims.scope.split_whitespace().any(|s| s == MCP_SCOPE) {
            return Err(Refusal::InsufficientScope);
        }
        let ended = || Refusal::Invalid("the token's session, key or principal is no longer valid".into());
        let (Ok(principal), Ok(key)) = (uuid::Uuid::parse_str(&claims.sub), uuid::Uuid::parse_str(&claims.sid)) else {
            return Err(ended());
        };
        let model =
            state.authz.read().map_err(|_| Refusal::Unavailable("the authorization model is unavailable".into()))?;
        // A token of an OAuth client stops working the moment the client is revoked.
        if let Some(client) = &claims.client_id
            && model.client(client).is_none_or(|c| c.revoked)
        {
            return Err(Refusal::Invalid("the token's client is revoked".into()));
        }
        let mut found = model.by_token(principal, key, chrono::Utc::now()).ok_or_else(ended)?;
        drop(model);
        // A token for an MCP server lets its holder use servers, nothing else; a key's own scopes narrow
        // that further, never widen it.
        if !found.scopes.is_empty() && !found.scopes.contains(&Action::UseServers) {
            return Err(Refusal::Invalid("the token's key may not use servers".into()));
        }
        found.scopes = vec![Action::UseServers];
        found.client_id = claims.client_id.clone();
        found
    };
    admit(parts, state, principal).map_err(|p| match p.status {
        429 => Refusal::Limited(p),
        _ => Refusal::Unavailable(p.detail.unwrap_or_default()),
    })
}
