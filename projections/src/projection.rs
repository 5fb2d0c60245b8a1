//! The two kinds of projection.

use async_trait::async_trait;
use eventstore::RecordedEvent;
use sqlx::PgConnection;

use crate::{EventFilter, ProjectionError};

/// A read model in PostgreSQL tables, in a schema of its own (`rm_<name>`).
///
/// Its SQL names tables without a schema: the runner sets `search_path` to the live schema, or to the
/// shadow schema during a rebuild. `apply` must be deterministic (no clock, no randomness: a rebuild must
/// reproduce the live model) and must write only through `tx`, which the runner commits together with
/// the checkpoint.
#[async_trait]
pub trait TableProjection: Send + Sync {
    /// Unique name, `[a-z][a-z0-9_]{0,47}` without `__`; also the checkpoint's name and, as `rm_<name>`,
    /// the schema's.
    fn name(&self) -> &str;
    /// Bumped when `apply` changes meaning, which calls for a rebuild.
    fn version(&self) -> u32;
    /// The events it reads and knows.
    fn filter(&self) -> &EventFilter;
    /// Creates the read model's tables (in an empty schema, inside the runner's transaction).
    async fn create(&self, tx: &mut PgConnection) -> Result<(), ProjectionError>;
    /// Applies a batch of handled events, in `$all` order, inside the runner's transaction.
    async fn apply(&self, tx: &mut PgConnection, events: &[RecordedEvent]) -> Result<(), ProjectionError>;
}

/// A read model in memory, rebuilt from the store at start.
pub trait MemoryProjection: Send + Sync + 'static {
    /// Unique name.
    fn name(&self) -> &str;
    /// The events it reads and knows.
    fn filter(&self) -> &EventFilter;
    /// Applies one handled event.
    fn apply(&mut self, event: &RecordedEvent) -> Result<(), ProjectionError>;
    /// What the model knows, as a snapshot's body; `None` for a model that does not take snapshots.
    fn save_state(&self) -> Option<Result<Vec<u8>, ProjectionError>> {
        None
    }
    /// Replaces what the model knows with a snapshot's body written by [`MemoryProjection::save_state`]
    /// of the same snapshot format.
    fn load_state(&mut self, _body: &[u8]) -> Result<(), ProjectionError> {
        Err(ProjectionError::Snapshot(format!("{} takes no snapshots", self.name())))
    }
}
