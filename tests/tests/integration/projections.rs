//! Projection runners against a real PostgreSQL: each event applied once, in order, through aborts,
//! competing runners and unknown event types.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use eventstore::{EventStore, ExpectedRevision, PgEventStore, RecordedEvent, SubscriptionOptions};
use projections::{
    EventFilter, MemoryProjection, MemoryRunner, ProjectionError, ProjectionState, RunnerOptions, TableProjection,
    TableRunner, load_checkpoint, rebuild,
};
use sqlx::PgConnection;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::support::{DEADLINE, event, new_stream, store, store_with};

const NAME: &str = "seen";

/// Records every `server` event it applies in `rm_seen.seen`, whose key refuses a second apply, with the
/// projection version that applied it.
struct Seen {
    version: u32,
    filter: EventFilter,
    applied: AtomicU64,
    /// When set, the next batch is written and then never committed: the runner hangs until aborted.
    hang_after_writes: AtomicBool,
    written: Notify,
}

impl Seen {
    fn new() -> Arc<Self> {
        Self::version(1)
    }

    fn version(version: u32) -> Arc<Self> {
        Arc::new(Self {
            version,
            filter: EventFilter::new(["server"], ["Registered", "Updated"]),
            applied: AtomicU64::new(0),
            hang_after_writes: AtomicBool::new(false),
            written: Notify::new(),
        })
    }
}

#[async_trait]
impl TableProjection for Seen {
    fn name(&self) -> &str {
        NAME
    }
    fn version(&self) -> u32 {
        self.version
    }
    fn filter(&self) -> &EventFilter {
        &self.filter
    }
    async fn create(&self, tx: &mut PgConnection) -> Result<(), ProjectionError> {
        sqlx::query(
            "CREATE TABLE seen (event_id uuid PRIMARY KEY, n bigint GENERATED ALWAYS AS IDENTITY, version int NOT NULL)",
        )
        .execute(tx)
        .await?;
        Ok(())
    }
    async fn apply(&self, tx: &mut PgConnection, events: &[RecordedEvent]) -> Result<(), ProjectionError> {
        let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
        sqlx::query("INSERT INTO seen (event_id, version) SELECT i, $2 FROM unnest($1::uuid[]) AS u(i)")
            .bind(&ids)
            .bind(self.version as i32)
            .execute(tx)
            .await?;
        if self.hang_after_writes.swap(false, Ordering::SeqCst) {
            self.written.notify_one();
            std::future::pending::<()>().await;
        }
        self.applied.fetch_add(events.len() as u64, Ordering::SeqCst);
        Ok(())
    }
}

fn options() -> RunnerOptions {
    RunnerOptions {
        batch_size: 50,
        poll_interval: std::time::Duration::from_millis(20),
        retry_after: std::time::Duration::from_millis(50),
        ..Default::default()
    }
}

/// Appends `count` events to `streams` server streams and one `other` stream the projection ignores.
async fn append_events(store: &PgEventStore, streams: usize, count: u64) {
    for _ in 0..streams {
        let stream = new_stream("server");
        store.append(&stream, ExpectedRevision::NoStream, vec![event("Registered", 0)]).await.unwrap();
        let updates = (1..count).map(|n| event("Updated", n)).collect();
        store.append(&stream, ExpectedRevision::Exact(0), updates).await.unwrap();
    }
    store.append(&new_stream("other"), ExpectedRevision::NoStream, vec![event("Ignored", 0)]).await.unwrap();
}

/// The ids of every `server` event, in `$all` order.
async fn server_event_ids(store: &PgEventStore) -> Vec<Uuid> {
    sqlx::query_scalar(
        "SELECT event_id FROM es.events WHERE stream_id LIKE 'server-%' ORDER BY transaction_id, global_position",
    )
    .fetch_all(store.pool())
    .await
    .unwrap()
}

/// Waits until the read model holds as many rows as there are server events, then checks they are the
/// same events, each once, in `$all` order.
async fn assert_read_model_mirrors_the_store(store: &PgEventStore) {
    let expected = server_event_ids(store).await;
    let seen = tests::eventually(DEADLINE, "the projection to apply every event", || async {
        // Until the runner has created its schema, the table is missing: not yet.
        let seen: Vec<Uuid> =
            sqlx::query_scalar("SELECT event_id FROM rm_seen.seen ORDER BY n").fetch_all(store.pool()).await.ok()?;
        (seen.len() >= expected.len()).then_some(seen)
    })
    .await;
    assert!(seen == expected, "the read model holds each server event once, in $all order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_projection_applies_each_event_once_in_order_and_moves_its_checkpoint() {
    let (store, _db) = store().await;
    append_events(&store, 6, 40).await;
    let runner = TableRunner::new(store.clone(), Seen::new(), options());
    let mut status = runner.status();
    let task = tokio::spawn(runner.run());

    assert_read_model_mirrors_the_store(&store).await;
    // Ready once caught up, and the checkpoint is the last event of $all (the ignored one included)
    let ready = status.wait_for(|s| s.is_ready()).await.unwrap().clone();
    let head = store.head().await.unwrap();
    tests::eventually(DEADLINE, "the checkpoint to reach the head", || async {
        (load_checkpoint(store.pool(), NAME).await.unwrap() == head).then_some(())
    })
    .await;
    assert!(ready.checkpoint.is_some());

    // And live appends follow
    append_events(&store, 2, 10).await;
    assert_read_model_mirrors_the_store(&store).await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_aborted_between_its_writes_and_commit_leaves_nothing_partial() {
    // Given a runner that has written a batch and is killed before committing it
    let (store, _db) = store().await;
    append_events(&store, 4, 60).await;
    let seen = Seen::new();
    seen.hang_after_writes.store(true, Ordering::SeqCst);
    let task = tokio::spawn(TableRunner::new(store.clone(), seen.clone(), options()).run());
    seen.written.notified().await;
    task.abort();
    let _ = task.await;

    // Then neither the batch nor the checkpoint moved
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_seen.seen").fetch_one(store.pool()).await.unwrap();
    assert_eq!(rows, 0, "the aborted batch was rolled back");
    assert_eq!(load_checkpoint(store.pool(), NAME).await.unwrap(), None);

    // When a runner starts again, the read model ends equal to the store, each event once
    let task = tokio::spawn(TableRunner::new(store.clone(), Seen::new(), options()).run());
    assert_read_model_mirrors_the_store(&store).await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_runners_for_one_projection_exactly_one_applies() {
    // Given two runners with their own pools (as two processes would have)
    let (store, db) = store().await;
    let pool = db.pool(4).await.unwrap();
    let other = PgEventStore::new(pool, Default::default());
    let (first, second) = (Seen::new(), Seen::new());
    let (a, b) =
        (TableRunner::new(store.clone(), first.clone(), options()), TableRunner::new(other, second.clone(), options()));
    let statuses = [a.status(), b.status()];
    let tasks = [tokio::spawn(a.run()), tokio::spawn(b.run())];

    // When events arrive
    append_events(&store, 10, 50).await;

    // Then the read model mirrors the store, and all of it came from one runner
    assert_read_model_mirrors_the_store(&store).await;
    let (a, b) = (first.applied.load(Ordering::SeqCst), second.applied.load(Ordering::SeqCst));
    assert!(a == 0 || b == 0, "both runners applied: {a} and {b}");
    assert_eq!(a + b, 10 * 50);

    // And both instances report ready: one live, the other a standby that sees the shared model keep up
    let states = tests::eventually(DEADLINE, "both runners to report ready", || async {
        let states: Vec<_> = statuses.iter().map(|s| s.borrow().clone()).collect();
        states.iter().all(|s| s.is_ready()).then_some(states)
    })
    .await;
    assert!(states.iter().any(|s| s.state == ProjectionState::Live));
    assert!(states.iter().any(|s| s.state == ProjectionState::Standby { current: true }));
    for task in tasks {
        task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_event_type_halts_the_projection_just_before_it() {
    let (store, _db) = store().await;
    let stream = new_stream("server");
    store.append(&stream, ExpectedRevision::NoStream, vec![event("Registered", 0)]).await.unwrap();
    let before = store.append(&stream, ExpectedRevision::Exact(0), vec![event("Updated", 1)]).await.unwrap();
    store.append(&stream, ExpectedRevision::Exact(1), vec![event("Exploded", 2)]).await.unwrap();
    store.append(&stream, ExpectedRevision::Exact(2), vec![event("Updated", 3)]).await.unwrap();

    let runner = TableRunner::new(store.clone(), Seen::new(), options());
    let status = runner.status();
    let error = runner.run().await;

    assert!(matches!(&error, ProjectionError::UnknownEventType { event_type, .. } if event_type == "Exploded"));
    let state = status.borrow().clone();
    assert!(matches!(state.state, ProjectionState::Halted(ref why) if why.contains("Exploded")), "{state:?}");
    assert!(!state.is_ready());
    assert_eq!(load_checkpoint(store.pool(), NAME).await.unwrap(), Some(before.position));
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_seen.seen").fetch_one(store.pool()).await.unwrap();
    assert_eq!(rows, 2, "the events before it were applied, none after");
}

/// Events per server stream, in memory.
struct Counts {
    filter: EventFilter,
    per_stream: std::collections::HashMap<String, u64>,
}

impl MemoryProjection for Counts {
    fn name(&self) -> &str {
        "counts"
    }
    fn filter(&self) -> &EventFilter {
        &self.filter
    }
    fn apply(&mut self, event: &RecordedEvent) -> Result<(), ProjectionError> {
        *self.per_stream.entry(event.stream.to_string()).or_default() += 1;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_projection_is_rebuilt_at_start_then_follows() {
    let (store, _db) = store_with(tests::PostgresServer::shared().unwrap(), Default::default(), 8).await;
    append_events(&store, 5, 20).await;
    let projection =
        Counts { filter: EventFilter::new(["server"], ["Registered", "Updated"]), per_stream: Default::default() };
    let runner = MemoryRunner::new(Arc::new(store.clone()), projection, SubscriptionOptions::default());
    let (model, mut status) = (runner.model(), runner.status());
    let task = tokio::spawn(runner.run());

    status.wait_for(|s| s.is_ready()).await.unwrap();
    {
        let model = model.read().unwrap();
        assert_eq!(model.per_stream.len(), 5);
        assert!(model.per_stream.values().all(|n| *n == 20));
    }
    append_events(&store, 1, 7).await;
    tests::eventually(DEADLINE, "the live append to be applied", || async {
        (model.read().unwrap().per_stream.values().sum::<u64>() == 5 * 20 + 7).then_some(())
    })
    .await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_during_appends_ends_equal_to_the_store_and_readers_never_see_a_partial_model() {
    // Given a live projection that is caught up, and 5,000 events being appended
    let (store, _db) = store().await;
    append_events(&store, 4, 50).await;
    let live = tokio::spawn(TableRunner::new(store.clone(), Seen::new(), options()).run());
    assert_read_model_mirrors_the_store(&store).await;
    let appends = {
        let store = store.clone();
        tokio::spawn(async move { append_events(&store, 50, 100).await })
    };
    // A reader watching the live model's size
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (store, stop) = (store.clone(), stop.clone());
        tokio::spawn(async move {
            let mut sizes = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let rows: i64 =
                    sqlx::query_scalar("SELECT count(*) FROM rm_seen.seen").fetch_one(store.pool()).await.unwrap();
                sizes.push(rows);
                tokio::task::yield_now().await;
            }
            sizes
        })
    };

    // When the projection is rebuilt meanwhile
    let report = rebuild(&store, Seen::new().as_ref(), options()).await.unwrap();
    appends.await.unwrap();

    // Then the live model, served throughout, never shrank (never partial) and ends equal to the store
    assert_read_model_mirrors_the_store(&store).await;
    stop.store(true, Ordering::SeqCst);
    let sizes = reader.await.unwrap();
    assert!(sizes.len() > 1, "the reader read during the rebuild");
    assert!(sizes.windows(2).all(|w| w[0] <= w[1]), "the live model shrank: {sizes:?}");
    assert!(report.applied >= 200, "{report:?}");
    live.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_projection_version_rebuilds_the_read_model_before_it_serves() {
    // Given a read model built by version 1
    let (store, _db) = store().await;
    append_events(&store, 3, 30).await;
    let v1 = tokio::spawn(TableRunner::new(store.clone(), Seen::version(1), options()).run());
    assert_read_model_mirrors_the_store(&store).await;
    v1.abort();
    let _ = v1.await;

    // When version 2 starts
    let runner = TableRunner::new(store.clone(), Seen::version(2), options());
    let mut status = runner.status();
    let v2 = tokio::spawn(runner.run());
    status.wait_for(|s| s.is_ready()).await.unwrap();

    // Then every row was written by version 2, each event once
    assert_read_model_mirrors_the_store(&store).await;
    let versions: Vec<i32> =
        sqlx::query_scalar("SELECT DISTINCT version FROM rm_seen.seen").fetch_all(store.pool()).await.unwrap();
    assert_eq!(versions, [2]);
    v2.abort();
}
