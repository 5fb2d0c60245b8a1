//! People log in through a real OpenID provider (`oidc-provider`) to the gateway's router: provisioned by
//! issuer and subject, roles mapped from each Entra claim shape, sessions as cookies with CSRF protection,
//! listed and ended, and an IdP-reported MFA good for sensitive grants.

use api::oidc::{IdpConfig, IdpKind};
use api::{Gateway, GatewayConfig, router};
use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use domain::Role;
use domain::identity::{ClaimSource, RoleRule};
use serde_json::{Value, json};
use tests::OidcProvider;
use tower::ServiceExt;
use uuid::Uuid;

use crate::support::{DEADLINE, metadata};
use crate::upstream_idp::{Browser, entra_shaped_users, entra_shaped_users_for};

struct Reply {
    status: StatusCode,
    cookies: Vec<String>,
    location: Option<String>,
    body: Value,
    raw: String,
}

async fn send(router: &Router, method: Method, uri: &str, headers: &[(&str, &str)], body: Option<Value>) -> Reply {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if body.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    let request = request.body(body.map(|b| Body::from(b.to_string())).unwrap_or_else(Body::empty)).unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let cookies =
        response.headers().get_all(header::SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    let location = response.headers().get(header::LOCATION).map(|v| v.to_str().unwrap().to_owned());
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    let raw = String::from_utf8_lossy(&bytes).into_owned();
    Reply { status, cookies, location, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null), raw }
}

/// `name=value` of the cookie `name` a reply sets.
fn cookie_pair(reply: &Reply, name: &str) -> String {
    let set =
        reply.cookies.iter().find(|c| c.starts_with(&format!("{name}="))).unwrap_or_else(|| panic!("{name} not set"));
    set.split(';').next().unwrap().to_owned()
}

fn rules() -> Vec<RoleRule> {
    let rule = |source, value: &str, role| RoleRule { source, value: value.into(), role };
    vec![
        rule(ClaimSource::Roles, "Gateway.Developer", Role::Developer),
        rule(ClaimSource::Roles, "Gateway.Admin", Role::Admin),
        rule(ClaimSource::Groups, "6f1c1b3e-0000-4000-8000-000000000001", Role::ServerManager),
    ]
}

struct Login {
    session_cookie: String,
    body: Value,
}

struct Site {
    router: Router,
    gateway: Gateway,
    owner_key: String,
    _db: tests::TestDatabase,
}

async fn site(providers: &[(&str, &OidcProvider)]) -> Site {
    site_with(providers, &[]).await
}

/// The test IdP configuration `name` at `issuer`.
fn idp(name: &str, issuer: String, kind: IdpKind, role_rules: Vec<RoleRule>) -> IdpConfig {
    IdpConfig {
        name: name.to_owned(),
        issuer,
        client_id: "gateway".into(),
        client_secret: "gateway-secret".into(),
        scopes: None,
        role_rules,
        kind,
    }
}

async fn site_with(providers: &[(&str, &OidcProvider)], kinds: &[(&str, IdpKind)]) -> Site {
    let idps = providers
        .iter()
        .map(|(name, provider)| {
            let kind = kinds.iter().find(|(n, _)| n == name).map(|(_, k)| k.clone()).unwrap_or_default();
            idp(name, provider.issuer(), kind, rules())
        })
        .collect();
    site_of(idps).await
}

async fn site_of(idps: Vec<IdpConfig>) -> Site {
    let db = tests::PostgresServer::shared().unwrap().create_database().await.unwrap();
    let config = GatewayConfig {
        public_url: Some("http://127.0.0.1:9".into()),
        idps,
        ..crate::api_servers::config(&db.url, None)
    };
    let gateway = Gateway::start(&config, None).await.unwrap();
    let context = commands::servers::CommandContext { command_id: Uuid::now_v7(), metadata: metadata() };
    let owner = commands::identity::bootstrap(&*gateway.state.store, "owner", &context).await.unwrap();
    let router = router(gateway.state.clone());
    let owner_key = owner.api_key.expose().to_owned();
    tests::eventually(DEADLINE, "the gateway to know the owner", || async {
        let bearer = format!("Bearer {owner_key}");
        (send(&router, Method::GET, "/api/v1/me", &[("authorization", &bearer)], None).await.status == StatusCode::OK)
            .then_some(())
    })
    .await;
    Site { router, gateway, owner_key, _db: db }
}

impl Site {
    /// The whole browser login: the gateway's redirect, the provider's form, the callback.
    async fn login(&self, idp: &str, provider: &OidcProvider, username: &str) -> Login {
        let done = self.attempt(idp, provider, username).await;
        assert_eq!(done.status, StatusCode::OK, "{username}: {}", done.raw);
        Login { session_cookie: cookie_pair(&done, "mgw_session"), body: done.body }
    }

    /// A login as `username`, however the gateway answers its callback.
    async fn attempt(&self, idp: &str, provider: &OidcProvider, username: &str) -> Reply {
        let begun = send(&self.router, Method::GET, &format!("/auth/{idp}/login"), &[], None).await;
        assert_eq!(begun.status, StatusCode::SEE_OTHER, "{}", begun.raw);
        let login_cookie = cookie_pair(&begun, "mgw_login");
        let back = Browser::new().login(&provider.issuer(), begun.location.as_deref().unwrap(), username).await;
        let path = back.strip_prefix("http://127.0.0.1:9").unwrap_or_else(|| panic!("{back}"));
        let headers = [("cookie", login_cookie.as_str()), ("user-agent", "test-browser/1.0")];
        send(&self.router, Method::GET, path, &headers, None).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_log_in_through_the_idp_with_roles_from_each_claim_shape() {
    let provider = OidcProvider::start(&entra_shaped_users().to_string()).unwrap();
    let site = site(&[("test", &provider)]).await;
    let expected: [(&str, &[Role]); 6] = [
        ("roles", &[Role::Developer]),
        ("approles", &[Role::Developer]),
        ("app_roles", &[Role::Developer]),
        ("groups", &[Role::ServerManager]),
        ("overage", &[]),
        ("mfa", &[Role::Admin]),
    ];
    for (username, roles) in expected {
        let login = site.login("test", &provider, username).await;
        assert_eq!(login.body["roles"], json!(roles), "{username}: {}", login.body);
        // The session cookie authenticates
        let me = send(&site.router, Method::GET, "/api/v1/me", &[("cookie", &login.session_cookie)], None).await;
        assert_eq!(me.status, StatusCode::OK, "{}", me.raw);
        assert_eq!(me.body["kind"], json!("user"));
        assert_eq!(me.body["roles"], json!(roles));
        // A second login is the same person, not a new one
        let again = site.login("test", &provider, username).await;
        assert_eq!(again.body["principal_id"], login.body["principal_id"]);
        assert_ne!(again.body["session_id"], login.body["session_id"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_need_csrf_for_changes_are_listed_and_end_everywhere_at_once() {
    let provider = OidcProvider::start(&entra_shaped_users().to_string()).unwrap();
    let site = site(&[("test", &provider)]).await;
    let login = site.login("test", &provider, "roles").await;
    let cookie = login.session_cookie.clone();
    let csrf = login.body["csrf_token"].as_str().unwrap().to_owned();

    // A state-changing request with only the cookie is refused; with the token it passes the check
    let mint = |headers: Vec<(&'static str, String)>| {
        let router = site.router.clone();
        async move {
            let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            send(&router, Method::POST, "/api/v1/tokens", &headers, Some(json!({}))).await
        }
    };
    let forged = mint(vec![("cookie", cookie.clone())]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.raw);
    assert!(forged.raw.contains("csrf"), "{}", forged.raw);
    let token = mint(vec![("cookie", cookie.clone()), ("x-csrf-token", csrf.clone())]).await;
    assert_eq!(token.status, StatusCode::OK, "{}", token.raw);
    let bearer = format!("Bearer {}", token.body["access_token"].as_str().unwrap());

    // Listed with the device it came from
    let listed = send(&site.router, Method::GET, "/api/v1/me/sessions", &[("cookie", &cookie)], None).await;
    let sessions = listed.body["sessions"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), 1, "{}", listed.raw);
    assert_eq!(sessions[0]["user_agent"], json!("test-browser/1.0"));
    assert_eq!((sessions[0]["status"].as_str(), sessions[0]["current"].as_bool()), (Some("active"), Some(true)));

    // Ending it ends the cookie and every token minted from it
    let session_id = login.body["session_id"].as_str().unwrap();
    let ended = send(
        &site.router,
        Method::DELETE,
        &format!("/api/v1/me/sessions/{session_id}"),
        &[("cookie", &cookie), ("x-csrf-token", &csrf)],
        None,
    )
    .await;
    assert_eq!(ended.status, StatusCode::NO_CONTENT, "{}", ended.raw);
    let after = send(&site.router, Method::GET, "/api/v1/me", &[("cookie", &cookie)], None).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    let with_token = send(&site.router, Method::GET, "/api/v1/me", &[("authorization", &bearer)], None).await;
    assert_eq!(with_token.status, StatusCode::UNAUTHORIZED);

    // The trail has the person's provisioning, logins and the session's start and end
    let owner = format!("Bearer {}", site.owner_key);
    for action in ["user.provisioned", "user.logged_in", "session.started", "session.revoked", "role.granted"] {
        tests::eventually(DEADLINE, action, || async {
            let trail = send(
                &site.router,
                Method::GET,
                &format!("/api/v1/audit?action={action}"),
                &[("authorization", &owner)],
                None,
            )
            .await;
            trail.body["entries"].as_array().is_some_and(|e| !e.is_empty()).then_some(())
        })
        .await;
    }
    let dump: Vec<String> = sqlx::query_scalar("SELECT data::text FROM es.events")
        .fetch_all(site.gateway.state.tables.postgres().unwrap())
        .await
        .unwrap();
    let secret = cookie.split_once('=').unwrap().1;
    assert!(dump.iter().all(|row| !row.contains(secret)), "the session secret reached an event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_email_at_two_idps_is_two_people_and_idp_mfa_counts_for_sensitive_grants() {
    let redirect = |idp: &str| format!("http://127.0.0.1:9/auth/{idp}/callback");
    let first = OidcProvider::start(&entra_shaped_users_for(&[&redirect("first")]).to_string()).unwrap();
    let second = OidcProvider::start(&entra_shaped_users_for(&[&redirect("second")]).to_string()).unwrap();
    let site = site(&[("first", &first), ("second", &second)]).await;
    let a = site.login("first", &first, "roles").await;
    let b = site.login("second", &second, "roles").await;
    assert_ne!(a.body["principal_id"], b.body["principal_id"], "matched by email");

    // An admin who logged in with MFA at the IdP grants admin without a TOTP step-up
    let admin = site.login("first", &first, "mfa").await;
    let csrf = admin.body["csrf_token"].as_str().unwrap().to_owned();
    let target = a.body["principal_id"].as_str().unwrap();
    let granted = send(
        &site.router,
        Method::POST,
        &format!("/api/v1/users/{target}/roles"),
        &[("cookie", &admin.session_cookie), ("x-csrf-token", &csrf)],
        Some(json!({ "role": "admin", "reason": "on call" })),
    )
    .await;
    assert_eq!(granted.status, StatusCode::OK, "{}", granted.raw);
    // An admin without MFA (the new one, logged in with a password) is asked for it
    let new_admin = site.login("first", &first, "roles").await;
    let csrf = new_admin.body["csrf_token"].as_str().unwrap().to_owned();
    let other = b.body["principal_id"].as_str().unwrap();
    let refused = send(
        &site.router,
        Method::POST,
        &format!("/api/v1/users/{other}/roles"),
        &[("cookie", &new_admin.session_cookie), ("x-csrf-token", &csrf)],
        Some(json!({ "role": "admin", "reason": "r" })),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.raw);
    assert!(refused.raw.contains("mfa-required"), "{}", refused.raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_without_its_login_with_another_state_or_an_idp_error_is_refused_clearly() {
    let provider = OidcProvider::start(&entra_shaped_users().to_string()).unwrap();
    let site = site(&[("test", &provider)]).await;
    let begun = send(&site.router, Method::GET, "/auth/test/login", &[], None).await;
    let login_cookie = cookie_pair(&begun, "mgw_login");
    let back = Browser::new().login(&provider.issuer(), begun.location.as_deref().unwrap(), "roles").await;
    let path = back.strip_prefix("http://127.0.0.1:9").unwrap().to_owned();
    let forged_state = path.replace("state=", "state=x");
    type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, StatusCode);
    let cases: [Case; 5] = [
        ("no login cookie", path.clone(), vec![], StatusCode::BAD_REQUEST),
        ("another state", forged_state, vec![("cookie", &login_cookie)], StatusCode::BAD_REQUEST),
        ("a tampered cookie", path.clone(), vec![("cookie", "mgw_login=AAAA")], StatusCode::BAD_REQUEST),
        (
            "the IdP refused",
            "/auth/test/callback?error=access_denied&error_description=no".into(),
            vec![],
            StatusCode::BAD_REQUEST,
        ),
        ("an unknown IdP", "/auth/nope/login".into(), vec![], StatusCode::NOT_FOUND),
    ];
    for (what, uri, headers, status) in cases {
        let reply = send(&site.router, Method::GET, &uri, &headers, None).await;
        assert_eq!(reply.status, status, "{what}: {}", reply.raw);
        assert!(reply.body["type"].as_str().is_some(), "{what}: a problem document: {}", reply.raw);
    }
    // The genuine callback still works once, and the code cannot be replayed
    let done = send(&site.router, Method::GET, &path, &[("cookie", &login_cookie)], None).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.raw);
    let replayed = send(&site.router, Method::GET, &path, &[("cookie", &login_cookie)], None).await;
    assert_eq!(replayed.status, StatusCode::BAD_REQUEST, "{}", replayed.raw);
    assert!(replayed.raw.contains("login-refused"), "{}", replayed.raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idps_own_tokens_are_not_access_tokens_here() {
    let provider = OidcProvider::start(&entra_shaped_users().to_string()).unwrap();
    let site = site(&[("test", &provider)]).await;
    let tokens = crate::upstream_idp::idp_tokens(&provider, "mfa").await;
    for kind in ["id_token", "access_token", "refresh_token"] {
        let Some(token) = tokens[kind].as_str() else { panic!("the IdP issued no {kind}: {tokens}") };
        let bearer = format!("Bearer {token}");
        let reply = send(&site.router, Method::GET, "/api/v1/me", &[("authorization", &bearer)], None).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{kind}: {}", reply.raw);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn administrators_have_the_last_word_over_idp_roles_and_disabled_people_cannot_log_in() {
    let provider = OidcProvider::start(&entra_shaped_users().to_string()).unwrap();
    let site = site(&[("test", &provider)]).await;
    let owner = format!("Bearer {}", site.owner_key);

    // A person with no role at all still manages their own session (and reads their CSRF token again)
    let nobody = site.login("test", &provider, "overage").await;
    let me = send(&site.router, Method::GET, "/api/v1/me", &[("cookie", &nobody.session_cookie)], None).await;
    assert_eq!(me.body["csrf_token"], nobody.body["csrf_token"], "{}", me.raw);
    let sessions =
        send(&site.router, Method::GET, "/api/v1/me/sessions", &[("cookie", &nobody.session_cookie)], None).await;
    assert_eq!(sessions.status, StatusCode::OK, "{}", sessions.raw);

    // An administrator's revocation is not undone by the next login's claims
    let dev = site.login("test", &provider, "roles").await;
    let id = dev.body["principal_id"].as_str().unwrap().to_owned();
    let revoked = send(
        &site.router,
        Method::DELETE,
        &format!("/api/v1/users/{id}/roles/developer?reason=offboarding"),
        &[("authorization", &owner)],
        None,
    )
    .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.raw);
    let again = site.login("test", &provider, "roles").await;
    assert_eq!(again.body["roles"], json!([]), "{}", again.body);

    // Disabled: the live session stops, and a new login is refused with a clear answer
    let disabled = send(
        &site.router,
        Method::POST,
        &format!("/api/v1/users/{id}/disable"),
        &[("authorization", &owner)],
        Some(json!({ "reason": "left" })),
    )
    .await;
    assert_eq!(disabled.status, StatusCode::OK, "{}", disabled.raw);
    let live = send(&site.router, Method::GET, "/api/v1/me", &[("cookie", &again.session_cookie)], None).await;
    assert_eq!(live.status, StatusCode::UNAUTHORIZED);
    let begun = send(&site.router, Method::GET, "/auth/test/login", &[], None).await;
    let login_cookie = cookie_pair(&begun, "mgw_login");
    let back = Browser::new().login(&provider.issuer(), begun.location.as_deref().unwrap(), "roles").await;
    let path = back.strip_prefix("http://127.0.0.1:9").unwrap().to_owned();
    let refused = send(&site.router, Method::GET, &path, &[("cookie", &login_cookie)], None).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.raw);
    assert!(refused.raw.contains("principal-disabled"), "{}", refused.raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_keys_people_by_tenant_and_object_id_and_admits_listed_tenants_and_google_its_domain() {
    let user = |sub: &str, claims: Value| json!({ "password": "pw", "sub": sub, "claims": claims });
    let config = |idp: &str| {
        json!({
            "clients": [{ "client_id": "gateway", "client_secret": "gateway-secret",
                          "redirect_uris": [format!("http://127.0.0.1:9/auth/{idp}/callback")] }],
            "users": {
                "ours": user("pairwise-1", json!({ "tid": "tenant-a", "oid": "object-1", "hd": "example.com" })),
                "ours-again": user("pairwise-2", json!({ "tid": "tenant-a", "oid": "object-1", "hd": "example.com" })),
                "theirs": user("pairwise-3", json!({ "tid": "tenant-b", "oid": "object-9", "hd": "other.com" })),
                "personal": user("pairwise-4", json!({})),
            }
        })
        .to_string()
    };
    let entra = OidcProvider::start(&config("entra")).unwrap();
    let google = OidcProvider::start(&config("google")).unwrap();
    let kinds = [
        ("entra", IdpKind::Entra { allowed_tenants: vec!["tenant-a".into()] }),
        ("google", IdpKind::Google { hosted_domain: "example.com".into() }),
    ];
    let site = site_with(&[("entra", &entra), ("google", &google)], &kinds).await;

    // The same tid + oid under two subjects (Entra's `sub` is per application) is one person
    let first = site.login("entra", &entra, "ours").await;
    let second = site.login("entra", &entra, "ours-again").await;
    assert_eq!(first.body["principal_id"], second.body["principal_id"]);
    // Another tenant, or a token without tid/oid, is refused
    for username in ["theirs", "personal"] {
        let refused = site.attempt("entra", &entra, username).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{username}: {}", refused.raw);
        assert!(refused.raw.contains("not-admitted"), "{}", refused.raw);
    }
    // Google: the Workspace domain only
    site.login("google", &google, "ours").await;
    for username in ["theirs", "personal"] {
        let refused = site.attempt("google", &google, username).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{username}: {}", refused.raw);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entra_multi_tenant_endpoint_admits_listed_tenants_each_by_its_own_issuer() {
    const TENANT_A: &str = "11111111-2222-4333-8444-555555555555";
    const TENANT_B: &str = "99999999-8888-4777-8666-555555555555";
    let user = |sub: &str, claims: Value| json!({ "password": "pw", "sub": sub, "claims": claims });
    let redirects: Vec<String> =
        ["entra", "entra-b"].iter().map(|idp| format!("http://127.0.0.1:9/auth/{idp}/callback")).collect();
    // Tenant A's provider; Entra's /organizations endpoint advertises the issuer with {tenantid}.
    let provider = OidcProvider::start(
        &json!({
            "tenant": TENANT_A,
            "clients": [{ "client_id": "gateway", "client_secret": "gateway-secret", "redirect_uris": redirects }],
            "users": {
                "alice": user("pairwise-a", json!({ "tid": TENANT_A, "oid": "object-a", "roles": ["Gateway.Developer"] })),
                // Issued by tenant A's issuer while claiming tenant B
                "liar": user("pairwise-l", json!({ "tid": TENANT_B, "oid": "object-l" })),
            }
        })
        .to_string(),
    )
    .unwrap();
    let organizations = format!("{}/organizations/v2.0", provider.issuer());
    let entra = |allowed: &[&str]| IdpKind::Entra { allowed_tenants: allowed.iter().map(|t| t.to_string()).collect() };

    // A multi-tenant endpoint without a tenant allowlist does not start
    let open = idp("entra", organizations.clone(), entra(&[]), rules());
    let db = tests::PostgresServer::shared().unwrap().create_database().await.unwrap();
    let config = GatewayConfig { idps: vec![open], ..crate::api_servers::config(&db.url, None) };
    let refused = Gateway::start(&config, None).await.err().expect("a gateway admitting any tenant");
    assert!(format!("{refused:#}").contains("allowed_tenants"), "{refused:#}");

    let site = site_of(vec![
        idp("entra", organizations.clone(), entra(&[TENANT_A, TENANT_B]), rules()),
        idp("entra-b", organizations.clone(), entra(&[TENANT_B]), rules()),
    ])
    .await;
    // A listed tenant's person logs in, keyed by tenant and object id under the tenant's own issuer
    let alice = site.login("entra", &provider, "alice").await;
    assert_eq!(alice.body["roles"], json!([Role::Developer]));
    let tenant_issuer = format!("{}/{TENANT_A}/v2.0", provider.issuer());
    let expected = commands::principals::principal_for(&tenant_issuer, &format!("{TENANT_A}/object-a"));
    assert_eq!(alice.body["principal_id"], json!(expected));
    // A token whose issuer is not its own tenant's is refused, whatever the allowlist says
    let liar = site.attempt("entra", &provider, "liar").await;
    assert_eq!(liar.status, StatusCode::UNAUTHORIZED, "{}", liar.raw);
    assert!(liar.raw.contains("invalid-id-token") && liar.raw.contains(TENANT_B), "{}", liar.raw);
    // A tenant not on the list is not admitted
    let elsewhere = site.attempt("entra-b", &provider, "alice").await;
    assert_eq!(elsewhere.status, StatusCode::FORBIDDEN, "{}", elsewhere.raw);
    assert!(elsewhere.raw.contains("not-admitted"), "{}", elsewhere.raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_people_are_keyed_by_account_id_with_organizations_and_teams_as_groups() {
    let user = |sub: &str, github: Value| json!({ "password": "pw", "sub": sub, "claims": {}, "github": github });
    let provider = OidcProvider::start(
        &json!({
            "clients": [{ "client_id": "gateway", "client_secret": "gateway-secret",
                          "redirect_uris": ["http://127.0.0.1:9/auth/github/callback"],
                          "token_endpoint_auth_method": "client_secret_post" }],
            "users": {
                "octo": user("u1", json!({ "id": 1001, "login": "octocat", "name": "Octo Cat",
                                           "orgs": ["acme"], "teams": ["acme/platform"] })),
                // The same account after renaming its login
                "renamed": user("u2", json!({ "id": 1001, "login": "octo-renamed", "orgs": ["acme"] })),
                // Another account that took over the old login
                "squatter": user("u3", json!({ "id": 3003, "login": "octocat", "orgs": ["acme"] })),
                "outsider": user("u4", json!({ "id": 2002, "login": "out", "orgs": ["elsewhere"] })),
            }
        })
        .to_string(),
    )
    .unwrap();
    let rule = |value: &str, role| RoleRule { source: ClaimSource::Groups, value: value.into(), role };
    let github = IdpKind::Github { api_url: None, allowed_organizations: vec!["ACME".into()] };
    let rules = vec![rule("acme/platform", Role::ServerManager), rule("acme", Role::Developer)];
    let site = site_of(vec![idp("github", provider.issuer(), github, rules)]).await;

    let octo = site.login("github", &provider, "octo").await;
    let mut roles: Vec<String> =
        octo.body["roles"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_owned()).collect();
    roles.sort();
    assert_eq!(roles, ["developer", "server_manager"], "{}", octo.body);
    let me = send(&site.router, Method::GET, "/api/v1/me", &[("cookie", &octo.session_cookie)], None).await;
    assert_eq!(me.body["display_name"], json!("Octo Cat"), "{}", me.raw);
    // The account id, not the login, is the person
    let renamed = site.login("github", &provider, "renamed").await;
    assert_eq!(renamed.body["principal_id"], octo.body["principal_id"]);
    assert_eq!(renamed.body["roles"], json!([Role::Developer]), "team membership gone, role gone");
    // ...whose new name is recorded (UserProfileUpdated) and shown
    let me = send(&site.router, Method::GET, "/api/v1/me", &[("cookie", &renamed.session_cookie)], None).await;
    assert_eq!(me.body["display_name"], json!("octo-renamed"), "{}", me.raw);
    let kinds: Vec<String> =
        sqlx::query_scalar("SELECT event_type FROM es.events WHERE stream_id = $1 ORDER BY stream_revision")
            .bind(format!("principal-{}", octo.body["principal_id"].as_str().unwrap()))
            .fetch_all(site.gateway.state.tables.postgres().unwrap())
            .await
            .unwrap();
    assert_eq!(kinds.iter().filter(|k| *k == "UserProfileUpdated").count(), 1, "{kinds:?}");
    let squatter = site.login("github", &provider, "squatter").await;
    assert_ne!(squatter.body["principal_id"], octo.body["principal_id"]);
    // Only members of the allowed organisation get in
    let outsider = site.attempt("github", &provider, "outsider").await;
    assert_eq!(outsider.status, StatusCode::FORBIDDEN, "{}", outsider.raw);
    assert!(outsider.raw.contains("not-admitted"), "{}", outsider.raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_rotates_the_secret_and_a_reused_secret_or_another_device_revokes_the_session() {
    let provider = OidcProvider::start(&entra_shaped_users().to_string()).unwrap();
    let site = site(&[("test", &provider)]).await;
    let refresh = |cookies: String, csrf: String| {
        let router = site.router.clone();
        async move {
            send(&router, Method::POST, "/auth/refresh", &[("cookie", &cookies), ("x-csrf-token", &csrf)], None).await
        }
    };

    // A login, then a refresh from the same device: a new secret; the old one is dead
    let begun = send(&site.router, Method::GET, "/auth/test/login", &[], None).await;
    let login_cookie = cookie_pair(&begun, "mgw_login");
    let back = Browser::new().login(&provider.issuer(), begun.location.as_deref().unwrap(), "roles").await;
    let path = back.strip_prefix("http://127.0.0.1:9").unwrap().to_owned();
    let done = send(&site.router, Method::GET, &path, &[("cookie", &login_cookie)], None).await;
    let (old, device) = (cookie_pair(&done, "mgw_session"), cookie_pair(&done, "mgw_device"));
    let csrf = done.body["csrf_token"].as_str().unwrap().to_owned();
    let without_csrf = send(&site.router, Method::POST, "/auth/refresh", &[("cookie", &old)], None).await;
    assert_eq!(without_csrf.status, StatusCode::FORBIDDEN, "{}", without_csrf.raw);
    let refreshed = refresh(format!("{old}; {device}"), csrf.clone()).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.raw);
    let new = cookie_pair(&refreshed, "mgw_session");
    assert_ne!(new, old);
    let me = |cookie: String| {
        let router = site.router.clone();
        async move { send(&router, Method::GET, "/api/v1/me", &[("cookie", &cookie)], None).await.status }
    };
    assert_eq!(me(new.clone()).await, StatusCode::OK);
    assert_eq!(me(old.clone()).await, StatusCode::UNAUTHORIZED);

    // Refreshed once more; the secret just replaced, sent again by another tab of the same browser, is
    // answered "retry with the current cookie" and harms nothing
    let csrf2 = refreshed.body["csrf_token"].as_str().unwrap().to_owned();
    let again = refresh(format!("{new}; {device}"), csrf2.clone()).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.raw);
    let newest = cookie_pair(&again, "mgw_session");
    let other_tab = refresh(format!("{new}; {device}"), csrf2).await;
    assert_eq!(other_tab.status, StatusCode::CONFLICT, "{}", other_tab.raw);
    assert_eq!(me(newest.clone()).await, StatusCode::OK);

    // An older secret presented again (a thief's copy): the whole session is revoked, the newest too
    let reused = refresh(format!("{old}; {device}"), csrf).await;
    assert_eq!(reused.status, StatusCode::UNAUTHORIZED, "{}", reused.raw);
    assert!(reused.raw.contains("session-revoked"), "{}", reused.raw);
    assert_eq!(me(newest).await, StatusCode::UNAUTHORIZED);

    // Another login, refreshed from another device: revoked as well
    let second = site.login("test", &provider, "roles").await;
    let csrf = second.body["csrf_token"].as_str().unwrap().to_owned();
    let elsewhere = format!("{}; mgw_device={}", second.session_cookie, uuid::Uuid::now_v7());
    let stolen = refresh(elsewhere, csrf).await;
    assert_eq!(stolen.status, StatusCode::UNAUTHORIZED, "{}", stolen.raw);
    assert_eq!(me(second.session_cookie.clone()).await, StatusCode::UNAUTHORIZED);

    // The trail names both
    let owner = format!("Bearer {}", site.owner_key);
    let trail = tests::eventually(DEADLINE, "the suspicious activity in the trail", || async {
        let trail = send(
            &site.router,
            Method::GET,
            "/api/v1/audit?action=session.suspicious",
            &[("authorization", &owner)],
            None,
        )
        .await;
        let entries = trail.body["entries"].as_array().cloned().unwrap_or_default();
        (entries.len() == 2).then_some(entries)
    })
    .await;
    let kinds: Vec<&str> = trail.iter().filter_map(|e| e["reason"].as_str()).collect();
    assert!(kinds.contains(&"secret_reuse") && kinds.contains(&"device_mismatch"), "{kinds:?}");
}
