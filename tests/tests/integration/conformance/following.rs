//! Followers of `$all` read through the tail kept in memory (`read_all_following`): what they read is
//! what the database holds (whole events, in order, without a gap), while appends go on, the tail moves
//! past what it held, and a follower joins ahead of it.

use std::time::Instant;

use eventstore::{EventStore, ExpectedRevision, Position, RecordedEvent, TailCacheLimits};

use super::{Backend, Settings, on_every_backend};
use crate::support::{DEADLINE, events, new_stream};

const WRITERS: u64 = 4;
const APPENDS: u64 = 60;
/// Each writer appends 1, 2 or 3 events at a time: 120 each.
const TOTAL: usize = (WRITERS * 2 * APPENDS) as usize;

async fn followers_read_what_the_database_holds_while_appends_go_on(backend: Backend) {
    // A tail of 64 events: the writers pass it many times over.
    let settings =
        Settings { tail_cache: Some(TailCacheLimits { events: 64, bytes: usize::MAX }), ..Settings::default() };
    let opened = backend.open_with(settings).await;
    let store = opened.store();
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let (stream, mut expected) = (new_stream("server"), ExpectedRevision::NoStream);
                for n in 0..APPENDS {
                    let appended = store.append(&stream, expected, events(1 + n % 3)).await.unwrap();
                    expected = ExpectedRevision::Exact(appended.last_revision);
                }
            })
        })
        .collect();
    // Three followers, each with its own page size, reading while the writers write.
    let followers: Vec<_> = [5usize, 32, 200]
        .into_iter()
        .map(|page_size| {
            let store = store.clone();
            tokio::spawn(async move { follow(&*store, None, page_size, TOTAL).await })
        })
        .collect();
    // A fourth joins halfway, from the head it sees then: ahead of what the tail holds, or inside it.
    let late = {
        let store = store.clone();
        tokio::spawn(async move {
            let deadline = Instant::now() + DEADLINE;
            let joined = loop {
                let head = store.head().await.unwrap();
                let stored = read_through(|after| store.read_all(after, 1_000)).await;
                let seen = stored.iter().filter(|e| Some(e.position) <= head).count();
                if seen >= TOTAL / 2 {
                    break (head, seen);
                }
                assert!(Instant::now() < deadline, "{seen} of {TOTAL} events appended");
                tokio::task::yield_now().await;
            };
            let (head, seen) = joined;
            (head, follow(&*store, head, 7, TOTAL - seen).await)
        })
    };
    for writer in writers {
        writer.await.unwrap();
    }
    let followed: Vec<Vec<RecordedEvent>> =
        futures_util::future::join_all(followers).await.into_iter().map(Result::unwrap).collect();
    let (joined_at, late) = late.await.unwrap();

    // The database itself, read from the start.
    let stored = read_through(|after| store.read_all(after, 1_000)).await;
    assert_eq!(stored.len(), TOTAL);
    assert!(stored.windows(2).all(|w| w[0].position < w[1].position));
    for (follower, read) in followed.iter().enumerate() {
        assert!(read == &stored, "follower {follower} read other events than the database holds");
    }
    let after_join: Vec<RecordedEvent> = stored.iter().filter(|e| Some(e.position) > joined_at).cloned().collect();
    assert!(late == after_join, "the follower that joined at {joined_at:?} read other events");
    // A replay from the start through the followers' read: the tail no longer holds it, the database does.
    assert!(read_through(|after| store.read_all_following(after, 100)).await == stored);
}

/// `count` events of `$all` after `from`, read by a follower asking for `page_size` at a time.
async fn follow(store: &dyn EventStore, from: Option<Position>, page_size: usize, count: usize) -> Vec<RecordedEvent> {
    let (mut read, mut after) = (Vec::new(), from);
    let deadline = Instant::now() + DEADLINE;
    while read.len() < count {
        let page = store.read_all_following(after, page_size).await.unwrap();
        assert!(page.len() <= page_size, "a page of {} asked for {page_size}", page.len());
        after = page.last().map(|e| e.position).or(after);
        read.extend(page);
        assert!(Instant::now() < deadline, "{page_size}: {} of {count} events read", read.len());
        tokio::task::yield_now().await;
    }
    read
}

/// Every event of `$all` read through `read`, page after page.
async fn read_through<F, Fut>(read: F) -> Vec<RecordedEvent>
where
    F: Fn(Option<Position>) -> Fut,
    Fut: std::future::Future<Output = eventstore::Result<Vec<RecordedEvent>>>,
{
    let (mut all, mut after) = (Vec::new(), None);
    loop {
        let page = read(after).await.unwrap();
        let Some(last) = page.last() else { return all };
        after = Some(last.position);
        all.extend(page);
    }
}

on_every_backend!(followers_read_what_the_database_holds_while_appends_go_on);
