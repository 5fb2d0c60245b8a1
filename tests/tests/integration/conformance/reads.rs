//! Stream reads, both ways.

use eventstore::{Direction, ExpectedRevision, StreamCursor};

use super::{Backend, on_every_backend};
use crate::support::{events, new_stream};

async fn a_ten_thousand_event_stream_reads_back_in_order_both_ways(backend: Backend) {
    let opened = backend.open().await;
    let store = opened.store();
    let stream = new_stream("server");
    let mut ids = Vec::new();
    let mut expected = ExpectedRevision::NoStream;
    for _ in 0..20 {
        let batch = events(500);
        ids.extend(batch.iter().map(|e| e.event_id));
        let r = store.append(&stream, expected, batch).await.unwrap();
        expected = ExpectedRevision::Exact(r.last_revision);
    }

    // Forwards, in pages of 1,000
    let mut forwards = Vec::new();
    let mut from = StreamCursor::Start;
    loop {
        let page = store.read_stream(&stream, Direction::Forwards, from, 1000).await.unwrap();
        let Some(last) = page.last() else { break };
        from = StreamCursor::Revision(last.revision + 1);
        forwards.extend(page);
    }
    assert_eq!(forwards.iter().map(|e| e.revision).collect::<Vec<_>>(), (0..10_000).collect::<Vec<_>>());
    assert_eq!(forwards.iter().map(|e| e.event_id).collect::<Vec<_>>(), ids);
    assert!(forwards.windows(2).all(|w| w[0].position < w[1].position));

    // Backwards from the end, in pages of 999
    let mut backwards = Vec::new();
    let mut from = StreamCursor::End;
    loop {
        let page = store.read_stream(&stream, Direction::Backwards, from, 999).await.unwrap();
        let Some(last) = page.last() else { break };
        let next = last.revision.checked_sub(1);
        backwards.extend(page);
        match next {
            Some(r) => from = StreamCursor::Revision(r),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(backwards.iter().map(|e| e.event_id).collect::<Vec<_>>(), ids);

    // From the middle
    let middle = store.read_stream(&stream, Direction::Forwards, StreamCursor::Revision(4321), 3).await.unwrap();
    assert_eq!(middle.iter().map(|e| e.revision).collect::<Vec<_>>(), vec![4321, 4322, 4323]);
}

async fn a_missing_stream_reads_as_empty(backend: Backend) {
    let opened = backend.open().await;
    let store = opened.store();
    let read = store.read_stream(&new_stream("server"), Direction::Forwards, StreamCursor::Start, 10).await.unwrap();
    assert!(read.is_empty());
}

on_every_backend!(a_ten_thousand_event_stream_reads_back_in_order_both_ways, a_missing_stream_reads_as_empty,);
