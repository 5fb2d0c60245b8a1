//! Name resolution for connections to upstream MCP servers: the SSRF guard at connect time.
//!
//! A server's URL was checked when it was registered, but a name can resolve elsewhere tomorrow (DNS
//! rebinding). Every new upstream connection resolves through here: each address must be outside the
//! blocked ranges unless the operator trusts the host, and the client connects only to the addresses
//! checked. IP-literal URLs never reach a resolver; they were checked once and cannot change.

use std::net::SocketAddr;
use std::sync::Arc;

use commands::HostResolver;
use domain::server::{NetworkPolicy, blocked_range};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// A resolver that refuses names resolving into blocked ranges.
pub(crate) struct GuardedResolver {
    network: NetworkPolicy,
    resolver: Arc<dyn HostResolver>,
}

impl GuardedResolver {
    /// Trusts the hosts `network` allows; resolves with `resolver`.
    pub(crate) fn new(network: NetworkPolicy, resolver: Arc<dyn HostResolver>) -> Self {
        Self { network, resolver }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let (network, resolver) = (self.network.clone(), self.resolver.clone());
        Box::pin(async move {
            let host = name.as_str().to_owned();
            // The port is the URL's: the connector sets it on every address returned.
            let addresses = resolver.resolve(&host, 0).await;
            if addresses.is_empty() {
                return Err(format!("{host} does not resolve").into());
            }
            if !network.allows(&host)
                && let Some((ip, range)) = addresses.iter().find_map(|ip| blocked_range(*ip).map(|r| (*ip, r)))
            {
                return Err(format!(
                    "{host} resolves to {ip}, in the {} range the gateway does not reach",
                    range.as_str()
                )
                .into());
            }
            let pinned: Addrs = Box::new(addresses.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(pinned)
        })
    }
}
