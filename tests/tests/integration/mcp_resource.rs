//! Each server's MCP endpoint as an OAuth protected resource (step 8, C01–C08, C13, A20–A23, A28, A29),
//! on every backend: every refusal on the wire with its challenge, the audience bound to one server,
//! and an accepted caller's requests forwarded to the server (the official `server-everything`).

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::api_servers::{Api, Reply, start_with};
use crate::conformance::{Backend, on_every_backend};
use crate::support::DEADLINE;

const ISSUER: &str = "https://gw.example.com";

async fn post(api: &Api, uri: &str, body: &Value, headers: &[(&str, &str)]) -> Reply {
    let mut request = Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, text/event-stream");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = api.router.clone().oneshot(request.body(Body::from(body.to_string())).unwrap()).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    let raw = String::from_utf8_lossy(&bytes).into_owned();
    Reply { status, headers, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null), raw }
}

fn rpc(method: &str) -> Value {
    json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": { "protocolVersion": "2025-06-18",
            "capabilities": {}, "clientInfo": { "name": "test", "version": "1" } } })
}

/// The claims of a token, read without verifying it (the test's own token).
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn challenge(reply: &Reply) -> String {
    reply.headers.get(header::WWW_AUTHENTICATE).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

async fn register_server(api: &Api, name: &str) -> String {
    let upstream = tests::McpServer::shared_everything().unwrap().url();
    let body = json!({ "name": name, "description": "d", "transport": "streamable_http", "url": upstream });
    let created = api.call(Method::POST, "/api/v1/servers", Some(&body.to_string()), &[]).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.raw);
    created.body["id"].as_str().unwrap().to_owned()
}

/// The answer's JSON-RPC message: the body itself, or the data of its one SSE event.
fn message(reply: &Reply) -> Value {
    if reply.body != Value::Null {
        return reply.body.clone();
    }
    let data = reply.raw.lines().find_map(|line| line.strip_prefix("data: ")).unwrap_or_default();
    serde_json::from_str(data).unwrap_or(Value::Null)
}

async fn the_mcp_endpoint_admits_only_tokens_for_its_own_resource_with_the_scope(backend: Backend) {
    let api = start_with(backend, |config| {
        config.public_url = Some(ISSUER.into());
        config.upstream_allowlist = vec!["127.0.0.1".into()];
    })
    .await;
    let gh = register_server(&api, "io.example/gh").await;
    let jira = register_server(&api, "io.example/jira").await;
    let uri = format!("/servers/{gh}/mcp");
    let metadata = format!("{ISSUER}/.well-known/oauth-protected-resource/servers/{gh}/mcp");
    tests::eventually(DEADLINE, "the authorization model to know the servers", || async {
        let model = api.gateway.state.authz.read().ok()?;
        (model.server_access(gh.parse().ok()?).is_some() && model.server_access(jira.parse().ok()?).is_some())
            .then_some(())
    })
    .await;

    // C01, C02: no credential, the challenge names the metadata (absolute) and the scope; a JSON-RPC error.
    let anonymous = post(&api, &uri, &rpc("initialize"), &[]).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&anonymous), format!("Bearer resource_metadata=\"{metadata}\", scope=\"mcp:tools\""));
    assert_eq!(anonymous.body["jsonrpc"], "2.0");
    assert!(anonymous.body["error"]["code"].is_i64() && anonymous.body.get("result").is_none());

    // The owner's principal and key, from a REST token, to mint resource tokens as /token will.
    let rest = api.call(Method::POST, "/api/v1/tokens", Some("{}"), &[]).await;
    let rest_token = rest.body["access_token"].as_str().unwrap().to_owned();
    let owner = claims(&rest_token);
    let (sub, sid) = (owner["sub"].as_str().unwrap().parse().unwrap(), owner["sid"].as_str().unwrap().to_owned());
    let tokens = &api.gateway.state.tokens;
    let now = chrono::Utc::now();
    let mint = |resource: &str, scopes: &[&str]| {
        let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
        tokens.issue_for(resource, sub, &sid, &scopes, chrono::Duration::minutes(5), now).unwrap().expose().to_owned()
    };
    let good = mint(&format!("{ISSUER}/servers/{gh}/mcp"), &["mcp:tools"]);
    let bearer = |token: &str| format!("Bearer {token}");

    // C05: a malformed header is 400 invalid_request, never 500.
    for value in ["Bearer", "Bearer ", "Basic abc", &format!("Bearer {good} extra")] {
        let reply = post(&api, &uri, &rpc("ping"), &[("authorization", value)]).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{value:?}: {}", reply.raw);
        assert!(challenge(&reply).contains("error=\"invalid_request\""), "{value:?}");
    }
    // C06, A28: a token in the query is not a credential.
    let queried = post(&api, &format!("{uri}?access_token={good}"), &rpc("ping"), &[]).await;
    assert_eq!(queried.status, StatusCode::UNAUTHORIZED);
    assert!(!challenge(&queried).contains("error="), "as if none was sent");

    // C03, C07, C08, A20–A23: each refused with invalid_token and the metadata named.
    let mut forged = claims(&good);
    forged["iss"] = json!("https://evil.example");
    let foreign_issuer: commands::tokens::AccessClaims = serde_json::from_value(forged).unwrap();
    let mut expired: commands::tokens::AccessClaims = serde_json::from_value(claims(&good)).unwrap();
    (expired.iat, expired.nbf, expired.exp) = (now.timestamp() - 900, now.timestamp() - 900, now.timestamp() - 600);
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"at+jwt"}"#);
    let unsigned = format!("{header}.{}.", good.split('.').nth(1).unwrap());
    let cases = [
        ("a REST API token (another audience)", rest_token.clone()),
        ("a token for another server", mint(&format!("{ISSUER}/servers/{jira}/mcp"), &["mcp:tools"])),
        ("a foreign issuer", tokens.sign(&foreign_issuer).unwrap().expose().to_owned()),
        ("an expired token", tokens.sign(&expired).unwrap().expose().to_owned()),
        ("alg none", unsigned),
        (
            "an ID token's type",
            tokens.sign_as("JWT", &serde_json::from_value(claims(&good)).unwrap()).unwrap().expose().to_owned(),
        ),
        ("an opaque string (a refresh token, an upstream IdP's token)", "gAAAAABk-not-ours".to_owned()),
        ("an unknown API key", "mgw_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned()),
    ];
    for (what, token) in cases {
        let reply = post(&api, &uri, &rpc("ping"), &[("authorization", &bearer(&token))]).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}: {}", reply.raw);
        let challenge = challenge(&reply);
        assert!(challenge.starts_with(&format!("Bearer resource_metadata=\"{metadata}\"")), "{what}: {challenge}");
        assert!(challenge.contains("error=\"invalid_token\""), "{what}: {challenge}");
    }

    // C04: a token of this resource without the scope: 403 insufficient_scope, naming the scope.
    let unscoped = post(
        &api,
        &uri,
        &rpc("ping"),
        &[("authorization", &bearer(&mint(&format!("{ISSUER}/servers/{gh}/mcp"), &[])))],
    )
    .await;
    assert_eq!(unscoped.status, StatusCode::FORBIDDEN, "{}", unscoped.raw);
    assert!(
        challenge(&unscoped).contains("error=\"insufficient_scope\"")
            && challenge(&unscoped).contains("scope=\"mcp:tools\"")
    );

    // Accepted, and forwarded: initialize opens a session at the server, whose id comes back sealed.
    let auth = [("authorization", bearer(&good))];
    let auth: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let initialized = post(&api, &uri, &rpc("initialize"), &auth).await;
    assert_eq!(initialized.status, StatusCode::OK, "{}", initialized.raw);
    assert_eq!(message(&initialized)["result"]["protocolVersion"], "2025-06-18", "{}", initialized.raw);
    assert!(message(&initialized)["result"]["capabilities"]["tools"].is_object());
    let session = initialized.headers["mcp-session-id"].to_str().unwrap().to_owned();
    let in_session: Vec<(&str, &str)> = auth.iter().copied().chain([("mcp-session-id", session.as_str())]).collect();
    let notified =
        post(&api, &uri, &json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }), &in_session).await;
    assert_eq!(notified.status, StatusCode::ACCEPTED, "{}", notified.raw);
    assert_eq!(message(&post(&api, &uri, &rpc("ping"), &in_session).await)["result"], json!({}));
    let tools = message(&post(&api, &uri, &rpc("tools/list"), &in_session).await);
    assert!(tools["result"]["tools"].as_array().is_some_and(|t| t.iter().any(|t| t["name"] == "echo")), "{tools}");
    // C34: a token for the umbrella resource (a client that named none) is good at every server.
    let umbrella = mint(ISSUER, &["mcp:tools"]);
    let umbrella = post(&api, &uri, &rpc("initialize"), &[("authorization", &bearer(&umbrella))]).await;
    assert_eq!(umbrella.status, StatusCode::OK, "{}", umbrella.raw);
    // An API key is a credential here too (the REST API's rules).
    let keyed = post(&api, &uri, &rpc("initialize"), &[("authorization", &bearer(&api.key))]).await;
    assert_eq!(keyed.status, StatusCode::OK, "{}", keyed.raw);
    // C13: browser clients can read the challenge.
    let cross = post(&api, &uri, &rpc("ping"), &[("origin", "http://localhost:6274")]).await;
    let exposed = cross.headers[header::ACCESS_CONTROL_EXPOSE_HEADERS].to_str().unwrap().to_ascii_lowercase();
    assert!(exposed.contains("www-authenticate"), "{exposed}");

    // A29: the key the token was minted under is revoked: the token stops working.
    let key_id = sid.clone();
    let revoked =
        api.call(Method::DELETE, &format!("/api/v1/users/me/api-keys/{key_id}?reason=rotated"), None, &[]).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.raw);
    tests::eventually(DEADLINE, "the revoked key's token to be refused", || async {
        (post(&api, &uri, &rpc("ping"), &in_session).await.status == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;
    api.gateway.stop();
}

async fn a_caller_the_servers_policy_does_not_admit_is_refused_and_audited(backend: Backend) {
    let api = start_with(backend, |config| config.public_url = Some(ISSUER.into())).await;
    let body = json!({ "name": "io.example/private", "description": "d", "transport": "streamable_http",
                       "url": "https://93.184.216.34/mcp", "access": { "roles": ["admin"] } });
    let created = api.call(Method::POST, "/api/v1/servers", Some(&body.to_string()), &[]).await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    // A developer's key: it may use servers, but this server admits admins only.
    let viewer = api
        .call(Method::POST, "/api/v1/users", Some(&json!({ "display_name": "ci", "kind": "service" }).to_string()), &[])
        .await;
    let principal = viewer.body["id"].as_str().unwrap().to_owned();
    let grant = json!({ "role": "developer", "reason": "test" }).to_string();
    api.call(Method::POST, &format!("/api/v1/users/{principal}/roles"), Some(&grant), &[]).await;
    let key = api.call(Method::POST, &format!("/api/v1/users/{principal}/api-keys"), Some("{}"), &[]).await;
    let key = key.body["key"].as_str().unwrap_or_else(|| panic!("a key: {}", key.raw)).to_owned();
    let uri = format!("/servers/{id}/mcp");
    let refused = tests::eventually(DEADLINE, "the key and the server to be known", || async {
        let reply = post(&api, &uri, &rpc("ping"), &[("authorization", &format!("Bearer {key}"))]).await;
        (reply.status == StatusCode::FORBIDDEN).then_some(reply)
    })
    .await;
    assert_eq!(refused.body["jsonrpc"], "2.0");
    assert!(refused.body["error"]["message"].as_str().unwrap().contains("access policy"), "{}", refused.raw);
    let audit = format!("/api/v1/audit?action=access.denied&actor={principal}");
    tests::eventually(DEADLINE, "the refusal in the audit trail", || async {
        let page = api.call(Method::GET, &audit, None, &[]).await;
        page.body["entries"].as_array().filter(|e| !e.is_empty()).map(|_| ())
    })
    .await;
    // An unknown server is no resource.
    let missing = post(
        &api,
        &format!("/servers/{}/mcp", uuid::Uuid::now_v7()),
        &rpc("ping"),
        &[("authorization", &format!("Bearer {}", api.key))],
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    api.gateway.stop();
}

on_every_backend!(
    the_mcp_endpoint_admits_only_tokens_for_its_own_resource_with_the_scope,
    a_caller_the_servers_policy_does_not_admit_is_refused_and_audited,
);
