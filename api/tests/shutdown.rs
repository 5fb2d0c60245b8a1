//! SIGTERM with MCP streams open, as a rolling restart meets them: a session's GET stream answers no
//! request, so it ends between two events (its client resumes elsewhere with `Last-Event-ID`) instead of
//! holding the exit for the whole shutdown timeout; a tool call in flight is answered in full.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

mod common;

use common::mcp::{post, registered_with_session, request, rpc};
use common::{DEADLINE, serve_with};

/// Far longer than the test waits for anything: an exit that took it would fail the test.
const SHUTDOWN_TIMEOUT_S: &str = "300";

/// How long the stream and the process may take to end after SIGTERM on a busy machine.
const PROMPTLY: Duration = Duration::from_secs(30);

/// Reads `body` until `text` has arrived; what was read.
async fn read_until(
    body: &mut (impl futures_util::Stream<Item = reqwest::Result<axum::body::Bytes>> + Unpin),
    text: &str,
) -> String {
    let mut read = String::new();
    while !read.contains(text) {
        let chunk = tokio::time::timeout(DEADLINE, body.next()).await.expect("an event in time");
        read.push_str(&String::from_utf8_lossy(&chunk.expect("the stream to go on").unwrap()));
    }
    read
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_ends_get_streams_between_events_answers_calls_in_flight_and_exits_before_the_timeout() {
    let upstream = tests::McpServer::everything().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("MGW_UPSTREAM_ALLOWLIST", "127.0.0.1"),
        ("MGW_SHUTDOWN_DRAIN_S", "0"),
        ("MGW_SHUTDOWN_TIMEOUT_S", SHUTDOWN_TIMEOUT_S),
    ];
    let (mut gateway, address, key) = serve_with(dir.path(), &env).await;
    let key = key.expect("the first start prints the owner's key");
    let (url, session) = registered_with_session(&address, &key, &upstream.url()).await;
    let client = reqwest::Client::new();

    // The session's GET stream, carrying the server's own messages (simulated logging)…
    let stream = request(client.get(&url), &key, Some(&session)).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    let mut stream = stream.bytes_stream();
    let toggle = rpc(1, "tools/call", json!({ "name": "toggle-simulated-logging", "arguments": {} }));
    assert!(post(&client, &url, &key, Some(&session), toggle).send().await.unwrap().status().is_success());
    let seen = read_until(&mut stream, "notifications/message").await;
    // …and a tool call still running at the upstream, its first progress notification received.
    let long = rpc(
        2,
        "tools/call",
        json!({ "name": "trigger-long-running-operation", "arguments": { "duration": 3, "steps": 3 },
                "_meta": { "progressToken": "p2" } }),
    );
    let call = post(&client, &url, &key, Some(&session), long).send().await.unwrap();
    assert!(call.status().is_success());
    let mut call = call.bytes_stream();
    let mut answer = read_until(&mut call, "notifications/progress").await;

    let stopped_at = Instant::now();
    let pid = gateway.id().unwrap().to_string();
    assert!(tokio::process::Command::new("kill").args(["-TERM", &pid]).status().await.unwrap().success());

    // The GET stream ends, cleanly and between two events.
    let mut rest = String::new();
    while let Some(chunk) = tokio::time::timeout(PROMPTLY, stream.next()).await.expect("the GET stream to end promptly")
    {
        rest.push_str(&String::from_utf8_lossy(&chunk.expect("a clean end, not a broken one")));
    }
    let whole = format!("{seen}{rest}").replace("\r\n", "\n");
    assert!(whole.ends_with("\n\n"), "the stream ends after a whole event: {whole:?}");
    // The call in flight is answered in full.
    while let Some(chunk) = tokio::time::timeout(PROMPTLY, call.next()).await.expect("the call to be answered") {
        answer.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    let result = answer
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .find(|message| message["id"] == 2)
        .unwrap_or_else(|| panic!("the call's answer: {answer}"));
    assert!(result["result"]["content"].is_array(), "{result}");
    // And the instance exits, long before its shutdown timeout.
    let status = tokio::time::timeout(PROMPTLY, gateway.wait()).await.expect("an exit before the timeout").unwrap();
    assert!(status.success(), "a graceful stop: {status}");
    assert!(stopped_at.elapsed() < PROMPTLY, "stopped in {:?}", stopped_at.elapsed());
}
