//! The analytics read model on PostgreSQL: `rm_analytics.calls`, one row per bucket, dimension and key.

use std::sync::LazyLock;

use async_trait::async_trait;
use eventstore::RecordedEvent;
use sqlx::PgConnection;

use super::{HISTOGRAM_BUCKETS, NAME};
use crate::{EventFilter, ProjectionError, TableProjection};

/// The analytics projection.
pub struct AnalyticsProjection {
    filter: EventFilter,
}

impl Default for AnalyticsProjection {
    fn default() -> Self {
        Self { filter: filter() }
    }
}

/// The events analytics reads: every access record (a type of the category it did not know would halt
/// it); it counts tool calls and denials and passes the others.
pub(crate) fn filter() -> EventFilter {
    EventFilter::new([domain::access::ACCESS_CATEGORY], domain::access::AccessEvent::TYPES)
}

/// The histogram's columns, `h0, h1, …`.
pub(crate) fn histogram_columns() -> Vec<String> {
    (0..HISTOGRAM_BUCKETS).map(|i| format!("h{i}")).collect()
}

/// The table's columns (both backends): the key, the counts, the histogram.
pub(crate) fn create_table(table: &str, text: &str, integer: &str, real: &str) -> String {
    let histogram: Vec<String> = histogram_columns().iter().map(|h| format!("{h} {integer} NOT NULL")).collect();
    format!(
        "CREATE TABLE {table} (
             granularity  {integer} NOT NULL,
             bucket       {integer} NOT NULL,
             dimension    {text}    NOT NULL,
             key          {text}    NOT NULL,
             calls        {integer} NOT NULL,
             errors       {integer} NOT NULL,
             denials      {integer} NOT NULL,
             latency_ms   {real}    NOT NULL,
             {},
             PRIMARY KEY (granularity, dimension, key, bucket)
         );
         CREATE INDEX {table}_by_time ON {table} (granularity, dimension, bucket);",
        histogram.join(",\n             ")
    )
}

/// Adds a batch's counts to a row, creating it (both backends; `placeholder(n)` spells parameter n).
pub(crate) fn upsert(table: &str, placeholder: impl Fn(usize) -> String) -> String {
    let histogram = histogram_columns();
    let columns = ["granularity", "bucket", "dimension", "key", "calls", "errors", "denials", "latency_ms"]
        .iter()
        .map(|c| (*c).to_owned())
        .chain(histogram.iter().cloned())
        .collect::<Vec<_>>();
    let values: Vec<String> = (1..=columns.len()).map(&placeholder).collect();
    let added: Vec<String> = columns[4..].iter().map(|c| format!("{c} = {table}.{c} + excluded.{c}")).collect();
    format!(
        "INSERT INTO {table} ({}) VALUES ({}) \
         ON CONFLICT (granularity, dimension, key, bucket) DO UPDATE SET {}",
        columns.join(", "),
        values.join(", "),
        added.join(", ")
    )
}

static UPSERT: LazyLock<String> = LazyLock::new(|| upsert("calls", |n| format!("${n}")));

#[async_trait]
impl TableProjection for AnalyticsProjection {
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

    async fn create(&self, tx: &mut PgConnection) -> Result<(), ProjectionError> {
        sqlx::raw_sql(sqlx::AssertSqlSafe(create_table("calls", "text", "bigint", "double precision")))
            .execute(&mut *tx)
            .await?;
        Ok(())
    }

    async fn apply(&self, tx: &mut PgConnection, events: &[RecordedEvent]) -> Result<(), ProjectionError> {
        let Some((rows, last)) = super::fold_batch(events)? else { return Ok(()) };
        for (key, counts) in rows {
            super::bind_row!(sqlx::query(sqlx::AssertSqlSafe(UPSERT.as_str())), key, counts)
                .execute(&mut *tx)
                .await
                .map_err(|source| ProjectionError::Write { projection: NAME.to_owned(), position: last, source })?;
        }
        Ok(())
    }
}
