//! Reading the analytics read model: totals per server, tool, principal or client over a time range, and
//! a series of buckets, with latency percentiles from the summed histograms.

use serde::Serialize;
use sqlx::{PgPool, Row, SqlitePool};

use super::{HISTOGRAM_BUCKETS, histogram_columns_sum, percentile};
use crate::ProjectionError;

/// The bucket size rows are kept in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    /// One minute.
    Minute,
    /// One hour.
    Hour,
}

impl Granularity {
    /// Its length in seconds.
    pub fn seconds(self) -> i64 {
        match self {
            Self::Minute => 60,
            Self::Hour => 3600,
        }
    }
}

/// What totals are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    /// Every call: the totals (rows of this dimension have an empty key).
    All,
    /// The server.
    Server,
    /// The tool (of its server: `<server id>/<tool>`).
    Tool,
    /// The principal who called.
    Principal,
    /// The OAuth client that called (empty: an API key or a session).
    Client,
}

impl Dimension {
    /// Its name in the read model's `dimension` column.
    pub fn name(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Server => "server",
            Self::Tool => "tool",
            Self::Principal => "principal",
            Self::Client => "client",
        }
    }
}

/// A question to the read model.
#[derive(Debug, Clone)]
pub struct UsageQuery {
    /// Grouped by.
    pub by: Dimension,
    /// Buckets starting at or after this (Unix seconds).
    pub from: i64,
    /// Buckets starting before this (Unix seconds).
    pub to: i64,
    /// The bucket size to read.
    pub granularity: Granularity,
    /// Only this value of the dimension (a series of one key; totals of one key).
    pub key: Option<String>,
    /// At most this many keys (totals, busiest first).
    pub limit: i64,
}

/// Counts and latency of one key or one bucket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SummaryRow {
    /// The dimension's value (totals), or the bucket's start in Unix seconds (series).
    pub key: String,
    /// Tool calls forwarded.
    pub calls: i64,
    /// Calls that did not end with the server's answer (tool errors, JSON-RPC errors, upstream failures,
    /// broken or abandoned answers, interrupted calls).
    pub errors: i64,
    /// Requests refused by the gateway's rules.
    pub denials: i64,
    /// Mean latency of the calls, in milliseconds.
    pub mean_ms: Option<f64>,
    /// Latency percentiles (from the histogram), in milliseconds.
    pub p50_ms: Option<f64>,
    /// 95th percentile.
    pub p95_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
}

/// Totals per key.
pub type Summary = Vec<SummaryRow>;
/// One bucket of a series.
pub type SeriesPoint = SummaryRow;
/// Buckets in time order.
pub type Series = Vec<SeriesPoint>;

/// The analytics read model on either backend.
#[derive(Debug, Clone)]
pub enum Analytics {
    /// `rm_analytics.calls` on PostgreSQL.
    Postgres(PgPool),
    /// `analytics_calls` on SQLite.
    Sqlite(SqlitePool),
}

impl Analytics {
    /// Totals per key of `query.by`, busiest first.
    pub async fn summary(&self, query: &UsageQuery) -> Result<Summary, ProjectionError> {
        self.read(query, query.by, "key", "SUM(calls) + SUM(denials) DESC, key").await
    }

    /// Totals per bucket, oldest first: of one key of `query.by` when it names one, else of every call.
    pub async fn series(&self, query: &UsageQuery) -> Result<Series, ProjectionError> {
        let dimension = if query.key.is_some() { query.by } else { Dimension::All };
        self.read(query, dimension, "CAST(bucket AS TEXT)", "MIN(bucket)").await
    }

    async fn read(
        &self,
        query: &UsageQuery,
        dimension: Dimension,
        key: &str,
        order: &str,
    ) -> Result<Vec<SummaryRow>, ProjectionError> {
        let (table, placeholder): (&str, fn(usize) -> String) = match self {
            Self::Postgres(_) => ("rm_analytics.calls", |n| format!("${n}")),
            Self::Sqlite(_) => ("analytics_calls", |n| format!("?{n}")),
        };
        let filter = match query.key {
            Some(_) => format!(" AND key = {}", placeholder(5)),
            None => String::new(),
        };
        let range = format!(
            "granularity = {} AND dimension = {} AND bucket >= {} AND bucket < {}{filter}",
            placeholder(1),
            placeholder(2),
            placeholder(3),
            placeholder(4)
        );
        let sums = format!(
            "CAST(SUM(calls) AS BIGINT), CAST(SUM(errors) AS BIGINT), CAST(SUM(denials) AS BIGINT), \
             CAST(SUM(latency_ms) AS DOUBLE PRECISION), {}",
            histogram_columns_sum()
        );
        let limit = query.limit.clamp(1, 20_000);
        let sql = if key == "key" && query.granularity == Granularity::Hour {
            // Ranges of hours are where keys pile up (ten thousand principals in a week): the busiest keys
            // first, from two sums, then every sum of those keys only. A range of minutes holds few keys
            // for its rows, and reading them twice cost more than the sums it saves (six hours of minutes
            // by tool took twice as long), so it is summed in one pass.
            format!(
                "SELECT key, {sums} FROM {table} \
                  WHERE {range} AND key IN (SELECT key FROM {table} WHERE {range} \
                                             GROUP BY key ORDER BY {order} LIMIT {limit}) \
                  GROUP BY key ORDER BY {order}"
            )
        } else {
            format!(
                "SELECT {key} AS key, {sums} FROM {table} WHERE {range} GROUP BY {key} ORDER BY {order} LIMIT {limit}"
            )
        };
        // The same statement and binds on either backend (their query types differ, so a macro).
        macro_rules! fetch {
            ($pool:expr) => {{
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(query.granularity.seconds())
                    .bind(dimension.name())
                    .bind(query.from)
                    .bind(query.to);
                if let Some(key) = &query.key {
                    q = q.bind(key);
                }
                q.fetch_all($pool).await?.iter().map(decode).collect::<Result<Vec<_>, sqlx::Error>>()?
            }};
        }
        Ok(match self {
            Self::Postgres(pool) => fetch!(pool),
            Self::Sqlite(pool) => fetch!(pool),
        })
    }
}

/// One result row: the key, the sums, the summed histogram.
fn decode<'r, R>(row: &'r R) -> Result<SummaryRow, sqlx::Error>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    f64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let calls: i64 = row.try_get(1)?;
    let latency: f64 = row.try_get(4)?;
    let mut histogram = [0i64; HISTOGRAM_BUCKETS];
    for (index, count) in histogram.iter_mut().enumerate() {
        *count = row.try_get(5 + index)?;
    }
    Ok(SummaryRow {
        key: row.try_get(0)?,
        calls,
        errors: row.try_get(2)?,
        denials: row.try_get(3)?,
        mean_ms: (calls > 0).then(|| latency / calls as f64),
        p50_ms: percentile(&histogram, 0.5),
        p95_ms: percentile(&histogram, 0.95),
        p99_ms: percentile(&histogram, 0.99),
    })
}
