//! In-memory projections fed through NATS (`relay::NatsSubscription`) against a real `nats-server -js` and
//! a real PostgreSQL: whatever the stream delivers (repeats, late copies, gaps, nothing at all), the model
//! holds `es.events`, each once, in `$all` order.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use eventstore::relay::{self, NatsFeedOptions, NatsSubscription, Relay, RelayOptions};
use eventstore::{EventStore, ExpectedRevision, PgEventStore, RecordedEvent};
use projections::{EventFilter, MemoryProjection, MemoryRunner, ProjectionError};
use tests::NatsServer;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::support::{DEADLINE, all_ids_in_order, event, new_stream, store};

fn relay_options() -> RelayOptions {
    RelayOptions {
        duplicate_window: Duration::from_millis(100),
        poll_interval: Duration::from_millis(50),
        retry_after: Duration::from_millis(100),
        ..Default::default()
    }
}

/// Every event id it was given, in order: a model that shows a repeat or a reordering.
struct Recorder {
    filter: EventFilter,
    ids: Vec<Uuid>,
}

impl MemoryProjection for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }
    fn filter(&self) -> &EventFilter {
        &self.filter
    }
    fn apply(&mut self, event: &RecordedEvent) -> Result<(), ProjectionError> {
        self.ids.push(event.event_id);
        Ok(())
    }
}

/// A second instance's recorder (its own pool: it never hears the first instance's appends in process),
/// fed through NATS; reads the store on its own only after `store_poll` of silence.
async fn follower(
    db: &tests::TestDatabase,
    js: &jetstream::Context,
    store_poll: Duration,
) -> (Arc<RwLock<Recorder>>, JoinHandle<ProjectionError>) {
    let other: Arc<dyn EventStore> = Arc::new(PgEventStore::new(db.pool(4).await.unwrap(), Default::default()));
    let options = NatsFeedOptions {
        store_poll,
        reconnect_after: Duration::from_millis(100),
        ..NatsFeedOptions::for_relay(&relay_options())
    };
    let (source, js) = (other.clone(), js.clone());
    let feed_from: projections::FeedFrom = Box::new(move |from| {
        Box::new(NatsSubscription::new(source, js, from, options)) as Box<dyn eventstore::EventFeed>
    });
    let recorder = Recorder { filter: EventFilter::new(["server", "marker"], ["Registered", "Marked"]), ids: vec![] };
    let runner = MemoryRunner::with_feed(other, recorder, feed_from);
    let (model, mut status) = (runner.model(), runner.status());
    let task = tokio::spawn(runner.run());
    status.wait_for(|s| s.is_ready()).await.unwrap();
    (model, task)
}

async fn append(store: &PgEventStore, count: u64) -> Vec<RecordedEvent> {
    let mut appended = Vec::new();
    for n in 0..count {
        let stream = new_stream("server");
        let result = store.append(&stream, ExpectedRevision::NoStream, vec![event("Registered", n)]).await.unwrap();
        let mut read = store
            .read_stream(&stream, eventstore::Direction::Forwards, eventstore::StreamCursor::Start, 1)
            .await
            .unwrap();
        assert_eq!(read[0].position, result.position);
        appended.push(read.remove(0));
    }
    appended
}

/// Waits until the model holds every event of `es.events`, then checks each is there once, in order.
async fn assert_model_mirrors_the_store(model: &RwLock<Recorder>, store: &PgEventStore) {
    let expected = all_ids_in_order(store).await;
    let ids = tests::eventually(DEADLINE, "the model to hold every event", || async {
        let ids = model.read().unwrap().ids.clone();
        (ids.len() >= expected.len()).then_some(ids)
    })
    .await;
    assert_eq!(ids, expected, "each event once, in $all order");
}

/// Publishes `event` into the relay's stream as the relay would, following `previous`.
async fn publish(js: &jetstream::Context, event: &RecordedEvent, previous: Option<eventstore::Position>) {
    let subject = relay::subject_for(&relay_options().subject_prefix, &event.stream);
    let message = PublishMessage::build()
        .headers(relay::message_headers(event, previous))
        .message_id(event.event_id.to_string())
        .payload(event.data.clone().into());
    // Inside the (short) duplicate window JetStream drops a repeated id: publish until it is stored.
    tests::eventually(DEADLINE, "JetStream to store the message", || async {
        let ack = js.send_publish(subject.clone(), message.clone()).await.ok()?.await.ok()?;
        (!ack.duplicate).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_fed_by_nats_skips_repeats_and_late_copies_and_fills_gaps_from_the_store() {
    // Given another instance's in-memory projection fed through NATS, which reads the store on its own only
    // after two minutes of silence, started before the relay has created its stream
    let (store, db) = store().await;
    let nats = NatsServer::start().unwrap();
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let (model, follow) = follower(&db, &js, Duration::from_secs(120)).await;
    let relay = tokio::spawn(Relay::new(store.clone(), js.clone(), relay_options()).run());
    let first = append(&store, 20).await;
    assert_model_mirrors_the_store(&model, &store).await;

    // When the relay stops, two events are appended, and the stream then receives the second before the
    // first (a message lost or delayed on the way)
    relay.abort();
    let _ = relay.await;
    let late = append(&store, 2).await;
    let last_published = first.last().map(|e| e.position);
    publish(&js, &late[1], Some(late[0].position)).await;

    // Then the follower sees the gap and reads both from the store at once, in order, not at its next poll
    assert_model_mirrors_the_store(&model, &store).await;

    // When the late message arrives after all, and an earlier message is delivered again
    publish(&js, &late[0], last_published).await;
    publish(&js, &first[5], Some(first[4].position)).await;

    // and the relay starts again (it resumes after the last message in the stream, the repeat: so it
    // publishes the later events once more) and more events follow
    let relay = tokio::spawn(Relay::new(store.clone(), js.clone(), relay_options()).run());
    append(&store, 20).await;

    // Then the model still holds every event once, in $all order: repeats and late copies were skipped
    assert_model_mirrors_the_store(&model, &store).await;
    assert!(!follow.is_finished(), "the projection did not halt");
    relay.abort();
    follow.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_fed_by_nats_reads_the_store_while_nats_is_down_and_loses_nothing_when_it_returns() {
    // Given a follower fed through NATS that polls the store every 200 ms when NATS is silent
    let (store, db) = store().await;
    let nats = NatsServer::start().unwrap();
    let client = async_nats::ConnectOptions::new().retry_on_initial_connect().connect(nats.url()).await.unwrap();
    let js = jetstream::new(client);
    let relay = tokio::spawn(Relay::new(store.clone(), js.clone(), relay_options()).run());
    let (model, follow) = follower(&db, &js, Duration::from_millis(200)).await;
    append(&store, 10).await;
    assert_model_mirrors_the_store(&model, &store).await;

    // When NATS goes down while events are appended
    nats.kill().unwrap();
    append(&store, 10).await;

    // Then the follower still gets them, from the store
    assert_model_mirrors_the_store(&model, &store).await;

    // And when NATS comes back and more events follow, each arrives once
    nats.restart().unwrap();
    append(&store, 10).await;
    assert_model_mirrors_the_store(&model, &store).await;
    assert!(!follow.is_finished(), "the projection did not halt");
    relay.abort();
    follow.abort();
}
