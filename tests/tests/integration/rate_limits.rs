//! Rate limits through a real socket, so that each request has the peer address a load balancer or a
//! client gives it: bursts per address and per principal answered 429 with `Retry-After` in each route
//! group's format, and `X-Forwarded-For` believed only from a configured proxy.

use std::net::{IpAddr, Ipv4Addr};

use axum::http::{Method, StatusCode};
use serde_json::Value;

use crate::api_servers::{Api, start_with};
use crate::conformance::{Backend, on_every_backend};
use crate::support::DEADLINE;

on_every_backend!(
    a_burst_from_one_address_is_held_and_a_spoofed_forwarded_for_does_not_move_it,
    a_principal_is_held_to_its_budget_from_every_address_and_each_group_answers_in_its_format,
);

/// The router on a loopback port, with peer addresses: its origin.
async fn serve(api: &Api) -> String {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let app = api.router.clone().into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    origin
}

/// A client whose requests come from `127.0.0.<host>` (every loopback address is this machine's).
fn from(host: u8) -> reqwest::Client {
    reqwest::Client::builder().local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, host))).build().unwrap()
}

struct Answer {
    status: StatusCode,
    retry_after: Option<u64>,
    content_type: String,
    body: Value,
}

async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let retry_after = header("retry-after").map(|v| v.parse().unwrap());
    let content_type = header("content-type").unwrap_or_default();
    let body = response.json().await.unwrap_or(Value::Null);
    Answer { status, retry_after, content_type, body }
}

fn assert_limited(answer: &Answer, content_type: &str) {
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS, "{}", answer.body);
    assert!(answer.retry_after.is_some_and(|s| (1..=60).contains(&s)), "Retry-After: {:?}", answer.retry_after);
    assert!(answer.content_type.starts_with(content_type), "{} for {}", answer.content_type, answer.body);
}

async fn a_burst_from_one_address_is_held_and_a_spoofed_forwarded_for_does_not_move_it(backend: Backend) {
    let api = start_with(backend, |config| {
        config.rate_limits = api::RateLimitConfig::off();
        config.rate_limits.set("rest.per_address=1/min burst 5").unwrap();
        config.rate_limits.trusted_proxies = api::client_ip::TrustedProxies::parse(&["127.0.0.2".into()]).unwrap();
    })
    .await;
    let origin = serve(&api).await;
    let servers = format!("{origin}/api/v1/servers");
    let list = |client: &reqwest::Client| client.get(&servers).bearer_auth(&api.key);
    let (direct, proxy) = (from(1), from(2));
    for n in 0..5 {
        assert_eq!(send(list(&direct)).await.status, StatusCode::OK, "request {n} of the burst");
    }
    let refused = send(list(&direct)).await;
    assert_limited(&refused, "application/problem+json");
    assert_eq!(refused.body["type"], "/problems/rate-limited");
    // The peer is not a trusted proxy: whoever it claims to forward for, its own bucket is empty.
    let spoofed = send(list(&direct).header("x-forwarded-for", "198.51.100.200")).await;
    assert_limited(&spoofed, "application/problem+json");
    // Another address has its own budget; health and readiness are never limited.
    assert_eq!(send(list(&from(3))).await.status, StatusCode::OK);
    assert_eq!(send(direct.get(format!("{origin}/health"))).await.status, StatusCode::OK);

    // Through the trusted proxy, each client it forwards for is a bucket of its own; the entries a
    // client wrote itself (left of the proxy's) count for nothing.
    let forwarded = |client: &str| list(&proxy).header("x-forwarded-for", client);
    for _ in 0..5 {
        assert_eq!(send(forwarded("127.0.0.1, 198.51.100.7")).await.status, StatusCode::OK);
    }
    assert_limited(&send(forwarded("198.51.100.7")).await, "application/problem+json");
    assert_eq!(send(forwarded("198.51.100.8")).await.status, StatusCode::OK);

    // What a forwarded client does is recorded with its address, not the proxy's.
    let created = send(
        proxy
            .post(&servers)
            .bearer_auth(&api.key)
            .header("x-forwarded-for", "198.51.100.9")
            .json(&crate::api_servers::server("limits")),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let entry = tests::eventually(DEADLINE, "the registration in the audit trail", || async {
        let page = api.call(Method::GET, &format!("/api/v1/audit?target_id={id}"), None, &[]).await;
        page.body["entries"].as_array().and_then(|e| e.first().cloned())
    })
    .await;
    assert_eq!(entry["source_ip"], "198.51.100.9");
    api.gateway.stop();
}

async fn a_principal_is_held_to_its_budget_from_every_address_and_each_group_answers_in_its_format(backend: Backend) {
    let api = start_with(backend, |config| {
        config.rate_limits = api::RateLimitConfig::off();
        for setting in
            ["rest.per_principal=1/min burst 10", "mcp.per_principal=1/min burst 2", "oauth.per_address=1/min burst 2"]
        {
            config.rate_limits.set(setting).unwrap();
        }
    })
    .await;
    let (developer, _) = api.developer().await;
    let (other, _) = api.developer().await;
    let origin = serve(&api).await;
    let me = format!("{origin}/api/v1/me");
    for n in 0..10 {
        // One principal, two addresses: one budget.
        let client = from(if n % 2 == 0 { 1 } else { 3 });
        assert_eq!(send(client.get(&me).bearer_auth(&developer)).await.status, StatusCode::OK, "request {n}");
    }
    assert_limited(&send(from(4).get(&me).bearer_auth(&developer)).await, "application/problem+json");
    assert_eq!(send(from(1).get(&me).bearer_auth(&other)).await.status, StatusCode::OK, "another principal");

    // MCP answers in JSON-RPC.
    let mcp = format!("{origin}/servers/{}/mcp", uuid::Uuid::now_v7());
    let ping = serde_json::json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" });
    let call =
        || from(1).post(&mcp).bearer_auth(&other).header("accept", "application/json, text/event-stream").json(&ping);
    for _ in 0..2 {
        assert_eq!(send(call()).await.status, StatusCode::NOT_FOUND, "no such server, but counted");
    }
    let limited = send(call()).await;
    assert_limited(&limited, "application/json");
    assert_eq!(limited.body["jsonrpc"], "2.0");
    assert!(limited.body["error"]["code"].is_i64(), "{}", limited.body);

    // The OAuth endpoints answer RFC 6749 error JSON.
    let token = || from(5).post(format!("{origin}/token")).form(&[("grant_type", "authorization_code")]);
    for _ in 0..2 {
        let refused = send(token()).await;
        assert!(
            refused.status.is_client_error() && refused.status != StatusCode::TOO_MANY_REQUESTS,
            "{}",
            refused.body
        );
    }
    let slowed = send(token()).await;
    assert_limited(&slowed, "application/json");
    assert_eq!(slowed.body["error"], "slow_down");
    api.gateway.stop();
}
