//! Folds every event into `rm_audit.entries`, chaining each entry to the one before.

use std::collections::{BTreeSet, HashMap, HashSet};

use async_trait::async_trait;
use eventstore::RecordedEvent;
use sqlx::PgConnection;

use super::entry::GENESIS;
use super::mapping::{AUDITED_CATEGORIES, TargetState, audited_types, entry_for, state_after};
use crate::{EventFilter, ProjectionError, TableProjection};

/// The name of the projection, its checkpoint and (as `rm_audit`) its schema.
pub(crate) const NAME: &str = "audit";

/// The audit projection.
pub struct AuditProjection {
    filter: EventFilter,
}

impl Default for AuditProjection {
    fn default() -> Self {
        Self { filter: EventFilter::new(AUDITED_CATEGORIES, audited_types()) }
    }
}

#[async_trait]
impl TableProjection for AuditProjection {
    fn name(&self) -> &str {
        NAME
    }

    fn version(&self) -> u32 {
        // 3: entries in chain format 2 (before and after values), names and fields in `target_names`.
        3
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
                 actor_name     text,
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
             CREATE INDEX entries_correlation ON entries (correlation_id);
             -- The latest name and audited fields of each named target: the name entries of later
             -- events record, and the before values of their changes. Kept apart from the entries,
             -- which retention prunes.
             CREATE TABLE target_names (
                 target_kind text  NOT NULL,
                 target_id   text  NOT NULL,
                 name        text  NOT NULL,
                 fields      jsonb NOT NULL,
                 PRIMARY KEY (target_kind, target_id)
             );",
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
        let (seq, previous) = match last {
            Some((seq, hash)) => (seq, <[u8; 32]>::try_from(hash.as_slice()).unwrap_or(GENESIS)),
            None => (0, GENESIS),
        };
        let wanted = wanted_targets(events);
        let (kinds, ids): (Vec<&str>, Vec<&str>) = wanted.into_iter().unzip();
        let known: Vec<(String, String, String, serde_json::Value)> = sqlx::query_as(
            // One key lookup per wanted target: a lateral subquery with a limit is never turned into a
            // join, so no plan can scan `target_names` whole (see `eventstore::INDEX_DRIVEN_PLANS`).
            "SELECT k.kind, k.id, t.name, t.fields
               FROM unnest($1::text[], $2::text[]) AS k(kind, id)
              CROSS JOIN LATERAL (SELECT name, fields FROM target_names
                                   WHERE target_kind = k.kind AND target_id = k.id LIMIT 1) t",
        )
        .bind(&kinds)
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        let mut states: HashMap<(String, String), TargetState> = known
            .into_iter()
            .map(|(kind, id, name, fields)| ((kind, id), TargetState { name: Some(name), fields }))
            .collect();
        let mut rows = Rows::default();
        for (entry, previous, hash) in fold(events, seq, previous, &mut states)? {
            rows.push(entry, previous, hash);
        }
        let write_failed = |source: sqlx::Error| ProjectionError::Write {
            projection: NAME.to_owned(),
            position: events.first().map(|e| e.position).unwrap_or(eventstore::Position::START),
            source,
        };
        rows.insert(tx).await.map_err(write_failed)?;
        // The targets this batch touched or looked up, as they are after it.
        let (mut kinds, mut ids, mut names, mut fields) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for ((kind, id), state) in states {
            if let Some(name) = state.name {
                kinds.push(kind);
                ids.push(id);
                names.push(name);
                fields.push(state.fields);
            }
        }
        if !ids.is_empty() {
            sqlx::query(
                "INSERT INTO target_names (target_kind, target_id, name, fields)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[])
                 ON CONFLICT (target_kind, target_id) DO UPDATE SET name = excluded.name, fields = excluded.fields",
            )
            .bind(&kinds)
            .bind(&ids)
            .bind(&names)
            .bind(&fields)
            .execute(&mut *tx)
            .await
            .map_err(write_failed)?;
        }
        Ok(())
    }
}

/// The targets a batch needs the names and fields of, as (kind, id): the servers it touches but does not
/// register (server events after the registration carry neither the name nor the values they replace; a
/// registration, revision 0, sets them for the rest of the batch), and the principals who act in it (no
/// event carries its actor's name).
pub(crate) fn wanted_targets(events: &[RecordedEvent]) -> BTreeSet<(&str, &str)> {
    let registered: HashSet<&str> =
        events.iter().filter(|e| target_kind(e).is_some() && e.revision == 0).map(|e| e.stream.id()).collect();
    events
        .iter()
        .filter(|e| !registered.contains(e.stream.id()))
        .filter_map(|e| target_kind(e).map(|kind| (kind, e.stream.id())))
        .chain(events.iter().map(|e| ("principal", e.metadata.actor.id.as_str())))
        .collect()
}

/// A chained entry: the entry, the link before it, its own link.
pub(crate) type Chained = (crate::audit::AuditEntry, [u8; 32], [u8; 32]);

/// The entries of `events`, numbered after `seq` and chained after `previous`, with `states` (the names
/// and fields of targets, as known before the batch) carried through the batch: the same on every backend.
pub(crate) fn fold(
    events: &[RecordedEvent],
    mut seq: i64,
    mut previous: [u8; 32],
    states: &mut HashMap<(String, String), TargetState>,
) -> Result<Vec<Chained>, ProjectionError> {
    let mut chained = Vec::with_capacity(events.len());
    for event in events {
        let fail =
            |reason: String| ProjectionError::Apply { projection: NAME.to_owned(), position: event.position, reason };
        let key = |kind: &str, id: &str| (kind.to_owned(), id.to_owned());
        let actor_name = states.get(&key("principal", &event.metadata.actor.id)).and_then(|s| s.name.as_deref());
        let target = target_kind(event).map(|kind| key(kind, event.stream.id()));
        let before = target.as_ref().and_then(|k| states.get(k));
        let entry = entry_for(event, seq + 1, before, actor_name).map_err(fail)?;
        if let Some(mut after) = state_after(event, before).map_err(fail)? {
            after.name.iter_mut().for_each(crate::audit::entry::escape_nul);
            crate::audit::entry::escape_nul_in_json(&mut after.fields);
            states.insert(key(&entry.target_kind, &entry.target_id), after);
        }
        let hash = entry.chain_hash(&previous);
        chained.push((entry, previous, hash));
        (seq, previous) = (seq + 1, hash);
    }
    Ok(chained)
}

/// The kind of target whose name and fields the trail follows across events: servers and principals
/// (events after the first carry neither the name nor the values they replace).
fn target_kind(event: &RecordedEvent) -> Option<&'static str> {
    match event.stream.category() {
        domain::server::CATEGORY => Some("server"),
        domain::identity::PRINCIPAL_CATEGORY => Some("principal"),
        _ => None,
    }
}

/// A batch of entries as columns, written by one statement.
#[derive(Default)]
struct Rows {
    seq: Vec<i64>,
    tx: Vec<i64>,
    gp: Vec<i64>,
    event_id: Vec<uuid::Uuid>,
    occurred_at: Vec<chrono::DateTime<chrono::Utc>>,
    actor_id: Vec<String>,
    actor_kind: Vec<String>,
    actor_name: Vec<Option<String>>,
    action: Vec<String>,
    target_kind: Vec<String>,
    target_id: Vec<String>,
    target_name: Vec<Option<String>>,
    outcome: Vec<String>,
    source_ip: Vec<Option<String>>,
    user_agent: Vec<Option<String>>,
    correlation_id: Vec<uuid::Uuid>,
    causation_id: Vec<Option<uuid::Uuid>>,
    reason: Vec<Option<String>>,
    changes: Vec<serde_json::Value>,
    prev_hash: Vec<Vec<u8>>,
    entry_hash: Vec<Vec<u8>>,
}

impl Rows {
    fn push(&mut self, e: crate::audit::AuditEntry, previous: [u8; 32], hash: [u8; 32]) {
        self.seq.push(e.seq);
        self.tx.push(e.tx);
        self.gp.push(e.gp);
        self.event_id.push(e.event_id);
        self.occurred_at.push(e.occurred_at);
        self.actor_id.push(e.actor_id);
        self.actor_kind.push(e.actor_kind);
        self.actor_name.push(e.actor_name);
        self.action.push(e.action);
        self.target_kind.push(e.target_kind);
        self.target_id.push(e.target_id);
        self.target_name.push(e.target_name);
        self.outcome.push(e.outcome);
        self.source_ip.push(e.source_ip);
        self.user_agent.push(e.user_agent);
        self.correlation_id.push(e.correlation_id);
        self.causation_id.push(e.causation_id);
        self.reason.push(e.reason);
        self.changes.push(e.changes);
        self.prev_hash.push(previous.to_vec());
        self.entry_hash.push(hash.to_vec());
    }

    async fn insert(self, tx: &mut PgConnection) -> Result<(), sqlx::Error> {
        if self.seq.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO entries (seq, tx, gp, event_id, occurred_at, actor_id, actor_kind, actor_name, action,
                                  target_kind, target_id, target_name, outcome, source_ip, user_agent,
                                  correlation_id, causation_id, reason, changes, prev_hash, entry_hash)
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::uuid[], $5::timestamptz[],
                                  $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[],
                                  $12::text[], $13::text[], $14::text[], $15::text[], $16::uuid[], $17::uuid[],
                                  $18::text[], $19::jsonb[], $20::bytea[], $21::bytea[])",
        )
        .bind(self.seq)
        .bind(self.tx)
        .bind(self.gp)
        .bind(self.event_id)
        .bind(self.occurred_at)
        .bind(self.actor_id)
        .bind(self.actor_kind)
        .bind(self.actor_name)
        .bind(self.action)
        .bind(self.target_kind)
        .bind(self.target_id)
        .bind(self.target_name)
        .bind(self.outcome)
        .bind(self.source_ip)
        .bind(self.user_agent)
        .bind(self.correlation_id)
        .bind(self.causation_id)
        .bind(self.reason)
        .bind(self.changes)
        .bind(self.prev_hash)
        .bind(self.entry_hash)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}
