//! Resolving upstream host names, so that every address a name points to meets the SSRF guard.

use std::net::IpAddr;

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
        match tokio::net::lookup_host((host, port)).await {
            Ok(addresses) => addresses.map(|a| a.ip()).collect(),
            Err(error) => {
                tracing::debug!(host, %error, "host does not resolve");
                Vec::new()
            }
        }
    }
}
