//! The MCP proxy (step 9) in front of a real MCP server, the official `server-everything`, on every
//! backend: the server's tool rules on `tools/list` and `tools/call` (a refusal answered in JSON-RPC and
//! audited), sessions bound to their principal and server and served by any instance, SSE answers
//! streamed as they are produced, the GET stream resumed with `Last-Event-ID`, an upstream that dies
//! mid-answer, and what reaches the upstream (an SDK-built server that echoes the headers it received).

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
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
pub(crate) async fn call(
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

pub(crate) fn rpc(id: u64, method: &str, params: Value) -> Value {
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
pub(crate) async fn gateway_with_server(backend: Backend, upstream: &str) -> (Api, String, String) {
    gateway_with(backend, json!({ "url": upstream })).await
}

/// [`gateway_with_server`], the server registered with `server`'s fields as well.
async fn gateway_with(backend: Backend, server: Value) -> (Api, String, String) {
    let api = start_with(backend, |config| config.upstream_allowlist = vec!["127.0.0.1".into()]).await;
    let mut body = json!({ "name": "io.example/everything", "description": "d", "transport": "streamable_http",
                           "access": { "roles": ["developer"], "tools": { "deny": ["get-env"] } } });
    for (field, value) in server.as_object().unwrap() {
        body[field] = value.clone();
    }
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
pub(crate) async fn session(api: &Api, uri: &str, key: &str) -> String {
    let (status, session, answer) = call(api, uri, key, None, &initialize()).await;
    assert_eq!(status, StatusCode::OK, "{answer:?}");
    let session = session.expect("a session id");
    let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    assert_eq!(call(api, uri, key, Some(&session), &initialized).await.0, StatusCode::ACCEPTED);
    session
}

async fn tools_the_rules_hide_are_neither_listed_nor_called_and_a_refusal_is_audited(backend: Backend) {
    let upstream = tests::McpServer::shared_everything().unwrap().url();
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

    // A name that could not be recorded (a control character) is refused before anything runs.
    let garbled = rpc(9, "tools/call", json!({ "name": "echo\u{1b}[2J", "arguments": {} }));
    let (status, _, refused) = call(&api, &uri, &key, Some(&session), &garbled).await;
    assert_eq!((status, refused[0]["error"]["code"].as_i64()), (StatusCode::BAD_REQUEST, Some(-32602)), "{refused:?}");
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
    // The forwarded call is recorded once, with how it ended; the refused one is not a call.
    let calls = tests::eventually(DEADLINE, "the call in the audit trail", || async {
        let page = api.call(Method::GET, "/api/v1/audit?action=tool.called", None, &[]).await;
        page.body["entries"].as_array().filter(|e| !e.is_empty()).cloned()
    })
    .await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    let entry = calls[0].to_string();
    assert!(entry.contains(&format!("server:{id}:tool:echo")) && entry.contains("answered"), "{entry}");
    assert!(entry.contains("hmac-sha256:") && !entry.contains("\"hi\""), "arguments hashed, never kept: {entry}");
    api.gateway.stop();
}

async fn every_call_of_a_burst_is_in_the_audit_trail_exactly_once(backend: Backend) {
    let upstream = tests::McpServer::shared_everything().unwrap().url();
    let (api, _, uri) = gateway_with_server(backend, &upstream).await;
    let session = session(&api, &uri, &api.key).await;
    let burst = futures_util::future::join_all((0..40u64).map(|n| {
        let (api, uri, session) = (&api, &uri, &session);
        async move {
            let echo = rpc(n + 1, "tools/call", json!({ "name": "echo", "arguments": { "message": n.to_string() } }));
            call(api, uri, &api.key, Some(session), &echo).await.0
        }
    }))
    .await;
    assert!(burst.iter().all(|status| *status == StatusCode::OK), "{burst:?}");
    // What a stopping gateway waits for: every call recorded in the store.
    assert!(api.gateway.drain_recorded_calls(DEADLINE).await, "the records appended");
    // In the caller's stream at once ($all readers may see them a moment later: they stop before any
    // transaction still running).
    let rest = api.call(Method::POST, "/api/v1/tokens", Some("{}"), &[]).await;
    let token = rest.body["access_token"].as_str().unwrap().to_owned();
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap();
    let principal: uuid::Uuid = claims["sub"].as_str().unwrap().parse().unwrap();
    let stream = eventstore::StreamName::from_parts("access", principal).unwrap();
    let recorded = api.events_of(&stream).await;
    assert_eq!(recorded.iter().filter(|e| e.event_type == "ToolCalled").count(), 40, "in the log, at once");
    let entries = tests::eventually(DEADLINE, "forty calls in the audit trail", || async {
        let page = api.call(Method::GET, "/api/v1/audit?action=tool.called&limit=100", None, &[]).await;
        page.body["entries"].as_array().filter(|e| e.len() >= 40).cloned()
    })
    .await;
    assert_eq!(entries.len(), 40);
    let mut ids: Vec<String> = entries.iter().map(|e| e["changes"]["call_id"].to_string()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 40, "each call once: {entries:?}");
    api.gateway.stop();
}

async fn a_session_is_served_only_to_its_principal_at_its_server(backend: Backend) {
    let upstream = tests::McpServer::shared_everything().unwrap().url();
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

/// A 30-second tool call with progress.
fn long_request() -> Value {
    rpc(
        7,
        "tools/call",
        json!({ "name": "trigger-long-running-operation",
        "arguments": { "duration": 30, "steps": 30 }, "_meta": { "progressToken": "p1" } }),
    )
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
    let upstream = tests::McpServer::shared_everything().unwrap().url();
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
    let upstream = tests::McpServer::everything().unwrap();
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

async fn the_upstream_sees_the_gateways_credential_and_never_the_clients(backend: Backend) {
    let upstream = tests::McpServer::header_echo().unwrap();
    let auth = json!({ "mode": "bearer", "token": "upstream-secret" });
    let (api, _, uri) = gateway_with(backend, json!({ "url": upstream.url(), "upstream_auth": auth })).await;
    let key = api.key.clone();
    let mut first = request(&uri, &key, None, &initialize());
    first.headers_mut().insert(header::COOKIE, "mgw_session=the-clients-cookie".parse().unwrap());
    first.headers_mut().insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
    first.headers_mut().insert("mcp-protocol-version", "2025-06-18".parse().unwrap());
    let answer = api.router.clone().oneshot(first).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let seen = rpc(1, "tools/call", json!({ "name": "seen-headers", "arguments": {} }));
    let (status, _, answer) = call(&api, &uri, &key, None, &seen).await;
    assert_eq!(status, StatusCode::OK, "{answer:?}");
    let text = answer[0]["result"]["content"][0]["text"].as_str().unwrap().to_owned();
    let requests: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(requests.len(), 2, "{text}");
    assert!(!text.contains(&key), "the client's key reached the upstream: {text}");
    assert!(!text.contains("the-clients-cookie") && !text.contains("203.0.113.9"), "{text}");
    for headers in &requests {
        assert_eq!(headers["authorization"], "Bearer upstream-secret", "{headers}");
        assert!(headers.get("cookie").is_none() && headers.get("x-forwarded-for").is_none(), "{headers}");
    }
    assert_eq!(requests[0]["mcp-protocol-version"], "2025-06-18", "the transport's own headers are forwarded");
    api.gateway.stop();
}

/// Two gateways on one database: a client's session is served by either, request by request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateway_instances_serve_one_session_alternately() {
    let upstream = tests::McpServer::shared_everything().unwrap().url();
    let (first, _, uri) = gateway_with_server(Backend::Postgres, &upstream).await;
    let mut config = crate::api_servers::config(&first.db.as_ref().unwrap().url, None);
    config.upstream_allowlist = vec!["127.0.0.1".into()];
    let second = crate::api_servers::another_instance(&first, config).await;
    let key = first.key.clone();
    let session = session(&first, &uri, &key).await;
    for (n, instance) in [&second, &first, &second, &first].into_iter().enumerate() {
        let echo =
            rpc(n as u64 + 1, "tools/call", json!({ "name": "echo", "arguments": { "message": n.to_string() } }));
        let (status, _, answer) = tests::eventually(DEADLINE, "each instance to know the server", || async {
            let answer = call(instance, &uri, &key, Some(&session), &echo).await;
            (answer.0 == StatusCode::OK).then_some(answer)
        })
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer.last().unwrap()["result"]["content"][0]["text"], format!("Echo: {n}"), "{answer:?}");
    }
    second.gateway.stop();
    first.gateway.stop();
}

/// The session's GET stream with `Last-Event-ID` when given.
async fn get_stream(api: &Api, uri: &str, session: &str, last_event: Option<&str>) -> axum::body::BodyDataStream {
    let mut get = Request::get(uri)
        .header(header::ACCEPT, "text/event-stream")
        .header(header::AUTHORIZATION, format!("Bearer {}", api.key))
        .header("mcp-session-id", session);
    if let Some(last) = last_event {
        get = get.header("last-event-id", last);
    }
    let response = api.router.clone().oneshot(get.body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.into_body().into_data_stream()
}

/// The next whole event of a stream that carries a JSON-RPC message: its id and message.
async fn next_event(stream: &mut axum::body::BodyDataStream, buffer: &mut String) -> (String, Value) {
    loop {
        if let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let id = event.lines().find_map(|l| l.strip_prefix("id: ")).unwrap_or_default().to_owned();
            if let Some(message) = messages(&event).pop() {
                return (id, message);
            }
            continue;
        }
        let chunk = next_chunk(stream).await.expect("the stream to go on");
        buffer.push_str(&chunk.replace("\r\n", "\n"));
    }
}

async fn the_servers_own_messages_arrive_on_the_get_stream_and_resume_after_the_last_event(backend: Backend) {
    let upstream = tests::McpServer::everything().unwrap();
    let (api, _, uri) = gateway_with_server(backend, &upstream.url()).await;
    let session = session(&api, &uri, &api.key).await;
    let mut stream = get_stream(&api, &uri, &session, None).await;
    // Simulated logging: a message at once, then one every five seconds, each on the GET stream.
    let toggle = rpc(1, "tools/call", json!({ "name": "toggle-simulated-logging", "arguments": {} }));
    assert_eq!(call(&api, &uri, &api.key, Some(&session), &toggle).await.0, StatusCode::OK);
    let mut buffer = String::new();
    let (first_id, first) = next_event(&mut stream, &mut buffer).await;
    assert_eq!(first["method"], "notifications/message", "{first}");
    assert!(!first_id.is_empty(), "resumable events carry ids");
    drop(stream);
    // Back with the last event seen: what the server stored after it is replayed, never that event again
    // (server-everything's store replays every stream of the session: the tool's result comes first; it
    // then files the resumed stream under an event id, so its later messages are not sent on it).
    let mut resumed = get_stream(&api, &uri, &session, Some(&first_id)).await;
    let mut buffer = String::new();
    let (replayed_id, replayed) = next_event(&mut resumed, &mut buffer).await;
    assert_ne!(replayed_id, first_id);
    assert_eq!(replayed["id"], 1, "the replay of what was stored after the last event seen: {replayed}");
    drop(resumed);
    assert_eq!(call(&api, &uri, &api.key, Some(&session), &toggle).await.0, StatusCode::OK, "logging off again");
    api.gateway.stop();
}

async fn the_connection_test_reports_reachability_protocol_and_credentials_apart(backend: Backend) {
    let everything = tests::McpServer::shared_everything().unwrap().url();
    let (api, id, _) = gateway_with_server(backend, &everything).await;
    let tested = api.call(Method::POST, &format!("/api/v1/servers/{id}/test"), None, &[]).await;
    assert_eq!(tested.status, StatusCode::OK, "{}", tested.raw);
    let report = &tested.body;
    assert_eq!(
        (report["reachable"].as_bool(), report["protocol_valid"].as_bool()),
        (Some(true), Some(true)),
        "{report}"
    );
    assert!(report["credentials_valid"].is_null(), "no credentials to check: {report}");
    assert_eq!(report["protocol_version"], "2025-06-18");
    assert!(report["tools"].as_array().unwrap().iter().any(|t| t == "echo"), "{report}");

    // A server with a bearer credential: accepted.
    let echo = tests::McpServer::header_echo().unwrap();
    let body = json!({ "name": "io.example/echo", "description": "d", "transport": "streamable_http",
                       "url": echo.url(), "upstream_auth": { "mode": "bearer", "token": "t" } });
    let created = api.call(Method::POST, "/api/v1/servers", Some(&body.to_string()), &[]).await;
    let with_key = created.body["id"].as_str().unwrap().to_owned();
    let report = tests::eventually(DEADLINE, "the server known to the model", || async {
        let tested = api.call(Method::POST, &format!("/api/v1/servers/{with_key}/test"), None, &[]).await;
        (tested.status == StatusCode::OK).then_some(tested.body)
    })
    .await;
    assert_eq!(report["credentials_valid"], true, "{report}");
    assert_eq!(report["tools"], json!(["seen-headers"]), "{report}");

    // Nothing listening: not reachable, said so, at once.
    let port = tests::free_port().unwrap();
    let body = json!({ "name": "io.example/gone", "description": "d", "transport": "streamable_http",
                       "url": format!("http://127.0.0.1:{port}/mcp") });
    let created = api.call(Method::POST, "/api/v1/servers", Some(&body.to_string()), &[]).await;
    let gone = created.body["id"].as_str().unwrap().to_owned();
    let report = tests::eventually(DEADLINE, "the server known to the model", || async {
        let tested = api.call(Method::POST, &format!("/api/v1/servers/{gone}/test"), None, &[]).await;
        (tested.status == StatusCode::OK).then_some(tested.body)
    })
    .await;
    assert_eq!(
        (report["reachable"].as_bool(), report["protocol_valid"].as_bool()),
        (Some(false), Some(false)),
        "{report}"
    );
    assert!(report["error"].as_str().is_some_and(|e| e.contains("could not be reached")), "{report}");
    // Unknown servers are 404.
    let missing = api.call(Method::POST, &format!("/api/v1/servers/{}/test", uuid::Uuid::now_v7()), None, &[]).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.raw);
    api.gateway.stop();
}

async fn rules_for_a_role_narrow_what_its_holders_see_and_call(backend: Backend) {
    let upstream = tests::McpServer::shared_everything().unwrap().url();
    let tools = json!({ "deny": ["get-env"], "by_role": { "developer": { "allow": ["echo", "get-sum"] } } });
    let access = json!({ "roles": ["developer"], "tools": tools });
    let (api, id, uri) = gateway_with(backend, json!({ "url": upstream, "access": access })).await;
    let (key, principal) = api.developer().await;
    tests::eventually(DEADLINE, "the developer admitted", || async {
        (call(&api, &uri, &key, None, &initialize()).await.0 == StatusCode::OK).then_some(())
    })
    .await;
    let names = |listed: &[Value]| -> Vec<String> {
        listed[0]["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let theirs = session(&api, &uri, &key).await;
    let (_, _, listed) = call(&api, &uri, &key, Some(&theirs), &rpc(1, "tools/list", json!({}))).await;
    let mut seen = names(&listed);
    seen.sort();
    assert_eq!(seen, ["echo", "get-sum"], "the developer's rules");
    let tiny = rpc(2, "tools/call", json!({ "name": "get-tiny-image", "arguments": {} }));
    let (_, _, refused) = call(&api, &uri, &key, Some(&theirs), &tiny).await;
    assert_eq!(refused[0]["error"]["code"], -32001, "{refused:?}");
    // The owner holds no role with rules of its own: everything but the denied tool.
    let owner = session(&api, &uri, &api.key).await;
    let (_, _, listed) = call(&api, &uri, &api.key, Some(&owner), &rpc(3, "tools/list", json!({}))).await;
    let seen = names(&listed);
    assert!(seen.len() >= 10 && seen.contains(&"get-tiny-image".to_owned()) && !seen.contains(&"get-env".to_owned()));

    // Rules of the developer's own, by their command: in place of the role's, under everyone's.
    let rules = json!({ "deny": ["get-env"], "by_role": { "developer": { "allow": ["echo", "get-sum"] } },
                        "by_principal": { principal.to_uppercase(): { "allow": ["get-tiny-image", "get-env"] } } });
    let path = format!("/api/v1/servers/{id}/tool-rules");
    let changed = api.call(Method::PUT, &path, Some(&rules.to_string()), &[]).await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.raw);
    let bad = json!({ "by_principal": { "": {} } }).to_string();
    assert_eq!(api.call(Method::PUT, &path, Some(&bad), &[]).await.status, StatusCode::UNPROCESSABLE_ENTITY);
    let seen = tests::eventually(DEADLINE, "the developer's own rules in force", || async {
        let (_, _, listed) = call(&api, &uri, &key, Some(&theirs), &rpc(4, "tools/list", json!({}))).await;
        let seen = names(&listed);
        (seen != ["echo", "get-sum"]).then_some(seen)
    })
    .await;
    assert_eq!(seen, ["get-tiny-image"], "their own allow list; get-env stays denied to everyone");
    let (_, _, answered) = call(&api, &uri, &key, Some(&theirs), &tiny).await;
    assert!(answered[0]["result"].is_object(), "{answered:?}");
    let (_, _, refused) = call(&api, &uri, &key, Some(&theirs), &rpc(5, "tools/call", json!({ "name": "echo" }))).await;
    assert_eq!(refused[0]["error"]["code"], -32001, "{refused:?}");
    // The permissions answer per tool, as the proxy decides.
    let asked = api.call_as(&key, Method::GET, &format!("/api/v1/servers/{id}/permissions?tool=echo"), None, &[]).await;
    assert_eq!(asked.status, StatusCode::OK, "{}", asked.raw);
    assert_eq!(asked.body["tools"][0]["name"], "echo");
    assert_eq!(asked.body["tools"][0]["allow"], false, "{}", asked.raw);
    let asked = api
        .call_as(&key, Method::GET, &format!("/api/v1/servers/{id}/permissions?tool=get-tiny-image"), None, &[])
        .await;
    assert_eq!(asked.body["tools"][0]["allow"], true, "{}", asked.raw);
    assert!(asked.body["tools"][0]["reason"].as_str().unwrap().contains("principal"), "{}", asked.raw);
    let audited = tests::eventually(DEADLINE, "the change in the audit trail", || async {
        let page = api.call(Method::GET, "/api/v1/audit?action=server.tool_rules_changed", None, &[]).await;
        page.body["entries"].as_array().filter(|e| !e.is_empty()).cloned()
    })
    .await;
    assert_eq!(audited.len(), 1);
    api.gateway.stop();
}

async fn the_health_checker_records_transitions_and_the_tools_it_finds(backend: Backend) {
    let upstream = tests::McpServer::everything().unwrap();
    let (api, id) = {
        let api = start_with(backend, |config| {
            config.upstream_allowlist = vec!["127.0.0.1".into()];
            config.health_check_interval = Some(Duration::from_millis(200));
        })
        .await;
        let body = json!({ "name": "io.example/checked", "description": "d", "transport": "streamable_http",
                           "url": upstream.url(), "access": { "tools": { "deny": ["get-env"] } } });
        let created = api.call(Method::POST, "/api/v1/servers", Some(&body.to_string()), &[]).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.raw);
        (api, created.body["id"].as_str().unwrap().to_owned())
    };
    // The periodic check finds it healthy, with its tools, in the registry's read model.
    let entry = tests::eventually(DEADLINE, "the server checked", || async {
        let read = api.call(Method::GET, &format!("/api/v1/servers/{id}"), None, &[]).await;
        (read.body["health"]["reachable"] == true && read.body["tools"].is_array()).then_some(read.body)
    })
    .await;
    assert_eq!(entry["health"]["protocol_valid"], true, "{entry}");
    assert_eq!(entry["health"]["credentials_valid"], true, "{entry}");
    let tools = entry["tools"].as_array().unwrap();
    assert!(tools.iter().any(|t| t["name"] == "echo" && t["description"].is_string()), "{entry}");
    // Per tool, what the caller may call (the authorization model follows the log on its own: the tools
    // reach it a moment after they reach the registry).
    let decided = tests::eventually(DEADLINE, "the tools in the authorization model", || async {
        let permissions = api.call(Method::GET, &format!("/api/v1/servers/{id}/permissions"), None, &[]).await;
        let decided: Vec<(String, bool)> = permissions.body["tools"]
            .as_array()?
            .iter()
            .map(|t| (t["name"].as_str().unwrap().to_owned(), t["allow"].as_bool().unwrap()))
            .collect();
        (!decided.is_empty()).then_some(decided)
    })
    .await;
    assert_eq!(decided.len(), tools.len(), "{decided:?}");
    assert!(decided.contains(&("echo".into(), true)) && decided.contains(&("get-env".into(), false)), "{decided:?}");

    // Down: one transition recorded, however many checks see it down.
    upstream.kill().unwrap();
    let entry = tests::eventually(DEADLINE, "the server seen down", || async {
        let read = api.call(Method::GET, &format!("/api/v1/servers/{id}"), None, &[]).await;
        (read.body["health"]["reachable"] == false).then_some(read.body)
    })
    .await;
    assert!(entry["health"]["detail"].is_string(), "{entry}");
    let stream = eventstore::StreamName::from_parts("server", id.parse::<uuid::Uuid>().unwrap()).unwrap();
    let kinds = || async { api.events_of(&stream).await.into_iter().map(|e| e.event_type).collect::<Vec<_>>() };
    let before = kinds().await;
    api.gateway.check_servers_now().await;
    api.gateway.check_servers_now().await;
    let after = kinds().await;
    assert_eq!(before, after, "a check that finds what the last found records nothing");
    assert_eq!(after[..3], ["ServerRegistered", "ServerHealthChanged", "ServerToolsDiscovered"], "{after:?}");
    // Down, possibly through a check that caught the server dying mid-answer first.
    assert!(after.len() >= 4 && after[3..].iter().all(|k| k == "ServerHealthChanged"), "{after:?}");
    let audited = tests::eventually(DEADLINE, "the transitions in the audit trail", || async {
        let page = api.call(Method::GET, "/api/v1/audit?action=server.health_changed", None, &[]).await;
        page.body["entries"].as_array().filter(|e| e.len() == after.len() - 2).cloned()
    })
    .await;
    assert!(audited.iter().any(|e| e["reason"].is_string()), "the failure's detail: {audited:?}");
    api.gateway.stop();
}

async fn requests_in_flight_are_limited_per_principal_and_per_server(backend: Backend) {
    let upstream = tests::McpServer::shared_everything().unwrap().url();
    let api = start_with(backend, |config| {
        config.upstream_allowlist = vec!["127.0.0.1".into()];
        config.proxy_limits = api::ProxyLimits { per_principal: 2, per_server: 3 };
    })
    .await;
    let body = json!({ "name": "io.example/limited", "description": "d", "transport": "streamable_http",
                       "url": upstream, "access": { "roles": ["developer"] } });
    let created = api.call(Method::POST, "/api/v1/servers", Some(&body.to_string()), &[]).await;
    let uri = format!("/servers/{}/mcp", created.body["id"].as_str().unwrap());
    tests::eventually(DEADLINE, "the server known", || async {
        (call(&api, &uri, &api.key, None, &initialize()).await.0 == StatusCode::OK).then_some(())
    })
    .await;
    let owner = session(&api, &uri, &api.key).await;
    // Two answers streaming: the owner's two places.
    let first = long_call(&api, &uri, &owner, 30, 30).await;
    let _second = long_call(&api, &uri, &owner, 30, 30).await;
    let response = api.router.clone().oneshot(request(&uri, &api.key, Some(&owner), &rpc(1, "ping", json!({})))).await;
    let response = response.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    let answer: Value =
        serde_json::from_slice(&axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap()).unwrap();
    assert_eq!(answer["error"]["code"], -32001, "{answer}");
    // Another principal takes the server's third place; a fourth request finds the server full.
    let (key, _) = api.developer().await;
    let theirs = tests::eventually(DEADLINE, "the developer admitted", || async {
        let (status, session, _) = call(&api, &uri, &key, None, &initialize()).await;
        (status == StatusCode::OK).then_some(session).flatten()
    })
    .await;
    let held = api.router.clone().oneshot(request(&uri, &key, Some(&theirs), &long_request())).await.unwrap();
    assert_eq!(held.status(), StatusCode::OK);
    let (status, _, _) = call(&api, &uri, &key, Some(&theirs), &rpc(2, "ping", json!({}))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "the server's limit");
    // An answer that ends gives its place back.
    drop(first);
    drop(held);
    let (status, _, answer) = call(&api, &uri, &api.key, Some(&owner), &rpc(3, "ping", json!({}))).await;
    assert_eq!((status, &answer[0]["result"]), (StatusCode::OK, &json!({})), "{answer:?}");
    api.gateway.stop();
}

async fn a_server_speaking_http_and_sse_is_served_as_streamable_http(backend: Backend) {
    let upstream = tests::McpServer::everything_sse().unwrap();
    let (api, _, uri) = gateway_with(backend, json!({ "url": upstream.sse_url(), "transport": "sse" })).await;
    let key = api.key.clone();
    // Without a session, only initialize opens one.
    let (status, _, answer) = call(&api, &uri, &key, None, &rpc(1, "tools/list", json!({}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer:?}");
    assert!(answer[0]["error"]["message"].as_str().unwrap().contains("initialize"), "{answer:?}");
    // initialize opens the gateway's stream to the server; the session id names it.
    let (status, session, answer) = call(&api, &uri, &key, None, &initialize()).await;
    assert_eq!(status, StatusCode::OK, "{answer:?}");
    assert!(answer[0]["result"]["serverInfo"]["name"].is_string(), "{answer:?}");
    let session = session.expect("a session id");
    let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    assert_eq!(call(&api, &uri, &key, Some(&session), &initialized).await.0, StatusCode::ACCEPTED);
    // The rules apply as on any server.
    let (_, _, listed) = call(&api, &uri, &key, Some(&session), &rpc(1, "tools/list", json!({}))).await;
    let names: Vec<&str> =
        listed[0]["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"echo") && !names.contains(&"get-env"), "{names:?}");
    let echo = rpc(2, "tools/call", json!({ "name": "echo", "arguments": { "message": "over sse" } }));
    let (status, _, answer) = call(&api, &uri, &key, Some(&session), &echo).await;
    assert_eq!(status, StatusCode::OK);
    assert!(answer[0]["result"]["content"][0]["text"].as_str().unwrap().contains("over sse"), "{answer:?}");
    let env = rpc(3, "tools/call", json!({ "name": "get-env", "arguments": {} }));
    assert_eq!(call(&api, &uri, &key, Some(&session), &env).await.2[0]["error"]["code"], -32001);
    // Bodies up to 4 MiB are forwarded (arguments carry documents); larger ones are a JSON-RPC 413.
    let large = rpc(8, "tools/call", json!({ "name": "echo", "arguments": { "message": "x".repeat(512 * 1024) } }));
    let (status, _, answer) = call(&api, &uri, &key, Some(&session), &large).await;
    assert_eq!(status, StatusCode::OK, "{answer:?}");
    let too_large = rpc(9, "tools/call", json!({ "name": "echo", "arguments": { "message": "x".repeat(5 << 20) } }));
    let (status, _, answer) = call(&api, &uri, &key, Some(&session), &too_large).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer[0]["jsonrpc"], "2.0", "a JSON-RPC error: {answer:?}");
    // The server's own messages (progress of a call) reach the client's GET stream.
    let get = Request::get(&uri)
        .header(header::ACCEPT, "text/event-stream")
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .header("mcp-session-id", &session)
        .body(Body::empty())
        .unwrap();
    let response = api.router.clone().oneshot(get).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut stream = response.into_body().into_data_stream();
    let long = rpc(
        4,
        "tools/call",
        json!({ "name": "trigger-long-running-operation",
        "arguments": { "duration": 1, "steps": 2 }, "_meta": { "progressToken": "sse-progress" } }),
    );
    let (status, _, answer) = call(&api, &uri, &key, Some(&session), &long).await;
    assert_eq!(status, StatusCode::OK, "{answer:?}");
    assert!(answer[0]["result"]["content"][0]["text"].as_str().unwrap().contains("completed"), "{answer:?}");
    let first = next_chunk(&mut stream).await.unwrap();
    assert!(first.contains("notifications/progress") && first.contains("sse-progress"), "{first}");
    // Another principal's copy of the session is not a session.
    let (other, _) = api.developer().await;
    let (status, _, _) = call(&api, &uri, &other, Some(&session), &rpc(5, "ping", json!({}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Recorded, as every call.
    tests::eventually(DEADLINE, "the calls in the audit trail", || async {
        let page = api.call(Method::GET, "/api/v1/audit?action=tool.called", None, &[]).await;
        page.body["entries"].as_array().filter(|e| e.len() >= 2).map(|_| ())
    })
    .await;
    // Tested and checked the way the proxy bridges it: healthy, with its tools.
    let report = api
        .call(
            Method::POST,
            &format!("{}/test", uri.replace("/servers/", "/api/v1/servers/").trim_end_matches("/mcp")),
            None,
            &[],
        )
        .await;
    assert_eq!(report.body["protocol_valid"], true, "{}", report.raw);
    assert!(report.body["tools"].as_array().is_some_and(|t| t.iter().any(|t| t == "echo")), "{}", report.raw);
    api.gateway.check_servers_now().await;
    let id = uri.trim_start_matches("/servers/").trim_end_matches("/mcp").to_owned();
    tests::eventually(DEADLINE, "the server healthy in the registry", || async {
        let read = api.call(Method::GET, &format!("/api/v1/servers/{id}"), None, &[]).await;
        (read.body["health"]["protocol_valid"] == true && read.body["tools"].is_array()).then_some(())
    })
    .await;
    // The instance stopping ends the GET stream between two events, as it ends a streamable HTTP
    // server's: the client resumes at another instance.
    api.gateway.state.stopping.send_replace(true);
    while let Some(chunk) = next_chunk(&mut stream).await {
        assert!(chunk.ends_with("\n\n"), "whole events only: {chunk:?}");
    }
    // Ended: the stream to the server closes, and the id is no longer a session.
    let end = Request::delete(&uri)
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .header("mcp-session-id", &session)
        .body(Body::empty())
        .unwrap();
    assert_eq!(api.router.clone().oneshot(end).await.unwrap().status(), StatusCode::OK);
    assert_eq!(call(&api, &uri, &key, Some(&session), &rpc(6, "ping", json!({}))).await.0, StatusCode::NOT_FOUND);
    api.gateway.stop();
}

on_every_backend!(
    a_server_speaking_http_and_sse_is_served_as_streamable_http,
    requests_in_flight_are_limited_per_principal_and_per_server,
    the_health_checker_records_transitions_and_the_tools_it_finds,
    rules_for_a_role_narrow_what_its_holders_see_and_call,
    the_connection_test_reports_reachability_protocol_and_credentials_apart,
    every_call_of_a_burst_is_in_the_audit_trail_exactly_once,
    the_upstream_sees_the_gateways_credential_and_never_the_clients,
    the_servers_own_messages_arrive_on_the_get_stream_and_resume_after_the_last_event,
    tools_the_rules_hide_are_neither_listed_nor_called_and_a_refusal_is_audited,
    a_session_is_served_only_to_its_principal_at_its_server,
    an_sse_answer_is_relayed_as_it_is_produced,
    an_upstream_that_dies_mid_answer_gives_a_json_rpc_error_not_a_hang,
);
