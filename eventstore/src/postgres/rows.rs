//! Decoding `es.events` rows.

use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use crate::error::{CorruptKind, from_sqlx};
use crate::verify::StoredRow;
use crate::{Error, Metadata, Position, RecordedEvent, Result, StreamName, Upcasters};

/// `SELECT <the columns decode_row expects> FROM es.events e <rest>`, as one static string. Qualify columns
/// in `<rest>` with `e.`: a bare `ORDER BY transaction_id` would sort by the output column (the bigint cast)
/// and lose the index.
macro_rules! select_events {
    ($rest:literal) => {
        concat!(
            "SELECT e.transaction_id::text::bigint AS tx, e.global_position, e.event_id, e.stream_id, \
                    e.stream_revision, e.event_type, e.schema_version, e.data::text, e.metadata::text, e.hash \
               FROM es.events e ",
            $rest
        )
    };
}
pub(super) use select_events;

/// Reads the raw columns of a row selected by [`select_events!`] (optionally followed by more columns).
pub(super) fn stored_row(row: &PgRow) -> Result<StoredRow> {
    let get_err = from_sqlx;
    let tx: i64 = row.try_get(0).map_err(get_err)?;
    let gp: i64 = row.try_get(1).map_err(get_err)?;
    Ok(StoredRow {
        position: Position { transaction_id: tx as u64, global_position: gp as u64 },
        event_id: row.try_get::<Uuid, _>(2).map_err(get_err)?,
        stream: row.try_get(3).map_err(get_err)?,
        revision: row.try_get(4).map_err(get_err)?,
        event_type: row.try_get(5).map_err(get_err)?,
        schema_version: row.try_get(6).map_err(get_err)?,
        data: row.try_get(7).map_err(get_err)?,
        metadata: row.try_get(8).map_err(get_err)?,
        hash: row.try_get(9).map_err(get_err)?,
    })
}

/// Decodes a row into an event, upcasting its data to the current schema version.
pub(super) fn decode_row(row: &PgRow, upcasters: &Upcasters) -> Result<RecordedEvent> {
    let raw = stored_row(row)?;
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
