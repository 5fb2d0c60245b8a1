//! The headers every relayed message carries, next to `Nats-Msg-Id` (the event id), and the way back
//! from a message to the event. The payload is the event's data, byte for byte.

use async_nats::HeaderMap;
use async_nats::header::NATS_MESSAGE_ID;
use uuid::Uuid;

use crate::{Metadata, Position, RecordedEvent, StreamName};

/// `$all` position of the event, `<transaction id>:<global position>`; the relay resumes after the
/// position of the stream's last message.
pub const POSITION: &str = "Es-Position";
/// `$all` position of the event published just before this one (absent on the stream's first
/// message). A reader that has applied exactly that position can apply this message; any other
/// reader has missed something and reads the store instead.
pub const PREVIOUS_POSITION: &str = "Es-Previous-Position";
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

/// The headers of `event`'s message (all but `Nats-Msg-Id`, which the publisher sets to the event id);
/// `previous` is the position of the message published before it.
pub fn message_headers(event: &RecordedEvent, previous: Option<Position>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(POSITION, event.position.to_string().as_str());
    if let Some(previous) = previous {
        headers.insert(PREVIOUS_POSITION, previous.to_string().as_str());
    }
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

/// An event as the relay published it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayedEvent {
    /// The event, as read from the store by the relay (upcast to the relay's schema versions).
    pub event: RecordedEvent,
    /// The position published just before it; `None` for the stream's first message.
    pub previous: Option<Position>,
}

/// A message that is not a well-formed relayed event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// A header the relay always sets is absent.
    #[error("message has no {0} header")]
    Missing(&'static str),
    /// A header does not parse.
    #[error("message header {0} is malformed")]
    Malformed(&'static str),
    /// The payload is not UTF-8 JSON text.
    #[error("message payload is not UTF-8")]
    Payload,
}

/// Reads a relayed message back into its event.
pub fn decode_message(headers: &HeaderMap, payload: &[u8]) -> Result<RelayedEvent, MessageError> {
    fn text<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<&'h str, MessageError> {
        headers.get(name).map(|v| v.as_str()).ok_or(MessageError::Missing(name))
    }
    fn parsed<T: std::str::FromStr>(headers: &HeaderMap, name: &'static str) -> Result<T, MessageError> {
        text(headers, name)?.parse().map_err(|_| MessageError::Malformed(name))
    }
    let previous = match headers.get(PREVIOUS_POSITION) {
        Some(value) => Some(value.as_str().parse().map_err(|_| MessageError::Malformed(PREVIOUS_POSITION))?),
        None => None,
    };
    let id = headers.get(NATS_MESSAGE_ID).map(|v| v.as_str()).ok_or(MessageError::Missing("Nats-Msg-Id"))?;
    let metadata: Metadata =
        serde_json::from_str(text(headers, METADATA)?).map_err(|_| MessageError::Malformed(METADATA))?;
    let mut hash = [0u8; 32];
    hex::decode_to_slice(text(headers, HASH)?, &mut hash).map_err(|_| MessageError::Malformed(HASH))?;
    let event = RecordedEvent {
        position: parsed(headers, POSITION)?,
        event_id: Uuid::parse_str(id).map_err(|_| MessageError::Malformed("Nats-Msg-Id"))?,
        stream: StreamName::parse(text(headers, STREAM)?).map_err(|_| MessageError::Malformed(STREAM))?,
        revision: parsed(headers, REVISION)?,
        event_type: text(headers, TYPE)?.to_owned(),
        schema_version: parsed(headers, SCHEMA_VERSION)?,
        data: std::str::from_utf8(payload).map_err(|_| MessageError::Payload)?.to_owned(),
        metadata,
        hash,
    };
    Ok(RelayedEvent { event, previous })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Actor, ActorKind};

    fn event() -> RecordedEvent {
        let actor = Actor { id: "u-1".into(), kind: ActorKind::User };
        RecordedEvent {
            position: Position { transaction_id: 7, global_position: 42 },
            event_id: Uuid::now_v7(),
            stream: StreamName::parse("server-a.b*c> d é").unwrap(),
            revision: 3,
            event_type: "ServerRegistered".into(),
            schema_version: 2,
            data: r#"{"name":"x"}"#.into(),
            metadata: Metadata::new(Uuid::now_v7(), actor, chrono::DateTime::from_timestamp(1_800_000_000, 5).unwrap()),
            hash: [9; 32],
        }
    }

    fn with_id(event: &RecordedEvent, previous: Option<Position>) -> HeaderMap {
        let mut headers = message_headers(event, previous);
        headers.insert(NATS_MESSAGE_ID, event.event_id.to_string().as_str());
        headers
    }

    #[test]
    fn a_message_decodes_to_the_event_it_was_built_from() {
        let event = event();
        let previous = Some(Position { transaction_id: 7, global_position: 41 });
        let decoded = decode_message(&with_id(&event, previous), event.data.as_bytes()).unwrap();
        assert_eq!(decoded, RelayedEvent { event: event.clone(), previous });
        let first = decode_message(&with_id(&event, None), event.data.as_bytes()).unwrap();
        assert_eq!(first.previous, None);
    }

    #[test]
    fn a_foreign_message_is_refused_with_the_header_named() {
        let event = event();
        let mut headers = with_id(&event, None);
        headers.insert(HASH, "zz");
        assert_eq!(decode_message(&headers, b"{}"), Err(MessageError::Malformed(HASH)));
        assert_eq!(decode_message(&HeaderMap::new(), b"{}"), Err(MessageError::Missing("Nats-Msg-Id")));
        let headers = with_id(&event, None);
        assert_eq!(decode_message(&headers, &[0xff, 0xfe]), Err(MessageError::Payload));
    }
}
