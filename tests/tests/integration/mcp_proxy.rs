//! The MCP proxy (step 9) in front of a real MCP server, the official `server-everything`, on every
//! backend: the server's tool rules on `tools/list` and `tools/call` (a refusal answered in JSON-RPC and
//! audited), sessions bound to their principal and server, SSE answers streamed as they are produced,
//! and an upstream that dies mid-answer.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::api_servers::{Api, start_with};
use crate::conformance::{Backend, on_every_backend};
use crate::support::DEADLINE;

/// A request to `uri` with the MCP client's headers, the credential `key` and the session, if any.
fn request(uri: &str, key: &str, session: Option<&str>, body: &Value) -> Request<Body> {
    let mut request = Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, text/event-stream")
        .header(header::AUTHORIZATION, format!("Bearer {key}"));
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    request.body(Body::from(body.to_string())).unwrap()
}

/// Status, session id and the JSON-RPC messages of a whole answer (a JSON body, or SSE events' data).
async fn call(
    api: &Api,
    uri: &str,
    key: &str,
    session: Option<&str>,
    body: &Value,
) -> (StatusCode, Option<String>, Vec<Value>) {
    let response = api.router.clone().oneshot(request(uri, key, session, body)).await.unwrap();
    let status = response.status();
    let session = response.headers().get("mcp-session-id").map(|v| v.to_str().unwrap().to_owned());
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 22).await.unwrap();
    (status, session, messages(&String::from_utf8_lossy(&bytes)))
}

fn messages(raw: &str) -> Vec<Value> {
    if let Ok(one) = serde_json::from_str::<Value>(raw) {
        return vec![one];
    }
    raw.lines().filter_map(|line| line.strip_prefix("data: ")).filter_map(|d| serde_json::from_str(d).ok()).collect()
}

fn rpc(id: u64, method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params })
}

fn initialize() -> Value {
    rpc(
        0,
        "initialize",
        json!({ "protocolVersion": "2025-06-18", "capabilities": {},
                                  "clientInfo": { "name": "test", "version": "1" } }),
    )
}

/// A gateway trusting loopback upstreams, with a server at `upstream` that developers may use and whose
/// `get-env` tool is denied; the server's MCP path.
async fn gateway_with_server(backend: Backend, upstream: &str) -> (Api, String, String) {
    let api = start_with(backend, |config| config.upstream_allowlist = vec!["127.0.0.1".into()]).await;
    let body = json!({ "name": "io.example/everything", "description": "d", "transport": "streamable_http",
                       "url": upstream, "access": { "roles": ["developer"], "tools": { "deny": ["get-env"] } } });
    let created = api.call(Method::POST, "/api/v1/servers", Some(&body.to_string()), &[]).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.raw);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let uri = format!("/servers/{id}/mcp");
    tests::eventually(DEADLINE, "the server known to the authorization model", || async {
        api.gateway.state.authz.read().ok()?.server_access(id.parse().ok()?).map(|_| ())
    })
    .await;
    (api, id, uri)
}

/// A session of `key`'s principal at `uri`, initialized.
async fn session(api: &Api, uri: &str, key: &str) -> String {
    let (status, session, answer) = call(api, uri, key, None, &initialize()).await;
    assert_eq!(status, StatusCode::OK, "{answer:?}");
    let session = session.expect("a session id");
    let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    assert_eq!(call(api, uri, key, Some(&session), &initialized).await.0, StatusCode::ACCEPTED);
    session
}

async fn tools_the_rules_hide_are_neither_listed_nor_called_and_a_refusal_is_audited(backend: Backend) {
    let upstream = tests::EverythingServer::shared().unwrap().url();
    let (api, id, uri) = gateway_with_server(backend, &upstream).await;
    let key = api.key.clone();
    let session = session(&api, &uri, &key).await;

    let (_, _, listed) = call(&api, &uri, &key, Some(&session), &rpc(1, "tools/list", json!({}))).await;
    let names: Vec<&str> =
        listed[0]["result"]["tools"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
    assert!(names.contains(&"echo") && names.len() >= 10, "{names:?}");
    assert!(!names.contains(&"get-env"), "a denied tool is not listed: {names:?}");

    let echo = rpc(2, "tools/call", json!({ "name": "echo", "arguments": { "message": "hi" } }));
    let (status, _, answer) = call(&api, &uri, &key, Some(&session), &echo).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer.last().unwrap()["result"]["content"][0]["text"], "Echo: hi", "{answer:?}");

    let env = rpc(3, "tools/call", json!({ "name": "get-env", "arguments": {} }));
    let (status, _, refused) = call(&api, &uri, &key, Some(&session), &env).await;
    assert_eq!(status, StatusCode::OK, "a JSON-RPC error, not an HTTP one");
    assert_eq!(refused[0]["id"], 3);
    assert_eq!(refused[0]["error"]["code"], -32001, "{refused:?}");
    assert!(refused[0]["error"]["message"].as_str().unwrap().contains("get-env"), "{refused:?}");
    let resource = format!("server:{id}:tool:get-env");
    tests::eventually(DEADLINE, "the refused call in the audit trail", || async {
        let page = api.call(Method::GET, "/api/v1/audit?action=access.denied", None, &[]).await;
        page.body["entries"].as_array()?.iter().any(|e| e.to_string().contains(&resource)).then_some(())
    })
    .await;
    api.gateway.stop();
}

async fn a_session_is_served_only_to_its_principal_at_its_server(backend: Backend) {
    let upstream = tests::EverythingServer::shared().unwrap().url();
    let (api, _, uri) = gateway_with_server(backend, &upstream).await;
    let owner = api.key.clone();
    let session = session(&api, &uri, &owner).await;
    // Another principal who may use the server.
    let user = json!({ "display_name": "ci", "kind": "service" }).to_string();
    let other = api.call(Method::POST, "/api/v1/users", Some(&user), &[]).await;
    let principal = other.body["id"].as_str().unwrap().to_owned();
    let grant = json!({ "role": "developer", "reason": "test" }).to_string();
    api.call(Method::POST, &format!("/api/v1/users/{principal}/roles"), Some(&grant), &[]).await;
    let key = api.call(Method::POST, &format!("/api/v1/users/{principal}/api-keys"), Some("{}"), &[]).await;
    let key = key.body["key"].as_str().unwrap().to_owned();
    let ping = rpc(1, "ping", json!({}));
    tests::eventually(DEADLINE, "the other principal admitted to a session of their own", || async {
        (call(&api, &uri, &key, None, &initialize()).await.0 == StatusCode::OK).then_some(())
    })
    .await;

    let (status, _, answer) = call(&api, &uri, &key, Some(&session), &ping).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another principal's session: {answer:?}");
    assert_eq!(answer[0]["jsonrpc"], "2.0");
    let (status, _, _) = call(&api, &uri, &owner, Some("k1.forged.AAAA"), &ping).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a forged session id");
    // The same id at another server of the same upstream is not a session there.
    let body =
        json!({ "name": "io.example/twin", "description": "d", "transport": "streamable_http", "url": upstream });
    let twin = api.call(Method::POST, "/api/v1/servers", Some(&body.to_string()), &[]).await;
    let twin = format!("/servers/{}/mcp", twin.body["id"].as_str().unwrap());
    let (status, _, _) = tests::eventually(DEADLINE, "the twin server known", || async {
        let answer = call(&api, &twin, &owner, Some(&session), &ping).await;
        (answer.0 != StatusCode::NOT_FOUND || answer.2[0]["error"]["message"].as_str()?.contains("session"))
            .then_some(answer)
    })
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Its own principal still has it; ending it ends it upstream.
    assert_eq!(call(&api, &uri, &owner, Some(&session), &ping).await.2[0]["result"], json!({}));
    let end = Request::delete(&uri)
        .header(header::AUTHORIZATION, format!("Bearer {owner}"))
        .header("mcp-session-id", &session)
        .body(Body::empty())
        .unwrap();
    assert_eq!(api.router.clone().oneshot(end).await.unwrap().status(), StatusCode::OK);
    let (status, _, _) = call(&api, &uri, &owner, Some(&session), &ping).await;
    assert!(status.is_client_error(), "the upstream no longer knows the session: {status}");
    api.gateway.stop();
}

/// A long-running tool call with progress: its SSE answer, as a stream of body chunks.
async fn long_call(api: &Api, uri: &str, session: &str, seconds: u64, steps: u64) -> axum::body::BodyDataStream {
    let body = rpc(
        7,
        "tools/call",
        json!({ "name": "trigger-long-running-operation",
        "arguments": { "duration": seconds, "steps": steps }, "_meta": { "progressToken": "p1" } }),
    );
    let response = api.router.clone().oneshot(request(uri, &api.key, Some(session), &body)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let kind = response.headers()[header::CONTENT_TYPE].to_str().unwrap().to_owned();
    assert!(kind.starts_with("text/event-stream"), "{kind}");
    response.into_body().into_data_stream()
}

/// The next chunk of `stream`, within the deadline.
async fn next_chunk(stream: &mut axum::body::BodyDataStream) -> Option<String> {
    let chunk = tokio::time::timeout(DEADLINE, stream.next()).await.expect("the stream to move or end");
    chunk.map(|c| String::from_utf8_lossy(&c.unwrap()).into_owned())
}

async fn an_sse_answer_is_relayed_as_it_is_produced(backend: Backend) {
    let upstream = tests::EverythingServer::shared().unwrap().url();
    let (api, _, uri) = gateway_with_server(backend, &upstream).await;
    let session = session(&api, &uri, &api.key).await;
    let mut stream = long_call(&api, &uri, &session, 2, 4).await;
    // The first progress notification arrives while the call still runs: nothing waits for the end.
    let first = next_chunk(&mut stream).await.unwrap();
    assert!(first.contains("notifications/progress") && !first.contains("completed"), "{first}");
    let mut rest = first;
    while let Some(chunk) = next_chunk(&mut stream).await {
        rest.push_str(&chunk);
    }
    let answers = messages(&rest);
    assert_eq!(answers.iter().filter(|m| m["method"] == "notifications/progress").count(), 4, "{rest}");
    assert!(answers.last().unwrap()["result"]["content"][0]["text"].as_str().unwrap().contains("completed"));
    api.gateway.stop();
}

async fn an_upstream_that_dies_mid_answer_gives_a_json_rpc_error_not_a_hang(backend: Backend) {
    let upstream = tests::EverythingServer::start().unwrap();
    let (api, _, uri) = gateway_with_server(backend, &upstream.url()).await;
    let session = session(&api, &uri, &api.key).await;
    let mut stream = long_call(&api, &uri, &session, 20, 20).await;
    let first = next_chunk(&mut stream).await.unwrap();
    assert!(first.contains("notifications/progress"), "{first}");
    upstream.kill().unwrap();
    let mut rest = String::new();
    while let Some(chunk) = next_chunk(&mut stream).await {
        rest.push_str(&chunk);
    }
    let last = messages(&rest).pop().unwrap_or_else(|| panic!("an error event: {rest:?}"));
    assert_eq!(last["id"], 7, "{rest}");
    assert_eq!(last["error"]["code"], -32603, "{rest}");
    // The next request: 502 in JSON-RPC, at once.
    let started = std::time::Instant::now();
    let (status, _, answer) = call(&api, &uri, &api.key, Some(&session), &rpc(8, "ping", json!({}))).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{answer:?}");
    assert_eq!(answer[0]["id"], 8);
    assert!(started.elapsed() < Duration::from_secs(10));
    api.gateway.stop();
}

on_every_backend!(
    tools_the_rules_hide_are_neither_listed_nor_called_and_a_refusal_is_audited,
    a_session_is_served_only_to_its_principal_at_its_server,
    an_sse_answer_is_relayed_as_it_is_produced,
    an_upstream_that_dies_mid_answer_gives_a_json_rpc_error_not_a_hang,
);
