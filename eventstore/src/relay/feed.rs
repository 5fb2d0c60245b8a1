//! Reading `$all` from NATS: the fast path to every instance, with the store as the truth.
//!
//! An ordered JetStream consumer delivers the relay's messages. Each message names the position
//! published before it ([`PREVIOUS_POSITION`](super::PREVIOUS_POSITION)), so the reader knows whether it
//! can apply it:
//! - its position is at or before the reader's: a redelivery or a late, out-of-order copy: skipped;
//! - its previous position is the reader's: the next event: applied from the message, no query;
//! - anything else is a gap (a message lost, the consumer recreated, the relay restarted from its
//!   checkpoint): the reader reads the store from its own position instead, up to the head.
//!
//! The store is also read when the consumer is (re)created, when NATS is quiet for `store_poll`, when
//! this process appends, and while NATS is unreachable, so an outage costs latency, never an event.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::time::Instant;

use super::headers::{RelayedEvent, decode_message};
use super::options::RelayOptions;
use crate::subscription::EventFeed;
use crate::{EventStore, Position, RecordedEvent, Result, Upcasters};

/// Pause between store reads while the events missed before a message are not visible yet.
const GAP_RETRY: Duration = Duration::from_millis(20);

/// How a [`NatsSubscription`] reads.
#[derive(Clone)]
pub struct NatsFeedOptions {
    /// The JetStream stream the relay publishes to.
    pub stream: String,
    /// The relay's subject prefix; the consumer filters on `<prefix>.>`.
    pub subject_prefix: String,
    /// Events per page when reading the store.
    pub page_size: usize,
    /// Read the store when no message came for this long (NATS down, relay stopped, a gap with no
    /// message after it).
    pub store_poll: Duration,
    /// Wait this long before creating the consumer again after NATS refused it.
    pub reconnect_after: Duration,
    /// Upcasts messages the relay published with older schema versions than this reader knows (the
    /// store upcasts its own reads).
    pub upcasters: Upcasters,
}

impl NatsFeedOptions {
    /// Reads what `relay` publishes, with default timings.
    pub fn for_relay(relay: &RelayOptions) -> Self {
        Self {
            stream: relay.stream.clone(),
            subject_prefix: relay.subject_prefix.clone(),
            page_size: 2_000,
            store_poll: Duration::from_millis(500),
            reconnect_after: Duration::from_secs(1),
            upcasters: Upcasters::new(),
        }
    }
}

/// What happened to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Applied,
    Stale,
    Gap,
    Malformed,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Stale => "stale",
            Outcome::Gap => "gap",
            Outcome::Malformed => "malformed",
        }
    }
}

/// A subscription to `$all` fed by the relay's JetStream messages; see the [module docs](self).
pub struct NatsSubscription {
    store: Arc<dyn EventStore>,
    jetstream: jetstream::Context,
    options: NatsFeedOptions,
    messages: Option<consumer::pull::Ordered>,
    connect_at: Instant,
    checkpoint: Option<Position>,
    buffer: VecDeque<RecordedEvent>,
    read_store: bool,
    /// The position of a message that came after a gap: the store is read until the reader has it
    /// (it may not be visible to this reader's snapshot at once).
    behind: Option<Position>,
    wake: watch::Receiver<u64>,
}

impl NatsSubscription {
    /// Subscribes after `from` (`None`: from the start); the past is read from the store.
    pub fn new(
        store: Arc<dyn EventStore>,
        jetstream: jetstream::Context,
        from: Option<Position>,
        options: NatsFeedOptions,
    ) -> Self {
        let wake = store.appended();
        Self {
            store,
            jetstream,
            options,
            messages: None,
            connect_at: Instant::now(),
            checkpoint: from,
            buffer: VecDeque::new(),
            read_store: true,
            behind: None,
            wake,
        }
    }

    /// The position of the last event handed out.
    pub fn checkpoint(&self) -> Option<Position> {
        self.checkpoint
    }

    /// The next event, waiting for one if the reader is caught up.
    pub async fn next(&mut self) -> Result<RecordedEvent> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                self.checkpoint = Some(event.position);
                return Ok(event);
            }
            if self.messages.is_none() && Instant::now() >= self.connect_at {
                self.connect().await;
            }
            if self.behind.is_some() && self.behind <= self.checkpoint {
                self.behind = None;
            }
            if self.read_store || self.behind.is_some() {
                self.wake.borrow_and_update();
                // The store only fills what NATS missed: this checkpoint moves with NATS messages, ahead of what
                // the followers of this process read, and a read from there would drop the tail they share.
                let page = self.store.read_all(self.checkpoint, self.options.page_size).await?;
                // Keep reading the store until it has nothing more; then NATS takes over.
                self.read_store = !page.is_empty();
                if page.is_empty() && self.behind.is_some() {
                    // A transaction older than the missed events is still running: they are not visible
                    // yet. Look again shortly.
                    tokio::time::sleep(GAP_RETRY).await;
                }
                self.buffer.extend(page);
                continue;
            }
            self.wait().await;
        }
    }

    /// Creates the ordered consumer for messages published from now on; what came before is read from
    /// the store next.
    async fn connect(&mut self) {
        let config = consumer::pull::OrderedConfig {
            filter_subject: format!("{}.>", self.options.subject_prefix),
            deliver_policy: consumer::DeliverPolicy::New,
            ..Default::default()
        };
        let created = async {
            let stream = self.jetstream.get_stream(&self.options.stream).await.map_err(box_error)?;
            let consumer = stream.create_consumer(config).await.map_err(box_error)?;
            consumer.messages().await.map_err(box_error)
        };
        match created.await {
            Ok(messages) => {
                self.messages = Some(messages);
                self.read_store = true;
            }
            Err(error) => {
                tracing::warn!(%error, stream = %self.options.stream, "cannot consume from NATS; reading the store");
                self.connect_at = Instant::now() + self.options.reconnect_after;
            }
        }
    }

    /// Waits for a message, an append in this process, or the store poll, whichever comes first; without
    /// a consumer, at most until it is time to create one again.
    async fn wait(&mut self) {
        let mut until = Instant::now() + self.options.store_poll;
        if self.messages.is_none() {
            until = until.min(self.connect_at);
        }
        let deadline = tokio::time::sleep_until(until);
        tokio::pin!(deadline);
        loop {
            let message = async {
                match self.messages.as_mut() {
                    Some(messages) => messages.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                message = message => match message {
                    Some(Ok(message)) => {
                        let outcome = match message.headers.as_ref() {
                            Some(headers) => self.accept(headers, &message.payload),
                            None => Outcome::Malformed,
                        };
                        metrics::counter!("mgw_nats_feed_messages_total", "outcome" => outcome.label()).increment(1);
                        match outcome {
                            Outcome::Applied => return,
                            Outcome::Stale => continue,
                            Outcome::Gap | Outcome::Malformed => {
                                self.read_store = true;
                                return;
                            }
                        }
                    }
                    Some(Err(error)) => {
                        tracing::warn!(%error, "NATS consumer failed; reading the store");
                        self.drop_consumer();
                        return;
                    }
                    None => {
                        self.drop_consumer();
                        return;
                    }
                },
                _ = self.wake.changed() => {
                    self.read_store = true;
                    return;
                }
                _ = &mut deadline => {
                    self.read_store = true;
                    return;
                }
            }
        }
    }

    fn drop_consumer(&mut self) {
        self.messages = None;
        self.read_store = true;
        self.connect_at = Instant::now() + self.options.reconnect_after;
    }

    /// Buffers the message's event if it is the next one.
    fn accept(&mut self, headers: &async_nats::HeaderMap, payload: &[u8]) -> Outcome {
        let RelayedEvent { mut event, previous } = match decode_message(headers, payload) {
            Ok(relayed) => relayed,
            Err(error) => {
                tracing::warn!(%error, "message without a relayed event in the stream; reading the store");
                return Outcome::Malformed;
            }
        };
        if Some(event.position) <= self.checkpoint {
            return Outcome::Stale;
        }
        if previous != self.checkpoint {
            self.behind = self.behind.max(Some(event.position));
            return Outcome::Gap;
        }
        match self.options.upcasters.upcast(&event.event_type, event.schema_version, &event.data) {
            Ok(None) => {}
            Ok(Some((version, data))) => (event.schema_version, event.data) = (version, data),
            // The store reports the failure with the stored row's position.
            Err(_) => {
                self.behind = self.behind.max(Some(event.position));
                return Outcome::Gap;
            }
        }
        self.buffer.push_back(event);
        Outcome::Applied
    }
}

fn box_error(e: impl std::error::Error + Send + Sync + 'static) -> Box<dyn std::error::Error + Send + Sync> {
    Box::new(e)
}

#[async_trait::async_trait]
impl EventFeed for NatsSubscription {
    async fn next(&mut self) -> Result<RecordedEvent> {
        NatsSubscription::next(self).await
    }

    fn checkpoint(&self) -> Option<Position> {
        NatsSubscription::checkpoint(self)
    }
}
