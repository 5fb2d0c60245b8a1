//! The authorization endpoint and what follows it in the browser: `/authorize` checks the client, its
//! redirect URI, PKCE and the resource, and shows the gateway's own consent page; `POST /consent`
//! (CSRF-checked) sends an approving person to the upstream IdP, with a browser-binding cookie set only
//! now; `/oauth/callback/{idp}` takes the authorization once, checks the binding and the IdP, signs the
//! person in, and sends the client its code with `state` and `iss` (RFC 9207).
//!
//! Until the client and its redirect URI are known to be the client's, errors are pages here, never
//! redirects (RFC 6749 §4.1.2.1: the gateway is no open redirector); after, they go to the client.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use commands::servers::CommandContext;
use domain::oauth::{
    AuthorizationCodeIssued, AuthorizationEvent, AuthorizationRejected, AuthorizationStarted, ConsentGiven, MCP_SCOPE,
    RegisteredMetadata,
};
use eventstore::Actor;
use rand::Rng;

use crate::html_page::{html, page};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::clients::Lookup;
use super::flow_store::{self, Kept};
use super::record;
use crate::auth::Origin;
use crate::oidc::PendingLogin;
use crate::state::AppState;

/// How long an authorization may take, from `/authorize` to the IdP's callback.
const AUTHORIZATION_MINUTES: i64 = 10;
/// The sealing context of an authorization's upstream login.
const UPSTREAM_CONTEXT: &str = "oauth:upstream-login";
/// How long a code is good for.
pub(crate) const CODE_SECONDS: i64 = 60;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/authorize", get(authorize))
        .route("/consent", post(consent))
        .route("/oauth/callback/{idp}", get(callback))
}

/// An authorization in progress, as the gateway keeps it between the steps.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Authorization {
    pub(crate) client_id: String,
    pub(crate) client_name: String,
    pub(crate) redirect_uri: String,
    pub(crate) state: Option<String>,
    pub(crate) code_challenge: String,
    pub(crate) scope: String,
    pub(crate) resource: String,
    pub(crate) target: String,
    /// SHA-256 (hex) of the consent form's CSRF token.
    pub(crate) csrf_digest: String,
    /// SHA-256 (hex) of the consent cookie: the browser that was shown the page is the one that answers.
    #[serde(default)]
    pub(crate) consent_digest: String,
    /// SHA-256 (hex) of the browser-binding cookie, once consent is given.
    #[serde(default)]
    pub(crate) binding_digest: Option<String>,
    /// The upstream login, once begun, sealed (its PKCE verifier and nonce are secrets).
    #[serde(default)]
    pub(crate) upstream: Option<domain::Sealed>,
}

/// A code waiting for `/token`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Code {
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    pub(crate) code_challenge: String,
    pub(crate) scope: String,
    pub(crate) resource: String,
    pub(crate) principal_id: Uuid,
    pub(crate) session_id: Uuid,
    /// When the session ends: the grant's refresh tokens end with it.
    pub(crate) session_expires_at: chrono::DateTime<Utc>,
    /// What renews the sign-in at the IdP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) renewal: Option<super::refresh_store::SealedRenewal>,
}

/// A random secret: 32 bytes, base64url.
pub(crate) fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn hex_digest(secret: &str) -> String {
    hex::encode(flow_store::digest(secret))
}

fn equal(a: &str, b: &str) -> bool {
    crate::constant_time::equal(a.as_bytes(), b.as_bytes())
}

/// An error shown in the browser: the request cannot be sent back to any client.
fn error_page(status: StatusCode, message: &str) -> Response {
    page(status, "Authorization refused", &format!("<p>{}</p>", html(message)))
}

/// The client's redirect URI with `parameters`, `state` and `iss` added (each once: RFC 9207).
fn back_to_client(redirect_uri: &str, state: Option<&str>, issuer: &str, parameters: &[(&str, &str)]) -> Response {
    let Ok(mut url) = url::Url::parse(redirect_uri) else {
        return error_page(StatusCode::BAD_REQUEST, "the redirect URI is not a URL");
    };
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| !["code", "state", "iss", "error", "error_description"].contains(&k.as_ref()))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    {
        let mut query = url.query_pairs_mut();
        query.clear();
        for (k, v) in &kept {
            query.append_pair(k, v);
        }
        for (k, v) in parameters {
            query.append_pair(k, v);
        }
        if let Some(state) = state {
            query.append_pair("state", state);
        }
        query.append_pair("iss", issuer);
    }
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(location) = HeaderValue::from_str(url.as_str()) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn context(origin: &Origin, actor: Actor) -> CommandContext {
    let command_id = Uuid::now_v7();
    CommandContext { command_id, metadata: origin.metadata(actor, command_id) }
}

/// The resource a request names, canonical, with the name of what it stands for: the umbrella (the
/// gateway, when none is named) or one registered server (RFC 8707; C33, C34).
async fn resource(state: &AppState, named: Option<&str>) -> Result<(String, String), String> {
    let issuer = state.tokens.issuer();
    let Some(named) = named else { return Ok((issuer.to_owned(), "every server you may use".into())) };
    // What the client named goes into the refusal (and its event) cleaned and cut: it is anybody's text.
    let shown = domain::text::clean_line(named, 200).unwrap_or_default();
    let url = url::Url::parse(named).map_err(|_| "the resource is not an absolute URI".to_owned())?;
    if url.fragment().is_some() {
        return Err("the resource has a fragment".into());
    }
    // Scheme and host compare without case and the default port drops out (the parser does both);
    // a lone `/` is the empty path.
    let canonical = url.as_str().trim_end_matches('/');
    if canonical == issuer {
        return Ok((issuer.to_owned(), "every server you may use".into()));
    }
    let id = canonical
        .strip_prefix(&format!("{issuer}/servers/"))
        .and_then(|rest| rest.strip_suffix("/mcp"))
        .and_then(|id| id.parse::<Uuid>().ok())
        .ok_or_else(|| format!("{shown} is not a resource of this gateway"))?;
    match state.registry.get(id).await {
        Ok(Some(server)) => Ok((format!("{issuer}/servers/{id}/mcp"), server.title.unwrap_or(server.name))),
        Ok(None) => Err(format!("{shown} is not a registered server")),
        Err(_) => Err("the catalogue is unreachable".into()),
    }
}

/// The query's parameters, each at most once (RFC 6749 §3.1); `Err` says which was repeated.
fn parameters(raw: Option<String>) -> Result<std::collections::HashMap<String, String>, String> {
    crate::params::unique_pairs(raw.unwrap_or_default().as_bytes())
        .map_err(|name| format!("{name} is sent more than once"))
}

/// A PKCE challenge: the base64url SHA-256 of a verifier, 43 characters.
fn is_challenge(challenge: &str) -> bool {
    challenge.len() == 43 && challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[utoipa::path(get, path = "/authorize", operation_id = "oauth_authorize", tag = "oauth",
    description = "The authorization endpoint (OAuth 2.1, PKCE S256 required): the consent page, or an error page when the client or its redirect URI is unknown, or a redirect to the client with `error`, `state` and `iss`.",
    params(("client_id" = String, Query), ("redirect_uri" = Option<String>, Query), ("response_type" = String, Query), ("state" = Option<String>, Query), ("code_challenge" = String, Query), ("code_challenge_method" = String, Query), ("scope" = Option<String>, Query), ("resource" = Option<String>, Query)),
    responses(
        (status = 200, description = "the consent page", content_type = "text/html"),
        (status = 303, description = "back to the client with an error"),
        (status = 400, description = "an unknown client or redirect URI: a page, never a redirect", content_type = "text/html"),
        (status = 429, description = "too many clients this gateway has not seen (metadata documents) from one address: a page", content_type = "text/html"),
        (status = 503, description = "the store is unreachable", content_type = "text/html"),
    ))]
pub(crate) async fn authorize(State(state): State<AppState>, origin: Origin, RawQuery(query): RawQuery) -> Response {
    let query = match parameters(query) {
        Ok(query) => query,
        Err(repeated) => return error_page(StatusCode::BAD_REQUEST, &repeated),
    };
    let get = |name: &str| query.get(name).map(String::as_str).filter(|v| !v.is_empty());
    let Some(client_id) = get("client_id") else {
        return error_page(StatusCode::BAD_REQUEST, "the request names no client (client_id)");
    };
    // A client the gateway has not seen, known by a URL: fetching its document (and recording it, or
    // its refusal) is work anybody can ask for, so it is bounded per address as registration is.
    let unseen_document = domain::oauth::is_document_client_id(client_id)
        && state.authz.read().map(|model| model.client(client_id).is_none()).unwrap_or(true);
    if unseen_document
        && let Some(ip) = origin.source_ip
        && state.rate_limits.admit_address(crate::rate_limit::RouteGroup::Registration, ip).is_err()
    {
        return error_page(StatusCode::TOO_MANY_REQUESTS, "too many new clients from this address; try again later");
    }
    let client = match super::clients::find(&state, client_id, true).await {
        Lookup::Active(client) => client,
        Lookup::Refused(why) => {
            let event = AuthorizationEvent::Rejected(AuthorizationRejected {
                client_id: domain::text::clean_line(client_id, 200).unwrap_or_default(),
                error: "invalid_client".to_owned(),
                reason: why.clone(),
            });
            record(&state, &context(&origin, Actor::system("oauth-authorization")), event).await;
            return error_page(StatusCode::BAD_REQUEST, &why);
        }
        Lookup::Unknown => {
            return error_page(StatusCode::BAD_REQUEST, "the client is unknown; it must register again");
        }
        Lookup::Unavailable => {
            return error_page(StatusCode::SERVICE_UNAVAILABLE, "the gateway cannot reach its store; try again");
        }
    };
    let metadata: &RegisteredMetadata = &client.metadata;
    let redirect_uri = match get("redirect_uri") {
        Some(asked) if metadata.redirect_uris.iter().any(|r| r.admits(asked)) => asked.to_owned(),
        Some(_) => {
            // Never a redirect to it (RFC 9700 §4.1); recorded, as a probe with a real client's id.
            let why = "the redirect URI is not one the client registered";
            let event = AuthorizationEvent::Rejected(AuthorizationRejected {
                client_id: client_id.to_owned(),
                error: "invalid_request".to_owned(),
                reason: why.to_owned(),
            });
            record(&state, &context(&origin, Actor::system("oauth-authorization")), event).await;
            return error_page(StatusCode::BAD_REQUEST, why);
        }
        None if metadata.redirect_uris.len() == 1 => metadata.redirect_uris[0].as_str().to_owned(),
        None => return error_page(StatusCode::BAD_REQUEST, "the client registered several redirect URIs: name one"),
    };
    let issuer = state.tokens.issuer().to_owned();
    let client_state = get("state").map(str::to_owned);
    let reject = |error: &'static str, reason: String| {
        let state = state.clone();
        let (origin, client_id, redirect_uri, client_state, issuer) =
            (origin.clone(), client_id.to_owned(), redirect_uri.clone(), client_state.clone(), issuer.clone());
        async move {
            let event = AuthorizationEvent::Rejected(AuthorizationRejected {
                client_id: client_id.clone(),
                error: error.to_owned(),
                reason: reason.clone(),
            });
            record(&state, &context(&origin, Actor::system("oauth-authorization")), event).await;
            back_to_client(
                &redirect_uri,
                client_state.as_deref(),
                &issuer,
                &[("error", error), ("error_description", &reason)],
            )
        }
    };
    // The client's state comes back byte for byte; kept meanwhile, it is bounded text.
    if query.get("state").is_some_and(|s| s.len() > 2_048 || s.chars().any(char::is_control)) {
        return reject("invalid_request", "state is at most 2048 bytes without control characters".into()).await;
    }
    if get("response_type") != Some("code") {
        return reject("unsupported_response_type", "response_type is code".into()).await;
    }
    let challenge = match (get("code_challenge"), get("code_challenge_method")) {
        (Some(challenge), Some("S256")) if is_challenge(challenge) => challenge.to_owned(),
        _ => {
            return reject(
                "invalid_request",
                "PKCE is required: code_challenge with code_challenge_method=S256".into(),
            )
            .await;
        }
    };
    let (resource, target) = match resource(&state, get("resource")).await {
        Ok(found) => found,
        Err(reason) => return reject("invalid_target", reason).await,
    };
    let idps = state.idps.names();
    if idps.is_empty() {
        return reject("temporarily_unavailable", "no identity provider is configured to sign people in".into()).await;
    }
    let csrf = random_secret();
    let transaction = random_secret();
    let consent_cookie = random_secret();
    let authorization = Authorization {
        client_id: client_id.to_owned(),
        client_name: metadata.client_name.clone().unwrap_or_else(|| client_id.to_owned()),
        redirect_uri: redirect_uri.clone(),
        state: client_state.clone(),
        code_challenge: challenge,
        // The one scope there is; unknown ones are ignored rather than failed (clients send guesses).
        scope: MCP_SCOPE.to_owned(),
        resource: resource.clone(),
        target: target.clone(),
        csrf_digest: hex_digest(&csrf),
        consent_digest: hex_digest(&consent_cookie),
        binding_digest: None,
        upstream: None,
    };
    let expires = Utc::now() + chrono::Duration::minutes(AUTHORIZATION_MINUTES);
    let event = AuthorizationEvent::Started(AuthorizationStarted {
        client_id: client_id.to_owned(),
        redirect_uri: redirect_uri.clone(),
        scope: authorization.scope.clone(),
        resource,
        resource_absent: get("resource").is_none(),
    });
    // The authorization kept and its event recorded at once: two commits, waited for together.
    let recorded_as = context(&origin, Actor::system("oauth-authorization"));
    let (kept, ()) = tokio::join!(
        flow_store::put(&state.tables, Kept::Authorization, &transaction, &authorization, expires),
        record(&state, &recorded_as, event),
    );
    if kept.is_err() {
        return error_page(StatusCode::SERVICE_UNAVAILABLE, "the gateway cannot reach its store; try again");
    }
    let mut response = consent_page(&authorization, &transaction, &csrf, &idps);
    // The form's answer must come from this browser, from this page: a page of another site can post
    // an attacker's own form, but the browser sends a Strict cookie only with the gateway's own requests.
    let cookie =
        state.cookies.set_strict(&consent_cookie_name(&transaction), &consent_cookie, AUTHORIZATION_MINUTES * 60);
    if let Ok(cookie) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// The consent cookie of the authorization behind `transaction`.
fn consent_cookie_name(transaction: &str) -> String {
    format!("consent_{}", &hex_digest(transaction)[..16])
}

fn consent_page(authorization: &Authorization, transaction: &str, csrf: &str, idps: &[String]) -> Response {
    let host = url::Url::parse(&authorization.redirect_uri)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| authorization.redirect_uri.clone());
    let loopback = ["localhost", "127.0.0.1", "[::1]"].contains(&host.as_str());
    let warning = if loopback {
        "<p><strong>The code goes to a program on this computer.</strong> Approve only if you started this \
         sign-in from an application you trust.</p>"
    } else {
        ""
    };
    let choices: String = idps
        .iter()
        .map(|idp| {
            format!(
                "<button type=\"submit\" name=\"idp\" value=\"{0}\">Approve and sign in with {0}</button>",
                html(idp)
            )
        })
        .collect();
    let body = format!(
        "<p>An application asks to use MCP servers through this gateway on your behalf.</p>\
         <dl><dt>Application</dt><dd>{name}</dd><dt>Client id</dt><dd>{id}</dd>\
         <dt>Sends you back to</dt><dd>{host}</dd><dt>Access</dt><dd>{scope}</dd><dt>Servers</dt><dd>{target}</dd></dl>\
         {warning}\
         <form method=\"post\" action=\"/consent\">\
         <input type=\"hidden\" name=\"transaction\" value=\"{transaction}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         {choices}<button type=\"submit\" name=\"action\" value=\"deny\">Deny</button></form>",
        name = html(&authorization.client_name),
        id = html(&authorization.client_id),
        host = html(&host),
        scope = html(&authorization.scope),
        target = html(&authorization.target),
    );
    page(StatusCode::OK, "Allow access?", &body)
}

/// The consent form as posted.
struct ConsentForm {
    transaction: String,
    csrf: String,
    action: Option<String>,
    idp: Option<String>,
}

impl ConsentForm {
    fn parse(body: &[u8]) -> Option<Self> {
        let fields: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(body).into_owned().collect();
        Some(Self {
            transaction: fields.get("transaction")?.clone(),
            csrf: fields.get("csrf")?.clone(),
            action: fields.get("action").cloned(),
            idp: fields.get("idp").cloned(),
        })
    }
}

/// The name of the cookie that binds the authorization behind `upstream_state` to this browser.
fn binding_cookie(state: &AppState, upstream_state: &str) -> String {
    state.cookies.name(&format!("oauth_{}", &hex_digest(upstream_state)[..16]))
}

#[utoipa::path(post, path = "/consent", operation_id = "oauth_consent", tag = "oauth",
    description = "The consent page's form (CSRF-checked): approve, with the IdP to sign in at, or deny. 303 to the IdP (setting the browser-binding cookie) or back to the client with `access_denied`.",
    request_body(content = Object, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "to the IdP, or back to the client"),
        (status = 400, description = "an unknown or expired authorization, or a bad CSRF token: a page", content_type = "text/html"),
        (status = 403, description = "the answer did not come from the browser that was shown the page: a page", content_type = "text/html"),
        (status = 500, description = "the sign-in could not be prepared (sealing failed): a page", content_type = "text/html"),
        (status = 502, description = "the IdP cannot be reached: a page", content_type = "text/html"),
        (status = 503, description = "the store is unreachable", content_type = "text/html"),
    ))]
pub(crate) async fn consent(
    State(state): State<AppState>,
    origin: Origin,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case("application/x-www-form-urlencoded")
    });
    let Some(form) = form.then(|| ConsentForm::parse(&body)).flatten() else {
        return error_page(StatusCode::BAD_REQUEST, "the consent form is incomplete");
    };
    let authorization: Authorization = match flow_store::peek(&state.tables, Kept::Authorization, &form.transaction)
        .await
    {
        Ok(Some(found)) => found,
        Ok(None) => {
            return error_page(StatusCode::BAD_REQUEST, "this authorization is unknown or has expired; start again");
        }
        Err(_) => return error_page(StatusCode::SERVICE_UNAVAILABLE, "the gateway cannot reach its store; try again"),
    };
    if !equal(&hex_digest(&form.csrf), &authorization.csrf_digest) {
        return error_page(StatusCode::BAD_REQUEST, "the consent form was not the one this gateway showed");
    }
    // The browser that answers is the one that was shown the page, from the gateway's own page.
    let same_browser = crate::cookies::cookie(&headers, &state.cookies.name(&consent_cookie_name(&form.transaction)))
        .is_some_and(|value| equal(&hex_digest(value), &authorization.consent_digest));
    let cross_site =
        headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()).is_some_and(|site| site != "same-origin");
    if !same_browser || cross_site {
        return error_page(StatusCode::FORBIDDEN, "the answer to this consent page did not come from it");
    }
    // Taken now: a second submission of the same form finds nothing.
    let Ok(Some(authorization)) =
        flow_store::take::<Authorization>(&state.tables, Kept::Authorization, &form.transaction).await
    else {
        return error_page(StatusCode::BAD_REQUEST, "this authorization was answered already");
    };
    let issuer = state.tokens.issuer().to_owned();
    let (client_id, resource) = (authorization.client_id.clone(), authorization.resource.clone());
    let given = |idp: Option<String>| ConsentGiven { client_id: client_id.clone(), resource: resource.clone(), idp };
    let actor = Actor::system("oauth-consent");
    if form.action.as_deref() == Some("deny") || form.idp.is_none() {
        record(&state, &context(&origin, actor), AuthorizationEvent::ConsentDenied(given(None))).await;
        return back_to_client(
            &authorization.redirect_uri,
            authorization.state.as_deref(),
            &issuer,
            &[("error", "access_denied"), ("error_description", "the person denied the request")],
        );
    }
    let idp = form.idp.unwrap_or_default();
    let redirect = state.idps.authorization_redirect_uri(&idp);
    let (url, upstream) =
        match state.idps.begin_to(&idp, chrono::Duration::minutes(AUTHORIZATION_MINUTES), redirect).await {
            Ok(begun) => begun,
            Err(crate::oidc::OidcError::UnknownIdp(_)) => {
                return error_page(StatusCode::BAD_REQUEST, "no such identity provider");
            }
            Err(error) => {
                tracing::warn!(%error, "could not begin the upstream login");
                return error_page(StatusCode::BAD_GATEWAY, "the identity provider cannot be reached; try again");
            }
        };
    let binding = random_secret();
    let upstream_state = upstream.state.clone();
    let expires = Utc::now() + chrono::Duration::minutes(AUTHORIZATION_MINUTES);
    let sealed = serde_json::to_string(&upstream)
        .ok()
        .and_then(|json| state.keyring.seal(&commands::Secret::new(json), UPSTREAM_CONTEXT).ok());
    let Some(sealed) = sealed else {
        return error_page(StatusCode::INTERNAL_SERVER_ERROR, "the sign-in could not be prepared");
    };
    let bound = Authorization { binding_digest: Some(hex_digest(&binding)), upstream: Some(sealed), ..authorization };
    let recorded_as = context(&origin, actor);
    let (kept, ()) = tokio::join!(
        flow_store::put(&state.tables, Kept::Authorization, &upstream_state, &bound, expires),
        record(&state, &recorded_as, AuthorizationEvent::ConsentGranted(given(Some(idp)))),
    );
    if kept.is_err() {
        return error_page(StatusCode::SERVICE_UNAVAILABLE, "the gateway cannot reach its store; try again");
    }
    let cookie = state.cookies.set(
        &format!("oauth_{}", &hex_digest(&upstream_state)[..16]),
        &binding,
        AUTHORIZATION_MINUTES * 60,
    );
    // 303, never 307: the browser must not post the consent form to the IdP (RFC 9700 §4.12).
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let (Ok(location), Ok(cookie)) = (HeaderValue::from_str(&url), HeaderValue::from_str(&cookie)) {
        headers.insert(header::LOCATION, location);
        headers.insert(header::SET_COOKIE, cookie);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[utoipa::path(get, path = "/oauth/callback/{idp}", operation_id = "oauth_callback", tag = "oauth",
    description = "Where the IdP sends the browser back during an MCP client's authorization: the authorization is taken once, its browser binding and IdP checked, the person signed in, and the client sent its code.",
    params(("idp" = String, Path), ("code" = Option<String>, Query), ("state" = Option<String>, Query), ("error" = Option<String>, Query), ("iss" = Option<String>, Query)),
    responses(
        (status = 303, description = "back to the client with a code, or an error"),
        (status = 400, description = "an unknown or expired authorization, or another IdP's: a page", content_type = "text/html"),
        (status = 403, description = "another browser than the one that gave consent: a page", content_type = "text/html"),
        (status = 503, description = "the store is unreachable", content_type = "text/html"),
    ))]
pub(crate) async fn callback(
    State(state): State<AppState>,
    Path(idp): Path<String>,
    origin: Origin,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query = match parameters(query) {
        Ok(query) => query,
        Err(repeated) => return error_page(StatusCode::BAD_REQUEST, &repeated),
    };
    let Some(upstream_state) = query.get("state") else {
        return error_page(StatusCode::BAD_REQUEST, "the identity provider's answer has no state");
    };
    let authorization: Authorization = match flow_store::take(&state.tables, Kept::Authorization, upstream_state).await
    {
        Ok(Some(found)) => found,
        Ok(None) => {
            return error_page(StatusCode::BAD_REQUEST, "this authorization is unknown, expired or answered already");
        }
        Err(_) => return error_page(StatusCode::SERVICE_UNAVAILABLE, "the gateway cannot reach its store; try again"),
    };
    let (Some(sealed), Some(binding_digest)) = (&authorization.upstream, &authorization.binding_digest) else {
        return error_page(StatusCode::BAD_REQUEST, "this authorization was not approved");
    };
    let upstream = state
        .keyring
        .open(sealed, UPSTREAM_CONTEXT)
        .ok()
        .and_then(|json| serde_json::from_str::<PendingLogin>(json.expose()).ok());
    let Some(upstream) = upstream else {
        return error_page(StatusCode::BAD_REQUEST, "this authorization cannot be read back; start again");
    };
    let upstream = &upstream;
    // Mix-up: the answer must come from the IdP the person was sent to.
    if upstream.idp != idp {
        return error_page(
            StatusCode::BAD_REQUEST,
            "the answer came from another identity provider than the one asked",
        );
    }
    // The browser that comes back must be the one that gave consent.
    let bound = crate::cookies::cookie(&headers, &binding_cookie(&state, upstream_state))
        .is_some_and(|binding| equal(&hex_digest(binding), binding_digest));
    if !bound {
        return error_page(StatusCode::FORBIDDEN, "this browser did not give the consent this answer belongs to");
    }
    let issuer = state.tokens.issuer().to_owned();
    let back = |parameters: &[(&str, &str)]| {
        let mut response =
            back_to_client(&authorization.redirect_uri, authorization.state.as_deref(), &issuer, parameters);
        let clear = state.cookies.set(&format!("oauth_{}", &hex_digest(upstream_state)[..16]), "", 0);
        if let Ok(clear) = HeaderValue::from_str(&clear) {
            response.headers_mut().append(header::SET_COOKIE, clear);
        }
        response
    };
    if query.contains_key("error") {
        // The IdP's own words are not passed on: they reach the client's page, which may show them.
        return back(&[("error", "access_denied"), ("error_description", "the identity provider refused the sign-in")]);
    }
    let Some(code) = query.get("code") else {
        return back(&[("error", "access_denied"), ("error_description", "the identity provider sent no code")]);
    };
    let (session, renewal) = match crate::upstream_login::sign_in(
        &state,
        &idp,
        upstream,
        code,
        query.get("iss").map(String::as_str),
        &origin,
        Uuid::now_v7(),
    )
    .await
    {
        Ok((session, renewal)) => (session, renewal),
        Err(problem) if problem.status >= 500 => {
            return back(&[
                ("error", "temporarily_unavailable"),
                ("error_description", "the identity provider failed"),
            ]);
        }
        Err(problem) => {
            // The details (a tenant, a hosted domain, the IdP's own error) are the operator's: logged,
            // not sent to a client's page.
            tracing::info!(detail = ?problem.detail, kind = %problem.kind, "an authorization's sign-in was refused");
            return back(&[("error", "access_denied"), ("error_description", "the sign-in was refused")]);
        }
    };
    let code = random_secret();
    let kept = Code {
        client_id: authorization.client_id.clone(),
        redirect_uri: authorization.redirect_uri.clone(),
        code_challenge: authorization.code_challenge.clone(),
        scope: authorization.scope.clone(),
        resource: authorization.resource.clone(),
        principal_id: session.principal_id,
        session_id: session.session_id,
        session_expires_at: session.expires_at,
        renewal: renewal.and_then(|r| super::refresh_store::SealedRenewal::seal(&state.keyring, &idp, &r)),
    };
    let expires = Utc::now() + chrono::Duration::seconds(CODE_SECONDS);
    let actor = Actor { id: session.principal_id.to_string(), kind: eventstore::ActorKind::User };
    let event = AuthorizationEvent::CodeIssued(AuthorizationCodeIssued {
        client_id: authorization.client_id.clone(),
        principal_id: session.principal_id,
        session_id: session.session_id,
        code_digest: hex_digest(&code)[..12].to_owned(),
    });
    let recorded_as = context(&origin, actor);
    let (stored, ()) = tokio::join!(
        flow_store::put(&state.tables, Kept::Code, &code, &kept, expires),
        record(&state, &recorded_as, event),
    );
    if stored.is_err() {
        return back(&[
            ("error", "temporarily_unavailable"),
            ("error_description", "the gateway cannot reach its store"),
        ]);
    }
    back(&[("code", &code)])
}
