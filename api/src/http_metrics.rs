//! The HTTP layer's metrics (`mgw_http_requests_total`, `mgw_http_request_duration_seconds`) and the
//! authorization decisions (`mgw_authz_decisions_total`), with their handles kept per gateway.
//!
//! Every request records these. Looking a series up through the `metrics` macros builds its key (three
//! label strings allocated), hashes it and searches the recorder's registry each time; here a request
//! finds its route's handles by the route template alone, and the labels are built once per series.
//! Handles are registered on first use by the gateway that uses them, so a gateway started before or
//! without a recorder records nothing, as the macros would.

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use metrics::{Counter, Histogram};

/// The method labels: the methods a route answers, and what stands for any other (a made-up method must
/// not make a new series).
const METHODS: [&str; 8] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "other"];

/// Which of [`METHODS`] labels `method`.
fn method_index(method: &Method) -> usize {
    METHODS[..METHODS.len() - 1].iter().position(|known| *known == method.as_str()).unwrap_or(METHODS.len() - 1)
}

/// One route's series for one method.
#[derive(Default)]
struct MethodSeries {
    duration: OnceLock<Histogram>,
    /// By status: a route answers few distinct ones.
    requests: RwLock<Vec<(u16, Counter)>>,
}

/// One route's series.
#[derive(Default)]
struct RouteSeries([MethodSeries; METHODS.len()]);

/// The handles, per gateway.
#[derive(Default)]
pub(crate) struct HttpMetrics {
    /// By route template (`unmatched` for a path no route took).
    routes: RwLock<HashMap<Box<str>, RouteSeries>>,
    /// `allow`, then `deny`.
    decisions: [OnceLock<Counter>; 2],
}

impl HttpMetrics {
    /// Records a request of `method` to `route` answered with `status` after `elapsed`.
    pub(crate) fn record_request(&self, method: &Method, route: &str, status: StatusCode, elapsed: Duration) {
        let index = method_index(method);
        // A poisoned lock only means another request panicked while registering; its map is whole.
        let routes = self.routes.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(series) = routes.get(route) {
            return series.0[index].record(METHODS[index], route, status, elapsed);
        }
        drop(routes);
        let mut routes = self.routes.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        routes.entry(route.into()).or_default().0[index].record(METHODS[index], route, status, elapsed);
    }

    /// Counts an authorization decision.
    pub(crate) fn record_decision(&self, allow: bool) {
        let (slot, label) = if allow { (0, "allow") } else { (1, "deny") };
        self.decisions[slot]
            .get_or_init(|| metrics::counter!("mgw_authz_decisions_total", "decision" => label))
            .increment(1);
    }
}

impl MethodSeries {
    fn record(&self, method: &'static str, route: &str, status: StatusCode, elapsed: Duration) {
        self.duration
            .get_or_init(|| {
                metrics::histogram!("mgw_http_request_duration_seconds", "method" => method, "route" => route.to_owned())
            })
            .record(elapsed.as_secs_f64());
        let code = status.as_u16();
        let requests = self.requests.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, counter)) = requests.iter().find(|(kept, _)| *kept == code) {
            return counter.increment(1);
        }
        drop(requests);
        let mut requests = self.requests.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, counter)) = requests.iter().find(|(kept, _)| *kept == code) {
            return counter.increment(1);
        }
        let counter = metrics::counter!(
            "mgw_http_requests_total",
            "method" => method,
            "route" => route.to_owned(),
            "status" => code.to_string()
        );
        counter.increment(1);
        requests.push((code, counter));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_fall_in_a_bounded_set_of_labels() {
        assert_eq!(METHODS[method_index(&Method::GET)], "GET");
        assert_eq!(METHODS[method_index(&Method::OPTIONS)], "OPTIONS");
        assert_eq!(METHODS[method_index(&Method::TRACE)], "other");
        assert_eq!(METHODS[method_index(&Method::from_bytes(b"BREW").unwrap())], "other");
    }

    #[test]
    fn each_series_counts_what_it_was_given() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let metrics = HttpMetrics::default();
        metrics::with_local_recorder(&recorder, || {
            for status in [StatusCode::OK, StatusCode::OK, StatusCode::NOT_FOUND] {
                metrics.record_request(&Method::GET, "/api/v1/servers/{id}", status, Duration::from_millis(2));
            }
            metrics.record_request(&Method::POST, "/api/v1/servers", StatusCode::CREATED, Duration::from_millis(3));
            metrics.record_request(
                &Method::from_bytes(b"BREW").unwrap(),
                "unmatched",
                StatusCode::METHOD_NOT_ALLOWED,
                Duration::ZERO,
            );
            metrics.record_decision(true);
            metrics.record_decision(false);
            metrics.record_decision(false);
        });
        let text = handle.render();
        for line in [
            r#"mgw_http_requests_total{method="GET",route="/api/v1/servers/{id}",status="200"} 2"#,
            r#"mgw_http_requests_total{method="GET",route="/api/v1/servers/{id}",status="404"} 1"#,
            r#"mgw_http_requests_total{method="POST",route="/api/v1/servers",status="201"} 1"#,
            r#"mgw_http_requests_total{method="other",route="unmatched",status="405"} 1"#,
            r#"mgw_http_request_duration_seconds_count{method="GET",route="/api/v1/servers/{id}"} 3"#,
            r#"mgw_authz_decisions_total{decision="allow"} 1"#,
            r#"mgw_authz_decisions_total{decision="deny"} 2"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
        }
    }
}
