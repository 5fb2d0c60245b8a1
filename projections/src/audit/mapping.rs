//! Events to audit entries. Every event type the gateway writes is listed here; an event of an audited
//! category with a type missing from the list halts the projection (the test below fails first).

use chrono::{DateTime, Utc};
use domain::access::AccessEvent;
use domain::identity::IdentityEvent;
use domain::server::ServerEvent;
use eventstore::RecordedEvent;
use serde_json::{Value, json};

use super::entry::AuditEntry;

/// The stream categories the audit trail covers: all of the gateway's.
pub const AUDITED_CATEGORIES: [&str; 5] = ["server", "principal", "apikey", "system", "access"];

/// Every event type with an audit mapping.
pub const AUDITED_TYPES: [&str; 12] = [
    "ServerRegistered",
    "ServerUpdated",
    "ServerAccessChanged",
    "ServerCredentialRotated",
    "ServerSuspended",
    "ServerResumed",
    "ServerDeregistered",
    "PrincipalCreated",
    "ApiKeyIssued",
    "GatewayBootstrapped",
    "AccessDenied",
    "AuditTrailRead",
];

/// The entry for `event`, numbered `seq`; `target_name` is the name the target had before (for events
/// that do not carry it). `Err` when the payload does not decode.
pub fn entry_for(event: &RecordedEvent, seq: i64, target_name: Option<String>) -> Result<AuditEntry, String> {
    let (action, target_kind, target_name, reason, changes, target_id) = describe(event, target_name)?;
    let outcome = if action == "access.denied" { "denied" } else { "success" };
    let m = &event.metadata;
    Ok(AuditEntry {
        seq,
        tx: event.position.transaction_id as i64,
        gp: event.position.global_position as i64,
        event_id: event.event_id,
        occurred_at: to_micros(m.occurred_at),
        actor_id: m.actor.id.clone(),
        actor_kind: serde_json::to_value(m.actor.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
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
    })
}

/// PostgreSQL keeps microseconds: the hashed time must be the stored time.
fn to_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
}

/// Action, target kind, target name, reason, changes, and the target id when it is not the stream's id.
type Described = (&'static str, &'static str, Option<String>, Option<String>, Value, Option<String>);

fn describe(event: &RecordedEvent, name: Option<String>) -> Result<Described, String> {
    let (action, kind, name, reason, changes) = match describe_access(event)? {
        Some(access) => return Ok(access),
        None => describe_change(event, name)?,
    };
    Ok((action, kind, name, reason, changes, None))
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
    }))
}

type Change = (&'static str, &'static str, Option<String>, Option<String>, Value);

fn describe_change(event: &RecordedEvent, name: Option<String>) -> Result<Change, String> {
    if let Some(decoded) = ServerEvent::from_json(&event.event_type, &event.data) {
        let decoded = decoded.map_err(|e| e.to_string())?;
        return Ok(match decoded {
            ServerEvent::Registered(r) => (
                "server.registered",
                "server",
                Some(r.name.to_string()),
                None,
                json!({
                    "name": r.name, "title": r.title, "description": r.description, "tags": r.tags,
                    "transport": r.transport, "url": r.endpoint, "auth_mode": r.upstream_auth.kind(),
                    "access": r.access, "owner": r.owner,
                }),
            ),
            ServerEvent::Updated(changes) => {
                ("server.updated", "server", name, None, serde_json::to_value(&changes).map_err(|e| e.to_string())?)
            }
            ServerEvent::AccessChanged(access) => {
                ("server.access_changed", "server", name, None, json!({ "access": access }))
            }
            // The mode only: sealed values are secrets at rest, not audit material.
            ServerEvent::CredentialRotated(auth) => {
                ("server.credential_rotated", "server", name, None, json!({ "auth_mode": auth.kind() }))
            }
            ServerEvent::Suspended { reason } => ("server.suspended", "server", name, Some(reason), json!({})),
            ServerEvent::Resumed => ("server.resumed", "server", name, None, json!({})),
            ServerEvent::Deregistered { name, reason } => {
                ("server.deregistered", "server", Some(name.to_string()), Some(reason), json!({}))
            }
        });
    }
    if let Some(decoded) = IdentityEvent::from_json(&event.event_type, &event.data) {
        return Ok(match decoded.map_err(|e| e.to_string())? {
            IdentityEvent::PrincipalCreated(p) => (
                "principal.created",
                "principal",
                Some(p.display_name.clone()),
                None,
                json!({ "kind": p.kind, "roles": p.roles }),
            ),
            // The digest of a key stays out: it identifies a secret.
            IdentityEvent::ApiKeyIssued(k) => (
                "api_key.issued",
                "api_key",
                Some(k.prefix.clone()),
                None,
                json!({ "principal_id": k.principal_id, "prefix": k.prefix }),
            ),
        });
    }
    match event.event_type.as_str() {
        "GatewayBootstrapped" => {
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
    fn every_event_type_of_the_gateway_has_an_audit_mapping() {
        for event_type in ServerEvent::TYPES.iter().chain(IdentityEvent::TYPES.iter()).chain(AccessEvent::TYPES.iter())
        {
            assert!(AUDITED_TYPES.contains(event_type), "{event_type} has no audit mapping");
        }
    }
}
