//! Optimistic concurrency: one winner per expected revision, however many writers race.

use std::sync::Arc;

use eventstore::{Direction, Error, ExpectedRevision, StreamCursor};
use tokio::sync::Barrier;

use super::{Backend, Settings, on_every_backend};
use crate::support::{event, new_stream};

const WRITERS: usize = 50;
const ROUNDS: u64 = 100;

async fn fifty_racing_exact_appends_have_one_winner_and_forty_nine_conflicts_a_hundred_times_over(backend: Backend) {
    // Given a stream at revision 0
    let opened = backend.open().await;
    let store = opened.store();
    let stream = new_stream("server");
    store.append(&stream, ExpectedRevision::NoStream, vec![event("Registered", 0)]).await.unwrap();

    for round in 0..ROUNDS {
        // When fifty writers append expecting the same revision
        let barrier = Arc::new(Barrier::new(WRITERS));
        let tasks: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (store, stream, barrier) = (store.clone(), stream.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.append(&stream, ExpectedRevision::Exact(round), vec![event("Updated", w as u64)]).await
                })
            })
            .collect();
        let mut winners = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(result) => {
                    winners += 1;
                    assert_eq!(result.first_revision, round + 1);
                }
                // Then every loser learns the revision the winner left
                Err(Error::WrongExpectedRevision { expected, actual, .. }) => {
                    assert_eq!(expected, ExpectedRevision::Exact(round));
                    assert_eq!(actual, Some(round + 1), "round {round}");
                }
                Err(other) => panic!("round {round}: unexpected error {other:?}"),
            }
        }
        // Then exactly one wins
        assert_eq!(winners, 1, "round {round}");
    }

    // And the revisions stay dense
    let events = store.read_stream(&stream, Direction::Forwards, StreamCursor::Start, 1000).await.unwrap();
    let revisions: Vec<u64> = events.iter().map(|e| e.revision).collect();
    assert_eq!(revisions, (0..=ROUNDS).collect::<Vec<_>>());
}

async fn no_stream_admits_only_the_first_writer(backend: Backend) {
    let opened = backend.open().await;
    let store = opened.store();
    let stream = new_stream("user");
    store.append(&stream, ExpectedRevision::NoStream, vec![event("Provisioned", 0)]).await.unwrap();
    let err = store.append(&stream, ExpectedRevision::NoStream, vec![event("Provisioned", 1)]).await.unwrap_err();
    assert!(matches!(err, Error::WrongExpectedRevision { actual: Some(0), .. }), "{err:?}");
}

async fn stream_exists_refuses_a_missing_stream_and_any_accepts_both(backend: Backend) {
    let opened = backend.open().await;
    let store = opened.store();
    let stream = new_stream("session");
    let err = store.append(&stream, ExpectedRevision::StreamExists, vec![event("Refreshed", 0)]).await.unwrap_err();
    assert!(matches!(err, Error::WrongExpectedRevision { actual: None, .. }), "{err:?}");

    let first = store.append(&stream, ExpectedRevision::Any, vec![event("Started", 0)]).await.unwrap();
    assert_eq!(first.first_revision, 0);
    let second = store.append(&stream, ExpectedRevision::StreamExists, vec![event("Refreshed", 1)]).await.unwrap();
    assert_eq!(second.first_revision, 1);
    let third = store.append(&stream, ExpectedRevision::Any, vec![event("Refreshed", 2)]).await.unwrap();
    assert_eq!(third.first_revision, 2);
}

async fn an_exact_expectation_on_a_missing_stream_reports_no_stream(backend: Backend) {
    let opened = backend.open().await;
    let store = opened.store();
    let err =
        store.append(&new_stream("server"), ExpectedRevision::Exact(3), vec![event("Updated", 0)]).await.unwrap_err();
    assert!(matches!(err, Error::WrongExpectedRevision { actual: None, .. }), "{err:?}");
    assert!(err.is_conflict() && !err.is_client_error());
}

async fn two_store_instances_appending_in_turn_keep_one_valid_chain(backend: Backend) {
    // Two instances (as two gateway processes) each remember the heads they saw; neither sees the other's appends.
    let opened = backend.open().await;
    let (a, b) = (opened.store(), opened.another(Settings::default()).await);
    let stream = new_stream("server");
    let mut last =
        a.append(&stream, ExpectedRevision::NoStream, vec![event("Registered", 0)]).await.unwrap().last_revision;
    b.read_stream(&stream, Direction::Forwards, StreamCursor::Start, 10).await.unwrap();
    for i in 1..20u64 {
        let (writer, other) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        // The writer last saw the head before the other's append: its remembered link is stale.
        let previous = last;
        last = writer
            .append(&stream, ExpectedRevision::Exact(previous), vec![event("Updated", i)])
            .await
            .unwrap()
            .last_revision;
        // And the other, which remembers `previous` as the head, is refused.
        let stale = other.append(&stream, ExpectedRevision::Exact(previous), vec![event("Stale", i)]).await;
        assert!(matches!(stale, Err(Error::WrongExpectedRevision { actual: Some(a), .. }) if a == last), "{stale:?}");
    }
    assert_eq!(last, 19);
    let report = a.verify_all().await.unwrap();
    assert!(report.is_intact(), "{report:?}");
}

on_every_backend!(
    fifty_racing_exact_appends_have_one_winner_and_forty_nine_conflicts_a_hundred_times_over,
    no_stream_admits_only_the_first_writer,
    stream_exists_refuses_a_missing_stream_and_any_accepts_both,
    an_exact_expectation_on_a_missing_stream_reports_no_stream,
    two_store_instances_appending_in_turn_keep_one_valid_chain,
);
