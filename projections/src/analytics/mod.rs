//! Usage analytics: calls, errors, denials and latency of the tool calls forwarded through the gateway,
//! per server, tool, principal and client, in minute and hour buckets. Folded from `ToolCalled` and
//! `AccessDenied` like every read model, so a rebuild by replay recounts it from the log.
//!
//! Each call adds to one row per dimension (server, tool, principal, client, and `all`) and bucket: a
//! question about one dimension over a range reads that dimension's rows only (a week of hours of one
//! dimension is a few thousand rows however many calls were made), not the cross product of all four.
//!
//! Latency is kept as a histogram per bucket (counts under fixed bounds), which adds up across rows and
//! instances; percentiles are read from the summed histogram, interpolated within a bound.

mod projection;
mod query;
mod sqlite;

use std::collections::HashMap;

use domain::access::{AccessEvent, CallOutcome};
use eventstore::RecordedEvent;

pub use projection::AnalyticsProjection;
pub use query::{Analytics, Dimension, Granularity, Series, SeriesPoint, Summary, SummaryRow, UsageQuery};
pub use sqlite::SqliteAnalyticsProjection;

/// The projection's name: its checkpoint's, and its schema's (`rm_analytics`) or tables' prefix.
pub const NAME: &str = "analytics";

/// The upper bounds of the latency histogram, in milliseconds (the last bucket is everything above).
pub const LATENCY_BOUNDS_MS: [f64; 12] = [1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0];
/// Histogram buckets: one per bound and one above the last.
pub const HISTOGRAM_BUCKETS: usize = LATENCY_BOUNDS_MS.len() + 1;

/// A row a call or a denial adds to: its bucket, a dimension and the call's value in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct RowKey {
    pub(crate) granularity: i64,
    pub(crate) bucket: i64,
    pub(crate) dimension: &'static str,
    pub(crate) key: String,
}

/// What a batch adds to one row.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Counts {
    pub(crate) calls: i64,
    pub(crate) errors: i64,
    pub(crate) denials: i64,
    pub(crate) latency_ms: f64,
    pub(crate) histogram: [i64; HISTOGRAM_BUCKETS],
}

/// What a batch adds, row by row.
pub(crate) type Rows = HashMap<RowKey, Counts>;

/// A batch's rows, a vector per column (PostgreSQL binds them as arrays).
#[derive(Default)]
pub(crate) struct RowColumns {
    pub(crate) granularity: Vec<i64>,
    pub(crate) bucket: Vec<i64>,
    pub(crate) dimension: Vec<&'static str>,
    pub(crate) key: Vec<String>,
    pub(crate) calls: Vec<i64>,
    pub(crate) errors: Vec<i64>,
    pub(crate) denials: Vec<i64>,
    pub(crate) latency_ms: Vec<f64>,
    pub(crate) histogram: [Vec<i64>; HISTOGRAM_BUCKETS],
}

impl RowColumns {
    pub(crate) fn push(&mut self, key: RowKey, counts: Counts) {
        self.granularity.push(key.granularity);
        self.bucket.push(key.bucket);
        self.dimension.push(key.dimension);
        self.key.push(key.key);
        self.calls.push(counts.calls);
        self.errors.push(counts.errors);
        self.denials.push(counts.denials);
        self.latency_ms.push(counts.latency_ms);
        for (column, count) in self.histogram.iter_mut().zip(counts.histogram) {
            column.push(count);
        }
    }
}

/// [`fold`] for a runner's batch: the rows, and the position a write failure is reported at; an event
/// that does not decode halts the projection at that event.
pub(crate) fn fold_batch(
    events: &[RecordedEvent],
) -> Result<Option<(Rows, eventstore::Position)>, crate::ProjectionError> {
    let rows = fold(events).map_err(|(index, reason)| crate::ProjectionError::Apply {
        projection: NAME.to_owned(),
        position: events[index].position,
        reason,
    })?;
    Ok(events.last().map(|last| (rows, last.position)))
}

/// The additions of `events`, row by row (a batch's events on one row add up to one upsert).
///
/// A batch's calls are first added up by what they have in common (their minute, server, tool, principal
/// and client: a handful of shapes in a batch of thousands), and each shape is then spread over its ten
/// rows (five dimensions, two granularities): one lookup per call rather than ten, and no key built per
/// call and row.
pub(crate) fn fold(events: &[RecordedEvent]) -> Result<Rows, (usize, String)> {
    let mut shapes: HashMap<Shape, Counts> = HashMap::new();
    for (index, event) in events.iter().enumerate() {
        let Some(decoded) = AccessEvent::from_json(&event.event_type, &event.data) else { continue };
        let decoded = decoded.map_err(|e| (index, e.to_string()))?;
        let at = event.metadata.occurred_at.timestamp();
        let minute = at - at.rem_euclid(Granularity::Minute.seconds());
        let (shape, counts) = match decoded {
            AccessEvent::ToolCalled(call) => {
                let mut counts = Counts { calls: 1, latency_ms: call.latency_ms, ..Counts::default() };
                counts.errors = i64::from(call.outcome != CallOutcome::Answered);
                counts.histogram[histogram_bucket(call.latency_ms)] = 1;
                let shape = Shape {
                    minute,
                    server: call.server_id.to_string(),
                    tool: call.tool,
                    principal: call.principal_id,
                    client: call.client_id.unwrap_or_default(),
                };
                (shape, counts)
            }
            AccessEvent::Denied(denied) => {
                let (server, tool) = denied_target(&denied.resource);
                (
                    Shape { minute, server, tool, principal: denied.principal_id, client: String::new() },
                    Counts { denials: 1, ..Counts::default() },
                )
            }
            _ => continue,
        };
        shapes.entry(shape).or_default().add(&counts);
    }
    let mut rows = Rows::new();
    for (shape, counts) in shapes {
        let hour = shape.minute - shape.minute.rem_euclid(Granularity::Hour.seconds());
        for (dimension, key) in shape.dimensions() {
            for (granularity, bucket) in [(Granularity::Minute, shape.minute), (Granularity::Hour, hour)] {
                let key = RowKey {
                    granularity: granularity.seconds(),
                    bucket,
                    dimension: dimension.name(),
                    key: key.clone(),
                };
                rows.entry(key).or_default().add(&counts);
            }
        }
    }
    Ok(rows)
}

/// What calls that add to the same ten rows have in common.
#[derive(PartialEq, Eq, Hash)]
struct Shape {
    /// The start of its minute (Unix seconds).
    minute: i64,
    server: String,
    tool: String,
    /// Kept as an id: spelt out once per shape, not once per call.
    principal: uuid::Uuid,
    client: String,
}

impl Shape {
    /// Its value in each dimension: `all` (one row per bucket for the totals), its server, its tool
    /// (`<server>/<tool>`), its principal and its client.
    fn dimensions(&self) -> [(Dimension, String); 5] {
        [
            (Dimension::All, String::new()),
            (Dimension::Tool, format!("{}/{}", self.server, self.tool)),
            (Dimension::Server, self.server.clone()),
            (Dimension::Principal, self.principal.to_string()),
            (Dimension::Client, self.client.clone()),
        ]
    }
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.calls += other.calls;
        self.errors += other.errors;
        self.denials += other.denials;
        self.latency_ms += other.latency_ms;
        for (sum, add) in self.histogram.iter_mut().zip(other.histogram) {
            *sum += add;
        }
    }
}

/// `CAST(SUM(h0) AS BIGINT), …`: the summed histogram's columns of a query.
pub(crate) fn histogram_columns_sum() -> String {
    (0..HISTOGRAM_BUCKETS).map(|i| format!("CAST(SUM(h{i}) AS BIGINT)")).collect::<Vec<_>>().join(", ")
}

/// The histogram bucket of a latency.
fn histogram_bucket(latency_ms: f64) -> usize {
    LATENCY_BOUNDS_MS.iter().position(|bound| latency_ms <= *bound).unwrap_or(LATENCY_BOUNDS_MS.len())
}

/// The server and tool a denial was about: `server:<id>:tool:<name>`, `server:<id>`, or neither.
fn denied_target(resource: &str) -> (String, String) {
    let Some(rest) = resource.strip_prefix("server:") else { return (String::new(), String::new()) };
    match rest.split_once(":tool:") {
        Some((server, tool)) => (server.to_owned(), tool.to_owned()),
        None => (rest.to_owned(), String::new()),
    }
}

/// The `quantile` (0–1) of a histogram, in milliseconds: linear within the bucket it falls in (the
/// bucket above the last bound reads as that bound). None without observations.
pub fn percentile(histogram: &[i64; HISTOGRAM_BUCKETS], quantile: f64) -> Option<f64> {
    let total: i64 = histogram.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = quantile.clamp(0.0, 1.0) * total as f64;
    let mut below = 0i64;
    for (index, count) in histogram.iter().enumerate() {
        if *count > 0 && (below + count) as f64 >= rank {
            let lower = if index == 0 { 0.0 } else { LATENCY_BOUNDS_MS[index - 1] };
            let upper = LATENCY_BOUNDS_MS.get(index).copied().unwrap_or(lower);
            let within = ((rank - below as f64) / *count as f64).clamp(0.0, 1.0);
            return Some(lower + (upper - lower) * within);
        }
        below += count;
    }
    LATENCY_BOUNDS_MS.last().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_fall_in_their_bucket_and_percentiles_interpolate() {
        assert_eq!(histogram_bucket(0.2), 0);
        assert_eq!(histogram_bucket(1.0), 0);
        assert_eq!(histogram_bucket(3.0), 2);
        assert_eq!(histogram_bucket(9_999.0), HISTOGRAM_BUCKETS - 1);
        let mut histogram = [0; HISTOGRAM_BUCKETS];
        histogram[3] = 100; // (5, 10] ms
        assert_eq!(percentile(&histogram, 0.5), Some(7.5));
        assert_eq!(percentile(&histogram, 1.0), Some(10.0));
        assert_eq!(percentile(&[0; HISTOGRAM_BUCKETS], 0.5), None);
    }

    fn recorded(event_type: &str, data: String, at: &str) -> RecordedEvent {
        let occurred_at = chrono::DateTime::parse_from_rfc3339(at).unwrap().with_timezone(&chrono::Utc);
        RecordedEvent {
            position: eventstore::Position::START,
            event_id: uuid::Uuid::now_v7(),
            stream: eventstore::StreamName::parse("access-1".to_owned()).unwrap(),
            revision: 0,
            event_type: event_type.into(),
            schema_version: 1,
            data,
            metadata: eventstore::Metadata::new(uuid::Uuid::now_v7(), eventstore::Actor::system("test"), occurred_at),
            hash: [0; 32],
        }
    }

    fn call(
        server: uuid::Uuid,
        tool: &str,
        principal: uuid::Uuid,
        client: Option<&str>,
        ms: f64,
        at: &str,
    ) -> RecordedEvent {
        let call = domain::access::ToolCalled {
            call_id: uuid::Uuid::now_v7(),
            principal_id: principal,
            credential_id: uuid::Uuid::now_v7(),
            client_id: client.map(str::to_owned),
            server_id: server,
            tool: tool.into(),
            outcome: if ms > 10.0 { CallOutcome::ToolError } else { CallOutcome::Answered },
            latency_ms: ms,
            upstream_status: Some(200),
            arguments_hash: "hmac-sha256:k:00".into(),
        };
        recorded("ToolCalled", serde_json::to_string(&call).unwrap(), at)
    }

    #[test]
    fn a_batch_adds_each_call_to_its_row_in_every_dimension_and_bucket() {
        let (server, alice, bob) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
        let denied = domain::access::AccessDenied {
            principal_id: alice,
            action: "call_tool".into(),
            resource: format!("server:{server}:tool:echo"),
            reason: "no".into(),
        };
        let events = [
            call(server, "echo", alice, None, 3.0, "2026-12-07T10:00:05Z"),
            call(server, "echo", alice, None, 30.0, "2026-12-07T10:00:50Z"),
            recorded("AccessDenied", serde_json::to_string(&denied).unwrap(), "2026-12-07T10:00:30Z"),
            call(server, "add", bob, Some("cli"), 1.0, "2026-12-07T10:01:10Z"),
            call(server, "echo", bob, None, 2.0, "2026-12-07T11:59:59Z"),
        ];
        let rows = fold(&events).unwrap();
        let ten = chrono::DateTime::parse_from_rfc3339("2026-12-07T10:00:00Z").unwrap().timestamp();
        let row = |granularity: Granularity, bucket: i64, dimension: Dimension, key: &str| {
            let key =
                RowKey { granularity: granularity.seconds(), bucket, dimension: dimension.name(), key: key.into() };
            rows.get(&key).map(|c| (c.calls, c.errors, c.denials)).unwrap_or_default()
        };
        let echo = format!("{server}/echo");
        assert_eq!(row(Granularity::Minute, ten, Dimension::All, ""), (2, 1, 1));
        assert_eq!(row(Granularity::Minute, ten + 60, Dimension::All, ""), (1, 0, 0));
        assert_eq!(row(Granularity::Hour, ten, Dimension::All, ""), (3, 1, 1));
        assert_eq!(row(Granularity::Hour, ten + 3600, Dimension::All, ""), (1, 0, 0));
        assert_eq!(row(Granularity::Minute, ten, Dimension::Tool, &echo), (2, 1, 1));
        assert_eq!(row(Granularity::Hour, ten, Dimension::Server, &server.to_string()), (3, 1, 1));
        assert_eq!(row(Granularity::Hour, ten, Dimension::Principal, &alice.to_string()), (2, 1, 1));
        assert_eq!(row(Granularity::Hour, ten, Dimension::Principal, &bob.to_string()), (1, 0, 0));
        assert_eq!(row(Granularity::Hour, ten, Dimension::Client, "cli"), (1, 0, 0));
        assert_eq!(row(Granularity::Hour, ten, Dimension::Client, ""), (2, 1, 1));
        let hour = &rows[&RowKey { granularity: 3600, bucket: ten, dimension: "all", key: String::new() }];
        assert_eq!(hour.latency_ms, 34.0);
        assert_eq!(hour.histogram.iter().sum::<i64>(), 3, "denials add no latency");
        // Each row once: five for each of the three minutes; over hours, eight for 10:00 (two tools, two
        // principals, two clients) and five for 11:00.
        assert_eq!(rows.len(), 28);
    }

    #[test]
    fn denials_name_their_server_and_tool() {
        assert_eq!(denied_target("server:abc:tool:echo"), ("abc".into(), "echo".into()));
        assert_eq!(denied_target("server:abc"), ("abc".into(), String::new()));
        assert_eq!(denied_target("principal:x"), (String::new(), String::new()));
    }
}
