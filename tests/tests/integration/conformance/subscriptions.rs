//! Subscriptions on every backend: catch up from a checkpoint, then follow live appends, woken at once.

use std::time::Duration;

use eventstore::{ExpectedRevision, Subscription, SubscriptionOptions};

use super::{Backend, on_every_backend};
use crate::support::{DEADLINE, events, new_stream};

async fn a_subscription_catches_up_then_follows_live_appends(backend: Backend) {
    // Its own server: another test's open transaction would hold the event back past the wake-up.
    let opened = backend.open_alone().await;
    let store = opened.store();
    let stream = new_stream("server");
    let first = store.append(&stream, ExpectedRevision::NoStream, events(3)).await.unwrap();
    // The default poll interval is long: the live event must arrive through the in-process wake-up.
    let options = SubscriptionOptions { page_size: 2, poll_interval: Duration::from_secs(3600), ..Default::default() };
    let mut sub = Subscription::new(store.clone(), None, options);
    for expected in 0..3 {
        assert_eq!(sub.next().await.unwrap().revision, expected);
    }
    let waiting = tokio::spawn(async move { (sub.next().await.unwrap(), sub) });
    store.append(&stream, ExpectedRevision::Exact(first.last_revision), events(1)).await.unwrap();
    let (live, sub) = tokio::time::timeout(DEADLINE, waiting).await.expect("woken by the append").unwrap();
    assert_eq!(live.revision, 3);
    assert_eq!(sub.checkpoint(), Some(live.position));

    // Subscribing from a checkpoint resumes after it
    let mut resumed = Subscription::new(store.clone(), Some(first.position), SubscriptionOptions::default());
    assert_eq!(resumed.next().await.unwrap().event_id, live.event_id);
}

on_every_backend!(a_subscription_catches_up_then_follows_live_appends);
