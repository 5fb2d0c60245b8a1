//! Authentication (API keys, for now) and the one authorization question every endpoint asks.

use std::sync::{Arc, RwLock};

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use commands::tokens::TokenError;
use domain::access::{AccessDenied, AccessEvent};
use domain::authz::{Action, Resource, Subject, decide};
use domain::identity::parse_api_key;
use projections::authz::{Authz, Principal};

use crate::problem::Problem;
use crate::state::AppState;

/// The authenticated caller of a request, and where the request came from (recorded with every event
/// it causes: PCI DSS 10.2.2 "origin").
#[derive(Debug, Clone)]
pub struct Caller(pub Principal, pub Origin);

/// Where a request came from.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// The client's address: the socket's peer, or whom a trusted proxy forwarded for.
    pub source_ip: Option<std::net::IpAddr>,
    /// The user agent, cut to the store's limit.
    pub user_agent: Option<String>,
    /// `X-Correlation-Id` when the client sent a UUID, else the request's id.
    pub correlation_id: Option<uuid::Uuid>,
}

impl FromRequestParts<AppState> for Origin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Origin::of(parts))
    }
}

impl Origin {
    pub(crate) fn of(parts: &Parts) -> Self {
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        Self {
            // The address the rate-limiting layer resolved (through trusted proxies); the socket's peer
            // when the request did not pass it.
            source_ip: parts.extensions.get::<crate::client_ip::ClientIp>().map(|c| c.0).or_else(|| {
                parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip())
            }),
            user_agent: header("user-agent").map(|ua| ua.chars().take(eventstore::MAX_USER_AGENT_CHARS).collect()),
            // The client's own, else the request's id (in the response's `X-Request-Id` and the trace).
            correlation_id: header("x-correlation-id")
                .and_then(|v| uuid::Uuid::parse_str(v).ok())
                .or_else(|| header("x-request-id").and_then(|v| uuid::Uuid::parse_str(v).ok())),
        }
    }

    /// Event metadata for `actor`, in a new correlation unless the client named one.
    pub fn metadata(&self, actor: eventstore::Actor, fallback_correlation: uuid::Uuid) -> eventstore::Metadata {
        eventstore::Metadata::new(self.correlation_id.unwrap_or(fallback_correlation), actor, chrono::Utc::now())
            .from_client(self.source_ip, self.user_agent.as_deref())
    }
}

impl Caller {
    /// Allows `action` (on nothing in particular), or answers 403 with the decision's reason; a refusal
    /// is recorded in the audit trail.
    pub async fn authorize(&self, state: &AppState, action: Action, resource: &str) -> Result<(), Problem> {
        self.authorize_on(state, action, Resource::Any, resource).await
    }

    /// Allows `action` on `resource` (named `label` in the audit trail), or answers 403.
    pub async fn authorize_on(
        &self,
        state: &AppState,
        action: Action,
        resource: Resource<'_>,
        label: &str,
    ) -> Result<(), Problem> {
        let subject = Subject { id: self.0.id, roles: &self.0.roles, scopes: &self.0.scopes };
        let decision = decide(&subject, action, resource);
        state.http_metrics.record_decision(decision.allow);
        if decision.allow {
            return Ok(());
        }
        tracing::info!(principal = %self.0.id, ?action, reason = %decision.reason, "access denied");
        let denied = AccessEvent::Denied(AccessDenied {
            principal_id: self.0.id,
            action: action.as_str().to_owned(),
            resource: label.to_owned(),
            reason: decision.reason.clone(),
        });
        if let Err(error) = crate::access_log::record(state, self, denied).await {
            // The refusal stands either way; only its record is missing.
            tracing::warn!(%error, "could not record an access denial");
        }
        Err(Problem::forbidden(decision.reason).recorded())
    }

    /// The actor its events record: a person's session acts as the user; keys and tokens as API clients.
    pub fn actor(&self) -> eventstore::Actor {
        let kind = match self.0.credential {
            projections::authz::Credential::Session | projections::authz::Credential::BreakGlass => {
                eventstore::ActorKind::User
            }
            projections::authz::Credential::ApiKey | projections::authz::Credential::AccessToken => {
                eventstore::ActorKind::ApiKey
            }
        };
        eventstore::Actor { id: self.0.id.to_string(), kind }
    }

    /// The caller as the commands know it: the principal and the credential it acts with (a session, or
    /// an API key; a token stands for the key or session it was minted from).
    pub fn credential(&self) -> commands::principals::Credential {
        commands::principals::Credential { principal: self.0.id, credential: self.0.key_id }
    }

    /// Whether the caller's roles let it manage every server (not only its own).
    pub fn manages_all_servers(&self) -> bool {
        self.0.roles.iter().any(|r| matches!(r, domain::Role::Owner | domain::Role::Admin))
    }
}

/// Reads the credential from `Authorization: Bearer …` (or an API key from `X-API-Key`), and finds its
/// principal: an `mgw_` API key by its digest, anything else as a gateway access token.
async fn authenticate(parts: &Parts, state: &AppState) -> Result<Principal, Problem> {
    let bearer = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    let presented = bearer
        .or_else(|| parts.headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .filter(|presented| !presented.trim().is_empty());
    if let Some(presented) = presented {
        let presented = presented.trim();
        if presented.starts_with(crate::break_glass::PREFIX) {
            return crate::break_glass::authenticate(state, parts, presented).await;
        }
        return authenticate_credential(state, presented).await;
    }
    // A browser's session cookie. A cross-site page can make the browser send it, so a request that
    // changes anything must also carry the session's CSRF token, which such a page cannot read.
    let secret =
        crate::cookies::cookie(&parts.headers, &state.cookies.name("session")).ok_or_else(Problem::unauthenticated)?;
    if !parts.method.is_safe() {
        let sent = parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or_default();
        let expected = crate::cookies::csrf_token(secret);
        if !crate::constant_time::equal(sent.as_bytes(), expected.as_bytes()) {
            return Err(Problem::new(axum::http::StatusCode::FORBIDDEN, "csrf", "CSRF token missing or wrong")
                .detail("send the session's csrf_token as X-CSRF-Token"));
        }
    }
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(secret.as_bytes()))
    };
    let model = state.authz.read().map_err(|_| Problem::internal())?;
    model
        .by_session_secret(&digest, chrono::Utc::now())
        .ok_or_else(|| Problem::invalid_credential("the session has ended; log in again"))
}

/// The principal a presented credential (an API key or an access token) speaks for, now.
pub async fn authenticate_credential(state: &AppState, presented: &str) -> Result<Principal, Problem> {
    let now = chrono::Utc::now();
    if presented.starts_with(domain::identity::API_KEY_PREFIX) {
        let malformed = || Problem::invalid_credential("the API key is malformed");
        let key = parse_api_key(presented).ok_or_else(malformed)?;
        // The model is keyed by the key's SHA-256: the secret itself is never stored or compared.
        let digest = commands::identity::api_key_digest(key);
        let model = state.authz.read().map_err(|_| Problem::internal())?;
        return model
            .by_api_key_digest(&digest, now)
            .ok_or_else(|| Problem::invalid_credential("the API key is unknown, revoked or expired"));
    }
    let claims = verify_token(state, presented, state.tokens.audience()).await?;
    let ended = || Problem::invalid_credential("the access token's session, key or principal is no longer valid");
    let (Ok(principal), Ok(key)) = (uuid::Uuid::parse_str(&claims.sub), uuid::Uuid::parse_str(&claims.sid)) else {
        return Err(ended());
    };
    let scopes: Vec<Action> = claims.scope.split_whitespace().filter_map(|s| s.parse().ok()).collect();
    let model = state.authz.read().map_err(|_| Problem::internal())?;
    let mut found = model.by_token(principal, key, now).ok_or_else(ended)?;
    drop(model);
    // The token's scopes narrow the key's, never widen them (an empty list means "the key's").
    if !scopes.is_empty() {
        if !found.scopes.is_empty() {
            let key_scopes = std::mem::take(&mut found.scopes);
            found.scopes = scopes.into_iter().filter(|s| key_scopes.contains(s)).collect();
            // Nothing in common: nothing allowed (an empty list would mean "unrestricted").
            if found.scopes.is_empty() {
                return Err(Problem::invalid_credential("the token's scopes and its key's have nothing in common"));
            }
        } else {
            found.scopes = scopes;
        }
    }
    Ok(found)
}

/// A gateway access token's claims, verified for `audience` (the REST API's, or an MCP server's
/// resource URL): signature by one of the gateway's keys, issuer, audience, lifetime.
pub(crate) async fn verify_token(
    state: &AppState,
    presented: &str,
    audience: &str,
) -> Result<Arc<commands::tokens::AccessClaims>, Problem> {
    let now = chrono::Utc::now();
    // Keys retired by another instance stop verifying here within a minute.
    if let Err(error) = state.tokens.refresh(std::time::Duration::from_secs(60)).await {
        tracing::warn!(%error, "could not refresh the token signing keys");
    }
    let claims = match state.tokens.verify_cached_for(presented, now, audience) {
        Err(TokenError::UnknownKey(_)) => {
            // Another instance may have rotated the keys: look again (at most once a second).
            if state.tokens.reload_if_stale().await.unwrap_or(false) {
                state.tokens.verify_cached_for(presented, now, audience)
            } else {
                Err(TokenError::UnknownKey(String::new()))
            }
        }
        verified => verified,
    };
    claims.map_err(|error| {
        tracing::debug!(%error, "access token refused");
        Problem::invalid_credential(
            "the access token is malformed, expired, not for this resource, or not signed by this gateway",
        )
    })
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if !state.authz_ready() {
            return Err(Problem::unavailable("the authorization model is still loading"));
        }
        let principal = authenticate(parts, state).await?;
        admit(parts, state, principal)
    }
}

/// The caller `principal` authenticated as, once nothing pending stands against it: a revocation of
/// this principal, key or session may be waiting behind the authorization model's lag, and is then
/// refused rather than decided on old facts (requests whose facts have no change pending are decided as
/// usual). Records the key's use, and leaves the caller where the denial layer finds it.
pub(crate) fn admit(parts: &Parts, state: &AppState, principal: Principal) -> Result<Caller, Problem> {
    let origin = Origin::of(parts);
    // A revocation of this principal, key or session may be waiting behind the lag: refuse rather
    // than decide on old facts. Requests whose facts have no change pending are decided as usual.
    let lagging = state.authz_lag.exceeded().is_some();
    let streams = || {
        [
            format!("{}-{}", domain::identity::PRINCIPAL_CATEGORY, principal.id),
            format!("{}-{}", domain::identity::API_KEY_CATEGORY, principal.key_id),
            format!("{}-{}", domain::identity::SESSION_CATEGORY, principal.key_id),
        ]
    };
    if let Some(behind) = lagging.then(|| state.authz_lag.refuses(&streams())).flatten() {
        return Err(Problem::unavailable(format!(
            "the authorization model is {} ms behind the event store (bound {} ms), with a change to this \
             caller not applied yet",
            behind.as_millis(),
            state.authz_lag.bound().as_millis()
        )));
    }
    if let Some(group) = crate::rate_limit::RouteGroup::of(parts.uri.path())
        && let Err(limited) = state.rate_limits.admit_principal(group, principal.id)
    {
        return Err(crate::rate_limit::too_many_problem(limited, "too many requests by this principal"));
    }
    // An API key's last use, whether it was presented or a token minted from it.
    if matches!(
        principal.credential,
        projections::authz::Credential::ApiKey | projections::authz::Credential::AccessToken
    ) {
        state.key_usage.used(&state.tables, principal.key_id);
    }
    let caller = Caller(principal, origin);
    if let Some(slot) = parts.extensions.get::<crate::denials::CallerSlot>() {
        slot.fill(&caller);
    }
    Ok(caller)
}

/// The shared authorization model.
pub type SharedAuthz = Arc<RwLock<Authz>>;
