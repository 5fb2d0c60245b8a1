//! `$all` order: no reader ever skips an event that commits after a later one.

use std::collections::HashSet;
use std::time::Duration;

use tokio::time::Instant;

use eventstore::{EventStore, ExpectedRevision, Position, RecordedEvent, Subscription, SubscriptionOptions};
use rand::RngExt;
use tests::{PostgresOptions, PostgresServer};
use uuid::Uuid;

use crate::support::{DEADLINE, all_ids_in_order, event, events, new_stream, row_count, shared, store, store_with};

/// Reads `$all` one event per page, as a slow subscriber would, until `count` events have come.
async fn read_one_by_one(store: &dyn EventStore, count: usize) -> Vec<RecordedEvent> {
    let until = Instant::now() + DEADLINE;
    let mut seen = Vec::new();
    let mut checkpoint: Option<Position> = None;
    while seen.len() < count {
        match store.read_all(checkpoint, 1).await.unwrap().pop() {
            Some(e) => {
                checkpoint = Some(e.position);
                seen.push(e);
            }
            // Another test's transaction may hold the cluster's xmin for a moment: poll.
            None => {
                assert!(Instant::now() < until, "only {} of {count} events became readable", seen.len());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    seen
}

#[tokio::test]
async fn an_event_committed_late_with_a_lower_position_is_not_skipped() {
    let (store, _db) = store().await;
    let (early, late) = (event("Early", 1), event("Late", 2));

    // Given T1 appends first (lower position) and stays open while T2 appends and commits
    let mut t1 = store.begin().await.unwrap();
    let r1 = t1.append(&new_stream("server"), ExpectedRevision::NoStream, vec![early.clone()]).await.unwrap();
    let r2 = store.append(&new_stream("server"), ExpectedRevision::NoStream, vec![late.clone()]).await.unwrap();
    assert!(r1.position.global_position < r2.position.global_position);

    // When a reader looks before T1 commits, it sees neither (T2's event waits behind T1)
    assert!(store.read_all(None, 100).await.unwrap().is_empty());
    assert_eq!(store.head().await.unwrap(), None);
    // though T2's event is committed: a reader that wants everything committed must wait for it
    assert_eq!(store.committed_head().await.unwrap(), Some(r2.position));

    // Then after T1 commits it sees both, T1's first, and a checkpoint after one loses nothing
    t1.commit().await.unwrap();
    let seen = read_one_by_one(&store, 2).await;
    assert_eq!(seen.iter().map(|e| e.event_id).collect::<Vec<_>>(), vec![early.event_id, late.event_id]);
}

#[tokio::test]
async fn the_checkpoint_is_the_pair_because_a_later_transaction_can_own_a_lower_position() {
    let (store, _db) = store().await;
    let (a_event, b_event) = (event("A", 1), event("B", 2));

    // Given T_a takes its transaction id before T_b, but T_b allocates its position first
    let mut t_a = store.begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()").execute(t_a.connection()).await.unwrap();
    let mut t_b = store.begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()").execute(t_b.connection()).await.unwrap();
    let rb = t_b.append(&new_stream("server"), ExpectedRevision::NoStream, vec![b_event.clone()]).await.unwrap();
    let ra = t_a.append(&new_stream("server"), ExpectedRevision::NoStream, vec![a_event.clone()]).await.unwrap();
    assert!(ra.position.transaction_id < rb.position.transaction_id);
    assert!(ra.position.global_position > rb.position.global_position);

    // When T_b commits first, nothing is visible while T_a runs
    t_b.commit().await.unwrap();
    assert!(store.read_all(None, 10).await.unwrap().is_empty());
    t_a.commit().await.unwrap();

    // Then a one-at-a-time reader gets A then B: B's allocated position is below A's, so a
    // checkpoint of the allocated position alone would have skipped it
    let seen = read_one_by_one(&store, 2).await;
    assert_eq!(seen.iter().map(|e| e.event_id).collect::<Vec<_>>(), vec![a_event.event_id, b_event.event_id]);
    assert!(seen[1].position.global_position < seen[0].position.global_position);
    assert!(seen[1].position > seen[0].position);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_racing_eight_writers_with_random_commit_delays_sees_every_event_once_in_order() {
    const WRITERS: usize = 8;
    const PER_WRITER: usize = 1250; // 10,000 events
    let (store, _db) = store().await;
    let dyn_store = shared(&store);

    // A subscriber with small pages runs while the writers race
    let options = SubscriptionOptions { page_size: 50, poll_interval: Duration::from_millis(5), ..Default::default() };
    let mut subscription = Subscription::new(dyn_store.clone(), None, options);
    let total = WRITERS * PER_WRITER;
    let reader = tokio::spawn(async move {
        let mut seen = Vec::with_capacity(total);
        while seen.len() < total {
            let e = tokio::time::timeout(DEADLINE, subscription.next()).await.expect("subscriber stalled").unwrap();
            seen.push((e.event_id, e.position));
        }
        seen
    });

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let stream = new_stream("session");
                for i in 0..PER_WRITER {
                    let mut unit = store.begin().await.unwrap();
                    let expected = ExpectedRevision::after(i.checked_sub(1).map(|r| r as u64));
                    unit.append(&stream, expected, vec![event("Step", (w * PER_WRITER + i) as u64)]).await.unwrap();
                    // Fault injection, not synchronisation: hold some commits open so others overtake them.
                    let hold = rand::rng().random_range(0..3_000u64);
                    if hold > 2_000 {
                        tokio::time::sleep(Duration::from_micros(hold)).await;
                    }
                    unit.commit().await.unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }

    let seen = reader.await.unwrap();
    let ids: Vec<Uuid> = seen.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), total, "each event once");
    assert!(seen.windows(2).all(|w| w[0].1 < w[1].1), "strictly increasing positions");
    assert_eq!(ids, all_ids_in_order(&store).await, "the same set, in $all order");
}

#[tokio::test]
async fn a_long_open_transaction_delays_readers_but_loses_nothing() {
    // Its own cluster: holding the oldest transaction open stalls every reader in the cluster.
    let server = PostgresServer::start(PostgresOptions::default()).unwrap();
    let (store, _db) = store_with(&server, Default::default(), 10).await;
    let before = store.append(&new_stream("server"), ExpectedRevision::NoStream, events(5)).await.unwrap();
    let dyn_store = shared(&store);
    let mut sub = Subscription::new(
        dyn_store.clone(),
        Some(before.position),
        SubscriptionOptions { page_size: 100, poll_interval: Duration::from_millis(5), ..Default::default() },
    );

    // Given a transaction that holds an xid (and an appended event) open
    let mut long = store.begin().await.unwrap();
    let held = long.append(&new_stream("server"), ExpectedRevision::NoStream, events(1)).await.unwrap();

    // When 100 more events commit in other transactions
    let mut committed = Vec::new();
    for _ in 0..100 {
        committed.push(store.append(&new_stream("session"), ExpectedRevision::NoStream, events(1)).await.unwrap());
    }

    // Then readers are held at the position before it: nothing after it is visible yet
    assert_eq!(store.head().await.unwrap(), Some(before.position));
    assert!(store.read_all(Some(before.position), 1000).await.unwrap().is_empty());
    assert!(tokio::time::timeout(Duration::from_millis(200), sub.next()).await.is_err(), "subscriber waits");

    // And once it commits, everything arrives, the held event first
    long.commit().await.unwrap();
    let mut got = Vec::new();
    while got.len() < 101 {
        got.push(tokio::time::timeout(DEADLINE, sub.next()).await.expect("released").unwrap().position);
    }
    assert_eq!(got[0], held.position);
    assert_eq!(got[1..].to_vec(), committed.iter().map(|r| r.position).collect::<Vec<_>>());
    assert_eq!(row_count(&store).await, 106);

    // A long transaction that rolls back leaves no trace and releases readers as well
    let mut doomed = store.begin().await.unwrap();
    doomed.append(&new_stream("server"), ExpectedRevision::NoStream, events(1)).await.unwrap();
    let after = store.append(&new_stream("server"), ExpectedRevision::NoStream, events(1)).await.unwrap();
    drop(doomed);
    let next = tokio::time::timeout(DEADLINE, sub.next()).await.expect("released by rollback").unwrap();
    assert_eq!(next.position, after.position);
}

#[tokio::test]
async fn a_subscription_survives_a_database_crash_and_loses_nothing() {
    let server = PostgresServer::start(PostgresOptions::default()).unwrap();
    let (store, _db) = store_with(&server, Default::default(), 4).await;
    let options = SubscriptionOptions { page_size: 7, poll_interval: Duration::from_millis(5), ..Default::default() };
    let mut sub = Subscription::new(shared(&store), None, options);
    for _ in 0..20 {
        store.append(&new_stream("server"), ExpectedRevision::NoStream, events(3)).await.unwrap();
    }
    let mut seen = Vec::new();
    while seen.len() < 30 {
        seen.push(sub.next().await.unwrap().position);
    }

    // The database dies under the subscriber: it reports an outage, not a wrong answer
    server.kill().unwrap();
    let err = tokio::time::timeout(DEADLINE, async {
        loop {
            match sub.next().await {
                Ok(event) => seen.push(event.position),
                Err(e) => return e,
            }
        }
    })
    .await
    .expect("the outage surfaces");
    assert!(err.is_unavailable(), "{err:?}");

    // It comes back, more events are written, and the subscriber carries on from its checkpoint
    server.restart().unwrap();
    let after_crash = new_stream("server");
    let more = tests::eventually_ok(DEADLINE, || store.append(&after_crash, ExpectedRevision::NoStream, events(3)))
        .await
        .unwrap();
    let total = row_count(&store).await as usize;
    while seen.len() < total {
        match tokio::time::timeout(DEADLINE, sub.next()).await.expect("resumes") {
            Ok(event) => seen.push(event.position),
            Err(e) => assert!(e.is_unavailable(), "{e:?}"),
        }
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "each event once, in order");
    assert_eq!(seen.last(), Some(&more.position));
    assert_eq!(seen, ids_positions(&store).await);
}

/// Every position in `es.events`, in `$all` order.
async fn ids_positions(store: &eventstore::PgEventStore) -> Vec<Position> {
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT transaction_id::text::bigint AS tx, global_position FROM es.events e
          ORDER BY e.transaction_id, e.global_position",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    rows.into_iter().map(|(tx, gp)| Position { transaction_id: tx as u64, global_position: gp as u64 }).collect()
}

#[tokio::test]
async fn a_transaction_older_than_the_streams_last_writer_cannot_append_before_it_in_all() {
    let (store, _db) = store().await;
    let stream = new_stream("server");
    let head = store.append(&stream, ExpectedRevision::NoStream, events(1)).await.unwrap();

    // Given a unit of work that took its transaction id first (it wrote a reservation, say)
    let mut unit = store.begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()").execute(unit.connection()).await.unwrap();
    // and another writer that then appended to the stream and committed, with a later transaction id
    let later = store.append(&stream, ExpectedRevision::Exact(head.last_revision), events(1)).await.unwrap();

    // When the unit appends after that event, its event would sort before it in $all: refused as a conflict
    let err = unit.append(&stream, ExpectedRevision::Exact(later.last_revision), events(1)).await.unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
    drop(unit);

    // Then run again in a new transaction, it appends, and $all holds the stream in revision order
    let mut unit = store.begin().await.unwrap();
    unit.append(&stream, ExpectedRevision::Exact(later.last_revision), events(1)).await.unwrap();
    unit.commit().await.unwrap();
    let all = read_one_by_one(&store, 3).await;
    assert_eq!(all.iter().map(|e| e.revision).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert!(store.verify_all().await.unwrap().is_intact());
}
