//! Querying the audit trail: filters on the indexed columns, keyset pagination on the entry number.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::ProjectionError;
use crate::sql::escape_like;

/// What to find. Every filter is optional; they combine with AND.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// The acting principal.
    pub actor: Option<String>,
    /// Actions starting with this (`server.` finds every server action).
    pub action_prefix: Option<String>,
    /// The target's kind.
    pub target_kind: Option<String>,
    /// The target's id.
    pub target_id: Option<String>,
    /// `success` or `denied`.
    pub outcome: Option<String>,
    /// At or after.
    pub from: Option<DateTime<Utc>>,
    /// Before.
    pub to: Option<DateTime<Utc>>,
    /// One request or flow.
    pub correlation_id: Option<Uuid>,
    /// Entries after this number (the cursor).
    pub after: Option<i64>,
    /// Entries up to this number.
    pub through: Option<i64>,
    /// Page size (1 to 500).
    pub limit: u32,
}

/// One entry as the API shows it, with its link.
#[derive(Debug, Clone, Serialize, serde::Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AuditRecord {
    /// Entry number.
    pub seq: i64,
    /// `$all` position.
    pub position: String,
    /// The event.
    pub event_id: Uuid,
    /// When.
    pub occurred_at: DateTime<Utc>,
    /// Who.
    pub actor_id: String,
    /// What kind of principal.
    pub actor_kind: String,
    /// Who, by name at the time.
    pub actor_name: Option<String>,
    /// What.
    pub action: String,
    /// On what kind of thing.
    pub target_kind: String,
    /// Its id.
    pub target_id: String,
    /// Its name at the time.
    pub target_name: Option<String>,
    /// `success` or `denied`.
    pub outcome: String,
    /// From where.
    pub source_ip: Option<String>,
    /// With what.
    pub user_agent: Option<String>,
    /// The request or flow.
    pub correlation_id: Uuid,
    /// The causing message.
    pub causation_id: Option<Uuid>,
    /// Why.
    pub reason: Option<String>,
    /// Changed fields.
    #[schema(value_type = Object)]
    pub changes: serde_json::Value,
    /// The previous entry's link, hex (so that an exported range verifies on its own).
    pub prev_hash: String,
    /// The entry's chain link, hex.
    pub entry_hash: String,
}

impl AuditRecord {
    /// The entry as the chain hashed it.
    pub fn entry(&self) -> Option<super::AuditEntry> {
        let (tx, gp) = self.position.split_once(':')?;
        Some(super::AuditEntry {
            seq: self.seq,
            tx: tx.parse().ok()?,
            gp: gp.parse().ok()?,
            event_id: self.event_id,
            occurred_at: self.occurred_at,
            actor_id: self.actor_id.clone(),
            actor_kind: self.actor_kind.clone(),
            actor_name: self.actor_name.clone(),
            action: self.action.clone(),
            target_kind: self.target_kind.clone(),
            target_id: self.target_id.clone(),
            target_name: self.target_name.clone(),
            outcome: self.outcome.clone(),
            source_ip: self.source_ip.clone(),
            user_agent: self.user_agent.clone(),
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            reason: self.reason.clone(),
            changes: self.changes.clone(),
        })
    }
}

/// A page of entries in number order, and the number to continue after.
pub async fn query(pool: &PgPool, filter: &AuditFilter) -> Result<(Vec<AuditRecord>, Option<i64>), ProjectionError> {
    let limit = filter.limit.clamp(1, 500);
    let prefix = filter.action_prefix.as_ref().map(|p| format!("{}%", escape_like(p)));
    let records: Vec<AuditRecord> = sqlx::query_as(
        "SELECT seq, tx::text || ':' || gp::text AS position, event_id, occurred_at, actor_id, actor_kind, actor_name, action,
                target_kind, target_id, target_name, outcome, source_ip, user_agent, correlation_id, causation_id,
                reason, changes, encode(prev_hash, 'hex') AS prev_hash, encode(entry_hash, 'hex') AS entry_hash
           FROM rm_audit.entries
          WHERE ($1::text IS NULL OR actor_id = $1)
            AND ($2::text IS NULL OR action LIKE $2)
            AND ($3::text IS NULL OR target_kind = $3)
            AND ($4::text IS NULL OR target_id = $4)
            AND ($5::text IS NULL OR outcome = $5)
            AND ($6::timestamptz IS NULL OR occurred_at >= $6)
            AND ($7::timestamptz IS NULL OR occurred_at < $7)
            AND ($8::uuid IS NULL OR correlation_id = $8)
            AND seq > $9
            AND ($11::bigint IS NULL OR seq <= $11)
          ORDER BY seq LIMIT $10",
    )
    .bind(&filter.actor)
    .bind(prefix)
    .bind(&filter.target_kind)
    .bind(&filter.target_id)
    .bind(&filter.outcome)
    .bind(filter.from)
    .bind(filter.to)
    .bind(filter.correlation_id)
    .bind(filter.after.unwrap_or(0))
    .bind(i64::from(limit) + 1)
    .bind(filter.through)
    .fetch_all(pool)
    .await?;
    Ok(crate::sql::page(records, limit, |r| r.seq))
}
