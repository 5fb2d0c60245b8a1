//! The MCP proxy: forwarding a client's streamable HTTP requests to the registered server, with the
//! server's own credentials and never the client's, and relaying the answers (JSON, or SSE streamed
//! through without buffering).

mod credentials;
pub(crate) mod health_check;
pub mod journal;
pub mod limits;
pub(crate) mod metrics;
pub(crate) mod person_tokens;
pub(crate) mod recorder;
mod resolver;
pub(crate) mod session;
pub(crate) mod sse_upstream;
pub(crate) mod stream;
pub mod tester;
pub(crate) mod tool_filter;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, Method, header};
use commands::{HostResolver, Keyring};
use domain::server::NetworkPolicy;
use projections::authz::Upstream;
use uuid::Uuid;

pub(crate) use session::SessionIds;

/// How long a connection to an upstream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an upstream may take to begin its answer (the headers; a streamed body may take longer).
pub(crate) const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest silence inside an answer to a POST before the gateway gives up on it.
pub(crate) const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Idle upstream connections kept per host.
const IDLE_PER_HOST: usize = 256;

/// The client's headers passed on: what the MCP transport defines, nothing that identifies the client
/// (its `Authorization`, cookies and session id stay at the gateway).
const FORWARDED: [&str; 4] = ["accept", "content-type", "mcp-protocol-version", "last-event-id"];
/// The upstream's session header.
pub(crate) const SESSION_HEADER: HeaderName = HeaderName::from_static("mcp-session-id");

/// Why a request could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    /// No connection, or it broke.
    #[error("the upstream server could not be reached: {0}")]
    Unreachable(String),
    /// No answer in time.
    #[error("the upstream server did not answer within {} s", ANSWER_TIMEOUT.as_secs())]
    TimedOut,
    /// The gateway's credentials for the server could not be used or obtained.
    #[error("the gateway's credentials for the upstream server are unusable: {0}")]
    Credentials(String),
    /// A token endpoint refused the gateway's request with this status.
    #[error("the token endpoint refused the gateway's request ({0})")]
    TokenRefused(u16),
    /// The server acts on each person's own account, and this person has not connected theirs (or the
    /// connection can no longer be refreshed).
    #[error("connect your account at this server first")]
    ConnectRequired,
}

/// What a reqwest error says, without its URL (which the caller names if it should): the proxy's
/// upstreams, metadata documents and token endpoints alike.
pub(crate) fn describe(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection refused or blocked"
    } else if error.is_body() || error.is_decode() {
        "the answer broke off"
    } else {
        "the request failed"
    }
}

/// The proxy's shared parts: one connection pool to every upstream, the session ids, the tokens.
pub struct Proxy {
    http: reqwest::Client,
    network: NetworkPolicy,
    pub(crate) sessions: SessionIds,
    tokens: credentials::TokenCache,
    /// Where forwarded tool calls are recorded.
    pub(crate) recorder: recorder::CallRecorder,
    /// Requests in flight, per principal and per server.
    pub(crate) in_flight: Arc<limits::InFlight>,
    /// People's own tokens at servers that act on their accounts.
    pub(crate) person_tokens: person_tokens::PersonTokens,
    /// This instance's streams to servers that speak HTTP+SSE.
    pub(crate) sse: sse_upstream::SseSessions,
}

/// A request to forward.
pub(crate) struct Forward<'a> {
    /// The server.
    pub server: Uuid,
    /// Where and how.
    pub upstream: &'a Upstream,
    /// GET, POST or DELETE.
    pub method: Method,
    /// The client's headers (only [`FORWARDED`] ones are passed on).
    pub headers: &'a HeaderMap,
    /// The upstream session, opened from the client's session id.
    pub session: Option<String>,
    /// On whose behalf (a person's own token is sent to servers that act on their accounts).
    pub principal: Option<Uuid>,
    /// The body of a POST.
    pub body: Option<Bytes>,
}

impl Proxy {
    /// A proxy that connects only where `network` and the SSRF guard allow, resolving with `resolver`;
    /// session ids are sealed with `keyring`; tool calls are recorded through `recorder`.
    pub(crate) fn new(
        network: NetworkPolicy,
        resolver: Arc<dyn HostResolver>,
        keyring: Arc<Keyring>,
        recorder: recorder::CallRecorder,
        limits: limits::ProxyLimits,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .dns_resolver(Arc::new(resolver::GuardedResolver::new(network.clone(), resolver)))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_max_idle_per_host(IDLE_PER_HOST)
            .tcp_nodelay(true)
            .build()?;
        let tokens = credentials::TokenCache::default();
        let in_flight = Arc::new(limits::InFlight::new(limits));
        let person_tokens = person_tokens::PersonTokens::default();
        let sse = sse_upstream::SseSessions::default();
        Ok(Self { http, network, sessions: SessionIds::new(keyring), tokens, recorder, in_flight, person_tokens, sse })
    }

    /// Sends `forward` to its upstream; the answer's headers are in, its body still streaming.
    pub(crate) async fn send(
        &self,
        state: &crate::state::AppState,
        forward: Forward<'_>,
    ) -> Result<reqwest::Response, UpstreamError> {
        self.check_literal(&forward.upstream.endpoint)?;
        let mut request = self.http.request(forward.method, forward.upstream.endpoint.as_str());
        for name in FORWARDED {
            for value in forward.headers.get_all(name) {
                request = request.header(name, value);
            }
        }
        if let Some(session) = &forward.session {
            request = request.header(SESSION_HEADER, session);
        }
        if let domain::server::UpstreamAuth::OauthClientCredentials { token_url, .. }
        | domain::server::UpstreamAuth::OauthPerPerson { token_url, .. } = &forward.upstream.auth
        {
            self.check_literal(token_url)?;
        }
        if let Some((name, value)) =
            self.tokens.header(state, &self.http, forward.server, forward.principal, &forward.upstream.auth).await?
        {
            request = request.header(name, value);
        }
        if let Some(body) = forward.body {
            request = request.body(body);
        }
        let response = tokio::time::timeout(ANSWER_TIMEOUT, request.send())
            .await
            .map_err(|_| UpstreamError::TimedOut)?
            .map_err(|e| UpstreamError::Unreachable(describe(&e).to_owned()))?;
        if matches!(response.status().as_u16(), 401 | 403) {
            // A token may have been revoked early: the next request fetches (or reads) another.
            self.tokens.forget(forward.server);
            if let Some(principal) = forward.principal
                && matches!(forward.upstream.auth, domain::server::UpstreamAuth::OauthPerPerson { .. })
            {
                self.person_tokens.refused(forward.server, principal);
            }
        }
        Ok(response)
    }
}

impl Proxy {
    /// Redeems a person's authorization code (or any grant in `form`) at a per-person server's token
    /// endpoint, as the gateway's client there.
    pub(crate) async fn redeem(
        &self,
        state: &crate::state::AppState,
        server: Uuid,
        token_url: &domain::server::Endpoint,
        client_id: &str,
        client_secret: Option<&domain::Sealed>,
        form: Vec<(&'static str, String)>,
    ) -> Result<commands::connections::TokenSet, UpstreamError> {
        self.check_literal(token_url)?;
        let request = person_tokens::client_request(
            state,
            &self.http,
            server,
            token_url.as_str(),
            client_id,
            client_secret,
            form,
        )?;
        Ok(person_tokens::token_set(credentials::token_request(request).await?, None))
    }

    /// What the resolver cannot check, checked against today's policy: a URL whose host is an IP address
    /// (connected to without resolving) must not be in a blocked range, and plain `http` needs a trusted
    /// host, unless the operator trusts the host. The registration checked both once; the operator's
    /// allowlist may have narrowed since.
    fn check_literal(&self, endpoint: &domain::server::Endpoint) -> Result<(), UpstreamError> {
        let host = endpoint.host().unwrap_or_default();
        if self.network.allows(&host) {
            return Ok(());
        }
        if endpoint.as_str().starts_with("http://") {
            return Err(UpstreamError::Unreachable(format!("{host} is not trusted for plain http")));
        }
        let literal = host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>();
        match literal.ok().and_then(domain::server::blocked_range) {
            Some(range) => Err(UpstreamError::Unreachable(format!("{host} is in the {} range", range.as_str()))),
            None => Ok(()),
        }
    }
}

/// True when `headers` say the body is an SSE stream.
pub(crate) fn is_event_stream(headers: &reqwest::header::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case("text/event-stream"))
}
