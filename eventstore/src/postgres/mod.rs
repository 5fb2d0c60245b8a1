//! The PostgreSQL backend.

mod append;
mod append_group;
mod head_cache;
mod index_plans;
mod leader_lock;
mod pg_event_store;
mod rows;
mod unit_of_work;
mod verify;

pub use index_plans::INDEX_DRIVEN_PLANS;
pub use leader_lock::{LeaderLock, LockCandidate};
pub use pg_event_store::{PgEventStore, PgEventStoreOptions};
pub use unit_of_work::PgUnitOfWork;
