//! Events going in ([`EventData`]) and coming out ([`RecordedEvent`]).

use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::content_hash::Hash;
use crate::{Metadata, Position, StreamName};

/// Largest event accepted (data plus metadata, in bytes). Below NATS's default 1 MiB payload limit,
/// so that no event can become a poison message for the relay.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 256 * 1024;

/// An event to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventData {
    /// Chosen by the client; appending the same id again is idempotent. Derive it from the command id
    /// ([`EventData::deterministic_id`]) so that a retried command writes nothing new.
    pub event_id: Uuid,
    /// Stable wire name, e.g. `ServerRegistered`; never a Rust type path.
    pub event_type: String,
    /// Schema version of `data`, from 1.
    pub schema_version: u16,
    /// The payload as JSON text. Stored byte for byte, so it hashes the same on the way back.
    pub data: String,
    /// Who, when, why.
    pub metadata: Metadata,
}

impl EventData {
    /// Serializes `data` into a new event.
    pub fn new<T: Serialize>(
        event_id: Uuid,
        event_type: impl Into<String>,
        schema_version: u16,
        data: &T,
        metadata: Metadata,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self {
            event_id,
            event_type: event_type.into(),
            schema_version,
            data: serde_json::to_string(data)?,
            metadata,
        })
    }

    /// The id of the `index`-th event a command produces. The same command retried yields the same ids,
    /// which the store recognises as a retry.
    ///
    /// The id is UUIDv5 of the command id and the index; when the command id is a UUIDv7, the result keeps
    /// its 48-bit timestamp (and the v7 layout), so event ids grow with time and the store's unique index
    /// on them takes inserts at its right edge instead of on random pages.
    pub fn deterministic_id(command_id: Uuid, index: u32) -> Uuid {
        let hashed = Uuid::new_v5(&command_id, &index.to_be_bytes());
        if command_id.get_version_num() != 7 {
            return hashed;
        }
        let mut bytes = *hashed.as_bytes();
        bytes[..6].copy_from_slice(&command_id.as_bytes()[..6]);
        bytes[6] = (bytes[6] & 0x0f) | 0x70;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        Uuid::from_bytes(bytes)
    }
}

/// An event read back from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    /// Where it sits in `$all`.
    pub position: Position,
    /// The id given at append.
    pub event_id: Uuid,
    /// The stream it belongs to.
    pub stream: StreamName,
    /// Its 0-based revision in the stream.
    pub revision: u64,
    /// Its type.
    pub event_type: String,
    /// The schema version of `data` after upcasting (the current version of its type).
    pub schema_version: u16,
    /// The payload as JSON text, upcast to `schema_version`.
    pub data: String,
    /// Who, when, why.
    pub metadata: Metadata,
    /// The stored chain link.
    pub hash: Hash,
}

impl RecordedEvent {
    /// Deserializes the payload.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(&self.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_ids_repeat_for_the_same_command_and_differ_by_index() {
        let command = Uuid::now_v7();
        assert_eq!(EventData::deterministic_id(command, 0), EventData::deterministic_id(command, 0));
        assert_ne!(EventData::deterministic_id(command, 0), EventData::deterministic_id(command, 1));
        assert_ne!(EventData::deterministic_id(command, 0), EventData::deterministic_id(Uuid::now_v7(), 0));
    }

    #[test]
    fn ids_of_a_v7_command_are_v7_with_its_timestamp() {
        let command = Uuid::now_v7();
        let id = EventData::deterministic_id(command, 3);
        assert_eq!(id.get_version_num(), 7);
        assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(id.get_timestamp(), command.get_timestamp());
    }

    #[test]
    fn ids_of_other_commands_are_v5() {
        let id = EventData::deterministic_id(Uuid::new_v4(), 0);
        assert_eq!(id.get_version_num(), 5);
    }
}
