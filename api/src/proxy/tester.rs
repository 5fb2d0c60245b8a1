//! The connection tester: what a person adding a server wants to know before clients find out. It goes
//! the way a client's request goes (the same client, SSRF guard, credentials and timeouts as the proxy),
//! and reports each layer apart: the server could be reached, it speaks MCP (`initialize`, then
//! `tools/list`), and it accepted the gateway's credentials.

use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, Method, header};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Forward, SESSION_HEADER, UpstreamError};
use crate::state::AppState;

/// The whole test, every request included.
const TEST_TIMEOUT: Duration = Duration::from_secs(15);
/// The largest answer read.
const MAX_ANSWER: usize = 1024 * 1024;
/// The protocol version the tester asks for.
const PROTOCOL_VERSION: &str = "2025-06-18";

/// What a test found.
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct TestReport {
    /// A connection was made and the server answered HTTP.
    pub reachable: bool,
    /// It answered `initialize` as an MCP server.
    pub protocol_valid: bool,
    /// It accepted the gateway's credentials (`null` when the server needs none).
    pub credentials_valid: Option<bool>,
    /// The HTTP status of its answer to `initialize`.
    pub upstream_status: Option<u16>,
    /// The protocol version it chose.
    pub protocol_version: Option<String>,
    /// Its `serverInfo`.
    #[schema(value_type = Option<Object>)]
    pub server_info: Option<Value>,
    /// The tools it lists.
    pub tools: Vec<String>,
    /// The tools it lists with their descriptions, as the registry keeps them (`None` when it listed none).
    #[serde(skip)]
    pub(crate) discovered: Option<domain::server::DiscoveredTools>,
    /// What went wrong, when something did.
    pub error: Option<String>,
    /// How long the test took, in milliseconds.
    pub elapsed_ms: f64,
}

/// The JSON-RPC message answering request `id` in a JSON or SSE body.
fn answer_to(body: &[u8], id: u64) -> Option<Value> {
    let text = String::from_utf8_lossy(body);
    let candidates: Vec<Value> = match serde_json::from_str::<Value>(&text) {
        Ok(one) => vec![one],
        Err(_) => text
            .lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .filter_map(|data| serde_json::from_str(data.trim_start()).ok())
            .collect(),
    };
    candidates.into_iter().find(|m| m.get("id") == Some(&json!(id)))
}

fn headers(session: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::ACCEPT, HeaderValue::from_static("application/json, text/event-stream"));
    headers.insert("mcp-protocol-version", HeaderValue::from_static(PROTOCOL_VERSION));
    if let Some(session) = session.and_then(|s| HeaderValue::from_str(s).ok()) {
        headers.insert(SESSION_HEADER, session);
    }
    headers
}

/// One message to server `id`: the answer's status, session id and body.
async fn exchange(
    state: &AppState,
    id: Uuid,
    principal: Option<Uuid>,
    upstream: &projections::authz::Upstream,
    method: Method,
    session: Option<&str>,
    message: Option<Value>,
) -> Result<Exchanged, UpstreamError> {
    let headers = headers(session);
    let forward = Forward {
        server: id,
        upstream,
        method,
        headers: &headers,
        session: session.map(str::to_owned),
        principal,
        body: message.map(|m| axum::body::Bytes::from(m.to_string())),
    };
    let answer = state.proxy.send(state, forward).await?;
    let status = answer.status().as_u16();
    let header = |name| answer.headers().get(name).and_then(|v: &HeaderValue| v.to_str().ok()).map(str::to_owned);
    let (session, challenge) = (header(SESSION_HEADER), header(header::WWW_AUTHENTICATE));
    let body = super::stream::read_whole(answer, MAX_ANSWER).await?;
    Ok(Exchanged { status, session, challenge, body })
}

/// An answer of the server.
struct Exchanged {
    status: u16,
    session: Option<String>,
    challenge: Option<String>,
    body: axum::body::Bytes,
}

/// [`run`] for a server that speaks HTTP+SSE: the way the proxy bridges it (a stream opened, messages
/// posted where it says, answers read from the stream), the stream closed after.
async fn run_sse(
    state: &AppState,
    id: Uuid,
    principal: Option<Uuid>,
    upstream: &projections::authz::Upstream,
    needs_credentials: bool,
    initialize: Value,
    report: &mut TestReport,
) {
    let sessions = &state.proxy.sse;
    let (key, session) = match sessions.open(&state.proxy, state, id, principal.unwrap_or_default(), upstream).await {
        Ok(opened) => opened,
        Err(error) => return report.not_reached(error),
    };
    report.reachable = true;
    report.credentials_valid = needs_credentials.then_some(true);
    let headers = headers(None);
    let ask = |message: Value, ids: Vec<Value>| {
        let (headers, session) = (&headers, &session);
        async move { session.exchange(&state.proxy, state, headers, message.to_string().into(), &ids).await }
    };
    let answers = match ask(initialize, vec![json!(1)]).await {
        Ok(answers) => answers,
        Err(error) => {
            sessions.close(&key);
            report.error = Some(format!("initialize: {error}"));
            return;
        }
    };
    let result = answers.first().and_then(|a| a.get("result")).cloned().unwrap_or_default();
    report.protocol_version = result.get("protocolVersion").and_then(Value::as_str).map(str::to_owned);
    report.server_info = result.get("serverInfo").cloned();
    let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    let listed = match ask(initialized, vec![]).await {
        Ok(_) => ask(json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {} }), vec![json!(2)]).await,
        Err(error) => Err(error),
    };
    sessions.close(&key);
    match listed.ok().and_then(|answers| answers.first()?.get("result")?.get("tools")?.as_array().cloned()) {
        Some(tools) if report.protocol_version.is_some() => {
            report.protocol_valid = true;
            report.tools = tools.iter().filter_map(|t| t.get("name")?.as_str().map(str::to_owned)).collect();
            report.discovered = Some(domain::server::DiscoveredTools::from_listed(
                tools
                    .iter()
                    .filter_map(|t| Some((t.get("name")?.as_str()?, t.get("description").and_then(Value::as_str)))),
            ));
        }
        _ => report.error = Some("the server did not answer initialize and tools/list as an MCP server".into()),
    }
}

impl TestReport {
    /// The first request did not get through: the credentials' fault, or the connection's.
    fn not_reached(&mut self, error: UpstreamError) {
        match error {
            UpstreamError::ConnectRequired => {
                self.credentials_valid = Some(false);
                self.error = Some("you have not connected your account at this server".into());
            }
            UpstreamError::Credentials(why) => {
                self.credentials_valid = Some(false);
                self.error = Some(format!("the gateway's credentials: {why}"));
            }
            error => self.error = Some(error.to_string()),
        }
    }

    /// The server's health as the registry records it: a credential the server needs and did not accept
    /// (or that could not be obtained) fails its check.
    pub(crate) fn health(&self) -> domain::server::ServerHealth {
        let credentials_valid = self.credentials_valid != Some(false);
        let reachable = self.reachable || self.credentials_valid == Some(false);
        domain::server::ServerHealth::new(reachable, self.protocol_valid, credentials_valid, self.error.as_deref())
    }
}

/// Tests server `id` at `upstream`, on behalf of `principal` (whose own token a server acting on
/// people's accounts gets; without one, such a server's 401 with a Bearer challenge is the answer the
/// protocol asks of it).
pub(crate) async fn test(
    state: &AppState,
    id: Uuid,
    principal: Option<Uuid>,
    upstream: &projections::authz::Upstream,
) -> TestReport {
    let started = Instant::now();
    let mut report = TestReport::default();
    let needs_credentials = upstream.auth != domain::server::UpstreamAuth::None;
    let test = run(state, id, principal, upstream, needs_credentials, &mut report);
    if tokio::time::timeout(TEST_TIMEOUT, test).await.is_err() {
        report.error = Some(format!("the test did not finish within {} s", TEST_TIMEOUT.as_secs()));
    }
    report.elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    report
}

async fn run(
    state: &AppState,
    id: Uuid,
    principal: Option<Uuid>,
    upstream: &projections::authz::Upstream,
    needs_credentials: bool,
    report: &mut TestReport,
) {
    let initialize = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": PROTOCOL_VERSION, "capabilities": {},
        "clientInfo": { "name": "mcp-gateway connection test", "version": env!("CARGO_PKG_VERSION") } } });
    if upstream.transport == domain::server::Transport::Sse {
        return run_sse(state, id, principal, upstream, needs_credentials, initialize, report).await;
    }
    let per_person = matches!(upstream.auth, domain::server::UpstreamAuth::OauthPerPerson { .. });
    let answered = exchange(state, id, principal, upstream, Method::POST, None, Some(initialize)).await;
    let Exchanged { status, session, challenge, body } = match answered {
        Ok(answer) => answer,
        Err(error) => return report.not_reached(error),
    };
    report.reachable = true;
    report.upstream_status = Some(status);
    if per_person && principal.is_none() && status == 401 {
        // Checked on no one's behalf: a Bearer challenge is what an MCP server owes a request without a
        // token; each person's token is tested when they test the connection.
        report.protocol_valid = challenge.as_deref().is_some_and(|c| c.to_ascii_lowercase().starts_with("bearer"));
        if !report.protocol_valid {
            report.error = Some("the server answered 401 without a Bearer challenge".into());
        }
        return;
    }
    if matches!(status, 401 | 403) {
        report.credentials_valid = Some(false);
        report.error = Some(format!("the server refused the gateway's credentials ({status})"));
        return;
    }
    report.credentials_valid = needs_credentials.then_some(true);
    let Some(result) = answer_to(&body, 1).and_then(|m| m.get("result").cloned()) else {
        report.error = Some(format!("the server did not answer initialize as an MCP server (HTTP {status})"));
        return;
    };
    report.protocol_version = result.get("protocolVersion").and_then(Value::as_str).map(str::to_owned);
    report.server_info = result.get("serverInfo").cloned();
    report.protocol_valid = report.protocol_version.is_some();
    if !report.protocol_valid {
        report.error = Some("the server's initialize answer names no protocol version".into());
        return;
    }
    let session = session.as_deref();
    let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    let list = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {} });
    let listed = async {
        exchange(state, id, principal, upstream, Method::POST, session, Some(initialized)).await?;
        exchange(state, id, principal, upstream, Method::POST, session, Some(list)).await
    };
    match listed.await {
        Ok(Exchanged { body, .. }) => {
            match answer_to(&body, 2).and_then(|m| m.get("result")?.get("tools")?.as_array().cloned()) {
                Some(tools) => {
                    report.tools = tools.iter().filter_map(|t| t.get("name")?.as_str().map(str::to_owned)).collect();
                    report.discovered =
                        Some(domain::server::DiscoveredTools::from_listed(tools.iter().filter_map(|t| {
                            Some((t.get("name")?.as_str()?, t.get("description").and_then(Value::as_str)))
                        })));
                }
                None => {
                    report.protocol_valid = false;
                    report.error = Some("the server did not answer tools/list".into());
                }
            }
        }
        Err(error) => {
            report.protocol_valid = false;
            report.error = Some(format!("tools/list: {error}"));
        }
    }
    if session.is_some() {
        // The test's session is not left open at the server.
        let _ = exchange(state, id, principal, upstream, Method::DELETE, session, None).await;
    }
}
