//! Each person's own token at servers that act on their account (`oauth_per_person`): read from the
//! person's connection (sealed in the log), cached per instance, refreshed at the server's token
//! endpoint shortly before it expires (the refresh recorded with the revision read, so that of two
//! instances refreshing at once one wins and the other uses the winner's tokens). No connection, or one
//! the authorization server no longer refreshes: the person must connect (again).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use commands::Secret;
use commands::connections::{Held, TokenSet};
use domain::server::UpstreamAuth;
use reqwest::header::HeaderValue;
use uuid::Uuid;

use super::UpstreamError;
use super::credentials::{TokenAnswer, bearer, token_request};

/// The longest scope kept from a token answer, in characters.
const MAX_SCOPE_CHARS: usize = 1_000;
/// A token is refreshed this long before the expiry its server announced.
const REFRESH_MARGIN: Duration = Duration::from_secs(5);
/// A cached token is read from the connection again after this long at most: another instance's
/// disconnection or reconnection (another account) is seen within it.
const CACHE_FOR: Duration = Duration::from_secs(30);

/// A person at a server: `(principal, server)`.
type Connection = (Uuid, Uuid);

/// Tokens in use, per person and server.
#[derive(Default)]
pub(crate) struct PersonTokens {
    cached: Mutex<HashMap<Connection, Cached>>,
    /// Connections whose access token the server refused: refreshed before the next use.
    refused: Mutex<std::collections::HashSet<Connection>>,
    /// One refresh at a time per connection on this instance: a rotating authorization server takes a
    /// refresh token used twice for a replay and revokes the grant.
    refreshing: Mutex<HashMap<Connection, Arc<tokio::sync::Mutex<()>>>>,
}

#[derive(Clone)]
struct Cached {
    token: String,
    use_until: chrono::DateTime<Utc>,
}

/// Until when `tokens`' access token may be used without looking again: before its expiry (less the
/// margin), and for [`CACHE_FOR`] at most.
fn use_until(tokens: &TokenSet) -> chrono::DateTime<Utc> {
    let cap = Utc::now() + chrono::Duration::from_std(CACHE_FOR).unwrap_or_default();
    match tokens.expires_at {
        Some(at) => cap.min(at - chrono::Duration::from_std(REFRESH_MARGIN).unwrap_or_default()),
        None => cap,
    }
}

/// True when the access token must be refreshed before use.
fn expiring(tokens: &TokenSet) -> bool {
    tokens
        .expires_at
        .is_some_and(|at| Utc::now() >= at - chrono::Duration::from_std(REFRESH_MARGIN).unwrap_or_default())
}

impl PersonTokens {
    /// `principal`'s bearer header at server `id`.
    pub(crate) async fn header(
        &self,
        state: &crate::state::AppState,
        http: &reqwest::Client,
        id: Uuid,
        principal: Uuid,
        auth: &UpstreamAuth,
    ) -> Result<HeaderValue, UpstreamError> {
        let key = (principal, id);
        let cached = self.cached.lock().ok().and_then(|c| c.get(&key).cloned());
        if let Some(cached) = cached.filter(|c| Utc::now() < c.use_until) {
            return bearer(&cached.token);
        }
        let unreadable = |e: commands::CommandError| UpstreamError::Credentials(format!("your connection: {e}"));
        let read = || async { state.connections.held(principal, id).await.map_err(unreadable) };
        let mut held = read().await?.ok_or(UpstreamError::ConnectRequired)?;
        let refused = self.refused.lock().is_ok_and(|r| r.contains(&key));
        if refused || expiring(&held.tokens) {
            let lock = self.refreshing.lock().map(|mut r| r.entry(key).or_default().clone()).ok();
            let _one_at_a_time = match &lock {
                Some(lock) => Some(lock.lock().await),
                None => None,
            };
            // Another request may have refreshed while this one waited: read again.
            let current = read().await?.ok_or(UpstreamError::ConnectRequired)?;
            let moved = current.revision != held.revision;
            held = current;
            if !moved || expiring(&held.tokens) {
                held = self.refresh(state, http, id, principal, auth, held).await?;
            }
            if let Ok(mut refused) = self.refused.lock() {
                refused.remove(&key);
            }
        }
        let token = held.tokens.access_token.expose().to_owned();
        if let Ok(mut cached) = self.cached.lock() {
            cached.insert(key, Cached { token: token.clone(), use_until: use_until(&held.tokens) });
        }
        bearer(&token)
    }

    /// Forgets what this instance knows of `principal`'s tokens at server `id` (a connection made or
    /// ended).
    pub(crate) fn forget(&self, id: Uuid, principal: Uuid) {
        if let Ok(mut cached) = self.cached.lock() {
            cached.remove(&(principal, id));
        }
        if let Ok(mut refused) = self.refused.lock() {
            refused.remove(&(principal, id));
        }
    }

    /// The server refused `principal`'s token: the next request refreshes it (and, if the authorization
    /// server refuses that, asks the person to connect again) rather than sending it again.
    pub(crate) fn refused(&self, id: Uuid, principal: Uuid) {
        if let Ok(mut cached) = self.cached.lock() {
            cached.remove(&(principal, id));
        }
        if let Ok(mut refused) = self.refused.lock() {
            refused.insert((principal, id));
        }
    }

    async fn refresh(
        &self,
        state: &crate::state::AppState,
        http: &reqwest::Client,
        id: Uuid,
        principal: Uuid,
        auth: &UpstreamAuth,
        held: Held,
    ) -> Result<Held, UpstreamError> {
        let UpstreamAuth::OauthPerPerson { token_url, client_id, client_secret, .. } = auth else {
            return Err(UpstreamError::Credentials("the server does not act on people's accounts".into()));
        };
        let Some(refresh_token) = held.tokens.refresh_token.clone() else {
            return Err(UpstreamError::ConnectRequired);
        };
        let form =
            vec![("grant_type", "refresh_token".to_owned()), ("refresh_token", refresh_token.expose().to_owned())];
        let request = client_request(state, http, id, token_url.as_str(), client_id, client_secret.as_ref(), form)?;
        let answer = match token_request(request).await {
            Ok(answer) => answer,
            // Refused (expired, revoked): only a new connection helps.
            Err(UpstreamError::Credentials(why)) if why.contains("refused") => {
                return Err(UpstreamError::ConnectRequired);
            }
            Err(error) => return Err(error),
        };
        let tokens = token_set(answer, Some(refresh_token));
        let command_id = Uuid::now_v7();
        let metadata = eventstore::Metadata::new(command_id, eventstore::Actor::system("token-refresh"), Utc::now());
        let context = commands::servers::CommandContext { command_id, metadata };
        let stored = state.connections.refreshed(principal, id, held.revision, &tokens, &context).await;
        match stored {
            Ok(true) => Ok(Held { tokens, revision: held.revision + 1 }),
            // Another instance refreshed first: its tokens are the current ones.
            Ok(false) => state
                .connections
                .held(principal, id)
                .await
                .map_err(|e| UpstreamError::Credentials(format!("your connection: {e}")))?
                .ok_or(UpstreamError::ConnectRequired),
            Err(e) => Err(UpstreamError::Credentials(format!("recording your refreshed token: {e}"))),
        }
    }
}

/// A token request authenticated as the gateway's client at a per-person server: Basic with its
/// secret, or its id in the form for a public client.
pub(crate) fn client_request(
    state: &crate::state::AppState,
    http: &reqwest::Client,
    id: Uuid,
    token_url: &str,
    client_id: &str,
    client_secret: Option<&domain::Sealed>,
    mut form: Vec<(&'static str, String)>,
) -> Result<reqwest::RequestBuilder, UpstreamError> {
    let request = http.post(token_url);
    Ok(match client_secret {
        Some(sealed) => {
            let secret = state
                .servers
                .open(id, "client_secret", sealed)
                .map_err(|e| UpstreamError::Credentials(e.to_string()))?;
            request.basic_auth(client_id, Some(secret.expose())).form(&form)
        }
        None => {
            form.push(("client_id", client_id.to_owned()));
            request.form(&form)
        }
    })
}

/// The tokens of a token endpoint's answer; a refresh token not rotated stays the one used.
pub(crate) fn token_set(answer: TokenAnswer, previous_refresh: Option<Secret>) -> TokenSet {
    TokenSet {
        access_token: Secret::new(answer.access_token),
        refresh_token: answer.refresh_token.map(Secret::new).or(previous_refresh),
        expires_at: answer.expires_in.map(|s| Utc::now() + chrono::Duration::seconds(s.min(i64::MAX as u64) as i64)),
        // The authorization server's words reach events and the audit trail: as a line, bounded.
        scope: answer.scope.and_then(|scope| domain::text::clean_line(&scope, MAX_SCOPE_CHARS)),
    }
}
