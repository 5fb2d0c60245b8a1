//! Appends: results, idempotent retries, partial duplicates, metadata, several streams at once.

use eventstore::{Direction, Error, EventData, ExpectedRevision, StreamAppend, StreamCursor};
use uuid::Uuid;

use super::{Backend, on_every_backend};
use crate::support::{event, events, metadata, new_stream};

async fn an_append_returns_its_revisions_and_positions(backend: Backend) {
    let opened = backend.open().await;
    let store = opened.store();
    let stream = new_stream("server");
    let first = store.append(&stream, ExpectedRevision::NoStream, events(3)).await.unwrap();
    assert_eq!((first.first_revision, first.last_revision, first.idempotent), (0, 2, false));
    assert_eq!(first.first_position.transaction_id, first.position.transaction_id, "one transaction");
    assert!(first.first_position < first.position);

    let second = store.append(&stream, ExpectedRevision::Exact(2), events(1)).await.unwrap();
    assert_eq!((second.first_revision, second.last_revision), (3, 3));
    assert!(second.position > first.position);
}

async fn retrying_an_append_returns_the_first_result_and_writes_nothing(backend: Backend) {
    // Given a committed append whose acknowledgement the client lost
    let opened = backend.open().await;
    let store = opened.store();
    let stream = new_stream("server");
    let batch = events(2);
    let original = store.append(&stream, ExpectedRevision::NoStream, batch.clone()).await.unwrap();
    let later = store.append(&stream, ExpectedRevision::Exact(1), events(1)).await.unwrap();
    let rows = opened.row_count().await;

    // When the client retries with the same event ids and the same expectation
    let retried = store.append(&stream, ExpectedRevision::NoStream, batch).await.unwrap();

    // Then it gets the original revisions and positions, flagged as a retry, and nothing is written
    assert!(retried.idempotent);
    assert_eq!(
        (retried.first_revision, retried.last_revision, retried.first_position, retried.position),
        (original.first_revision, original.last_revision, original.first_position, original.position)
    );
    assert_eq!(opened.row_count().await, rows);
    assert!(later.position > retried.position);
}

async fn a_retry_after_the_stream_moved_on_is_still_recognised(backend: Backend) {
    let opened = backend.open().await;
    let store = opened.store();
    let stream = new_stream("server");
    store.append(&stream, ExpectedRevision::NoStream, events(1)).await.unwrap();
    let batch = events(1);
    let original = store.append(&stream, ExpectedRevision::Exact(0), batch.clone()).await.unwrap();
    store.append(&stream, ExpectedRevision::Exact(1), events(1)).await.unwrap();

    let retried = store.append(&stream, ExpectedRevision::Exact(0), batch).await.unwrap();
    assert!(retried.idempotent);
    assert_eq!(retried.position, original.position);
}

async fn two_identical_any_appends_racing_write_once(backend: Backend) {
    let opened = backend.open().await;
    let store = opened.store();
    for _ in 0..20 {
        let stream = new_stream("session");
        let batch = events(1);
        let rows = opened.row_count().await;
        let (a, b) = tokio::join!(
            store.append(&stream, ExpectedRevision::Any, batch.clone()),
            store.append(&stream, ExpectedRevision::Any, batch.clone())
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.position, b.position);
        assert!(a.idempotent ^ b.idempotent, "exactly one wrote: {a:?} {b:?}");
        assert_eq!(opened.row_count().await, rows + 1);
    }
}

async fn a_partial_duplicate_is_refused_and_writes_nothing(backend: Backend) {
    let opened = backend.open().await;
    let store = opened.store();
    let stream = new_stream("server");
    let (a, b, c) = (event("A", 0), event("B", 1), event("C", 2));
    store.append(&stream, ExpectedRevision::NoStream, vec![a.clone(), b]).await.unwrap();
    let rows = opened.row_count().await;

    for expected in
        [ExpectedRevision::Exact(1), ExpectedRevision::Exact(0), ExpectedRevision::Any, ExpectedRevision::StreamExists]
    {
        let err = store.append(&stream, expected, vec![a.clone(), c.clone()]).await.unwrap_err();
        assert!(matches!(err, Error::PartialDuplicate { .. }), "{expected}: {err:?}");
        assert!(err.is_client_error());
    }
    assert_eq!(opened.row_count().await, rows);
    let head = store.read_stream(&stream, Direction::Backwards, StreamCursor::End, 1).await.unwrap();
    assert_eq!(head[0].revision, 1);
}

async fn an_event_id_used_in_another_stream_is_refused(backend: Backend) {
    let opened = backend.open().await;
    let store = opened.store();
    let taken = event("A", 0);
    store.append(&new_stream("server"), ExpectedRevision::NoStream, vec![taken.clone()]).await.unwrap();
    let rows = opened.row_count().await;
    for expected in [ExpectedRevision::NoStream, ExpectedRevision::Any] {
        let err = store.append(&new_stream("server"), expected, vec![taken.clone()]).await.unwrap_err();
        assert!(matches!(err, Error::DuplicateEventId { .. }), "{expected}: {err:?}");
    }
    assert_eq!(opened.row_count().await, rows);
}

async fn the_same_id_twice_in_one_append_is_refused(backend: Backend) {
    let opened = backend.open().await;
    let store = opened.store();
    let e = event("A", 0);
    let err = store.append(&new_stream("server"), ExpectedRevision::Any, vec![e.clone(), e]).await.unwrap_err();
    assert!(matches!(err, Error::RepeatedEventId(_)), "{err:?}");
}

async fn metadata_comes_back_as_it_went_in(backend: Backend) {
    let opened = backend.open().await;
    let store = opened.store();
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
    let (correlation, _, _) = opened.stored(e.event_id).await;
    assert_eq!(correlation, meta.correlation_id, "promoted to a column for queries");
}

async fn deterministic_ids_make_a_retried_command_a_no_op(backend: Backend) {
    let opened = backend.open().await;
    let store = opened.store();
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

async fn a_multi_stream_append_is_all_or_nothing(backend: Backend) {
    let opened = backend.open().await;
    let store = opened.store();
    let (a, b, c) = (new_stream("server"), new_stream("user"), new_stream("apikey"));
    store.append(&b, ExpectedRevision::NoStream, events(1)).await.unwrap();

    // One stale expectation spoils the whole append
    let rows = opened.row_count().await;
    let err = store
        .append_multi(vec![
            StreamAppend { stream: a.clone(), expected: ExpectedRevision::NoStream, events: events(2) },
            StreamAppend { stream: b.clone(), expected: ExpectedRevision::Exact(7), events: events(1) },
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::WrongExpectedRevision { actual: Some(0), .. }), "{err:?}");
    assert_eq!(opened.row_count().await, rows);

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
    assert_eq!(opened.row_count().await, rows + 4);
}

async fn crossing_multi_stream_appends_do_not_deadlock(backend: Backend) {
    let opened = backend.open().await;
    let store = opened.store();
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
    assert_eq!(opened.row_count().await, 80);
}

async fn retrying_a_whole_multi_stream_append_with_any_parts_returns_the_first_results(backend: Backend) {
    let opened = backend.open().await;
    let store = opened.store();
    let (a, b) = (new_stream("server"), new_stream("user"));
    store.append(&b, ExpectedRevision::NoStream, events(1)).await.unwrap();
    let appends = vec![
        StreamAppend { stream: a.clone(), expected: ExpectedRevision::NoStream, events: events(2) },
        StreamAppend { stream: b.clone(), expected: ExpectedRevision::Any, events: events(1) },
    ];
    let first = store.append_multi(appends.clone()).await.unwrap();
    let rows = opened.row_count().await;
    let again = store.append_multi(appends).await.unwrap();
    assert!(again.iter().all(|r| r.idempotent), "{again:?}");
    assert_eq!(
        again.iter().map(|r| r.position).collect::<Vec<_>>(),
        first.iter().map(|r| r.position).collect::<Vec<_>>()
    );
    assert_eq!(opened.row_count().await, rows);
}

async fn a_stream_twice_in_one_multi_stream_append_is_refused(backend: Backend) {
    let opened = backend.open().await;
    let store = opened.store();
    let stream = new_stream("server");
    let part = |expected| StreamAppend { stream: stream.clone(), expected, events: events(1) };
    let refused =
        store.append_multi(vec![part(ExpectedRevision::NoStream), part(ExpectedRevision::Exact(0))]).await.unwrap_err();
    assert!(refused.is_client_error(), "{refused:?}");
    assert_eq!(opened.row_count().await, 0);
}

on_every_backend!(
    a_stream_twice_in_one_multi_stream_append_is_refused,
    an_append_returns_its_revisions_and_positions,
    retrying_an_append_returns_the_first_result_and_writes_nothing,
    a_retry_after_the_stream_moved_on_is_still_recognised,
    two_identical_any_appends_racing_write_once,
    a_partial_duplicate_is_refused_and_writes_nothing,
    an_event_id_used_in_another_stream_is_refused,
    the_same_id_twice_in_one_append_is_refused,
    metadata_comes_back_as_it_went_in,
    deterministic_ids_make_a_retried_command_a_no_op,
    a_multi_stream_append_is_all_or_nothing,
    crossing_multi_stream_appends_do_not_deadlock,
    retrying_a_whole_multi_stream_append_with_any_parts_returns_the_first_results,
);
