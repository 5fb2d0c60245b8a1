//! Old schema versions are upcast on read; what is stored never changes.

use eventstore::{Direction, EventData, ExpectedRevision, StreamCursor, Upcasters};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Backend, Settings, on_every_backend};
use crate::support::{metadata, new_stream, read_all_eventually};

fn upcasters() -> Upcasters {
    Upcasters::new().register("ServerRegistered", 1, |mut v: Value| {
        let url = v.as_object_mut().and_then(|o| o.remove("url")).ok_or("v1 without url")?;
        v["endpoint"] = json!({ "url": url, "transport": "streamable_http" });
        Ok(v)
    })
}

async fn a_v1_event_reads_as_v2(backend: Backend) {
    // Given a v1 event written by an older release
    let opened = backend.open().await;
    let old_release = opened.store();
    let stream = new_stream("server");
    let v1 = EventData::new(
        Uuid::new_v4(),
        "ServerRegistered",
        1,
        &json!({"name": "a", "url": "https://a.example"}),
        metadata(),
    )
    .unwrap();
    old_release.append(&stream, ExpectedRevision::NoStream, vec![v1.clone()]).await.unwrap();

    // When the current release, which knows v2, reads it
    let current = opened.another(Settings { upcasters: upcasters(), ..Default::default() }).await;
    let read = &current.read_stream(&stream, Direction::Forwards, StreamCursor::Start, 1).await.unwrap()[0];
    let from_all = &read_all_eventually(&*current, 1).await[0];

    // Then it gets the v2 shape from both reads
    let expected = json!({"name": "a", "endpoint": {"url": "https://a.example", "transport": "streamable_http"}});
    assert_eq!(read.schema_version, 2);
    assert_eq!(read.decode::<Value>().unwrap(), expected);
    assert_eq!(from_all.decode::<Value>().unwrap(), expected);

    // And the stored row is untouched, so the chain still verifies
    let (_, version, data) = opened.stored(v1.event_id).await;
    assert_eq!((version, data), (1, v1.data));
    assert!(current.verify_all().await.unwrap().is_intact());
}

async fn a_v2_event_is_not_touched(backend: Backend) {
    let opened = backend.open_with(Settings { upcasters: upcasters(), ..Default::default() }).await;
    let store = opened.store();
    let stream = new_stream("server");
    let v2 = EventData::new(
        Uuid::new_v4(),
        "ServerRegistered",
        2,
        &json!({"name": "b", "endpoint": {"url": "https://b"}}),
        metadata(),
    )
    .unwrap();
    store.append(&stream, ExpectedRevision::NoStream, vec![v2.clone()]).await.unwrap();
    let read = &store.read_stream(&stream, Direction::Forwards, StreamCursor::Start, 1).await.unwrap()[0];
    assert_eq!((read.schema_version, read.data.as_str()), (2, v2.data.as_str()));
}

on_every_backend!(a_v1_event_reads_as_v2, a_v2_event_is_not_touched,);
