//! The NATS relay against a real `nats-server -js` and a real PostgreSQL: every event of `es.events` ends
//! up in the JetStream stream exactly once, in `$all` order, through outages, restarts and a second relay.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use eventstore::relay::{self, Relay, RelayOptions};
use eventstore::{EventStore, ExpectedRevision, PgEventStore, StreamName};
use tests::{NatsServer, TestDatabase};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::support::{DEADLINE, all_ids_in_order, event, events, new_stream, store};

/// Relay settings for tests: short waits, a short duplicate window.
fn options() -> RelayOptions {
    RelayOptions {
        duplicate_window: Duration::from_secs(1),
        poll_interval: Duration::from_millis(50),
        retry_after: Duration::from_millis(100),
        ..Default::default()
    }
}

async fn connect(nats: &NatsServer) -> jetstream::Context {
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(nats.url())
        .await
        .expect("NATS connection");
    jetstream::new(client)
}

fn spawn_relay(store: &PgEventStore, js: &jetstream::Context) -> JoinHandle<()> {
    tokio::spawn(Relay::new(store.clone(), js.clone(), options()).run())
}

/// Event ids of every message in the stream, in stream order (empty while the stream does not exist).
async fn published_ids(js: &jetstream::Context) -> Vec<Uuid> {
    let Ok(mut stream) = js.get_stream(&options().stream).await else { return Vec::new() };
    let Ok(info) = stream.info().await else { return Vec::new() };
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    let mut ids = Vec::new();
    for sequence in first.max(1)..=last {
        // Right after a restart a read may fail: the caller polls again.
        let Ok(message) = stream.direct_get(sequence).await else { return Vec::new() };
        let id = message.headers.get("Nats-Msg-Id").expect("message id").as_str().parse().expect("uuid");
        ids.push(id);
    }
    ids
}

/// Waits until the stream holds as many messages as `es.events` has rows, then checks they are the same
/// events, each once, in `$all` order. A marker event appended first and seen last proves the relay has
/// nothing left in flight that could still repeat.
async fn assert_stream_mirrors_the_store(js: &jetstream::Context, store: &PgEventStore) {
    store.append(&new_stream("marker"), ExpectedRevision::NoStream, vec![event("Marked", 0)]).await.unwrap();
    let expected = all_ids_in_order(store).await;
    let published = tests::eventually(DEADLINE, "the relay to publish every event", || async {
        let ids = published_ids(js).await;
        (ids.len() >= expected.len()).then_some(ids)
    })
    .await;
    assert_eq!(published.len(), expected.len(), "no event published twice");
    assert!(published == expected, "the stream holds the store's events in $all order");
}

async fn append_singles(store: &PgEventStore, streams: usize, per_stream: u64) {
    let writers: Vec<_> = (0..streams)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let stream = new_stream("server");
                let mut expected = ExpectedRevision::NoStream;
                for n in 0..per_stream {
                    let result = store.append(&stream, expected, vec![event("Updated", n)]).await.unwrap();
                    expected = ExpectedRevision::Exact(result.last_revision);
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_published_once_in_all_order_with_its_headers() {
    // Given events in several streams, one with an id full of subject syntax
    let (store, _db) = store().await;
    let nats = NatsServer::start().unwrap();
    let js = connect(&nats).await;
    let awkward = StreamName::from_parts("server", "a.b *> c ünï.*").unwrap();
    store.append(&awkward, ExpectedRevision::NoStream, events(3)).await.unwrap();
    append_singles(&store, 4, 25).await;

    // When the relay runs
    let relay = spawn_relay(&store, &js);

    // Then the stream mirrors $all
    assert_stream_mirrors_the_store(&js, &store).await;
    // And each message carries its event's stream, revision and position, on one literal subject token
    let mut stream = js.get_stream(&options().stream).await.unwrap();
    let first = stream.direct_get(1).await.unwrap();
    assert_eq!(first.subject.as_str(), relay::subject_for("reg.evt", &awkward));
    assert_eq!(first.subject.split('.').count(), 4, "{}", first.subject);
    assert_eq!(first.headers.get(relay::STREAM).unwrap().as_str(), awkward.as_str());
    assert_eq!(first.headers.get(relay::REVISION).unwrap().as_str(), "0");
    let recorded = store.read_all(None, 1).await.unwrap();
    assert_eq!(first.headers.get(relay::POSITION).unwrap().as_str(), recorded[0].position.to_string());
    assert_eq!(first.payload.as_ref(), recorded[0].data.as_bytes());
    relay.abort();
    let _ = stream.info().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_killed_in_the_middle_of_ten_thousand_appends_loses_and_repeats_nothing() {
    // Given a relay publishing while 20 writers append 10,000 events
    let (store, _db) = store().await;
    let nats = NatsServer::start().unwrap();
    let js = connect(&nats).await;
    let relay = spawn_relay(&store, &js);
    let appends = {
        let store = store.clone();
        tokio::spawn(async move { append_singles(&store, 20, 500).await })
    };

    // When NATS dies once a part is published, and comes back
    tests::eventually(DEADLINE, "a first part to be published", || async {
        (published_ids(&js).await.len() >= 1_000).then_some(())
    })
    .await;
    nats.kill().unwrap();
    nats.restart().unwrap();
    appends.await.unwrap();

    // Then the stream holds every event once, in order
    assert_stream_mirrors_the_store(&js, &store).await;
    relay.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_restarted_after_the_duplicate_window_with_a_stale_checkpoint_resumes_after_the_last_message() {
    // Given a relay that published a first batch and was then killed
    let (store, _db) = store().await;
    let nats = NatsServer::start().unwrap();
    let js = connect(&nats).await;
    append_singles(&store, 5, 20).await;
    let relay = spawn_relay(&store, &js);
    assert_stream_mirrors_the_store(&js, &store).await;
    relay.abort();
    let _ = relay.await;
    // ... as if it died after the acks but before its checkpoint: the checkpoint lags behind
    sqlx::query("UPDATE es.checkpoints SET transaction_id = 0, global_position = 0")
        .execute(store.pool())
        .await
        .unwrap();

    // When more events are appended and a new relay starts after the duplicate window has passed (so
    // message ids no longer catch a repeat: only the resync does)
    append_singles(&store, 5, 20).await;
    tokio::time::sleep(options().duplicate_window + Duration::from_millis(500)).await;
    let relay = spawn_relay(&store, &js);

    // Then nothing is published twice and nothing is missing
    assert_stream_mirrors_the_store(&js, &store).await;
    relay.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_relays_one_publishes_and_the_other_takes_over_when_its_backend_dies() {
    // Given two relays on one store and one NATS
    let (store, db) = store().await;
    let nats = NatsServer::start().unwrap();
    let js = connect(&nats).await;
    let relays = [spawn_relay(&store, &js), spawn_relay(&store, &js)];
    append_singles(&store, 5, 40).await;
    assert_stream_mirrors_the_store(&js, &store).await;

    // When the leader's lock connection is killed in Postgres, while appends go on
    let appends = {
        let store = store.clone();
        tokio::spawn(async move { append_singles(&store, 5, 200).await })
    };
    kill_lock_holder(&db, &store).await;
    appends.await.unwrap();

    // Then the other relay (or the restarted one) carries on: every event once, in order
    assert_stream_mirrors_the_store(&js, &store).await;
    for relay in relays {
        relay.abort();
    }
}

/// Terminates the backend holding the relay's advisory lock, and checks one holds it again afterwards.
async fn kill_lock_holder(db: &TestDatabase, store: &PgEventStore) {
    const HOLDER: &str = "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND database =
                          (SELECT oid FROM pg_database WHERE datname = $1)";
    let holder: i32 = tests::eventually(DEADLINE, "a relay to hold the lock", || async {
        sqlx::query_scalar(HOLDER).bind(&db.name).fetch_optional(store.pool()).await.unwrap()
    })
    .await;
    let killed: bool =
        sqlx::query_scalar("SELECT pg_terminate_backend($1)").bind(holder).fetch_one(store.pool()).await.unwrap();
    assert!(killed);
    let store = Arc::new(store.clone());
    tests::eventually(DEADLINE, "a relay to hold the lock again", || {
        let store = store.clone();
        async move {
            let pid: Option<i32> =
                sqlx::query_scalar(HOLDER).bind(&db.name).fetch_optional(store.pool()).await.unwrap();
            pid.filter(|pid| *pid != holder)
        }
    })
    .await;
}

/// Registrations per server stream, in memory.
struct Registrations {
    filter: projections::EventFilter,
    count: u64,
}

impl projections::MemoryProjection for Registrations {
    fn name(&self) -> &str {
        "registrations"
    }
    fn filter(&self) -> &projections::EventFilter {
        &self.filter
    }
    fn apply(&mut self, _: &eventstore::RecordedEvent) -> Result<(), projections::ProjectionError> {
        self.count += 1;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instance_sees_an_append_through_nats_long_before_its_next_poll() {
    // Given a second instance (its own pool) whose projection polls the store only every two minutes, and
    // which listens to the relay's publishes
    let (store, db) = store().await;
    let other = PgEventStore::new(db.pool(4).await.unwrap(), Default::default());
    let nats = NatsServer::start().unwrap();
    let js = connect(&nats).await;
    let relay = spawn_relay(&store, &js);
    let client = async_nats::connect(nats.url()).await.unwrap();
    let wake = relay::wake_on_publish(other.clone(), client, &options()).await.unwrap();
    let projection = Registrations { filter: projections::EventFilter::new(["server"], ["Registered"]), count: 0 };
    let slow_poll = eventstore::SubscriptionOptions { poll_interval: Duration::from_secs(120), ..Default::default() };
    let runner = projections::MemoryRunner::new(Arc::new(other.clone()), projection, slow_poll);
    let (model, mut status) = (runner.model(), runner.status());
    let follow = tokio::spawn(runner.run());
    status.wait_for(|s| s.is_ready()).await.unwrap();

    // When the first instance appends, three times, each once the other saw the one before (so the other
    // has gone back to waiting: a read that merely raced the append cannot explain all three)
    for n in 1..=3 {
        store.append(&new_stream("server"), ExpectedRevision::NoStream, vec![event("Registered", n)]).await.unwrap();

        // Then the second sees it within seconds: woken by NATS, not by its poll
        tests::eventually(Duration::from_secs(10), "the other instance to see the append", || async {
            (model.read().unwrap().count == n).then_some(())
        })
        .await;
    }
    for task in [relay, wake] {
        task.abort();
    }
    follow.abort();
}
