//! Folds every event into `rm_audit.entries`, chaining each entry to the one before.

use async_trait::async_trait;
use eventstore::RecordedEvent;
use sqlx::PgConnection;

use super::entry::GENESIS;
use super::mapping::{AUDITED_CATEGORIES, AUDITED_TYPES, entry_for};
use crate::{EventFilter, ProjectionError, TableProjection};

/// The name of the projection, its checkpoint and (as `rm_audit`) its schema.
pub(crate) const NAME: &str = "audit";

/// The audit projection.
pub struct AuditProjection {
    filter: EventFilter,
}

impl Default for AuditProjection {
    fn default() -> Self {
        Self { filter: EventFilter::new(AUDITED_CATEGORIES, AUDITED_TYPES) }
    }
}

#[async_trait]
impl TableProjection for AuditProjection {
    fn name(&self) -> &str {
        NAME
    }

    fn version(&self) -> u32 {
        1
    }

    fn filter(&self) -> &EventFilter {
        &self.filter
    }

    async fn create(&self, tx: &mut PgConnection) -> Result<(), ProjectionError> {
        sqlx::raw_sql(
            "CREATE TABLE entries (
                 seq            bigint      PRIMARY KEY,
                 tx             bigint      NOT NULL,
                 gp             bigint      NOT NULL,
                 event_id       uuid        NOT NULL UNIQUE,
                 occurred_at    timestamptz NOT NULL,
                 actor_id       text        NOT NULL,
                 actor_kind     text        NOT NULL,
                 action         text        NOT NULL,
                 target_kind    text        NOT NULL,
                 target_id      text        NOT NULL,
                 target_name    text,
                 outcome        text        NOT NULL,
                 source_ip      text,
                 user_agent     text,
                 correlation_id uuid        NOT NULL,
                 causation_id   uuid,
                 reason         text,
                 changes        jsonb       NOT NULL,
                 prev_hash      bytea       NOT NULL,
                 entry_hash     bytea       NOT NULL
             );
             CREATE INDEX entries_actor_time ON entries (actor_id, occurred_at, seq);
             CREATE INDEX entries_target ON entries (target_kind, target_id, seq);
             CREATE INDEX entries_action ON entries (action text_pattern_ops, seq);
             CREATE INDEX entries_time ON entries (occurred_at, seq);
             CREATE INDEX entries_correlation ON entries (correlation_id);",
        )
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    async fn apply(&self, tx: &mut PgConnection, events: &[RecordedEvent]) -> Result<(), ProjectionError> {
        let last: Option<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT seq, entry_hash FROM entries ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *tx)
                .await?;
        let (mut seq, mut previous) = match last {
            Some((seq, hash)) => (seq, <[u8; 32]>::try_from(hash.as_slice()).unwrap_or(GENESIS)),
            None => (0, GENESIS),
        };
        for event in events {
            let fail = |reason: String| ProjectionError::Apply {
                projection: NAME.to_owned(),
                position: event.position,
                reason,
            };
            // The target's name as the trail last recorded it, for events that do not carry it.
            let known_name: Option<String> = sqlx::query_scalar(
                "SELECT target_name FROM entries WHERE target_kind = $1 AND target_id = $2 AND target_name IS NOT NULL
                  ORDER BY seq DESC LIMIT 1",
            )
            .bind(event.stream.category())
            .bind(event.stream.id())
            .fetch_optional(&mut *tx)
            .await?;
            let entry = entry_for(event, seq + 1, known_name).map_err(fail)?;
            let hash = entry.chain_hash(&previous);
            sqlx::query(
                "INSERT INTO entries (seq, tx, gp, event_id, occurred_at, actor_id, actor_kind, action, target_kind,
                                      target_id, target_name, outcome, source_ip, user_agent, correlation_id,
                                      causation_id, reason, changes, prev_hash, entry_hash)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)",
            )
            .bind(entry.seq)
            .bind(entry.tx)
            .bind(entry.gp)
            .bind(entry.event_id)
            .bind(entry.occurred_at)
            .bind(&entry.actor_id)
            .bind(&entry.actor_kind)
            .bind(&entry.action)
            .bind(&entry.target_kind)
            .bind(&entry.target_id)
            .bind(&entry.target_name)
            .bind(&entry.outcome)
            .bind(&entry.source_ip)
            .bind(&entry.user_agent)
            .bind(entry.correlation_id)
            .bind(entry.causation_id)
            .bind(&entry.reason)
            .bind(&entry.changes)
            .bind(previous.as_slice())
            .bind(hash.as_slice())
            .execute(&mut *tx)
            .await?;
            (seq, previous) = (entry.seq, hash);
        }
        Ok(())
    }
}
