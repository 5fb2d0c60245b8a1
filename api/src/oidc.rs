//! Upstream identity providers: discovery (cached), the authorization code flow with PKCE and nonce, and
//! ID token verification, with the `openidconnect` crate over a `reqwest` client that never follows
//! redirects.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use domain::identity::{RoleRule, RoleRuleError, check_rules};
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType, CoreGenderClaim, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreRevocableToken,
    CoreRevocationErrorResponse, CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AuthorizationCode, Client, ClientId, ClientSecret, CsrfToken, EmptyExtraTokenFields,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, IdTokenFields, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, StandardErrorResponse, StandardTokenResponse,
    TokenResponse,
};
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;

/// How long discovery (metadata and keys) is trusted before it is fetched again.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);

/// A configured identity provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdpConfig {
    /// Its name in URLs (`/auth/<name>/login`) and in events.
    pub name: String,
    /// The issuer URL (discovery is at `<issuer>/.well-known/openid-configuration`).
    pub issuer: String,
    /// The gateway's client id there.
    pub client_id: String,
    /// The client secret.
    pub client_secret: String,
    /// Scopes to ask for (besides `openid` at an OpenID provider) [default: `email profile`; GitHub:
    /// `read:user`, and `read:org` when organisations are allowed or groups mapped].
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// Ordered role rules over the claims.
    #[serde(default)]
    pub role_rules: Vec<RoleRule>,
    /// What kind of IdP it is: its own rules for who may log in and what identifies them.
    #[serde(default)]
    pub kind: IdpKind,
}

/// The kinds of identity provider, each with its admission rules.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum IdpKind {
    /// Any OpenID provider: people are keyed by `iss` and `sub`.
    #[default]
    Oidc,
    /// Entra ID (Azure AD): people are keyed by tenant and object id (`tid`, `oid`), which stay the
    /// same across applications, and only the listed tenants get in (empty: the issuer's own tenant, as
    /// the issuer check already ensures for a single-tenant app).
    Entra {
        /// Tenant ids (`tid`) allowed to log in.
        #[serde(default)]
        allowed_tenants: Vec<String>,
    },
    /// Google: only accounts of the given Workspace domain (`hd`) get in (a personal Gmail account has
    /// no `hd`).
    Google {
        /// The required hosted domain.
        hosted_domain: String,
    },
    /// GitHub (an OAuth app, not an OpenID provider): `issuer` is `https://github.com` or a GitHub
    /// Enterprise Server's URL; people are keyed by their numeric account id, and their organisations
    /// and teams (`org`, `org/team`) are the `groups` role rules read.
    Github {
        /// The REST API [default: `https://api.github.com`, or `<issuer>/api/v3` for an Enterprise
        /// Server].
        #[serde(default)]
        api_url: Option<String>,
        /// Organisations whose members may log in (empty: any account).
        #[serde(default)]
        allowed_organizations: Vec<String>,
    },
}

/// What stands for the tenant in the issuer of Entra's multi-tenant endpoints (`/organizations`,
/// `/common`): each ID token's `iss` names its tenant there.
const TENANT_PLACEHOLDER: &str = "{tenantid}";

/// Path segments of Entra's multi-tenant endpoints.
const MULTI_TENANT_SEGMENTS: [&str; 3] = ["organizations", "common", "consumers"];

impl IdpConfig {
    /// The scopes a login asks for.
    pub fn scopes(&self) -> Vec<String> {
        if let Some(scopes) = &self.scopes {
            return scopes.clone();
        }
        match &self.kind {
            IdpKind::Github { allowed_organizations, .. } => {
                let mut scopes = vec!["read:user".to_owned()];
                if self.github_groups_needed(allowed_organizations) {
                    scopes.push("read:org".to_owned());
                }
                scopes
            }
            _ => vec!["email".into(), "profile".into()],
        }
    }

    /// Whether GitHub's organisations and teams must be read: to admit by organisation or to map groups.
    fn github_groups_needed(&self, allowed_organizations: &[String]) -> bool {
        !allowed_organizations.is_empty()
            || self.role_rules.iter().any(|r| r.source == domain::identity::ClaimSource::Groups)
    }

    /// Whether the configured issuer is one of Entra's multi-tenant endpoints.
    fn multi_tenant_endpoint(&self) -> bool {
        let path = self.issuer.split("://").nth(1).and_then(|rest| rest.split_once('/')).map(|(_, path)| path);
        path.is_some_and(|path| {
            path.split('/').any(|segment| {
                MULTI_TENANT_SEGMENTS.iter().any(|m| m.eq_ignore_ascii_case(segment))
                    || segment.contains(TENANT_PLACEHOLDER)
            })
        })
    }
}

/// Every claim the ID token carries beyond the standard ones (`roles`, `groups`, `wids`, `tid`, `oid`,
/// `_claim_names`, …), for the role rules.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExtraClaims {
    #[serde(flatten)]
    claims: serde_json::Map<String, serde_json::Value>,
}

impl AdditionalClaims for ExtraClaims {}

type IdTokenExtra = IdTokenFields<
    ExtraClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type OidcTokenResponse = StandardTokenResponse<IdTokenExtra, CoreTokenType>;
type OidcClient = Client<
    ExtraClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    OidcTokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Why a login step failed.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// No IdP of that name is configured.
    #[error("no identity provider named {0}")]
    UnknownIdp(String),
    /// The configuration is wrong.
    #[error("identity provider {idp}: {reason}")]
    Config {
        /// The IdP.
        idp: String,
        /// What is wrong.
        reason: String,
    },
    /// The IdP could not be reached or answered wrongly.
    #[error("identity provider {idp}: {reason}")]
    Upstream {
        /// The IdP.
        idp: String,
        /// What happened.
        reason: String,
    },
    /// The IdP refused the code (used, expired, or not this client's).
    #[error("the identity provider refused the code: {0}")]
    Refused(String),
    /// The person is not admitted by this IdP's rules (another tenant or domain, a claim missing).
    #[error("not admitted: {0}")]
    NotAdmitted(String),
    /// The ID token did not verify (signature, issuer, audience, expiry, nonce).
    #[error("the ID token did not verify: {0}")]
    InvalidIdToken(String),
}

/// What a verified login says about the person.
#[derive(Debug, Clone)]
pub struct VerifiedLogin {
    /// The issuer.
    pub issuer: String,
    /// The subject.
    pub subject: String,
    /// A name to show.
    pub display_name: String,
    /// The email, if reported.
    pub email: Option<String>,
    /// `amr`.
    pub amr: Vec<String>,
    /// Every claim, for the role rules.
    pub claims: serde_json::Value,
    /// What renews the sign-in at the IdP, when it issued a refresh token.
    pub renewal: Option<UpstreamRenewal>,
}

/// The IdP's refresh token for a sign-in, and when the access token issued with it expires: the gateway
/// asks the IdP again past that time, so that a person the IdP no longer admits loses what the gateway
/// granted on that sign-in.
#[derive(Debug, Clone)]
pub struct UpstreamRenewal {
    /// The refresh token (never printed).
    pub refresh_token: commands::Secret,
    /// When the IdP's access token of this sign-in expires, if it said.
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl UpstreamRenewal {
    fn of(
        refresh_token: Option<&openidconnect::RefreshToken>,
        expires_in: Option<Duration>,
        before: Option<&str>,
    ) -> Option<Self> {
        let refresh_token = refresh_token.map(|t| t.secret().clone()).or_else(|| before.map(str::to_owned))?;
        // An IdP that does not say how long its token lives is asked again within the hour, as is one
        // whose tokens live longer.
        let lifetime =
            expires_in.and_then(|d| chrono::Duration::from_std(d).ok()).unwrap_or(chrono::Duration::hours(1));
        let expires_at = Some(chrono::Utc::now() + lifetime.min(chrono::Duration::hours(1)));
        Some(Self { refresh_token: commands::Secret::new(refresh_token), expires_at })
    }
}

/// The ID token verifier of `client`; at an Entra multi-tenant endpoint the issuer is checked afterwards,
/// against the token's own tenant.
fn verifier_of(client: &OidcClient, tenant_issuer: bool) -> openidconnect::IdTokenVerifier<'_, CoreJsonWebKey> {
    client.id_token_verifier().require_issuer_match(!tenant_issuer)
}

/// At an Entra multi-tenant endpoint, the ID token's issuer must be the template with the token's own
/// tenant (`tid`) in it: a token issued by one tenant that claims another is refused.
fn check_tenant_issuer(
    template: &str,
    issuer: &str,
    claims: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), OidcError> {
    let tid = claims
        .get("tid")
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty() && !t.contains('/'))
        .ok_or_else(|| OidcError::InvalidIdToken("no tenant (tid) to check the issuer against".into()))?;
    let expected = template.replace(TENANT_PLACEHOLDER, tid);
    if issuer.trim_end_matches('/') != expected.trim_end_matches('/') {
        return Err(OidcError::InvalidIdToken(format!("issuer {issuer} is not tenant {tid}'s ({expected})")));
    }
    Ok(())
}

/// A login begun: the URL to send the browser to, and what the callback must check.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingLogin {
    /// The IdP.
    pub idp: String,
    /// The `state` the callback must come back with.
    pub state: String,
    /// The PKCE verifier.
    pub verifier: String,
    /// The nonce the ID token must carry.
    pub nonce: String,
    /// Unix time after which the callback is refused.
    pub expires: i64,
    /// Where the IdP sends the browser back (absent: a person's login, `/auth/<idp>/callback`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uri: Option<String>,
}

struct Idp {
    config: IdpConfig,
    discovered: RwLock<Option<(CoreProviderMetadata, Instant)>>,
    /// The last readiness probe: when, and what it found.
    probed: std::sync::Mutex<Option<(Instant, Result<(), String>)>>,
    /// Held while a probe runs.
    probing: tokio::sync::Mutex<()>,
}

/// What a readiness probe found at one identity provider.
#[derive(Debug, Clone, Serialize)]
pub struct IdpProbe {
    /// The provider's configured name.
    pub name: String,
    /// Why discovery or its keys could not be fetched, when they could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How old the discovery and keys logins use are, in seconds (None: never fetched).
    pub keys_age_s: Option<u64>,
    /// Seconds since the probe ran (its result is reused for a while, so that readiness polls do not
    /// become a load on the provider).
    pub probed_s_ago: u64,
}

/// The configured identity providers.
pub struct Idps {
    http: reqwest::Client,
    public_url: String,
    idps: HashMap<String, Idp>,
}

impl std::fmt::Debug for Idps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.idps.keys().collect();
        names.sort();
        f.debug_struct("Idps").field("idps", &names).finish()
    }
}

pub(crate) async fn send(
    http: reqwest::Client,
    request: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, reqwest::Error> {
    let (parts, body) = request.into_parts();
    let started = std::time::Instant::now();
    let response = http.request(parts.method, parts.uri.to_string()).headers(parts.headers).body(body).send().await?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await?.to_vec();
    // The IdP's share of a sign-in: operators watch it, and the `oauth` bench takes it out of the gateway's.
    metrics::histogram!("mgw_idp_request_duration_seconds").record(started.elapsed().as_secs_f64());
    let mut built = openidconnect::http::Response::new(body);
    *built.status_mut() = status;
    *built.headers_mut() = headers;
    Ok(built)
}

impl Idps {
    /// The IdPs of `configs`, with redirect URIs under `public_url`.
    pub fn new(configs: Vec<IdpConfig>, public_url: &str) -> Result<Self, OidcError> {
        let http = reqwest::Client::builder()
            // Never follow a redirect: an IdP endpoint that redirects is refused, not chased (SSRF).
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| OidcError::Config { idp: "*".into(), reason: e.to_string() })?;
        let mut idps = HashMap::new();
        for config in configs {
            check_rules(&config.role_rules)
                .map_err(|e: RoleRuleError| OidcError::Config { idp: config.name.clone(), reason: e.to_string() })?;
            let valid = !config.name.is_empty()
                && config.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !valid {
                return Err(OidcError::Config { idp: config.name, reason: "names are [a-z0-9-]+".into() });
            }
            IssuerUrl::new(config.issuer.clone())
                .map_err(|e| OidcError::Config { idp: config.name.clone(), reason: e.to_string() })?;
            if let IdpKind::Entra { allowed_tenants } = &config.kind
                && allowed_tenants.is_empty()
                && config.multi_tenant_endpoint()
            {
                return Err(OidcError::Config {
                    idp: config.name,
                    reason: "a multi-tenant Entra issuer admits any tenant: list allowed_tenants".into(),
                });
            }
            idps.insert(
                config.name.clone(),
                Idp { config, discovered: RwLock::new(None), probed: Default::default(), probing: Default::default() },
            );
        }
        Ok(Self { http, public_url: public_url.trim_end_matches('/').to_owned(), idps })
    }

    /// Applies the IdP kind's admission rules to a verified login; returns the subject to key the person
    /// by (Entra: `<tid>/<oid>`).
    pub fn admit(&self, idp: &str, login: &VerifiedLogin) -> Result<String, OidcError> {
        let claim = |name: &str| login.claims.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        match &self.idp(idp)?.config.kind {
            IdpKind::Oidc => Ok(login.subject.clone()),
            IdpKind::Entra { allowed_tenants } => {
                let (Some(tid), Some(oid)) = (claim("tid"), claim("oid")) else {
                    return Err(OidcError::NotAdmitted("the ID token has no tid or oid".into()));
                };
                if !allowed_tenants.is_empty() && !allowed_tenants.contains(&tid) {
                    return Err(OidcError::NotAdmitted(format!("tenant {tid} is not allowed")));
                }
                Ok(format!("{tid}/{oid}"))
            }
            IdpKind::Google { hosted_domain } => match claim("hd") {
                Some(hd) if hd.eq_ignore_ascii_case(hosted_domain) => Ok(login.subject.clone()),
                Some(hd) => Err(OidcError::NotAdmitted(format!("the domain {hd} is not {hosted_domain}"))),
                None => Err(OidcError::NotAdmitted(format!("not an account of {hosted_domain}"))),
            },
            IdpKind::Github { allowed_organizations, .. } => {
                let groups = login.claims.get("groups").and_then(|g| g.as_array());
                let member = |org: &String| {
                    groups.is_some_and(|groups| {
                        groups.iter().filter_map(|g| g.as_str()).any(|g| g.eq_ignore_ascii_case(org))
                    })
                };
                if !allowed_organizations.is_empty() && !allowed_organizations.iter().any(member) {
                    return Err(OidcError::NotAdmitted("not a member of an allowed organization".into()));
                }
                Ok(login.subject.clone())
            }
        }
    }

    /// Whether an authorization response's `iss` (RFC 9207) names `idp`: its configured issuer, or, at
    /// an Entra multi-tenant endpoint, the issuer of any one tenant (the ID token's own issuer and
    /// tenant are checked against each other and the allowlist afterwards).
    pub async fn answered_by(&self, idp_name: &str, iss: &str) -> Result<bool, OidcError> {
        let idp = self.idp(idp_name)?;
        let iss = iss.trim_end_matches('/');
        if iss == idp.config.issuer.trim_end_matches('/') {
            return Ok(true);
        }
        if matches!(idp.config.kind, IdpKind::Github { .. }) {
            return Ok(false);
        }
        let metadata = self.metadata(idp, false).await?;
        let template = metadata.issuer().as_str().trim_end_matches('/');
        Ok(match template.split_once(TENANT_PLACEHOLDER) {
            Some((before, after)) => iss
                .strip_prefix(before)
                .and_then(|rest| rest.strip_suffix(after))
                .is_some_and(|tenant| !tenant.is_empty() && !tenant.contains('/')),
            None => false,
        })
    }

    /// The role rules of `idp`.
    pub fn rules(&self, idp: &str) -> Result<&[RoleRule], OidcError> {
        Ok(&self.idp(idp)?.config.role_rules)
    }

    fn idp(&self, name: &str) -> Result<&Idp, OidcError> {
        self.idps.get(name).ok_or_else(|| OidcError::UnknownIdp(name.to_owned()))
    }

    /// Where the IdP sends the browser back after a person's login.
    pub fn redirect_uri(&self, idp: &str) -> String {
        format!("{}/auth/{idp}/callback", self.public_url)
    }

    /// Where the IdP sends the browser back during an MCP client's authorization (one fixed callback
    /// per IdP, registered there beside the login's).
    pub fn authorization_redirect_uri(&self, idp: &str) -> String {
        format!("{}/oauth/callback/{idp}", self.public_url)
    }

    /// The names of the configured IdPs, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.idps.keys().cloned().collect();
        names.sort();
        names
    }

    /// Probes every OpenID provider's discovery and keys (a fresh fetch, which also renews what logins
    /// use), reusing a probe younger than `every`. GitHub has no discovery and is not probed.
    pub async fn probe(&self, every: Duration) -> Vec<IdpProbe> {
        let probes =
            self.idps.values().filter(|idp| !matches!(idp.config.kind, IdpKind::Github { .. })).map(|idp| async move {
                let recent =
                    || idp.probed.lock().ok().and_then(|probed| probed.clone()).filter(|(at, _)| at.elapsed() < every);
                // Readiness polls arriving together wait for one fetch rather than make one each; a poll
                // that waited finds the fresh result.
                let _probing = if recent().is_none() { Some(idp.probing.lock().await) } else { None };
                let (at, result) = match recent() {
                    Some(recent) => recent,
                    None => {
                        let fetched = tokio::time::timeout(Duration::from_secs(3), self.metadata(idp, true)).await;
                        let result = match fetched {
                            Ok(Ok(_)) => Ok(()),
                            Ok(Err(error)) => Err(error.to_string()),
                            Err(_) => Err("discovery did not answer within 3 s".to_owned()),
                        };
                        let probed = (Instant::now(), result);
                        if let Ok(mut slot) = idp.probed.lock() {
                            *slot = Some(probed.clone());
                        }
                        probed
                    }
                };
                let keys_age_s = idp.discovered.read().await.as_ref().map(|(_, at)| at.elapsed().as_secs());
                IdpProbe {
                    name: idp.config.name.clone(),
                    error: result.err(),
                    keys_age_s,
                    probed_s_ago: at.elapsed().as_secs(),
                }
            });
        let mut probes = futures_util::future::join_all(probes).await;
        probes.sort_by(|a, b| a.name.cmp(&b.name));
        probes
    }

    async fn metadata(&self, idp: &Idp, refresh: bool) -> Result<CoreProviderMetadata, OidcError> {
        if !refresh
            && let Some((metadata, at)) = idp.discovered.read().await.as_ref()
            && at.elapsed() < DISCOVERY_TTL
        {
            return Ok(metadata.clone());
        }
        let upstream = |reason: String| OidcError::Upstream { idp: idp.config.name.clone(), reason };
        let issuer = IssuerUrl::new(idp.config.issuer.clone()).map_err(|e| upstream(e.to_string()))?;
        let http = self.http.clone();
        let client = move |request| send(http.clone(), request);
        let metadata = match &idp.config.kind {
            IdpKind::Entra { allowed_tenants } => self.discover_entra(idp, allowed_tenants, &client).await?,
            _ => CoreProviderMetadata::discover_async(issuer, &client).await.map_err(|e| upstream(e.to_string()))?,
        };
        *idp.discovered.write().await = Some((metadata.clone(), Instant::now()));
        Ok(metadata)
    }

    /// Entra's discovery: at a multi-tenant endpoint the advertised issuer is a template with
    /// `{tenantid}` (OpenID discovery would refuse it as a mismatch); anything else must match exactly.
    async fn discover_entra<C>(
        &self,
        idp: &Idp,
        allowed_tenants: &[String],
        client: &C,
    ) -> Result<CoreProviderMetadata, OidcError>
    where
        for<'c> C: openidconnect::AsyncHttpClient<'c>,
    {
        let upstream = |reason: String| OidcError::Upstream { idp: idp.config.name.clone(), reason };
        let configured = idp.config.issuer.trim_end_matches('/');
        let url = format!("{configured}/.well-known/openid-configuration");
        let response = self
            .http
            .get(&url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| upstream(format!("discovery: {e}")))?;
        if !response.status().is_success() {
            return Err(upstream(format!("discovery: {} at {url}", response.status())));
        }
        let body = response.bytes().await.map_err(|e| upstream(format!("discovery: {e}")))?;
        let metadata: CoreProviderMetadata =
            serde_json::from_slice(&body).map_err(|e| upstream(format!("discovery document: {e}")))?;
        let advertised = metadata.issuer().as_str().trim_end_matches('/');
        let template = advertised.contains(TENANT_PLACEHOLDER);
        if advertised != configured && !template {
            return Err(upstream(format!("unexpected issuer {advertised} (expected {configured})")));
        }
        if template && allowed_tenants.is_empty() {
            return Err(OidcError::Config {
                idp: idp.config.name.clone(),
                reason: "a multi-tenant Entra issuer admits any tenant: list allowed_tenants".into(),
            });
        }
        let keys = openidconnect::JsonWebKeySet::fetch_async(metadata.jwks_uri(), client)
            .await
            .map_err(|e| upstream(format!("keys: {e}")))?;
        Ok(metadata.set_jwks(keys))
    }

    fn client(&self, idp: &Idp, metadata: CoreProviderMetadata, redirect: &str) -> Result<OidcClient, OidcError> {
        let redirect = RedirectUrl::new(redirect.to_owned())
            .map_err(|e| OidcError::Config { idp: idp.config.name.clone(), reason: e.to_string() })?;
        Ok(OidcClient::from_provider_metadata(
            metadata,
            ClientId::new(idp.config.client_id.clone()),
            Some(ClientSecret::new(idp.config.client_secret.clone())),
        )
        .set_redirect_uri(redirect))
    }

    /// Begins a login at `idp`: the authorization URL (code flow, PKCE S256, nonce, state) and what the
    /// callback must check, valid for `ttl`.
    pub async fn begin(&self, idp_name: &str, ttl: chrono::Duration) -> Result<(String, PendingLogin), OidcError> {
        self.begin_to(idp_name, ttl, self.redirect_uri(idp_name)).await
    }

    /// [`begin`](Self::begin), with the IdP sending the browser back to `redirect`.
    pub async fn begin_to(
        &self,
        idp_name: &str,
        ttl: chrono::Duration,
        redirect: String,
    ) -> Result<(String, PendingLogin), OidcError> {
        let idp = self.idp(idp_name)?;
        if matches!(idp.config.kind, IdpKind::Github { .. }) {
            let expires = (chrono::Utc::now() + ttl).timestamp();
            let (url, mut pending) = crate::github::begin(&idp.config, idp.config.scopes(), redirect.clone(), expires)?;
            pending.redirect_uri = Some(redirect);
            return Ok((url, pending));
        }
        let client = self.client(idp, self.metadata(idp, false).await?, &redirect)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request =
            client.authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random);
        for scope in idp.config.scopes() {
            request = request.add_scope(Scope::new(scope));
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        let pending = PendingLogin {
            idp: idp_name.to_owned(),
            state: state.secret().clone(),
            verifier: verifier.secret().clone(),
            nonce: nonce.secret().clone(),
            expires: (chrono::Utc::now() + ttl).timestamp(),
            redirect_uri: Some(redirect),
        };
        Ok((url.to_string(), pending))
    }

    /// Completes a login: exchanges `code` with the PKCE verifier (once: a code is good once) and verifies
    /// the ID token (signature by the IdP's published keys, issuer, audience, expiry, nonce). A token
    /// signed with a key the cached discovery does not have is checked again after discovering afresh
    /// (the IdP rotated its keys).
    pub async fn complete(&self, pending: &PendingLogin, code: &str) -> Result<VerifiedLogin, OidcError> {
        use openidconnect::{ClaimsVerificationError, SignatureVerificationError};
        let idp = self.idp(&pending.idp)?;
        if let IdpKind::Github { api_url, allowed_organizations } = &idp.config.kind {
            let api = api_url.clone().unwrap_or_else(|| crate::github::default_api_url(&idp.config.issuer));
            let with_groups = idp.config.github_groups_needed(allowed_organizations);
            let redirect = pending.redirect_uri.clone().unwrap_or_else(|| self.redirect_uri(&pending.idp));
            return crate::github::complete(&self.http, &idp.config, &api, with_groups, redirect, pending, code).await;
        }
        let upstream = |reason: String| OidcError::Upstream { idp: idp.config.name.clone(), reason };
        let metadata = self.metadata(idp, false).await?;
        // At an Entra multi-tenant endpoint the issuer is checked below, against the token's own tenant.
        let tenant_issuer = metadata.issuer().as_str().contains(TENANT_PLACEHOLDER);
        let redirect = pending.redirect_uri.clone().unwrap_or_else(|| self.redirect_uri(&pending.idp));
        let client = self.client(idp, metadata, &redirect)?;
        let http = self.http.clone();
        let send_with = move |request| send(http.clone(), request);
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| upstream(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier.clone()))
            .request_async(&send_with)
            .await
            .map_err(|e| match e {
                openidconnect::RequestTokenError::ServerResponse(refusal) => OidcError::Refused(refusal.to_string()),
                other => upstream(format!("token request: {other}")),
            })?;
        let id_token = response.id_token().ok_or_else(|| upstream("no ID token in the response".into()))?;
        let nonce = Nonce::new(pending.nonce.clone());
        let verified = match id_token.claims(&verifier_of(&client, tenant_issuer), &nonce) {
            Err(ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoMatchingKey)) => {
                let refreshed = self.client(idp, self.metadata(idp, true).await?, &redirect)?;
                id_token.claims(&verifier_of(&refreshed, tenant_issuer), &nonce).cloned()
            }
            other => other.cloned(),
        };
        let claims = verified.map_err(|e| OidcError::InvalidIdToken(e.to_string()))?;
        if tenant_issuer {
            let template = self.metadata(idp, false).await?.issuer().as_str().to_owned();
            check_tenant_issuer(&template, claims.issuer().as_str(), &claims.additional_claims().claims)?;
        }
        let subject = claims.subject().as_str().to_owned();
        let email = claims.email().map(|e| e.as_str().to_owned());
        let display_name = claims
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().to_owned())
            .or_else(|| email.clone())
            .unwrap_or_else(|| subject.clone());
        let amr = claims
            .auth_method_refs()
            .map(|refs| refs.iter().map(|r| r.as_str().to_owned()).collect())
            .unwrap_or_default();
        Ok(VerifiedLogin {
            issuer: claims.issuer().as_str().to_owned(),
            subject,
            display_name,
            email,
            amr,
            claims: serde_json::Value::Object(claims.additional_claims().claims.clone()),
            renewal: UpstreamRenewal::of(response.refresh_token(), response.expires_in(), None),
        })
    }

    /// Renews the sign-in at IdP `name` with its `refresh_token`: the IdP's answer (a rotated refresh
    /// token, or the same), or `Refused` when the IdP no longer honours it (the person was disabled or
    /// signed out there, the grant revoked).
    pub async fn renew(&self, name: &str, refresh_token: &str) -> Result<UpstreamRenewal, OidcError> {
        let idp = self.idp(name)?;
        let upstream = |reason: String| OidcError::Upstream { idp: idp.config.name.clone(), reason };
        if matches!(idp.config.kind, IdpKind::Github { .. }) {
            return Err(upstream("GitHub sign-ins are not renewed".into()));
        }
        let client = self.client(idp, self.metadata(idp, false).await?, &self.redirect_uri(name))?;
        let http = self.http.clone();
        let send_with = move |request| send(http.clone(), request);
        let response = client
            .exchange_refresh_token(&openidconnect::RefreshToken::new(refresh_token.to_owned()))
            .map_err(|e| upstream(e.to_string()))?
            .request_async(&send_with)
            .await
            .map_err(|e| match e {
                // Only `invalid_grant` says the sign-in no longer stands; any other error (the gateway's
                // own client refused, the IdP failing) says nothing about the person.
                openidconnect::RequestTokenError::ServerResponse(refusal)
                    if *refusal.error() == CoreErrorResponseType::InvalidGrant =>
                {
                    OidcError::Refused(refusal.to_string())
                }
                other => upstream(format!("refresh request: {other}")),
            })?;
        UpstreamRenewal::of(response.refresh_token(), response.expires_in(), Some(refresh_token))
            .ok_or_else(|| upstream("no refresh token".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(issuer: &str, kind: IdpKind) -> IdpConfig {
        IdpConfig {
            name: "x".into(),
            issuer: issuer.into(),
            client_id: "c".into(),
            client_secret: "s".into(),
            scopes: None,
            role_rules: Vec::new(),
            kind,
        }
    }

    #[test]
    fn a_tenant_issuer_must_name_the_tokens_own_tenant() {
        let template = "https://login.microsoftonline.com/{tenantid}/v2.0";
        let claims = |tid: &str| serde_json::json!({ "tid": tid }).as_object().cloned().unwrap_or_default();
        let issuer = "https://login.microsoftonline.com/t-1/v2.0";
        assert!(check_tenant_issuer(template, issuer, &claims("t-1")).is_ok());
        assert!(check_tenant_issuer(template, issuer, &claims("t-2")).is_err());
        assert!(check_tenant_issuer(template, issuer, &claims("t-1/v2.0/x")).is_err());
        assert!(check_tenant_issuer(template, issuer, &serde_json::Map::new()).is_err());
    }

    #[test]
    fn multi_tenant_endpoints_need_a_tenant_allowlist() {
        let open = IdpKind::Entra { allowed_tenants: Vec::new() };
        for issuer in
            ["https://login.microsoftonline.com/organizations/v2.0", "https://login.microsoftonline.com/common/v2.0"]
        {
            let refused = Idps::new(vec![config(issuer, open.clone())], "https://gw.example.com");
            assert!(matches!(refused, Err(OidcError::Config { .. })), "{issuer}");
        }
        let single = "https://login.microsoftonline.com/3f6c2a4e-0000-4000-8000-000000000000/v2.0";
        assert!(Idps::new(vec![config(single, open)], "https://gw.example.com").is_ok());
    }

    #[test]
    fn github_asks_for_organizations_only_when_it_needs_them() {
        let plain = config("https://github.com", IdpKind::Github { api_url: None, allowed_organizations: Vec::new() });
        assert_eq!(plain.scopes(), ["read:user"]);
        let orgs = IdpKind::Github { api_url: None, allowed_organizations: vec!["acme".into()] };
        assert_eq!(config("https://github.com", orgs).scopes(), ["read:user", "read:org"]);
        assert_eq!(config("https://id.example.com", IdpKind::Oidc).scopes(), ["email", "profile"]);
        assert_eq!(crate::github::default_api_url("https://github.com/"), "https://api.github.com");
        assert_eq!(crate::github::default_api_url("https://ghe.example.com"), "https://ghe.example.com/api/v3");
    }
}
