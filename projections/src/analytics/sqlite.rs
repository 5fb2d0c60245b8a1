//! The analytics read model on SQLite (the embedded default): the same rows as `rm_analytics.calls`, in
//! `analytics_calls`.

use std::sync::LazyLock;

use async_trait::async_trait;
use eventstore::RecordedEvent;
use sqlx::SqliteConnection;

use super::NAME;
use super::projection::{create_table, filter, upsert};
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

static UPSERT: LazyLock<String> = LazyLock::new(|| upsert("analytics_calls", |_| "?".to_owned()));

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
        for (key, counts) in rows {
            let query = super::bind_row!(sqlx::query(sqlx::AssertSqlSafe(UPSERT.as_str())), key, counts);
            query.execute(&mut *conn).await.map_err(|source| ProjectionError::Write {
                projection: NAME.to_owned(),
                position: last,
                source,
            })?;
        }
        Ok(())
    }
}
