//! Inputs the store refuses before anything is written.

use eventstore::{DEFAULT_MAX_EVENT_BYTES, Error, EventData, ExpectedRevision};
use serde_json::json;
use uuid::Uuid;

use super::{Backend, on_every_backend};
use crate::support::{event, metadata, new_stream};

async fn an_oversized_event_is_refused_at_append(backend: Backend) {
    let opened = backend.open().await;
    let store = opened.store();
    let stream = new_stream("server");
    let huge =
        EventData::new(Uuid::new_v4(), "Big", 1, &json!({"blob": "x".repeat(2 * 1024 * 1024)}), metadata()).unwrap();
    let err =
        store.append(&stream, ExpectedRevision::NoStream, vec![event("Small", 0), huge.clone()]).await.unwrap_err();
    match err {
        Error::EventTooLarge { event_id, size, limit } => {
            assert_eq!((event_id, limit), (huge.event_id, DEFAULT_MAX_EVENT_BYTES));
            assert!(size > 2 * 1024 * 1024);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(opened.row_count().await, 0, "nothing of the batch was written");

    // Just under the limit passes
    let fits = EventData::new(Uuid::new_v4(), "Big", 1, &json!({"blob": "x".repeat(200 * 1024)}), metadata()).unwrap();
    store.append(&stream, ExpectedRevision::NoStream, vec![fits]).await.unwrap();
}

async fn malformed_events_are_refused_as_client_errors(backend: Backend) {
    let opened = backend.open().await;
    let store = opened.store();
    let stream = new_stream("server");
    let mut not_json = event("A", 0);
    not_json.data = "{not json".into();
    let mut bad_type = event("A", 0);
    bad_type.event_type = "has space".into();
    let mut bad_version = event("A", 0);
    bad_version.schema_version = 0;
    for bad in [not_json, bad_type, bad_version] {
        let err = store.append(&stream, ExpectedRevision::Any, vec![bad]).await.unwrap_err();
        assert!(matches!(err, Error::InvalidEvent { .. }), "{err:?}");
        assert!(err.is_client_error());
    }
    let err = store.append(&stream, ExpectedRevision::Any, vec![]).await.unwrap_err();
    assert!(matches!(err, Error::EmptyAppend));
    assert_eq!(opened.row_count().await, 0);
}

on_every_backend!(an_oversized_event_is_refused_at_append, malformed_events_are_refused_as_client_errors,);
