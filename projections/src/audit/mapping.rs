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

#[cfg(test)]
mod golden {
    //! The chain must hash the same forever: a rebuild of an old trail is checked against checkpoints
    //! signed years ago. A change to the mapping or to the canonical form that alters these hashes must be
    //! a new projection version with a migration story, never an accident.

    use eventstore::{Actor, ActorKind, Metadata, Position, StreamName};
    use uuid::Uuid;

    use super::*;

    fn recorded(event_type: &str, data: &str, n: u128) -> RecordedEvent {
        let at = DateTime::from_timestamp(1_800_000_000 + n as i64, 123_456_789).unwrap_or_default();
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
        let mut name = None;
        let mut links = Vec::new();
        for (i, event) in events.iter().enumerate() {
            let entry = entry_for(event, i as i64 + 1, name.clone()).unwrap_or_else(|e| panic!("{e}"));
            name = entry.target_name.clone();
            previous = entry.chain_hash(&previous);
            links.push(hex::encode(previous));
        }
        assert_eq!(links, GOLDEN, "the audit chain's hashes changed");
    }

    const GOLDEN: [&str; 3] = [
        "47402d8cf1647f16eb8336b4070c49bc2157df291f3daa43622dd79f6362621a",
        "7b9034124275a6e0b3f9e003ba53e51d12ed8aa4c46d891e77c8e402512267d6",
        "ca545dd4c657ea44ae21648ca4238d34076b86e902ea56704a98524d0e2b6b87",
    ];
}
