//! The gateway's own access tokens: JWTs (`typ: at+jwt`, RFC 9068) signed with Ed25519 keys that the
//! gateway creates, seals and rotates as events on `system-signingkeys`, and publishes as a JWKS.
//!
//! Verification takes nothing from the token on trust that a forger could choose: the algorithm is
//! fixed (EdDSA), the key is looked up by `kid` among the gateway's own, and `iss`, `aud`, `exp`,
//! `nbf` and `typ` must all match. Whether the principal, its roles and the token's `sid` are still
//! good is the authorization model's question, asked on every request.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration as StdDuration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use domain::identity::{IdentityEvent, SIGNING_KEYS_STREAM, SigningKeyCreated, SigningKeyRetired};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use eventstore::{Direction, EventData, EventStore, ExpectedRevision, StreamCursor, StreamName};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::servers::CommandContext;
use crate::{CommandError, Keyring, Secret};

/// The longest life of an access token.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::minutes(15);
/// The media type of access tokens (RFC 9068 §2.1); `typ` must say it.
const ACCESS_TOKEN_TYPE: &str = "at+jwt";
/// How many keys verify at once: the active one and the one before it, so that tokens signed just before
/// a rotation stay good until they expire.
const KEYS_KEPT: usize = 2;
/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 5;
/// Verified tokens kept (by SHA-256) so that a token's signature is checked once, not per request. Past
/// this many, expired entries are dropped, then everything if that was not enough.
const CACHE_ENTRIES: usize = 100_000;
/// Reloading the keys on an unknown `kid` happens at most this often (a flood of forged kids must not
/// become a flood of reads).
const RELOAD_EVERY: StdDuration = StdDuration::from_secs(1);

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The gateway.
    pub iss: String,
    /// The principal.
    pub sub: String,
    /// The API the token is for.
    pub aud: String,
    /// Expiry (seconds since the epoch).
    pub exp: i64,
    /// Not before.
    pub nbf: i64,
    /// Issued at.
    pub iat: i64,
    /// Token id.
    pub jti: String,
    /// The session or API key the token was issued under: revoking it revokes the token.
    pub sid: String,
    /// Space-separated actions (empty: whatever the principal's roles allow).
    pub scope: String,
    /// The OAuth client the token was issued to (tokens of the REST API have none): revoking the
    /// client revokes its tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// Why a token was refused. Callers answer 401 for all of them alike.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT, a wrong `typ` or algorithm, a bad signature, wrong claims, expired, not yet valid.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// Signed with a key id the gateway does not have (reload and try once more).
    #[error("unknown signing key {0}")]
    UnknownKey(String),
}

/// A verified token's claims and the `kid` that signed it.
type Verified = (Arc<AccessClaims>, String);

struct KeySet {
    /// The newest key signs.
    active: Option<(String, EncodingKey)>,
    /// When the signing key was created (its age decides its rotation).
    active_since: Option<DateTime<Utc>>,
    /// Every key that verifies, by kid, with its public key (base64url).
    verifying: BTreeMap<String, (DecodingKey, String)>,
    revision: Option<u64>,
    loaded_at: Option<Instant>,
}

/// Issues and verifies access tokens.
pub struct TokenService {
    store: Arc<dyn EventStore>,
    keyring: Arc<Keyring>,
    issuer: String,
    audience: String,
    keys: RwLock<KeySet>,
    /// SHA-256 of a verified token → its claims. Only what the signature proved is cached: whether the
    /// principal and the token's key are still good is asked on every request all the same.
    verified: RwLock<std::collections::HashMap<[u8; 32], Verified>>,
}

impl std::fmt::Debug for TokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenService").field("issuer", &self.issuer).field("audience", &self.audience).finish()
    }
}

fn invalid(field: &'static str, message: impl std::fmt::Display) -> CommandError {
    CommandError::Invalid { field, message: message.to_string() }
}

fn keys_stream() -> Result<StreamName, CommandError> {
    StreamName::parse(SIGNING_KEYS_STREAM).map_err(|e| invalid("id", e))
}

fn seal_context(kid: &str) -> String {
    format!("signing-key:{kid}")
}

impl TokenService {
    /// The service for tokens issued by `issuer` for `audience`. Call [`TokenService::start`] before use.
    pub fn new(store: Arc<dyn EventStore>, keyring: Arc<Keyring>, issuer: String, audience: String) -> Self {
        let keys =
            KeySet { active: None, active_since: None, verifying: BTreeMap::new(), revision: None, loaded_at: None };
        Self { store, keyring, issuer, audience, keys: RwLock::new(keys), verified: RwLock::default() }
    }

    /// The REST API's audience (`aud` of the tokens `issue` mints).
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The issuer (`iss`).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Loads the keys, creates the first one if there is none, and signs and verifies a token (a start-up
    /// self-test: a wrong crypto backend or a key that does not open fails here, not at the first login).
    pub async fn start(&self, context: &CommandContext) -> Result<(), CommandError> {
        self.reload().await?;
        if self.read_keys()?.active.is_none() {
            match self.create_key(context).await {
                Ok(()) => {}
                // Another instance created it first: use that one.
                Err(CommandError::Store(e)) if e.is_conflict() => {}
                Err(e) => return Err(e),
            }
            self.reload().await?;
        }
        let probe = self.issue(Uuid::nil(), "self-test", &[], Duration::seconds(60), Utc::now())?;
        self.verify(probe.expose()).map_err(|e| invalid("signing_key", format!("self-test failed: {e}")))?;
        Ok(())
    }

    fn read_keys(&self) -> Result<std::sync::RwLockReadGuard<'_, KeySet>, CommandError> {
        self.keys.read().map_err(|_| invalid("signing_key", "the key set lock is poisoned"))
    }

    /// Reads the keys from their stream.
    pub async fn reload(&self) -> Result<(), CommandError> {
        let stream = keys_stream()?;
        let mut created: Vec<(SigningKeyCreated, DateTime<Utc>)> = Vec::new();
        let mut revision = None;
        let mut cursor = StreamCursor::Start;
        loop {
            let page = self.store.read_stream(&stream, Direction::Forwards, cursor, 100).await?;
            for event in &page {
                revision = Some(event.revision);
                match IdentityEvent::from_json(&event.event_type, &event.data).and_then(Result::ok) {
                    Some(IdentityEvent::SigningKeyCreated(key)) => created.push((key, event.metadata.occurred_at)),
                    Some(IdentityEvent::SigningKeyRetired(SigningKeyRetired { kid })) => {
                        created.retain(|(k, _)| k.kid != kid)
                    }
                    _ => return Err(CommandError::Corrupt(event.event_id.to_string())),
                }
            }
            match (page.len() == 100, revision) {
                (true, Some(last)) => cursor = StreamCursor::Revision(last + 1),
                _ => break,
            }
        }
        let mut verifying = BTreeMap::new();
        for (key, _) in &created {
            let decoding = DecodingKey::from_ed_components(&key.public_key).map_err(|e| invalid("signing_key", e))?;
            verifying.insert(key.kid.clone(), (decoding, key.public_key.clone()));
        }
        let active_since = created.last().map(|(_, at)| *at);
        let active = match created.last().map(|(key, _)| key) {
            Some(key) => {
                let seed = self.keyring.open(&key.private_key, &seal_context(&key.kid))?;
                let seed = URL_SAFE_NO_PAD.decode(seed.expose()).map_err(|e| invalid("signing_key", e))?;
                let seed: [u8; 32] = seed.try_into().map_err(|_| invalid("signing_key", "not 32 bytes"))?;
                let der = SigningKey::from_bytes(&seed).to_pkcs8_der().map_err(|e| invalid("signing_key", e))?;
                Some((key.kid.clone(), EncodingKey::from_ed_der(der.as_bytes())))
            }
            None => None,
        };
        let mut keys = self.keys.write().map_err(|_| invalid("signing_key", "the key set lock is poisoned"))?;
        *keys = KeySet { active, active_since, verifying, revision, loaded_at: Some(Instant::now()) };
        // A retired key's tokens must not live on in the cache.
        if let Ok(mut verified) = self.verified.write() {
            verified.clear();
        }
        Ok(())
    }

    /// The signing key's id and when it was created (None before [`TokenService::start`]).
    pub fn active_key(&self) -> Option<(String, DateTime<Utc>)> {
        let keys = self.keys.read().ok()?;
        Some((keys.active.as_ref()?.0.clone(), keys.active_since?))
    }

    /// Reloads the keys when they were loaded more than `max_age` ago: another instance's rotation retires
    /// keys here too, within that time.
    pub async fn refresh(&self, max_age: StdDuration) -> Result<(), CommandError> {
        if self.read_keys()?.loaded_at.is_none_or(|at| at.elapsed() >= max_age) {
            self.reload().await?;
        }
        Ok(())
    }

    /// Reloads the keys unless that was done less than a second ago; true when it reloaded.
    pub async fn reload_if_stale(&self) -> Result<bool, CommandError> {
        if self.read_keys()?.loaded_at.is_some_and(|at| at.elapsed() < RELOAD_EVERY) {
            return Ok(false);
        }
        self.reload().await?;
        Ok(true)
    }

    async fn create_key(&self, context: &CommandContext) -> Result<(), CommandError> {
        use rand::Rng;
        let revision = self.read_keys()?.revision;
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        let public_key = URL_SAFE_NO_PAD.encode(SigningKey::from_bytes(&seed).verifying_key().to_bytes());
        let kid = format!("gw-{}", Uuid::now_v7().simple());
        let private_key = self.keyring.seal(&Secret::new(URL_SAFE_NO_PAD.encode(seed)), &seal_context(&kid))?;
        let mut events = vec![IdentityEvent::SigningKeyCreated(SigningKeyCreated { kid, public_key, private_key })];
        // Keep the new key and the one before it; older keys stop verifying.
        let kept = self.read_keys()?.verifying.keys().cloned().collect::<Vec<_>>();
        let retire = kept.len().saturating_sub(KEYS_KEPT - 1);
        events.extend(
            kept.into_iter().take(retire).map(|kid| IdentityEvent::SigningKeyRetired(SigningKeyRetired { kid })),
        );
        let data = events
            .iter()
            .enumerate()
            .map(|(i, event)| {
                Ok(EventData {
                    event_id: EventData::deterministic_id(context.command_id, i as u32),
                    event_type: event.event_type().to_owned(),
                    schema_version: 1,
                    data: event.to_json().map_err(|e| invalid("event", e))?,
                    metadata: context.metadata.clone(),
                })
            })
            .collect::<Result<Vec<_>, CommandError>>()?;
        let expected = revision.map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact);
        self.store.append(&keys_stream()?, expected, data).await?;
        Ok(())
    }

    /// Creates a new signing key, which signs from now on; the previous key still verifies (tokens it
    /// signed live at most [`MAX_TOKEN_LIFETIME`]), older ones are retired.
    pub async fn rotate(&self, context: &CommandContext) -> Result<(), CommandError> {
        self.reload().await?;
        self.create_key(context).await?;
        self.reload().await
    }

    /// An access token for `principal`, under session or key `sid`, limited to `scopes`, for `lifetime`
    /// (at most [`MAX_TOKEN_LIFETIME`]).
    pub fn issue(
        &self,
        principal: Uuid,
        sid: &str,
        scopes: &[String],
        lifetime: Duration,
        now: DateTime<Utc>,
    ) -> Result<Secret, CommandError> {
        self.issue_for(&self.audience, principal, sid, scopes, lifetime, now)
    }

    /// [`issue`](Self::issue) for another audience: an MCP server's resource URL (RFC 8707), whose
    /// tokens no other resource, and not the REST API, accepts.
    pub fn issue_for(
        &self,
        audience: &str,
        principal: Uuid,
        sid: &str,
        scopes: &[String],
        lifetime: Duration,
        now: DateTime<Utc>,
    ) -> Result<Secret, CommandError> {
        self.issue_identified_for(audience, None, principal, sid, scopes, lifetime, now).map(|(token, _)| token)
    }

    /// [`issue_for`](Self::issue_for), also returning the token's id (`jti`), for the records that name
    /// a token without holding it.
    #[allow(clippy::too_many_arguments)]
    pub fn issue_identified_for(
        &self,
        audience: &str,
        client_id: Option<&str>,
        principal: Uuid,
        sid: &str,
        scopes: &[String],
        lifetime: Duration,
        now: DateTime<Utc>,
    ) -> Result<(Secret, String), CommandError> {
        let lifetime = lifetime.min(MAX_TOKEN_LIFETIME);
        let jti = Uuid::now_v7().to_string();
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub: principal.to_string(),
            aud: audience.to_owned(),
            exp: (now + lifetime).timestamp(),
            nbf: now.timestamp(),
            iat: now.timestamp(),
            jti: jti.clone(),
            sid: sid.to_owned(),
            scope: scopes.join(" "),
            client_id: client_id.map(str::to_owned),
        };
        Ok((self.sign(&claims)?, jti))
    }

    /// Signs `claims` as they are with the active key (tests use it to forge tokens with bad claims).
    pub fn sign(&self, claims: &AccessClaims) -> Result<Secret, CommandError> {
        self.sign_as(ACCESS_TOKEN_TYPE, claims)
    }

    /// Signs `claims` with the active key under header `typ` (empty: none). Only access tokens are
    /// accepted; tests use this to prove that other types are refused.
    pub fn sign_as(&self, typ: &str, claims: &AccessClaims) -> Result<Secret, CommandError> {
        let keys = self.read_keys()?;
        let (kid, key) = keys.active.as_ref().ok_or_else(|| invalid("signing_key", "no signing key loaded"))?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = (!typ.is_empty()).then(|| typ.to_owned());
        header.kid = Some(kid.clone());
        jsonwebtoken::encode(&header, claims, key).map(Secret::new).map_err(|e| invalid("token", e))
    }

    /// [`verify`](Self::verify), remembering the result: a token seen before and not expired at `now`
    /// costs a hash and a lookup.
    pub fn verify_cached(&self, token: &str, now: DateTime<Utc>) -> Result<Arc<AccessClaims>, TokenError> {
        self.verify_cached_for(token, now, &self.audience)
    }

    /// [`verify_cached`](Self::verify_cached) for tokens of `audience`.
    pub fn verify_cached_for(
        &self,
        token: &str,
        now: DateTime<Utc>,
        audience: &str,
    ) -> Result<Arc<AccessClaims>, TokenError> {
        use sha2::Digest;
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let now = now.timestamp();
        if let Some((claims, kid)) = self.verified.read().ok().and_then(|v| v.get(&digest).cloned()) {
            // The same leeway as a fresh verification, and the signing key must still verify (a key
            // retired after the token was cached takes the token with it).
            let key_kept = self.keys.read().is_ok_and(|k| k.verifying.contains_key(&kid));
            if claims.exp + LEEWAY_SECONDS as i64 > now && key_kept {
                // Verified once for its own audience: another audience is refused as a fresh
                // verification would refuse it.
                if claims.aud != audience {
                    return Err(TokenError::Invalid("the token is for another audience".into()));
                }
                return Ok(claims);
            }
        }
        let kid = jsonwebtoken::decode_header(token).ok().and_then(|h| h.kid).unwrap_or_default();
        let claims = Arc::new(self.verify_for(token, audience)?);
        if let Ok(mut verified) = self.verified.write() {
            if verified.len() >= CACHE_ENTRIES {
                verified.retain(|_, (c, _)| c.exp > now);
                if verified.len() >= CACHE_ENTRIES {
                    verified.clear();
                }
            }
            verified.insert(digest, (claims.clone(), kid));
        }
        Ok(claims)
    }

    /// Verifies a token's header, signature and claims, for the REST API.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        self.verify_for(token, &self.audience)
    }

    /// Verifies a token of this gateway for one of its MCP servers, whichever (for revocation, where the
    /// token itself says which).
    pub fn verify_any_resource(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let unverified: AccessClaims =
            jsonwebtoken::dangerous::insecure_decode_claims(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
        let audience = Some(unverified.aud)
            .filter(|aud| aud.starts_with(&format!("{}/servers/", self.issuer)) || *aud == self.issuer)
            .ok_or_else(|| TokenError::Invalid("not a token for an MCP server".into()))?;
        // The audience read above is only a guess until the signature and claims verify for it.
        self.verify_for(token, &audience)
    }

    /// Verifies a token's header, signature and claims, for `audience`.
    pub fn verify_for(&self, token: &str, audience: &str) -> Result<AccessClaims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
        let typ = header.typ.as_deref().unwrap_or_default().to_ascii_lowercase();
        if typ != ACCESS_TOKEN_TYPE && typ != "application/at+jwt" {
            return Err(TokenError::Invalid(format!("typ {typ:?} is not an access token")));
        }
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Invalid(format!("algorithm {:?} is not accepted", header.alg)));
        }
        let kid = header.kid.ok_or_else(|| TokenError::Invalid("no kid".into()))?;
        let keys = self.keys.read().map_err(|_| TokenError::Invalid("key set unavailable".into()))?;
        let (key, _) = keys.verifying.get(&kid).ok_or_else(|| TokenError::UnknownKey(kid.clone()))?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<AccessClaims>(token, key, &validation)
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        // The cap holds at verification too: a token that claims a longer life was not issued by this
        // gateway's rules (a leaked signing key, a bug), and must not outlive what they allow.
        let cap = MAX_TOKEN_LIFETIME.num_seconds() + LEEWAY_SECONDS as i64;
        let claims = data.claims;
        if claims.exp - claims.iat.max(claims.nbf) > cap || claims.exp > Utc::now().timestamp() + cap {
            return Err(TokenError::Invalid(format!(
                "a lifetime beyond {} minutes is never issued",
                MAX_TOKEN_LIFETIME.num_minutes()
            )));
        }
        Ok(claims)
    }

    /// The public keys as a JWKS document (RFC 7517).
    pub fn jwks(&self) -> serde_json::Value {
        let keys = self.keys.read().map(|k| {
            k.verifying
                .iter()
                .map(|(kid, (_, x))| {
                    serde_json::json!({ "kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "use": "sig", "alg": "EdDSA" })
                })
                .collect::<Vec<_>>()
        });
        serde_json::json!({ "keys": keys.unwrap_or_default() })
    }
}
