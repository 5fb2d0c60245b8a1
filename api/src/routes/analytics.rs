//! `/api/v1/analytics/…`: usage of the servers through the gateway, from the analytics read model.
//! Who called what is as sensitive as who may: the same readers as access reviews (owners, admins,
//! auditors).

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use chrono::{DateTime, Utc};
use domain::authz::Action;
use projections::analytics::{Dimension, Granularity, SummaryRow, UsageQuery};
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::problem::Problem;
use crate::state::AppState;

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/analytics/usage", get(usage)).route("/api/v1/analytics/series", get(series))
}

/// The widest range each bucket size may be read over (so that a query stays a bounded read).
const MAX_MINUTE_SPAN_S: i64 = 7 * 24 * 3600;
const MAX_HOUR_SPAN_S: i64 = 400 * 24 * 3600;

/// A question about usage.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct UsageParams {
    /// `server`, `tool` (`<server id>/<tool>`), `principal` or `client` [default: server].
    by: Option<String>,
    /// Start of the range, RFC 3339 [default: an hour before `to`].
    from: Option<DateTime<Utc>>,
    /// End of the range, RFC 3339 [default: now].
    to: Option<DateTime<Utc>>,
    /// `minute` or `hour` [default: minute for ranges up to 6 hours, else hour]; minutes are kept for
    /// ranges up to 7 days, hours up to 400 days.
    granularity: Option<String>,
    /// Only this value of `by` (a series of one server, say).
    key: Option<String>,
    /// At most this many keys, busiest first [default: 100, at most 10,000].
    limit: Option<u32>,
}

/// Usage over a range.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UsageReply {
    /// What the rows are grouped by (`bucket` for a series).
    by: String,
    /// The bucket size read.
    #[schema(value_type = String)]
    granularity: Granularity,
    /// The range read, aligned to whole buckets.
    from: DateTime<Utc>,
    /// Its end (exclusive).
    to: DateTime<Utc>,
    /// One row per key (usage) or per bucket (series): `key`, `calls`, `errors`, `denials`, `mean_ms`,
    /// `p50_ms`, `p95_ms`, `p99_ms`.
    #[schema(value_type = Vec<Object>)]
    rows: Vec<SummaryRow>,
}

impl UsageParams {
    fn query(&self) -> Result<UsageQuery, Problem> {
        let bad = |field: &str, detail: &str| {
            Problem::new(StatusCode::BAD_REQUEST, "bad-request", "Bad request").field(field).detail(detail)
        };
        let by = match self.by.as_deref().unwrap_or("server") {
            "server" => Dimension::Server,
            "tool" => Dimension::Tool,
            "principal" => Dimension::Principal,
            "client" => Dimension::Client,
            _ => return Err(bad("by", "group by server, tool, principal or client")),
        };
        let to = self.to.unwrap_or_else(Utc::now).timestamp();
        let from = self.from.map_or(to - 3600, |from| from.timestamp());
        if from >= to {
            return Err(bad("from", "the range must start before it ends"));
        }
        let granularity = match self.granularity.as_deref() {
            None if to - from <= 6 * 3600 => Granularity::Minute,
            None | Some("hour") => Granularity::Hour,
            Some("minute") => Granularity::Minute,
            Some(_) => return Err(bad("granularity", "minute or hour")),
        };
        let span = match granularity {
            Granularity::Minute => MAX_MINUTE_SPAN_S,
            Granularity::Hour => MAX_HOUR_SPAN_S,
        };
        if to - from > span {
            return Err(bad("from", "the range is too wide for this granularity (minutes: 7 days, hours: 400 days)"));
        }
        let seconds = granularity.seconds();
        let key = crate::params::text("key", self.key.clone())?;
        Ok(UsageQuery {
            by,
            from: from - from.rem_euclid(seconds),
            to: to + (seconds - to.rem_euclid(seconds)) % seconds,
            granularity,
            key,
            limit: i64::from(self.limit.unwrap_or(100).clamp(1, 10_000)),
        })
    }
}

fn reply(by: &str, query: &UsageQuery, rows: Vec<SummaryRow>) -> axum::Json<UsageReply> {
    let at = |seconds: i64| DateTime::from_timestamp(seconds, 0).unwrap_or_default();
    axum::Json(UsageReply {
        by: by.to_owned(),
        granularity: query.granularity,
        from: at(query.from),
        to: at(query.to),
        rows,
    })
}

fn unavailable(error: projections::ProjectionError) -> Problem {
    tracing::warn!(%error, "the analytics read model could not be read");
    Problem::unavailable("the analytics read model cannot be read now; try again")
}

/// `GET /api/v1/analytics/usage`: calls, errors, denials and latency per server, tool, principal or
/// client over a range, busiest first.
#[utoipa::path(get, path = "/api/v1/analytics/usage", operation_id = "analytics_usage", tag = "analytics", params(UsageParams),
    responses((status = 200, body = UsageReply), (status = 400, body = Problem), (status = 403, body = Problem), (status = 503, body = Problem)),
    security(("api_key" = [])))]
pub(crate) async fn usage(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<UsageParams>,
) -> Result<axum::Json<UsageReply>, Problem> {
    caller.authorize(&state, Action::ReadUsers, "analytics").await?;
    kept(&state)?;
    let query = params.query()?;
    let rows = state.analytics.summary(&query).await.map_err(unavailable)?;
    Ok(reply(params.by.as_deref().unwrap_or("server"), &query, rows))
}

/// `GET /api/v1/analytics/series`: the same figures bucket by bucket, oldest first (for one `key` of
/// `by`, or everything).
#[utoipa::path(get, path = "/api/v1/analytics/series", operation_id = "analytics_series", tag = "analytics", params(UsageParams),
    responses((status = 200, body = UsageReply), (status = 400, body = Problem), (status = 403, body = Problem), (status = 503, body = Problem)),
    security(("api_key" = [])))]
pub(crate) async fn series(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<UsageParams>,
) -> Result<axum::Json<UsageReply>, Problem> {
    caller.authorize(&state, Action::ReadUsers, "analytics").await?;
    kept(&state)?;
    let mut query = params.query()?;
    // Every bucket of the range (at most 10,080 minutes or 9,600 hours): none cut off.
    query.limit = (query.to - query.from) / query.granularity.seconds() + 1;
    let rows = state.analytics.series(&query).await.map_err(unavailable)?;
    Ok(reply("bucket", &query, rows))
}

/// Refuses when usage analytics are turned off (`MGW_ANALYTICS=false`): nothing is counted to answer.
fn kept(state: &AppState) -> Result<(), Problem> {
    if state.analytics_status.borrow().state == projections::ProjectionState::Disabled {
        return Err(Problem::unavailable("usage analytics are turned off on this gateway (MGW_ANALYTICS)"));
    }
    Ok(())
}
