//! Rate limits: a token bucket per client address and per principal, for each group of routes.
//!
//! The address limit runs before anything else a request costs (it needs no credential); the principal's
//! runs where the caller is known ([`crate::auth::admit`]), so one principal spread over many addresses,
//! or many principals behind one address (a company's NAT), are each held to their own budget. A refused
//! request gets 429 with `Retry-After`, in the format of its route group: a problem document on the REST
//! API, RFC 6749 error JSON on the OAuth endpoints, a JSON-RPC error on MCP.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::client_ip::{ClientIp, TrustedProxies};
use crate::state::AppState;

/// Routes that share a budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteGroup {
    /// Logging in through an identity provider, and the pages a person answers (consent, connect).
    Login,
    /// The OAuth authorization server: authorize, token, revoke, metadata.
    OAuth,
    /// Dynamic client registration, and first sight of a client named by its metadata document's URL.
    Registration,
    /// The REST API and the `/v0.1` catalogue.
    Rest,
    /// MCP servers' endpoints.
    Mcp,
}

impl RouteGroup {
    const ALL: [RouteGroup; 5] = [Self::Login, Self::OAuth, Self::Registration, Self::Rest, Self::Mcp];

    /// The group of `path`; None for what must never be limited (health, readiness, metrics).
    pub fn of(path: &str) -> Option<Self> {
        let starts = |prefix: &str| path.starts_with(prefix);
        if starts("/servers/") {
            Some(Self::Mcp)
        } else if starts("/api/") || starts("/v0.1/") {
            Some(Self::Rest)
        } else if path == "/register" {
            Some(Self::Registration)
        } else if starts("/auth/") || starts("/oauth/callback/") || starts("/connect/") || path == "/consent" {
            Some(Self::Login)
        } else if matches!(path, "/authorize" | "/token" | "/revoke") || starts("/.well-known/") {
            Some(Self::OAuth)
        } else {
            None
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::OAuth => "oauth",
            Self::Registration => "registration",
            Self::Rest => "rest",
            Self::Mcp => "mcp",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A bucket's size: `count` requests per `per`, and up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSpec {
    /// Requests per period.
    pub count: NonZeroU32,
    /// The period.
    pub per: Duration,
    /// Requests a full bucket allows at once.
    pub burst: NonZeroU32,
}

impl RateSpec {
    fn new(count: u32, per: Duration, burst: u32) -> Option<Self> {
        Some(Self { count: NonZeroU32::new(count)?, per, burst: NonZeroU32::new(burst)? })
    }

    /// `60/min`, `10/s burst 20`, `1000/h` (the burst defaults to the count).
    pub fn parse(text: &str) -> Result<Self, String> {
        let invalid = || format!("{text:?}: write a rate as `<count>/<s|min|h>`, optionally followed by `burst <n>`");
        let mut words = text.split_whitespace();
        let (count, unit) = words.next().and_then(|rate| rate.split_once('/')).ok_or_else(invalid)?;
        let count: u32 = count.parse().map_err(|_| invalid())?;
        let per = match unit {
            "s" => Duration::from_secs(1),
            "min" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(invalid()),
        };
        let burst = match (words.next(), words.next(), words.next()) {
            (None, ..) => count,
            (Some("burst"), Some(burst), None) => burst.parse().map_err(|_| invalid())?,
            _ => return Err(invalid()),
        };
        Self::new(count, per, burst).ok_or_else(invalid)
    }

    fn quota(self) -> Option<Quota> {
        Quota::with_period(self.per / self.count.get()).map(|quota| quota.allow_burst(self.burst))
    }
}

/// The limits of each route group, per client address and per principal (`None`: unlimited), and the
/// proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    per_address: [Option<RateSpec>; 5],
    per_principal: [Option<RateSpec>; 5],
    /// Peers that may say whom they forwarded for.
    pub trusted_proxies: TrustedProxies,
}

impl Default for RateLimitConfig {
    /// Budgets no person or well-behaved client meets, and an attacker does: a login a second from one
    /// address, half a registration a second (a client registers once), and REST and MCP traffic at
    /// rates one principal's automation does not need.
    fn default() -> Self {
        let spec = |count, per, burst| RateSpec::new(count, Duration::from_secs(per), burst);
        Self {
            //            login                oauth                  registration      rest                     mcp
            per_address: [
                spec(60, 60, 30),
                spec(600, 60, 120),
                spec(30, 60, 30),
                spec(6_000, 60, 600),
                spec(60_000, 60, 2_000),
            ],
            per_principal: [None, None, None, spec(3_000, 60, 300), spec(30_000, 60, 1_000)],
            trusted_proxies: TrustedProxies::default(),
        }
    }
}

impl RateLimitConfig {
    /// No limits at all (benchmarks measuring the gateway's own path).
    pub fn off() -> Self {
        Self { per_address: [None; 5], per_principal: [None; 5], trusted_proxies: TrustedProxies::default() }
    }

    /// Applies one setting, `<group>.<per_address|per_principal>=<rate>|off`, such as
    /// `login.per_address=10/min burst 5` or `mcp.per_principal=off`.
    pub fn set(&mut self, setting: &str) -> Result<(), String> {
        let (key, value) =
            setting.split_once('=').ok_or_else(|| format!("{setting:?}: write <group>.<scope>=<rate>"))?;
        let (group, scope) = key.trim().split_once('.').ok_or_else(|| format!("{key:?}: write <group>.<scope>"))?;
        let group = RouteGroup::ALL
            .into_iter()
            .find(|g| g.name() == group)
            .ok_or_else(|| format!("{group:?}: the groups are login, oauth, registration, rest and mcp"))?;
        let table = match scope {
            "per_address" => &mut self.per_address,
            "per_principal" => &mut self.per_principal,
            _ => return Err(format!("{scope:?}: the scopes are per_address and per_principal")),
        };
        let value = value.trim();
        table[group.index()] = if value == "off" { None } else { Some(RateSpec::parse(value)?) };
        Ok(())
    }
}

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>;

/// The buckets of one instance (each instance holds its own: a limit is per instance, which a load
/// balancer spreading requests multiplies by the instances behind it).
pub struct RateLimits {
    per_address: [Option<Keyed<IpAddr>>; 5],
    per_principal: [Option<Keyed<uuid::Uuid>>; 5],
    trusted_proxies: TrustedProxies,
    clock: DefaultClock,
}

/// Refused: try again after this long.
#[derive(Debug, Clone, Copy)]
pub struct Limited(pub Duration);

impl Limited {
    /// Whole seconds for `Retry-After`, at least one.
    pub fn retry_after_secs(self) -> u64 {
        self.0.as_secs() + u64::from(self.0.subsec_nanos() > 0)
    }
}

impl RateLimits {
    /// The buckets `config` describes.
    pub fn new(config: &RateLimitConfig) -> Self {
        fn keyed<K: std::hash::Hash + Eq + Clone>(spec: Option<RateSpec>) -> Option<Keyed<K>> {
            spec.and_then(RateSpec::quota).map(RateLimiter::keyed)
        }
        Self {
            per_address: config.per_address.map(keyed),
            per_principal: config.per_principal.map(keyed),
            trusted_proxies: config.trusted_proxies.clone(),
            clock: DefaultClock::default(),
        }
    }

    /// Who decides the client address.
    pub fn trusted_proxies(&self) -> &TrustedProxies {
        &self.trusted_proxies
    }

    /// Counts one request of `group` from `address`.
    pub fn admit_address(&self, group: RouteGroup, address: IpAddr) -> Result<(), Limited> {
        let Some(limiter) = &self.per_address[group.index()] else { return Ok(()) };
        self.counted(group, "address", limiter.check_key(&bucket_of(address)))
    }

    /// Counts one request of `group` by `principal`.
    pub fn admit_principal(&self, group: RouteGroup, principal: uuid::Uuid) -> Result<(), Limited> {
        let Some(limiter) = &self.per_principal[group.index()] else { return Ok(()) };
        self.counted(group, "principal", limiter.check_key(&principal))
    }

    fn counted(
        &self,
        group: RouteGroup,
        scope: &'static str,
        checked: Result<(), governor::NotUntil<<DefaultClock as Clock>::Instant>>,
    ) -> Result<(), Limited> {
        checked.map_err(|not_until| {
            metrics::counter!("mgw_rate_limited_total", "group" => group.name(), "scope" => scope).increment(1);
            Limited(not_until.wait_time_from(self.clock.now()))
        })
    }

    /// Forgets full buckets, so that memory follows the recently seen addresses and principals.
    pub fn forget_idle(&self) {
        for limiter in self.per_address.iter().flatten() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        for limiter in self.per_principal.iter().flatten() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// An IPv6 client owns at least a /64 and can pick any address in it: the /64 is its bucket.
fn bucket_of(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(prefix.into())
        }
        v4 => v4,
    }
}

/// Forgets idle buckets every minute, for as long as the instance runs.
pub async fn forget_idle_buckets(limits: std::sync::Arc<RateLimits>) {
    let mut every = tokio::time::interval(Duration::from_secs(60));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        limits.forget_idle();
    }
}

/// The layer: resolves the client address (through trusted proxies), leaves it for the handlers, and
/// refuses a request over its address's budget before any other work.
pub async fn limit_by_address(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let peer = request.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
    let Some(peer) = peer else { return next.run(request).await };
    let client = state.rate_limits.trusted_proxies().client(peer, request.headers());
    request.extensions_mut().insert(ClientIp(client));
    if let Some(group) = RouteGroup::of(request.uri().path())
        && let Err(limited) = state.rate_limits.admit_address(group, client)
    {
        // The route's template decides the error's shape, as it does for every other error.
        let route = request.extensions().get::<axum::extract::MatchedPath>().map(|p| p.as_str().to_owned());
        let route = route.unwrap_or_else(|| request.uri().path().to_owned());
        return too_many(group, &route, limited, "too many requests from this address");
    }
    next.run(request).await
}

/// The 429 of `group` at `route` (its template), in the shape the route answers errors in
/// ([`crate::problem::error_media_type`]): a page, a problem document, or JSON of the route's standard
/// (RFC 6749 error JSON, a JSON-RPC error, the official registry's `{"error"}`).
fn too_many(group: RouteGroup, route: &str, limited: Limited, why: &str) -> Response {
    let seconds = limited.retry_after_secs();
    let detail = format!("{why}; try again in {seconds} s");
    let mut response = match (crate::problem::error_media_type(route), group) {
        ("text/html", _) => crate::html_page::page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests",
            &format!("<p>{}</p>", crate::html_page::html(&detail)),
        ),
        ("application/problem+json", _) => too_many_problem(limited, why).into_response(),
        (_, RouteGroup::OAuth | RouteGroup::Registration) => {
            crate::oauth::OAuthError::new(StatusCode::TOO_MANY_REQUESTS, "slow_down", detail).into_response()
        }
        (_, RouteGroup::Mcp) => {
            let body =
                serde_json::json!({ "jsonrpc": "2.0", "id": null, "error": { "code": -32001, "message": detail } });
            (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response()
        }
        _ => (StatusCode::TOO_MANY_REQUESTS, axum::Json(serde_json::json!({ "error": detail }))).into_response(),
    };
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// The REST API's 429.
pub fn too_many_problem(limited: Limited, why: &str) -> crate::problem::Problem {
    let seconds = limited.retry_after_secs();
    let mut problem = crate::problem::Problem::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited", "Too many requests")
        .detail(format!("{why}; try again in {seconds} s"));
    problem.retry_after = Some(u32::try_from(seconds).unwrap_or(u32::MAX));
    problem
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_and_without_a_burst() {
        let spec = RateSpec::parse("60/min burst 5").unwrap();
        assert_eq!((spec.count.get(), spec.per, spec.burst.get()), (60, Duration::from_secs(60), 5));
        assert_eq!(RateSpec::parse("10/s").unwrap().burst.get(), 10);
        for bad in ["", "10", "10/day", "0/s", "10/s burst", "10/s burst 0", "10/s bursts 3", "x/s"] {
            assert!(RateSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn settings_name_a_group_and_a_scope() {
        let mut config = RateLimitConfig::default();
        config.set("login.per_address=2/min").unwrap();
        config.set("mcp.per_principal=off").unwrap();
        assert_eq!(config.per_address[RouteGroup::Login.index()].unwrap().count.get(), 2);
        assert!(config.per_principal[RouteGroup::Mcp.index()].is_none());
        assert!(config.set("chat.per_address=1/s").is_err());
        assert!(config.set("rest.per_moon=1/s").is_err());
        assert!(config.set("rest.per_address").is_err());
    }

    #[test]
    fn a_burst_is_allowed_then_refused_with_the_wait() {
        let mut config = RateLimitConfig::off();
        config.set("rest.per_address=1/min burst 3").unwrap();
        let limits = RateLimits::new(&config);
        let address: IpAddr = "198.51.100.4".parse().unwrap();
        for _ in 0..3 {
            limits.admit_address(RouteGroup::Rest, address).unwrap();
        }
        let limited = limits.admit_address(RouteGroup::Rest, address).unwrap_err();
        assert!((1..=60).contains(&limited.retry_after_secs()));
        // Other addresses and other groups have their own buckets.
        limits.admit_address(RouteGroup::Rest, "198.51.100.5".parse().unwrap()).unwrap();
        limits.admit_address(RouteGroup::Mcp, address).unwrap();
    }

    #[test]
    fn an_ipv6_client_is_one_bucket_per_64() {
        assert_eq!(
            bucket_of("2001:db8:1:2:aaaa::1".parse().unwrap()),
            bucket_of("2001:db8:1:2:bbbb::9".parse().unwrap())
        );
        assert_ne!(bucket_of("2001:db8:1:2::1".parse().unwrap()), bucket_of("2001:db8:1:3::1".parse().unwrap()));
    }

    #[test]
    fn health_readiness_and_metrics_are_never_limited() {
        for path in ["/health", "/ready", "/metrics"] {
            assert_eq!(RouteGroup::of(path), None);
        }
        assert_eq!(RouteGroup::of("/servers/x/mcp"), Some(RouteGroup::Mcp));
        assert_eq!(RouteGroup::of("/token"), Some(RouteGroup::OAuth));
        assert_eq!(RouteGroup::of("/register"), Some(RouteGroup::Registration));
        assert_eq!(RouteGroup::of("/auth/google/login"), Some(RouteGroup::Login));
        assert_eq!(RouteGroup::of("/api/v1/servers"), Some(RouteGroup::Rest));
    }
}
