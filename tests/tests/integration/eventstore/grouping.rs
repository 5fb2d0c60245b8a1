//! Group appends: concurrent appends to different streams share a statement and a commit, and each keeps
//! its own expectation, result and errors.

use std::collections::HashSet;
use std::sync::Arc;

use eventstore::{
    AppendResult, Claim, Claims, Direction, Error, EventStore, ExpectedRevision, PgEventStore, PgEventStoreOptions,
    Result, StreamCursor, StreamName,
};
use sqlx::Connection;
use tokio::task::JoinHandle;

use crate::support::{DEADLINE, event, events, new_stream, row_count, store, store_with};

const STREAMS: usize = 20;

/// A store with one lane, so that appends queue behind one held on a row lock, and wait for it as long
/// as the test needs.
async fn one_lane_store() -> (Arc<PgEventStore>, tests::TestDatabase) {
    let options = PgEventStoreOptions { append_lanes: 1, group_wait: DEADLINE, ..Default::default() };
    let (store, db) = store_with(tests::PostgresServer::shared().unwrap(), options, 8).await;
    (Arc::new(store), db)
}

/// Streams at revision 0, created through `store` (so it knows their heads).
async fn streams_at_revision_zero(store: &PgEventStore, count: usize) -> Vec<StreamName> {
    let mut streams = Vec::new();
    for n in 0..count {
        let stream = new_stream("server");
        store.append(&stream, ExpectedRevision::NoStream, vec![event("Registered", n as u64)]).await.unwrap();
        streams.push(stream);
    }
    streams
}

/// Holds the store's only lane: an append to `blocker` that waits on a row lock taken by the returned
/// connection, until that connection's transaction ends.
async fn hold_the_lane(
    store: &Arc<PgEventStore>,
    db: &tests::TestDatabase,
) -> (sqlx::PgConnection, JoinHandle<Result<AppendResult>>) {
    let blocker = new_stream("blocker");
    store.append(&blocker, ExpectedRevision::NoStream, vec![event("Registered", 0)]).await.unwrap();
    let mut locker = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut locker).await.unwrap();
    sqlx::query("SELECT 1 FROM es.streams WHERE stream_id = $1 FOR UPDATE")
        .bind(blocker.as_str())
        .execute(&mut locker)
        .await
        .unwrap();
    let held = {
        let store = store.clone();
        tokio::spawn(async move { store.append(&blocker, ExpectedRevision::Exact(0), vec![event("Renamed", 1)]).await })
    };
    // The blocked append has the lane once its statement waits on the lock.
    one_backend_waits_on_a_lock(store).await;
    (locker, held)
}

/// Waits until one backend of the test's database waits on a lock.
async fn one_backend_waits_on_a_lock(store: &PgEventStore) {
    tests::eventually(DEADLINE, "an append to wait on a row lock", || async {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        (waiting == 1).then_some(())
    })
    .await;
}

/// Spawns one append per stream, each expecting revision 0, and waits until all of them are queued.
async fn queue_appends(store: &Arc<PgEventStore>, streams: &[StreamName]) -> Vec<JoinHandle<Result<AppendResult>>> {
    queue(store, streams.iter().map(|s| (s.clone(), ExpectedRevision::Exact(0), Claims::none())).collect()).await
}

/// Spawns one append of one event per entry, and waits until all of them are queued.
async fn queue(
    store: &Arc<PgEventStore>,
    appends: Vec<(StreamName, ExpectedRevision, Claims)>,
) -> Vec<JoinHandle<Result<AppendResult>>> {
    let count = appends.len();
    let tasks = appends
        .into_iter()
        .map(|(stream, expected, claims)| {
            let store = store.clone();
            tokio::spawn(
                async move { store.append_claiming(&stream, expected, vec![event("Renamed", 1)], claims).await },
            )
        })
        .collect();
    tests::eventually(DEADLINE, "the appends to queue", || async { (store.waiting_appends() == count).then_some(()) })
        .await;
    tasks
}

/// New streams, each taking the claim `name-<n>`.
fn new_streams_claiming(count: usize) -> Vec<(StreamName, ExpectedRevision, Claims)> {
    (0..count)
        .map(|n| {
            (new_stream("server"), ExpectedRevision::NoStream, Claims::take(Claim::new("name", format!("name-{n}"))))
        })
        .collect()
}

/// The claims of scope `name`, as (value, stream) pairs in value order.
async fn claims(store: &PgEventStore) -> Vec<(String, String)> {
    sqlx::query_as("SELECT value, stream_id FROM es.claims WHERE scope = 'name' ORDER BY value")
        .fetch_all(store.pool())
        .await
        .unwrap()
}

async fn stream_exists(store: &PgEventStore, stream: &StreamName) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM es.streams WHERE stream_id = $1)")
        .bind(stream.as_str())
        .fetch_one(store.pool())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_waiting_for_a_lane_are_written_together_in_one_transaction() {
    // Given appends queued behind one that holds the only lane
    let (store, db) = one_lane_store().await;
    let streams = streams_at_revision_zero(&store, STREAMS).await;
    let (locker, held) = hold_the_lane(&store, &db).await;
    let queued = queue_appends(&store, &streams).await;

    // When the lane comes free
    locker.close().await.unwrap();
    let blocked = held.await.unwrap().unwrap();

    // Then the queued appends commit together, each with its own revision and positions
    let mut results = Vec::new();
    for task in queued {
        results.push(task.await.unwrap().unwrap());
    }
    let transactions: HashSet<u64> = results.iter().map(|r| r.position.transaction_id).collect();
    assert_eq!(transactions.len(), 1, "one transaction for the group: {transactions:?}");
    assert_ne!(transactions.iter().next(), Some(&blocked.position.transaction_id));
    let positions: HashSet<u64> = results.iter().map(|r| r.position.global_position).collect();
    assert_eq!(positions.len(), STREAMS);
    for (stream, result) in streams.iter().zip(&results) {
        assert_eq!((result.first_revision, result.last_revision, result.idempotent), (1, 1, false));
        let read = store.read_stream(stream, Direction::Forwards, StreamCursor::Start, 10).await.unwrap();
        assert_eq!(read.iter().map(|e| e.revision).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(read[1].position, result.position);
    }
    // And the chains hold
    assert!(store.verify_all().await.unwrap().violations.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grouped_append_whose_expectation_fails_reports_its_conflict_and_the_others_commit() {
    // Given streams at revision 0, half of which another process moved on without this store knowing
    let (store, db) = one_lane_store().await;
    let streams = streams_at_revision_zero(&store, STREAMS).await;
    let other = PgEventStore::new(store.pool().clone(), PgEventStoreOptions::default());
    for stream in &streams[..STREAMS / 2] {
        other.append(stream, ExpectedRevision::Exact(0), vec![event("Renamed", 9)]).await.unwrap();
    }
    let (locker, held) = hold_the_lane(&store, &db).await;
    let queued = queue_appends(&store, &streams).await;

    // When they run as a group
    locker.close().await.unwrap();
    held.await.unwrap().unwrap();
    let outcomes: Vec<_> = futures_util::future::join_all(queued).await.into_iter().map(|t| t.unwrap()).collect();

    // Then the stale half conflict with the revision the other process left, and the rest commit
    for (n, outcome) in outcomes.iter().enumerate() {
        if n < STREAMS / 2 {
            let err = outcome.as_ref().unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::WrongExpectedRevision { expected: ExpectedRevision::Exact(0), actual: Some(1), .. }
                ),
                "{err:?}"
            );
        } else {
            assert_eq!(outcome.as_ref().unwrap().first_revision, 1);
        }
    }
    let written: HashSet<u64> = outcomes.iter().flatten().map(|r| r.position.transaction_id).collect();
    assert_eq!(written.len(), 1, "the others still share one transaction");
    // Each stream holds exactly two events, and the chains hold
    assert_eq!(row_count(&store).await, (STREAMS * 2 + 2) as i64);
    assert!(store.verify_all().await.unwrap().violations.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_event_id_in_a_group_fails_only_its_own_append() {
    // Given queued appends, one of which reuses an event id stored in another stream
    let (store, db) = one_lane_store().await;
    let streams = streams_at_revision_zero(&store, STREAMS).await;
    let stored = store.read_stream(&streams[0], Direction::Forwards, StreamCursor::Start, 1).await.unwrap();
    let fresh = new_stream("server");
    store.append(&fresh, ExpectedRevision::NoStream, vec![event("Registered", 0)]).await.unwrap();
    let (locker, held) = hold_the_lane(&store, &db).await;
    let mut queued = queue_appends(&store, &streams[1..]).await;
    let mut reused = event("Renamed", 1);
    reused.event_id = stored[0].event_id;
    queued.push({
        let (store, fresh) = (store.clone(), fresh.clone());
        tokio::spawn(async move { store.append(&fresh, ExpectedRevision::Exact(0), vec![reused]).await })
    });
    tests::eventually(DEADLINE, "the appends to queue", || async {
        (store.waiting_appends() == STREAMS).then_some(())
    })
    .await;

    // When they run
    locker.close().await.unwrap();
    held.await.unwrap().unwrap();
    let mut outcomes: Vec<_> = futures_util::future::join_all(queued).await.into_iter().map(|t| t.unwrap()).collect();

    // Then the reused id is refused and every other append is written
    let refused = outcomes.pop().unwrap().unwrap_err();
    assert!(matches!(refused, Error::DuplicateEventId { .. }), "{refused:?}");
    assert!(outcomes.iter().all(|o| o.as_ref().is_ok_and(|r| r.first_revision == 1)), "{outcomes:?}");
    assert_eq!(store.read_stream(&fresh, Direction::Forwards, StreamCursor::Start, 10).await.unwrap().len(), 1);
    assert_eq!(row_count(&store).await, (STREAMS + STREAMS - 1 + 3) as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_writers_on_their_own_streams_keep_dense_revisions_and_valid_chains() {
    // Given 32 writers, each appending 25 times to its own stream through the default lanes
    let (store, _db) = store().await;
    let store = Arc::new(store);
    let writers: Vec<_> = (0..32)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let stream = new_stream("session");
                let mut expected = ExpectedRevision::NoStream;
                for _ in 0..25 {
                    let result = store.append(&stream, expected, events(2)).await?;
                    expected = ExpectedRevision::Exact(result.last_revision);
                }
                Ok::<_, Error>(stream)
            })
        })
        .collect();
    let streams: Vec<StreamName> =
        futures_util::future::join_all(writers).await.into_iter().map(|t| t.unwrap().unwrap()).collect();

    // Then every stream reads back 0..50 in order, and nothing else was written
    for stream in &streams {
        let read = store.read_stream(stream, Direction::Forwards, StreamCursor::Start, 100).await.unwrap();
        assert_eq!(read.iter().map(|e| e.revision).collect::<Vec<_>>(), (0..50).collect::<Vec<_>>());
    }
    assert_eq!(row_count(&store).await, 32 * 50);
    assert!(store.verify_all().await.unwrap().violations.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_waiting_behind_a_lane_stuck_on_its_own_callers_lock_runs_alone() {
    // Given a caller holding a stream's row lock in a unit of work, and the only lane taken by an append
    // that waits for that lock
    let options = PgEventStoreOptions { append_lanes: 1, ..Default::default() };
    let (store, _db) = store_with(tests::PostgresServer::shared().unwrap(), options, 8).await;
    let store = Arc::new(store);
    let streams = streams_at_revision_zero(&store, 2).await;
    let (locked, other) = (streams[0].clone(), streams[1].clone());
    let mut unit = store.begin().await.unwrap();
    unit.append(&locked, ExpectedRevision::Exact(0), vec![event("Renamed", 1)]).await.unwrap();
    let stuck = {
        let (store, locked) = (store.clone(), locked.clone());
        // It read revision 0 before the unit of work wrote revision 1: it waits for the lock, then conflicts.
        tokio::spawn(async move { store.append(&locked, ExpectedRevision::Exact(0), vec![event("Renamed", 2)]).await })
    };
    one_backend_waits_on_a_lock(&store).await;

    // When the lock holder appends to another stream before it commits
    let own =
        tokio::time::timeout(DEADLINE, store.append(&other, ExpectedRevision::Exact(0), vec![event("Renamed", 1)]))
            .await
            .expect("the append leaves the queue and runs alone instead of waiting for the stuck lane");

    // Then it is written, and once the unit of work commits the stuck append learns it lost
    assert_eq!(own.unwrap().first_revision, 1);
    unit.commit().await.unwrap();
    let lost = stuck.await.unwrap().unwrap_err();
    assert!(matches!(lost, Error::WrongExpectedRevision { actual: Some(1), .. }), "{lost:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_streams_queued_with_their_claims_are_created_together_in_one_transaction() {
    // Given appends creating streams, each claiming a name, queued behind the only lane
    let (store, db) = one_lane_store().await;
    let (locker, held) = hold_the_lane(&store, &db).await;
    let appends = new_streams_claiming(STREAMS);
    let streams: Vec<StreamName> = appends.iter().map(|(s, _, _)| s.clone()).collect();
    let queued = queue(&store, appends).await;

    // When the lane comes free
    locker.close().await.unwrap();
    held.await.unwrap().unwrap();
    let results: Vec<AppendResult> =
        futures_util::future::join_all(queued).await.into_iter().map(|t| t.unwrap().unwrap()).collect();

    // Then they share one transaction, each stream starts at revision 0, and each holds its claim
    let transactions: HashSet<u64> = results.iter().map(|r| r.position.transaction_id).collect();
    assert_eq!(transactions.len(), 1, "{transactions:?}");
    assert!(results.iter().all(|r| (r.first_revision, r.last_revision) == (0, 0)), "{results:?}");
    let mut expected: Vec<(String, String)> =
        streams.iter().enumerate().map(|(n, s)| (format!("name-{n}"), s.to_string())).collect();
    expected.sort();
    assert_eq!(claims(&store).await, expected);
    assert!(store.verify_all().await.unwrap().violations.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_held_elsewhere_refuses_only_its_own_append_in_a_group() {
    // Given a stream holding `name-0`, and queued appends claiming `name-0` .. `name-19`
    let (store, db) = one_lane_store().await;
    let holder = new_stream("server");
    store
        .append_claiming(
            &holder,
            ExpectedRevision::NoStream,
            vec![event("Registered", 0)],
            Claims::take(Claim::new("name", "name-0")),
        )
        .await
        .unwrap();
    let (locker, held) = hold_the_lane(&store, &db).await;
    let appends = new_streams_claiming(STREAMS);
    let refused_stream = appends[0].0.clone();
    let queued = queue(&store, appends).await;

    // When they run
    locker.close().await.unwrap();
    held.await.unwrap().unwrap();
    let mut outcomes: Vec<_> = futures_util::future::join_all(queued).await.into_iter().map(|t| t.unwrap()).collect();

    // Then the claim already held is refused by name and nothing of its append is written; the rest are
    let refused = outcomes.remove(0).unwrap_err();
    assert!(matches!(&refused, Error::ClaimTaken { value, .. } if value == "name-0"), "{refused:?}");
    assert!(!stream_exists(&store, &refused_stream).await);
    assert!(outcomes.iter().all(|o| o.as_ref().is_ok_and(|r| r.first_revision == 0)), "{outcomes:?}");
    let held_claims = claims(&store).await;
    assert_eq!(held_claims.len(), STREAMS);
    assert!(held_claims.contains(&("name-0".to_owned(), holder.to_string())));
    assert_eq!(row_count(&store).await, (STREAMS + 2) as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_stream_that_exists_conflicts_in_a_group_and_the_others_commit_together() {
    // Given an existing stream, and queued appends creating new streams plus one "creating" it again
    let (store, db) = one_lane_store().await;
    let existing = streams_at_revision_zero(&store, 1).await.remove(0);
    let (locker, held) = hold_the_lane(&store, &db).await;
    let mut appends = new_streams_claiming(STREAMS - 1);
    appends.push((existing, ExpectedRevision::NoStream, Claims::take(Claim::new("name", "late"))));
    let queued = queue(&store, appends).await;

    // When they run
    locker.close().await.unwrap();
    held.await.unwrap().unwrap();
    let mut outcomes: Vec<_> = futures_util::future::join_all(queued).await.into_iter().map(|t| t.unwrap()).collect();

    // Then that one conflicts with revision 0 and takes no claim, and the others share one transaction
    let conflict = outcomes.pop().unwrap().unwrap_err();
    assert!(matches!(conflict, Error::WrongExpectedRevision { actual: Some(0), .. }), "{conflict:?}");
    let transactions: HashSet<u64> = outcomes.iter().map(|o| o.as_ref().unwrap().position.transaction_id).collect();
    assert_eq!(transactions.len(), 1, "{transactions:?}");
    assert!(!claims(&store).await.iter().any(|(value, _)| value == "late"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_waiting_on_an_uncommitted_new_stream_gives_up_and_its_appends_run_alone() {
    // Given a unit of work that created a stream and has not committed
    let (store, db) = one_lane_store().await;
    let contested = new_stream("server");
    let mut unit = store.begin().await.unwrap();
    unit.append(&contested, ExpectedRevision::NoStream, vec![event("Registered", 0)]).await.unwrap();
    // And a group that will try to create the same stream, next to others
    let (locker, held) = hold_the_lane(&store, &db).await;
    let mut appends = new_streams_claiming(4);
    appends.push((contested.clone(), ExpectedRevision::NoStream, Claims::none()));
    let mut queued = queue(&store, appends).await;

    // When the group runs while the unit of work stays open
    locker.close().await.unwrap();
    held.await.unwrap().unwrap();
    let contender = queued.pop().unwrap();
    let others = tokio::time::timeout(DEADLINE, futures_util::future::join_all(queued))
        .await
        .expect("the group gives up on the lock and the others run alone");

    // Then the others are written, and the contender learns it lost once the unit of work commits
    assert!(others.into_iter().all(|o| o.unwrap().is_ok_and(|r| r.first_revision == 0)));
    unit.commit().await.unwrap();
    let lost = contender.await.unwrap().unwrap_err();
    assert!(matches!(lost, Error::WrongExpectedRevision { actual: Some(0), .. }), "{lost:?}");
}
