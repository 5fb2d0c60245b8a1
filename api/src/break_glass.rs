//! Break-glass: an emergency owner credential for when nobody can log in (every identity provider down,
//! the last owner's keys lost). It is made offline (`mcp-gateway admin new-break-glass`), only its
//! SHA-256 is configured, and it works only while break-glass is enabled in the configuration.
//!
//! Every use is recorded before the request is served (no record, no request: it is refused with 503),
//! logged at error level and counted in `mgw_break_glass_uses_total`, which the shipped alert rules page
//! on. A use while it is not enabled is refused and recorded the same way: whoever holds the secret is
//! seen trying. A wrong secret is an ordinary refused credential (recording it would let anybody fill the
//! log).

use axum::http::request::Parts;
use domain::access::{AccessEvent, BreakGlassRefused, BreakGlassUsed, break_glass_principal};
use domain::role::Role;
use projections::authz::{Credential, Principal};
use sha2::Digest;

use crate::auth::Origin;
use crate::problem::Problem;
use crate::state::AppState;

/// The prefix of the break-glass credential (it must not be mistaken for an API key or a token).
pub const PREFIX: &str = "mgwbg_";

/// The longest request line (method and path) an event keeps.
const MAX_REQUEST_CHARS: usize = 300;

/// The configured credential: the SHA-256 of its secret, and whether it may be used now.
#[derive(Clone)]
pub struct BreakGlassConfig {
    /// SHA-256 of the whole credential (prefix included).
    pub sha256: [u8; 32],
    /// Whether it is accepted; when false it is refused (and the attempt recorded).
    pub enabled: bool,
}

impl std::fmt::Debug for BreakGlassConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BreakGlassConfig").field("enabled", &self.enabled).finish_non_exhaustive()
    }
}

impl BreakGlassConfig {
    /// From the hex SHA-256 printed by `admin new-break-glass`.
    pub fn from_hex(sha256: &str, enabled: bool) -> Result<Self, String> {
        let bytes = hex::decode(sha256.trim()).map_err(|_| "the break-glass hash is not hex".to_owned())?;
        let sha256 = bytes.try_into().map_err(|_| "the break-glass hash is not 32 bytes of SHA-256".to_owned())?;
        Ok(Self { sha256, enabled })
    }
}

/// A new credential and the hash to configure; the credential is shown once and kept offline.
pub fn generate() -> (String, String) {
    use base64::Engine as _;
    use rand::Rng as _;
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let credential = format!("{PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret));
    let hash = hex::encode(sha2::Sha256::digest(credential.as_bytes()));
    (credential, hash)
}

/// The owner the credential `presented` acts as, once its use is recorded; or why not.
pub async fn authenticate(state: &AppState, parts: &Parts, presented: &str) -> Result<Principal, Problem> {
    let refused = || Problem::invalid_credential("the break-glass credential is not accepted");
    let Some(config) = &state.break_glass else { return Err(refused()) };
    let digest = sha2::Sha256::digest(presented.as_bytes());
    if !crate::constant_time::equal(digest.as_slice(), &config.sha256) {
        tracing::warn!("a wrong break-glass credential was presented");
        return Err(refused());
    }
    let principal = Principal {
        id: break_glass_principal(),
        display_name: "break-glass".to_owned(),
        roles: vec![Role::Owner],
        key_id: break_glass_principal(),
        scopes: Vec::new(),
        credential: Credential::BreakGlass,
        key_expires_at: None,
        client_id: None,
    };
    // Kept in an event: cleaned and bounded as every text the trail holds.
    let request = domain::text::clean_line(&format!("{} {}", parts.method, parts.uri.path()), MAX_REQUEST_CHARS)
        .unwrap_or_default();
    let origin = Origin::of(parts);
    if !config.enabled {
        metrics::counter!("mgw_break_glass_uses_total", "outcome" => "refused").increment(1);
        tracing::error!(%request, source_ip = ?origin.source_ip, "the break-glass credential was presented while break-glass is not enabled");
        let event = AccessEvent::BreakGlassRefused(BreakGlassRefused {
            request,
            reason: "break-glass is not enabled".to_owned(),
        });
        if let Err(error) = record(state, &principal, &origin, event).await {
            tracing::error!(%error, "could not record a refused break-glass use");
        }
        return Err(Problem::invalid_credential("break-glass is not enabled on this gateway"));
    }
    metrics::counter!("mgw_break_glass_uses_total", "outcome" => "used").increment(1);
    let context = commands::servers::CommandContext {
        command_id: uuid::Uuid::now_v7(),
        metadata: origin.metadata(eventstore::Actor::system("break-glass"), uuid::Uuid::now_v7()),
    };
    state.principals.ensure_break_glass(principal.id, &context).await.map_err(|error| {
        tracing::error!(%error, "could not create the break-glass principal");
        Problem::unavailable("the break-glass principal could not be recorded")
    })?;
    tracing::error!(%request, source_ip = ?origin.source_ip, "the break-glass credential is in use");
    record(state, &principal, &origin, AccessEvent::BreakGlassUsed(BreakGlassUsed { request })).await.map_err(
        |error| {
            tracing::error!(%error, "could not record a break-glass use; refusing it");
            Problem::unavailable("a break-glass use must be recorded first, and the store did not take it")
        },
    )?;
    Ok(principal)
}

async fn record(
    state: &AppState,
    principal: &Principal,
    origin: &Origin,
    event: AccessEvent,
) -> Result<(), eventstore::Error> {
    let caller = crate::auth::Caller(principal.clone(), origin.clone());
    crate::access_log::record(state, &caller, event).await
}
