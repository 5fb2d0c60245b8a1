//! The gateway's access tokens through the REST API: issued for an API key, verified on every request,
//! refused when forged in any of the usual ways, and dead with their key, their principal or their
//! signing key.

use axum::http::{Method, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use commands::tokens::AccessClaims;
use domain::Role;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::api_servers::{Api, another_instance, start, start_on};
use crate::conformance::{Backend, on_every_backend};

async fn token_for(api: &Api, key: &str, body: Value) -> String {
    let reply = api.call_as(key, Method::POST, "/api/v1/tokens", Some(&body.to_string()), &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.raw);
    assert_eq!(reply.headers.get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
    assert_eq!(reply.body["token_type"], json!("Bearer"));
    reply.body["access_token"].as_str().unwrap().to_owned()
}

async fn me(api: &Api, token: &str) -> StatusCode {
    api.call_as(token, Method::GET, "/api/v1/me", None, &[]).await.status
}

/// The claims of a token the gateway issued, decoded without checking anything.
fn claims_of(token: &str) -> AccessClaims {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn unsigned(header: Value, claims: &AccessClaims) -> String {
    let part = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.", part(&header), part(&serde_json::to_value(claims).unwrap()))
}

async fn an_api_key_buys_a_short_token_that_works_until_anything_behind_it_is_revoked(backend: Backend) {
    let api = start_on(backend).await;
    let token = token_for(&api, &api.key, json!({})).await;
    let reply = api.call_as(&token, Method::GET, "/api/v1/me", None, &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.raw);
    assert_eq!(reply.body["roles"], json!(["owner"]));
    let claims = claims_of(&token);
    assert_eq!(claims.sid, reply.body["key_id"].as_str().unwrap(), "the token names the key it was issued under");
    assert!(claims.exp - claims.iat <= 900);

    // The JWKS publishes the key that signed it
    let jwks = api.call(Method::GET, "/.well-known/jwks.json", None, &[]).await;
    let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
    assert!(jwks.body["keys"].as_array().unwrap().iter().any(|k| k["kid"] == json!(kid) && k["crv"] == "Ed25519"));

    // A token does not buy another token
    let chained = api.call_as(&token, Method::POST, "/api/v1/tokens", Some("{}"), &[]).await;
    assert_eq!(chained.status, StatusCode::FORBIDDEN, "{}", chained.raw);

    // A token does not buy an API key or a second factor either (a stolen token must not outlive itself)
    for (uri, body) in [("/api/v1/users/me/api-keys", "{}"), ("/api/v1/me/mfa/totp", "{}")] {
        let minted = api.call_as(&token, Method::POST, uri, Some(body), &[]).await;
        assert_eq!(minted.status, StatusCode::FORBIDDEN, "{uri}: {}", minted.raw);
    }

    // Scopes narrow: a token for reading cannot write, and cannot ask for more than its key has
    let reader = token_for(&api, &api.key, json!({ "scopes": ["servers.read"], "expires_in": 60 })).await;
    // A lifetime above the cap is refused, not silently cut
    let long = api.call(Method::POST, "/api/v1/tokens", Some(&json!({ "expires_in": 3_600 }).to_string()), &[]).await;
    assert_eq!(long.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", long.raw);
    assert_eq!(long.body["field"], "expires_in", "{}", long.raw);
    // A scope none of the caller's roles permits would mint a token that can do nothing: refused
    let (_, viewer) = api.principal_with("viewer-only", &[domain::Role::Viewer]).await;
    let useless = api
        .call_as(
            &viewer,
            Method::POST,
            "/api/v1/tokens",
            Some(&json!({ "scopes": ["servers.manage"] }).to_string()),
            &[],
        )
        .await;
    assert_eq!(useless.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", useless.raw);
    assert_eq!(useless.body["field"], "scopes", "{}", useless.raw);
    assert_eq!(api.call_as(&reader, Method::GET, "/api/v1/servers", None, &[]).await.status, StatusCode::OK);
    let write = api.call_as(&reader, Method::POST, "/api/v1/servers", Some("{}"), &[]).await;
    assert_eq!(write.status, StatusCode::FORBIDDEN, "{}", write.raw);

    // Revoking the key kills its tokens; so does disabling the principal
    api.step_up(&api.key).await;
    let (id, key) = api.principal_with("svc", &[Role::Viewer]).await;
    let token = token_for(&api, &key, json!({})).await;
    assert_eq!(me(&api, &token).await, StatusCode::OK);
    let disabled = api.call(Method::POST, &format!("/api/v1/users/{id}/disable"), Some(r#"{"reason":"r"}"#), &[]).await;
    assert_eq!(disabled.status, StatusCode::OK, "{}", disabled.raw);
    assert_eq!(me(&api, &token).await, StatusCode::UNAUTHORIZED);
    api.call(Method::POST, &format!("/api/v1/users/{id}/enable"), None, &[]).await;
    assert_eq!(me(&api, &token).await, StatusCode::OK);
    let key_id = claims_of(&token).sid;
    let revoked = api.call(Method::DELETE, &format!("/api/v1/users/{id}/api-keys/{key_id}?reason=r"), None, &[]).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.raw);
    assert_eq!(me(&api, &token).await, StatusCode::UNAUTHORIZED);
}

async fn forged_tokens_are_refused(backend: Backend) {
    let api = start_on(backend).await;
    let good = token_for(&api, &api.key, json!({})).await;
    let claims = claims_of(&good);
    let kid = jsonwebtoken::decode_header(&good).unwrap().kid.unwrap();
    let tokens = &api.gateway.state.tokens;
    let now = chrono::Utc::now().timestamp();
    let jwks = api.call(Method::GET, "/.well-known/jwks.json", None, &[]).await;
    let public_x = jwks.body["keys"][0]["x"].as_str().unwrap().to_owned();

    let mut forged: Vec<(&str, String)> = vec![
        ("alg none", unsigned(json!({ "alg": "none", "typ": "at+jwt", "kid": kid }), &claims)),
        ("garbage", "not.a.jwt".to_owned()),
        ("an opaque refresh token", "rt_3q2+7w0c8dZxQmVtYy1SZWZyZXNo".to_owned()),
    ];
    // HS256 keyed with the public key (the classic algorithm confusion)
    let mut hs = Header::new(Algorithm::HS256);
    hs.typ = Some("at+jwt".into());
    hs.kid = Some(kid.clone());
    for secret in [URL_SAFE_NO_PAD.decode(&public_x).unwrap(), public_x.as_bytes().to_vec()] {
        forged.push((
            "HS256 with the public key",
            jsonwebtoken::encode(&hs, &claims, &EncodingKey::from_secret(&secret)).unwrap(),
        ));
    }
    // A well-signed token from a key the gateway does not have
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let der = ed25519_dalek::pkcs8::EncodePrivateKey::to_pkcs8_der(&stranger).unwrap();
    let mut foreign = Header::new(Algorithm::EdDSA);
    foreign.typ = Some("at+jwt".into());
    foreign.kid = Some("not-ours".into());
    forged.push((
        "unknown kid",
        jsonwebtoken::encode(&foreign, &claims, &EncodingKey::from_ed_der(der.as_bytes())).unwrap(),
    ));
    foreign.kid = Some(kid.clone());
    forged.push((
        "our kid, another key",
        jsonwebtoken::encode(&foreign, &claims, &EncodingKey::from_ed_der(der.as_bytes())).unwrap(),
    ));
    // Signed with the gateway's own key, but with claims that must not pass
    let with = |f: &dyn Fn(&mut AccessClaims)| {
        let mut c = claims.clone();
        f(&mut c);
        tokens.sign(&c).unwrap().expose().to_owned()
    };
    forged.push(("foreign iss", with(&|c| c.iss = "https://evil.example".into())));
    forged.push(("wrong aud", with(&|c| c.aud = "https://mcp.example/mcp".into())));
    forged.push(("expired", with(&|c| (c.iat, c.nbf, c.exp) = (now - 3600, now - 3600, now - 1800))));
    forged.push(("not yet valid", with(&|c| c.nbf = now + 3600)));
    forged.push(("ten years to live", with(&|c| c.exp = now + 10 * 365 * 86_400)));
    forged.push(("issued in the future to stretch its life", with(&|c| (c.iat, c.exp) = (now + 86_400, now + 86_700))));
    forged.push(("another principal under this key", with(&|c| c.sub = uuid::Uuid::now_v7().to_string())));
    // An ID token's shape (`typ: JWT`), signed with the gateway's own key; and the same header swapped
    // onto a good token's signature, as a forger without the key would
    forged.push(("typ JWT (an ID token)", tokens.sign_as("JWT", &claims).unwrap().expose().to_owned()));
    forged.push(("no typ", tokens.sign_as("", &claims).unwrap().expose().to_owned()));
    forged.push(("typ swapped onto a good signature", retype(&good, "JWT")));

    for (what, token) in forged {
        let reply = api.call_as(&token, Method::GET, "/api/v1/me", None, &[]).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}: {}", reply.raw);
        assert_eq!(
            reply.headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/problem+json"),
            "{what}"
        );
    }
    // And the good one still works
    assert_eq!(me(&api, &good).await, StatusCode::OK);
}

/// `token` with its header's `typ` changed and its signature kept.
fn retype(token: &str, typ: &str) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    header["typ"] = json!(typ);
    format!("{}.{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), parts[1], parts[2])
}

async fn a_rotated_key_verifies_until_the_next_rotation_retires_it(backend: Backend) {
    let api = start_on(backend).await;
    let before = token_for(&api, &api.key, json!({})).await;
    let tokens = &api.gateway.state.tokens;
    let context =
        commands::servers::CommandContext { command_id: uuid::Uuid::now_v7(), metadata: crate::support::metadata() };
    tokens.rotate(&context).await.unwrap();
    let after = token_for(&api, &api.key, json!({})).await;
    let kid = |t: &str| jsonwebtoken::decode_header(t).unwrap().kid.unwrap();
    assert_ne!(kid(&before), kid(&after), "the new key signs");
    assert_eq!(me(&api, &before).await, StatusCode::OK, "the previous key still verifies");
    let published = api.call(Method::GET, "/.well-known/jwks.json", None, &[]).await;
    assert_eq!(published.body["keys"].as_array().unwrap().len(), 2);
    let context =
        commands::servers::CommandContext { command_id: uuid::Uuid::now_v7(), metadata: crate::support::metadata() };
    tokens.rotate(&context).await.unwrap();
    assert_eq!(me(&api, &before).await, StatusCode::UNAUTHORIZED, "two rotations retire it");
    assert_eq!(me(&api, &after).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_one_instance_is_enforced_on_another_within_milliseconds() {
    // Two gateways on one database, each with its own pools and its own NATS connection
    let nats = tests::NatsServer::start().unwrap();
    let first = start(Some(nats.url())).await;
    let url = first.db.as_ref().unwrap().url.clone();
    let second = another_instance(&first, crate::api_servers::config(&url, Some(nats.url()))).await;

    let mut times = Vec::new();
    for round in 0..5 {
        let issued = first
            .call(
                Method::POST,
                "/api/v1/users/me/api-keys",
                Some(&json!({ "name": format!("r{round}") }).to_string()),
                &[],
            )
            .await;
        let key = issued.body["key"].as_str().unwrap().to_owned();
        let key_id = issued.body["id"].as_str().unwrap().to_owned();
        let token = token_for(&first, &key, json!({})).await;
        tests::eventually(crate::support::DEADLINE, "the second instance to accept the token", || async {
            (me(&second, &token).await == StatusCode::OK).then_some(())
        })
        .await;
        // From the moment the revocation is asked on the first instance (its answer waits for its own
        // model; the second hears through NATS), checking the second as fast as it answers
        let at = std::time::Instant::now();
        let revoked =
            first.call(Method::DELETE, &format!("/api/v1/users/me/api-keys/{key_id}?reason=r"), None, &[]).await;
        assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.raw);
        while me(&second, &token).await != StatusCode::UNAUTHORIZED {
            assert!(at.elapsed() < crate::support::DEADLINE, "the second instance never refused the token");
            tokio::task::yield_now().await;
        }
        times.push(at.elapsed());
    }
    times.sort();
    eprintln!("revocation reached the second instance in {:?} (median {:?})", times, times[times.len() / 2]);
    assert!(times[times.len() / 2] < std::time::Duration::from_millis(500), "{times:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_refused_while_the_authorization_model_lags_and_ready_says_why() {
    use eventstore::{EventData, ExpectedRevision, StreamName};
    let first = start(None).await;
    let url = first.db.as_ref().unwrap().url.clone();
    let strict_config = api::GatewayConfig {
        authz_max_lag: std::time::Duration::from_millis(300),
        ..crate::api_servers::config(&url, None)
    };
    let strict = another_instance(&first, strict_config).await;
    tests::eventually(crate::support::DEADLINE, "the second gateway to serve", || async {
        (strict.call(Method::GET, "/api/v1/me", None, &[]).await.status == StatusCode::OK).then_some(())
    })
    .await;

    // An event the authorization model cannot apply halts it: it no longer follows the store
    let bogus = EventData {
        event_id: uuid::Uuid::now_v7(),
        event_type: "PrincipalTeleported".into(),
        schema_version: 1,
        data: "{}".into(),
        metadata: crate::support::metadata(),
    };
    let stream = StreamName::from_parts("principal", uuid::Uuid::now_v7()).unwrap();
    strict.gateway.state.store.append(&stream, ExpectedRevision::NoStream, vec![bogus]).await.unwrap();

    // Past the bound, every request is refused rather than decided on old facts, and /ready says why
    tests::eventually(crate::support::DEADLINE, "requests to be refused", || async {
        let reply = strict.call(Method::GET, "/api/v1/me", None, &[]).await;
        (reply.status == StatusCode::SERVICE_UNAVAILABLE).then_some(())
    })
    .await;
    // The lag watcher measured it: the model is behind the store's head by more than the bound
    let ready = tests::eventually(crate::support::DEADLINE, "the lag to be reported", || async {
        let ready = strict.call(Method::GET, "/ready", None, &[]).await;
        ready.body["checks"]["authz"]["detail"]["behind_ms"].as_u64().is_some_and(|ms| ms >= 300).then_some(ready)
    })
    .await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE, "{}", ready.raw);
    assert_eq!(ready.body["checks"]["projections"]["detail"]["authz"]["status"], json!("unavailable"), "{}", ready.raw);
    assert!(strict.gateway.state.authz_lag.exceeded().is_some());
}

on_every_backend!(
    an_api_key_buys_a_short_token_that_works_until_anything_behind_it_is_revoked,
    forged_tokens_are_refused,
    a_rotated_key_verifies_until_the_next_rotation_retires_it,
);
