//! Break-glass: the emergency owner credential works with every identity provider down, only while
//! enabled, and every presentation of the right secret is in the audit trail before it is answered.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::api_servers::{Api, start_with};
use crate::conformance::{Backend, on_every_backend};
use crate::support::DEADLINE;

on_every_backend!(
    the_break_glass_credential_acts_as_an_owner_with_the_idp_down_and_every_use_is_audited,
    the_break_glass_credential_is_refused_and_recorded_unless_enabled,
);

/// A gateway whose only identity provider is down, with break-glass configured (`enabled` or not).
async fn gateway(backend: Backend, enabled: bool) -> (Api, String) {
    let (credential, hash) = api::break_glass::generate();
    let unreachable: api::oidc::IdpConfig = serde_json::from_value(json!({
        "name": "corp", "issuer": format!("http://127.0.0.1:{}", tests::free_port().unwrap()),
        "client_id": "gateway", "client_secret": "s",
    }))
    .unwrap();
    let api = start_with(backend, |config| {
        config.idps = vec![unreachable];
        config.break_glass = Some(api::break_glass::BreakGlassConfig::from_hex(&hash, enabled).unwrap());
    })
    .await;
    (api, credential)
}

async fn entries(api: &Api, action: &str, at_least: usize) -> Vec<Value> {
    let uri = format!("/api/v1/audit?action={action}");
    tests::eventually(DEADLINE, "the break-glass entries in the audit trail", || async {
        let page = api.call(Method::GET, &uri, None, &[]).await;
        let entries = page.body["entries"].as_array()?.clone();
        (entries.len() >= at_least).then_some(entries)
    })
    .await
}

async fn the_break_glass_credential_acts_as_an_owner_with_the_idp_down_and_every_use_is_audited(backend: Backend) {
    let (api, credential) = gateway(backend, true).await;
    // The IdP is down: logging in fails.
    let login = api.call_as("", Method::GET, "/auth/corp/login", None, &[]).await;
    assert!(login.status.is_server_error(), "{}", login.raw);

    // The credential acts as an owner: it reads the users and grants a role.
    let users = api.call_as(&credential, Method::GET, "/api/v1/users", None, &[]).await;
    assert_eq!(users.status, StatusCode::OK, "{}", users.raw);
    let (_, developer) = api.developer().await;
    let grant = json!({ "role": "server_manager", "reason": "incident 42: the IdP is down" }).to_string();
    let granted =
        api.call_as(&credential, Method::POST, &format!("/api/v1/users/{developer}/roles"), Some(&grant), &[]).await;
    assert!(granted.status.is_success(), "{}", granted.raw);
    // It is no second factor: what needs one (granting admin) still does.
    let admin = json!({ "role": "admin", "reason": "incident 42" }).to_string();
    let refused =
        api.call_as(&credential, Method::POST, &format!("/api/v1/users/{developer}/roles"), Some(&admin), &[]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.raw);

    // Each use is an entry, with the request and the break-glass principal as the actor.
    let used = entries(&api, "break_glass.used", 3).await;
    let requests: Vec<&str> = used.iter().filter_map(|e| e["changes"]["request"].as_str()).collect();
    assert!(requests.contains(&"GET /api/v1/users"), "{used:?}");
    assert!(requests.contains(&format!("POST /api/v1/users/{developer}/roles").as_str()), "{used:?}");
    let principal = domain::access::break_glass_principal().to_string();
    assert!(used.iter().all(|e| e["actor_id"] == principal.as_str()), "{used:?}");
    // The grant it made names it as the actor too.
    let grants = entries(&api, "role.granted", 2).await;
    assert!(grants.iter().any(|e| e["actor_id"] == principal.as_str()), "{grants:?}");

    // An owner disables the break-glass principal by an ordinary command: while break-glass is
    // configured, its next use restores it, and it still acts.
    let principal_id = domain::access::break_glass_principal();
    let reason = json!({ "reason": "tidying up" }).to_string();
    let disabled = api.call(Method::POST, &format!("/api/v1/users/{principal_id}/disable"), Some(&reason), &[]).await;
    assert!(disabled.status.is_success(), "{}", disabled.raw);
    let viewer = json!({ "role": "viewer", "reason": "incident 42" }).to_string();
    let again =
        api.call_as(&credential, Method::POST, &format!("/api/v1/users/{developer}/roles"), Some(&viewer), &[]).await;
    assert!(again.status.is_success(), "{}", again.raw);

    // A wrong secret is an ordinary refusal, and nothing is recorded for it: once the trail holds a use
    // made after it, it holds no refusal (and no other entry of break-glass).
    let wrong = format!("{}x", credential);
    assert_eq!(api.call_as(&wrong, Method::GET, "/api/v1/users", None, &[]).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(api.call_as(&credential, Method::GET, "/api/v1/me", None, &[]).await.status, StatusCode::OK);
    tests::eventually(DEADLINE, "the later use in the audit trail", || async {
        let page = api.call(Method::GET, "/api/v1/audit?action=break_glass.used", None, &[]).await;
        page.body["entries"].as_array()?.iter().any(|e| e["changes"]["request"] == "GET /api/v1/me").then_some(())
    })
    .await;
    let refused = api.call(Method::GET, "/api/v1/audit?action=break_glass.refused", None, &[]).await;
    assert_eq!(refused.body["entries"], json!([]), "{}", refused.raw);
}

async fn the_break_glass_credential_is_refused_and_recorded_unless_enabled(backend: Backend) {
    let (api, credential) = gateway(backend, false).await;
    let refused = api.call_as(&credential, Method::GET, "/api/v1/users", None, &[]).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.raw);
    assert!(refused.body["detail"].as_str().unwrap().contains("not enabled"), "{}", refused.raw);
    let recorded = entries(&api, "break_glass.refused", 1).await;
    assert_eq!(recorded[0]["outcome"], "denied", "{recorded:?}");
    assert_eq!(recorded[0]["changes"]["request"], "GET /api/v1/users", "{recorded:?}");
    assert_eq!(recorded[0]["reason"], "break-glass is not enabled", "{recorded:?}");
}
