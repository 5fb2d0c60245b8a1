//! Stored rows back into events, the same on every backend.

use crate::error::CorruptKind;
use crate::verify::StoredRow;
use crate::{Error, Metadata, RecordedEvent, Result, StreamName, Upcasters};

/// Decodes a stored row into an event, upcasting its data to the current schema version.
pub(crate) fn decode_stored(raw: StoredRow, upcasters: &Upcasters) -> Result<RecordedEvent> {
    let position = raw.position;
    let corrupt = |source: CorruptKind| Error::Corrupt { position, source };
    let metadata: Metadata = serde_json::from_str(&raw.metadata).map_err(|e| corrupt(CorruptKind::Metadata(e)))?;
    let stream = StreamName::parse(raw.stream).map_err(|e| corrupt(e.into()))?;
    let version = u16::try_from(raw.schema_version).map_err(|_| corrupt(CorruptKind::Column("schema_version")))?;
    let revision = u64::try_from(raw.revision).map_err(|_| corrupt(CorruptKind::Column("stream_revision")))?;
    let hash = <[u8; 32]>::try_from(raw.hash.as_slice()).map_err(|_| corrupt(CorruptKind::Column("hash")))?;
    let (schema_version, data) = match upcasters.upcast(&raw.event_type, version, &raw.data) {
        Ok(Some(upcast)) => upcast,
        Ok(None) => (version, raw.data),
        Err(e) => return Err(corrupt(e.into())),
    };
    Ok(RecordedEvent {
        position,
        event_id: raw.event_id,
        stream,
        revision,
        event_type: raw.event_type,
        schema_version,
        data,
        metadata,
        hash,
    })
}
