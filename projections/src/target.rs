//! Where a table projection writes: a schema of its own and a checkpoint row.
//!
//! A projection's SQL names its tables without a schema; the runner sets `search_path` to the target's
//! schema in every transaction. The live read model is in `rm_<name>`; a rebuild writes `rm_<name>__rebuild`
//! and swaps the schemas by renaming them, so readers switch from one complete model to the other.
//!
//! Readers query in READ COMMITTED (each statement resolves names and takes its snapshot together). A
//! REPEATABLE READ transaction whose snapshot predates a swap would resolve the new tables by name but
//! see only the rows committed before its snapshot.

use eventstore::{Position, RecordedEvent};
use sqlx::{PgConnection, PgPool};

use crate::{ProjectionError, TableProjection};

/// A schema and the checkpoint that says how far it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) schema: String,
    pub(crate) checkpoint: String,
}

/// A checkpoint row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub(crate) position: Option<Position>,
    pub(crate) generation: i64,
    pub(crate) version: i32,
}

impl Target {
    /// The live read model of `name`.
    pub(crate) fn live(name: &str) -> Self {
        Self { schema: schema_of(name), checkpoint: name.to_owned() }
    }

    /// The read model a rebuild of `name` writes before it replaces the live one.
    pub(crate) fn shadow(name: &str) -> Self {
        Self { schema: format!("{}__rebuild", schema_of(name)), checkpoint: format!("{name}#rebuild") }
    }
}

/// The live schema of projection `name`: `rm_<name>`.
pub fn schema_of(name: &str) -> String {
    format!("rm_{name}")
}

/// Checks a projection name: it becomes part of schema names, so only `[a-z][a-z0-9_]{0,47}` without
/// `__` (which separates the suffixes of the shadow and old schemas: no name can be another's shadow).
pub(crate) fn check_name(name: &str) -> Result<(), ProjectionError> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.contains("__")
        && name.len() <= 48;
    if valid { Ok(()) } else { Err(ProjectionError::InvalidName(name.to_owned())) }
}

/// Sets up a transaction writing the target: `search_path` to its schema (then `public`, for extensions),
/// plans by key, and commits that do not wait for the disk.
///
/// Plans by key ([`eventstore::INDEX_DRIVEN_PLANS`]): a projection's tables grow from empty faster than
/// autovacuum analyzes them, and its statements touch rows by key; planned from a nearly empty table's
/// statistics, a lookup scans the table, and a cached plan keeps scanning it as it grows (a replay from
/// zero became quadratic). Custom plans avoided that at a fifth of the machine's CPU in `bench api`.
///
/// Lazy commits: a read model is derived state. A crash may lose its last batches, checkpoint included
/// (both are in the transaction), and the runner applies them again from the log, which is durable.
/// Waiting for the flush made every batch queue behind the commands' commits (`bench api`).
pub(crate) async fn enter(tx: &mut PgConnection, target: &Target) -> Result<(), ProjectionError> {
    // The schema name is built from a checked projection name, never from input.
    let search_path = format!("{}, public", target.schema);
    let (mut names, mut values) = (vec!["search_path", "synchronous_commit"], vec![search_path, "off".to_owned()]);
    for (name, value) in eventstore::INDEX_DRIVEN_PLANS {
        names.push(name);
        values.push(value.to_owned());
    }
    sqlx::query("SELECT set_config(name, value, true) FROM unnest($1::text[], $2::text[]) AS s(name, value)")
        .bind(&names)
        .bind(&values)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Creates the target's schema, tables and checkpoint row if they do not exist yet.
pub(crate) async fn ensure(
    pool: &PgPool,
    projection: &dyn TableProjection,
    target: &Target,
) -> Result<(), ProjectionError> {
    let mut tx = pool.begin().await?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM es.checkpoints WHERE name = $1)")
        .bind(&target.checkpoint)
        .fetch_one(&mut *tx)
        .await?;
    if exists {
        return Ok(());
    }
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS {}", target.schema)))
        .execute(&mut *tx)
        .await?;
    enter(&mut tx, target).await?;
    projection.create(&mut tx).await?;
    sqlx::query("INSERT INTO es.checkpoints (name, transaction_id, global_position, version) VALUES ($1, 0, 0, $2)")
        .bind(&target.checkpoint)
        .bind(i32::try_from(projection.version()).unwrap_or(i32::MAX))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// The checkpoint row named `name`, if any; `lock` takes its row lock (inside a transaction).
pub(crate) async fn checkpoint(
    conn: &mut PgConnection,
    name: &str,
    lock: bool,
) -> Result<Option<Checkpoint>, ProjectionError> {
    let sql = if lock {
        "SELECT transaction_id, global_position, generation, version FROM es.checkpoints WHERE name = $1 FOR UPDATE"
    } else {
        "SELECT transaction_id, global_position, generation, version FROM es.checkpoints WHERE name = $1"
    };
    let row: Option<(i64, i64, i64, i32)> = sqlx::query_as(sql).bind(name).fetch_optional(&mut *conn).await?;
    Ok(row.map(|(tx, gp, generation, version)| Checkpoint { position: decode(tx, gp), generation, version }))
}

/// Applies `events` into the target and moves its checkpoint from `from` to `to`, inside `tx`; the
/// checkpoint moves only if it still is `from` in generation `generation`, otherwise nothing is written.
pub(crate) async fn apply_batch(
    tx: &mut PgConnection,
    projection: &dyn TableProjection,
    target: &Target,
    events: &[RecordedEvent],
    from: &Checkpoint,
    to: Option<Position>,
) -> Result<(), ProjectionError> {
    enter(tx, target).await?;
    let (from_tx, from_gp) = encode(from.position);
    // The checkpoint first, locked: a runner deposed since it read it (the leader lock is confirmed once
    // per poll) finds it moved before applying anything, instead of meeting rows the new leader already
    // changed (which would read as a broken contract, and halt it).
    let current: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM es.checkpoints
          WHERE name = $1 AND transaction_id = $2 AND global_position = $3 AND generation = $4 FOR UPDATE",
    )
    .bind(&target.checkpoint)
    .bind(from_tx)
    .bind(from_gp)
    .bind(from.generation)
    .fetch_optional(&mut *tx)
    .await?;
    if current.is_none() {
        return Err(ProjectionError::CheckpointMoved(target.checkpoint.clone()));
    }
    if !events.is_empty() {
        projection.apply(tx, events).await?;
    }
    let (to_tx, to_gp) = encode(to);
    let moved = sqlx::query(
        "UPDATE es.checkpoints SET transaction_id = $4, global_position = $5, updated_at = now()
          WHERE name = $1 AND transaction_id = $2 AND global_position = $3 AND generation = $6",
    )
    .bind(&target.checkpoint)
    .bind(from_tx)
    .bind(from_gp)
    .bind(to_tx)
    .bind(to_gp)
    .bind(from.generation)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if moved != 1 {
        return Err(ProjectionError::CheckpointMoved(target.checkpoint.clone()));
    }
    Ok(())
}

/// The checkpoint's columns; `(0, 0)` stands for "nothing yet".
pub(crate) fn encode(position: Option<Position>) -> (i64, i64) {
    position.map_or((0, 0), |p| {
        (i64::try_from(p.transaction_id).unwrap_or(i64::MAX), i64::try_from(p.global_position).unwrap_or(i64::MAX))
    })
}

pub(crate) fn decode(tx: i64, gp: i64) -> Option<Position> {
    ((tx, gp) != (0, 0)).then_some(Position { transaction_id: tx as u64, global_position: gp as u64 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_collide_or_escape_a_schema_name_are_refused() {
        for good in ["registry", "authz_v2", "a"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Registry", "a-b", "x__rebuild", "x__old", "1st", "a;drop", "a b", &"a".repeat(49)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert_eq!(Target::shadow("registry").schema, "rm_registry__rebuild");
    }
}
