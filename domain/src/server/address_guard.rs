//! The SSRF guard: addresses an upstream URL may not point at unless its host is allowlisted.
//!
//! Checked on the URL's literal host here, and by the write side on every address the host resolves to.
//! IPv6 forms that carry an IPv4 address (mapped, compatible, NAT64, 6to4) are judged by that address, so
//! `[::ffff:10.0.0.1]` is private like `10.0.0.1`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockedRange {
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// `10/8`, `172.16/12`, `192.168/16`.
    Private,
    /// `169.254/16`, `fe80::/10`.
    LinkLocal,
    /// Cloud instance metadata services (AWS, GCP, Azure, Alibaba, Oracle).
    CloudMetadata,
    /// `100.64/10` (carrier-grade NAT).
    SharedAddressSpace,
    /// `224/4`, `ff00::/8`.
    Multicast,
    /// `0.0.0.0/8`, `::`.
    Unspecified,
    /// `255.255.255.255`.
    Broadcast,
    /// `240/4` and other special-purpose blocks (benchmarking `198.18/15`, IETF `192.0.0/24`).
    Reserved,
    /// `fc00::/7`.
    UniqueLocal,
}

impl BlockedRange {
    /// A stable name for error messages and problem types.
    pub fn as_str(self) -> &'static str {
        match self {
            BlockedRange::Loopback => "loopback",
            BlockedRange::Private => "private",
            BlockedRange::LinkLocal => "link_local",
            BlockedRange::CloudMetadata => "cloud_metadata",
            BlockedRange::SharedAddressSpace => "shared_address_space",
            BlockedRange::Multicast => "multicast",
            BlockedRange::Unspecified => "unspecified",
            BlockedRange::Broadcast => "broadcast",
            BlockedRange::Reserved => "reserved",
            BlockedRange::UniqueLocal => "unique_local",
        }
    }
}

/// Well-known metadata endpoints; some sit in public ranges (Azure's wire server).
const METADATA_V4: [Ipv4Addr; 3] =
    [Ipv4Addr::new(169, 254, 169, 254), Ipv4Addr::new(100, 100, 100, 200), Ipv4Addr::new(168, 63, 129, 16)];
const METADATA_V6: [Ipv6Addr; 1] = [Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)];

/// The range `ip` falls in, when an upstream may not point there.
pub fn blocked_range(ip: IpAddr) -> Option<BlockedRange> {
    match ip {
        IpAddr::V4(v4) => blocked_v4(v4),
        IpAddr::V6(v6) => blocked_v6(v6),
    }
}

fn blocked_v4(ip: Ipv4Addr) -> Option<BlockedRange> {
    let [a, b, c, _] = ip.octets();
    Some(if METADATA_V4.contains(&ip) {
        BlockedRange::CloudMetadata
    } else if ip.is_loopback() {
        BlockedRange::Loopback
    } else if ip.is_private() {
        BlockedRange::Private
    } else if ip.is_link_local() {
        BlockedRange::LinkLocal
    } else if a == 100 && (64..128).contains(&b) {
        BlockedRange::SharedAddressSpace
    } else if ip.is_multicast() {
        BlockedRange::Multicast
    } else if ip.is_broadcast() {
        BlockedRange::Broadcast
    } else if a == 0 {
        BlockedRange::Unspecified
    } else if a >= 240 || (a == 198 && (18..20).contains(&b)) || (a == 192 && b == 0 && c == 0) {
        BlockedRange::Reserved
    } else {
        return None;
    })
}

fn blocked_v6(ip: Ipv6Addr) -> Option<BlockedRange> {
    if let Some(v4) = embedded_v4(ip) {
        return blocked_v4(v4);
    }
    let first = ip.segments()[0];
    Some(if METADATA_V6.contains(&ip) {
        BlockedRange::CloudMetadata
    } else if ip.is_loopback() {
        BlockedRange::Loopback
    } else if ip.is_unspecified() {
        BlockedRange::Unspecified
    } else if first & 0xffc0 == 0xfe80 {
        BlockedRange::LinkLocal
    } else if first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfec0 {
        // Unique local, and the deprecated site-local block that some stacks still route internally.
        BlockedRange::UniqueLocal
    } else if ip.segments()[..3] == [0x64, 0xff9b, 1] {
        // Local-use NAT64 (RFC 8215): translated to whatever the operator's network holds.
        BlockedRange::Reserved
    } else if ip.is_multicast() {
        BlockedRange::Multicast
    } else {
        return None;
    })
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`), IPv4-translated (`::ffff:0:a.b.c.d`,
/// RFC 2765), IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`), 6to4 (`2002:aabb:ccdd::`) or
/// Teredo (`2001:0::…`, the client's address inverted in the last 32 bits) address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        Some(v4)
    } else if (s[..6] == [0; 6] && !ip.is_loopback() && !ip.is_unspecified())
        || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
        || s[..6] == [0, 0, 0, 0, 0xffff, 0]
    {
        Some(tail())
    } else if s[..2] == [0x2001, 0] {
        let inverted = tail();
        Some(Ipv4Addr::from(!u32::from(inverted)))
    } else if s[0] == 0x2002 {
        Some(Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(ip: &str) -> Option<BlockedRange> {
        blocked_range(ip.parse().unwrap())
    }

    #[test]
    fn internal_addresses_are_blocked_by_name() {
        let cases = [
            ("127.0.0.1", BlockedRange::Loopback),
            ("10.1.2.3", BlockedRange::Private),
            ("172.31.0.1", BlockedRange::Private),
            ("192.168.1.1", BlockedRange::Private),
            ("169.254.169.254", BlockedRange::CloudMetadata),
            ("169.254.1.1", BlockedRange::LinkLocal),
            ("100.64.0.1", BlockedRange::SharedAddressSpace),
            ("224.0.0.1", BlockedRange::Multicast),
            ("0.0.0.0", BlockedRange::Unspecified),
            ("255.255.255.255", BlockedRange::Broadcast),
            ("240.0.0.1", BlockedRange::Reserved),
            ("::1", BlockedRange::Loopback),
            ("::", BlockedRange::Unspecified),
            ("fe80::1", BlockedRange::LinkLocal),
            ("fd12::1", BlockedRange::UniqueLocal),
            ("ff02::1", BlockedRange::Multicast),
            ("fd00:ec2::254", BlockedRange::CloudMetadata),
            ("::ffff:10.0.0.1", BlockedRange::Private),
            ("::ffff:127.0.0.1", BlockedRange::Loopback),
            ("::ffff:0:10.0.0.1", BlockedRange::Private),
            ("::ffff:0:127.0.0.1", BlockedRange::Loopback),
            ("::ffff:0:169.254.169.254", BlockedRange::CloudMetadata),
            // Teredo: 2001:0:server:flags:port:client, the client inverted (127.0.0.1 → 80ff:fffe)
            ("2001:0:4136:e378:8000:63bf:80ff:fffe", BlockedRange::Loopback),
            ("64:ff9b::a9fe:a9fe", BlockedRange::CloudMetadata),
            ("2002:7f00:1::", BlockedRange::Loopback),
            ("168.63.129.16", BlockedRange::CloudMetadata),
            ("fec0::1", BlockedRange::UniqueLocal),
            ("64:ff9b:1::a00:1", BlockedRange::Reserved),
        ];
        for (ip, expected) in cases {
            assert_eq!(range(ip), Some(expected), "{ip}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "100.128.0.1"] {
            assert_eq!(range(ip), None, "{ip}");
        }
    }
}
