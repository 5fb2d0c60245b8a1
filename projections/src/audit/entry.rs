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

impl AuditEntry {
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
