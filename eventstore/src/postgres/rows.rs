//! Decoding `es.events` rows.

use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use crate::error::from_sqlx;
use crate::verify::StoredRow;
use crate::{Position, RecordedEvent, Result, Upcasters};

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
    crate::decode::decode_stored(stored_row(row)?, upcasters)
}
