//! OpenTelemetry traces: off unless a collector is named; with `OTEL_EXPORTER_OTLP_ENDPOINT`, every request
//! is a span exported over OTLP/HTTP (protobuf) to the collector, here an HTTP receiver of the test's.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

mod common;

use common::{DEADLINE, http};

/// What the collector received: path, content type, body.
type Exports = Arc<Mutex<Vec<(String, String, Vec<u8>)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_exported_as_spans_to_the_configured_collector() {
    let received: Exports = Arc::default();
    let kept = received.clone();
    let collector = axum::Router::new().fallback(
        move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let kept = kept.clone();
            async move {
                let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                kept.lock().unwrap().push((uri.path().to_owned(), content_type, body.to_vec()));
                axum::http::StatusCode::OK
            }
        },
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, collector).await });

    let dir = tempfile::tempdir().unwrap();
    let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()), ("OTEL_BSP_SCHEDULE_DELAY", "100")];
    let (gateway, address, key) = common::serve_with(dir.path(), &env).await;
    let key = key.expect("the first start prints the owner's key");
    tests::eventually(DEADLINE, "the gateway to serve", || async {
        (http(&address, "GET", "/api/v1/servers", Some(&key), None).await?.0 == 200).then_some(())
    })
    .await;
    let exported = tests::eventually(DEADLINE, "a span of the request at the collector", || async {
        let received = received.lock().unwrap();
        received
            .iter()
            .find(|(_, _, body)| {
                let text = String::from_utf8_lossy(body);
                text.contains("mcp-gateway") && text.contains("/api/v1/servers")
            })
            .cloned()
    })
    .await;
    assert_eq!(exported.0, "/v1/traces");
    assert_eq!(exported.1, "application/x-protobuf");

    // A command's events carry its request's id as their correlation id, and so does its span: the
    // trace and the audit trail meet on it.
    let server = r#"{"name": "io.example/traced", "description": "d", "transport": "streamable_http", "url": "https://93.184.216.34/mcp"}"#;
    let (status, head, body) =
        common::request(&address, "POST", "/api/v1/servers", Some(&key), Some(server), &[]).await.unwrap();
    assert_eq!(status, 201, "{body}");
    let request_id = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case("x-request-id")))
        .map(|(_, v)| v.trim().to_owned())
        .expect("a request id");
    let trail = tests::eventually(DEADLINE, "the registration in the audit trail", || async {
        let (_, page) =
            http(&address, "GET", &format!("/api/v1/audit?correlation_id={request_id}"), Some(&key), None).await?;
        page.contains("server.registered").then_some(page)
    })
    .await;
    assert!(trail.contains(&request_id), "{trail}");
    tests::eventually(DEADLINE, "the command's span at the collector", || async {
        let received = received.lock().unwrap();
        received.iter().any(|(_, _, body)| String::from_utf8_lossy(body).contains(&request_id)).then_some(())
    })
    .await;
    common::stop(gateway).await;
}
