//! A server that acts on each person's own account (`oauth_per_person`), with the certified
//! `oidc-provider` as its authorization server and an SDK-built MCP server that accepts only tokens that
//! provider's userinfo endpoint accepts: a person without a connection is asked to connect (MCP's URL
//! elicitation, -32042); connects through the gateway's authorization-code flow (PKCE, bound to the
//! browser that started it); is then served with their own token, refreshed before it expires; others
//! are not; and disconnecting forgets the tokens.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::api_servers::{Api, start_with};
use crate::conformance::{Backend, on_every_backend};
use crate::support::DEADLINE;
use crate::upstream_idp::Browser;

const PUBLIC_URL: &str = "http://127.0.0.1:9";

fn rpc(id: u64, method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params })
}

/// One JSON-RPC exchange through the gateway as `key`: the HTTP status and the answer.
async fn mcp(api: &Api, uri: &str, key: &str, body: &Value) -> (StatusCode, Value) {
    let request = Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, text/event-stream")
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = api.router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// The `whoami` tool's answer through the gateway as `key`.
async fn whoami(api: &Api, uri: &str, key: &str) -> Value {
    mcp(api, uri, key, &rpc(2, "tools/call", json!({ "name": "whoami", "arguments": {} }))).await.1
}

/// A GET of the gateway as a browser would send it: the key, and `cookie` when given.
async fn browse(api: &Api, path: &str, key: Option<&str>, cookie: Option<&str>) -> axum::response::Response {
    let mut request = Request::get(path);
    if let Some(key) = key {
        request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    api.router.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap()
}

async fn a_person_connects_their_own_account_and_is_served_with_their_token(backend: Backend) {
    let api = start_with(backend, |config| {
        config.upstream_allowlist = vec!["127.0.0.1".into()];
        config.public_url = Some(PUBLIC_URL.into());
    })
    .await;
    // Registered first, to know its redirect URI (`/connect/callback/{id}`) before its authorization
    // server exists; the endpoints are set once it does.
    let placeholder = json!({ "mode": "oauth_per_person", "authorization_url": "https://93.184.216.34/auth",
        "token_url": "https://93.184.216.34/token", "client_id": "mcp-upstream", "scopes": ["openid"] });
    let body = json!({ "name": "io.example/personal", "description": "d", "transport": "streamable_http",
        "url": "https://93.184.216.34/mcp", "access": { "roles": ["developer"] }, "upstream_auth": placeholder });
    let created = api.call(Method::POST, "/api/v1/servers", Some(&body.to_string()), &[]).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.raw);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let callback = format!("{PUBLIC_URL}/connect/callback/{id}");
    let provider = tests::OidcProvider::start(
        &json!({
            "clients": [{ "client_id": "mcp-upstream", "client_secret": "upstream-secret", "redirect_uris": [callback] }],
            "users": { "ada": { "password": "pw", "sub": "sub-ada", "claims": { "name": "Ada" } } },
            "access_token_ttl": 8,
        })
        .to_string(),
    )
    .unwrap();
    let issuer = provider.issuer();
    let upstream = tests::McpServer::acting_for_people(&format!("{issuer}/me")).unwrap();
    let auth = json!({ "upstream_auth": { "mode": "oauth_per_person", "authorization_url": format!("{issuer}/auth"),
        "token_url": format!("{issuer}/token"), "client_id": "mcp-upstream", "client_secret": "upstream-secret",
        "scopes": ["openid", "offline_access"] } });
    let rotated =
        api.call(Method::POST, &format!("/api/v1/servers/{id}/rotate-credential"), Some(&auth.to_string()), &[]).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.raw);
    assert!(!rotated.raw.contains("upstream-secret"), "the client secret is never shown");
    let moved = json!({ "url": upstream.url() }).to_string();
    let current = api
        .call(
            Method::GET,
            &format!("/api/v1/servers/{id}?min_position={}", rotated.body["position"].as_str().unwrap()),
            None,
            &[],
        )
        .await;
    let etag = current.headers[axum::http::header::ETAG].to_str().unwrap().to_owned();
    let patched = api.call(Method::PATCH, &format!("/api/v1/servers/{id}"), Some(&moved), &[("if-match", &etag)]).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.raw);
    let uri = format!("/servers/{id}/mcp");

    // Not connected: asked to open the connect page (URL elicitation), as a JSON-RPC error.
    let initialize = rpc(
        1,
        "initialize",
        json!({ "protocolVersion": "2025-11-25", "capabilities": {},
                                                  "clientInfo": { "name": "t", "version": "1" } }),
    );
    let (status, asked) = tests::eventually(DEADLINE, "the server known", || async {
        let answer = mcp(&api, &uri, &api.key, &initialize).await;
        (answer.0 != StatusCode::NOT_FOUND).then_some(answer)
    })
    .await;
    assert_eq!(status, StatusCode::OK, "{asked}");
    assert_eq!(asked["error"]["code"], -32042, "{asked}");
    let connect = format!("{PUBLIC_URL}/api/v1/servers/{id}/connect");
    assert_eq!(asked["error"]["data"]["elicitations"][0]["url"], connect, "{asked}");
    assert_eq!(asked["error"]["data"]["elicitations"][0]["mode"], "url");

    // Connecting: to the authorization server, with PKCE and a browser-binding cookie.
    let started = browse(&api, &format!("/api/v1/servers/{id}/connect"), Some(&api.key), None).await;
    assert_eq!(started.status(), StatusCode::SEE_OTHER);
    let location = started.headers()[header::LOCATION].to_str().unwrap().to_owned();
    assert!(location.starts_with(&format!("{issuer}/auth?")) && location.contains("code_challenge_method=S256"));
    let binding = started.headers()[header::SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_owned();
    assert!(binding.starts_with("mgw_connect="), "{binding}");
    let back = Browser::new().login(&issuer, &location, "ada").await;
    let back = back.strip_prefix(PUBLIC_URL).expect("back to the gateway's callback").to_owned();
    assert!(back.starts_with(&format!("/connect/callback/{id}?")), "{back}");
    // The answer taken to another server's callback (a mix-up) is refused, and the code not spent.
    let elsewhere = back.replacen(&id, &uuid::Uuid::now_v7().to_string(), 1);
    assert_eq!(browse(&api, &elsewhere, None, Some(&binding)).await.status(), StatusCode::BAD_REQUEST);
    // Finished in another browser (without the cookie): refused, and the code not spent.
    let foreign = browse(&api, &back, None, None).await;
    assert_eq!(foreign.status(), StatusCode::BAD_REQUEST);
    let finished = browse(&api, &back, None, Some(&binding)).await;
    let status = finished.status();
    let page = String::from_utf8(axum::body::to_bytes(finished.into_body(), 1 << 16).await.unwrap().to_vec()).unwrap();
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("Connected"), "{page}");
    // (The same answer again would present a spent code: the authorization server would revoke what it
    // issued for it, as RFC 6749 §4.1.2 asks.)

    // Served with Ada's own token: the server knows her.
    let answer = whoami(&api, &uri, &api.key).await;
    assert_eq!(answer["result"]["content"][0]["text"], "sub-ada", "{answer}");
    // The tokens are sealed in the log, never in plaintext.
    let principal = api.call(Method::GET, "/api/v1/me", None, &[]).await.body["id"].as_str().unwrap().parse().unwrap();
    let connection = domain::connection::connection_id(principal, id.parse().unwrap());
    let stream = eventstore::StreamName::from_parts("connection", connection).unwrap();
    let events = api.events_of(&stream).await;
    assert_eq!(events[0].event_type, "AccountConnected");
    let data: Value = serde_json::from_str(&events[0].data).unwrap();
    assert!(data["tokens"]["access_token"]["ciphertext"].is_string(), "{data}");
    assert!(data["tokens"]["refresh_token"]["ciphertext"].is_string(), "a refresh token, sealed: {data}");

    // Its access token lives 8 seconds: refreshed before it expires, calls keep working meanwhile.
    tests::eventually(DEADLINE, "the token refreshed", || async {
        let answer = whoami(&api, &uri, &api.key).await;
        assert_eq!(answer["result"]["content"][0]["text"], "sub-ada", "{answer}");
        let events = api.events_of(&stream).await;
        events.iter().any(|e| e.event_type == "AccountTokensRefreshed").then_some(())
    })
    .await;

    // Someone else is not served with Ada's account.
    let (key, _) = api.developer().await;
    let theirs = tests::eventually(DEADLINE, "the developer admitted", || async {
        let answer = whoami(&api, &uri, &key).await;
        (answer["error"]["code"] != -32001 && answer["error"]["code"] != Value::Null).then_some(answer)
    })
    .await;
    assert_eq!(theirs["error"]["code"], -32042, "{theirs}");

    // Audited, without the tokens.
    let audited = tests::eventually(DEADLINE, "the connection in the audit trail", || async {
        let page = api.call(Method::GET, "/api/v1/audit?action=connection.", None, &[]).await;
        page.body["entries"].as_array().filter(|e| e.len() >= 2).cloned()
    })
    .await;
    assert!(audited.iter().any(|e| e["action"] == "connection.connected"), "{audited:?}");
    assert!(audited.iter().any(|e| e["action"] == "connection.refreshed"), "{audited:?}");
    assert!(!serde_json::to_string(&audited).unwrap().contains("ciphertext"));

    // Disconnected: the tokens are forgotten, and the next call asks to connect again.
    let gone = api.call(Method::DELETE, &format!("/api/v1/servers/{id}/connection"), None, &[]).await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT, "{}", gone.raw);
    assert_eq!(whoami(&api, &uri, &api.key).await["error"]["code"], -32042);
    let again = api.call(Method::DELETE, &format!("/api/v1/servers/{id}/connection"), None, &[]).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "nothing left to forget: {}", again.raw);
    // A server that does not act on people's accounts has nothing to connect.
    let plain = json!({ "name": "io.example/plain", "description": "d", "transport": "streamable_http",
                        "url": "https://93.184.216.34/mcp" });
    let plain = api.call(Method::POST, "/api/v1/servers", Some(&plain.to_string()), &[]).await;
    let plain = plain.body["id"].as_str().unwrap().to_owned();
    let refused = tests::eventually(DEADLINE, "the plain server known", || async {
        let answer = browse(&api, &format!("/api/v1/servers/{plain}/connect"), Some(&api.key), None).await;
        (answer.status() != StatusCode::NOT_FOUND).then_some(answer.status())
    })
    .await;
    assert_eq!(refused, StatusCode::CONFLICT);
    api.gateway.stop();
}

on_every_backend!(a_person_connects_their_own_account_and_is_served_with_their_token);
