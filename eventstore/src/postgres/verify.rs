//! Hash-chain verification over `es.events`.

use futures_util::TryStreamExt;
use sqlx::{PgPool, Row};

use super::rows::stored_row;
use crate::Result;
use crate::error::from_sqlx;
use crate::verify::{ChainVerifier, VerifyReport};

/// Walks every stream (or one) in revision order inside one read-only snapshot.
pub(super) async fn verify(pool: &PgPool, stream: Option<&str>) -> Result<VerifyReport> {
    let mut tx = pool.begin().await.map_err(from_sqlx)?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await
        .map_err(from_sqlx)?;
    let mut verifier = ChainVerifier::new();
    {
        let mut rows = sqlx::query(
            "WITH e AS (SELECT * FROM es.events WHERE $1::text IS NULL OR stream_id = $1) \
             SELECT e.transaction_id::text::bigint, e.global_position, e.event_id, e.stream_id, e.stream_revision, \
                    e.event_type, e.schema_version, e.data::text, e.metadata::text, e.hash, s.revision AS head, \
                    s.last_hash \
               FROM e LEFT JOIN es.streams s ON s.stream_id = e.stream_id \
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
        "SELECT s.stream_id, s.revision FROM es.streams s \
          WHERE ($1::text IS NULL OR s.stream_id = $1) \
            AND NOT EXISTS (SELECT 1 FROM es.events e WHERE e.stream_id = s.stream_id AND e.stream_revision = s.revision)",
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
