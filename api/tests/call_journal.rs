//! Every forwarded tool call reaches the audit trail exactly once, across a gateway killed (SIGKILL)
//! mid-burst: calls answered whose records may still have been queued, and calls still running at the
//! upstream. The next start appends what the call journal holds and the store does not.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::process::Child;

mod common;

use common::mcp::{post, registered_with_session, rpc};
use common::{DEADLINE, http, serve_with, stop};

/// The embedded gateway in `dir`, allowed to reach loopback upstreams, ready; its process, address and
/// the key it printed on a first start.
async fn serve(dir: &std::path::Path) -> (Child, String, Option<String>) {
    let (child, address, key) = serve_with(dir, &[("MGW_UPSTREAM_ALLOWLIST", "127.0.0.1")]).await;
    tests::eventually(DEADLINE, "GET /ready to answer 200", || async {
        (http(&address, "GET", "/ready", None, None).await?.0 == 200).then_some(())
    })
    .await;
    (child, address, key)
}

/// The recorded calls: call id → outcome.
async fn recorded_calls(address: &str, key: &str, at_least: usize) -> BTreeMap<String, String> {
    let entries = tests::eventually(DEADLINE, "the calls in the audit trail", || async {
        let (status, body) =
            http(address, "GET", "/api/v1/audit?action=tool.called&limit=500", Some(key), None).await?;
        let page: Value = serde_json::from_str(&body).ok()?;
        let entries = page["entries"].as_array()?.clone();
        (status == 200 && entries.len() >= at_least).then_some(entries)
    })
    .await;
    let mut calls = BTreeMap::new();
    for entry in &entries {
        let id = entry["changes"]["call_id"].as_str().unwrap().to_owned();
        let outcome = entry["changes"]["outcome"].as_str().unwrap().to_owned();
        assert!(calls.insert(id.clone(), outcome).is_none(), "call {id} recorded twice: {entries:?}");
    }
    calls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_is_recorded_once_across_a_gateway_killed_mid_burst() {
    let upstream = tests::McpServer::everything().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut gateway, address, key) = serve(dir.path()).await;
    let key = key.expect("the first start prints the owner's key");
    let (url, session) = registered_with_session(&address, &key, &upstream.url()).await;
    let client = reqwest::Client::new();

    // Calls that answer at once, all answered…
    let quick = futures_util::future::join_all((1..=30u64).map(|n| {
        let echo = rpc(n, "tools/call", json!({ "name": "echo", "arguments": { "message": n.to_string() } }));
        let request = post(&client, &url, &key, Some(&session), echo);
        async move {
            let answer = request.send().await.unwrap();
            (answer.status(), answer.text().await.unwrap())
        }
    }))
    .await;
    assert!(quick.iter().all(|(s, body)| s.is_success() && body.contains("\"result\"")), "{quick:?}");
    // …and calls still running at the upstream: each has sent its first progress notification.
    let mut running = Vec::new();
    for n in 100..110u64 {
        let long = rpc(
            n,
            "tools/call",
            json!({ "name": "trigger-long-running-operation", "arguments": { "duration": 30, "steps": 30 },
                    "_meta": { "progressToken": format!("p{n}") } }),
        );
        let answer = post(&client, &url, &key, Some(&session), long).send().await.unwrap();
        assert!(answer.status().is_success());
        let mut body = answer.bytes_stream();
        let first = tokio::time::timeout(DEADLINE, body.next()).await.unwrap().unwrap().unwrap();
        assert!(String::from_utf8_lossy(&first).contains("notifications/progress"));
        running.push(body);
    }

    // Killed: nothing is flushed, drained or closed.
    gateway.kill().await.unwrap();
    drop(running);

    let (restarted, address, _) = serve(dir.path()).await;
    let calls = recorded_calls(&address, &key, 40).await;
    assert_eq!(calls.len(), 40, "every call, once: {calls:?}");
    let interrupted = calls.values().filter(|o| *o == "interrupted").count();
    assert_eq!(interrupted, 10, "the calls running when the gateway died: {calls:?}");
    assert_eq!(calls.values().filter(|o| *o == "answered").count(), 30, "{calls:?}");
    // Nothing is left in the journal, and nothing is recorded again by a later start.
    stop(restarted).await;
    let left: Vec<_> = std::fs::read_dir(dir.path().join("data/calls")).unwrap().collect();
    assert!(left.is_empty(), "a graceful stop leaves no journal: {left:?}");
    let (again, address, _) = serve(dir.path()).await;
    assert_eq!(recorded_calls(&address, &key, 40).await, calls);
    stop(again).await;
}
