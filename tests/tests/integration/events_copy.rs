//! Moving an installation between backends: a gateway's log of 100,000 events copied from Postgres to
//! SQLite and on to a new Postgres verifies event by event, and the new Postgres rebuilds read models
//! identical to the original's (registry and audit trail, positions aside), whose trail verifies.

use std::sync::Arc;

use api::Gateway;
use axum::http::{Method, StatusCode};
use domain::Role;
use eventstore::{
    EventStore, ExpectedRevision, PgEventStore, PgEventStoreOptions, SqliteEventStore, SqliteEventStoreOptions,
    copy_events, verify_copy,
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::api_servers::{Api, config, start};
use crate::support::{DEADLINE, events};

/// Events in the copied log.
const EVENTS: u64 = 100_000;

/// Registry rows, and audit entries without their positions and links (the copy's positions are its own),
/// as JSON text in a stable order.
async fn read_models(pool: &sqlx::PgPool) -> (Vec<Value>, Vec<Value>) {
    let servers: Vec<Value> =
        sqlx::query_scalar("SELECT to_jsonb(s) FROM rm_registry.servers s ORDER BY id").fetch_all(pool).await.unwrap();
    let entries: Vec<Value> = sqlx::query_scalar(
        "SELECT to_jsonb(e) - 'tx' - 'gp' - 'prev_hash' - 'entry_hash' FROM rm_audit.entries e ORDER BY seq",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    (servers, entries)
}

/// Waits until the registry and audit read models of `pool` have applied everything `store` holds.
async fn caught_up(store: &dyn EventStore, pool: &sqlx::PgPool) {
    let head = store.committed_head().await.unwrap();
    tests::eventually(DEADLINE, "the read models to catch up", || async {
        for name in ["registry", "audit"] {
            if projections::load_checkpoint(pool, name).await.ok()? < head {
                return None;
            }
        }
        Some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_copied_to_sqlite_and_back_to_postgres_verifies_and_rebuilds_identical_read_models() {
    // An installation with servers, principals, keys, refusals and a bulk of other streams
    let original: Api = start(None).await;
    for i in 0..40 {
        let body = json!({ "name": format!("io.example/copied-{i}"), "description": "d",
                           "transport": "streamable_http", "url": "https://93.184.216.34/mcp", "tags": ["t"] });
        let added = original.post_as(&original.key, "/api/v1/servers", body).await;
        assert_eq!(added.status, StatusCode::CREATED, "{}", added.raw);
    }
    let (_, viewer) = original.principal_with("viewer", &[Role::Viewer]).await;
    let refused = original.post_as(&viewer, "/api/v1/servers", json!({})).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let gone = original.call(Method::GET, "/api/v1/servers?limit=1", None, &[]).await;
    let first = gone.body["servers"][0]["id"].as_str().unwrap().to_owned();
    let deregistered = original.call(Method::DELETE, &format!("/api/v1/servers/{first}?reason=r"), None, &[]).await;
    assert_eq!(deregistered.status, StatusCode::OK, "{}", deregistered.raw);
    let source: &dyn EventStore = &*original.gateway.state.store;
    let existing = source.read_all(None, usize::MAX >> 1).await.unwrap().len() as u64;
    for _ in 0..(EVENTS - existing).div_ceil(1000) {
        let stream = eventstore::StreamName::from_parts("bulk", Uuid::now_v7()).unwrap();
        source.append(&stream, ExpectedRevision::NoStream, events(1000)).await.unwrap();
    }
    let pool = original.gateway.state.tables.postgres().unwrap().clone();
    caught_up(source, &pool).await;

    // Postgres → SQLite → a new Postgres, each copy verified event by event
    let dir = tempfile::tempdir().unwrap();
    let sqlite =
        SqliteEventStore::open(&dir.path().join("events.db"), SqliteEventStoreOptions::default()).await.unwrap();
    let copied = copy_events(source, &sqlite, |_| {}).await.unwrap();
    assert!(copied.events >= EVENTS && copied.claims >= 39, "{copied:?}");
    assert_eq!(verify_copy(source, &sqlite).await.unwrap(), copied.events);
    let db = tests::PostgresServer::shared().unwrap().create_database().await.unwrap();
    let target_pool = db.pool(8).await.unwrap();
    PgEventStore::migrate(&target_pool).await.unwrap();
    let target = PgEventStore::new(target_pool.clone(), PgEventStoreOptions::default());
    let again = copy_events(&sqlite, &target, |_| {}).await.unwrap();
    assert_eq!(again, copied);
    assert_eq!(verify_copy(&sqlite, &target).await.unwrap(), copied.events);
    // A copy never merges into a store that has events
    assert!(matches!(copy_events(&sqlite, &target, |_| {}).await, Err(eventstore::CopyError::TargetNotEmpty)));

    // A gateway on the copy builds the same read models, and its trail verifies
    let moved = Gateway::start(&config(&db.url, None), None).await.unwrap();
    caught_up(&target, &target_pool).await;
    let (servers, entries) = read_models(&pool).await;
    assert_eq!(servers.len(), 39);
    assert!(entries.len() > 40, "{}", entries.len());
    assert_eq!(read_models(&target_pool).await, (servers, entries));
    let report = projections::audit::verify(&target_pool).await.unwrap();
    assert!(report.violation.is_none(), "{report:?}");

    // And the SQLite copy's own read models are the same catalogue and the same trail
    let options = projections::RunnerOptions::default();
    let registry = Arc::new(projections::registry::SqliteRegistryProjection::default());
    let audit = Arc::new(projections::audit::SqliteAuditProjection::default());
    let runners = [
        tokio::spawn(projections::SqliteRunner::new(sqlite.clone(), registry, options).run()),
        tokio::spawn(projections::SqliteRunner::new(sqlite.clone(), audit, options).run()),
    ];
    let head = sqlite.committed_head().await.unwrap();
    tests::eventually(DEADLINE, "the SQLite read models to catch up", || async {
        for name in ["registry", "audit"] {
            if projections::load_sqlite_checkpoint(sqlite.pool(), name).await.ok()? < head {
                return None;
            }
        }
        Some(())
    })
    .await;
    runners.iter().for_each(|r| r.abort());
    let everything = projections::registry::CatalogueFilter { limit: 500, ..Default::default() };
    let on_sqlite = projections::registry::SqliteRegistry::new(sqlite.pool().clone()).list(&everything).await.unwrap();
    let on_postgres = projections::registry::Registry::new(target_pool.clone()).list(&everything).await.unwrap();
    assert_eq!(on_sqlite.entries, on_postgres.entries);
    let trail = projections::audit::SqliteAuditTrail::new(sqlite.pool().clone());
    let without_positions = |mut e: projections::audit::AuditEntry| {
        (e.tx, e.gp) = (0, 0);
        e
    };
    let sqlite_entries: Vec<_> = trail.entries(0, 100_000).await.unwrap().into_iter().map(without_positions).collect();
    let postgres_entries: Vec<projections::audit::AuditEntry> =
        sqlx::query_as("SELECT * FROM rm_audit.entries ORDER BY seq").fetch_all(&target_pool).await.unwrap();
    let postgres_entries: Vec<_> = postgres_entries.into_iter().map(without_positions).collect();
    assert_eq!(sqlite_entries, postgres_entries);
    assert_eq!(trail.verify().await.unwrap().violation, None);
    // The claims came along: a copied server's name is still taken
    let state = &moved.state;
    let taken = state.store.held_claims().await.unwrap();
    assert!(taken.iter().any(|(claim, _)| claim.value == "io.example/copied-1"), "{taken:?}");
}

#[tokio::test]
async fn a_copy_from_a_missing_or_empty_source_is_refused_and_creates_nothing() {
    use api::store_url::StoreUrl;
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("typo.db");
    let url = format!("sqlite://{}", missing.display());
    assert!(StoreUrl::parse(&url).unwrap().open_existing().await.is_err());
    assert!(!missing.exists(), "the source is never created");
    let empty = StoreUrl::parse(&format!("sqlite://{}", dir.path().join("empty.db").display())).unwrap();
    let (source, target) =
        (empty.open().await.unwrap(), StoreUrl::Sqlite(dir.path().join("t.db")).open().await.unwrap());
    assert!(matches!(copy_events(&*source, &*target, |_| {}).await, Err(eventstore::CopyError::EmptySource)));
}
