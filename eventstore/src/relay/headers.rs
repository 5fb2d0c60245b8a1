//! The headers every relayed message carries, next to `Nats-Msg-Id` (the event id). The payload is the
//! event's data, byte for byte.

use async_nats::HeaderMap;

use crate::{Position, RecordedEvent};

/// `$all` position of the event, `<transaction id>:<global position>`; the relay resumes after the
/// position of the stream's last message.
pub const POSITION: &str = "Es-Position";
/// Stream name.
pub const STREAM: &str = "Es-Stream";
/// Revision in the stream.
pub const REVISION: &str = "Es-Revision";
/// Event type.
pub const TYPE: &str = "Es-Type";
/// Schema version of the payload.
pub const SCHEMA_VERSION: &str = "Es-Schema-Version";
/// Correlation id from the metadata.
pub const CORRELATION_ID: &str = "Es-Correlation-Id";
/// The whole metadata, as JSON.
pub const METADATA: &str = "Es-Metadata";
/// The chain link stored with the event, hex.
pub const HASH: &str = "Es-Hash";

/// The headers of `event`'s message.
pub(crate) fn headers_for(event: &RecordedEvent) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(POSITION, event.position.to_string().as_str());
    headers.insert(STREAM, event.stream.as_str());
    headers.insert(REVISION, event.revision.to_string().as_str());
    headers.insert(TYPE, event.event_type.as_str());
    headers.insert(SCHEMA_VERSION, event.schema_version.to_string().as_str());
    headers.insert(CORRELATION_ID, event.metadata.correlation_id.to_string().as_str());
    // Metadata serializes to single-line JSON (serde escapes control characters), a valid header value.
    headers.insert(METADATA, serde_json::to_string(&event.metadata).unwrap_or_default().as_str());
    headers.insert(HASH, hex::encode(event.hash).as_str());
    headers
}

/// The position a message was published for, if it carries one.
pub(crate) fn position_of(headers: &HeaderMap) -> Option<Position> {
    headers.get(POSITION)?.as_str().parse().ok()
}
