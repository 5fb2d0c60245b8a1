//! Claims: values unique among streams, taken and released with an append, atomically.

use eventstore::{Claim, Claims, Error, ExpectedRevision};

use super::{Backend, on_every_backend};
use crate::support::{event, new_stream};

fn name(value: &str) -> Claim {
    Claim::new("server-name", value)
}

async fn a_claim_held_by_another_stream_refuses_the_append_and_writes_nothing(backend: Backend) {
    // Given a stream holding the name "alpha"
    let opened = backend.open().await;
    let store = opened.store();
    let (first, second) = (new_stream("server"), new_stream("server"));
    store
        .append_claiming(&first, ExpectedRevision::NoStream, vec![event("Registered", 0)], Claims::take(name("alpha")))
        .await
        .unwrap();

    // When another stream claims it
    let refused = store
        .append_claiming(&second, ExpectedRevision::NoStream, vec![event("Registered", 1)], Claims::take(name("alpha")))
        .await
        .unwrap_err();

    // Then it is refused by name, and neither its events, its stream nor a claim were written
    assert!(
        matches!(&refused, Error::ClaimTaken { scope, value } if scope == "server-name" && value == "alpha"),
        "{refused:?}"
    );
    assert_eq!(opened.row_count().await, 1);
    assert_eq!(opened.stream_count().await, 1);
    assert_eq!(opened.claims("server-name").await, [("alpha".to_owned(), first.to_string())]);
}

async fn a_claim_is_written_only_with_its_events(backend: Backend) {
    // Given a stream at revision 0
    let opened = backend.open().await;
    let store = opened.store();
    let stream = new_stream("server");
    store.append(&stream, ExpectedRevision::NoStream, vec![event("Registered", 0)]).await.unwrap();

    // When an append with a stale expectation claims a name
    let refused = store
        .append_claiming(&stream, ExpectedRevision::NoStream, vec![event("Registered", 1)], Claims::take(name("beta")))
        .await
        .unwrap_err();

    // Then it conflicts, and the claim is not taken
    assert!(refused.is_conflict(), "{refused:?}");
    assert!(opened.claims("server-name").await.is_empty());
}

async fn a_released_claim_can_be_taken_by_another_stream_and_a_kept_claim_is_not_refused(backend: Backend) {
    // Given a stream holding "gamma", that appends again claiming it (it holds it already)
    let opened = backend.open().await;
    let store = opened.store();
    let (first, second) = (new_stream("server"), new_stream("server"));
    store
        .append_claiming(&first, ExpectedRevision::NoStream, vec![event("Registered", 0)], Claims::take(name("gamma")))
        .await
        .unwrap();
    store
        .append_claiming(&first, ExpectedRevision::Exact(0), vec![event("Renamed", 1)], Claims::take(name("gamma")))
        .await
        .unwrap();

    // When it releases the claim, and another stream takes it
    store
        .append_claiming(
            &first,
            ExpectedRevision::Exact(1),
            vec![event("Deregistered", 2)],
            Claims::release(name("gamma")),
        )
        .await
        .unwrap();
    store
        .append_claiming(&second, ExpectedRevision::NoStream, vec![event("Registered", 3)], Claims::take(name("gamma")))
        .await
        .unwrap();

    // Then the other stream holds it
    assert_eq!(opened.claims("server-name").await, [("gamma".to_owned(), second.to_string())]);
}

async fn releasing_a_claim_held_by_another_stream_does_nothing(backend: Backend) {
    let opened = backend.open().await;
    let store = opened.store();
    let (holder, other) = (new_stream("server"), new_stream("server"));
    store
        .append_claiming(&holder, ExpectedRevision::NoStream, vec![event("Registered", 0)], Claims::take(name("delta")))
        .await
        .unwrap();
    store
        .append_claiming(
            &other,
            ExpectedRevision::NoStream,
            vec![event("Registered", 1)],
            Claims::release(name("delta")),
        )
        .await
        .unwrap();
    assert_eq!(opened.claims("server-name").await, [("delta".to_owned(), holder.to_string())]);
}

async fn a_retry_answers_as_the_first_time_even_when_its_claim_has_passed_to_another_stream(backend: Backend) {
    // Given an append that claimed "epsilon", then released it, and another stream that took it since
    let opened = backend.open().await;
    let store = opened.store();
    let (first, second) = (new_stream("server"), new_stream("server"));
    let registered = vec![event("Registered", 0)];
    let original = store
        .append_claiming(&first, ExpectedRevision::NoStream, registered.clone(), Claims::take(name("epsilon")))
        .await
        .unwrap();
    store
        .append_claiming(
            &first,
            ExpectedRevision::Exact(0),
            vec![event("Deregistered", 1)],
            Claims::release(name("epsilon")),
        )
        .await
        .unwrap();
    store
        .append_claiming(
            &second,
            ExpectedRevision::NoStream,
            vec![event("Registered", 2)],
            Claims::take(name("epsilon")),
        )
        .await
        .unwrap();

    // When the first append is retried with the same event ids
    let retried = store
        .append_claiming(&first, ExpectedRevision::NoStream, registered, Claims::take(name("epsilon")))
        .await
        .unwrap();

    // Then it returns the original result and changes nothing
    assert!(retried.idempotent);
    assert_eq!((retried.first_revision, retried.position), (original.first_revision, original.position));
    assert_eq!(opened.claims("server-name").await, [("epsilon".to_owned(), second.to_string())]);
    assert_eq!(opened.row_count().await, 3);
}

async fn malformed_claims_are_refused_before_anything_is_written(backend: Backend) {
    let opened = backend.open().await;
    let store = opened.store();
    let stream = new_stream("server");
    let cases = [
        Claims::take(Claim::new("", "x")),
        Claims::take(Claim::new("server-name", "")),
        Claims::take(Claim::new("server-name", "x".repeat(513))),
        Claims { take: vec![name("zeta")], release: vec![name("zeta")] },
    ];
    for claims in cases {
        let refused = store
            .append_claiming(&stream, ExpectedRevision::NoStream, vec![event("Registered", 0)], claims)
            .await
            .unwrap_err();
        assert!(matches!(refused, Error::InvalidClaim(_)), "{refused:?}");
    }
    assert_eq!(opened.row_count().await, 0);
}

on_every_backend!(
    a_claim_held_by_another_stream_refuses_the_append_and_writes_nothing,
    a_claim_is_written_only_with_its_events,
    a_released_claim_can_be_taken_by_another_stream_and_a_kept_claim_is_not_refused,
    releasing_a_claim_held_by_another_stream_does_nothing,
    a_retry_answers_as_the_first_time_even_when_its_claim_has_passed_to_another_stream,
    malformed_claims_are_refused_before_anything_is_written,
);
