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

/// The table's columns, in the order rows are bound.
pub(crate) fn columns() -> Vec<String> {
    ["granularity", "bucket", "dimension", "key", "calls", "errors", "denials", "latency_ms"]
        .iter()
        .map(|c| (*c).to_owned())
        .chain(histogram_columns())
        .collect()
}

/// Adds a batch's counts to their rows, creating them, in one statement (both backends): `rows` spells the
/// rows to add, in [`columns`] order, each row once.
pub(crate) fn upsert(table: &str, rows: &str) -> String {
    let columns = columns();
    let added: Vec<String> = columns[4..].iter().map(|c| format!("{c} = {table}.{c} + excluded.{c}")).collect();
    format!(
        "INSERT INTO {table} ({}) {rows} ON CONFLICT (granularity, dimension, key, bucket) DO UPDATE SET {}",
        columns.join(", "),
        added.join(", ")
    )
}

/// The batch's rows as arrays, one per column, unnested by PostgreSQL.
static UPSERT: LazyLock<String> = LazyLock::new(|| {
    let types = ["bigint", "bigint", "text", "text", "bigint", "bigint", "bigint", "double precision"];
    let arrays: Vec<String> =
        (1..=columns().len()).map(|n| format!("${n}::{}[]", types.get(n - 1).copied().unwrap_or("bigint"))).collect();
    upsert("calls", &format!("SELECT * FROM unnest({})", arrays.join(", ")))
});

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
        // One statement per batch, whatever its rows: a call adds to ten of them (five dimensions, two
        // granularities), and a statement each cost the database more than the rest of the batch.
        let mut columns = super::RowColumns::default();
        for (key, counts) in rows {
            columns.push(key, counts);
        }
        let mut query = sqlx::query(sqlx::AssertSqlSafe(UPSERT.as_str()))
            .bind(columns.granularity)
            .bind(columns.bucket)
            .bind(columns.dimension)
            .bind(columns.key)
            .bind(columns.calls)
            .bind(columns.errors)
            .bind(columns.denials)
            .bind(columns.latency_ms);
        for histogram in columns.histogram {
            query = query.bind(histogram);
        }
        query.execute(&mut *tx).await.map_err(|source| ProjectionError::Write {
            projection: NAME.to_owned(),
            position: last,
            source,
        })?;
        Ok(())
    }
}
