//! Appends: results, idempotent retries, partial duplicates, metadata, several streams at once.

use std::sync::Arc;

use eventstore::{Direction, Error, EventData, EventStore, ExpectedRevision, StreamAppend, StreamCursor};
use uuid::Uuid;

use crate::support::{event, events, metadata, new_stream, row_count, store};

#[tokio::test]
async fn an_append_returns_its_revisions_and_positions() {
    let (store, _db) = store().await;
    let stream = new_stream("server");
    let first = store.append(&stream, ExpectedRevision::NoStream, events(3)).await.unwrap();
    assert_eq!((first.first_revision, first.last_revision, first.idempotent), (0, 2, false));
    assert_eq!(first.first_position.transaction_id, first.position.transaction_id, "one transaction");
    assert!(first.first_position < first.position);

    let second = store.append(&stream, ExpectedRevision::Exact(2), events(1)).await.unwrap();
    assert_eq!((second.first_revision, second.last_revision), (3, 3));
    assert!(second.position > first.position);
}

#[tokio::test]
async fn retrying_an_append_returns_the_first_result_and_writes_nothing() {
    // Given a committed append whose acknowledgement the client lost
    let (store, _db) = store().await;
    let stream = new_stream("server");
    let batch = events(2);
    let original = store.append(&stream, ExpectedRevision::NoStream, batch.clone()).await.unwrap();
    let later = store.append(&stream, ExpectedRevision::Exact(1), events(1)).await.unwrap();
    let rows = row_count(&store).await;

    // When the client retries with the same event ids and the same expectation
    let retried = store.append(&stream, ExpectedRevision::NoStream, batch).await.unwrap();

    // Then it gets the original revisions and positions, flagged as a retry, and nothing is written
    assert!(retried.idempotent);
    assert_eq!(
        (retried.first_revision, retried.last_revision, retried.first_position, retried.position),
        (original.first_revision, original.last_revision, original.first_position, original.position)
    );
    assert_eq!(row_count(&store).await, rows);
    assert!(later.position > retried.position);
}

#[tokio::test]
async fn a_retry_after_the_stream_moved_on_is_still_recognised() {
    let (store, _db) = store().await;
    let stream = new_stream("server");
    store.append(&stream, ExpectedRevision::NoStream, events(1)).await.unwrap();
    let batch = events(1);
    let original = store.append(&stream, ExpectedRevision::Exact(0), batch.clone()).await.unwrap();
    store.append(&stream, ExpectedRevision::Exact(1), events(1)).await.unwrap();

    let retried = store.append(&stream, ExpectedRevision::Exact(0), batch).await.unwrap();
    assert!(retried.idempotent);
    assert_eq!(retried.position, original.position);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_identical_any_appends_racing_write_once() {
    let (store, _db) = store().await;
    let store = Arc::new(store);
    for _ in 0..20 {
        let stream = new_stream("session");
        let batch = events(1);
        let rows = row_count(&store).await;
        let (a, b) = tokio::join!(
            store.append(&stream, ExpectedRevision::Any, batch.clone()),
            store.append(&stream, ExpectedRevision::Any, batch.clone())
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.position, b.position);
        assert!(a.idempotent ^ b.idempotent, "exactly one wrote: {a:?} {b:?}");
        assert_eq!(row_count(&store).await, rows + 1);
    }
}

#[tokio::test]
async fn a_partial_duplicate_is_refused_and_writes_nothing() {
    let (store, _db) = store().await;
    let stream = new_stream("server");
    let (a, b, c) = (event("A", 0), event("B", 1), event("C", 2));
    store.append(&stream, ExpectedRevision::NoStream, vec![a.clone(), b]).await.unwrap();
    let rows = row_count(&store).await;

    for expected in
        [ExpectedRevision::Exact(1), ExpectedRevision::Exact(0), ExpectedRevision::Any, ExpectedRevision::StreamExists]
    {
        let err = store.append(&stream, expected, vec![a.clone(), c.clone()]).await.unwrap_err();
        assert!(matches!(err, Error::PartialDuplicate { .. }), "{expected}: {err:?}");
        assert!(err.is_client_error());
    }
    assert_eq!(row_count(&store).await, rows);
    let head = store.read_stream(&stream, Direction::Backwards, StreamCursor::End, 1).await.unwrap();
    assert_eq!(head[0].revision, 1);
}

#[tokio::test]
async fn an_event_id_used_in_another_stream_is_refused() {
    let (store, _db) = store().await;
    let taken = event("A", 0);
    store.append(&new_stream("server"), ExpectedRevision::NoStream, vec![taken.clone()]).await.unwrap();
    let rows = row_count(&store).await;
    for expected in [ExpectedRevision::NoStream, ExpectedRevision::Any] {
        let err = store.append(&new_stream("server"), expected, vec![taken.clone()]).await.unwrap_err();
        assert!(matches!(err, Error::DuplicateEventId { .. }), "{expected}: {err:?}");
    }
    assert_eq!(row_count(&store).await, rows);
}

#[tokio::test]
async fn the_same_id_twice_in_one_append_is_refused() {
    let (store, _db) = store().await;
    let e = event("A", 0);
    let err = store.append(&new_stream("server"), ExpectedRevision::Any, vec![e.clone(), e]).await.unwrap_err();
    assert!(matches!(err, Error::RepeatedEventId(_)), "{err:?}");
}

#[tokio::test]
async fn metadata_comes_back_as_it_went_in() {
    let (store, _db) = store().await;
    let stream = new_stream("server");
    let meta = metadata()
        .caused_by(Uuid::new_v4())
        .from_client(Some("203.0.113.9".parse().unwrap()), Some(&"Mozilla/5.0 ".repeat(40)));
    assert_eq!(meta.user_agent.as_ref().unwrap().chars().count(), eventstore::MAX_USER_AGENT_CHARS);
    let e = EventData::new(Uuid::new_v4(), "Registered", 1, &serde_json::json!({"a": 1}), meta.clone()).unwrap();
    store.append(&stream, ExpectedRevision::NoStream, vec![e.clone()]).await.unwrap();

    let read = &store.read_stream(&stream, Direction::Forwards, StreamCursor::Start, 10).await.unwrap()[0];
    assert_eq!(read.metadata, meta);
    assert_eq!((read.event_id, read.event_type.as_str(), read.data.as_str()), (e.event_id, "Registered", r#"{"a":1}"#));
    let correlation: Uuid = sqlx::query_scalar("SELECT correlation_id FROM es.events WHERE event_id = $1")
        .bind(e.event_id)
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(correlation, meta.correlation_id, "promoted to a column for queries");
}

#[tokio::test]
async fn deterministic_ids_make_a_retried_command_a_no_op() {
    let (store, _db) = store().await;
    let stream = new_stream("server");
    let command_id = Uuid::new_v4();
    let build = || {
        (0..2)
            .map(|i| EventData::new(EventData::deterministic_id(command_id, i), "Step", 1, &i, metadata()).unwrap())
            .collect::<Vec<_>>()
    };
    let first = store.append(&stream, ExpectedRevision::NoStream, build()).await.unwrap();
    let again = store.append(&stream, ExpectedRevision::NoStream, build()).await.unwrap();
    assert!(again.idempotent);
    assert_eq!(again.position, first.position);
}

#[tokio::test]
async fn a_multi_stream_append_is_all_or_nothing() {
    let (store, _db) = store().await;
    let (a, b, c) = (new_stream("server"), new_stream("user"), new_stream("apikey"));
    store.append(&b, ExpectedRevision::NoStream, events(1)).await.unwrap();

    // One stale expectation spoils the whole append
    let rows = row_count(&store).await;
    let err = store
        .append_multi(vec![
            StreamAppend { stream: a.clone(), expected: ExpectedRevision::NoStream, events: events(2) },
            StreamAppend { stream: b.clone(), expected: ExpectedRevision::Exact(7), events: events(1) },
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::WrongExpectedRevision { actual: Some(0), .. }), "{err:?}");
    assert_eq!(row_count(&store).await, rows);

    // All fresh expectations commit together, results in the order given
    let results = store
        .append_multi(vec![
            StreamAppend { stream: c.clone(), expected: ExpectedRevision::NoStream, events: events(1) },
            StreamAppend { stream: a.clone(), expected: ExpectedRevision::NoStream, events: events(2) },
            StreamAppend { stream: b.clone(), expected: ExpectedRevision::Exact(0), events: events(1) },
        ])
        .await
        .unwrap();
    assert_eq!(results.iter().map(|r| r.last_revision).collect::<Vec<_>>(), vec![0, 1, 1]);
    let tx = results[0].position.transaction_id;
    assert!(results.iter().all(|r| r.position.transaction_id == tx), "one transaction");
    assert_eq!(row_count(&store).await, rows + 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crossing_multi_stream_appends_do_not_deadlock() {
    let (store, _db) = store().await;
    let store = Arc::new(store);
    let (a, b) = (new_stream("server"), new_stream("user"));
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let (store, a, b) = (store.clone(), a.clone(), b.clone());
            tokio::spawn(async move {
                let (x, y) = if i % 2 == 0 { (a, b) } else { (b, a) };
                store
                    .append_multi(vec![
                        StreamAppend { stream: x, expected: ExpectedRevision::Any, events: events(1) },
                        StreamAppend { stream: y, expected: ExpectedRevision::Any, events: events(1) },
                    ])
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(row_count(&store).await, 80);
}

#[tokio::test]
async fn retrying_a_whole_multi_stream_append_with_any_parts_returns_the_first_results() {
    let (store, _db) = store().await;
    let (a, b) = (new_stream("server"), new_stream("user"));
    store.append(&b, ExpectedRevision::NoStream, events(1)).await.unwrap();
    let appends = vec![
        StreamAppend { stream: a.clone(), expected: ExpectedRevision::NoStream, events: events(2) },
        StreamAppend { stream: b.clone(), expected: ExpectedRevision::Any, events: events(1) },
    ];
    let first = store.append_multi(appends.clone()).await.unwrap();
    let rows = row_count(&store).await;
    let again = store.append_multi(appends).await.unwrap();
    assert!(again.iter().all(|r| r.idempotent), "{again:?}");
    assert_eq!(
        again.iter().map(|r| r.position).collect::<Vec<_>>(),
        first.iter().map(|r| r.position).collect::<Vec<_>>()
    );
    assert_eq!(row_count(&store).await, rows);
}
