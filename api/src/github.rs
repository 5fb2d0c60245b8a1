//! GitHub as an identity provider. GitHub OAuth apps are not OpenID providers: there is no ID token, so
//! the person is whoever GitHub's `/user` API says the access token belongs to. People are keyed by the
//! numeric account `id` (a login can be renamed and then taken by somebody else), and their
//! organisations and teams (`org`, `org/team`) become the `groups` the role rules read.

use oauth2::basic::{BasicClient, BasicErrorResponse};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope, TokenResponse, TokenUrl,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::oidc::{IdpConfig, OidcError, PendingLogin, VerifiedLogin, send};

/// github.com; any other issuer is a GitHub Enterprise Server.
const GITHUB_COM: &str = "https://github.com";
/// The REST API version the responses are read as.
const API_VERSION: &str = "2022-11-28";
/// One page of organisations or teams (GitHub's largest).
const PAGE: &str = "per_page=100";

/// The GitHub REST API base for `issuer`: `api.github.com`, or `/api/v3` on an Enterprise Server.
pub(crate) fn default_api_url(issuer: &str) -> String {
    let issuer = issuer.trim_end_matches('/');
    if issuer == GITHUB_COM { "https://api.github.com".to_owned() } else { format!("{issuer}/api/v3") }
}

/// The OAuth client: authorization and token endpoints set.
type GithubClient = BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

fn client(config: &IdpConfig, redirect_uri: String) -> Result<GithubClient, OidcError> {
    let bad = |e: &dyn std::fmt::Display| OidcError::Config { idp: config.name.clone(), reason: e.to_string() };
    let issuer = config.issuer.trim_end_matches('/');
    Ok(BasicClient::new(ClientId::new(config.client_id.clone()))
        .set_client_secret(ClientSecret::new(config.client_secret.clone()))
        .set_auth_uri(AuthUrl::new(format!("{issuer}/login/oauth/authorize")).map_err(|e| bad(&e))?)
        .set_token_uri(TokenUrl::new(format!("{issuer}/login/oauth/access_token")).map_err(|e| bad(&e))?)
        .set_redirect_uri(RedirectUrl::new(redirect_uri).map_err(|e| bad(&e))?)
        // GitHub reads the client's credentials from the form, as its documentation shows.
        .set_auth_type(AuthType::RequestBody))
}

/// Begins a login: the authorization URL (code flow, PKCE S256, state) and what the callback checks.
pub(crate) fn begin(
    config: &IdpConfig,
    scopes: Vec<String>,
    redirect_uri: String,
    expires: i64,
) -> Result<(String, PendingLogin), OidcError> {
    let client = client(config, redirect_uri)?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state) = client
        .authorize_url(CsrfToken::new_random)
        .add_scopes(scopes.into_iter().map(Scope::new))
        .set_pkce_challenge(challenge)
        .url();
    let pending = PendingLogin {
        idp: config.name.clone(),
        state: state.secret().clone(),
        verifier: verifier.secret().clone(),
        // No ID token, so nothing carries a nonce; the state and PKCE bind the code to this login.
        nonce: String::new(),
        expires,
        redirect_uri: None,
    };
    Ok((url.to_string(), pending))
}

#[derive(Deserialize)]
struct User {
    id: u64,
    login: String,
    name: Option<String>,
    email: Option<String>,
}

#[derive(Deserialize)]
struct Organization {
    login: String,
}

#[derive(Deserialize)]
struct Team {
    slug: String,
    organization: Organization,
}

/// Completes a login: redeems `code` (once, with the PKCE verifier), then asks the API who the token
/// belongs to and, when `with_groups`, which organisations and teams they are in.
pub(crate) async fn complete(
    http: &reqwest::Client,
    config: &IdpConfig,
    api_url: &str,
    with_groups: bool,
    redirect_uri: String,
    pending: &PendingLogin,
    code: &str,
) -> Result<VerifiedLogin, OidcError> {
    let upstream = |reason: String| OidcError::Upstream { idp: config.name.clone(), reason };
    let client = client(config, redirect_uri)?;
    let send_with = {
        let http = http.clone();
        move |request| send(http.clone(), request)
    };
    let response = client
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier.clone()))
        .request_async(&send_with)
        .await
        .map_err(|e| match e {
            RequestTokenError::ServerResponse(refusal) => OidcError::Refused(refusal.to_string()),
            // GitHub answers a bad code with 200 and an error body.
            RequestTokenError::Parse(_, body) => match serde_json::from_slice::<BasicErrorResponse>(&body) {
                Ok(refusal) => OidcError::Refused(refusal.to_string()),
                Err(_) => upstream("the token response did not parse".into()),
            },
            other => upstream(format!("token request: {other}")),
        })?;
    let token = response.access_token().secret();
    let api = api_url.trim_end_matches('/');
    let user: User = get(http, config, &format!("{api}/user"), token).await?;
    let mut groups = Vec::new();
    if with_groups {
        let orgs: Vec<Organization> = get_all(http, config, api, &format!("{api}/user/orgs?{PAGE}"), token).await?;
        let teams: Vec<Team> = get_all(http, config, api, &format!("{api}/user/teams?{PAGE}"), token).await?;
        groups.extend(orgs.into_iter().map(|o| o.login));
        groups.extend(teams.into_iter().map(|t| format!("{}/{}", t.organization.login, t.slug)));
    }
    Ok(VerifiedLogin {
        issuer: config.issuer.trim_end_matches('/').to_owned(),
        subject: user.id.to_string(),
        display_name: user.name.clone().unwrap_or_else(|| user.login.clone()),
        email: user.email,
        // GitHub does not say how the person authenticated: never counts as a second factor here.
        amr: Vec::new(),
        claims: serde_json::json!({ "id": user.id, "login": user.login, "groups": groups }),
        // GitHub's OAuth app tokens do not expire: nothing to renew.
        renewal: None,
    })
}

/// Most pages of organisations or teams read (100 each): beyond them the login fails rather than
/// mapping roles from a partial list.
const MAX_PAGES: usize = 10;

/// Every page of a list, following GitHub's `Link: <…>; rel="next"` (only to URLs under the API).
async fn get_all<T: DeserializeOwned>(
    http: &reqwest::Client,
    config: &IdpConfig,
    api: &str,
    first: &str,
    token: &str,
) -> Result<Vec<T>, OidcError> {
    let mut all = Vec::new();
    let mut next = Some(first.to_owned());
    for _ in 0..MAX_PAGES {
        let Some(url) = next.take() else { return Ok(all) };
        let response = send_get(http, config, &url, token).await?;
        next = next_page(response.headers()).filter(|n| n.starts_with(&format!("{api}/")));
        let page: Vec<T> = response.json().await.map_err(|e| upstream(config, format!("GitHub API: {e}")))?;
        all.extend(page);
    }
    match next {
        None => Ok(all),
        Some(_) => Err(upstream(config, format!("more than {MAX_PAGES} pages of organisations or teams"))),
    }
}

/// The `rel="next"` URL of a `Link` header.
fn next_page(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let link = headers.get(reqwest::header::LINK)?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params.split(';').any(|p| p.trim() == r#"rel="next""#).then(|| url.trim().trim_matches(['<', '>']).to_owned())
    })
}

fn upstream(config: &IdpConfig, reason: String) -> OidcError {
    OidcError::Upstream { idp: config.name.clone(), reason }
}

/// A GET on the GitHub API with the person's token.
async fn get<T: DeserializeOwned>(
    http: &reqwest::Client,
    config: &IdpConfig,
    url: &str,
    token: &str,
) -> Result<T, OidcError> {
    let response = send_get(http, config, url, token).await?;
    response.json().await.map_err(|e| upstream(config, format!("GitHub API: {e}")))
}

/// Sends a GET on the GitHub API; a non-success status is an error.
async fn send_get(
    http: &reqwest::Client,
    config: &IdpConfig,
    url: &str,
    token: &str,
) -> Result<reqwest::Response, OidcError> {
    let upstream = |reason: String| OidcError::Upstream { idp: config.name.clone(), reason };
    let response = http
        .get(url)
        .bearer_auth(token)
        .header(reqwest::header::ACCEPT, "application/vnd.github+json")
        .header(reqwest::header::USER_AGENT, "mcp-registry-gateway")
        .header("x-github-api-version", API_VERSION)
        .send()
        .await
        .map_err(|e| upstream(format!("GitHub API: {e}")))?;
    let status = response.status();
    if !status.is_success() {
        return Err(upstream(format!("GitHub API {}: {status}", response.url().path())));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_page_is_read_from_the_link_header() {
        let mut headers = reqwest::header::HeaderMap::new();
        let link = r#"<https://api.github.com/user/orgs?page=2>; rel="next", <https://api.github.com/user/orgs?page=5>; rel="last""#;
        headers.insert(reqwest::header::LINK, link.parse().unwrap());
        assert_eq!(next_page(&headers).as_deref(), Some("https://api.github.com/user/orgs?page=2"));
        headers
            .insert(reqwest::header::LINK, r#"<https://api.github.com/user/orgs?page=1>; rel="prev""#.parse().unwrap());
        assert_eq!(next_page(&headers), None);
    }
}
