//! The `authz` in-memory read model: principals, their roles and whether they are disabled, their API
//! keys (digest, expiry, scopes, revocation) and sessions, and each server's owner and access policy.
//! Every request's authentication and authorization reads it; a revocation, a disabling or a narrower
//! policy applied here is enforced on the next request.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use domain::Role;
use domain::authz::Action;
use domain::identity::{
    API_KEY_CATEGORY, IdentityEvent, PRINCIPAL_CATEGORY, PrincipalKind, SESSION_CATEGORY, SESSION_IDLE,
};
use domain::oauth::{AUTHORIZATION_CATEGORY, AuthorizationEvent, CLIENT_CATEGORY, ClientEvent};
use domain::server::{self, AccessPolicy, Endpoint, ServerEvent, Transport, UpstreamAuth};
use eventstore::RecordedEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{EventFilter, MemoryProjection, ProjectionError};

/// An authenticated principal, as one credential presents it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Id.
    pub id: Uuid,
    /// Display name at the time.
    pub display_name: String,
    /// Roles.
    pub roles: Vec<Role>,
    /// The API key it presented.
    pub key_id: Uuid,
    /// The credential's scopes (empty: unrestricted).
    pub scopes: Vec<Action>,
    /// How it authenticated.
    pub credential: Credential,
    /// When the API key behind the credential expires.
    pub key_expires_at: Option<DateTime<Utc>>,
    /// The OAuth client whose access token it presented, if any.
    pub client_id: Option<String>,
}

/// How a request authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// An API key.
    ApiKey,
    /// A gateway access token issued under the key or session `key_id`.
    AccessToken,
    /// A browser session's cookie (`key_id` is the session).
    Session,
    /// The emergency owner credential configured offline (see the gateway's break-glass).
    BreakGlass,
}

/// A principal as listed for access reviews.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalSummary {
    /// Id.
    pub id: Uuid,
    /// Kind.
    pub kind: PrincipalKind,
    /// Display name.
    pub display_name: String,
    /// Roles, highest first.
    pub roles: Vec<Role>,
    /// Disabled principals authenticate nowhere.
    pub disabled: bool,
}

/// An API key as listed to its holder: never the key or its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySummary {
    /// Id.
    pub key_id: Uuid,
    /// `mgw_` and the first characters.
    pub prefix: String,
    /// What it is for.
    pub name: Option<String>,
    /// When it stops working.
    pub expires_at: Option<DateTime<Utc>>,
    /// Its scopes.
    pub scopes: Vec<Action>,
    /// Revoked keys are refused.
    pub revoked: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PrincipalEntry {
    kind: PrincipalKind,
    display_name: String,
    roles: BTreeSet<Role>,
    disabled: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeyEntry {
    principal_id: Uuid,
    digest: String,
    summary: KeySummary,
}

/// What the decision to use a server depends on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerAccess {
    /// The owner, as recorded on the server.
    pub owner: String,
    /// Whom it admits.
    pub policy: AccessPolicy,
    /// Suspended servers are not used, whoever asks.
    pub suspended: bool,
    /// Where the proxy forwards its MCP traffic, and how it authenticates there.
    pub upstream: Upstream,
    /// The tools it listed when last checked (empty before the first check); shared, as every forwarded
    /// request copies its server's entry.
    pub tools: std::sync::Arc<[String]>,
    /// What the last connection check that changed something found.
    pub health: Option<domain::server::ServerHealth>,
}

/// A server's upstream as the proxy needs it on every request: kept here so that forwarding a call
/// reads nothing from the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upstream {
    /// The transport it speaks.
    pub transport: Transport,
    /// Its URL, checked at registration.
    pub endpoint: Endpoint,
    /// Its credentials (secrets sealed).
    pub auth: UpstreamAuth,
}

/// The model.
pub struct Authz {
    filter: EventFilter,
    tables: Tables,
}

/// What the model knows: everything a snapshot holds (the filter is the code's).
#[derive(Default, Serialize, Deserialize)]
struct Tables {
    principals: HashMap<Uuid, PrincipalEntry>,
    /// Key digest → key id.
    digests: HashMap<String, Uuid>,
    keys: HashMap<Uuid, KeyEntry>,
    /// Session secret digest → session id.
    session_secrets: HashMap<String, Uuid>,
    sessions: HashMap<Uuid, SessionSummary>,
    /// Live servers (deregistered ones are gone).
    servers: HashMap<Uuid, ServerAccess>,
    /// OAuth clients, revoked ones included (a token names its client).
    clients: HashMap<String, OAuthClient>,
    /// What OAuth clients hold for people, by the session each grant lives in.
    grants: HashMap<Uuid, OAuthGrant>,
}

/// What an OAuth client holds for a person: one approved authorization, living in the session of the
/// sign-in that approved it (ending the session ends the grant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthGrant {
    /// The session the grant lives in.
    pub session_id: Uuid,
    /// The person.
    pub principal_id: Uuid,
    /// The client.
    pub client_id: String,
    /// The resource its tokens are for.
    pub resource: String,
    /// The scope approved.
    pub scope: String,
    /// When the first token was issued.
    pub granted_at: DateTime<Utc>,
    /// When a token was last issued (the first, or a refresh).
    pub last_used_at: DateTime<Utc>,
}

/// An OAuth client as the model knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthClient {
    /// Its id.
    pub client_id: String,
    /// The name it registered.
    pub name: Option<String>,
    /// Its redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Whether it has a secret.
    pub confidential: bool,
    /// When it registered.
    pub registered_at: DateTime<Utc>,
    /// Revoked: its tokens are refused.
    pub revoked: bool,
    /// The registration as recorded (the token endpoint authenticates the client with it).
    pub registration: Box<domain::oauth::ClientRegistered>,
}

/// A session as listed to its holder and to administrators: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSummary {
    /// Id.
    pub session_id: Uuid,
    /// Whose.
    pub principal_id: Uuid,
    /// How it started (`oidc:<idp>`).
    pub method: String,
    /// The device cookie's id.
    pub device_id: Uuid,
    /// The user agent at the start.
    pub user_agent: Option<String>,
    /// The client address at the start.
    pub ip: Option<String>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Its absolute end.
    pub expires_at: DateTime<Utc>,
    /// Ended early.
    pub revoked: bool,
    /// Ran out (idle or past its end) and recorded so.
    pub expired: bool,
    /// Its last start or refresh: idle past [`SESSION_IDLE`] after it, the session is dead.
    pub last_active: DateTime<Utc>,
}

impl Default for Authz {
    fn default() -> Self {
        Self {
            filter: EventFilter::new(
                [
                    PRINCIPAL_CATEGORY,
                    API_KEY_CATEGORY,
                    SESSION_CATEGORY,
                    server::CATEGORY,
                    CLIENT_CATEGORY,
                    AUTHORIZATION_CATEGORY,
                ],
                IdentityEvent::TYPES
                    .into_iter()
                    .chain(ServerEvent::TYPES)
                    .chain(ClientEvent::TYPES)
                    .chain(AuthorizationEvent::TYPES),
            ),
            tables: Tables::default(),
        }
    }
}

impl Authz {
    /// The OAuth client `client_id`, revoked or not.
    pub fn client(&self, client_id: &str) -> Option<&OAuthClient> {
        self.tables.clients.get(client_id)
    }

    /// Every OAuth client, newest first.
    pub fn clients(&self) -> Vec<OAuthClient> {
        let mut clients: Vec<OAuthClient> = self.tables.clients.values().cloned().collect();
        clients.sort_by(|a, b| b.registered_at.cmp(&a.registered_at).then_with(|| a.client_id.cmp(&b.client_id)));
        clients
    }

    /// The grants OAuth clients hold for `principal_id` whose sessions are live at `now`, newest first.
    pub fn grants_of(&self, principal_id: Uuid, now: DateTime<Utc>) -> Vec<OAuthGrant> {
        let mut grants: Vec<OAuthGrant> = self
            .tables
            .grants
            .values()
            .filter(|g| g.principal_id == principal_id)
            .filter(|g| self.by_session(g.session_id, now, Credential::AccessToken).is_some())
            .cloned()
            .collect();
        grants.sort_by_key(|g| std::cmp::Reverse(g.granted_at));
        grants
    }

    /// The grant living in session `session_id`, live or not.
    pub fn grant(&self, session_id: Uuid) -> Option<&OAuthGrant> {
        self.tables.grants.get(&session_id)
    }

    fn apply_authorization(&mut self, recorded: &RecordedEvent, event: AuthorizationEvent) {
        let at = recorded.metadata.occurred_at;
        match event {
            AuthorizationEvent::TokenIssued(issued) => {
                let grant = OAuthGrant {
                    session_id: issued.session_id,
                    principal_id: issued.principal_id,
                    client_id: issued.client_id,
                    resource: issued.resource,
                    scope: issued.scope,
                    granted_at: at,
                    last_used_at: at,
                };
                self.tables.grants.insert(grant.session_id, grant);
            }
            AuthorizationEvent::TokenRefreshed(refreshed) => {
                if let Some(grant) = self.tables.grants.get_mut(&refreshed.session_id) {
                    grant.last_used_at = at;
                }
            }
            AuthorizationEvent::Started(_)
            | AuthorizationEvent::Rejected(_)
            | AuthorizationEvent::ConsentGranted(_)
            | AuthorizationEvent::ConsentDenied(_)
            | AuthorizationEvent::CodeIssued(_)
            | AuthorizationEvent::CodeReplayed(_)
            | AuthorizationEvent::RefreshTokenReuseDetected(_) => {}
        }
    }

    /// The owner and access policy of live server `id`.
    pub fn server_access(&self, id: Uuid) -> Option<&ServerAccess> {
        self.tables.servers.get(&id)
    }

    /// Every live server.
    pub fn servers(&self) -> impl Iterator<Item = (Uuid, &ServerAccess)> {
        self.tables.servers.iter().map(|(id, access)| (*id, access))
    }

    fn apply_server(&mut self, recorded: &RecordedEvent, event: ServerEvent) -> Result<(), String> {
        let id =
            Uuid::parse_str(recorded.stream.id()).map_err(|e| format!("server stream {}: {e}", recorded.stream))?;
        match event {
            ServerEvent::Registered(registered) => {
                let upstream = Upstream {
                    transport: registered.transport,
                    endpoint: registered.endpoint,
                    auth: registered.upstream_auth,
                };
                let access = ServerAccess {
                    owner: registered.owner,
                    policy: registered.access,
                    suspended: false,
                    upstream,
                    tools: std::sync::Arc::from([]),
                    health: None,
                };
                self.tables.servers.insert(id, access);
            }
            ServerEvent::AccessChanged(policy) => self.server_mut(id)?.policy = policy,
            ServerEvent::ToolRulesChanged(tools) => self.server_mut(id)?.policy.tools = tools,
            ServerEvent::HealthChanged(health) => self.server_mut(id)?.health = Some(health),
            ServerEvent::ToolsDiscovered(tools) => {
                self.server_mut(id)?.tools = tools.names().map(str::to_owned).collect::<Vec<_>>().into();
            }
            ServerEvent::Suspended { .. } => self.server_mut(id)?.suspended = true,
            ServerEvent::Resumed => self.server_mut(id)?.suspended = false,
            ServerEvent::Deregistered { .. } => {
                self.tables.servers.remove(&id);
            }
            ServerEvent::Updated(changes) => {
                let upstream = &mut self.server_mut(id)?.upstream;
                if let Some(transport) = changes.transport {
                    upstream.transport = transport;
                }
                if let Some(endpoint) = changes.endpoint {
                    upstream.endpoint = endpoint;
                }
            }
            ServerEvent::CredentialRotated(auth) => self.server_mut(id)?.upstream.auth = auth,
        }
        Ok(())
    }

    fn server_mut(&mut self, id: Uuid) -> Result<&mut ServerAccess, String> {
        self.tables.servers.get_mut(&id).ok_or_else(|| format!("server {id} is not known"))
    }

    /// The principal holding the API key whose SHA-256 (hex) is `digest`, if the key is neither revoked
    /// nor expired at `now` and its principal is enabled.
    pub fn by_api_key_digest(&self, digest: &str, now: DateTime<Utc>) -> Option<Principal> {
        let key_id = *self.tables.digests.get(digest)?;
        self.by_key(key_id, now, Credential::ApiKey)
    }

    /// The principal an access token issued under key or session `sid` to `principal_id` speaks for, if
    /// that key or session still works at `now` (revoking or ending it takes its tokens with it) and
    /// belongs to it.
    pub fn by_token(&self, principal_id: Uuid, sid: Uuid, now: DateTime<Utc>) -> Option<Principal> {
        let found = if self.tables.sessions.contains_key(&sid) {
            self.by_session(sid, now, Credential::AccessToken)
        } else {
            self.by_key(sid, now, Credential::AccessToken)
        };
        found.filter(|p| p.id == principal_id)
    }

    /// The principal of the session whose cookie secret has SHA-256 `digest`, while the session is live.
    pub fn by_session_secret(&self, digest: &str, now: DateTime<Utc>) -> Option<Principal> {
        self.by_session(*self.tables.session_secrets.get(digest)?, now, Credential::Session)
    }

    fn by_session(&self, session_id: Uuid, now: DateTime<Utc>, credential: Credential) -> Option<Principal> {
        let session = self
            .tables
            .sessions
            .get(&session_id)
            .filter(|s| !s.revoked && !s.expired && s.expires_at > now && now - s.last_active < SESSION_IDLE)?;
        let principal = self.tables.principals.get(&session.principal_id).filter(|p| !p.disabled)?;
        Some(Principal {
            id: session.principal_id,
            display_name: principal.display_name.clone(),
            roles: principal.roles.iter().copied().collect(),
            key_id: session_id,
            scopes: Vec::new(),
            credential,
            key_expires_at: Some(session.expires_at),
            client_id: None,
        })
    }

    /// One session, ended or not.
    pub fn session(&self, session_id: Uuid) -> Option<SessionSummary> {
        self.tables.sessions.get(&session_id).cloned()
    }

    /// The sessions of `principal_id`, newest first.
    pub fn sessions_of(&self, principal_id: Uuid) -> Vec<SessionSummary> {
        let mut sessions: Vec<SessionSummary> =
            self.tables.sessions.values().filter(|s| s.principal_id == principal_id).cloned().collect();
        sessions.sort_by_key(|s| std::cmp::Reverse(s.session_id));
        sessions
    }

    fn by_key(&self, key_id: Uuid, now: DateTime<Utc>, credential: Credential) -> Option<Principal> {
        let key = self.tables.keys.get(&key_id)?;
        if key.summary.revoked || key.summary.expires_at.is_some_and(|at| at <= now) {
            return None;
        }
        let principal = self.tables.principals.get(&key.principal_id).filter(|p| !p.disabled)?;
        Some(Principal {
            id: key.principal_id,
            display_name: principal.display_name.clone(),
            roles: principal.roles.iter().copied().collect(),
            key_id: key.summary.key_id,
            scopes: key.summary.scopes.clone(),
            credential,
            key_expires_at: key.summary.expires_at,
            client_id: None,
        })
    }

    /// One principal.
    pub fn principal(&self, id: Uuid) -> Option<PrincipalSummary> {
        self.tables.principals.get(&id).map(|p| PrincipalSummary {
            id,
            kind: p.kind,
            display_name: p.display_name.clone(),
            roles: p.roles.iter().copied().collect(),
            disabled: p.disabled,
        })
    }

    /// Every principal, by id.
    pub fn principals(&self) -> Vec<PrincipalSummary> {
        let mut ids: Vec<Uuid> = self.tables.principals.keys().copied().collect();
        ids.sort();
        ids.into_iter().filter_map(|id| self.principal(id)).collect()
    }

    /// The keys of `principal_id`, by id.
    pub fn keys_of(&self, principal_id: Uuid) -> Vec<KeySummary> {
        let mut keys: Vec<KeySummary> =
            self.tables.keys.values().filter(|k| k.principal_id == principal_id).map(|k| k.summary.clone()).collect();
        keys.sort_by_key(|k| k.key_id);
        keys
    }

    /// Number of principals.
    pub fn principal_count(&self) -> usize {
        self.tables.principals.len()
    }

    fn principal_mut(&mut self, id: Uuid) -> Result<&mut PrincipalEntry, String> {
        self.tables.principals.get_mut(&id).ok_or_else(|| format!("principal {id} is not known"))
    }
}

impl Authz {
    /// The layout of a snapshot's body and the meaning of the fold that produced it: bumped whenever
    /// `Tables` or `apply` changes, so that a snapshot of an older model is replayed over, not loaded.
    pub const SNAPSHOT_FORMAT: u32 = 1;
}

impl MemoryProjection for Authz {
    fn name(&self) -> &str {
        "authz"
    }

    fn filter(&self) -> &EventFilter {
        &self.filter
    }

    fn save_state(&self) -> Option<Result<Vec<u8>, ProjectionError>> {
        Some(serde_json::to_vec(&self.tables).map_err(|e| ProjectionError::Snapshot(e.to_string())))
    }

    fn load_state(&mut self, body: &[u8]) -> Result<(), ProjectionError> {
        self.tables = serde_json::from_slice(body).map_err(|e| ProjectionError::Snapshot(e.to_string()))?;
        Ok(())
    }

    fn apply(&mut self, recorded: &RecordedEvent) -> Result<(), ProjectionError> {
        let fail =
            |reason: String| ProjectionError::Apply { projection: "authz".into(), position: recorded.position, reason };
        if recorded.stream.category() == CLIENT_CATEGORY {
            let event = ClientEvent::from_json(&recorded.event_type, &recorded.data)
                .ok_or_else(|| fail(format!("unknown type {}", recorded.event_type)))?
                .map_err(|e| fail(e.to_string()))?;
            match event {
                ClientEvent::Registered(r) => {
                    let client = OAuthClient {
                        client_id: r.client_id.clone(),
                        name: r.metadata.client_name.clone(),
                        redirect_uris: r.metadata.redirect_uris.iter().map(|u| u.as_str().to_owned()).collect(),
                        confidential: r.secret_sha256.is_some(),
                        registered_at: recorded.metadata.occurred_at,
                        revoked: false,
                        registration: r.clone(),
                    };
                    self.tables.clients.insert(r.client_id.clone(), client);
                }
                ClientEvent::Revoked(r) => {
                    if let Some(client) = self.tables.clients.get_mut(&r.client_id) {
                        client.revoked = true;
                    }
                }
            }
            return Ok(());
        }
        if recorded.stream.category() == AUTHORIZATION_CATEGORY {
            let event = AuthorizationEvent::from_json(&recorded.event_type, &recorded.data)
                .ok_or_else(|| fail(format!("unknown type {}", recorded.event_type)))?
                .map_err(|e| fail(e.to_string()))?;
            self.apply_authorization(recorded, event);
            return Ok(());
        }
        if recorded.stream.category() == server::CATEGORY {
            let event = ServerEvent::from_json(&recorded.event_type, &recorded.data)
                .ok_or_else(|| fail(format!("unknown type {}", recorded.event_type)))?
                .map_err(|e| fail(e.to_string()))?;
            return self.apply_server(recorded, event).map_err(fail);
        }
        let event = IdentityEvent::from_json(&recorded.event_type, &recorded.data)
            .ok_or_else(|| fail(format!("unknown type {}", recorded.event_type)))?
            .map_err(|e| fail(e.to_string()))?;
        match event {
            IdentityEvent::PrincipalCreated(created) => {
                let entry = PrincipalEntry {
                    kind: created.kind,
                    display_name: created.display_name,
                    roles: created.roles.into_iter().collect(),
                    disabled: false,
                };
                self.tables.principals.insert(created.principal_id, entry);
            }
            IdentityEvent::ApiKeyIssued(issued) => {
                // Scopes were checked when the key was issued; one no longer known grants nothing.
                let scopes = issued.scopes.iter().filter_map(|s| s.parse().ok()).collect();
                let summary = KeySummary {
                    key_id: issued.key_id,
                    prefix: issued.prefix,
                    name: issued.name,
                    expires_at: issued.expires_at,
                    scopes,
                    revoked: false,
                };
                self.tables.digests.insert(issued.sha256.clone(), issued.key_id);
                self.tables.keys.insert(
                    issued.key_id,
                    KeyEntry { principal_id: issued.principal_id, digest: issued.sha256, summary },
                );
            }
            IdentityEvent::ApiKeyRevoked(revoked) => {
                if let Some(key) = self.tables.keys.get_mut(&revoked.key_id) {
                    key.summary.revoked = true;
                    // Nothing authenticates with a revoked key: drop the digest.
                    self.tables.digests.remove(&key.digest);
                }
            }
            IdentityEvent::RoleGranted(granted) => {
                self.principal_mut(granted.principal_id).map_err(fail)?.roles.insert(granted.role);
            }
            IdentityEvent::RoleRevoked(revoked) => {
                self.principal_mut(revoked.principal_id).map_err(fail)?.roles.remove(&revoked.role);
            }
            IdentityEvent::UserDisabled(disabled) => {
                self.principal_mut(disabled.principal_id).map_err(fail)?.disabled = true;
            }
            IdentityEvent::UserEnabled(enabled) => {
                self.principal_mut(enabled.principal_id).map_err(fail)?.disabled = false;
            }
            IdentityEvent::UserProfileUpdated(updated) => {
                self.principal_mut(updated.principal_id).map_err(fail)?.display_name = updated.display_name;
            }
            IdentityEvent::SessionStarted(started) => {
                self.tables.session_secrets.insert(started.secret_sha256.clone(), started.session_id);
                self.tables.sessions.insert(
                    started.session_id,
                    SessionSummary {
                        session_id: started.session_id,
                        principal_id: started.principal_id,
                        method: started.method,
                        device_id: started.device_id,
                        user_agent: started.user_agent,
                        ip: started.ip,
                        started_at: recorded.metadata.occurred_at,
                        expires_at: started.expires_at,
                        revoked: false,
                        expired: false,
                        last_active: recorded.metadata.occurred_at,
                    },
                );
            }
            IdentityEvent::SessionRevoked(domain::identity::SessionRevoked { session_id, .. }) => {
                if let Some(session) = self.tables.sessions.get_mut(&session_id) {
                    session.revoked = true;
                }
                self.tables.session_secrets.retain(|_, id| *id != session_id);
            }
            IdentityEvent::SessionExpired(domain::identity::SessionExpired { session_id, .. }) => {
                if let Some(session) = self.tables.sessions.get_mut(&session_id) {
                    session.expired = true;
                }
                self.tables.session_secrets.retain(|_, id| *id != session_id);
            }
            IdentityEvent::SessionRefreshed(refreshed) => {
                // The old secret dies with the rotation; the new one takes its place.
                self.tables.session_secrets.retain(|_, id| *id != refreshed.session_id);
                self.tables.session_secrets.insert(refreshed.secret_sha256, refreshed.session_id);
                if let Some(session) = self.tables.sessions.get_mut(&refreshed.session_id) {
                    session.last_active = refreshed.at;
                }
            }
            IdentityEvent::TotpEnrolled(_)
            | IdentityEvent::UserProvisioned(_)
            | IdentityEvent::UserLoggedIn(_)
            | IdentityEvent::SuspiciousSessionActivity(_)
            | IdentityEvent::TotpVerified(_)
            | IdentityEvent::TotpRejected(_)
            | IdentityEvent::TotpEnrolmentApproved(_)
            | IdentityEvent::OwnersChanged(_)
            | IdentityEvent::SigningKeyCreated(_)
            | IdentityEvent::SigningKeyRetired(_) => {}
        }
        Ok(())
    }
}
