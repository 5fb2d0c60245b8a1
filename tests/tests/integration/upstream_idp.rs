//! The upstream IdP the identity tests log in through: the certified `oidc-provider`, without dynamic
//! registration, with users whose claims take the shapes Entra ID sends. This drives its authorization
//! code flow with PKCE headlessly, as the gateway's login tests will, and checks what its ID tokens
//! carry.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::Digest;
use tests::OidcProvider;

pub(crate) const REDIRECT: &str = "http://127.0.0.1:9/auth/test/callback";

/// Users with roles in each place Entra puts them, a groups-overage user, and one who logged in with MFA.
pub(crate) fn entra_shaped_users() -> Value {
    entra_shaped_users_for(&[REDIRECT])
}

/// The same users, for a client registered with `redirects`.
pub(crate) fn entra_shaped_users_for(redirects: &[&str]) -> Value {
    let user =
        |sub: &str, amr: &[&str], claims: Value| json!({ "password": "pw", "sub": sub, "amr": amr, "claims": claims });
    json!({
        "clients": [{ "client_id": "gateway", "client_secret": "gateway-secret", "redirect_uris": redirects }],
        "users": {
            "roles": user("sub-roles", &["pwd"], json!({ "name": "Rola", "email": "rola@example.com", "roles": ["Gateway.Developer"] })),
            "approles": user("sub-approles", &["pwd"], json!({ "name": "Apra", "appRoles": ["Gateway.Developer"] })),
            "app_roles": user("sub-app-roles", &["pwd"], json!({ "name": "Appa", "app_roles": ["Gateway.Developer"] })),
            "groups": user("sub-groups", &["pwd"], json!({ "name": "Grou", "groups": ["6f1c1b3e-0000-4000-8000-000000000001"] })),
            "overage": user("sub-overage", &["pwd"], json!({
                "name": "Over",
                "_claim_names": { "groups": "src1" },
                "_claim_sources": { "src1": { "endpoint": "https://graph.microsoft.com/v1.0/users/x/getMemberObjects" } },
            })),
            "mfa": user("sub-mfa", &["pwd", "mfa"], json!({ "name": "Mfa", "roles": ["Gateway.Admin"] })),
        }
    })
}

/// A browser without a browser: follows the provider's redirects by hand with its cookies, submits the
/// login form, and stops at the redirect to the client (whose URL carries the code).
pub(crate) struct Browser {
    client: reqwest::Client,
    cookies: BTreeMap<String, String>,
}

impl Browser {
    pub(crate) fn new() -> Self {
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Self { client, cookies: BTreeMap::new() }
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> reqwest::Response {
        let cookie = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
        let response = request.header("cookie", cookie).send().await.unwrap();
        for set in response.headers().get_all("set-cookie") {
            let pair = set.to_str().unwrap().split(';').next().unwrap();
            if let Some((name, value)) = pair.split_once('=') {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        response
    }

    /// Follows redirects from `url`, logging in as `username` at the login form, until a redirect leaves
    /// the provider; returns that URL.
    pub(crate) async fn login(&mut self, issuer: &str, url: &str, username: &str) -> String {
        let mut next = url.to_owned();
        for _ in 0..10 {
            let response = if next.contains("/interaction/") && !next.ends_with("/login") {
                // The login page: post the form.
                let page = self.send(self.client.get(&next)).await;
                assert!(page.status().is_success(), "login page: {}", page.status());
                let form = [("username", username), ("password", "pw")];
                self.send(self.client.post(format!("{next}/login")).form(&form)).await
            } else {
                self.send(self.client.get(&next)).await
            };
            let location = response.headers().get("location").map(|l| l.to_str().unwrap().to_owned());
            let Some(location) = location else { panic!("no redirect from {next}: {}", response.status()) };
            let location = if location.starts_with('/') { format!("{issuer}{location}") } else { location };
            if !location.starts_with(issuer) {
                return location;
            }
            next = location;
        }
        panic!("too many redirects")
    }
}

/// The IdP's own tokens for `username` (ID token, access token, refresh token): what a confused or
/// malicious client might present to the gateway.
pub(crate) async fn idp_tokens(provider: &OidcProvider, username: &str) -> Value {
    let issuer = provider.issuer();
    let verifier = URL_SAFE_NO_PAD.encode([9u8; 32]);
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    let redirect = url::form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>();
    let authorize = format!(
        "{issuer}/auth?client_id=gateway&response_type=code&scope=openid%20offline_access&prompt=consent&redirect_uri={redirect}&code_challenge={challenge}&code_challenge_method=S256&state=s&nonce=n"
    );
    let back = Browser::new().login(&issuer, &authorize, username).await;
    redeem(&format!("{issuer}/token"), &query(&back, "code").unwrap(), &verifier).await
}

/// The gateway client's token request for `code` with the PKCE `verifier`: the provider's JSON answer.
async fn redeem(token_endpoint: &str, code: &str, verifier: &str) -> Value {
    reqwest::Client::new()
        .post(token_endpoint)
        .basic_auth("gateway", Some("gateway-secret"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn query(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url).ok()?.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_idp_logs_users_in_with_pkce_and_sends_the_entra_claim_shapes() {
    let provider = OidcProvider::start(&entra_shaped_users().to_string()).unwrap();
    let issuer = provider.issuer();
    let http = reqwest::Client::new();
    let discovery: Value =
        http.get(format!("{issuer}/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    assert!(discovery.get("registration_endpoint").is_none(), "no dynamic registration");
    assert_eq!(discovery["code_challenge_methods_supported"], json!(["S256"]));

    let mut claims_of = BTreeMap::new();
    for username in ["roles", "approles", "app_roles", "groups", "overage", "mfa"] {
        let verifier = URL_SAFE_NO_PAD.encode([7u8; 32]);
        let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
        let authorize = format!(
            "{}?client_id=gateway&response_type=code&scope=openid%20email%20profile&redirect_uri={}&code_challenge={challenge}&code_challenge_method=S256&state=st-{username}&nonce=n-{username}",
            discovery["authorization_endpoint"].as_str().unwrap(),
            url::form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>(),
        );
        let back = Browser::new().login(&issuer, &authorize, username).await;
        assert!(back.starts_with(REDIRECT), "{back}");
        assert_eq!(query(&back, "state").as_deref(), Some(format!("st-{username}").as_str()));
        let code = query(&back, "code").unwrap();
        // Without the verifier the code is refused (PKCE); with it, it buys tokens.
        let form = |verifier: &str| {
            vec![
                ("grant_type", "authorization_code".to_owned()),
                ("code", code.clone()),
                ("redirect_uri", REDIRECT.to_owned()),
                ("code_verifier", verifier.to_owned()),
            ]
        };
        let token_endpoint = discovery["token_endpoint"].as_str().unwrap();
        let wrong = http
            .post(token_endpoint)
            .basic_auth("gateway", Some("gateway-secret"))
            .form(&form("x".repeat(43).as_str()))
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 400);
        // The failed attempt consumed the code: log in again for a fresh one.
        let back = Browser::new().login(&issuer, &authorize, username).await;
        let tokens = redeem(token_endpoint, &query(&back, "code").unwrap(), &verifier).await;
        let id_token = tokens["id_token"].as_str().unwrap_or_else(|| panic!("{tokens}"));
        let payload = id_token.split('.').nth(1).unwrap();
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert_eq!(claims["nonce"], json!(format!("n-{username}")));
        claims_of.insert(username, claims);
    }
    assert_eq!(claims_of["roles"]["roles"], json!(["Gateway.Developer"]));
    assert_eq!(claims_of["approles"]["appRoles"], json!(["Gateway.Developer"]));
    assert_eq!(claims_of["app_roles"]["app_roles"], json!(["Gateway.Developer"]));
    assert_eq!(claims_of["groups"]["groups"], json!(["6f1c1b3e-0000-4000-8000-000000000001"]));
    assert!(claims_of["overage"].get("groups").is_none());
    assert_eq!(claims_of["overage"]["_claim_names"], json!({ "groups": "src1" }));
    assert_eq!(claims_of["mfa"]["amr"], json!(["pwd", "mfa"]));
    // And the gateway's role rules read them as the identity step requires
    use domain::Role;
    use domain::identity::{ClaimSource, RoleRule, map_roles};
    let rules = [
        RoleRule { source: ClaimSource::Roles, value: "Gateway.Developer".into(), role: Role::Developer },
        RoleRule { source: ClaimSource::Roles, value: "Gateway.Admin".into(), role: Role::Admin },
        RoleRule {
            source: ClaimSource::Groups,
            value: "6f1c1b3e-0000-4000-8000-000000000001".into(),
            role: Role::ServerManager,
        },
    ];
    let roles = |user: &str| map_roles(&rules, &claims_of[user]).roles.into_iter().collect::<Vec<_>>();
    for user in ["roles", "approles", "app_roles"] {
        assert_eq!(roles(user), [Role::Developer], "{user}");
    }
    assert_eq!(roles("groups"), [Role::ServerManager]);
    assert!(roles("overage").is_empty());
    assert!(map_roles(&rules, &claims_of["overage"]).groups_overage);
    assert_eq!(roles("mfa"), [Role::Admin]);
}
