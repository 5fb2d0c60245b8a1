//! Redirect URIs of OAuth clients: which a client may register (RFC 7591 §2, RFC 8252 §7, OAuth 2.1
//! §2.3.1) and which a request may name (exact match, any port on loopback, RFC 8252 §7.3).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use url::{Host, Url};

/// Most redirect URIs one client registers.
pub const MAX_REDIRECT_URIS: usize = 10;
/// Longest redirect URI, in bytes.
pub const MAX_REDIRECT_URI_BYTES: usize = 2_048;

/// What kind of application a client is (OpenID Connect Dynamic Registration §2): a web application
/// redirects to https on a public host; a native one also to its own loopback address or private-use
/// scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ApplicationType {
    /// Desktop, command-line or mobile (the default: MCP clients mostly are).
    #[default]
    Native,
    /// A web application.
    Web,
}

/// Why a redirect URI was refused (RFC 7591 `invalid_redirect_uri`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RedirectUriError {
    /// Empty, too long, or with spaces or control characters.
    #[error("a redirect URI is an absolute URI of at most 2048 bytes without spaces")]
    Malformed,
    /// A `#fragment` (RFC 6749 §3.1.2).
    #[error("a redirect URI has no fragment")]
    Fragment,
    /// A `*` anywhere.
    #[error("a redirect URI has no wildcards")]
    Wildcard,
    /// `user@` before the host: `http://localhost@evil.example/cb` goes to evil.example.
    #[error("a redirect URI has no user information before its host")]
    Userinfo,
    /// `.` or `..` path segments, which a browser resolves to another path than the one compared.
    #[error("a redirect URI has no `.` or `..` path segments")]
    DotSegments,
    /// `javascript:`, `data:`, `file:` and their like.
    #[error(
        "a redirect URI's scheme cannot run or read anything: javascript, data, file, vbscript, blob and about are refused"
    )]
    UnsafeScheme,
    /// Plain http to a host other than this machine.
    #[error("a redirect URI uses https, or http only to a loopback address (127.0.0.1, [::1], localhost)")]
    InsecureHttp,
    /// A web application redirecting to a loopback address or a private-use scheme.
    #[error("a web application's redirect URIs use https on a public host")]
    WebNotHttps,
    /// A private-use scheme that is not a reverse domain name (RFC 8252 §7.1: `com.example.app:/cb`).
    #[error("a native application's own scheme is a reverse domain name with a dot (com.example.app:/callback)")]
    PrivateScheme,
}

/// A registered redirect URI, kept exactly as registered (requests are compared with it byte for byte).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = String)]
pub struct RedirectUri(String);

const UNSAFE_SCHEMES: [&str; 6] = ["javascript", "data", "file", "vbscript", "blob", "about"];

impl RedirectUri {
    /// Checks `raw` for a client of kind `application`.
    pub fn parse(raw: &str, application: ApplicationType) -> Result<Self, RedirectUriError> {
        if raw.is_empty()
            || raw.len() > MAX_REDIRECT_URI_BYTES
            || raw.chars().any(|c| c.is_whitespace() || crate::text::is_forbidden(c))
        {
            return Err(RedirectUriError::Malformed);
        }
        if raw.contains('#') {
            return Err(RedirectUriError::Fragment);
        }
        if raw.contains('*') {
            return Err(RedirectUriError::Wildcard);
        }
        let url = Url::parse(raw).map_err(|_| RedirectUriError::Malformed)?;
        if UNSAFE_SCHEMES.contains(&url.scheme()) {
            return Err(RedirectUriError::UnsafeScheme);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(RedirectUriError::Userinfo);
        }
        if has_dot_segments(raw) {
            return Err(RedirectUriError::DotSegments);
        }
        match (url.scheme(), application) {
            ("https", ApplicationType::Web) if is_loopback(&url) => Err(RedirectUriError::WebNotHttps),
            ("https", _) if url.host().is_some() => Ok(Self(raw.to_owned())),
            ("http", ApplicationType::Web) => Err(RedirectUriError::WebNotHttps),
            ("http", ApplicationType::Native) if is_loopback(&url) => Ok(Self(raw.to_owned())),
            ("http" | "https", _) => Err(RedirectUriError::InsecureHttp),
            (_, ApplicationType::Web) => Err(RedirectUriError::WebNotHttps),
            (scheme, ApplicationType::Native) if scheme.contains('.') => Ok(Self(raw.to_owned())),
            _ => Err(RedirectUriError::PrivateScheme),
        }
    }

    /// The URI as registered.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether a request naming `requested` may be redirected there: the same string, or, for a
    /// loopback URI, the same but for the port (RFC 8252 §7.3: native apps listen on a port the system
    /// gives them).
    pub fn admits(&self, requested: &str) -> bool {
        if requested == self.0 {
            return true;
        }
        let (Ok(registered), Ok(asked)) = (Url::parse(&self.0), Url::parse(requested)) else { return false };
        if !is_loopback(&registered) || requested.contains(['#', '*']) || has_dot_segments(requested) {
            return false;
        }
        registered.scheme() == asked.scheme()
            && registered.host() == asked.host()
            && asked.username().is_empty()
            && asked.password().is_none()
            && registered.path() == asked.path()
            && registered.query() == asked.query()
    }
}

/// Whether the URL's host is this machine: `localhost`, 127.0.0.0/8 or `[::1]`.
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// Whether the path of `raw` (before any query) has a `.` or `..` segment, written plainly or
/// percent-encoded: the URL parser resolves them, so they are looked for in the text as sent.
fn has_dot_segments(raw: &str) -> bool {
    let after_scheme = raw.split_once("://").map_or(raw, |(_, rest)| rest);
    let path = after_scheme.split(['?']).next().unwrap_or("");
    path.split('/').skip(1).any(|segment| {
        let segment = segment.to_ascii_lowercase().replace("%2e", ".");
        segment == "." || segment == ".."
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn native(raw: &str) -> Result<RedirectUri, RedirectUriError> {
        RedirectUri::parse(raw, ApplicationType::Native)
    }

    #[test]
    fn loopback_https_and_reverse_domain_schemes_are_registered() {
        for raw in [
            "http://127.0.0.1:33418/callback",
            "http://localhost/callback",
            "http://[::1]:8080/cb",
            "https://app.example.com/oauth/callback?tenant=a",
            "com.example.app:/oauth2redirect",
        ] {
            assert!(native(raw).is_ok(), "{raw}");
        }
    }

    #[test]
    fn the_attacks_of_the_checklist_are_refused_with_their_rule() {
        assert_eq!(native("https://a.example/cb#x"), Err(RedirectUriError::Fragment));
        assert_eq!(native("http://localhost@evil.com/cb"), Err(RedirectUriError::Userinfo));
        assert_eq!(native("http://evil.com/cb"), Err(RedirectUriError::InsecureHttp));
        assert_eq!(native("javascript:alert(1)"), Err(RedirectUriError::UnsafeScheme));
        assert_eq!(native("data:text/html,hi"), Err(RedirectUriError::UnsafeScheme));
        assert_eq!(native("file:///etc/passwd"), Err(RedirectUriError::UnsafeScheme));
        assert_eq!(native("https://*.example.com/cb"), Err(RedirectUriError::Wildcard));
        assert_eq!(native("https://a.example/x/../cb"), Err(RedirectUriError::DotSegments));
        assert_eq!(native("https://a.example/x/%2E%2E/cb"), Err(RedirectUriError::DotSegments));
        assert_eq!(native("myapp:/cb"), Err(RedirectUriError::PrivateScheme));
        assert_eq!(native("/relative/cb"), Err(RedirectUriError::Malformed));
        assert_eq!(native(&format!("https://a.example/{}", "x".repeat(2_048))), Err(RedirectUriError::Malformed));
        let web = |raw| RedirectUri::parse(raw, ApplicationType::Web);
        assert_eq!(web("http://127.0.0.1/cb"), Err(RedirectUriError::WebNotHttps));
        assert_eq!(web("https://localhost/cb"), Err(RedirectUriError::WebNotHttps));
        assert_eq!(web("com.example.app:/cb"), Err(RedirectUriError::WebNotHttps));
        assert!(web("https://app.example.com/cb").is_ok());
    }

    #[test]
    fn requests_match_exactly_but_for_a_loopback_port() {
        let registered = native("https://app.example/cb").unwrap();
        assert!(registered.admits("https://app.example/cb"));
        for other in [
            "https://app.example/cb/",
            "https://APP.example/cb",
            "https://app.example/cb?x=1",
            "https://app.example:8443/cb",
        ] {
            assert!(!registered.admits(other), "{other}");
        }
        let loopback = native("http://127.0.0.1/callback").unwrap();
        assert!(loopback.admits("http://127.0.0.1:51234/callback"));
        assert!(!loopback.admits("http://127.0.0.1:51234/other"));
        assert!(!loopback.admits("http://localhost:51234/callback"), "the host as registered");
        assert!(!loopback.admits("https://127.0.0.1:51234/callback"), "the scheme as registered");
        assert!(!loopback.admits("http://x@127.0.0.1:51234/callback"));
        assert!(!loopback.admits("http://127.0.0.1:51234/callback#frag"));
    }
}
