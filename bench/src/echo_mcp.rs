//! The upstream of `bench proxy`: a minimal streamable HTTP MCP server that answers `initialize` (with a
//! session id), notifications (202), `tools/list` (one tool) and `tools/call` of `echo` (the message back)
//! in JSON, as fast as the machine allows, so that what is measured is the gateway, not the upstream.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

static SESSIONS: AtomicU64 = AtomicU64::new(1);

async fn answer(body: Bytes) -> Response {
    let Ok(message) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let Some(id) = message.get("id").cloned() else { return StatusCode::ACCEPTED.into_response() };
    let result = match message["method"].as_str() {
        Some("initialize") => json!({ "protocolVersion": "2025-06-18", "capabilities": { "tools": {} },
                                       "serverInfo": { "name": "echo", "version": "1" } }),
        Some("tools/list") => json!({ "tools": [{ "name": "echo", "inputSchema": { "type": "object" } }] }),
        Some("tools/call") => {
            json!({ "content": [{ "type": "text", "text": message["params"]["arguments"]["message"].clone() }] })
        }
        _ => json!({}),
    };
    let mut response = axum::Json(json!({ "jsonrpc": "2.0", "id": id, "result": result })).into_response();
    if message["method"] == "initialize" {
        let session = format!("echo-{}", SESSIONS.fetch_add(1, Ordering::Relaxed));
        if let Ok(value) = HeaderValue::from_str(&session) {
            response.headers_mut().insert("mcp-session-id", value);
        }
    }
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Serves the echo server on a free loopback port; its MCP URL.
pub(crate) async fn start() -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/mcp", listener.local_addr()?);
    let app = Router::new().route("/mcp", post(answer));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}
