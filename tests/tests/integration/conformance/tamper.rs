//! Tamper evidence on every backend: the log refuses changes, and verification names rows changed behind
//! its back. (Postgres's own cases, TRUNCATE and reordering among them, are in `eventstore/tamper.rs`.)

use eventstore::{ExpectedRevision, ViolationKind};

use super::{Backend, on_every_backend};
use crate::support::{events, new_stream};

async fn an_untouched_store_verifies(backend: Backend) {
    let opened = backend.open().await;
    let store = opened.store();
    for _ in 0..5 {
        store.append(&new_stream("server"), ExpectedRevision::NoStream, events(7)).await.unwrap();
    }
    let report = store.verify_all().await.unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!((report.streams, report.events), (5, 35));
}

async fn the_log_refuses_update_and_delete(backend: Backend) {
    let opened = backend.open().await;
    opened.store().append(&new_stream("server"), ExpectedRevision::NoStream, events(1)).await.unwrap();
    let statements = [
        ("UPDATE es.events SET data = '{}'", "UPDATE events SET data = '{}'"),
        ("DELETE FROM es.events", "DELETE FROM events"),
    ];
    for (pg, sqlite) in statements {
        let refused = opened.plainly(pg, sqlite).await;
        assert!(refused.is_err(), "{pg}");
    }
    assert_eq!(opened.row_count().await, 1);
}

async fn an_edited_row_and_a_deleted_row_are_named(backend: Backend) {
    let opened = backend.open().await;
    let store = opened.store();
    let (edited, shortened) = (new_stream("server"), new_stream("user"));
    store.append(&edited, ExpectedRevision::NoStream, events(5)).await.unwrap();
    store.append(&shortened, ExpectedRevision::NoStream, events(5)).await.unwrap();
    opened
        .behind_its_back(
            "UPDATE es.events SET data = '{\"n\": 99}' WHERE stream_id = $1 AND stream_revision = 2",
            "UPDATE events SET data = '{\"n\": 99}' WHERE stream_id = ? AND stream_revision = 2",
            edited.as_str(),
        )
        .await;
    opened
        .behind_its_back(
            "DELETE FROM es.events WHERE stream_id = $1 AND stream_revision = 3",
            "DELETE FROM events WHERE stream_id = ? AND stream_revision = 3",
            shortened.as_str(),
        )
        .await;

    let report = store.verify_all().await.unwrap();
    let found: Vec<(String, i64, ViolationKind)> =
        report.violations.iter().map(|v| (v.stream.clone(), v.revision, v.kind)).collect();
    assert!(found.contains(&(edited.to_string(), 2, ViolationKind::Modified)), "{found:?}");
    assert!(found.contains(&(shortened.to_string(), 3, ViolationKind::Missing)), "{found:?}");
    let one = store.verify_stream(&edited).await.unwrap();
    assert_eq!(one.violations.len(), 1, "{one:?}");
}

on_every_backend!(
    an_untouched_store_verifies,
    the_log_refuses_update_and_delete,
    an_edited_row_and_a_deleted_row_are_named,
);
