//! Resolving upstream host names, so that every address a name points to meets the SSRF guard.

use std::net::IpAddr;

/// Longest wait for a host name to resolve.
const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Resolves a host name to the addresses an HTTP client could connect to.
#[async_trait::async_trait]
pub trait HostResolver: Send + Sync {
    /// Every address of `host`; empty when it does not resolve.
    async fn resolve(&self, host: &str, port: u16) -> Vec<IpAddr>;
}

/// The system resolver (`getaddrinfo`, so `/etc/hosts` counts).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

#[async_trait::async_trait]
impl HostResolver for SystemResolver {
    async fn resolve(&self, host: &str, port: u16) -> Vec<IpAddr> {
        // A resolver that hangs must not hold a request (or a connection of the pool) forever.
        match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port))).await {
            Ok(Ok(addresses)) => addresses.map(|a| a.ip()).collect(),
            Ok(Err(error)) => {
                tracing::debug!(host, %error, "host does not resolve");
                Vec::new()
            }
            Err(_) => {
                tracing::warn!(host, "host resolution timed out");
                Vec::new()
            }
        }
    }
}
