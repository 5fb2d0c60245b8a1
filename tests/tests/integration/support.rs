//! Shared set-up for the integration tests.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use eventstore::{Actor, ActorKind, EventData, Metadata, PgEventStore, PgEventStoreOptions, StreamName};
use serde_json::json;
use tests::{PostgresServer, TestDatabase};
use uuid::Uuid;

/// How long asynchronous effects may take before a test fails.
pub(crate) const DEADLINE: Duration = Duration::from_secs(30);

/// A migrated event store in a fresh database of the shared cluster.
pub(crate) async fn store() -> (PgEventStore, TestDatabase) {
    store_with(PostgresServer::shared().expect("test cluster"), PgEventStoreOptions::default(), 20).await
}

/// A migrated event store in a fresh database of `server`.
pub(crate) async fn store_with(
    server: &PostgresServer,
    options: PgEventStoreOptions,
    connections: u32,
) -> (PgEventStore, TestDatabase) {
    let db = server.create_database().await.expect("test database");
    let pool = db.pool(connections).await.expect("pool");
    PgEventStore::migrate(&pool).await.expect("migrations");
    (PgEventStore::new(pool, options), db)
}

/// The store behind the trait object, as the projections and the relay will hold it.
pub(crate) fn shared(store: &PgEventStore) -> Arc<dyn eventstore::EventStore> {
    Arc::new(store.clone())
}

/// A stream name no other test uses.
pub(crate) fn new_stream(category: &str) -> StreamName {
    StreamName::from_parts(category, Uuid::new_v4()).expect("valid stream name")
}

/// Metadata for a test user in a new correlation.
pub(crate) fn metadata() -> Metadata {
    Metadata::new(Uuid::new_v4(), Actor { id: "user-test".into(), kind: ActorKind::User }, Utc::now())
}

/// An event of `event_type` with a small payload and a fresh id.
pub(crate) fn event(event_type: &str, n: u64) -> EventData {
    EventData::new(Uuid::new_v4(), event_type, 1, &json!({ "n": n, "name": format!("server {n}") }), metadata())
        .expect("serializable")
}

/// `count` events of type `Tested`.
pub(crate) fn events(count: u64) -> Vec<EventData> {
    (0..count).map(|n| event("Tested", n)).collect()
}

/// Rows in `es.events`.
pub(crate) async fn row_count(store: &PgEventStore) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM es.events").fetch_one(store.pool()).await.expect("count")
}

/// Every event id in `es.events`, in `$all` order.
pub(crate) async fn all_ids_in_order(store: &PgEventStore) -> Vec<Uuid> {
    sqlx::query_scalar("SELECT event_id FROM es.events ORDER BY transaction_id, global_position")
        .fetch_all(store.pool())
        .await
        .expect("ids")
}

/// Reads `$all` from the start until at least `count` events are visible. Another test's open transaction
/// in the shared cluster holds every `$all` reader back for a moment, so positive reads poll.
pub(crate) async fn read_all_eventually(
    store: &dyn eventstore::EventStore,
    count: usize,
) -> Vec<eventstore::RecordedEvent> {
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        let events = store.read_all(None, count.max(1)).await.expect("read_all");
        if events.len() >= count {
            return events;
        }
        assert!(tokio::time::Instant::now() < until, "only {} of {count} events became visible", events.len());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
