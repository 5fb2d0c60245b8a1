//! The NATS relay: publishes committed events, in `$all` order, to a JetStream stream.
//!
//! The events table is the outbox. One relay among all gateway instances is active (a Postgres
//! advisory lock held on a dedicated connection); the others stand by and take over when its
//! connection goes. The active relay:
//! 1. resyncs: the position in the last message of the JetStream stream is where it resumes (the start,
//!    for an empty stream; the relay's checkpoint, if that message has expired), and that message's
//!    sequence is the one it expects;
//! 2. reads `$all` in pages and publishes each event with `Nats-Msg-Id` = event id and
//!    `Nats-Expected-Last-Sequence` = the sequence it expects, keeping many publishes in flight and
//!    checking their acks in order;
//! 3. on any failure (NATS down, an ack for another sequence, a duplicate, a database error) drops what
//!    is in flight, waits, and starts again at 1. The expected-sequence fence refuses every publish after
//!    a failed one, so nothing is skipped or reordered, and a second publisher is refused, not
//!    interleaved.
//!
//! Other instances read `$all` from the stream through [`NatsSubscription`] (the store fills any gap),
//! or let [`wake_on_publish`] wake their store readers at once.
//!
//! Nothing is lost (the resume point comes from what JetStream stored) and nothing is published twice
//! (resync starts after the last stored message; message ids catch a repeat inside the window).

mod feed;
mod headers;
mod options;
mod publisher;
mod subject;
mod wake;

pub use feed::{NatsFeedOptions, NatsSubscription};
pub use headers::{
    CORRELATION_ID, HASH, METADATA, MessageError, POSITION, PREVIOUS_POSITION, REVISION, RelayedEvent, SCHEMA_VERSION,
    STREAM, TYPE, decode_message, message_headers,
};
pub use options::RelayOptions;
pub use publisher::{Relay, RelayError};
pub use subject::subject_for;
pub use wake::wake_on_publish;
