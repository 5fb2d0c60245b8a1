//! An audit entry and its place in the chain.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The link before the first entry.
pub const GENESIS: [u8; 32] = [0; 32];

/// One audited fact. Field order is the canonical order: the chain hashes this struct's JSON.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct AuditEntry {
    /// 1-based, dense, in `$all` order.
    pub seq: i64,
    /// `$all` position of the event: transaction id.
    pub tx: i64,
    /// `$all` position of the event: global position.
    pub gp: i64,
    /// The event.
    pub event_id: Uuid,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// Who: principal id.
    pub actor_id: String,
    /// Who: `user`, `service`, `system`, …
    pub actor_kind: String,
    /// Who: the principal's display name at the time, when the trail knows it.
    pub actor_name: Option<String>,
    /// Stable dotted name, e.g. `server.registered`.
    pub action: String,
    /// What kind of thing it happened to.
    pub target_kind: String,
    /// Its id.
    pub target_id: String,
    /// Its name at the time, when it has one.
    pub target_name: Option<String>,
    /// `success` (events are facts; refusals arrive as their own events).
    pub outcome: String,
    /// Where from.
    pub source_ip: Option<String>,
    /// With what.
    pub user_agent: Option<String>,
    /// The request or flow.
    pub correlation_id: Uuid,
    /// The message that caused it.
    pub causation_id: Option<Uuid>,
    /// Why, when given.
    pub reason: Option<String>,
    /// Changed fields with their new values (never secrets).
    pub changes: serde_json::Value,
}

/// How a U+0000 is stored: PostgreSQL's `text` and `jsonb` refuse the character itself, and an event
/// already in the log that carries one must not stop the trail (commands refuse it today; older logs
/// or another writer may hold one). Escaped before the entry is hashed, so every backend chains the same
/// bytes and a rebuild reproduces them.
pub const NUL_ESCAPE: &str = "\\u0000";

/// `text` with every U+0000 written as [`NUL_ESCAPE`].
pub(crate) fn escape_nul(text: &mut String) {
    if text.contains('\0') {
        *text = text.replace('\0', NUL_ESCAPE);
    }
}

/// Every string in `value`, keys included, with U+0000 escaped.
pub(crate) fn escape_nul_in_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => escape_nul(s),
        serde_json::Value::Array(items) => items.iter_mut().for_each(escape_nul_in_json),
        serde_json::Value::Object(map) if map.keys().any(|k| k.contains('\0')) => {
            let escaped = std::mem::take(map).into_iter().map(|(mut k, mut v)| {
                escape_nul(&mut k);
                escape_nul_in_json(&mut v);
                (k, v)
            });
            *map = escaped.collect();
        }
        serde_json::Value::Object(map) => map.values_mut().for_each(escape_nul_in_json),
        _ => {}
    }
}

impl AuditEntry {
    /// The entry with every U+0000 in its text escaped (see [`NUL_ESCAPE`]).
    pub fn storable(mut self) -> Self {
        for text in [&mut self.actor_id, &mut self.actor_kind, &mut self.action, &mut self.target_kind] {
            escape_nul(text);
        }
        for text in [&mut self.target_id, &mut self.outcome] {
            escape_nul(text);
        }
        for text in
            [&mut self.actor_name, &mut self.target_name, &mut self.source_ip, &mut self.user_agent, &mut self.reason]
                .into_iter()
                .flatten()
        {
            escape_nul(text);
        }
        escape_nul_in_json(&mut self.changes);
        self
    }

    /// The canonical bytes the chain hashes.
    pub fn canonical(&self) -> Vec<u8> {
        // A struct of plain fields and a `Value` whose maps are sorted: serialisation cannot fail and is
        // the same on every run.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The entry's link: SHA-256(previous link ‖ canonical entry).
    pub fn chain_hash(&self, previous: &[u8; 32]) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(previous);
        hasher.update(self.canonical());
        hasher.finalize().into()
    }
}
