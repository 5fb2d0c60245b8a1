//! `POST /api/v1/tokens` (an API key exchanged for a short-lived access token) and
//! `GET /.well-known/jwks.json` (the keys that verify the gateway's tokens).

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{Duration, Utc};
use domain::authz::Action;
use projections::authz::Credential;
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::json_body;
use crate::problem::Problem;
use crate::state::AppState;

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/tokens", post(issue)).route("/.well-known/jwks.json", get(jwks))
}

/// Body of a token request.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    /// Actions the token may be used for, within the key's (absent: the key's).
    #[serde(default)]
    scopes: Vec<String>,
    /// Seconds until it expires (at most 900, the default).
    #[serde(default)]
    expires_in: Option<u32>,
}

/// An access token (the shape of an OAuth 2.0 token response, RFC 6749 §5.1).
#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenReply {
    /// The JWT.
    pub access_token: String,
    /// `Bearer`.
    pub token_type: &'static str,
    /// Seconds until it expires.
    pub expires_in: i64,
    /// Its scopes, space-separated (empty: the key's).
    pub scope: String,
}

#[utoipa::path(post, path = "/api/v1/tokens", operation_id = "issue_token", request_body = TokenBody, responses((status = 200, body = TokenReply), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)), security(("api_key" = [])))]
pub(crate) async fn issue(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    // A token is minted from an API key or a session, never from another token (a stolen token cannot
    // renew itself), and never outlives what it was minted from.
    if caller.0.credential == Credential::AccessToken {
        return Err(Problem::forbidden(
            "access tokens are issued for API keys and sessions, not for other tokens".into(),
        ));
    }
    let body = json_body::bytes(body)?;
    let body: TokenBody = json_body::parse(if body.is_empty() { b"{}" } else { &body })?;
    let invalid = |field: &str, detail: String| {
        Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-field", "Invalid field").field(field).detail(detail)
    };
    let mut scopes = Vec::new();
    for scope in &body.scopes {
        let action: Action =
            scope.parse().map_err(|e: domain::authz::UnknownAction| invalid("scopes", e.to_string()))?;
        if !caller.0.scopes.is_empty() && !caller.0.scopes.contains(&action) {
            return Err(invalid("scopes", format!("{scope} is not among the key's scopes")));
        }
        // A scope none of the caller's roles permits would mint a token that can do nothing with it.
        if !action.permitted().iter().any(|role| caller.0.roles.contains(role)) {
            return Err(invalid("scopes", format!("{scope} is permitted to none of the caller's roles")));
        }
        scopes.push(action.as_str().to_owned());
    }
    let lifetime = match body.expires_in {
        Some(0) => return Err(invalid("expires_in", "must be at least 1 second".into())),
        Some(seconds) if Duration::seconds(i64::from(seconds)) > commands::tokens::MAX_TOKEN_LIFETIME => {
            let most = commands::tokens::MAX_TOKEN_LIFETIME.num_seconds();
            return Err(invalid("expires_in", format!("at most {most} seconds")));
        }
        Some(seconds) => Duration::seconds(i64::from(seconds)),
        None => commands::tokens::MAX_TOKEN_LIFETIME,
    };
    let now = Utc::now();
    let lifetime = match caller.0.key_expires_at {
        Some(end) => lifetime.min(end - now),
        None => lifetime,
    };
    let token = state.tokens.issue(caller.0.id, &caller.0.key_id.to_string(), &scopes, lifetime, now)?;
    let reply = TokenReply {
        access_token: token.expose().to_owned(),
        token_type: "Bearer",
        expires_in: lifetime.num_seconds(),
        scope: scopes.join(" "),
    };
    let mut response = (StatusCode::OK, axum::Json(reply)).into_response();
    // RFC 6749 §5.1: token responses are not cached.
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[utoipa::path(get, path = "/.well-known/jwks.json", operation_id = "jwks", responses((status = 200, description = "the public keys of the gateway's tokens (RFC 7517)")))]
pub(crate) async fn jwks(State(state): State<AppState>) -> Response {
    let mut response = axum::Json(state.tokens.jwks()).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    response
}
