//! Hash-chain verification over `events` on SQLite, inside one read snapshot.

use futures_util::TryStreamExt;
use sqlx::{Row, SqlitePool};

use super::rows::stored_row;
use crate::Result;
use crate::error::from_sqlx;
use crate::verify::{ChainVerifier, VerifyReport};

/// Walks every stream (or one) in revision order.
pub(super) async fn verify(pool: &SqlitePool, stream: Option<&str>) -> Result<VerifyReport> {
    // A deferred transaction reads one WAL snapshot from its first statement to its end.
    let mut tx = pool.begin().await.map_err(from_sqlx)?;
    let mut verifier = ChainVerifier::new();
    {
        let mut rows = sqlx::query(
            "SELECT e.transaction_id, e.global_position, e.event_id, e.stream_id, e.stream_revision, e.event_type,
                    e.schema_version, e.data, e.metadata, e.hash, s.revision AS head, s.last_hash
               FROM events e LEFT JOIN streams s ON s.stream_id = e.stream_id
              WHERE ?1 IS NULL OR e.stream_id = ?1
              ORDER BY e.stream_id, e.stream_revision",
        )
        .bind(stream)
        .fetch(&mut *tx);
        while let Some(row) = rows.try_next().await.map_err(from_sqlx)? {
            let stored = stored_row(&row)?;
            let head: Option<i64> = row.try_get(10).map_err(from_sqlx)?;
            let head_hash: Option<Vec<u8>> = row.try_get(11).map_err(from_sqlx)?;
            verifier.push_with_head(&stored, head.map(|h| (h, head_hash.as_deref().unwrap_or_default())));
        }
    }
    let tails: Vec<(String, i64)> = sqlx::query_as(
        "SELECT s.stream_id, s.revision FROM streams s
          WHERE (?1 IS NULL OR s.stream_id = ?1)
            AND NOT EXISTS (SELECT 1 FROM events e WHERE e.stream_id = s.stream_id AND e.stream_revision = s.revision)",
    )
    .bind(stream)
    .fetch_all(&mut *tx)
    .await
    .map_err(from_sqlx)?;
    for (stream, head) in tails {
        verifier.tail_missing(&stream, head);
    }
    tx.commit().await.map_err(from_sqlx)?;
    Ok(verifier.finish())
}
