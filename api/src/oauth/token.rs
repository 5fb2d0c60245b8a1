//! `POST /token`: a code for tokens (OAuth 2.1 §4.1.3), and a refresh token for new ones (§4.3). The client authenticates (public clients by
//! their id alone, confidential ones with their secret), the code is taken once and must have been
//! issued to this client for this redirect URI, the PKCE verifier must hash to its challenge, and a
//! code presented twice revokes what its first redemption produced. The access token is bound to the
//! resource the person approved (`aud`) and to the session of their sign-in (`sid`).

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::Utc;
use commands::servers::CommandContext;
use domain::oauth::{
    AuthorizationCodeReplayed, AuthorizationEvent, ClientRegistered, GrantType, MCP_SCOPE, RefreshTokenReuseDetected,
    TokenEndpointAuthMethod, TokenIssued,
};
use eventstore::Actor;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::authorize::{Code, hex_digest, random_secret};
use super::flow_store::{self, Kept};
use super::refresh_store::{self, Grant, Rotation};
use super::{OAuthError, record};
use crate::auth::Origin;
use crate::state::AppState;

/// Access tokens live ten minutes (C45: short; the refresh token renews them).
const ACCESS_TOKEN_MINUTES: i64 = 10;
/// How long a redeemed code is remembered, to recognise a replay.
const REDEEMED_MINUTES: i64 = 10;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/token", post(token))
}

/// A redeemed code, remembered: what its redemption produced.
#[derive(Debug, Serialize, Deserialize)]
struct Redeemed {
    client_id: String,
    principal_id: Uuid,
    session_id: Uuid,
}

fn invalid_grant(description: &str) -> OAuthError {
    OAuthError::bad_request("invalid_grant", description)
}

use crate::constant_time::equal;

/// The client a token request authenticates as: `Authorization: Basic` or `client_id` (and
/// `client_secret`) in the form, as the client registered (RFC 6749 §2.3).
pub(super) async fn authenticate_client(
    state: &AppState,
    headers: &HeaderMap,
    form: &std::collections::HashMap<String, String>,
) -> Result<Box<ClientRegistered>, OAuthError> {
    let refused = |why: &str| OAuthError::new(StatusCode::UNAUTHORIZED, "invalid_client", why);
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic ")))
        .map(|encoded| {
            let decoded = STANDARD.decode(encoded.trim()).ok().and_then(|b| String::from_utf8(b).ok());
            let pair = decoded.as_deref().and_then(|d| d.split_once(':'));
            let decode = |part: &str| {
                url::form_urlencoded::parse(format!("x={part}").as_bytes()).next().map(|(_, v)| v.into_owned())
            };
            pair.and_then(|(id, secret)| Some((decode(id)?, decode(secret)?)))
        });
    let (client_id, secret, method) = match basic {
        Some(Some((id, secret))) => (id, Some(secret), TokenEndpointAuthMethod::ClientSecretBasic),
        Some(None) => return Err(refused("the Basic credentials are malformed")),
        None => {
            let id = form.get("client_id").cloned().ok_or_else(|| refused("the request names no client"))?;
            match form.get("client_secret") {
                Some(secret) => (id, Some(secret.clone()), TokenEndpointAuthMethod::ClientSecretPost),
                None => (id, None, TokenEndpointAuthMethod::None),
            }
        }
    };
    let client = match super::clients::find(state, &client_id, false).await {
        super::clients::Lookup::Active(client) => client,
        super::clients::Lookup::Refused(why) => return Err(refused(&why)),
        super::clients::Lookup::Unknown => return Err(refused("the client is unknown; register again")),
        super::clients::Lookup::Unavailable => return Err(OAuthError::unavailable()),
    };
    if client.metadata.token_endpoint_auth_method != method {
        return Err(refused("the client authenticates as it registered"));
    }
    // A confidential client proves its secret; one recorded without a secret is refused (fail closed).
    if method.is_confidential() {
        let (Some(secret), Some(expected)) = (secret, &client.secret_sha256) else {
            return Err(refused("the client secret is missing"));
        };
        let presented = commands::oauth_clients::secret_digest(&secret);
        if !equal(presented.as_bytes(), expected.as_bytes()) {
            return Err(refused("the client secret is wrong"));
        }
    }
    Ok(client)
}

/// Whether `named` is `granted`, compared as `/authorize` compares resources (the parser lowercases
/// the scheme and host and drops a default port; a lone `/` is the empty path).
fn same_resource(named: &str, granted: &str) -> bool {
    url::Url::parse(named).is_ok_and(|url| url.fragment().is_none() && url.as_str().trim_end_matches('/') == granted)
}

/// A PKCE verifier (RFC 7636 §4.1): 43 to 128 unreserved characters.
fn is_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

#[utoipa::path(post, path = "/token", operation_id = "oauth_token", tag = "oauth",
    description = "The token endpoint: `grant_type=authorization_code` with `code`, `redirect_uri`, `code_verifier` (PKCE S256) and the client's authentication. Answers never cached.",
    request_body(content = Object, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "`access_token` (an `at+jwt` for the approved resource), `token_type`, `expires_in`, `scope`", body = Object, content_type = "application/json"),
        (status = 400, description = "`invalid_request`, `invalid_grant`, `invalid_target`, `unsupported_grant_type`", body = Object, content_type = "application/json"),
        (status = 401, description = "`invalid_client`", body = Object, content_type = "application/json"),
        (status = 503, description = "the store is unreachable", body = Object, content_type = "application/json"),
    ))]
pub(crate) async fn token(State(state): State<AppState>, origin: Origin, headers: HeaderMap, body: Bytes) -> Response {
    match answer(&state, &origin, &headers, &body).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn answer(state: &AppState, origin: &Origin, headers: &HeaderMap, body: &[u8]) -> Result<Response, OAuthError> {
    let form = super::form_fields(headers, body)?;
    let client = authenticate_client(state, headers, &form).await?;
    match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => redeem(state, origin, &client, &form).await,
        Some("refresh_token") if client.metadata.grant_types.contains(&GrantType::RefreshToken) => {
            refresh(state, origin, &client, &form).await
        }
        Some("refresh_token") => {
            Err(OAuthError::bad_request("unauthorized_client", "the client did not register the refresh_token grant"))
        }
        Some(other) => Err(OAuthError::bad_request(
            "unsupported_grant_type",
            format!("grant_type {other:?} is not one this client registered"),
        )),
        None => Err(OAuthError::bad_request("invalid_request", "the request names no grant_type")),
    }
}

async fn redeem(
    state: &AppState,
    origin: &Origin,
    client: &ClientRegistered,
    form: &std::collections::HashMap<String, String>,
) -> Result<Response, OAuthError> {
    let field = |name: &str| {
        form.get(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| OAuthError::bad_request("invalid_request", format!("the request has no {name}")))
    };
    let presented = field("code")?;
    let code: Code = match flow_store::take(&state.tables, Kept::Code, presented).await {
        Ok(Some(code)) => code,
        Ok(None) => return Err(replayed_or_unknown(state, origin, client, presented).await),
        Err(_) => return Err(OAuthError::unavailable()),
    };
    let redeemed =
        Redeemed { client_id: code.client_id.clone(), principal_id: code.principal_id, session_id: code.session_id };
    let until = Utc::now() + chrono::Duration::minutes(REDEEMED_MINUTES);
    if flow_store::put(&state.tables, Kept::RedeemedCode, presented, &redeemed, until).await.is_err() {
        return Err(OAuthError::unavailable());
    }
    if code.client_id != client.client_id {
        return Err(invalid_grant("the code was issued to another client"));
    }
    if form.get("redirect_uri") != Some(&code.redirect_uri) {
        return Err(invalid_grant("redirect_uri is not the one the code was sent to"));
    }
    // PKCE (RFC 7636 §4.6): a code issued with a challenge needs the verifier that hashes to it.
    let verifier = form.get("code_verifier").ok_or_else(|| invalid_grant("the request has no code_verifier"))?;
    let hashed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    if !is_verifier(verifier) || !equal(hashed.as_bytes(), code.code_challenge.as_bytes()) {
        return Err(invalid_grant("the code_verifier does not match the code's challenge"));
    }
    if let Some(resource) = form.get("resource")
        && !same_resource(resource, &code.resource)
    {
        return Err(OAuthError::bad_request("invalid_target", "the resource is not the one that was approved"));
    }
    // The sign-in behind the code may have ended since (revoked, disabled), and its tokens must work at
    // this instance's MCP endpoints from the next request: the session must be live in the model.
    if !session_live(state, code.principal_id, code.session_id).await {
        return Err(invalid_grant("the sign-in behind this code has ended; authorize again"));
    }
    let grant = Grant {
        grant_id: Uuid::now_v7(),
        client_id: client.client_id.clone(),
        principal_id: code.principal_id,
        session_id: code.session_id,
        scope: code.scope,
        resource: code.resource,
        renewal: code.renewal,
    };
    let refresh = if client.metadata.grant_types.contains(&GrantType::RefreshToken) {
        let token = random_secret();
        if let Err(error) = refresh_store::put(&state.tables, &token, &grant, code.session_expires_at).await {
            tracing::warn!(%error, "could not store a refresh token");
            return Err(OAuthError::unavailable());
        }
        Some(token)
    } else {
        None
    };
    issue(state, origin, client, &grant, refresh, "authorization_code").await
}

/// An access token for `grant` (and `refresh`, when there is one), recorded.
async fn issue(
    state: &AppState,
    origin: &Origin,
    client: &ClientRegistered,
    grant: &Grant,
    refresh: Option<String>,
    grant_type: &str,
) -> Result<Response, OAuthError> {
    let (access_token, jti) = state
        .tokens
        .issue_identified_for(
            &grant.resource,
            Some(&grant.client_id),
            grant.principal_id,
            &grant.session_id.to_string(),
            std::slice::from_ref(&grant.scope),
            chrono::Duration::minutes(ACCESS_TOKEN_MINUTES),
            Utc::now(),
        )
        .map_err(|_| OAuthError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "no token could be signed"))?;
    let command_id = Uuid::now_v7();
    let actor = Actor { id: client.client_id.clone(), kind: eventstore::ActorKind::McpClient };
    let context = CommandContext { command_id, metadata: origin.metadata(actor, command_id) };
    let issued = TokenIssued {
        client_id: client.client_id.clone(),
        principal_id: grant.principal_id,
        session_id: grant.session_id,
        resource: grant.resource.clone(),
        scope: grant.scope.clone(),
        jti,
        grant_type: grant_type.to_owned(),
    };
    let event = if grant_type == "refresh_token" {
        AuthorizationEvent::TokenRefreshed(issued)
    } else {
        AuthorizationEvent::TokenIssued(issued)
    };
    record(state, &context, event).await;
    let mut body = json!({
        "access_token": access_token.expose(),
        "token_type": "Bearer",
        "expires_in": ACCESS_TOKEN_MINUTES * 60,
        "scope": grant.scope,
    });
    if let Some(refresh) = refresh {
        body["refresh_token"] = json!(refresh);
    }
    let mut response = (StatusCode::OK, axum::Json(body)).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// How old a session's last activity mark may be before a refresh marks it again (the idle limit is
/// [`domain::identity::SESSION_IDLE`], an hour).
const ACTIVITY_MARK_EVERY: chrono::Duration = chrono::Duration::minutes(5);

/// The sealing context of a rotated refresh token's successor.
const SUCCESSOR_CONTEXT: &str = "oauth:refresh-successor";

/// `grant_type=refresh_token`: the token rotates; the scope and the resource can only stay (there is one
/// scope and the grant's resource); a reuse after the grace window revokes the grant and its session.
async fn refresh(
    state: &AppState,
    origin: &Origin,
    client: &ClientRegistered,
    form: &std::collections::HashMap<String, String>,
) -> Result<Response, OAuthError> {
    let presented = form
        .get("refresh_token")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| OAuthError::bad_request("invalid_request", "the request has no refresh_token"))?;
    // What the token stands for, checked before anything changes: a refused request rotates nothing.
    let grant = match refresh_store::grant_of(&state.tables, presented).await {
        Ok(Some(grant)) => grant,
        Ok(None) => return Err(invalid_grant("the refresh token is unknown, expired or revoked")),
        Err(_) => return Err(OAuthError::unavailable()),
    };
    if grant.client_id != client.client_id {
        return Err(invalid_grant("the refresh token was issued to another client"));
    }
    if let Some(scope) = form.get("scope")
        && scope.split_whitespace().any(|s| s != MCP_SCOPE && s != "offline_access")
    {
        return Err(OAuthError::bad_request("invalid_scope", "a refresh can only keep or narrow the scope"));
    }
    if let Some(resource) = form.get("resource")
        && !same_resource(resource, &grant.resource)
    {
        return Err(OAuthError::bad_request("invalid_target", "a refresh keeps the resource that was approved"));
    }
    if !session_live(state, grant.principal_id, grant.session_id).await {
        if let Err(error) = refresh_store::revoke_grant(&state.tables, grant.grant_id).await {
            tracing::warn!(%error, "could not remove an ended grant's tokens");
        }
        return Err(invalid_grant("the session of this grant has ended; authorize again"));
    }
    // The grant is in use: its session's idle clock starts again. Recorded when the last mark is a few
    // minutes old, not at every refresh: the idle limit is an hour, and a busy client would otherwise
    // write an event per refresh to its session's stream.
    let last_active = state.authz.read().ok().and_then(|model| model.session(grant.session_id)).map(|s| s.last_active);
    if last_active.is_none_or(|at| Utc::now() - at >= ACTIVITY_MARK_EVERY) {
        let command_id = Uuid::now_v7();
        let actor = Actor { id: client.client_id.clone(), kind: eventstore::ActorKind::McpClient };
        let context = CommandContext { command_id, metadata: origin.metadata(actor, command_id) };
        if let Err(error) =
            state.principals.mark_session_active(grant.principal_id, grant.session_id, Utc::now(), &context).await
        {
            tracing::warn!(%error, "could not mark a grant's session active");
        }
    }
    let successor = random_secret();
    let session_end = Utc::now() + chrono::Duration::hours(crate::upstream_login::SESSION_HOURS);
    let sealed = state
        .keyring
        .seal(&commands::Secret::new(successor.clone()), SUCCESSOR_CONTEXT)
        .ok()
        .and_then(|sealed| serde_json::to_string(&sealed).ok())
        .ok_or_else(|| {
            OAuthError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "no token could be sealed")
        })?;
    let rotation = refresh_store::rotate(&state.tables, presented, &successor, &sealed, &grant, session_end).await;
    let handed = match rotation {
        Ok(Rotation::Rotated) => {
            // Past the IdP's own token lifetime, the IdP is asked whether the sign-in still stands: by the
            // request that rotated, once (a concurrent one gets the successor without asking again, which
            // would reuse an IdP refresh token the IdP may have rotated).
            let renewed = renewed(state, origin, grant.clone()).await?;
            if renewed.renewal.as_ref().map(|r| &r.sealed) != grant.renewal.as_ref().map(|r| &r.sealed)
                && refresh_store::update(&state.tables, &successor, &renewed).await.is_err()
            {
                return Err(OAuthError::unavailable());
            }
            return issue(state, origin, client, &renewed, Some(successor), "refresh_token").await;
        }
        Ok(Rotation::AlreadyRotated(sealed)) => {
            // A concurrent refresh of the same token: the successor it stored, not a second one.
            serde_json::from_str::<domain::Sealed>(&sealed)
                .ok()
                .and_then(|sealed| state.keyring.open(&sealed, SUCCESSOR_CONTEXT).ok())
                .map(|secret| secret.expose().to_owned())
        }
        Ok(Rotation::Reused(grant)) => return Err(reused(state, origin, &grant).await),
        Ok(Rotation::Unknown) => None,
        Err(_) => return Err(OAuthError::unavailable()),
    };
    let handed = handed.ok_or_else(|| invalid_grant("the refresh token is unknown, expired or revoked"))?;
    issue(state, origin, client, &grant, Some(handed), "refresh_token").await
}

/// `grant`, with its sign-in renewed at the IdP when the IdP's token has expired. The IdP refusing
/// (`invalid_grant`: the person disabled or signed out there, the grant revoked) ends the session and
/// the grant; the IdP unreachable or failing leaves the grant as it is, to be asked again next time.
async fn renewed(state: &AppState, origin: &Origin, grant: Grant) -> Result<Grant, OAuthError> {
    let Some(renewal) = grant.renewal.clone().filter(|r| r.expires_at.is_some_and(|at| at <= Utc::now())) else {
        return Ok(grant);
    };
    let refresh_token = state.keyring.open(&renewal.sealed, refresh_store::RENEWAL_CONTEXT).map_err(|_| {
        OAuthError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "a sealed token did not open")
    })?;
    match state.idps.renew(&renewal.idp, refresh_token.expose()).await {
        Ok(fresh) => {
            let renewal = refresh_store::SealedRenewal::seal(&state.keyring, &renewal.idp, &fresh);
            Ok(Grant { renewal, ..grant })
        }
        Err(crate::oidc::OidcError::Refused(reason)) => {
            tracing::info!(%reason, idp = %renewal.idp, "the IdP no longer renews a grant's sign-in");
            let why = "the identity provider no longer renews the sign-in";
            end_grant(state, origin, &grant, Actor::system("oauth-renewal"), why).await;
            Err(invalid_grant("the identity provider no longer renews this sign-in; authorize again"))
        }
        Err(error) => {
            // The rotation is done: refusing now would leave the client without the successor, and a
            // retry after the grace window would count as a theft. The IdP is asked again at the next
            // refresh (the renewal stays due); the session's own end still bounds the grant.
            tracing::warn!(%error, "could not renew a grant's sign-in at the IdP; asking again at the next refresh");
            Ok(grant)
        }
    }
}

/// Ends `grant`: its refresh tokens removed, its session revoked as `actor` for `why`; answered once
/// this instance refuses what the session held.
async fn end_grant(state: &AppState, origin: &Origin, grant: &Grant, actor: Actor, why: &str) {
    if let Err(error) = refresh_store::revoke_grant(&state.tables, grant.grant_id).await {
        tracing::warn!(%error, "could not remove a grant's tokens");
    }
    let command_id = Uuid::now_v7();
    let context = CommandContext { command_id, metadata: origin.metadata(actor, command_id) };
    match state.principals.revoke_session(grant.principal_id, grant.principal_id, grant.session_id, why, &context).await
    {
        Ok(Some(done)) => crate::authz_lag::applied(state, done.position).await,
        Ok(None) => {}
        Err(error) => tracing::warn!(%error, "could not revoke a session"),
    }
}

/// Whether session `session_id` of `principal_id` (a grant's) is live in the authorization model. A
/// session this instance has not seen yet (started a moment ago, here or through another instance) is
/// waited for, bounded, before it counts as ended.
async fn session_live(state: &AppState, principal_id: Uuid, session_id: Uuid) -> bool {
    let live = || {
        state.authz.read().map(|model| model.by_token(principal_id, session_id, Utc::now()).is_some()).unwrap_or(false)
    };
    if live() {
        return true;
    }
    if let Ok(Some(head)) = state.store.committed_head().await {
        crate::authz_lag::applied(state, head).await;
    }
    live()
}

/// A replaced refresh token used again: the grant's tokens and its session are revoked (RFC 9700
/// §4.14.2), and the reuse recorded.
async fn reused(state: &AppState, origin: &Origin, grant: &Grant) -> OAuthError {
    let actor = Actor { id: grant.client_id.clone(), kind: eventstore::ActorKind::McpClient };
    end_grant(state, origin, grant, actor.clone(), "refresh token reused").await;
    let command_id = Uuid::now_v7();
    let context = CommandContext { command_id, metadata: origin.metadata(actor, command_id) };
    let event = AuthorizationEvent::RefreshTokenReuseDetected(RefreshTokenReuseDetected {
        client_id: grant.client_id.clone(),
        grant_id: grant.grant_id,
        session_id: grant.session_id,
    });
    record(state, &context, event).await;
    invalid_grant("the refresh token was replaced before; the grant is revoked")
}

/// A code that is not waiting: a replay of one redeemed before (whose session is revoked now: the
/// tokens it produced stop working, C40), or nothing this gateway issued.
async fn replayed_or_unknown(
    state: &AppState,
    origin: &Origin,
    client: &ClientRegistered,
    presented: &str,
) -> OAuthError {
    let Ok(Some(redeemed)) = flow_store::peek::<Redeemed>(&state.tables, Kept::RedeemedCode, presented).await else {
        return invalid_grant("the code is unknown or expired");
    };
    let command_id = Uuid::now_v7();
    let actor = Actor { id: client.client_id.clone(), kind: eventstore::ActorKind::McpClient };
    let context = CommandContext { command_id, metadata: origin.metadata(actor, command_id) };
    let revoked = state
        .principals
        .revoke_session(
            redeemed.principal_id,
            redeemed.principal_id,
            redeemed.session_id,
            "authorization code replayed",
            &context,
        )
        .await;
    match revoked {
        // Answered once this instance refuses what the session holds.
        Ok(Some(done)) => crate::authz_lag::applied(state, done.position).await,
        Ok(None) => {}
        Err(error) => tracing::warn!(%error, "could not revoke a session"),
    }
    let event = AuthorizationEvent::CodeReplayed(AuthorizationCodeReplayed {
        client_id: redeemed.client_id,
        session_id: redeemed.session_id,
        code_digest: hex_digest(presented)[..12].to_owned(),
    });
    // Its own command: the revocation's event ids derive from the other.
    let command_id = Uuid::now_v7();
    let context = CommandContext { command_id, metadata: context.metadata.clone() };
    record(state, &context, event).await;
    invalid_grant("the code was used already; what it produced is revoked")
}
