//! Catch-up subscriptions to `$all`: read the past page by page, then follow live appends.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use tokio::sync::watch;

use crate::{EventStore, Position, RecordedEvent, Result};

/// How a subscription reads.
#[derive(Debug, Clone, Copy)]
pub struct SubscriptionOptions {
    /// Events per page.
    pub page_size: usize,
    /// How long to wait for an in-process wake-up before polling the store again. Appends of other
    /// processes, and events withheld behind a still-running transaction, are seen at the next poll.
    pub poll_interval: Duration,
}

impl Default for SubscriptionOptions {
    fn default() -> Self {
        Self { page_size: 2000, poll_interval: Duration::from_millis(200) }
    }
}

/// A subscription to `$all` from a position (exclusive). It never ends; each event comes once, in order.
pub struct Subscription {
    store: Arc<dyn EventStore>,
    checkpoint: Option<Position>,
    buffer: VecDeque<RecordedEvent>,
    wake: watch::Receiver<u64>,
    options: SubscriptionOptions,
}

impl Subscription {
    /// Subscribes after `from` (`None`: from the start).
    pub fn new(store: Arc<dyn EventStore>, from: Option<Position>, options: SubscriptionOptions) -> Self {
        let wake = store.appended();
        Self { store, checkpoint: from, buffer: VecDeque::new(), wake, options }
    }

    /// The position of the last event handed out: the checkpoint to store.
    pub fn checkpoint(&self) -> Option<Position> {
        self.checkpoint
    }

    /// The next event, waiting for one if the subscriber is caught up.
    pub async fn next(&mut self) -> Result<RecordedEvent> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                self.checkpoint = Some(event.position);
                return Ok(event);
            }
            // Mark the wake-up seen before reading, so an append that commits during the read still wakes us.
            self.wake.borrow_and_update();
            let page = self.store.read_all(self.checkpoint, self.options.page_size).await?;
            if page.is_empty() {
                // A closed channel (store dropped) just leaves the poll timer.
                let _ = tokio::time::timeout(self.options.poll_interval, self.wake.changed()).await;
            } else {
                self.buffer.extend(page);
            }
        }
    }

    /// The subscription as a stream of events.
    pub fn into_stream(self) -> impl Stream<Item = Result<RecordedEvent>> + Send {
        futures_util::stream::unfold(self, |mut sub| async move {
            let item = sub.next().await;
            Some((item, sub))
        })
    }
}
