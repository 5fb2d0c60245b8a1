//! The client's address: the socket's peer, or, when that peer is a proxy the operator trusts, the
//! address the proxies say they forwarded for.
//!
//! `X-Forwarded-For` is a list anybody can write: a client sends whatever it likes, and every proxy on
//! the way appends the address it saw. Only the entries appended by trusted proxies can be believed,
//! so the list is read from the right, skipping trusted addresses, and the first other address is the
//! client. From an untrusted peer the header is ignored: a spoofed header neither moves a rate limit
//! nor reaches the audit trail.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The client address resolved for a request (set by the rate-limiting layer, read by everything that
/// records where a request came from).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

/// Which peers may say whom they forwarded for.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Trusts the peers in `networks` (`10.0.0.0/8`, `::1/128`, or a single address).
    pub fn parse(networks: &[String]) -> Result<Self, String> {
        networks
            .iter()
            .map(|n| n.trim())
            .filter(|n| !n.is_empty())
            .map(|n| {
                n.parse::<IpNet>()
                    .or_else(|_| n.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{n} is not an address or a network (CIDR)"))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    fn trusts(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        self.0.iter().any(|network| network.contains(&address))
    }

    /// The client behind `peer`, given the request's headers.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        // Right to left: each entry was appended by the hop before the one that appended the next. The
        // first entry that is not an address, or not a trusted proxy's, ends the walk: what is left of
        // it the client wrote itself.
        let entries: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer;
        for entry in entries.into_iter().rev() {
            let Ok(address) = entry.parse::<IpAddr>() else { break };
            client = canonical(address);
            if !self.trusts(client) {
                break;
            }
        }
        client
    }
}

/// IPv4 addresses mapped into IPv6 (a dual-stack socket's view of an IPv4 peer) as IPv4.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(forwarded: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", forwarded.parse().unwrap());
        headers
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let proxies = TrustedProxies::parse(&["10.0.0.0/8".into()]).unwrap();
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(proxies.client(peer, &headers("198.51.100.1")), peer);
    }

    #[test]
    fn a_trusted_chain_is_read_from_the_right_up_to_the_first_untrusted_address() {
        let proxies = TrustedProxies::parse(&["10.0.0.0/8".into(), "192.0.2.7".into()]).unwrap();
        let peer: IpAddr = "10.1.2.3".parse().unwrap();
        // The client wrote the first entry itself; only what our proxies appended counts.
        let claimed = headers("1.1.1.1, 198.51.100.1, 192.0.2.7");
        assert_eq!(proxies.client(peer, &claimed), "198.51.100.1".parse::<IpAddr>().unwrap());
        assert_eq!(proxies.client(peer, &HeaderMap::new()), peer);
        // Junk the client wrote left of what our proxy appended hides nothing.
        assert_eq!(
            proxies.client(peer, &headers("not-an-address, 198.51.100.1")),
            "198.51.100.1".parse::<IpAddr>().unwrap()
        );
        // Junk in our proxy's place: the proxy is all that is known.
        assert_eq!(proxies.client(peer, &headers("198.51.100.1, not-an-address")), peer);
    }

    #[test]
    fn mapped_ipv4_peers_match_ipv4_networks() {
        let proxies = TrustedProxies::parse(&["127.0.0.0/8".into()]).unwrap();
        let peer: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(proxies.client(peer, &headers("198.51.100.1")), "198.51.100.1".parse::<IpAddr>().unwrap());
        assert!(TrustedProxies::parse(&["nonsense".into()]).is_err());
    }
}
