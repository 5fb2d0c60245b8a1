//! Old schema versions are upcast on read; what is stored never changes.

use eventstore::{
    Direction, EventData, EventStore, ExpectedRevision, PgEventStore, PgEventStoreOptions, StreamCursor, Upcasters,
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{metadata, new_stream, read_all_eventually, store};

fn upcasters() -> Upcasters {
    Upcasters::new().register("ServerRegistered", 1, |mut v: Value| {
        let url = v.as_object_mut().and_then(|o| o.remove("url")).ok_or("v1 without url")?;
        v["endpoint"] = json!({ "url": url, "transport": "streamable_http" });
        Ok(v)
    })
}

#[tokio::test]
async fn a_v1_event_reads_as_v2() {
    // Given a v1 event written by an older release
    let (old_release, _db) = store().await;
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
    let current = PgEventStore::new(
        old_release.pool().clone(),
        PgEventStoreOptions { upcasters: upcasters(), ..Default::default() },
    );
    let read = &current.read_stream(&stream, Direction::Forwards, StreamCursor::Start, 1).await.unwrap()[0];
    let from_all = &read_all_eventually(&current, 1).await[0];

    // Then it gets the v2 shape from both reads
    let expected = json!({"name": "a", "endpoint": {"url": "https://a.example", "transport": "streamable_http"}});
    assert_eq!(read.schema_version, 2);
    assert_eq!(read.decode::<Value>().unwrap(), expected);
    assert_eq!(from_all.decode::<Value>().unwrap(), expected);

    // And the stored row is untouched, so the chain still verifies
    let stored: (i16, String) = sqlx::query_as("SELECT schema_version, data::text FROM es.events WHERE event_id = $1")
        .bind(v1.event_id)
        .fetch_one(current.pool())
        .await
        .unwrap();
    assert_eq!(stored, (1, v1.data));
    assert!(current.verify_all().await.unwrap().is_intact());
}

#[tokio::test]
async fn a_v2_event_is_not_touched() {
    let (store, _db) = store().await;
    let store =
        PgEventStore::new(store.pool().clone(), PgEventStoreOptions { upcasters: upcasters(), ..Default::default() });
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
