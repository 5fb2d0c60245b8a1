//! The MCP route's metrics, with their handles kept: a request records up to four series, and looking
//! each one up by name and labels in the recorder's registry (a key built, hashed and compared) cost more
//! than recording it. Handles are registered on first use, by the gateway that uses them, so a gateway
//! started before or without a recorder records nothing, as the `metrics` macros would.

use std::sync::OnceLock;
use std::time::Duration;

use axum::http::StatusCode;
use metrics::{Counter, Histogram};
use serde_json::Value;

/// How many of [`METHODS`] are MCP's own; the labels after them stand for anything else.
const MCP_METHODS: usize = 13;

/// The JSON-RPC method labels: MCP's own methods, and what stands for anything else (a client's
/// made-up method must not make a new series).
const METHODS: [&str; MCP_METHODS + 5] = [
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "resources/subscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "elicitation/create",
    "batch",
    "notification",
    "response",
    "other",
    "invalid",
];

/// The outcome labels, from the answer's status.
const OUTCOMES: [&str; 5] = ["ok", "denied", "upstream_error", "client_error", "gateway_error"];

/// A request's method, as one of the [`METHODS`] labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct McpMethod(usize);

impl McpMethod {
    /// A request that could not be read.
    pub(crate) const INVALID: Self = Self(METHODS.len() - 1);
    const BATCH: Self = Self(MCP_METHODS);
    const NOTIFICATION: Self = Self(MCP_METHODS + 1);
    const RESPONSE: Self = Self(MCP_METHODS + 2);
    const OTHER: Self = Self(MCP_METHODS + 3);

    /// The method of a request's messages: of a single request, its own (`notification`, `response`
    /// or `other` when it is none of MCP's); of several, `batch`.
    pub(crate) fn of(messages: &[&Value]) -> Self {
        match messages {
            [one] => match super::tool_filter::method(one) {
                Some(method) if method.starts_with("notifications/") => Self::NOTIFICATION,
                Some(method) => {
                    METHODS[..MCP_METHODS].iter().position(|known| *known == method).map_or(Self::OTHER, Self)
                }
                None => Self::RESPONSE,
            },
            _ => Self::BATCH,
        }
    }

    /// Its label.
    pub(crate) fn label(self) -> &'static str {
        METHODS[self.0]
    }
}

/// The handles, per gateway.
#[derive(Default)]
pub(crate) struct McpMetrics {
    requests: [[OnceLock<Counter>; OUTCOMES.len()]; METHODS.len()],
    durations: [OnceLock<Histogram>; METHODS.len()],
    upstream: OnceLock<Histogram>,
    overhead: OnceLock<Histogram>,
}

impl McpMetrics {
    /// Records a request of `method` answered with `status` after `total`, of which `upstream` (when it
    /// was asked) waiting for the server.
    pub(crate) fn record(&self, method: McpMethod, status: StatusCode, total: Duration, upstream: Option<Duration>) {
        let outcome = match status.as_u16() {
            200..=299 => 0,
            401 | 403 | 429 => 1,
            502 | 504 => 2,
            400..=499 => 3,
            _ => 4,
        };
        let (label, outcome_label) = (method.label(), OUTCOMES[outcome]);
        self.requests[method.0][outcome]
            .get_or_init(|| metrics::counter!("mgw_mcp_requests_total", "method" => label, "outcome" => outcome_label))
            .increment(1);
        self.durations[method.0]
            .get_or_init(|| metrics::histogram!("mgw_mcp_request_duration_seconds", "method" => label))
            .record(total.as_secs_f64());
        if let Some(upstream) = upstream {
            self.upstream
                .get_or_init(|| metrics::histogram!("mgw_upstream_duration_seconds"))
                .record(upstream.as_secs_f64());
            self.overhead
                .get_or_init(|| metrics::histogram!("mgw_gateway_overhead_seconds"))
                .record(total.saturating_sub(upstream).as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_fall_in_a_bounded_set_of_labels() {
        let of = |messages: &[Value]| McpMethod::of(&messages.iter().collect::<Vec<_>>()).label();
        let request = |method: &str| serde_json::json!({ "jsonrpc": "2.0", "id": 1, "method": method });
        assert_eq!(of(&[request("tools/call")]), "tools/call");
        assert_eq!(of(&[request("elicitation/create")]), "elicitation/create");
        assert_eq!(of(&[request("notifications/initialized")]), "notification");
        assert_eq!(of(&[request("made/up")]), "other");
        assert_eq!(of(&[serde_json::json!({ "jsonrpc": "2.0", "id": 1, "result": {} })]), "response");
        assert_eq!(of(&[request("ping"), request("ping")]), "batch");
        assert_eq!(McpMethod::INVALID.label(), "invalid");
    }
}
