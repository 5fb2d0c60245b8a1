//! Optimistic concurrency on Postgres alone: heads remembered from units of work (the contract on every
//! backend is in `conformance/concurrency.rs`).

use eventstore::{EventStore, ExpectedRevision};

use crate::support::{event, new_stream, store};

#[tokio::test]
async fn a_head_remembered_from_a_rolled_back_unit_of_work_is_read_again() {
    // Given instance A remembers a head that never committed (its unit of work rolled back)
    let (a, _db) = store().await;
    let b = eventstore::PgEventStore::new(a.pool().clone(), Default::default());
    let stream = new_stream("server");
    a.append(&stream, ExpectedRevision::NoStream, vec![event("Registered", 0)]).await.unwrap();
    let mut unit = a.begin().await.unwrap();
    unit.append(&stream, ExpectedRevision::Exact(0), vec![event("Phantom", 1)]).await.unwrap();
    drop(unit);

    // and instance B then wrote a different event at that revision
    b.append(&stream, ExpectedRevision::Exact(0), vec![event("Real", 1)]).await.unwrap();

    // When A appends after it, its remembered link is refused by the compare-and-set, read again, and used
    let appended = a.append(&stream, ExpectedRevision::Exact(1), vec![event("Next", 2)]).await.unwrap();

    // Then the append lands on the real chain
    assert_eq!(appended.last_revision, 2);
    assert!(a.verify_all().await.unwrap().is_intact());
}
