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
/// Whether a packet to `dst` is for its link only: link-local unicast,
/// link-scope multicast (`224.0.0.0/24`, `ff01::/16`, `ff02::/16`), or the
/// limited broadcast.
pub(crate) fn is_link_scoped(dst: IpAddr) -> bool {
    match dst {
        IpAddr::V4(a) => a.is_link_local() || a.is_broadcast() || a.octets()[..3] == [224, 0, 0],
        IpAddr::V6(a) => {
            let s0 = a.segments()[0];
            s0 & 0xffc0 == 0xfe80 || s0 == 0xff01 || s0 == 0xff02
        }
    }
}

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
    fn link_scoped_destinations() {
        for a in [
            "169.254.169.254",
            "224.0.0.251",
            "255.255.255.255",
            "fe80::1",
            "febf::1",
            "ff01::1",
            "ff02::2",
            "ff02::1:ff00:1",
        ] {
            assert!(is_link_scoped(a.parse().unwrap()), "{a}");
        }
        for a in [
            "10.0.0.1",
            "224.0.1.1",
            "239.1.1.1",
            "ff05::2",
            "ff0e::1",
            "fd00::1",
            "::1",
        ] {
            assert!(!is_link_scoped(a.parse().unwrap()), "{a}");
        }
    }

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
