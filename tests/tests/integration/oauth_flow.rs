//! An MCP client's authorization through the gateway, with the certified `oidc-provider` (no dynamic
//! registration) as the upstream IdP, on every backend: registration, the consent page, the upstream
//! sign-in, the code with `state` and `iss`, the token for one server, its use at that server's MCP
//! endpoint, and the refusals of the checklist and attack cases on the way (C28–C41, A01, A06, A07,
//! A09, A10, A12, A15, A16, A18, A31, A37).

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use domain::Role;
use domain::identity::{ClaimSource, RoleRule};
use serde_json::{Value, json};
use sha2::Digest;
use tests::OidcProvider;
use tower::ServiceExt;

use crate::api_servers::{Api, start_with};
use crate::conformance::{Backend, on_every_backend};
use crate::support::DEADLINE;
use crate::upstream_idp::{Browser, REDIRECT, entra_shaped_users_for};

const GATEWAY: &str = "http://127.0.0.1:9";
const CLIENT_REDIRECT: &str = "http://127.0.0.1:33418/callback";

struct Answer {
    status: StatusCode,
    location: Option<String>,
    cookies: Vec<String>,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn send(api: &Api, method: Method, uri: &str, headers: &[(&str, &str)], body: Option<String>) -> Answer {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(body.map(Body::from).unwrap_or_else(Body::empty)).unwrap();
    let response = api.router.clone().oneshot(request).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let cookies = headers.get_all(header::SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    let location = headers.get(header::LOCATION).map(|v| v.to_str().unwrap().to_owned());
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    Answer { status, location, cookies, headers, body: String::from_utf8_lossy(&bytes).into_owned() }
}

fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

/// The value of `name` in `url`'s query.
fn query(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url).ok()?.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// The value of the hidden input `name` on a page.
fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker).unwrap_or_else(|| panic!("no {name} on the page: {page}")) + marker.len();
    page[start..].split('"').next().unwrap().to_owned()
}

/// The consent cookie the consent page set (`SameSite=Strict`), as the browser sends it back.
fn consent_cookie(page: &Answer) -> String {
    let set = page.cookies.iter().find(|c| c.starts_with("mgw_consent_")).expect("a consent cookie");
    assert!(set.contains("SameSite=Strict") && set.contains("HttpOnly"), "{set}");
    set.split(';').next().unwrap().to_owned()
}

struct Pkce {
    verifier: String,
    challenge: String,
}

fn new_pkce() -> Pkce {
    let verifier = URL_SAFE_NO_PAD.encode(uuid::Uuid::now_v7().as_bytes()) + &URL_SAFE_NO_PAD.encode([7u8; 24]);
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    Pkce { verifier, challenge }
}

fn authorize_uri(client_id: &str, pkce: &Pkce, resource: &str) -> String {
    format!(
        "/authorize?response_type=code&client_id={client_id}&redirect_uri={}&state=a%2Bb&code_challenge={}\
         &code_challenge_method=S256&scope=mcp%3Atools%20offline_access&resource={}",
        encode(CLIENT_REDIRECT),
        pkce.challenge,
        encode(resource)
    )
}

/// The browser's part: the consent page, approval, the IdP's login form; returns the callback URL the
/// IdP sent the browser to and the binding cookie.
async fn approve_and_sign_in(api: &Api, provider: &OidcProvider, authorize: &str) -> (String, String) {
    let page = send(api, Method::GET, authorize, &[], None).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let consent = form(&[
        ("transaction", &hidden(&page.body, "transaction")),
        ("csrf", &hidden(&page.body, "csrf")),
        ("idp", "test"),
    ]);
    let cookie = consent_cookie(&page);
    let headers = [
        ("content-type", "application/x-www-form-urlencoded"),
        ("cookie", cookie.as_str()),
        ("sec-fetch-site", "same-origin"),
    ];
    let approved = send(api, Method::POST, "/consent", &headers, Some(consent)).await;
    assert_eq!(approved.status, StatusCode::SEE_OTHER, "{}", approved.body);
    let binding = approved.cookies.iter().find(|c| c.starts_with("mgw_oauth_")).expect("a binding cookie");
    let binding = binding.split(';').next().unwrap().to_owned();
    let back = Browser::new().login(&provider.issuer(), approved.location.as_deref().unwrap(), "roles").await;
    (back.strip_prefix(GATEWAY).unwrap_or_else(|| panic!("{back}")).to_owned(), binding)
}

/// A whole authorization up to the code.
async fn code_for(api: &Api, provider: &OidcProvider, client_id: &str, pkce: &Pkce, resource: &str) -> String {
    let (callback, binding) = approve_and_sign_in(api, provider, &authorize_uri(client_id, pkce, resource)).await;
    let back = send(api, Method::GET, &callback, &[("cookie", &binding)], None).await;
    assert_eq!(back.status, StatusCode::SEE_OTHER, "{}", back.body);
    query(back.location.as_deref().unwrap(), "code").expect("a code")
}

/// A whole authorization and its code redeemed: the token response.
async fn tokens_for(api: &Api, provider: &OidcProvider, client_id: &str, pkce: &Pkce, resource: &str) -> Value {
    let code = code_for(api, provider, client_id, pkce, resource).await;
    let (status, tokens, _) = token(
        api,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CLIENT_REDIRECT),
            ("client_id", client_id),
            ("code_verifier", &pkce.verifier),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    tokens
}

async fn token(api: &Api, pairs: &[(&str, &str)]) -> (StatusCode, Value, axum::http::HeaderMap) {
    let answer =
        send(api, Method::POST, "/token", &[("content-type", "application/x-www-form-urlencoded")], Some(form(pairs)))
            .await;
    (answer.status, serde_json::from_str(&answer.body).unwrap_or(Value::Null), answer.headers)
}

/// The gateway's configuration of the test IdP: developers by their `roles` claim.
fn idp_config(provider: &OidcProvider) -> api::oidc::IdpConfig {
    api::oidc::IdpConfig {
        name: "test".into(),
        issuer: provider.issuer(),
        client_id: "gateway".into(),
        client_secret: "gateway-secret".into(),
        scopes: None,
        role_rules: vec![RoleRule {
            source: ClaimSource::Roles,
            value: "Gateway.Developer".into(),
            role: Role::Developer,
        }],
        kind: Default::default(),
    }
}

/// What a streamable HTTP client accepts (MCP transport: both, on every POST).
const ACCEPT_MCP: (&str, &str) = ("accept", "application/json, text/event-stream");

/// An MCP `initialize` request: a call every upstream answers without a session (each opens one).
fn initialize() -> String {
    json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": { "protocolVersion": "2025-06-18",
            "capabilities": {}, "clientInfo": { "name": "test", "version": "1" } } })
    .to_string()
}

/// A gateway with the test IdP, a server only developers may use, and a client registered for it:
/// the gateway, the provider, the client's id, the server's resource and id.
async fn set_up(backend: Backend) -> (Api, OidcProvider, String, String, String) {
    set_up_at(backend, GATEWAY).await
}

/// [`set_up`], for a gateway whose public URL is `origin`.
async fn set_up_at(backend: Backend, origin: &str) -> (Api, OidcProvider, String, String, String) {
    let users = entra_shaped_users_for(&[REDIRECT, &format!("{origin}/oauth/callback/test")]);
    let provider = OidcProvider::start(&users.to_string()).unwrap();
    let idp = idp_config(&provider);
    let api = start_with(backend, |config| {
        config.public_url = Some(origin.to_owned());
        config.idps = vec![idp];
        config.upstream_allowlist = vec!["127.0.0.1".into()];
    })
    .await;
    let upstream = tests::McpServer::shared_everything().unwrap().url();
    let server = json!({ "name": "io.example/gh", "title": "GitHub", "description": "d", "transport": "streamable_http",
                         "url": upstream, "access": { "roles": ["developer"], "tools": { "deny": ["get-env"] } } });
    let created = api.call(Method::POST, "/api/v1/servers", Some(&server.to_string()), &[]).await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let resource = format!("{origin}/servers/{id}/mcp");
    tests::eventually(DEADLINE, "the server in the catalogue and the model", || async {
        let known =
            send(&api, Method::GET, &format!("/.well-known/oauth-protected-resource/servers/{id}/mcp"), &[], None)
                .await;
        let model = api.gateway.state.authz.read().ok()?.server_access(id.parse().ok()?).is_some();
        (known.status == StatusCode::OK && model).then_some(())
    })
    .await;
    let metadata = json!({ "redirect_uris": [CLIENT_REDIRECT], "client_name": "Test <Client>",
                           "grant_types": ["authorization_code", "refresh_token"] });
    let registered =
        send(&api, Method::POST, "/register", &[("content-type", "application/json")], Some(metadata.to_string()))
            .await;
    let client_id = serde_json::from_str::<Value>(&registered.body).unwrap()["client_id"].as_str().unwrap().to_owned();
    (api, provider, client_id, resource, id)
}

async fn an_mcp_client_is_authorized_through_the_upstream_idp_for_one_server(backend: Backend) {
    let (api, provider, client_id, resource, id) = set_up(backend).await;

    // C35, A18: the consent page names the client (escaped) and where the code goes; it is never framed
    // and sets no cookie before approval (C36).
    let pkce = new_pkce();
    let page = send(&api, Method::GET, &authorize_uri(&client_id, &pkce, &resource), &[], None).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("Test &lt;Client&gt;") && !page.body.contains("<Client>"));
    assert!(page.body.contains("127.0.0.1") && page.body.contains("GitHub"));
    assert_eq!(page.headers[header::X_FRAME_OPTIONS], "DENY");
    assert!(page.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("frame-ancestors 'none'"));
    // C36: no binding cookie before consent; only the consent page's own, Strict.
    assert!(page.cookies.iter().all(|c| c.starts_with("mgw_consent_")), "{:?}", page.cookies);
    let cookie = consent_cookie(&page);
    let urlencoded = ("content-type", "application/x-www-form-urlencoded");
    // A15: a consent with another CSRF token is refused, and changes nothing.
    let forged = form(&[("transaction", &hidden(&page.body, "transaction")), ("csrf", "forged"), ("idp", "test")]);
    let refused = send(&api, Method::POST, "/consent", &[urlencoded, ("cookie", &cookie)], Some(forged)).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.location.is_none() && refused.cookies.is_empty());
    // A14, A15: the right form posted from another site (an attacker's own consent page, auto-submitted
    // in the victim's browser): without the page's Strict cookie, or marked cross-site, it is refused.
    let genuine = form(&[
        ("transaction", &hidden(&page.body, "transaction")),
        ("csrf", &hidden(&page.body, "csrf")),
        ("idp", "test"),
    ]);
    let cookieless = send(&api, Method::POST, "/consent", &[urlencoded], Some(genuine.clone())).await;
    assert_eq!(cookieless.status, StatusCode::FORBIDDEN, "{}", cookieless.body);
    let cross_site = [urlencoded, ("cookie", &cookie), ("sec-fetch-site", "cross-site")];
    let cross_site = send(&api, Method::POST, "/consent", &cross_site, Some(genuine)).await;
    assert_eq!(cross_site.status, StatusCode::FORBIDDEN, "{}", cross_site.body);
    assert!(cross_site.location.is_none() && cross_site.cookies.is_empty());

    // The whole flow: consent (303, the binding cookie), the IdP, the callback, the code with the
    // client's state byte for byte and the issuer (C32, C37, C38).
    let (callback, binding) = approve_and_sign_in(&api, &provider, &authorize_uri(&client_id, &pkce, &resource)).await;
    // A16: the callback in a browser without the binding cookie gives no code.
    let stolen = send(&api, Method::GET, &callback, &[], None).await;
    assert_eq!(stolen.status, StatusCode::FORBIDDEN, "{}", stolen.body);
    assert!(stolen.location.is_none());
    // The authorization was taken by that attempt: start again, and come back with the cookie.
    let (callback, binding_again) =
        approve_and_sign_in(&api, &provider, &authorize_uri(&client_id, &pkce, &resource)).await;
    assert_ne!(binding, binding_again);
    let back = send(&api, Method::GET, &callback, &[("cookie", &binding_again)], None).await;
    assert_eq!(back.status, StatusCode::SEE_OTHER, "{}", back.body);
    let location = back.location.unwrap();
    assert!(location.starts_with(&format!("{CLIENT_REDIRECT}?")), "{location}");
    assert_eq!(query(&location, "state").as_deref(), Some("a+b"));
    assert_eq!(query(&location, "iss").as_deref(), Some(GATEWAY));
    assert_eq!(location.matches("iss=").count(), 1);
    let code = query(&location, "code").unwrap();

    // C39: the token, for exactly this server, never cached.
    let redeem = |code: String, verifier: String, redirect: &'static str| {
        let (client_id, resource) = (client_id.clone(), resource.clone());
        let api = &api;
        async move {
            token(
                api,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", redirect),
                    ("client_id", &client_id),
                    ("code_verifier", &verifier),
                    ("resource", &resource),
                ],
            )
            .await
        }
    };
    let (status, tokens, headers) = redeem(code.clone(), pkce.verifier.clone(), CLIENT_REDIRECT).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    assert_eq!((tokens["token_type"].as_str(), tokens["scope"].as_str()), (Some("Bearer"), Some("mcp:tools")));
    assert!(tokens["expires_in"].as_i64().unwrap() <= 900);
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(access.split('.').nth(1).unwrap()).unwrap()).unwrap();
    assert_eq!((payload["aud"].as_str(), payload["iss"].as_str()), (Some(resource.as_str()), Some(GATEWAY)));

    // The token works at its server's MCP endpoint.
    let mcp = format!("/servers/{id}/mcp");
    let initialize = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": { "protocolVersion": "2025-06-18",
                             "capabilities": {}, "clientInfo": { "name": "t", "version": "1" } } });
    let bearer = format!("Bearer {access}");
    let call_headers = [("authorization", bearer.as_str()), ("content-type", "application/json"), ACCEPT_MCP];
    let call = || send(&api, Method::POST, &mcp, &call_headers, Some(initialize.to_string()));
    let answered = call().await;
    assert_eq!(answered.status, StatusCode::OK, "{}", answered.body);

    // A10, C40: the same code again is refused, and what it produced is revoked.
    let (status, replay, _) = redeem(code, pkce.verifier.clone(), CLIENT_REDIRECT).await;
    assert_eq!((status, replay["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{replay}");
    tests::eventually(DEADLINE, "the replayed code's token to be refused", || async {
        (call().await.status == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;

    // A09, A12: a wrong verifier, a wrong redirect URI: invalid_grant, and the code is spent.
    let wrong = new_pkce();
    let code = code_for(&api, &provider, &client_id, &pkce, &resource).await;
    let (status, refused, _) = redeem(code, wrong.verifier, CLIENT_REDIRECT).await;
    assert_eq!((status, refused["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    let code = code_for(&api, &provider, &client_id, &pkce, &resource).await;
    let (status, refused, _) = redeem(code, pkce.verifier.clone(), "http://127.0.0.1:33418/other").await;
    assert_eq!((status, refused["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    // A13: a code redeemed after its 60 seconds: invalid_grant.
    let code = code_for(&api, &provider, &client_id, &pkce, &resource).await;
    api.age_code(&code, 61).await;
    let (status, refused, _) = redeem(code, pkce.verifier.clone(), CLIENT_REDIRECT).await;
    assert_eq!((status, refused["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{refused}");
    // A08, C41: a PKCE downgrade, the verifier left out: invalid_grant.
    let code = code_for(&api, &provider, &client_id, &pkce, &resource).await;
    let (status, refused, _) = token(
        &api,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CLIENT_REDIRECT),
            ("client_id", &client_id),
        ],
    )
    .await;
    assert_eq!((status, refused["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{refused}");
    // A23: an access token presented as a refresh token.
    let (status, refused, _) =
        token(&api, &[("grant_type", "refresh_token"), ("refresh_token", &access), ("client_id", &client_id)]).await;
    assert_eq!((status, refused["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{refused}");
    // C42: an unknown client is invalid_client (401); an unsupported grant is named.
    let (status, unknown, _) = token(
        &api,
        &[("grant_type", "authorization_code"), ("client_id", &uuid::Uuid::now_v7().to_string()), ("code", "x")],
    )
    .await;
    assert_eq!((status, unknown["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")));
    let (status, twice, _) =
        token(&api, &[("grant_type", "password"), ("grant_type", "refresh_token"), ("client_id", &client_id)]).await;
    assert_eq!(
        (status, twice["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request")),
        "a parameter sent twice"
    );
    let (status, password, _) = token(&api, &[("grant_type", "password"), ("client_id", &client_id)]).await;
    assert_eq!((status, password["error"].as_str()), (StatusCode::BAD_REQUEST, Some("unsupported_grant_type")));

    // A06, A01: an unknown client, or a redirect URI it did not register: a page, never a redirect.
    let evil = encode("https://evil.example/cb");
    let unknown = send(
        &api,
        Method::GET,
        &format!("/authorize?response_type=code&client_id={}&redirect_uri={evil}", uuid::Uuid::now_v7()),
        &[],
        None,
    )
    .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert!(unknown.location.is_none());
    let foreign = authorize_uri(&client_id, &pkce, &resource).replace(&encode(CLIENT_REDIRECT), &evil);
    let foreign = send(&api, Method::GET, &foreign, &[], None).await;
    assert_eq!(foreign.status, StatusCode::BAD_REQUEST);
    assert!(foreign.location.is_none());
    let rejections = || async {
        let uri = format!("/api/v1/audit?action=oauth.authorization_rejected&target_id={client_id}");
        api.call(Method::GET, &uri, None, &[]).await.body["entries"].as_array().cloned().unwrap_or_default()
    };
    tests::eventually(DEADLINE, "A01's refusal in the audit trail", || async {
        rejections()
            .await
            .iter()
            .any(|e| e["reason"].as_str().is_some_and(|r| r.contains("redirect URI")))
            .then_some(())
    })
    .await;
    // C30: a loopback redirect URI admits any port, never another path; A05: no other URI at all.
    let other_port = authorize_uri(&client_id, &pkce, &resource).replace("33418", "51234");
    assert_eq!(send(&api, Method::GET, &other_port, &[], None).await.status, StatusCode::OK);
    for other in [
        "http://127.0.0.1:51234/other",
        "http://127.0.0.1:33418/callback/",
        "http://localhost.evil.example:33418/callback",
    ] {
        let uri = authorize_uri(&client_id, &pkce, &resource).replace(&encode(CLIENT_REDIRECT), &encode(other));
        let refused = send(&api, Method::GET, &uri, &[], None).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{other}");
        assert!(refused.location.is_none(), "{other}");
    }
    // C34: no resource named: the umbrella resource, every server the person may use.
    let unnamed = authorize_uri(&client_id, &pkce, &resource).replace(&format!("&resource={}", encode(&resource)), "");
    let unnamed = send(&api, Method::GET, &unnamed, &[], None).await;
    assert_eq!(unnamed.status, StatusCode::OK, "{}", unnamed.body);
    assert!(unnamed.body.contains("every server you may use"), "{}", unnamed.body);
    // A parameter sent twice (RFC 6749 §3.1): which one counts would be a guess; a page, no redirect.
    let twice =
        send(&api, Method::GET, &format!("{}&state=other", authorize_uri(&client_id, &pkce, &resource)), &[], None)
            .await;
    assert_eq!(twice.status, StatusCode::BAD_REQUEST, "{}", twice.body);
    assert!(twice.location.is_none() && twice.body.contains("state is sent more than once"));
    // A07, C31: no PKCE: back to the client with invalid_request, its state and the issuer.
    let plain = authorize_uri(&client_id, &pkce, &resource)
        .replace("code_challenge_method=S256", "code_challenge_method=plain");
    let plain = send(&api, Method::GET, &plain, &[], None).await;
    let location = plain.location.expect("a redirect to the client");
    assert_eq!(query(&location, "error").as_deref(), Some("invalid_request"));
    assert_eq!(
        (query(&location, "state").as_deref(), query(&location, "iss").as_deref()),
        (Some("a+b"), Some(GATEWAY))
    );
    // A state the gateway cannot keep (a NUL) is refused, not a server error.
    let nul = send(
        &api,
        Method::GET,
        &authorize_uri(&client_id, &pkce, &resource).replace("state=a%2Bb", "state=a%00b"),
        &[],
        None,
    )
    .await;
    assert_eq!(nul.status, StatusCode::SEE_OTHER, "{}", nul.body);
    assert_eq!(query(nul.location.as_deref().unwrap(), "error").as_deref(), Some("invalid_request"));
    // A31, C33: a resource that is not this gateway's.
    let target =
        send(&api, Method::GET, &authorize_uri(&client_id, &pkce, "https://evil.example/mcp"), &[], None).await;
    assert_eq!(query(target.location.as_deref().unwrap(), "error").as_deref(), Some("invalid_target"));

    // Every step is in the audit trail.
    for action in [
        "oauth.authorization_started",
        "oauth.consent_granted",
        "oauth.code_issued",
        "oauth.token_issued",
        "oauth.code_replayed",
        "oauth.authorization_rejected",
    ] {
        let uri = format!("/api/v1/audit?action={action}&target_id={client_id}");
        tests::eventually(DEADLINE, action, || async {
            let page = api.call(Method::GET, &uri, None, &[]).await;
            page.body["entries"].as_array().filter(|e| !e.is_empty()).map(|_| ())
        })
        .await;
    }
    let trail = api.call(Method::GET, "/api/v1/audit?action=oauth.", None, &[]).await;
    assert!(!trail.raw.contains(&access), "no token in the trail");
    api.gateway.stop();
}

/// A refresh: the token rotates; two refreshes of one token at once get the same successor (C44); a
/// replaced token used later revokes the grant and its session (C43, A24); `/revoke` ends a grant (C46);
/// a refresh cannot widen the scope or move the resource (A26).
async fn refresh_tokens_rotate_and_a_reused_one_revokes_the_grant(backend: Backend) {
    let (api, provider, client_id, resource, id) = set_up(backend).await;
    let pkce = new_pkce();
    let first = tokens_for(&api, &provider, &client_id, &pkce, &resource).await;
    let rt1 = first["refresh_token"].as_str().expect("a refresh token").to_owned();
    let refresh = |rt: String| {
        let (api, client_id) = (&api, client_id.clone());
        async move {
            token(api, &[("grant_type", "refresh_token"), ("refresh_token", &rt), ("client_id", &client_id)]).await
        }
    };
    // A26: no wider scope, no other resource.
    let (status, wider, _) = token(
        &api,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt1), ("client_id", &client_id), ("scope", "mcp:admin")],
    )
    .await;
    assert_eq!((status, wider["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_scope")), "{wider}");
    // The token was rotated by that refused request: the concurrent-refresh window still answers with its successor.
    let ((s1, a, _), (s2, b, _)) = tokio::join!(refresh(rt1.clone()), refresh(rt1.clone()));
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK), "{a} {b}");
    let rt2 = a["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(b["refresh_token"].as_str(), Some(rt2.as_str()), "concurrent refreshes share the successor");
    assert_ne!(rt2, rt1);
    let access = a["access_token"].as_str().unwrap().to_owned();
    // A refresh keeps the grant's session active (its idle clock starts again), marking it when the last
    // mark is some minutes old, not at every refresh.
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(access.split('.').nth(1).unwrap()).unwrap()).unwrap();
    let sid: uuid::Uuid = claims["sid"].as_str().unwrap().parse().unwrap();
    let sub: uuid::Uuid = claims["sub"].as_str().unwrap().parse().unwrap();
    let stream = eventstore::StreamName::parse(format!("session-{sid}")).unwrap();
    let marks = || async {
        let events = api.events_of(&stream).await;
        events.into_iter().filter(|e| e.event_type == "SessionRefreshed").map(|e| e.data).collect::<Vec<_>>()
    };
    assert!(marks().await.is_empty(), "a session started a moment ago is not marked again");
    // The grant's steps are logged on the grant's own stream, not on one shared by every user of the client.
    let grant_log = eventstore::StreamName::parse(format!("oauth-{sid}")).unwrap();
    let logged: Vec<String> = api.events_of(&grant_log).await.into_iter().map(|e| e.event_type).collect();
    for step in ["AuthorizationCodeIssued", "TokenIssued", "TokenRefreshed"] {
        assert!(logged.iter().any(|t| t == step), "{step} on the grant's log: {logged:?}");
    }
    // Its last activity ten minutes ago, as an idle client's would be.
    let command_id = uuid::Uuid::now_v7();
    let context = commands::servers::CommandContext {
        command_id,
        metadata: eventstore::Metadata::new(command_id, eventstore::Actor::system("test"), chrono::Utc::now()),
    };
    let ten_minutes_ago = chrono::Utc::now() - chrono::Duration::minutes(10);
    assert!(api.gateway.state.principals.mark_session_active(sub, sid, ten_minutes_ago, &context).await.unwrap());
    tests::eventually(DEADLINE, "the model to know the old mark", || async {
        let model = api.gateway.state.authz.read().ok()?;
        (model.session(sid)?.last_active <= ten_minutes_ago).then_some(())
    })
    .await;
    let mcp = format!("/servers/{id}/mcp");
    let ping = initialize();
    let bearer = format!("Bearer {access}");
    let headers = [("authorization", bearer.as_str()), ("content-type", "application/json"), ACCEPT_MCP];
    assert_eq!(send(&api, Method::POST, &mcp, &headers, Some(ping.clone())).await.status, StatusCode::OK);
    let (status, rotated, _) = refresh(rt2.clone()).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let marked = marks().await;
    assert_eq!(marked.len(), 2, "the refresh marked the session active again: {marked:?}");
    let at: Value = serde_json::from_str(&marked[1]).unwrap();
    let at: chrono::DateTime<chrono::Utc> = at["at"].as_str().unwrap().parse().unwrap();
    assert!(chrono::Utc::now() - at < chrono::Duration::minutes(1), "marked now: {at}");
    let rt3 = rotated["refresh_token"].as_str().unwrap().to_owned();

    // Another client cannot revoke this client's access token (RFC 7009 §2.1): it keeps working.
    let other = send(
        &api,
        Method::POST,
        "/register",
        &[("content-type", "application/json")],
        Some(json!({ "redirect_uris": [CLIENT_REDIRECT] }).to_string()),
    )
    .await;
    let other = serde_json::from_str::<Value>(&other.body).unwrap()["client_id"].as_str().unwrap().to_owned();
    let foreign = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("token", access.as_str()), ("client_id", &other)])
        .finish();
    let foreign =
        send(&api, Method::POST, "/revoke", &[("content-type", "application/x-www-form-urlencoded")], Some(foreign))
            .await;
    assert_eq!(foreign.status, StatusCode::OK);
    let still = send(&api, Method::POST, &mcp, &headers, Some(ping.clone())).await;
    assert_eq!(still.status, StatusCode::OK, "{} {:?}", still.body, still.headers.get(header::WWW_AUTHENTICATE));
    // C46: the client revokes its refresh token: the grant and the session end.
    let form = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("token", rt3.as_str()), ("client_id", &client_id)])
        .finish();
    let revoked =
        send(&api, Method::POST, "/revoke", &[("content-type", "application/x-www-form-urlencoded")], Some(form)).await;
    assert_eq!(revoked.status, StatusCode::OK);
    let (status, gone, _) = refresh(rt3).await;
    assert_eq!((status, gone["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    tests::eventually(DEADLINE, "the revoked grant's access token to be refused", || async {
        (send(&api, Method::POST, &mcp, &headers, Some(ping.clone())).await.status == StatusCode::UNAUTHORIZED)
            .then_some(())
    })
    .await;

    // A24: a new grant; its first refresh token used again after rotation and the grace window.
    let second = tokens_for(&api, &provider, &client_id, &pkce, &resource).await;
    let old = second["refresh_token"].as_str().unwrap().to_owned();
    let (_, next, _) = refresh(old.clone()).await;
    let newer = next["refresh_token"].as_str().unwrap().to_owned();
    // Past the grace window, as a thief replaying the old token would be: moved back in the store.
    api.age_refresh_rotation(&old, 60).await;
    let (status, reuse, _) = refresh(old).await;
    assert_eq!((status, reuse["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{reuse}");
    let (status, after, _) = refresh(newer).await;
    assert_eq!(
        (status, after["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "the whole grant is revoked: {after}"
    );
    let uri = format!("/api/v1/audit?action=oauth.refresh_token_reused&target_id={client_id}");
    tests::eventually(DEADLINE, "the reuse in the audit trail", || async {
        api.call(Method::GET, &uri, None, &[]).await.body["entries"].as_array().filter(|e| !e.is_empty()).map(|_| ())
    })
    .await;
    api.gateway.stop();
}

/// Two instances on one database: authorize on the first, the IdP's callback and the token on the
/// second, a refresh on the first; no instance keeps any of the flow's state to itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_instance_serves_any_step_of_an_authorization() {
    let (first, provider, client_id, resource, _) = set_up(Backend::Postgres).await;
    let url = first.db.as_ref().unwrap().url.clone();
    let mut config = crate::api_servers::config(&url, None);
    config.public_url = Some(GATEWAY.into());
    config.idps = vec![idp_config(&provider)];
    let second = crate::api_servers::another_instance(&first, config).await;
    let pkce = new_pkce();
    let (callback, binding) =
        approve_and_sign_in(&first, &provider, &authorize_uri(&client_id, &pkce, &resource)).await;
    let back = send(&second, Method::GET, &callback, &[("cookie", &binding)], None).await;
    assert_eq!(back.status, StatusCode::SEE_OTHER, "{}", back.body);
    let code = query(back.location.as_deref().unwrap(), "code").unwrap();
    let (status, tokens, _) = token(
        &second,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CLIENT_REDIRECT),
            ("client_id", &client_id),
            ("code_verifier", &pkce.verifier),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let (status, refreshed, _) =
        token(&first, &[("grant_type", "refresh_token"), ("refresh_token", refresh), ("client_id", &client_id)]).await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    second.gateway.stop();
    first.gateway.stop();
}

/// One person authorizing several clients at the same moment (each sign-in appends to the person's
/// stream): every authorization gets its code, none is refused for contention.
async fn one_person_authorizing_several_clients_at_once_gets_every_code(backend: Backend) {
    let (api, provider, client_id, resource, _) = set_up(backend).await;
    let pkce = new_pkce();
    let codes =
        futures_util::future::join_all((0..6).map(|_| code_for(&api, &provider, &client_id, &pkce, &resource))).await;
    assert_eq!(codes.len(), 6);
    api.gateway.stop();
}

/// A grant keeps the IdP's refresh token of its sign-in, sealed: past the IdP's own token lifetime a
/// refresh asks the IdP first; while it renews, the grant goes on; once it refuses (here it lost all it
/// issued), the grant and its session end.
async fn past_the_idps_token_lifetime_a_refresh_asks_the_idp_and_its_refusal_ends_the_grant(backend: Backend) {
    let (api, provider, client_id, resource, id) = set_up(backend).await;
    let pkce = new_pkce();
    let tokens = tokens_for(&api, &provider, &client_id, &pkce, &resource).await;
    let refresh = |rt: String| {
        let (api, client_id) = (&api, client_id.clone());
        async move {
            token(api, &[("grant_type", "refresh_token"), ("refresh_token", &rt), ("client_id", &client_id)]).await
        }
    };
    let first = tokens["refresh_token"].as_str().unwrap().to_owned();
    api.age_renewal(&first).await;
    let (status, renewed, _) = refresh(first).await;
    assert_eq!(status, StatusCode::OK, "the IdP renewed the sign-in: {renewed}");
    let second = renewed["refresh_token"].as_str().unwrap().to_owned();
    let access = renewed["access_token"].as_str().unwrap().to_owned();
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(access.split('.').nth(1).unwrap()).unwrap()).unwrap();
    let mcp = format!("/servers/{id}/mcp");
    let ping = initialize();
    let bearer = format!("Bearer {access}");
    let headers = [("authorization", bearer.as_str()), ("content-type", "application/json"), ACCEPT_MCP];
    assert_eq!(send(&api, Method::POST, &mcp, &headers, Some(ping.clone())).await.status, StatusCode::OK);

    provider.restart().unwrap();
    api.age_renewal(&second).await;
    let (status, refused, _) = refresh(second).await;
    assert_eq!((status, refused["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{refused}");
    tests::eventually(DEADLINE, "the grant's access token to be refused", || async {
        (send(&api, Method::POST, &mcp, &headers, Some(ping.clone())).await.status == StatusCode::UNAUTHORIZED)
            .then_some(())
    })
    .await;
    let uri = format!("/api/v1/audit?action=session.revoked&target_id={}", claims["sid"].as_str().unwrap());
    let entry = tests::eventually(DEADLINE, "the session's end in the audit trail", || async {
        api.call(Method::GET, &uri, None, &[]).await.body["entries"].as_array().and_then(|e| e.first().cloned())
    })
    .await;
    assert_eq!(entry["reason"], "the identity provider no longer renews the sign-in");
    api.gateway.stop();
}

/// An operator lists the clients and revokes one: its access token is refused from the next request,
/// its refresh token no longer redeems, and it cannot start an authorization again (A29).
async fn an_operator_revokes_a_client_and_everything_it_holds_stops_working(backend: Backend) {
    let (api, provider, client_id, resource, id) = set_up(backend).await;
    let pkce = new_pkce();
    let tokens = tokens_for(&api, &provider, &client_id, &pkce, &resource).await;
    let bearer = format!("Bearer {}", tokens["access_token"].as_str().unwrap());
    let headers = [("authorization", bearer.as_str()), ("content-type", "application/json"), ACCEPT_MCP];
    let ping = initialize();
    let mcp = format!("/servers/{id}/mcp");
    let listed = tests::eventually(DEADLINE, "the client in the list", || async {
        let page = api.call(Method::GET, "/api/v1/oauth/clients", None, &[]).await;
        let clients = page.body["clients"].as_array()?.clone();
        clients.into_iter().find(|c| c["client_id"] == json!(client_id))
    })
    .await;
    assert_eq!((listed["name"].as_str(), listed["revoked"].as_bool()), (Some("Test <Client>"), Some(false)));
    assert_eq!(send(&api, Method::POST, &mcp, &headers, Some(ping.clone())).await.status, StatusCode::OK);

    let revoked =
        api.call(Method::DELETE, &format!("/api/v1/oauth/clients/{client_id}?reason=lost%20laptop"), None, &[]).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.raw);
    let refused = send(&api, Method::POST, &mcp, &headers, Some(ping)).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let (status, answer, _) =
        token(&api, &[("grant_type", "refresh_token"), ("refresh_token", refresh), ("client_id", &client_id)]).await;
    assert_eq!((status, answer["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")));
    let again = send(&api, Method::GET, &authorize_uri(&client_id, &pkce, &resource), &[], None).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert!(again.location.is_none());
    let unknown = api.call(Method::DELETE, &format!("/api/v1/oauth/clients/{}", uuid::Uuid::now_v7()), None, &[]).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let uri = format!("/api/v1/audit?action=client.revoked&target_id={client_id}");
    let entry = tests::eventually(DEADLINE, "the revocation in the audit trail", || async {
        api.call(Method::GET, &uri, None, &[]).await.body["entries"].as_array().and_then(|e| e.first().cloned())
    })
    .await;
    assert_eq!(entry["reason"], "lost laptop");
    api.gateway.stop();
}

/// A person lists what each client holds for them and takes a grant back: the client's access token is
/// refused, its refresh token no longer redeems, and no one else can see or revoke the grant.
async fn a_person_sees_and_takes_back_what_each_client_holds(backend: Backend) {
    let (api, provider, client_id, resource, id) = set_up(backend).await;
    let pkce = new_pkce();
    // Two authorizations of the same person (the IdP's test user), each its own grant.
    let mut grants = Vec::new();
    for _ in 0..2 {
        let tokens = tokens_for(&api, &provider, &client_id, &pkce, &resource).await;
        let access = tokens["access_token"].as_str().unwrap().to_owned();
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(access.split('.').nth(1).unwrap()).unwrap()).unwrap();
        grants.push((access, tokens["refresh_token"].as_str().unwrap().to_owned(), claims));
    }
    let (taken, kept) = (&grants[0], &grants[1]);
    let person: uuid::Uuid = taken.2["sub"].as_str().unwrap().parse().unwrap();
    assert_eq!(kept.2["sub"], taken.2["sub"]);
    // The person at the REST API, signed in through the second grant's sign-in (as the console would be).
    let rest = api
        .gateway
        .state
        .tokens
        .issue(person, kept.2["sid"].as_str().unwrap(), &[], chrono::Duration::minutes(5), chrono::Utc::now())
        .unwrap();
    let rest = rest.expose().to_owned();
    let listed = tests::eventually(DEADLINE, "both grants in the person's list", || async {
        let page = api.call_as(&rest, Method::GET, "/api/v1/me/grants", None, &[]).await;
        page.body["grants"].as_array().filter(|g| g.len() == 2).cloned()
    })
    .await;
    let grant = listed.iter().find(|g| g["id"] == taken.2["sid"]).expect("the first grant, by its session");
    assert_eq!(grant["client_id"], json!(client_id));
    assert_eq!(grant["client_name"], "Test <Client>");
    assert_eq!((grant["resource"].as_str(), grant["scope"].as_str()), (Some(resource.as_str()), Some("mcp:tools")));
    let grant_id = grant["id"].as_str().unwrap().to_owned();
    // Not someone else's to see or take.
    let owners = api.call(Method::GET, "/api/v1/me/grants", None, &[]).await;
    assert_eq!(owners.body["grants"], json!([]), "{}", owners.raw);
    let foreign = api.call(Method::DELETE, &format!("/api/v1/me/grants/{grant_id}"), None, &[]).await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND, "{}", foreign.raw);

    let mcp = format!("/servers/{id}/mcp");
    let ping = initialize();
    let call = |access: &str| {
        let bearer = format!("Bearer {access}");
        let ping = ping.clone();
        let (api, mcp) = (&api, &mcp);
        async move {
            let headers = [("authorization", bearer.as_str()), ("content-type", "application/json"), ACCEPT_MCP];
            send(api, Method::POST, mcp, &headers, Some(ping)).await.status
        }
    };
    assert_eq!(call(&taken.0).await, StatusCode::OK);
    let revoked = api.call_as(&rest, Method::DELETE, &format!("/api/v1/me/grants/{grant_id}"), None, &[]).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{}", revoked.raw);
    assert_eq!(call(&taken.0).await, StatusCode::UNAUTHORIZED, "the revoked grant's token");
    assert_eq!(call(&kept.0).await, StatusCode::OK, "the other grant's token");
    let (status, answer, _) =
        token(&api, &[("grant_type", "refresh_token"), ("refresh_token", &taken.1), ("client_id", &client_id)]).await;
    assert_eq!((status, answer["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{answer}");
    let after = api.call_as(&rest, Method::GET, "/api/v1/me/grants", None, &[]).await;
    assert_eq!(after.body["grants"].as_array().map(Vec::len), Some(1), "{}", after.raw);
    let unknown = format!("/api/v1/me/grants/{}", uuid::Uuid::now_v7());
    assert_eq!(api.call_as(&rest, Method::DELETE, &unknown, None, &[]).await.status, StatusCode::NOT_FOUND);
    let uri = format!("/api/v1/audit?action=session.revoked&target_id={grant_id}");
    let entry = tests::eventually(DEADLINE, "the revocation in the audit trail", || async {
        api.call(Method::GET, &uri, None, &[]).await.body["entries"].as_array().and_then(|e| e.first().cloned())
    })
    .await;
    assert_eq!(entry["reason"], "grant revoked by its holder");
    api.gateway.stop();
}

/// A page of a [`DocumentSite`]: path, status, headers, body.
type SitePage = (&'static str, u16, Vec<(&'static str, String)>, String);

/// Documents served on a loopback port, as a client's web site would: path → (status, headers, body);
/// counts the requests, so a test can tell that a refused URL was never fetched.
struct DocumentSite {
    origin: String,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl DocumentSite {
    async fn start_on(port: u16, pages: Vec<SitePage>) -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let origin = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let pages = std::sync::Arc::new(pages);
        let counted = hits.clone();
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
            let (pages, counted) = (pages.clone(), counted.clone());
            async move {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some((_, status, headers, body)) = pages.iter().find(|(path, ..)| *path == uri.path()) else {
                    return axum::response::Response::builder().status(404).body(Body::empty()).unwrap();
                };
                let mut response = axum::response::Response::builder().status(*status);
                for (name, value) in headers {
                    response = response.header(*name, value.as_str());
                }
                response.body(Body::from(body.clone())).unwrap()
            }
        });
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { origin, hits, task }
    }

    fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Clients that do not register: one whose id is the URL of its metadata document (C26, C27; A32–A34),
/// fetched through the SSRF guard, and one the operator configured. Both authorize and redeem like a
/// registered one, are recorded, listed and revocable; every refusal is a page, never a redirect.
async fn clients_known_by_a_metadata_document_or_by_configuration_authorize_like_registered_ones(backend: Backend) {
    // The documents are on 127.0.0.1, which the operator trusts here (as an internal client's site).
    let json = || vec![("content-type", "application/json".to_owned())];
    let site_port = tests::free_port().unwrap();
    let site_origin = format!("http://127.0.0.1:{site_port}");
    let document = |path: &str, extra: Value| {
        let mut doc = json!({ "client_id": format!("{site_origin}{path}"), "client_name": "Doc <Client>",
                              "redirect_uris": ["http://localhost/callback", CLIENT_REDIRECT] });
        doc.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        doc.to_string()
    };
    let pages = vec![
        ("/client.json", 200, json(), document("/client.json", json!({}))),
        ("/mismatch.json", 200, json(), document("/other.json", json!({}))),
        (
            "/secret.json",
            200,
            json(),
            document("/secret.json", json!({ "token_endpoint_auth_method": "client_secret_post" })),
        ),
        ("/large.json", 200, json(), document("/large.json", json!({ "software_id": "x".repeat(6_000) }))),
        ("/html.json", 200, vec![("content-type", "text/html".to_owned())], "<html>not json</html>".to_owned()),
        ("/moved.json", 302, vec![("location", format!("{site_origin}/client.json"))], String::new()),
    ];
    // The site listens on the port its documents name.
    let site = DocumentSite::start_on(site_port, pages).await;
    let users = entra_shaped_users_for(&[REDIRECT, &format!("{GATEWAY}/oauth/callback/test")]);
    let provider = OidcProvider::start(&users.to_string()).unwrap();
    let idp = idp_config(&provider);
    let api = start_with(backend, |config| {
        config.public_url = Some(GATEWAY.to_owned());
        config.idps = vec![idp];
        config.upstream_allowlist = vec!["127.0.0.1".into()];
        config.oauth_clients = vec![api::ConfiguredClient {
            client_id: "vscode".into(),
            client_name: Some("VS Code".into()),
            redirect_uris: vec![CLIENT_REDIRECT.into()],
            application_type: None,
            client_secret_sha256: None,
        }];
    })
    .await;
    let pkce = new_pkce();
    let umbrella = GATEWAY;

    // C26, C27: the document client's consent page names it, where the code goes, and warns that it goes
    // to a program on this computer.
    let doc_client = format!("{}/client.json", site.origin);
    let page = send(&api, Method::GET, &authorize_uri(&encode(&doc_client), &pkce, umbrella), &[], None).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("Doc &lt;Client&gt;") && page.body.contains("127.0.0.1"), "{}", page.body);
    assert!(page.body.contains("a program on this computer"), "the localhost warning");
    // The whole flow, and the token redeemed by the URL id.
    for client_id in [doc_client.as_str(), "vscode"] {
        let code = code_for(&api, &provider, &encode(client_id), &pkce, umbrella).await;
        let (status, tokens, _) = token(
            &api,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", CLIENT_REDIRECT),
                ("client_id", client_id),
                ("code_verifier", &pkce.verifier),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{client_id}: {tokens}");
        let claims: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD.decode(tokens["access_token"].as_str().unwrap().split('.').nth(1).unwrap()).unwrap(),
        )
        .unwrap();
        assert_eq!(claims["client_id"], client_id);
    }
    // Both are recorded clients, listed for operators, and revocable.
    let listed = tests::eventually(DEADLINE, "both clients listed", || async {
        let page = api.call(Method::GET, "/api/v1/oauth/clients", None, &[]).await;
        let clients = page.body["clients"].as_array()?.clone();
        let named = |id: &str| clients.iter().find(|c| c["client_id"] == id).cloned();
        Some((named(&doc_client)?, named("vscode")?))
    })
    .await;
    assert_eq!((listed.0["name"].as_str(), listed.1["name"].as_str()), (Some("Doc <Client>"), Some("VS Code")));
    // The UUID naming a configured client's stream is not a name of that client.
    let alias = commands::oauth_clients::client_uuid("vscode").to_string();
    let aliased = send(&api, Method::GET, &authorize_uri(&alias, &pkce, umbrella), &[], None).await;
    assert_eq!(aliased.status, StatusCode::BAD_REQUEST, "{}", aliased.body);
    let revoked = api.call(Method::DELETE, &format!("/api/v1/oauth/clients/{}", encode(&doc_client)), None, &[]).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.raw);
    let again = send(&api, Method::GET, &authorize_uri(&encode(&doc_client), &pkce, umbrella), &[], None).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST, "a revoked document client: {}", again.body);
    assert!(again.location.is_none());

    // A33: documents that do not name themselves, want a secret, are too large, are not JSON, or redirect:
    // a page, never a redirect, and the refusal in the audit trail.
    for (path, why) in [
        ("/mismatch.json", "not the URL it was fetched from"),
        ("/secret.json", "no shared secret"),
        ("/large.json", "larger than"),
        ("/html.json", "not a JSON object"),
        ("/moved.json", "redirects are not followed"),
    ] {
        let client_id = format!("{}{path}", site.origin);
        let refused = send(&api, Method::GET, &authorize_uri(&encode(&client_id), &pkce, umbrella), &[], None).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{path}: {}", refused.body);
        assert!(refused.location.is_none() && refused.body.contains(why), "{path}: {}", refused.body);
        // The trail names a client by the UUID of its streams (a URL id's is derived from the URL).
        let stream_id = commands::oauth_clients::client_uuid(&client_id);
        let uri = format!("/api/v1/audit?action=oauth.authorization_rejected&target_id={stream_id}");
        tests::eventually(DEADLINE, "the refusal in the audit trail", || async {
            api.call(Method::GET, &uri, None, &[]).await.body["entries"]
                .as_array()
                .filter(|e| !e.is_empty())
                .map(|_| ())
        })
        .await;
    }
    api.gateway.stop();

    // A32: a gateway that trusts no internal host: a client id pointing inside the network is refused
    // before any connection (the site on 127.0.0.1 sees no request), whatever form the address takes.
    let strict = start_with(backend, |config| {
        config.public_url = Some(GATEWAY.to_owned());
        config.upstream_allowlist = Vec::new();
    })
    .await;
    let before = site.hits();
    for client_id in [
        format!("https://127.0.0.1:{site_port}/client.json"),
        format!("{}/client.json", site.origin),
        format!("https://localhost:{site_port}/client.json"),
        "https://10.0.0.5/c.json".to_owned(),
        "https://169.254.169.254/latest/meta-data".to_owned(),
        "https://[::ffff:10.0.0.1]/c.json".to_owned(),
        "https://2130706433/c.json".to_owned(),
        "https://app.example.com/".to_owned(),
        "https://app.example.com/a/../c.json".to_owned(),
    ] {
        let refused = send(&strict, Method::GET, &authorize_uri(&encode(&client_id), &pkce, umbrella), &[], None).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{client_id}: {}", refused.body);
        assert!(refused.location.is_none(), "{client_id}");
    }
    assert_eq!(site.hits(), before, "no request reached the internal site");
    strict.gateway.stop();
    site.task.abort();
}

/// The official TypeScript SDK's client (`@modelcontextprotocol/sdk`, installed by `.ci/run` from
/// `tests/peers`) against a gateway listening on a real port: it discovers, registers, authorizes (the
/// script plays the person at the consent page and the IdP's form), calls, refreshes, revokes, and is
/// refused afterwards.
async fn the_typescript_sdk_client_authorizes_calls_refreshes_and_is_refused_after_revocation(backend: Backend) {
    an_sdk_client_authorizes_calls_refreshes_and_is_refused_after_revocation(backend, SdkClient::TypeScript).await;
}

/// The official Python SDK's client (PyPI `mcp`, in the virtual environment `.ci/run` prepares, named by
/// `MGW_PYTHON`) through the same flow: it speaks the newest protocol first and falls back to
/// `initialize` with the gateway.
async fn the_python_sdk_client_authorizes_calls_refreshes_and_is_refused_after_revocation(backend: Backend) {
    an_sdk_client_authorizes_calls_refreshes_and_is_refused_after_revocation(backend, SdkClient::Python).await;
}

#[derive(Clone, Copy)]
enum SdkClient {
    TypeScript,
    Python,
}

/// A Python with the `mcp` SDK: `MGW_PYTHON` (as `.ci/run` sets it), else a virtual environment made for
/// it in the build's temporary directory on first use.
fn sdk_python() -> std::path::PathBuf {
    static PYTHON: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let has_it = |python: &std::path::Path| {
                std::process::Command::new(python)
                    .args(["-c", "import mcp, httpx2"])
                    .output()
                    .is_ok_and(|o| o.status.success())
            };
            if let Ok(python) = std::env::var("MGW_PYTHON")
                && has_it(std::path::Path::new(&python))
            {
                return python.into();
            }
            let venv = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("mcp-sdk-venv");
            let python = venv.join("bin/python");
            if !has_it(&python) {
                let made = std::process::Command::new("python3").args(["-m", "venv"]).arg(&venv).status().unwrap();
                assert!(made.success(), "python3 -m venv (Debian: python3-venv)");
                let pip = venv.join("bin/pip");
                let installed =
                    std::process::Command::new(pip).args(["install", "--quiet", "mcp==2.3.0"]).status().unwrap();
                assert!(installed.success(), "pip install mcp==2.3.0");
            }
            python
        })
        .clone()
}

async fn an_sdk_client_authorizes_calls_refreshes_and_is_refused_after_revocation(backend: Backend, client: SdkClient) {
    let port = tests::free_port().unwrap();
    let origin = format!("http://127.0.0.1:{port}");
    let (api, _provider, _, _, id) = set_up_at(backend, &origin).await;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let app = api.router.clone().into_make_service_with_connect_info::<std::net::SocketAddr>();
    let serving = tokio::spawn(async move { axum::serve(listener, app).await });
    let peers = tests::installed_peers().unwrap();
    let mcp_url = format!("{origin}/servers/{id}/mcp");
    let mut command = match client {
        SdkClient::TypeScript => {
            let mut node = tokio::process::Command::new("node");
            node.arg(peers.join("mcp-ts-client.mjs"));
            node
        }
        SdkClient::Python => {
            let mut python = tokio::process::Command::new(sdk_python());
            python.arg(peers.join("mcp-py-client.py"));
            python
        }
    };
    let run = command.args([mcp_url.as_str(), "roles", "pw"]).current_dir(&peers).kill_on_drop(true).output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), run)
        .await
        .expect("the client finishes within a minute")
        .unwrap();
    serving.abort();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let steps: std::collections::HashMap<String, Value> = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|step| Some((step["step"].as_str()?.to_owned(), step)))
        .collect();
    let report = format!("{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the SDK client failed:\n{report}");
    assert_eq!(steps["registered"]["auth_method"], "none", "{report}");
    assert_eq!(steps["authorized"]["scope"], "mcp:tools", "{report}");
    assert_eq!(steps["authorized"]["has_refresh_token"], true, "{report}");
    // The upstream's tools, through the proxy (server-everything has more than ten).
    assert!(steps["called"]["tools"].as_u64().is_some_and(|n| n >= 10), "{report}");
    // A tool called through the proxy, recorded with the client that called it.
    assert!(steps["called"]["echo"].as_str().is_some_and(|e| e.contains("sdk")), "{report}");
    // A tool the server's rules deny: the client gets the JSON-RPC error.
    assert_eq!(steps["refused"]["refused"], true, "{report}");
    assert_eq!(steps["refused"]["code"], -32001, "{report}");
    // A long call's progress notifications reach the client while it runs (the answer streamed as SSE).
    assert!(steps["streamed"]["progress"].as_u64().is_some_and(|n| n >= 1), "{report}");
    assert!(steps["streamed"]["text"].as_str().is_some_and(|t| t.contains("completed")), "{report}");
    if matches!(client, SdkClient::TypeScript) {
        // The session ended by the client (DELETE), the transport forgets its id.
        assert_eq!(steps["ended"]["session"], Value::Null, "{report}");
    }
    let client_id = steps["registered"]["client_id"].clone();
    tests::eventually(DEADLINE, "the call in the audit trail, with its client", || async {
        let page = api.call(Method::GET, "/api/v1/audit?action=tool.called", None, &[]).await;
        page.body["entries"].as_array()?.iter().any(|e| e["changes"]["client_id"] == client_id).then_some(())
    })
    .await;
    let refreshed = &steps["refreshed"];
    let renewed = refreshed["new_access_token"].as_bool().or(refreshed["new_refresh_token"].as_bool());
    assert_eq!(renewed, Some(true), "{report}");
    assert_eq!(steps["revoked"]["status"], 200, "{report}");
    assert_eq!(steps["after_revocation"]["refused"], true, "{report}");
    api.gateway.stop();
}

on_every_backend!(
    the_typescript_sdk_client_authorizes_calls_refreshes_and_is_refused_after_revocation,
    the_python_sdk_client_authorizes_calls_refreshes_and_is_refused_after_revocation,
    an_mcp_client_is_authorized_through_the_upstream_idp_for_one_server,
    an_operator_revokes_a_client_and_everything_it_holds_stops_working,
    a_person_sees_and_takes_back_what_each_client_holds,
    one_person_authorizing_several_clients_at_once_gets_every_code,
    past_the_idps_token_lifetime_a_refresh_asks_the_idp_and_its_refusal_ends_the_grant,
    clients_known_by_a_metadata_document_or_by_configuration_authorize_like_registered_ones,
    refresh_tokens_rotate_and_a_reused_one_revokes_the_grant,
);
