//! Catch-up subscriptions to `$all`: read the past page by page, then follow live appends.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::Stream;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{EventStore, Position, RecordedEvent, Result};

/// How a subscription reads.
#[derive(Debug, Clone, Copy)]
pub struct SubscriptionOptions {
    /// Events per page.
    pub page_size: usize,
    /// How long to wait for an in-process wake-up before polling the store again. Appends of other
    /// processes, and events withheld behind a still-running transaction, are seen at the next poll.
    pub poll_interval: Duration,
    /// The least time between two reads of a subscriber that is following live appends. Under a stream
    /// of appends every one of them wakes every subscriber; reading at most once per interval turns a
    /// read per append into a read per interval's worth of appends, at the price of up to this much
    /// delay (none when appends are further apart). `bench api` counted 1,300 reads of 11 events a
    /// second across four subscribers before this.
    pub min_read_interval: Duration,
}

impl Default for SubscriptionOptions {
    fn default() -> Self {
        Self { page_size: 2000, poll_interval: Duration::from_millis(200), min_read_interval: Duration::from_millis(2) }
    }
}

/// A subscription to `$all` from a position (exclusive). It never ends; each event comes once, in order.
///
/// While catching up, the next page is read while the caller works through the current one: the
/// database produces rows on one core while the caller folds on another. A page after a position is the
/// same whenever it is read (nothing can appear below a reader's position), so reading ahead is safe.
pub struct Subscription {
    store: Arc<dyn EventStore>,
    checkpoint: Option<Position>,
    buffer: VecDeque<RecordedEvent>,
    ahead: Option<JoinHandle<Result<Vec<RecordedEvent>>>>,
    wake: watch::Receiver<u64>,
    last_read: Option<Instant>,
    wait: crate::FollowWait,
    options: SubscriptionOptions,
}

impl Subscription {
    /// Subscribes after `from` (`None`: from the start).
    pub fn new(store: Arc<dyn EventStore>, from: Option<Position>, options: SubscriptionOptions) -> Self {
        let wake = store.appended();
        let wait = crate::FollowWait::new(options.poll_interval);
        Self { store, checkpoint: from, buffer: VecDeque::new(), ahead: None, wake, last_read: None, wait, options }
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
            let page = match self.ahead.take() {
                Some(ahead) => ahead.await.map_err(|_| crate::Error::ReadAheadFailed)??,
                None => {
                    if let Some(wait) =
                        self.last_read.and_then(|at| self.options.min_read_interval.checked_sub(at.elapsed()))
                    {
                        tokio::time::sleep(wait).await;
                    }
                    self.last_read = Some(Instant::now());
                    self.store.read_all_following(self.checkpoint, self.options.page_size).await?
                }
            };
            if page.is_empty() {
                // A closed channel (store dropped) just leaves the poll timer.
                let woke = tokio::time::timeout(self.wait.next(), self.wake.changed()).await.is_ok_and(|r| r.is_ok());
                self.wait.waited(woke);
                continue;
            }
            self.wait.found();
            if page.len() == self.options.page_size {
                // Still catching up: read the next page while this one is handed out.
                let (store, after, size) =
                    (self.store.clone(), page.last().map(|e| e.position), self.options.page_size);
                self.ahead = Some(tokio::spawn(async move { store.read_all_following(after, size).await }));
            }
            self.buffer.extend(page);
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

/// A source of `$all` events in order, each once: the store ([`Subscription`]) or NATS with the store
/// as the fallback ([`crate::relay::NatsSubscription`]).
#[async_trait::async_trait]
pub trait EventFeed: Send {
    /// The next event after the last one handed out, waiting for one if there is none yet.
    async fn next(&mut self) -> Result<RecordedEvent>;

    /// The position of the last event handed out.
    fn checkpoint(&self) -> Option<Position>;
}

#[async_trait::async_trait]
impl EventFeed for Subscription {
    async fn next(&mut self) -> Result<RecordedEvent> {
        Subscription::next(self).await
    }

    fn checkpoint(&self) -> Option<Position> {
        Subscription::checkpoint(self)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(ahead) = self.ahead.take() {
            ahead.abort();
        }
    }
}
