//! The authorization server MCP clients discover and register with (step 8), on every backend:
//! metadata (C11–C16, C47), registration (C19–C25, A03, A04, A35), each refusal on the wire, and the
//! registrations in the audit trail with no secret in any event.

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::api_servers::{Api, Reply, start_with};
use crate::conformance::{Backend, on_every_backend};
use crate::support::DEADLINE;

const ISSUER: &str = "https://gw.example.com";

async fn gateway(backend: Backend) -> Api {
    start_with(backend, |config| config.public_url = Some(format!("{ISSUER}/"))).await
}

/// A request without credentials from `ip`, with `headers`.
async fn send(
    api: &Api,
    method: Method,
    uri: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
    ip: [u8; 4],
) -> Reply {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut request = request.body(body.map(|b| Body::from(b.to_owned())).unwrap_or_else(Body::empty)).unwrap();
    request.extensions_mut().insert(ConnectInfo(std::net::SocketAddr::from((ip, 40_000))));
    let response = api.router.clone().oneshot(request).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    let raw = String::from_utf8_lossy(&bytes).into_owned();
    Reply { status, headers, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null), raw }
}

async fn get(api: &Api, uri: &str, headers: &[(&str, &str)]) -> Reply {
    send(api, Method::GET, uri, None, headers, [198, 51, 100, 1]).await
}

async fn register(api: &Api, metadata: Value, ip: [u8; 4]) -> Reply {
    let json = [("content-type", "application/json")];
    send(api, Method::POST, "/register", Some(&metadata.to_string()), &json, ip).await
}

fn assert_oauth_error(reply: &Reply, status: StatusCode, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.raw);
    assert_eq!(reply.body["error"], code, "{}", reply.raw);
    assert!(reply.body["error_description"].as_str().is_some_and(|d| !d.is_empty()), "{}", reply.raw);
    assert_eq!(reply.headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
}

async fn clients_discover_the_gateway_from_configuration_never_from_the_request(backend: Backend) {
    let api = gateway(backend).await;
    // C14, C16, C47: the metadata, its issuer the configured URL without a trailing slash, whatever the
    // request says its host is.
    let spoofed = [("host", "evil.example"), ("x-forwarded-host", "evil.example"), ("x-forwarded-proto", "http")];
    let metadata = get(&api, "/.well-known/oauth-authorization-server", &spoofed).await;
    assert_eq!(metadata.status, StatusCode::OK, "{}", metadata.raw);
    assert_eq!(metadata.headers[header::CONTENT_TYPE], "application/json");
    assert!(metadata.headers[header::CACHE_CONTROL].to_str().unwrap().contains("max-age"));
    let m = &metadata.body;
    assert_eq!(m["issuer"], ISSUER);
    for (field, path) in [
        ("authorization_endpoint", "/authorize"),
        ("token_endpoint", "/token"),
        ("registration_endpoint", "/register"),
        ("revocation_endpoint", "/revoke"),
    ] {
        assert_eq!(m[field], format!("{ISSUER}{path}"), "{field}");
    }
    assert_eq!(m["response_types_supported"], json!(["code"]));
    assert_eq!(m["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(m["grant_types_supported"], json!(["authorization_code", "refresh_token"]));
    assert!(m["token_endpoint_auth_methods_supported"].as_array().unwrap().contains(&json!("none")));
    assert_eq!(m["authorization_response_iss_parameter_supported"], true);
    assert_eq!(m["client_id_metadata_document_supported"], true);
    assert!(!metadata.raw.contains("evil.example"));
    // C17: no OpenID configuration (the gateway issues no ID tokens), rather than an incomplete one.
    assert_eq!(get(&api, "/.well-known/openid-configuration", &[]).await.status, StatusCode::NOT_FOUND);

    // C11, C15: each server is its own resource, named by the same issuer.
    let created = api
        .call(
            Method::POST,
            "/api/v1/servers",
            Some(&json!({ "name": "io.example/gh", "title": "GitHub", "description": "d", "transport": "streamable_http",
                           "url": "https://93.184.216.34/mcp" }).to_string()),
            &[],
        )
        .await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let uri = format!("/.well-known/oauth-protected-resource/servers/{id}/mcp");
    let resource = tests::eventually(DEADLINE, "the server's resource metadata", || async {
        let reply = get(&api, &uri, &spoofed).await;
        (reply.status == StatusCode::OK).then_some(reply)
    })
    .await;
    assert_eq!(resource.body["resource"], format!("{ISSUER}/servers/{id}/mcp"));
    assert_eq!(resource.body["authorization_servers"], json!([ISSUER]));
    assert_eq!(resource.body["authorization_servers"][0], m["issuer"], "byte-identical issuer");
    assert_eq!(resource.body["bearer_methods_supported"], json!(["header"]));
    assert_eq!(resource.body["scopes_supported"], json!(["mcp:tools"]));
    assert_eq!(resource.body["resource_name"], "GitHub");
    // C12: the umbrella resource; and an unknown server is no resource.
    let umbrella = get(&api, "/.well-known/oauth-protected-resource", &[]).await;
    assert_eq!(umbrella.body["resource"], ISSUER);
    let unknown =
        get(&api, &format!("/.well-known/oauth-protected-resource/servers/{}/mcp", uuid::Uuid::now_v7()), &[]).await;
    assert_oauth_error(&unknown, StatusCode::NOT_FOUND, "invalid_target");
    // Clients that take the server's URL for the issuer find the same metadata.
    let suffixed = get(&api, &format!("/.well-known/oauth-authorization-server/servers/{id}/mcp"), &[]).await;
    assert_eq!(suffixed.body, metadata.body);

    // C11, C13: browser clients read the documents across origins.
    let origin = [("origin", "http://localhost:6274")];
    assert_eq!(get(&api, &uri, &origin).await.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    let preflight = send(
        &api,
        Method::OPTIONS,
        "/register",
        None,
        &[
            ("origin", "http://localhost:6274"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "content-type"),
        ],
        [198, 51, 100, 1],
    )
    .await;
    assert!(preflight.status.is_success(), "{}", preflight.status);
    assert_eq!(preflight.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    api.gateway.stop();
}

async fn clients_register_themselves_and_bad_registrations_are_refused_with_the_rfc_7591_code(backend: Backend) {
    let api = gateway(backend).await;
    let ip = [198, 51, 100, 2];
    // C19, C20, C24: what the SDK clients send; a public client gets no secret, its odd scope is kept.
    let sdk = json!({
        "redirect_uris": ["http://127.0.0.1:33418/callback"], "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
        "client_name": "MCP Inspector", "scope": "claudeai", "unknown_metadata": "ignored",
    });
    let public = register(&api, sdk, ip).await;
    assert_eq!(public.status, StatusCode::CREATED, "{}", public.raw);
    assert_eq!(public.headers[header::CACHE_CONTROL], "no-store");
    let client_id = public.body["client_id"].as_str().unwrap().to_owned();
    assert!(public.body["client_id_issued_at"].is_i64());
    assert_eq!(public.body["redirect_uris"], json!(["http://127.0.0.1:33418/callback"]));
    assert_eq!(public.body["token_endpoint_auth_method"], "none");
    assert_eq!(public.body["scope"], "claudeai");
    assert!(public.body.get("client_secret").is_none(), "a public client has no secret");
    assert!(public.body.get("unknown_metadata").is_none(), "metadata the server does not use is ignored");
    // A confidential client gets its secret once; the event holds only its digest.
    let confidential = register(
        &api,
        json!({ "redirect_uris": ["https://app.example.com/cb"], "token_endpoint_auth_method": "client_secret_basic",
                "application_type": "web", "client_name": "Web App" }),
        ip,
    )
    .await;
    assert_eq!(confidential.status, StatusCode::CREATED, "{}", confidential.raw);
    let secret = confidential.body["client_secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("mgwcs_") && secret.len() > 40);
    assert_eq!(confidential.body["client_secret_expires_at"], 0);
    let stream = eventstore::StreamName::parse(format!("client-{}", confidential.body["client_id"].as_str().unwrap()));
    let events = api
        .gateway
        .state
        .store
        .read_stream(&stream.unwrap(), eventstore::Direction::Forwards, eventstore::StreamCursor::Start, 10)
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert!(!events[0].data.contains(&secret), "the secret is in no event");
    assert!(events[0].data.contains("secret_sha256"));

    // C20–C23, A03, A04, A35: each refusal with its code, nothing written.
    let before = api.event_count("client-%").await;
    for (metadata, code) in [
        (json!({ "redirect_uris": ["https://a.example/cb#x"] }), "invalid_redirect_uri"),
        (json!({ "redirect_uris": ["http://localhost@evil.com/cb"] }), "invalid_redirect_uri"),
        (json!({ "redirect_uris": ["http://evil.com/cb"] }), "invalid_redirect_uri"),
        (json!({ "redirect_uris": ["javascript:alert(1)"] }), "invalid_redirect_uri"),
        (json!({ "redirect_uris": ["https://app.example/*"] }), "invalid_redirect_uri"),
        (json!({ "redirect_uris": ["http://127.0.0.1/cb"], "application_type": "web" }), "invalid_redirect_uri"),
        (json!({ "redirect_uris": ["https://a.example/cb"], "grant_types": ["implicit"] }), "invalid_client_metadata"),
        (json!({ "redirect_uris": ["https://a.example/cb"], "grant_types": ["password"] }), "invalid_client_metadata"),
        (json!({ "redirect_uris": ["https://a.example/cb"], "response_types": ["token"] }), "invalid_client_metadata"),
        (
            json!({ "redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "private_key_jwt" }),
            "invalid_client_metadata",
        ),
        (json!({ "redirect_uris": [] }), "invalid_client_metadata"),
        (
            json!({ "redirect_uris": (0..11).map(|n| format!("https://a.example/{n}")).collect::<Vec<_>>() }),
            "invalid_client_metadata",
        ),
        (json!({ "client_name": "no redirect" }), "invalid_client_metadata"),
        (json!(["not", "an", "object"]), "invalid_client_metadata"),
    ] {
        let refused = register(&api, metadata.clone(), ip).await;
        assert_oauth_error(&refused, StatusCode::BAD_REQUEST, code);
    }
    let untyped = send(&api, Method::POST, "/register", Some("{}"), &[("content-type", "text/plain")], ip).await;
    assert_oauth_error(&untyped, StatusCode::BAD_REQUEST, "invalid_client_metadata");
    let huge = json!({ "redirect_uris": ["https://a.example/cb"], "client_name": "x".repeat(20_000) });
    assert_oauth_error(&register(&api, huge, ip).await, StatusCode::PAYLOAD_TOO_LARGE, "invalid_client_metadata");
    let many: Vec<String> = (0..1_000).map(|n| format!("https://a.example/{n}")).collect();
    let many = register(&api, json!({ "redirect_uris": many }), ip).await;
    assert_oauth_error(&many, StatusCode::PAYLOAD_TOO_LARGE, "invalid_client_metadata");
    assert_eq!(api.event_count("client-%").await, before, "a refused registration writes nothing");

    // C25: a flood from one address is slowed down; another address is not.
    let minimal = json!({ "redirect_uris": ["http://127.0.0.1/callback"] });
    let flood = [203, 0, 113, 9];
    let mut statuses = Vec::new();
    for _ in 0..31 {
        statuses.push(register(&api, minimal.clone(), flood).await.status);
    }
    assert!(statuses[..30].iter().all(|s| *s == StatusCode::CREATED), "{statuses:?}");
    let slowed = register(&api, minimal.clone(), flood).await;
    assert_oauth_error(&slowed, StatusCode::TOO_MANY_REQUESTS, "slow_down");
    let retry_after: u64 = slowed.headers[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After: {retry_after}");
    assert_eq!(register(&api, minimal, [203, 0, 113, 10]).await.status, StatusCode::CREATED);
    // Client ids that are URLs the gateway has not seen (metadata documents to fetch) count against the
    // same bound: past it, a page and no fetch.
    let document = |n: usize| {
        format!("/authorize?response_type=code&client_id=https%3A%2F%2F10.0.0.{n}%2Fclient.json&redirect_uri=x")
    };
    let mut pages = Vec::new();
    for n in 0..31 {
        pages.push(send(&api, Method::GET, &document(n), None, &[], [203, 0, 113, 11]).await.status);
    }
    assert!(pages[..30].iter().all(|s| *s == StatusCode::BAD_REQUEST), "{pages:?}");
    assert_eq!(pages[30], StatusCode::TOO_MANY_REQUESTS);

    // Every registration is in the audit trail, with who registered from where, and no secret.
    let uri = format!("/api/v1/audit?action=client.registered&target_id={client_id}");
    let entry = tests::eventually(DEADLINE, "the registration in the audit trail", || async {
        let page = api.call(Method::GET, &uri, None, &[]).await;
        page.body["entries"].as_array().and_then(|e| e.first().cloned())
    })
    .await;
    assert_eq!(entry["target_name"], "MCP Inspector");
    assert_eq!(entry["source_ip"], "198.51.100.2");
    assert_eq!(entry["changes"]["token_endpoint_auth_method"], "none");
    let trail = api.call(Method::GET, "/api/v1/audit?action=client.", None, &[]).await;
    assert!(!trail.raw.contains(&secret), "no secret in the trail");
    api.gateway.stop();
}

on_every_backend!(
    clients_discover_the_gateway_from_configuration_never_from_the_request,
    clients_register_themselves_and_bad_registrations_are_refused_with_the_rfc_7591_code,
);
