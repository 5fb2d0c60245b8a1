//! Reading `events` rows on SQLite.

use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use crate::error::from_sqlx;
use crate::verify::StoredRow;
use crate::{Position, Result};

/// `SELECT <the columns stored_row expects> FROM events e <rest>`, as one static string.
macro_rules! select_events {
    ($rest:literal) => {
        concat!(
            "SELECT e.transaction_id, e.global_position, e.event_id, e.stream_id, e.stream_revision, \
                    e.event_type, e.schema_version, e.data, e.metadata, e.hash \
               FROM events e ",
            $rest
        )
    };
}
pub(super) use select_events;

/// Reads the raw columns of a row selected by [`select_events!`] (optionally followed by more columns).
pub(super) fn stored_row(row: &SqliteRow) -> Result<StoredRow> {
    let tx: i64 = row.try_get(0).map_err(from_sqlx)?;
    let gp: i64 = row.try_get(1).map_err(from_sqlx)?;
    Ok(StoredRow {
        position: Position { transaction_id: tx as u64, global_position: gp as u64 },
        event_id: row.try_get::<Uuid, _>(2).map_err(from_sqlx)?,
        stream: row.try_get(3).map_err(from_sqlx)?,
        revision: row.try_get(4).map_err(from_sqlx)?,
        event_type: row.try_get(5).map_err(from_sqlx)?,
        schema_version: row.try_get(6).map_err(from_sqlx)?,
        data: row.try_get(7).map_err(from_sqlx)?,
        metadata: row.try_get(8).map_err(from_sqlx)?,
        hash: row.try_get(9).map_err(from_sqlx)?,
    })
}
