//! Addresses that never belong on the overlay ("martians", RFC 1812 5.3.7).
//!
//! Contract: pure predicates. The switch drops packets whose source or
//! destination is a martian before anything else looks at them, and refuses
//! martians as pod or host addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// True if `addr` may not appear as a source or destination on the overlay:
/// unspecified / "this network" (`0.0.0.0/8`, `::`), loopback, link-local,
/// multicast, reserved and limited broadcast (`240.0.0.0/4`), IPv4-mapped
/// IPv6 (`::ffff:0:0/96`).
pub(crate) fn is_martian(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => is_martian_v4(a),
        IpAddr::V6(a) => is_martian_v6(a),
    }
}

fn is_martian_v4(a: Ipv4Addr) -> bool {
    let first = a.octets()[0];
    first == 0 || first >= 240 || a.is_loopback() || a.is_link_local() || a.is_multicast()
}

fn is_martian_v6(a: Ipv6Addr) -> bool {
    let unicast_link_local = a.segments()[0] & 0xffc0 == 0xfe80;
    a.is_unspecified()
        || a.is_loopback()
        || a.is_multicast()
        || unicast_link_local
        || a.to_ipv4_mapped().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn martians() {
        for a in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "169.254.1.1",
            "224.0.0.1",
            "239.255.255.255",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fe80::1",
            "febf::1",
            "ff02::2",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_martian(a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn ordinary_addresses() {
        for a in [
            "10.244.1.2",
            "10.96.0.10",
            "192.168.0.255",
            "8.8.8.8",
            "fd00::1",
            "2001:db8::1",
            "fec0::1",
        ] {
            assert!(!is_martian(a.parse().unwrap()), "{a}");
        }
    }
}
