//! Events to audit entries. Every event type the gateway writes is listed here; an event of an audited
//! category with a type missing from the list halts the projection (the test below fails first).

use domain::access::AccessEvent;
use domain::alert::AlertEvent;
use domain::connection::ConnectionEvent;
use domain::identity::{IdentityEvent, RoleSource};
use domain::oauth::{AuthorizationEvent, ClientEvent};
use domain::server::ServerEvent;
use eventstore::RecordedEvent;
use serde_json::{Value, json};

use super::entry::AuditEntry;

/// The stream categories the audit trail covers: all of the gateway's.
pub const AUDITED_CATEGORIES: [&str; 10] =
    ["server", "principal", "apikey", "system", "access", "session", "client", "oauth", "connection", "alert"];

/// The marker of the first bootstrap (a plain event, not part of an aggregate's enum).
const GATEWAY_BOOTSTRAPPED: &str = "GatewayBootstrapped";

/// Every event type the trail records: each domain's own list of its types, so that a new event type is
/// audited (and must be described below: the `match`es over each enum are exhaustive) without a second
/// list to keep in step.
pub fn audited_types() -> impl Iterator<Item = &'static str> {
    ServerEvent::TYPES
        .into_iter()
        .chain(IdentityEvent::TYPES)
        .chain(AccessEvent::TYPES)
        .chain(ClientEvent::TYPES)
        .chain(AuthorizationEvent::TYPES)
        .chain(ConnectionEvent::TYPES)
        .chain(AlertEvent::TYPES)
        .chain([GATEWAY_BOOTSTRAPPED])
}

/// The format of the canonical entries. Bump it (and the projection's version, which rebuilds the trail)
/// whenever a change here or in [`AuditEntry`] alters any entry's hash; checkpoints signed in an older
/// format keep their signatures and order but are no longer compared with entries. 2: the before and
/// after values of changed fields, and the actor's display name.
pub const CHAIN_VERSION: i32 = 2;

/// What the trail knows of a target before an event: its name and its audited fields as last recorded
/// (the "before" of the next change).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetState {
    /// Its name.
    pub name: Option<String>,
    /// Field name → value (an object).
    pub fields: Value,
}

/// The entry for `event`, numbered `seq`; `before` is what the trail knew of its target (for the name of
/// events that do not carry it, and the before values of changed fields), `actor_name` the acting
/// principal's display name as the trail knew it. `Err` when the payload does not decode. Every U+0000
/// in its text is escaped (see [`super::entry::NUL_ESCAPE`]).
pub fn entry_for(
    event: &RecordedEvent,
    seq: i64,
    before: Option<&TargetState>,
    actor_name: Option<&str>,
) -> Result<AuditEntry, String> {
    let (action, target_kind, target_name, reason, changes, target_id) = describe(event, before)?;
    let outcome =
        if matches!(action, "access.denied" | "mfa.rejected" | "break_glass.refused") { "denied" } else { "success" };
    let m = &event.metadata;
    Ok(AuditEntry {
        seq,
        tx: event.position.transaction_id as i64,
        gp: event.position.global_position as i64,
        event_id: event.event_id,
        occurred_at: crate::sql::to_micros(m.occurred_at),
        actor_id: m.actor.id.clone(),
        actor_kind: serde_json::to_value(m.actor.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        actor_name: actor_name.map(str::to_owned),
        action: action.to_owned(),
        target_kind: target_kind.to_owned(),
        target_id: target_id.unwrap_or_else(|| event.stream.id().to_owned()),
        target_name,
        outcome: outcome.to_owned(),
        source_ip: m.source_ip.map(|ip| ip.to_string()),
        user_agent: m.user_agent.clone(),
        correlation_id: m.correlation_id,
        causation_id: m.causation_id,
        reason,
        changes,
    }
    .storable())
}

/// Action, target kind, target name, reason, changes, and the target id when it is not the stream's id.
type Described = (&'static str, &'static str, Option<String>, Option<String>, Value, Option<String>);

fn describe(event: &RecordedEvent, before: Option<&TargetState>) -> Result<Described, String> {
    if let Some(connection) = describe_connection(event)? {
        return Ok(connection);
    }
    if let Some(alert) = describe_alert(event)? {
        return Ok(alert);
    }
    let (action, kind, name, reason, changes) = match describe_access(event)? {
        Some(access) => return Ok(access),
        None => describe_change(event, before)?,
    };
    // An authorization's steps are logged per grant, and filed under their client, as the client's own
    // events are (the UUID of its stream).
    let target = AuthorizationEvent::from_json(&event.event_type, &event.data)
        .and_then(Result::ok)
        .map(|e| domain::oauth::client_uuid(e.client_id()).to_string());
    Ok((action, kind, name, reason, changes, target))
}

/// The fields a server event sets, with their new values (all of them for a registration).
fn server_fields(event: &ServerEvent) -> Result<serde_json::Map<String, Value>, String> {
    let value = match event {
        ServerEvent::Registered(r) => {
            let mut fields = json!({
                "name": r.name, "title": r.title, "description": r.description, "tags": r.tags,
                "transport": r.transport, "url": r.endpoint, "auth_mode": r.upstream_auth.kind(),
                "access": r.access, "owner": r.owner,
            });
            if let Some(map) = fields.as_object_mut() {
                if let Some(hash) = r.upstream_auth.fingerprint() {
                    map.insert("credential".into(), json!(hash));
                }
                // Only when set, so that the entries of registrations logged before these fields existed
                // recompute as they were written.
                if r.version != domain::server::ServerVersion::unversioned() {
                    map.insert("version".into(), json!(r.version));
                }
                if let Some(repository) = &r.repository {
                    map.insert("repository".into(), json!(repository));
                }
                if !r.packages.is_empty() {
                    map.insert("packages".into(), json!(r.packages));
                }
            }
            fields
        }
        ServerEvent::Updated(changes) => {
            let mut changed = serde_json::to_value(changes).map_err(|e| e.to_string())?;
            // The catalogue calls the endpoint `url`.
            if let Some(map) = changed.as_object_mut()
                && let Some(url) = map.remove("endpoint")
            {
                map.insert("url".into(), url);
            }
            changed
        }
        ServerEvent::AccessChanged(access) => json!({ "access": access }),
        ServerEvent::ToolRulesChanged(tools) => json!({ "tool_rules": tools }),
        ServerEvent::HealthChanged(health) => json!({ "health": health }),
        ServerEvent::ToolsDiscovered(tools) => json!({ "tools": tools.names().collect::<Vec<_>>() }),
        // The mode, and the secret's keyed hash (never the sealed value): whether the credential changed.
        ServerEvent::CredentialRotated(auth) => match auth.fingerprint() {
            Some(hash) => json!({ "auth_mode": auth.kind(), "credential": hash }),
            None => json!({ "auth_mode": auth.kind() }),
        },
        ServerEvent::Suspended { .. } => json!({ "status": "suspended" }),
        ServerEvent::Resumed => json!({ "status": "active" }),
        ServerEvent::Deregistered { .. } => json!({ "status": "deregistered" }),
    };
    Ok(match value {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    })
}

/// `{field: {"before": …, "after": …}}` for each field `after` sets (before: `null` when unknown).
fn before_after(before: Option<&TargetState>, after: serde_json::Map<String, Value>) -> Value {
    let known = before.and_then(|b| b.fields.as_object());
    let changes: serde_json::Map<String, Value> = after
        .into_iter()
        .map(|(field, value)| {
            let was = known.and_then(|k| k.get(&field)).cloned().unwrap_or(Value::Null);
            (field, json!({ "before": was, "after": value }))
        })
        .collect();
    Value::Object(changes)
}

/// What the trail knows of the target of `event` after it (a server, or a principal for the names of
/// actors): `None` for other events.
pub fn state_after(event: &RecordedEvent, before: Option<&TargetState>) -> Result<Option<TargetState>, String> {
    if let Some(decoded) = IdentityEvent::from_json(&event.event_type, &event.data) {
        let decoded = decoded.map_err(|e| e.to_string())?;
        if let IdentityEvent::PrincipalCreated(p) = &decoded {
            let fields = json!({ "kind": p.kind, "roles": p.roles, "status": "enabled" });
            return Ok(Some(TargetState { name: Some(p.display_name.clone()), fields }));
        }
        // The trail names the principal as it is called now; its fields do not change.
        if let IdentityEvent::UserProfileUpdated(p) = &decoded {
            let fields = before.map(|b| b.fields.clone()).unwrap_or_else(|| json!({}));
            return Ok(Some(TargetState { name: Some(p.display_name.clone()), fields }));
        }
        let Some(after) = principal_fields(&decoded, before) else { return Ok(None) };
        let mut fields = before.and_then(|b| b.fields.as_object()).cloned().unwrap_or_default();
        fields.extend(after);
        return Ok(Some(TargetState { name: before.and_then(|b| b.name.clone()), fields: Value::Object(fields) }));
    }
    if let Some(decoded) = ClientEvent::from_json(&event.event_type, &event.data) {
        // The trail names a client by the name it registered.
        return Ok(match decoded.map_err(|e| e.to_string())? {
            ClientEvent::Registered(r) => Some(TargetState {
                name: Some(r.metadata.client_name.clone().unwrap_or_else(|| r.client_id.clone())),
                fields: json!({ "status": "active" }),
            }),
            ClientEvent::Revoked(_) => {
                Some(TargetState { name: before.and_then(|b| b.name.clone()), fields: json!({ "status": "revoked" }) })
            }
        });
    }
    let Some(decoded) = ServerEvent::from_json(&event.event_type, &event.data) else { return Ok(None) };
    let decoded = decoded.map_err(|e| e.to_string())?;
    let mut fields = match (&decoded, before.and_then(|b| b.fields.as_object())) {
        (ServerEvent::Registered(_), _) | (_, None) => serde_json::Map::new(),
        (_, Some(known)) => known.clone(),
    };
    if matches!(decoded, ServerEvent::Registered(_)) {
        fields.insert("status".into(), json!("active"));
    }
    fields.extend(server_fields(&decoded)?);
    let name = match &decoded {
        ServerEvent::Registered(r) => Some(r.name.to_string()),
        ServerEvent::Deregistered { name, .. } => Some(name.to_string()),
        _ => before.and_then(|b| b.name.clone()),
    };
    Ok(Some(TargetState { name, fields: Value::Object(fields) }))
}

/// The fields of a principal that `event` changes, with their new values; `None` for events that
/// change none (keys, second factor, the owners' set).
fn principal_fields(event: &IdentityEvent, before: Option<&TargetState>) -> Option<serde_json::Map<String, Value>> {
    let roles = || -> Vec<domain::Role> {
        before
            .and_then(|b| b.fields.get("roles"))
            .and_then(|r| serde_json::from_value(r.clone()).ok())
            .unwrap_or_default()
    };
    let value = match event {
        IdentityEvent::RoleGranted(g) => {
            let mut after = roles();
            if !after.contains(&g.role) {
                after.push(g.role);
            }
            after.sort();
            json!({ "roles": after })
        }
        IdentityEvent::RoleRevoked(r) => {
            let after: Vec<domain::Role> = roles().into_iter().filter(|x| *x != r.role).collect();
            json!({ "roles": after })
        }
        IdentityEvent::UserDisabled(_) => json!({ "status": "disabled" }),
        IdentityEvent::UserEnabled(_) => json!({ "status": "enabled" }),
        _ => return None,
    };
    match value {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// A person's account at a server: the target is the connection (its stream's id); the tokens never
/// appear, not even sealed, only when they expire and the scope granted.
/// Alerts and their deliveries: the target is the alert.
fn describe_alert(event: &RecordedEvent) -> Result<Option<Described>, String> {
    let Some(decoded) = AlertEvent::from_json(&event.event_type, &event.data) else { return Ok(None) };
    Ok(Some(match decoded.map_err(|e| e.to_string())? {
        AlertEvent::Raised(r) => {
            let changes = json!({ "severity": r.severity, "event_id": r.event_id, "event_type": r.event_type,
                                  "stream": r.stream, "summary": r.summary });
            ("alert.raised", "alert", Some(r.rule), None, changes, None)
        }
        AlertEvent::Delivered(d) => {
            ("alert.delivered", "alert", None, None, json!({ "channel": d.channel, "attempts": d.attempts }), None)
        }
        AlertEvent::DeadLettered(d) => {
            let changes = json!({ "channel": d.channel, "attempts": d.attempts });
            ("alert.dead_lettered", "alert", None, Some(d.error), changes, None)
        }
    }))
}

fn describe_connection(event: &RecordedEvent) -> Result<Option<Described>, String> {
    let Some(decoded) = ConnectionEvent::from_json(&event.event_type, &event.data) else { return Ok(None) };
    Ok(Some(match decoded.map_err(|e| e.to_string())? {
        ConnectionEvent::Connected(c) => {
            let changes = json!({ "principal_id": c.principal_id, "server_id": c.server_id,
                                  "scope": c.tokens.scope, "expires_at": c.tokens.expires_at });
            ("connection.connected", "connection", None, None, changes, None)
        }
        ConnectionEvent::Refreshed(r) => {
            let changes = json!({ "scope": r.tokens.scope, "expires_at": r.tokens.expires_at });
            ("connection.refreshed", "connection", None, None, changes, None)
        }
        ConnectionEvent::Disconnected(d) => {
            ("connection.disconnected", "connection", None, Some(d.reason), json!({}), None)
        }
    }))
}

/// Access records: the target is the resource asked for, not the principal's stream.
fn describe_access(event: &RecordedEvent) -> Result<Option<Described>, String> {
    let Some(decoded) = AccessEvent::from_json(&event.event_type, &event.data) else { return Ok(None) };
    Ok(Some(match decoded.map_err(|e| e.to_string())? {
        AccessEvent::Denied(d) => {
            ("access.denied", "resource", None, Some(d.reason), json!({ "action": d.action }), Some(d.resource))
        }
        AccessEvent::AuditRead(r) => {
            ("audit.read", "audit_trail", None, None, json!({ "query": r.query }), Some("audit".to_owned()))
        }
        AccessEvent::ToolCalled(c) => {
            let mut changes = json!({ "call_id": c.call_id, "server_id": c.server_id, "credential_id": c.credential_id,
                                  "outcome": c.outcome.as_str(), "latency_ms": c.latency_ms,
                                  "upstream_status": c.upstream_status, "arguments_hash": c.arguments_hash });
            // Only when there is one, so that the entries of calls recorded before clients were named
            // recompute as they were written.
            if let (Some(client), Some(map)) = (&c.client_id, changes.as_object_mut()) {
                map.insert("client_id".into(), json!(client));
            }
            let target = format!("server:{}:tool:{}", c.server_id, c.tool);
            ("tool.called", "tool", Some(c.tool), None, changes, Some(target))
        }
        AccessEvent::BreakGlassUsed(u) => {
            ("break_glass.used", "gateway", None, None, json!({ "request": u.request }), Some("break-glass".to_owned()))
        }
        AccessEvent::BreakGlassRefused(r) => (
            "break_glass.refused",
            "gateway",
            None,
            Some(r.reason),
            json!({ "request": r.request }),
            Some("break-glass".to_owned()),
        ),
    }))
}

type Change = (&'static str, &'static str, Option<String>, Option<String>, Value);

fn describe_change(event: &RecordedEvent, before: Option<&TargetState>) -> Result<Change, String> {
    if let Some(decoded) = ServerEvent::from_json(&event.event_type, &event.data) {
        let decoded = decoded.map_err(|e| e.to_string())?;
        let name = before.and_then(|b| b.name.clone());
        let fields = server_fields(&decoded)?;
        return Ok(match decoded {
            // A registration sets every field: its values, as they are.
            ServerEvent::Registered(r) => {
                ("server.registered", "server", Some(r.name.to_string()), None, Value::Object(fields))
            }
            ServerEvent::Updated(_) => ("server.updated", "server", name, None, before_after(before, fields)),
            ServerEvent::AccessChanged(_) => {
                ("server.access_changed", "server", name, None, before_after(before, fields))
            }
            ServerEvent::CredentialRotated(_) => {
                ("server.credential_rotated", "server", name, None, before_after(before, fields))
            }
            ServerEvent::ToolRulesChanged(_) => {
                ("server.tool_rules_changed", "server", name, None, before_after(before, fields))
            }
            ServerEvent::HealthChanged(health) => {
                let reason = health.detail.clone();
                ("server.health_changed", "server", name, reason, before_after(before, fields))
            }
            ServerEvent::ToolsDiscovered(_) => {
                ("server.tools_discovered", "server", name, None, before_after(before, fields))
            }
            ServerEvent::Suspended { reason } => {
                ("server.suspended", "server", name, Some(reason), before_after(before, fields))
            }
            ServerEvent::Resumed => ("server.resumed", "server", name, None, before_after(before, fields)),
            ServerEvent::Deregistered { name, reason } => {
                ("server.deregistered", "server", Some(name.to_string()), Some(reason), before_after(before, fields))
            }
        });
    }
    if let Some(decoded) = IdentityEvent::from_json(&event.event_type, &event.data) {
        let decoded = decoded.map_err(|e| e.to_string())?;
        let name = before.and_then(|b| b.name.clone());
        let changed = principal_fields(&decoded, before).map(|after| before_after(before, after));
        let changes = |source: Option<RoleSource>| {
            let mut changes = changed.clone().unwrap_or_else(|| json!({}));
            if let (Some(map), Some(source)) = (changes.as_object_mut(), source) {
                map.insert("source".into(), json!(source));
            }
            changes
        };
        return Ok(match decoded {
            IdentityEvent::PrincipalCreated(p) => (
                "principal.created",
                "principal",
                Some(p.display_name.clone()),
                None,
                json!({ "kind": p.kind, "roles": p.roles }),
            ),
            // The digest of a key stays out: it identifies a secret.
            IdentityEvent::ApiKeyIssued(k) => {
                let mut changes = json!({ "principal_id": k.principal_id, "prefix": k.prefix });
                if let Some(map) = changes.as_object_mut() {
                    if let Some(key_name) = &k.name {
                        map.insert("name".into(), json!(key_name));
                    }
                    if let Some(at) = k.expires_at {
                        map.insert("expires_at".into(), json!(at));
                    }
                    if !k.scopes.is_empty() {
                        map.insert("scopes".into(), json!(k.scopes));
                    }
                }
                ("api_key.issued", "api_key", Some(k.prefix.clone()), None, changes)
            }
            IdentityEvent::ApiKeyRevoked(k) => {
                ("api_key.revoked", "api_key", None, Some(k.reason), json!({ "principal_id": k.principal_id }))
            }
            IdentityEvent::RoleGranted(g) => {
                ("role.granted", "principal", name, Some(g.reason), changes(Some(g.source)))
            }
            IdentityEvent::RoleRevoked(r) => {
                ("role.revoked", "principal", name, Some(r.reason), changes(Some(r.source)))
            }
            IdentityEvent::UserDisabled(d) => ("user.disabled", "principal", name, Some(d.reason), changes(None)),
            IdentityEvent::UserEnabled(_) => ("user.enabled", "principal", name, None, changes(None)),
            // Never the secret, sealed or not: that a factor was enrolled or proven is what is audited.
            IdentityEvent::TotpEnrolled(_) => ("mfa.enrolled", "principal", name, None, json!({ "method": "totp" })),
            IdentityEvent::TotpVerified(_) => ("mfa.verified", "principal", name, None, json!({ "method": "totp" })),
            IdentityEvent::TotpRejected(_) => ("mfa.rejected", "principal", name, None, json!({ "method": "totp" })),
            IdentityEvent::TotpEnrolmentApproved(a) => (
                "mfa.enrolment_approved",
                "principal",
                name,
                None,
                json!({ "approved_by": a.approved_by, "expires_at": a.expires_at }),
            ),
            IdentityEvent::OwnersChanged(o) => ("owners.changed", "gateway", None, None, json!({ "owners": o.owners })),
            // The public key only: the sealed private key stays out of the trail.
            IdentityEvent::SigningKeyCreated(k) => (
                "signing_key.created",
                "signing_key",
                Some(k.kid.clone()),
                None,
                json!({ "kid": k.kid, "public_key": k.public_key }),
            ),
            IdentityEvent::SigningKeyRetired(k) => {
                ("signing_key.retired", "signing_key", Some(k.kid.clone()), None, json!({ "kid": k.kid }))
            }
            IdentityEvent::UserProvisioned(u) => (
                "user.provisioned",
                "principal",
                name,
                None,
                json!({ "idp": u.idp, "issuer": u.issuer, "subject": u.subject, "email": u.email }),
            ),
            IdentityEvent::UserLoggedIn(l) => {
                ("user.logged_in", "principal", name, None, json!({ "idp": l.idp, "amr": l.amr }))
            }
            IdentityEvent::UserProfileUpdated(p) => {
                let before_name = before.and_then(|b| b.name.clone());
                let changes = json!({ "before": { "display_name": before_name }, "after": { "display_name": p.display_name, "email": p.email } });
                ("user.profile_updated", "principal", Some(p.display_name), None, changes)
            }
            // The session secret's hash stays out: it identifies a bearer credential.
            IdentityEvent::SessionStarted(s) => (
                "session.started",
                "session",
                None,
                None,
                json!({
                    "principal_id": s.principal_id, "method": s.method, "device_id": s.device_id,
                    "user_agent": s.user_agent, "ip": s.ip, "expires_at": s.expires_at,
                }),
            ),
            IdentityEvent::SessionRefreshed(s) => {
                ("session.refreshed", "session", None, None, json!({ "principal_id": s.principal_id }))
            }
            IdentityEvent::SessionExpired(s) => {
                ("session.expired", "session", None, Some(s.reason), json!({ "principal_id": s.principal_id }))
            }
            IdentityEvent::SuspiciousSessionActivity(s) => (
                "session.suspicious",
                "session",
                None,
                Some(s.kind),
                json!({ "principal_id": s.principal_id, "ip": s.ip }),
            ),
            IdentityEvent::SessionRevoked(s) => (
                "session.revoked",
                "session",
                None,
                Some(s.reason),
                json!({ "principal_id": s.principal_id, "by": s.by }),
            ),
        });
    }
    if let Some(decoded) = ClientEvent::from_json(&event.event_type, &event.data) {
        return Ok(match decoded.map_err(|e| e.to_string())? {
            // What the client registered (its secret never: only whether it has one).
            ClientEvent::Registered(r) => {
                let mut fields = serde_json::to_value(&r.metadata).map_err(|e| e.to_string())?;
                if let Some(map) = fields.as_object_mut() {
                    map.insert("kind".into(), json!(r.kind));
                    map.insert("confidential".into(), json!(r.secret_sha256.is_some()));
                }
                let name = r.metadata.client_name.clone().unwrap_or_else(|| r.client_id.clone());
                ("client.registered", "client", Some(name), None, fields)
            }
            ClientEvent::Revoked(r) => (
                "client.revoked",
                "client",
                before.and_then(|b| b.name.clone()),
                Some(r.reason),
                json!({ "status": { "before": "active", "after": "revoked" } }),
            ),
        });
    }
    if let Some(decoded) = AuthorizationEvent::from_json(&event.event_type, &event.data) {
        // An MCP client's authorization, step by step, on the client's log: no code or token, only
        // digests and ids.
        return Ok(match decoded.map_err(|e| e.to_string())? {
            AuthorizationEvent::Started(e) => (
                "oauth.authorization_started",
                "client",
                None,
                None,
                json!({ "redirect_uri": e.redirect_uri, "scope": e.scope, "resource": e.resource,
                        "resource_absent": e.resource_absent }),
            ),
            AuthorizationEvent::Rejected(e) => {
                ("oauth.authorization_rejected", "client", None, Some(e.reason), json!({ "error": e.error }))
            }
            AuthorizationEvent::ConsentGranted(e) => {
                ("oauth.consent_granted", "client", None, None, json!({ "resource": e.resource, "idp": e.idp }))
            }
            AuthorizationEvent::ConsentDenied(e) => {
                ("oauth.consent_denied", "client", None, None, json!({ "resource": e.resource }))
            }
            AuthorizationEvent::CodeIssued(e) => (
                "oauth.code_issued",
                "client",
                None,
                None,
                json!({ "principal_id": e.principal_id, "session_id": e.session_id, "code_digest": e.code_digest }),
            ),
            AuthorizationEvent::CodeReplayed(e) => (
                "oauth.code_replayed",
                "client",
                None,
                Some("a code presented twice: its session is revoked".to_owned()),
                json!({ "session_id": e.session_id, "code_digest": e.code_digest }),
            ),
            AuthorizationEvent::RefreshTokenReuseDetected(e) => (
                "oauth.refresh_token_reused",
                "client",
                None,
                Some("a replaced refresh token was used again: the grant and its session are revoked".to_owned()),
                json!({ "grant_id": e.grant_id, "session_id": e.session_id }),
            ),
            AuthorizationEvent::TokenRefreshed(e) => (
                "oauth.token_refreshed",
                "client",
                None,
                None,
                json!({ "principal_id": e.principal_id, "session_id": e.session_id, "resource": e.resource,
                        "scope": e.scope, "jti": e.jti, "grant_type": e.grant_type }),
            ),
            AuthorizationEvent::TokenIssued(e) => (
                "oauth.token_issued",
                "client",
                None,
                None,
                json!({ "principal_id": e.principal_id, "session_id": e.session_id, "resource": e.resource,
                        "scope": e.scope, "jti": e.jti, "grant_type": e.grant_type }),
            ),
        });
    }
    match event.event_type.as_str() {
        GATEWAY_BOOTSTRAPPED => {
            let data: Value = serde_json::from_str(&event.data).map_err(|e| e.to_string())?;
            Ok(("gateway.bootstrapped", "gateway", None, None, json!({ "principal_id": data.get("principal_id") })))
        }
        other => Err(format!("no audit mapping for {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_audited_type_is_described_and_none_is_listed_twice() {
        let types: Vec<&str> = audited_types().collect();
        let unique: std::collections::BTreeSet<&str> = types.iter().copied().collect();
        assert_eq!(unique.len(), types.len(), "an event type is listed twice");
        // An event type nobody describes fails here, not in production: describe one of each with an
        // empty payload and accept only "does not decode" (the payload), never "no mapping".
        for event_type in types {
            let id = uuid::Uuid::from_u128(1);
            let event = eventstore::RecordedEvent {
                position: eventstore::Position::START,
                event_id: id,
                stream: eventstore::StreamName::from_parts("system", id).unwrap(),
                revision: 0,
                event_type: event_type.to_owned(),
                schema_version: 1,
                data: "{}".to_owned(),
                metadata: eventstore::Metadata::new(id, eventstore::Actor::system("test"), chrono::Utc::now()),
                hash: [0; 32],
            };
            if let Err(reason) = describe(&event, None) {
                assert!(!reason.starts_with("no audit mapping"), "{event_type}: {reason}");
            }
        }
    }
}

#[cfg(test)]
mod golden {
    //! The chain must hash the same forever: a rebuild of an old trail is checked against checkpoints
    //! signed years ago. A change to the mapping or to the canonical form that alters these hashes must be
    //! a new projection version with a migration story, never an accident.

    use eventstore::{Actor, ActorKind, Metadata, Position, StreamName};
    use uuid::Uuid;

    use super::*;

    fn recorded(event_type: &str, data: &str, n: u128) -> RecordedEvent {
        let at = chrono::DateTime::from_timestamp(1_800_000_000 + n as i64, 123_456_789).unwrap_or_default();
        let actor = Actor { id: "user-1".into(), kind: ActorKind::User };
        let metadata = Metadata::new(Uuid::from_u128(0xc0ffee + n), actor, at)
            .from_client(Some("203.0.113.7".parse().unwrap_or(std::net::Ipv4Addr::LOCALHOST.into())), Some("golden/1"));
        RecordedEvent {
            position: Position { transaction_id: 1000 + n as u64, global_position: n as u64 },
            event_id: Uuid::from_u128(n),
            stream: StreamName::from_parts("server", Uuid::from_u128(42)).unwrap_or_else(|_| unreachable!()),
            revision: n as u64,
            event_type: event_type.into(),
            schema_version: 1,
            data: data.into(),
            metadata,
            hash: [0; 32],
        }
    }

    #[test]
    fn the_canonical_entries_hash_as_they_always_have() {
        let events = [
            recorded(
                "ServerRegistered",
                r#"{"server_id":"00000000-0000-0000-0000-00000000002a","name":"golden","description":"d","tags":["a"],"transport":"sse","endpoint":"https://example.com/mcp","upstream_auth":{"mode":"none"},"access":{},"owner":"user-1"}"#,
                1,
            ),
            recorded("ServerUpdated", r#"{"description":"e"}"#, 2),
            recorded("ServerSuspended", r#"{"reason":"maintenance"}"#, 3),
        ];
        let mut previous = super::super::GENESIS;
        let mut state = None;
        let mut links = Vec::new();
        for (i, event) in events.iter().enumerate() {
            let entry = entry_for(event, i as i64 + 1, state.as_ref(), Some("Ada")).unwrap_or_else(|e| panic!("{e}"));
            state = state_after(event, state.as_ref()).unwrap_or_else(|e| panic!("{e}"));
            previous = entry.chain_hash(&previous);
            links.push(hex::encode(previous));
        }
        assert_eq!(links, GOLDEN, "the audit chain's hashes changed");
    }

    /// Chain format 2 ([`CHAIN_VERSION`]).
    const GOLDEN: [&str; 3] = [
        "63b3a21192555221a4c804bd226ed1c8a133762247419aff684df0f1fa4537f5",
        "5351ac6b1d9f1ca9e0fc1a4db2b23fea7178aa49388922e356dece24041d981f",
        "9b631644cd312e84422ea1ccec967cea2c3234eda0baadd20d9da6cccf710890",
    ];

    #[test]
    fn changes_carry_the_values_they_replace() {
        let registered = recorded(
            "ServerRegistered",
            r#"{"server_id":"00000000-0000-0000-0000-00000000002a","name":"golden","description":"d","tags":["a"],"transport":"sse","endpoint":"https://example.com/mcp","upstream_auth":{"mode":"none"},"access":{},"owner":"user-1"}"#,
            1,
        );
        let state = state_after(&registered, None).unwrap_or_else(|e| panic!("{e}"));
        let updated = recorded("ServerUpdated", r#"{"description":"e","endpoint":"https://example.org/mcp"}"#, 2);
        let entry = entry_for(&updated, 2, state.as_ref(), None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(entry.target_name.as_deref(), Some("golden"));
        assert_eq!(
            entry.changes,
            json!({
                "description": { "before": "d", "after": "e" },
                "url": { "before": "https://example.com/mcp", "after": "https://example.org/mcp" },
            })
        );
        let state = state_after(&updated, state.as_ref()).unwrap_or_else(|e| panic!("{e}"));
        let suspended = recorded("ServerSuspended", r#"{"reason":"maintenance"}"#, 3);
        let entry = entry_for(&suspended, 3, state.as_ref(), None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(entry.changes, json!({ "status": { "before": "active", "after": "suspended" } }));
        // Without what came before (a trail that starts mid-stream), the before values are unknown.
        let entry = entry_for(&suspended, 3, None, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(entry.changes, json!({ "status": { "before": null, "after": "suspended" } }));
    }
}
