//! Where an upstream MCP server listens: transport and URL, with the rules a URL must pass.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use url::{Host, Url};

use super::address_guard::{BlockedRange, blocked_range};

/// Longest URL accepted, in bytes.
pub const MAX_URL_BYTES: usize = 2_048;

/// Host names that always mean "this machine" or a metadata service, whatever DNS says.
const BLOCKED_NAMES: [&str; 4] = ["localhost", "metadata.google.internal", "metadata", "instance-data"];

/// Query parameter names that carry credentials, compared case-insensitively; names ending in `_key`,
/// `_token`, `_secret` or `-key`, `-token`, `-secret` count too.
const SECRET_PARAMETERS: [&str; 14] = [
    "key",
    "apikey",
    "api_key",
    "api-key",
    "token",
    "access_token",
    "auth",
    "secret",
    "password",
    "pass",
    "pwd",
    "sig",
    "signature",
    "code",
];

fn looks_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_PARAMETERS.contains(&name.as_str())
        || ["_key", "_token", "_secret", "-key", "-token", "-secret"].iter().any(|s| name.ends_with(s))
}

/// The MCP transport an upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// Streamable HTTP (MCP 2025-03-26 and later).
    StreamableHttp,
    /// HTTP with server-sent events (the older transport).
    Sse,
}

/// Hosts an operator trusts: they may be reached over plain `http` and may resolve to internal
/// addresses (an MCP server next to the gateway in a private network).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkPolicy {
    allowed_hosts: BTreeSet<String>,
}

impl NetworkPolicy {
    /// Trusts exactly `hosts` (names compared case-insensitively; IPv6 literals in brackets, `[::1]`).
    pub fn allowing<I: IntoIterator<Item = S>, S: AsRef<str>>(hosts: I) -> Self {
        Self { allowed_hosts: hosts.into_iter().map(|h| h.as_ref().to_ascii_lowercase()).collect() }
    }

    /// True when `host` (as [`Endpoint::host`] gives it) is trusted.
    pub fn allows(&self, host: &str) -> bool {
        self.allowed_hosts.contains(&host.to_ascii_lowercase())
    }
}

/// Why an upstream URL was refused. Each variant is one rule, named in the API's problem type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// Not a URL, or too long.
    #[error("not a valid absolute URL of at most {MAX_URL_BYTES} bytes")]
    Malformed,
    /// A scheme other than `http` and `https`.
    #[error("the URL scheme must be https")]
    Scheme,
    /// Plain `http` to a host that is not allowlisted.
    #[error("plain http is allowed only for allowlisted hosts; use https")]
    Insecure,
    /// A user name or password in the URL.
    #[error("credentials in the URL are not allowed; configure upstream authentication instead")]
    Credentials,
    /// A query parameter whose name says it carries a secret: it would be stored in events for good and
    /// shown to every reader of the catalogue.
    #[error("the URL's query parameter {0:?} looks like a credential; configure upstream authentication instead")]
    SecretInQuery(String),
    /// A fragment, which no HTTP request carries.
    #[error("the URL must not have a fragment")]
    Fragment,
    /// The host is, or resolves to, an address in a blocked range.
    #[error("{host} is a {} address, which upstreams may not use unless the host is allowlisted", range.as_str())]
    BlockedAddress {
        /// The host as written.
        host: String,
        /// The range.
        range: BlockedRange,
    },
    /// A host name that always means this machine or a metadata service.
    #[error("{0} is a local or metadata host name, which upstreams may not use unless allowlisted")]
    BlockedName(String),
    /// The host name does not resolve.
    #[error("{0} does not resolve")]
    Unresolvable(String),
}

impl EndpointError {
    /// A stable name of the rule.
    pub fn rule(&self) -> &'static str {
        match self {
            EndpointError::Malformed => "malformed-url",
            EndpointError::Scheme => "url-scheme",
            EndpointError::Insecure => "insecure-url",
            EndpointError::Credentials | EndpointError::SecretInQuery(_) => "url-credentials",
            EndpointError::Fragment => "url-fragment",
            EndpointError::BlockedAddress { .. } | EndpointError::BlockedName(_) => "blocked-address",
            EndpointError::Unresolvable(_) => "unresolvable-host",
        }
    }
}

/// An upstream URL that passed the literal checks. The write side must also check every address its
/// host resolves to ([`Endpoint::check_resolved`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Endpoint(Url);

impl Endpoint {
    /// Parses and checks `raw` under `policy`. Decimal, octal and hexadecimal IPv4 forms
    /// (`http://2130706433`, `http://0177.0.0.1`) are normalised by the URL parser first, so they meet
    /// the same rules as the dotted form.
    pub fn parse(raw: &str, policy: &NetworkPolicy) -> Result<Self, EndpointError> {
        if raw.len() > MAX_URL_BYTES {
            return Err(EndpointError::Malformed);
        }
        let url = Url::parse(raw.trim()).map_err(|_| EndpointError::Malformed)?;
        let endpoint = Self(url);
        let host = endpoint.host().ok_or(EndpointError::Malformed)?;
        let allowed = policy.allows(&host);
        if !matches!(endpoint.0.scheme(), "https" | "http") {
            return Err(EndpointError::Scheme);
        }
        // Where it points is checked before how: `http://127.0.0.1` is refused as loopback, the rule
        // that matters, not merely as plain http.
        if !allowed {
            match endpoint.0.host() {
                Some(Host::Ipv4(ip)) => endpoint.check_address(IpAddr::V4(ip))?,
                Some(Host::Ipv6(ip)) => endpoint.check_address(IpAddr::V6(ip))?,
                Some(Host::Domain(name)) => {
                    let name = name.trim_end_matches('.');
                    if BLOCKED_NAMES.contains(&name) || name.ends_with(".localhost") {
                        return Err(EndpointError::BlockedName(name.to_owned()));
                    }
                }
                None => return Err(EndpointError::Malformed),
            }
        }
        if endpoint.0.scheme() == "http" && !allowed {
            return Err(EndpointError::Insecure);
        }
        if !endpoint.0.username().is_empty() || endpoint.0.password().is_some() {
            return Err(EndpointError::Credentials);
        }
        if endpoint.0.fragment().is_some() {
            return Err(EndpointError::Fragment);
        }
        if let Some((name, _)) = endpoint.0.query_pairs().find(|(name, _)| looks_secret(name)) {
            return Err(EndpointError::SecretInQuery(name.into_owned()));
        }
        Ok(endpoint)
    }

    /// The host as the URL has it (IPv6 in brackets), lowercase.
    pub fn host(&self) -> Option<String> {
        self.0.host().map(|h| h.to_string().to_ascii_lowercase())
    }

    /// The host name to resolve, when the host is a name and not an address literal.
    pub fn domain(&self) -> Option<&str> {
        self.0.domain()
    }

    /// The port, explicit or the scheme's default.
    pub fn port(&self) -> u16 {
        self.0.port_or_known_default().unwrap_or(443)
    }

    /// Checks the addresses the host resolved to: every one must pass, since the HTTP client may use any.
    ///
    /// A check at registration does not bind later connections: a name can resolve elsewhere tomorrow.
    /// Whatever connects to the upstream must resolve, check with this, and connect to exactly the
    /// addresses checked (and not follow redirects unchecked).
    pub fn check_resolved(&self, policy: &NetworkPolicy, addresses: &[IpAddr]) -> Result<(), EndpointError> {
        let host = self.host().unwrap_or_default();
        if policy.allows(&host) {
            return Ok(());
        }
        if addresses.is_empty() {
            return Err(EndpointError::Unresolvable(host));
        }
        addresses.iter().try_for_each(|ip| self.check_address(*ip))
    }

    fn check_address(&self, ip: IpAddr) -> Result<(), EndpointError> {
        match blocked_range(ip) {
            Some(range) => Err(EndpointError::BlockedAddress { host: self.host().unwrap_or_default(), range }),
            None => Ok(()),
        }
    }

    /// The URL.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl TryFrom<String> for Endpoint {
    type Error = EndpointError;

    /// Reads a URL stored in an event: syntax only, since the policy may have changed since.
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Url::parse(&value).map(Self).map_err(|_| EndpointError::Malformed)
    }
}

impl From<Endpoint> for String {
    fn from(endpoint: Endpoint) -> Self {
        endpoint.0.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Endpoint, EndpointError> {
        Endpoint::parse(raw, &NetworkPolicy::allowing(["mcp.internal", "[::1]"]))
    }

    fn blocked(raw: &str) -> BlockedRange {
        match parse(raw) {
            Err(EndpointError::BlockedAddress { range, .. }) => range,
            other => panic!("{raw}: {other:?}"),
        }
    }

    #[test]
    fn public_https_urls_pass() {
        assert_eq!(parse("https://mcp.example.com/mcp").unwrap().as_str(), "https://mcp.example.com/mcp");
        assert!(parse("https://93.184.216.34:8443/sse").is_ok());
    }

    #[test]
    fn literal_internal_addresses_are_refused_in_every_spelling() {
        assert_eq!(blocked("https://127.0.0.1/mcp"), BlockedRange::Loopback);
        assert_eq!(blocked("http://127.0.0.1/mcp"), BlockedRange::Loopback);
        assert_eq!(blocked("https://169.254.169.254/latest"), BlockedRange::CloudMetadata);
        assert_eq!(blocked("https://[::ffff:10.0.0.1]/"), BlockedRange::Private);
        assert_eq!(blocked("https://2130706433/"), BlockedRange::Loopback);
        assert_eq!(blocked("https://0177.0.0.1/"), BlockedRange::Loopback);
        assert_eq!(blocked("https://0x7f.1/"), BlockedRange::Loopback);
        assert_eq!(blocked("https://017700000001/"), BlockedRange::Loopback);
        assert_eq!(parse("https://localhost/"), Err(EndpointError::BlockedName("localhost".into())));
        assert_eq!(
            parse("https://metadata.google.internal./"),
            Err(EndpointError::BlockedName("metadata.google.internal".into()))
        );
    }

    #[test]
    fn scheme_credentials_and_fragments_are_checked() {
        assert_eq!(parse("http://mcp.example.com/"), Err(EndpointError::Insecure));
        assert_eq!(parse("ftp://mcp.example.com/"), Err(EndpointError::Scheme));
        assert_eq!(parse("https://u:p@mcp.example.com/"), Err(EndpointError::Credentials));
        assert_eq!(parse("https://mcp.example.com/#x"), Err(EndpointError::Fragment));
        assert_eq!(
            parse("https://mcp.example.com/mcp?region=eu&API_KEY=abc"),
            Err(EndpointError::SecretInQuery("API_KEY".into()))
        );
        assert_eq!(
            parse("https://mcp.example.com/mcp?x-access-token=abc"),
            Err(EndpointError::SecretInQuery("x-access-token".into()))
        );
        assert!(parse("https://mcp.example.com/mcp?region=eu&monkey=1").is_ok());
        assert_eq!(parse("not a url"), Err(EndpointError::Malformed));
    }

    #[test]
    fn allowlisted_hosts_may_use_http_and_internal_addresses() {
        assert!(parse("http://mcp.internal:8080/mcp").is_ok());
        assert!(parse("http://[::1]:3000/mcp").is_ok());
        let endpoint = parse("http://mcp.internal/").unwrap();
        let policy = NetworkPolicy::allowing(["mcp.internal"]);
        assert!(endpoint.check_resolved(&policy, &["10.0.0.5".parse().unwrap()]).is_ok());
    }

    #[test]
    fn every_resolved_address_must_pass() {
        let policy = NetworkPolicy::default();
        let endpoint = Endpoint::parse("https://rebind.example/", &policy).unwrap();
        let public: IpAddr = "93.184.216.34".parse().unwrap();
        let private: IpAddr = "192.168.0.10".parse().unwrap();
        assert!(endpoint.check_resolved(&policy, &[public]).is_ok());
        assert!(matches!(
            endpoint.check_resolved(&policy, &[public, private]),
            Err(EndpointError::BlockedAddress { range: BlockedRange::Private, .. })
        ));
        assert_eq!(endpoint.check_resolved(&policy, &[]), Err(EndpointError::Unresolvable("rebind.example".into())));
    }
}
