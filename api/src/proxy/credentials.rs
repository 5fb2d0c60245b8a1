//! The gateway's credentials at each upstream server: none, a bearer token, a custom header, or an OAuth
//! client-credentials token fetched from the server's token endpoint, cached and fetched again before it
//! expires. Secrets are opened from their sealed form only to be sent, and the header values are marked
//! sensitive (never logged by the HTTP stack).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use domain::server::UpstreamAuth;
use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use serde::Deserialize;
use uuid::Uuid;

use super::UpstreamError;

/// A token is fetched again this long before the expiry its endpoint announced.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// The lifetime assumed when the endpoint names none.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// The whole token request, answer included.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest token answer read.
const MAX_TOKEN_ANSWER: usize = 64 * 1024;

/// Client-credentials tokens, per server.
#[derive(Default)]
pub(crate) struct TokenCache {
    tokens: Mutex<HashMap<Uuid, Cached>>,
}

struct Cached {
    /// The sealed secret it was fetched with: a rotated credential is not served a stale token.
    secret: String,
    token: String,
    fetch_again_at: Instant,
}

/// A token endpoint's answer.
#[derive(Deserialize)]
pub(crate) struct TokenAnswer {
    pub(crate) access_token: String,
    #[serde(default)]
    pub(crate) expires_in: Option<u64>,
    #[serde(default)]
    pub(crate) refresh_token: Option<String>,
    #[serde(default)]
    pub(crate) scope: Option<String>,
}

/// Sends a token request and reads its answer (bounded in time and size).
pub(crate) async fn token_request(request: reqwest::RequestBuilder) -> Result<TokenAnswer, UpstreamError> {
    let fetched = tokio::time::timeout(TOKEN_TIMEOUT, async {
        let answer = request
            .send()
            .await
            .map_err(|e| UpstreamError::Credentials(format!("its token endpoint: {}", super::describe(&e))))?;
        if !answer.status().is_success() {
            return Err(UpstreamError::TokenRefused(answer.status().as_u16()));
        }
        super::stream::read_whole(answer, MAX_TOKEN_ANSWER).await
    })
    .await
    .map_err(|_| UpstreamError::Credentials("its token endpoint did not answer in time".into()))??;
    serde_json::from_slice(&fetched)
        .map_err(|_| UpstreamError::Credentials("its token endpoint answered no access_token".into()))
}

/// Opens a sealed secret of server `id` as a header value.
fn header_value(
    state: &crate::state::AppState,
    id: Uuid,
    field: &str,
    sealed: &domain::Sealed,
    prefix: &str,
) -> Result<HeaderValue, UpstreamError> {
    let secret = state.servers.open(id, field, sealed).map_err(|e| UpstreamError::Credentials(e.to_string()))?;
    let mut value = HeaderValue::from_str(&format!("{prefix}{}", secret.expose()))
        .map_err(|_| UpstreamError::Credentials(format!("the {field} is not a valid header value")))?;
    value.set_sensitive(true);
    Ok(value)
}

impl TokenCache {
    /// The header that authenticates the gateway at server `id`, if its mode has one.
    pub(crate) async fn header(
        &self,
        state: &crate::state::AppState,
        http: &reqwest::Client,
        id: Uuid,
        principal: Option<Uuid>,
        auth: &UpstreamAuth,
    ) -> Result<Option<(HeaderName, HeaderValue)>, UpstreamError> {
        match auth {
            // A person's own token; a request on no one's behalf (a health check) goes without.
            UpstreamAuth::OauthPerPerson { .. } => match principal {
                Some(principal) => {
                    Ok(Some((AUTHORIZATION, state.proxy.person_tokens.header(state, http, id, principal, auth).await?)))
                }
                None => Ok(None),
            },
            UpstreamAuth::None => Ok(None),
            UpstreamAuth::Bearer { token } => {
                Ok(Some((AUTHORIZATION, header_value(state, id, "bearer", token, "Bearer ")?)))
            }
            UpstreamAuth::Header { name, value } => {
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| UpstreamError::Credentials(format!("{name:?} is not a header name")))?;
                Ok(Some((name, header_value(state, id, "header", value, "")?)))
            }
            UpstreamAuth::OauthClientCredentials { token_url, client_id, client_secret, scopes } => {
                if let Some(token) = self.cached(id, &client_secret.ciphertext) {
                    return Ok(Some((AUTHORIZATION, bearer(&token)?)));
                }
                let secret = state
                    .servers
                    .open(id, "client_secret", client_secret)
                    .map_err(|e| UpstreamError::Credentials(e.to_string()))?;
                let mut form = vec![("grant_type", "client_credentials".to_owned())];
                if !scopes.is_empty() {
                    form.push(("scope", scopes.join(" ")));
                }
                let request = http.post(token_url.as_str()).basic_auth(client_id, Some(secret.expose())).form(&form);
                let answer = token_request(request).await?;
                let lifetime = answer.expires_in.map_or(DEFAULT_LIFETIME, Duration::from_secs);
                let header = bearer(&answer.access_token)?;
                if let Ok(mut tokens) = self.tokens.lock() {
                    tokens.insert(
                        id,
                        Cached {
                            secret: client_secret.ciphertext.clone(),
                            token: answer.access_token,
                            fetch_again_at: Instant::now() + lifetime.saturating_sub(REFRESH_MARGIN),
                        },
                    );
                }
                Ok(Some((AUTHORIZATION, header)))
            }
        }
    }

    fn cached(&self, id: Uuid, secret: &str) -> Option<String> {
        let tokens = self.tokens.lock().ok()?;
        let cached = tokens.get(&id)?;
        (cached.secret == secret && cached.fetch_again_at > Instant::now()).then(|| cached.token.clone())
    }

    /// Forgets server `id`'s token (the upstream refused it).
    pub(crate) fn forget(&self, id: Uuid) {
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.remove(&id);
        }
    }
}

pub(crate) fn bearer(token: &str) -> Result<HeaderValue, UpstreamError> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
        UpstreamError::Credentials("the token endpoint's access_token is not a valid header value".into())
    })?;
    value.set_sensitive(true);
    Ok(value)
}
