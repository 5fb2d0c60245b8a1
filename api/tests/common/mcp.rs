//! MCP through a running gateway: JSON-RPC requests, and a registered server with a session open.

use serde_json::{Value, json};

use super::{DEADLINE, http};

/// A JSON-RPC request.
pub(crate) fn rpc(id: u64, method: &str, params: Value) -> String {
    json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }).to_string()
}

/// `request` as an MCP client sends it to the server's endpoint at the gateway, in `session` if given.
pub(crate) fn request(request: reqwest::RequestBuilder, key: &str, session: Option<&str>) -> reqwest::RequestBuilder {
    let request = request
        .bearer_auth(key)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18");
    match session {
        Some(session) => request.header("mcp-session-id", session),
        None => request,
    }
}

/// A POST of `body` to the server's MCP endpoint at the gateway.
pub(crate) fn post(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    session: Option<&str>,
    body: String,
) -> reqwest::RequestBuilder {
    request(client.post(url), key, session).header("content-type", "application/json").body(body)
}

/// Registers the streamable HTTP server at `upstream` with the gateway at `address` and opens a session
/// with it through the gateway: the server's MCP endpoint there, and the session id.
pub(crate) async fn registered_with_session(address: &str, key: &str, upstream: &str) -> (String, String) {
    let server = json!({ "name": "io.example/everything", "description": "d", "transport": "streamable_http",
                         "url": upstream });
    let (status, body) = http(address, "POST", "/api/v1/servers", Some(key), Some(&server.to_string())).await.unwrap();
    assert_eq!(status, 201, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"].as_str().unwrap().to_owned();
    let url = format!("http://{address}/servers/{id}/mcp");
    let client = reqwest::Client::new();
    let initialize = rpc(
        0,
        "initialize",
        json!({ "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "gateway-test", "version": "1" } }),
    );
    let session = tests::eventually(DEADLINE, "a session through the gateway", || async {
        let answer = post(&client, &url, key, None, initialize.clone()).send().await.ok()?;
        answer.status().is_success().then_some(())?;
        answer.headers().get("mcp-session-id")?.to_str().ok().map(str::to_owned)
    })
    .await;
    (url, session)
}
