//! The analytics read model on SQLite (the embedded default): the same rows as `rm_analytics.calls`, in
//! `analytics_calls`.

use std::sync::LazyLock;

use async_trait::async_trait;
use eventstore::RecordedEvent;
use sqlx::SqliteConnection;

use super::NAME;
use super::projection::{columns, create_table, filter, upsert};
use crate::{EventFilter, ProjectionError, SqliteProjection};

/// The analytics projection on SQLite.
pub struct SqliteAnalyticsProjection {
    filter: EventFilter,
}

impl Default for SqliteAnalyticsProjection {
    fn default() -> Self {
        Self { filter: filter() }
    }
}

/// Rows per statement: SQLite takes at most 32,766 parameters, a row binds 21.
const ROWS_PER_STATEMENT: usize = 500;

/// The upsert of `rows` rows.
fn upsert_of(rows: usize) -> String {
    let row = format!("({})", vec!["?"; columns().len()].join(", "));
    upsert("analytics_calls", &format!("VALUES {}", vec![row; rows].join(", ")))
}

/// Binds a row's key and counts in [`columns`] order.
fn bind_row<'q>(
    query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    key: &'q super::RowKey,
    counts: &super::Counts,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    let mut query = query
        .bind(key.granularity)
        .bind(key.bucket)
        .bind(key.dimension)
        .bind(&key.key)
        .bind(counts.calls)
        .bind(counts.errors)
        .bind(counts.denials)
        .bind(counts.latency_ms);
    for count in counts.histogram {
        query = query.bind(count);
    }
    query
}

/// The upsert of a full chunk, made once.
static UPSERT: LazyLock<String> = LazyLock::new(|| upsert_of(ROWS_PER_STATEMENT));

#[async_trait]
impl SqliteProjection for SqliteAnalyticsProjection {
    fn name(&self) -> &str {
        NAME
    }

    fn version(&self) -> u32 {
        // 2: rows per dimension instead of per combination of the four.
        2
    }

    fn filter(&self) -> &EventFilter {
        &self.filter
    }

    fn tables(&self) -> &[&'static str] {
        &["analytics_calls"]
    }

    async fn create(&self, conn: &mut SqliteConnection) -> Result<(), ProjectionError> {
        sqlx::raw_sql(sqlx::AssertSqlSafe(create_table("analytics_calls", "TEXT", "INTEGER", "REAL")))
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    async fn apply(&self, conn: &mut SqliteConnection, events: &[RecordedEvent]) -> Result<(), ProjectionError> {
        let Some((rows, last)) = super::fold_batch(events)? else { return Ok(()) };
        // A statement per chunk of rows: a call adds to ten of them (five dimensions, two granularities).
        let rows: Vec<_> = rows.into_iter().collect();
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let partial;
            let sql = if chunk.len() == ROWS_PER_STATEMENT {
                UPSERT.as_str()
            } else {
                partial = upsert_of(chunk.len());
                partial.as_str()
            };
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (key, counts) in chunk {
                query = bind_row(query, key, counts);
            }
            query.execute(&mut *conn).await.map_err(|source| ProjectionError::Write {
                projection: NAME.to_owned(),
                position: last,
                source,
            })?;
        }
        Ok(())
    }
}
