//! Principals, roles, API keys and the TOTP step-up through the REST API, against a real PostgreSQL:
//! every cell of the permission matrix, the role rules, and credentials that stop working everywhere.

use axum::http::{Method, StatusCode};
use domain::Role;
use domain::authz::Action;
use serde_json::{Value, json};

use crate::api_servers::{Api, Reply, start_on};
use crate::conformance::{Backend, on_every_backend};
use crate::support::DEADLINE;

/// The current TOTP code for a base32 secret (what an authenticator app shows).
pub(crate) fn totp_code(secret: &str) -> String {
    let bytes = totp_rs::Secret::try_from_base32(secret).unwrap().as_bytes().to_vec();
    let totp = totp_rs::Builder::new()
        .with_secret(totp_rs::Secret::from(bytes))
        .with_step_duration(30)
        .with_skew(1)
        .build()
        .unwrap();
    totp.generate_current().to_string()
}

fn assert_problem(reply: &Reply, status: StatusCode, kind: &str) {
    assert_eq!(reply.status, status, "{}", reply.raw);
    assert_eq!(
        reply.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/problem+json"),
        "{}",
        reply.raw
    );
    assert!(reply.body["type"].as_str().is_some_and(|t| t.ends_with(kind)), "{kind}: {}", reply.raw);
}

impl Api {
    pub(crate) async fn post_as(&self, key: &str, uri: &str, body: Value) -> Reply {
        self.call_as(key, Method::POST, uri, Some(&body.to_string()), &[]).await
    }

    /// The owner's step-up: enrol a TOTP secret (once) and prove a code.
    pub(crate) async fn step_up(&self, key: &str) -> String {
        let enrolled = self.call_as(key, Method::POST, "/api/v1/me/mfa/totp", None, &[]).await;
        assert_eq!(enrolled.status, StatusCode::CREATED, "{}", enrolled.raw);
        let secret = enrolled.body["secret"].as_str().unwrap().to_owned();
        assert!(enrolled.body["otpauth_uri"].as_str().unwrap().starts_with("otpauth://totp/"));
        let verified = self.post_as(key, "/api/v1/me/mfa/totp/verify", json!({ "code": totp_code(&secret) })).await;
        assert_eq!(verified.status, StatusCode::NO_CONTENT, "{}", verified.raw);
        secret
    }

    /// A new service principal holding `roles` (granted by the owner, who must have stepped up for admin
    /// and owner), and an API key of its own.
    pub(crate) async fn principal_with(&self, name: &str, roles: &[Role]) -> (String, String) {
        let created = self.post_as(&self.key, "/api/v1/users", json!({ "display_name": name })).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.raw);
        let id = created.body["id"].as_str().unwrap().to_owned();
        for role in roles {
            let granted = self
                .post_as(&self.key, &format!("/api/v1/users/{id}/roles"), json!({ "role": role, "reason": "test" }))
                .await;
            assert_eq!(granted.status, StatusCode::OK, "{}", granted.raw);
        }
        let key = self.post_as(&self.key, &format!("/api/v1/users/{id}/api-keys"), json!({ "name": name })).await;
        assert_eq!(key.status, StatusCode::CREATED, "{}", key.raw);
        (id, key.body["key"].as_str().unwrap().to_owned())
    }
}

/// One request per action, whose answer is 403 exactly when the action is refused (an allowed request
/// may still fail on its body: what matters is that it got past the decision). Using a server is asked
/// of the server's permissions, on `server`, whose access policy admits every role.
async fn exercise(api: &Api, key: &str, action: Action, server: &str) -> Reply {
    let other = uuid::Uuid::now_v7();
    match action {
        Action::ReadServers => api.call_as(key, Method::GET, "/api/v1/servers", None, &[]).await,
        Action::ManageServers => api.post_as(key, "/api/v1/servers", json!({})).await,
        Action::ReadAudit => api.call_as(key, Method::GET, "/api/v1/audit?limit=1", None, &[]).await,
        Action::ReadUsers => api.call_as(key, Method::GET, "/api/v1/users", None, &[]).await,
        Action::ManageUsers => api.post_as(key, "/api/v1/users", json!({})).await,
        Action::GrantRoles => api.post_as(key, &format!("/api/v1/users/{other}/roles"), json!({})).await,
        Action::ManageOwnCredentials => api.call_as(key, Method::GET, "/api/v1/users/me/api-keys", None, &[]).await,
        Action::UseServers => {
            let uri = format!("/api/v1/servers/{server}/permissions");
            let mut reply = api.call_as(key, Method::GET, &uri, None, &[]).await;
            if reply.status == StatusCode::OK {
                let used = reply.body["permissions"].as_array().unwrap().iter().find(|p| p["action"] == "servers.use");
                if used.unwrap()["allow"] == json!(false) {
                    reply.status = StatusCode::FORBIDDEN;
                }
            }
            reply
        }
    }
}

/// Registers a server as the owner, with `access` as its policy; returns its id.
pub(crate) async fn server_with_access(api: &Api, name: &str, access: Value) -> String {
    let body = json!({
        "name": name, "description": "d", "transport": "streamable_http", "url": "https://93.184.216.34/mcp",
        "access": access,
    });
    let added = api.post_as(&api.key, "/api/v1/servers", body).await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.raw);
    let id = added.body["id"].as_str().unwrap().to_owned();
    tests::eventually(DEADLINE, "the authorization model to know the server", || async {
        let uri = format!("/api/v1/servers/{id}/permissions");
        (api.call(Method::GET, &uri, None, &[]).await.status == StatusCode::OK).then_some(())
    })
    .await;
    id
}

async fn every_role_and_permission_cell_through_the_http_api(backend: Backend) {
    let api = start_on(backend).await;
    api.step_up(&api.key).await;
    let everyone: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
    let server = server_with_access(&api, "io.example/for-everyone", json!({ "roles": everyone })).await;
    for role in Role::ALL {
        let (_, key) = api.principal_with(role.as_str(), &[role]).await;
        let me = api.call_as(&key, Method::GET, "/api/v1/me", None, &[]).await;
        assert_eq!(me.body["roles"], json!([role]), "{}", me.raw);
        for action in Action::ALL {
            let reply = exercise(&api, &key, action, &server).await;
            let allowed = action.permitted().contains(&role);
            if allowed {
                assert!(
                    reply.status != StatusCode::FORBIDDEN && reply.status != StatusCode::UNAUTHORIZED,
                    "{} × {} should pass the decision: {} {}",
                    role.as_str(),
                    action.as_str(),
                    reply.status,
                    reply.raw
                );
            } else if reply.status != StatusCode::FORBIDDEN || action != Action::UseServers {
                assert_problem(&reply, StatusCode::FORBIDDEN, "forbidden");
            }
        }
    }
}

async fn a_server_is_used_only_by_whom_its_policy_admits(backend: Backend) {
    let api = start_on(backend).await;
    let (dev_id, dev) = api.principal_with("dev", &[Role::Developer]).await;
    let (_, other_dev) = api.principal_with("other", &[Role::Developer]).await;
    let (manager_id, manager) = api.principal_with("manager", &[Role::ServerManager]).await;
    let (_, viewer) = api.principal_with("viewer", &[Role::Viewer]).await;
    let listed = server_with_access(&api, "io.example/listed", json!({ "users": [dev_id, manager_id] })).await;
    let by_role = server_with_access(&api, "io.example/by-role", json!({ "roles": ["developer", "viewer"] })).await;
    let closed = server_with_access(&api, "io.example/closed", json!({})).await;
    let may_use = |key: String, server: String| {
        let api = &api;
        async move {
            let reply =
                api.call_as(&key, Method::GET, &format!("/api/v1/servers/{server}/permissions"), None, &[]).await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.raw);
            let permissions = reply.body["permissions"].as_array().unwrap().clone();
            let used = permissions.iter().find(|p| p["action"] == "servers.use").unwrap();
            (used["allow"].as_bool().unwrap(), used["reason"].as_str().unwrap().to_owned())
        }
    };
    assert!(may_use(dev.clone(), listed.clone()).await.0);
    let (allowed, reason) = may_use(other_dev.clone(), listed.clone()).await;
    assert!(!allowed && reason.contains("access policy"), "{reason}");
    assert!(may_use(other_dev.clone(), by_role.clone()).await.0);
    // A role the policy lists but the matrix does not let use servers gets nothing from the listing.
    assert!(!may_use(viewer.clone(), by_role.clone()).await.0);
    // Nobody but owners and admins uses a server whose policy is empty; a listed manager uses it only
    // where listed.
    assert!(!may_use(dev.clone(), closed.clone()).await.0);
    assert!(!may_use(manager.clone(), closed.clone()).await.0);
    assert!(may_use(manager.clone(), listed.clone()).await.0);
    assert!(may_use(api.key.clone(), closed.clone()).await.0);
    // An unknown server is 404, a malformed id 400, and somebody who may not read servers gets 403.
    let unknown = format!("/api/v1/servers/{}/permissions", uuid::Uuid::now_v7());
    assert_problem(&api.call_as(&dev, Method::GET, &unknown, None, &[]).await, StatusCode::NOT_FOUND, "not-found");
    let (_, auditor) = api.principal_with("auditor", &[Role::Auditor]).await;
    let refused = api.call_as(&auditor, Method::GET, &format!("/api/v1/servers/{closed}/permissions"), None, &[]).await;
    assert_problem(&refused, StatusCode::FORBIDDEN, "forbidden");
    // A suspended server is used by nobody, owners included, until it is resumed
    let suspended =
        api.post_as(&api.key, &format!("/api/v1/servers/{listed}/suspend"), json!({ "reason": "maintenance" })).await;
    assert_eq!(suspended.status, StatusCode::OK, "{}", suspended.raw);
    tests::eventually(DEADLINE, "the suspension to reach the decision", || async {
        (!may_use(dev.clone(), listed.clone()).await.0).then_some(())
    })
    .await;
    let (allowed, reason) = may_use(api.key.clone(), listed.clone()).await;
    assert!(!allowed && reason.contains("suspended"), "{reason}");
    let resumed = api.post_as(&api.key, &format!("/api/v1/servers/{listed}/resume"), json!({})).await;
    assert_eq!(resumed.status, StatusCode::OK, "{}", resumed.raw);
    tests::eventually(DEADLINE, "the resumption to reach the decision", || async {
        may_use(dev.clone(), listed.clone()).await.0.then_some(())
    })
    .await;
}

async fn role_rules_are_refused_with_problem_json_and_nothing_is_written(backend: Backend) {
    let api = start_on(backend).await;
    let owner_id = api.call(Method::GET, "/api/v1/me", None, &[]).await.body["id"].as_str().unwrap().to_owned();
    let (admin_id, admin_key) = {
        // Granting admin without a recent second factor is refused...
        let created = api.post_as(&api.key, "/api/v1/users", json!({ "display_name": "ada" })).await;
        let id = created.body["id"].as_str().unwrap().to_owned();
        let refused = api
            .post_as(&api.key, &format!("/api/v1/users/{id}/roles"), json!({ "role": "admin", "reason": "r" }))
            .await;
        assert_problem(&refused, StatusCode::FORBIDDEN, "mfa-required");
        // ...and allowed after the TOTP step-up, whose code is good once.
        let secret = api.step_up(&api.key).await;
        let again = api.post_as(&api.key, "/api/v1/me/mfa/totp/verify", json!({ "code": totp_code(&secret) })).await;
        assert_problem(&again, StatusCode::UNPROCESSABLE_ENTITY, "invalid-code");
        let granted = api
            .post_as(&api.key, &format!("/api/v1/users/{id}/roles"), json!({ "role": "admin", "reason": "r" }))
            .await;
        assert_eq!(granted.status, StatusCode::OK, "{}", granted.raw);
        let key = api.post_as(&api.key, &format!("/api/v1/users/{id}/api-keys"), json!({})).await;
        (id, key.body["key"].as_str().unwrap().to_owned())
    };
    let events_before = api.event_count("%").await - api.event_count("access-%").await;

    // Nobody changes their own roles
    let own = api
        .post_as(&admin_key, &format!("/api/v1/users/{admin_id}/roles"), json!({ "role": "auditor", "reason": "r" }))
        .await;
    assert_problem(&own, StatusCode::FORBIDDEN, "own-roles");
    // Nobody grants above their own role, nor takes a higher one away, nor disables its holder
    let target = api.post_as(&api.key, "/api/v1/users", json!({ "display_name": "bob" })).await;
    let target_id = target.body["id"].as_str().unwrap().to_owned();
    let events_before = events_before + 1;
    let above = api
        .post_as(&admin_key, &format!("/api/v1/users/{target_id}/roles"), json!({ "role": "owner", "reason": "r" }))
        .await;
    assert_problem(&above, StatusCode::FORBIDDEN, "above-own-role");
    let revoke_owner = api
        .call_as(&admin_key, Method::DELETE, &format!("/api/v1/users/{owner_id}/roles/owner?reason=r"), None, &[])
        .await;
    assert_problem(&revoke_owner, StatusCode::FORBIDDEN, "above-own-role");
    let disable_owner =
        api.post_as(&admin_key, &format!("/api/v1/users/{owner_id}/disable"), json!({ "reason": "r" })).await;
    assert_problem(&disable_owner, StatusCode::FORBIDDEN, "above-own-role");
    // Nor adds a lower role to someone who outranks them
    let to_owner = api
        .post_as(&admin_key, &format!("/api/v1/users/{owner_id}/roles"), json!({ "role": "viewer", "reason": "r" }))
        .await;
    assert_problem(&to_owner, StatusCode::FORBIDDEN, "target-above-own-role");
    // An auditor holds no other role, and nobody holding one becomes an auditor
    let auditor = api.post_as(&api.key, "/api/v1/users", json!({ "display_name": "audrey" })).await;
    let auditor_id = auditor.body["id"].as_str().unwrap().to_owned();
    let appointed = api
        .post_as(&api.key, &format!("/api/v1/users/{auditor_id}/roles"), json!({ "role": "auditor", "reason": "r" }))
        .await;
    assert_eq!(appointed.status, StatusCode::OK, "{}", appointed.raw);
    let events_before = events_before + 2;
    let second = api
        .post_as(&api.key, &format!("/api/v1/users/{auditor_id}/roles"), json!({ "role": "developer", "reason": "r" }))
        .await;
    assert_problem(&second, StatusCode::CONFLICT, "separation-of-duties");
    let mixed = api
        .post_as(&api.key, &format!("/api/v1/users/{admin_id}/roles"), json!({ "role": "auditor", "reason": "r" }))
        .await;
    assert_problem(&mixed, StatusCode::CONFLICT, "separation-of-duties");
    // A reason is one line of printable text: a U+0000, a newline or a bidi override is refused
    for bad in [r"a\u0000b", r"a\nb", r"a\u202eb"] {
        let body = format!(r#"{{"role":"viewer","reason":"{bad}"}}"#);
        let refused =
            api.call_as(&admin_key, Method::POST, &format!("/api/v1/users/{target_id}/roles"), Some(&body), &[]).await;
        assert_problem(&refused, StatusCode::UNPROCESSABLE_ENTITY, "invalid-field");
        assert_eq!(refused.body["field"], "reason", "{}", refused.raw);
    }
    // A reason is required
    let no_reason = api
        .post_as(&admin_key, &format!("/api/v1/users/{target_id}/roles"), json!({ "role": "viewer", "reason": " " }))
        .await;
    assert_problem(&no_reason, StatusCode::UNPROCESSABLE_ENTITY, "invalid-field");
    // Malformed input is a client error, never a 500
    let unknown_role = api
        .post_as(&admin_key, &format!("/api/v1/users/{target_id}/roles"), json!({ "role": "root", "reason": "r" }))
        .await;
    assert!(unknown_role.status.is_client_error(), "{}", unknown_role.raw);
    let not_a_role = api
        .call_as(&admin_key, Method::DELETE, &format!("/api/v1/users/{target_id}/roles/root?reason=r"), None, &[])
        .await;
    assert_problem(&not_a_role, StatusCode::NOT_FOUND, "unknown-role");
    // Nothing but the refusals themselves was recorded: each 403 is an `access.denied` entry.
    let changes_after = api.event_count("%").await - api.event_count("access-%").await;
    assert_eq!(changes_after, events_before, "a refused change wrote events");
    assert!(api.event_count("access-%").await >= 5, "every 403 is recorded");
}

async fn revoked_expired_scoped_and_disabled_credentials_stop_working(backend: Backend) {
    let api = start_on(backend).await;
    let (viewer_id, viewer_key) = api.principal_with("viewer", &[Role::Viewer, Role::ServerManager]).await;
    let works = |key: String| {
        let api = &api;
        async move { api.call_as(&key, Method::GET, "/api/v1/servers", None, &[]).await.status }
    };
    assert_eq!(works(viewer_key.clone()).await, StatusCode::OK);

    // A wrong key with the right prefix and shape is refused like any other
    let forged = format!("mgw_{}", "A".repeat(43));
    assert_problem(
        &api.call_as(&forged, Method::GET, "/api/v1/servers", None, &[]).await,
        StatusCode::UNAUTHORIZED,
        "invalid-credential",
    );

    // The holder lists its keys: never the key or its digest
    let listed = api.call_as(&viewer_key, Method::GET, "/api/v1/users/me/api-keys", None, &[]).await;
    assert_eq!(listed.body["keys"].as_array().unwrap().len(), 1, "{}", listed.raw);
    assert!(!listed.raw.contains(&viewer_key[4..]), "a listing shows the key");
    // Its last use is recorded (outside the event log, in the background)
    tests::eventually(DEADLINE, "the key's last use", || async {
        let listed = api.call_as(&viewer_key, Method::GET, "/api/v1/users/me/api-keys", None, &[]).await;
        listed.body["keys"][0]["last_used_at"].as_str().map(|_| ())
    })
    .await;

    // A scoped key does what its scopes say, and no more than the roles allow
    let scoped = api
        .post_as(&viewer_key, "/api/v1/users/me/api-keys", json!({ "name": "ci", "scopes": ["servers.read"] }))
        .await;
    assert_eq!(scoped.status, StatusCode::CREATED, "{}", scoped.raw);
    let scoped_key = scoped.body["key"].as_str().unwrap().to_owned();
    assert_eq!(works(scoped_key.clone()).await, StatusCode::OK);
    assert_problem(&api.post_as(&scoped_key, "/api/v1/servers", json!({})).await, StatusCode::FORBIDDEN, "forbidden");
    let bad_scope = api.post_as(&viewer_key, "/api/v1/users/me/api-keys", json!({ "scopes": ["root"] })).await;
    assert_problem(&bad_scope, StatusCode::UNPROCESSABLE_ENTITY, "invalid-field");
    // Somebody else's keys are user management: a viewer cannot issue one for the owner
    let owner_id = api.call(Method::GET, "/api/v1/me", None, &[]).await.body["id"].as_str().unwrap().to_owned();
    let for_owner = api.post_as(&viewer_key, &format!("/api/v1/users/{owner_id}/api-keys"), json!({})).await;
    assert_problem(&for_owner, StatusCode::FORBIDDEN, "forbidden");

    // A revoked key is refused at once
    let scoped_id = scoped.body["id"].as_str().unwrap();
    let revoked = api
        .call_as(
            &viewer_key,
            Method::DELETE,
            &format!("/api/v1/users/me/api-keys/{scoped_id}?reason=leaked"),
            None,
            &[],
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.raw);
    assert_eq!(works(scoped_key).await, StatusCode::UNAUTHORIZED);

    // An expiring key works until it expires
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let expiring = api.post_as(&viewer_key, "/api/v1/users/me/api-keys", json!({ "expires_at": soon })).await;
    let expiring_key = expiring.body["key"].as_str().unwrap().to_owned();
    assert_eq!(works(expiring_key.clone()).await, StatusCode::OK);
    tests::eventually(DEADLINE, "the key to expire", || {
        let key = expiring_key.clone();
        let works = &works;
        async move { (works(key).await == StatusCode::UNAUTHORIZED).then_some(()) }
    })
    .await;
    let past =
        api.post_as(&viewer_key, "/api/v1/users/me/api-keys", json!({ "expires_at": "2020-01-01T00:00:00Z" })).await;
    assert_problem(&past, StatusCode::UNPROCESSABLE_ENTITY, "invalid-field");

    // A disabled principal's keys all stop working; enabled again, they work
    let disabled =
        api.post_as(&api.key, &format!("/api/v1/users/{viewer_id}/disable"), json!({ "reason": "left" })).await;
    assert_eq!(disabled.status, StatusCode::OK, "{}", disabled.raw);
    assert_eq!(works(viewer_key.clone()).await, StatusCode::UNAUTHORIZED);
    let enabled = api.call(Method::POST, &format!("/api/v1/users/{viewer_id}/enable"), None, &[]).await;
    assert_eq!(enabled.status, StatusCode::OK, "{}", enabled.raw);
    assert_eq!(works(viewer_key).await, StatusCode::OK);

    // Every change reached the audit trail, the role grants with their before and after
    tests::eventually(DEADLINE, "the audit trail to show the grants", || async {
        let trail = api.call(Method::GET, "/api/v1/audit?action=role.granted", None, &[]).await;
        let entries = trail.body["entries"].as_array().cloned().unwrap_or_default();
        (entries.len() == 2).then_some(entries)
    })
    .await;
    for action in ["user.disabled", "user.enabled", "api_key.revoked", "api_key.issued"] {
        tests::eventually(DEADLINE, action, || async {
            let trail = api.call(Method::GET, &format!("/api/v1/audit?action={action}"), None, &[]).await;
            trail.body["entries"].as_array().is_some_and(|e| !e.is_empty()).then_some(())
        })
        .await;
    }
    let trail = api.call(Method::GET, "/api/v1/audit?action=role.granted", None, &[]).await;
    let last = &trail.body["entries"].as_array().unwrap()[1];
    assert_eq!(
        last["changes"]["roles"],
        json!({ "before": ["viewer"], "after": ["server_manager", "viewer"] }),
        "{last}"
    );
    assert_eq!(last["target_name"], json!("viewer"));
}

async fn a_server_manager_manages_only_the_servers_it_owns(backend: Backend) {
    let api = start_on(backend).await;
    api.step_up(&api.key).await;
    let (_, first) = api.principal_with("first", &[Role::ServerManager]).await;
    let (_, second) = api.principal_with("second", &[Role::ServerManager]).await;
    let (_, admin) = api.principal_with("admin", &[Role::Admin]).await;
    let body = json!({
        "name": "io.example/owned", "description": "d", "transport": "streamable_http", "url": "https://93.184.216.34/mcp",
        "upstream_auth": { "mode": "none" },
    });
    let created = api.post_as(&first, "/api/v1/servers", body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.raw);
    let id = created.body["id"].as_str().unwrap();
    let suspend = |key: String| {
        let api = &api;
        let uri = format!("/api/v1/servers/{id}/suspend");
        async move { api.post_as(&key, &uri, json!({ "reason": "maintenance" })).await }
    };
    assert_problem(&suspend(second).await, StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(suspend(first.clone()).await.status, StatusCode::OK);
    let resumed = api.post_as(&admin, &format!("/api/v1/servers/{id}/resume"), json!({})).await;
    assert_eq!(resumed.status, StatusCode::OK, "{}", resumed.raw);
}

async fn nobody_takes_over_a_higher_principal_or_widens_a_key(backend: Backend) {
    let api = start_on(backend).await;
    api.step_up(&api.key).await;
    let owner_id = api.call(Method::GET, "/api/v1/me", None, &[]).await.body["id"].as_str().unwrap().to_owned();
    let (_, admin) = api.principal_with("admin", &[Role::Admin]).await;

    // An admin cannot issue itself a key of the owner's, nor revoke the owner's keys, nor appoint auditors
    let for_owner = api.post_as(&admin, &format!("/api/v1/users/{owner_id}/api-keys"), json!({})).await;
    assert_problem(&for_owner, StatusCode::FORBIDDEN, "forbidden");
    let owner_keys = api.call(Method::GET, "/api/v1/users/me/api-keys", None, &[]).await;
    let owner_key_id = owner_keys.body["keys"][0]["id"].as_str().unwrap().to_owned();
    let revoke = api
        .call_as(
            &admin,
            Method::DELETE,
            &format!("/api/v1/users/{owner_id}/api-keys/{owner_key_id}?reason=r"),
            None,
            &[],
        )
        .await;
    assert_problem(&revoke, StatusCode::FORBIDDEN, "forbidden");
    let svc = api.post_as(&admin, "/api/v1/users", json!({ "display_name": "svc" })).await;
    let svc_id = svc.body["id"].as_str().unwrap().to_owned();
    let auditor = api
        .post_as(&admin, &format!("/api/v1/users/{svc_id}/roles"), json!({ "role": "auditor", "reason": "r" }))
        .await;
    assert_problem(&auditor, StatusCode::FORBIDDEN, "above-own-role");
    // ...but manages a service principal's keys
    let svc_key = api.post_as(&admin, &format!("/api/v1/users/{svc_id}/api-keys"), json!({})).await;
    assert_eq!(svc_key.status, StatusCode::CREATED, "{}", svc_key.raw);

    // A scoped or expiring key issues nothing stronger than itself
    let in_an_hour = chrono::Utc::now() + chrono::Duration::hours(1);
    let limited = api
        .post_as(
            &admin,
            "/api/v1/users/me/api-keys",
            json!({ "scopes": ["self.credentials", "servers.read"], "expires_at": in_an_hour }),
        )
        .await;
    let limited = limited.body["key"].as_str().unwrap().to_owned();
    let wider = api.post_as(&limited, "/api/v1/users/me/api-keys", json!({ "scopes": ["servers.manage"] })).await;
    assert_problem(&wider, StatusCode::UNPROCESSABLE_ENTITY, "invalid-field");
    let later = api
        .post_as(&limited, "/api/v1/users/me/api-keys", json!({ "expires_at": in_an_hour + chrono::Duration::days(1) }))
        .await;
    assert_problem(&later, StatusCode::UNPROCESSABLE_ENTITY, "invalid-field");
    let inherited = api.post_as(&limited, "/api/v1/users/me/api-keys", json!({})).await;
    assert_eq!(inherited.status, StatusCode::CREATED, "{}", inherited.raw);
    assert!(inherited.body["expires_at"].is_string(), "it expires with its parent: {}", inherited.raw);
    let child = inherited.body["key"].as_str().unwrap().to_owned();
    assert_problem(&api.post_as(&child, "/api/v1/servers", json!({})).await, StatusCode::FORBIDDEN, "forbidden");
    // A key scoped to its own credentials manages nobody else's
    let elsewhere = api.post_as(&limited, &format!("/api/v1/users/{svc_id}/api-keys"), json!({})).await;
    assert_problem(&elsewhere, StatusCode::FORBIDDEN, "forbidden");

    // A stolen key cannot swap the second factor, and guessing codes runs out
    let swap = api.call(Method::POST, "/api/v1/me/mfa/totp", None, &[]).await;
    assert_problem(&swap, StatusCode::FORBIDDEN, "mfa-required");
    for _ in 0..5 {
        let wrong = api.post_as(&api.key, "/api/v1/me/mfa/totp/verify", json!({ "code": "000000" })).await;
        assert!(wrong.status == StatusCode::UNPROCESSABLE_ENTITY, "{}", wrong.raw);
    }
    let throttled = api.post_as(&api.key, "/api/v1/me/mfa/totp/verify", json!({ "code": "000000" })).await;
    assert_problem(&throttled, StatusCode::TOO_MANY_REQUESTS, "too-many-attempts");
}

async fn two_owners_revoking_each_other_at_once_leave_one_owner(backend: Backend) {
    use commands::principals::{Credential, RoleRequest};
    use domain::identity::RoleChange;
    let api = start_on(backend).await;
    api.step_up(&api.key).await;
    let first: uuid::Uuid =
        api.call(Method::GET, "/api/v1/me", None, &[]).await.body["id"].as_str().unwrap().parse().unwrap();
    let (second, _) = api.principal_with("carol", &[Role::Owner]).await;
    let second: uuid::Uuid = second.parse().unwrap();
    let principals = &api.gateway.state.principals;
    let context =
        || commands::servers::CommandContext { command_id: uuid::Uuid::now_v7(), metadata: crate::support::metadata() };
    let now = chrono::Utc::now();
    let revoke = |target| RoleRequest { target, change: RoleChange::Revoke, role: Role::Owner, reason: "r" };
    let (a, b) = (context(), context());
    let (by_first, by_second) = tokio::join!(
        principals.change_role(Credential { principal: first, credential: first }, revoke(second), now, &a),
        principals.change_role(Credential { principal: second, credential: second }, revoke(first), now, &b)
    );
    assert_eq!(
        [by_first.is_ok(), by_second.is_ok()].iter().filter(|ok| **ok).count(),
        1,
        "{by_first:?} / {by_second:?}"
    );
    let refused = by_first.err().or(by_second.err()).unwrap();
    assert!(matches!(refused, commands::CommandError::RoleChange(_)), "{refused:?}");
    let (owners, _) = principals.owners().await.unwrap();
    assert_eq!(owners.len(), 1);
    let survivor = *owners.iter().next().unwrap();
    assert!(principals.load(survivor).await.unwrap().0.roles.contains(&Role::Owner));
}

/// A second factor is the credential's that proved it, and a first one is not enrolled on the strength
/// of a key alone: a service principal never enrols one; a person needs an MFA login or an owner's
/// approval; a step-up on one key counts for no other; wrong codes are counted in the log, so a second
/// instance (or a restart) shares the limit.
async fn a_second_factor_belongs_to_its_credential_and_is_enrolled_only_with_approval(backend: Backend) {
    use commands::principals::KeyInput;
    use domain::identity::PrincipalKind;
    let api = start_on(backend).await;
    api.step_up(&api.key).await;
    // A service principal holding admin cannot put a second factor behind its key
    let (_, service_admin) = api.principal_with("robot", &[Role::Admin]).await;
    let refused = api.call_as(&service_admin, Method::POST, "/api/v1/me/mfa/totp", None, &[]).await;
    assert_problem(&refused, StatusCode::FORBIDDEN, "mfa-enrolment-refused");

    // A person holding owner through two keys, and no MFA login
    let principals = &api.gateway.state.principals;
    let context =
        || commands::servers::CommandContext { command_id: uuid::Uuid::now_v7(), metadata: crate::support::metadata() };
    let person = uuid::Uuid::now_v7();
    principals.create(person, PrincipalKind::User, "pat", &context()).await.unwrap();
    let granted = api
        .post_as(&api.key, &format!("/api/v1/users/{person}/roles"), json!({ "role": "owner", "reason": "r" }))
        .await;
    assert_eq!(granted.status, StatusCode::OK, "{}", granted.raw);
    let now = chrono::Utc::now();
    let key = |n: u128| async move {
        let input = KeyInput::default();
        let issued = principals.issue_key(person, person, uuid::Uuid::from_u128(n), input, now, &context()).await;
        issued.unwrap().key.expose().to_owned()
    };
    let (first, second) = (key(person.as_u128() ^ 1).await, key(person.as_u128() ^ 2).await);
    tests::eventually(DEADLINE, "the keys to work", || async {
        (api.call_as(&second, Method::GET, "/api/v1/me", None, &[]).await.status == StatusCode::OK).then_some(())
    })
    .await;
    let refused = api.call_as(&first, Method::POST, "/api/v1/me/mfa/totp", None, &[]).await;
    assert_problem(&refused, StatusCode::FORBIDDEN, "mfa-enrolment-refused");
    // Only an owner other than the person approves
    let own = api.call_as(&first, Method::POST, &format!("/api/v1/users/{person}/mfa/approval"), None, &[]).await;
    assert_problem(&own, StatusCode::FORBIDDEN, "forbidden");
    let approved = api.call(Method::POST, &format!("/api/v1/users/{person}/mfa/approval"), None, &[]).await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.raw);
    let secret = api.step_up(&first).await;
    // The step-up on the first key does not count for the second
    let target = api.post_as(&api.key, "/api/v1/users", json!({ "display_name": "target" })).await;
    let target_id = target.body["id"].as_str().unwrap().to_owned();
    let api_ref = &api;
    let grant = |key: String| {
        let uri = format!("/api/v1/users/{target_id}/roles");
        async move { api_ref.post_as(&key, &uri, json!({ "role": "admin", "reason": "r" })).await }
    };
    assert_problem(&grant(second.clone()).await, StatusCode::FORBIDDEN, "mfa-required");
    assert_eq!(grant(first.clone()).await.status, StatusCode::OK);

    // Wrong codes sent at once, half here and half on another instance: no more than five are ever
    // checked and answered; then even the right code is refused, on either instance
    let other = match &api.db {
        Some(db) => Some(crate::api_servers::another_instance(&api, crate::api_servers::config(&db.url, None)).await),
        None => None,
    };
    if let Some(other) = &other {
        tests::eventually(DEADLINE, "the other instance to know the key", || async {
            (other.call_as(&second, Method::GET, "/api/v1/me", None, &[]).await.status == StatusCode::OK).then_some(())
        })
        .await;
    }
    let guesses = (0..12).map(|n| {
        let instance = if n % 2 == 0 { other.as_ref().unwrap_or(&api) } else { &api };
        let second = second.clone();
        async move { instance.post_as(&second, "/api/v1/me/mfa/totp/verify", json!({ "code": "000000" })).await }
    });
    let replies = futures_util::future::join_all(guesses).await;
    let answered = replies.iter().filter(|r| r.status == StatusCode::UNPROCESSABLE_ENTITY).count();
    assert!(answered <= 5, "{answered} guesses were checked");
    for reply in &replies {
        let kind = reply.body["type"].as_str().unwrap_or_default();
        assert!(
            ["/problems/invalid-code", "/problems/too-many-attempts", "/problems/contended"].contains(&kind),
            "{}",
            reply.raw
        );
    }
    let stream = format!("principal-{person}");
    let recorded: i64 = match &api.gateway.state.tables {
        api::tables::Tables::Postgres(pool) => {
            sqlx::query_scalar("SELECT count(*) FROM es.events WHERE stream_id = $1 AND event_type = 'TotpRejected'")
                .bind(&stream)
                .fetch_one(pool)
                .await
                .unwrap()
        }
        api::tables::Tables::Sqlite(pool) => {
            sqlx::query_scalar("SELECT count(*) FROM events WHERE stream_id = ? AND event_type = 'TotpRejected'")
                .bind(&stream)
                .fetch_one(pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(recorded as usize, answered, "each answered guess is recorded, and only those");
    // Whatever the race left, the limit is reached by guessing on
    for _ in 0..5 {
        let reply = api.post_as(&second, "/api/v1/me/mfa/totp/verify", json!({ "code": "000000" })).await;
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            break;
        }
    }
    let good = crate::api_users::totp_code(&secret);
    let throttled = api.post_as(&second, "/api/v1/me/mfa/totp/verify", json!({ "code": good })).await;
    assert_problem(&throttled, StatusCode::TOO_MANY_REQUESTS, "too-many-attempts");
    if let Some(other) = &other {
        let throttled = other.post_as(&first, "/api/v1/me/mfa/totp/verify", json!({ "code": good })).await;
        assert_problem(&throttled, StatusCode::TOO_MANY_REQUESTS, "too-many-attempts");
    }
}

/// Every 403 of an authenticated caller is an `access.denied` entry, whichever rule refused (here a
/// command's: an admin may not issue a key to an owner); a 401 carries a `WWW-Authenticate` challenge
/// that tells a missing credential from a refused one.
async fn every_refusal_is_audited_and_every_401_says_what_to_send(backend: Backend) {
    let api = start_on(backend).await;
    api.step_up(&api.key).await;
    let (admin_id, admin_key) = api.principal_with("ada", &[Role::Admin]).await;
    let owner_id = api.call(Method::GET, "/api/v1/me", None, &[]).await.body["id"].as_str().unwrap().to_owned();
    let refused = api.post_as(&admin_key, &format!("/api/v1/users/{owner_id}/api-keys"), json!({})).await;
    assert_problem(&refused, StatusCode::FORBIDDEN, "forbidden");
    let entry = tests::eventually(DEADLINE, "the refusal in the trail", || async {
        let page = api.call(Method::GET, "/api/v1/audit?outcome=denied&limit=100", None, &[]).await;
        page.body["entries"].as_array()?.iter().find(|e| e["actor_id"] == admin_id.as_str()).cloned()
    })
    .await;
    assert_eq!(entry["action"], "access.denied", "{entry}");
    assert!(entry["reason"].as_str().unwrap().contains("above yours"), "{entry}");

    let challenge = |reply: &Reply| reply.headers.get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
    let anonymous = api.call_as("", Method::GET, "/api/v1/me", None, &[]).await;
    assert_problem(&anonymous, StatusCode::UNAUTHORIZED, "unauthenticated");
    assert_eq!(challenge(&anonymous).as_deref(), Some("Bearer realm=\"mcp-gateway\""));
    for bad in ["eyJhbGciOiJub25lIn0.e30.", "mgw_not-a-key", "not even a token"] {
        let refused = api.call_as(bad, Method::GET, "/api/v1/me", None, &[]).await;
        assert_problem(&refused, StatusCode::UNAUTHORIZED, "invalid-credential");
        assert!(challenge(&refused).unwrap().contains("error=\"invalid_token\""), "{bad}: {}", refused.raw);
        assert!(!refused.raw.contains("send an API key"), "{}", refused.raw);
    }
}

on_every_backend!(
    a_second_factor_belongs_to_its_credential_and_is_enrolled_only_with_approval,
    every_refusal_is_audited_and_every_401_says_what_to_send,
    two_owners_revoking_each_other_at_once_leave_one_owner,
    every_role_and_permission_cell_through_the_http_api,
    a_server_is_used_only_by_whom_its_policy_admits,
    role_rules_are_refused_with_problem_json_and_nothing_is_written,
    revoked_expired_scoped_and_disabled_credentials_stop_working,
    a_server_manager_manages_only_the_servers_it_owns,
    nobody_takes_over_a_higher_principal_or_widens_a_key,
);
