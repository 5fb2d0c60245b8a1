//! Rebuild by replay: a table projection is built again from the whole store into a shadow schema while
//! the live read model keeps serving, then the two are swapped in one transaction.
//!
//! 1. The shadow schema `rm_<name>__rebuild` is created empty (leftovers of a failed rebuild are dropped)
//!    and filled from `$all` up to the head seen at the start, in batches with their own checkpoint.
//! 2. The swap transaction locks the live checkpoint row (the live runner's next commit waits on it),
//!    brings the shadow exactly up to the live position (or the live checkpoint up to the shadow's),
//!    renames the live schema away and the shadow schema into its place, and moves the live checkpoint
//!    to the shadow's position with a new *generation*. The live runner's waiting commit then fails its
//!    compare-and-set (generation), rolls back its writes to the old tables, and resumes on the new ones.
//! 3. The old schema is dropped.
//!
//! Readers see the old model or the new one, never a partial one: a schema rename is atomic. Rebuilds are
//! deterministic because `apply` is (no clock, no randomness).

use eventstore::{EventStore, LeaderLock, PgEventStore, Position};

use crate::table_runner::split_page;
use crate::target::{self, Checkpoint, Target, check_name};
use crate::{ProjectionError, RunnerOptions, TableProjection};

/// What a rebuild did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebuildReport {
    /// Events applied into the new read model.
    pub applied: u64,
    /// The position the new read model was swapped in at.
    pub position: Option<Position>,
}

/// Rebuilds `projection`'s read model from the store and swaps it in; one rebuild per projection at a
/// time (a leader lock, confirmed between batches). The live runner may keep running meanwhile, and
/// runs this itself when the projection's version changed.
pub async fn rebuild(
    store: &PgEventStore,
    projection: &dyn TableProjection,
    options: RunnerOptions,
) -> Result<RebuildReport, ProjectionError> {
    let name = projection.name();
    check_name(name)?;
    let key = format!("projection-rebuild:{name}");
    let mut lock = LeaderLock::acquire(store.pool(), &key, options.poll_interval).await?;
    let pool = store.pool();
    let (live, shadow) = (Target::live(name), Target::shadow(name));
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {} CASCADE", shadow.schema))).execute(pool).await?;
    sqlx::query("DELETE FROM es.checkpoints WHERE name = $1").bind(&shadow.checkpoint).execute(pool).await?;
    target::ensure(pool, projection, &shadow).await?;
    let mut checkpoint = Checkpoint { position: None, generation: 0, version: 0 };
    let mut applied = 0;

    // 1. Up to the head seen at the start, while the live model serves.
    let head = store.head().await?;
    while checkpoint.position < head {
        lock.confirm().await?;
        let mut tx = pool.begin().await?;
        let Some(n) = apply_page(store, projection, &shadow, &mut tx, &mut checkpoint, None, options).await? else {
            break;
        };
        tx.commit().await?;
        applied += n;
    }

    // 2. The swap.
    let mut tx = pool.begin().await?;
    let current = target::checkpoint(&mut tx, &live.checkpoint, true).await?;
    let live_position = current.and_then(|c| c.position);
    while checkpoint.position < live_position {
        match apply_page(store, projection, &shadow, &mut tx, &mut checkpoint, live_position, options).await? {
            Some(n) => applied += n,
            None => break,
        }
    }
    if checkpoint.position < live_position {
        // The live model is ahead of everything the store let us read: never swap in a model that is behind.
        return Err(ProjectionError::CheckpointMoved(shadow.checkpoint.clone()));
    }
    lock.confirm().await?;
    let position = checkpoint.position.max(live_position);
    let old = format!("{}__old", live.schema);
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {old} CASCADE"))).execute(&mut *tx).await?;
    if current.is_some() {
        sqlx::query(sqlx::AssertSqlSafe(format!("ALTER SCHEMA {} RENAME TO {old}", live.schema)))
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(sqlx::AssertSqlSafe(format!("ALTER SCHEMA {} RENAME TO {}", shadow.schema, live.schema)))
        .execute(&mut *tx)
        .await?;
    let (tx_id, gp) = target::encode(position);
    sqlx::query(
        "INSERT INTO es.checkpoints (name, transaction_id, global_position, generation, version)
         VALUES ($1, $2, $3, 0, $4)
         ON CONFLICT (name) DO UPDATE
            SET transaction_id = excluded.transaction_id, global_position = excluded.global_position,
                generation = es.checkpoints.generation + 1, version = excluded.version, updated_at = now()",
    )
    .bind(&live.checkpoint)
    .bind(tx_id)
    .bind(gp)
    .bind(i32::try_from(projection.version()).unwrap_or(i32::MAX))
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM es.checkpoints WHERE name = $1").bind(&shadow.checkpoint).execute(&mut *tx).await?;
    // The pages applied above commit lazily (`target::enter`); the swap is reported done, so it waits.
    sqlx::query("SELECT set_config('synchronous_commit', 'on', true)").execute(&mut *tx).await?;
    tx.commit().await?;

    // 3. The old model; this waits until a live runner's refused commit has rolled back.
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {old} CASCADE"))).execute(pool).await?;
    tracing::info!(projection = name, applied, "rebuilt and swapped in");
    Ok(RebuildReport { applied, position })
}

/// Applies the next page after `checkpoint` (only events up to `until`, when given) into `shadow` inside
/// `tx`; `None` when there was nothing to apply.
async fn apply_page(
    store: &PgEventStore,
    projection: &dyn TableProjection,
    shadow: &Target,
    tx: &mut sqlx::PgConnection,
    checkpoint: &mut Checkpoint,
    until: Option<Position>,
    options: RunnerOptions,
) -> Result<Option<u64>, ProjectionError> {
    let mut page = store.read_all(checkpoint.position, options.batch_size).await?;
    if let Some(until) = until {
        page.retain(|e| e.position <= until);
    }
    if page.is_empty() {
        return Ok(None);
    }
    let (handled, through, unknown) = split_page(projection.filter(), projection.name(), checkpoint.position, page);
    if let Some(error) = unknown {
        return Err(error);
    }
    target::apply_batch(tx, projection, shadow, &handled, checkpoint, through).await?;
    checkpoint.position = through;
    Ok(Some(handled.len() as u64))
}
