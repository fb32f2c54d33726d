//! The 5-tuple a connection is tracked by, and its keyed hash.
//!
//! Contract: a [`FlowKey`] is plain data (42 bytes, `Copy`); constructing
//! one never fails except for mixed address families, and [`FlowKey::reverse`]
//! gives the key a reply carries. ICMP echo flows use the identifier as
//! the "port" of the requester's side: a request from A to B with id `i`
//! is `(A, i) -> (B, 0)` and its reply `(B, 0) -> (A, i)`, so reversing
//! a request's key gives the reply's, as for TCP and UDP.

use std::hash::Hasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use siphasher::sip::SipHasher13;

use crate::wire::proto;

/// A connection's 5-tuple as one direction of it appears on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    src: [u8; 16],
    dst: [u8; 16],
    src_port: u16,
    dst_port: u16,
    proto: u8,
    v6: bool,
}

/// IPv4 addresses are kept IPv4-mapped (`::ffff:a.b.c.d`); the family flag
/// keeps them apart from real IPv6 addresses of that form.
fn octets(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

fn addr(octets: [u8; 16], v6: bool) -> IpAddr {
    let a = Ipv6Addr::from(octets);
    match (v6, a.to_ipv4_mapped()) {
        (false, Some(v4)) => IpAddr::V4(v4),
        (false, None) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        (true, _) => IpAddr::V6(a),
    }
}

impl FlowKey {
    /// The key of a packet of protocol `proto` (IP protocol number) from
    /// `src`:`src_port` to `dst`:`dst_port`; `None` if the two addresses
    /// are of different families.
    pub fn new(proto: u8, src: IpAddr, src_port: u16, dst: IpAddr, dst_port: u16) -> Option<Self> {
        if src.is_ipv4() != dst.is_ipv4() {
            return None;
        }
        Some(Self {
            src: octets(src),
            dst: octets(dst),
            src_port,
            dst_port,
            proto,
            v6: src.is_ipv6(),
        })
    }

    /// The key of an ICMP or ICMPv6 echo request (`request`) or reply with
    /// identifier `id` (see the module docs for the layout).
    pub fn icmp_echo(src: IpAddr, dst: IpAddr, id: u16, request: bool) -> Option<Self> {
        let proto = if src.is_ipv6() {
            proto::ICMPV6
        } else {
            proto::ICMP
        };
        let (src_port, dst_port) = if request { (id, 0) } else { (0, id) };
        Self::new(proto, src, src_port, dst, dst_port)
    }

    /// The key of the other direction: addresses and ports swapped.
    pub fn reverse(&self) -> Self {
        Self {
            src: self.dst,
            dst: self.src,
            src_port: self.dst_port,
            dst_port: self.src_port,
            proto: self.proto,
            v6: self.v6,
        }
    }

    /// The same key with a new destination.
    pub(crate) fn with_dst(&self, addr: IpAddr, port: u16) -> Self {
        Self {
            dst: octets(addr),
            dst_port: port,
            ..*self
        }
    }

    /// Source address.
    pub fn src(&self) -> IpAddr {
        addr(self.src, self.v6)
    }

    /// Destination address.
    pub fn dst(&self) -> IpAddr {
        addr(self.dst, self.v6)
    }

    /// Source port (ICMP echo: the identifier of a request, else 0).
    pub fn src_port(&self) -> u16 {
        self.src_port
    }

    /// Destination port (ICMP echo: the identifier of a reply, else 0).
    pub fn dst_port(&self) -> u16 {
        self.dst_port
    }

    /// IP protocol number.
    pub fn proto(&self) -> u8 {
        self.proto
    }

    /// Whether the addresses are IPv6.
    pub fn is_v6(&self) -> bool {
        self.v6
    }

    /// The keyed hash of this key (see the module docs of `conntrack` for
    /// why SipHash-1-3).
    pub(crate) fn hash(&self, seed: &HashSeed) -> u64 {
        let mut h = SipHasher13::new_with_keys(seed.0, seed.1);
        let mut bytes = [0u8; 38];
        let (a, rest) = bytes.split_at_mut(16);
        let (b, rest) = rest.split_at_mut(16);
        a.copy_from_slice(&self.src);
        b.copy_from_slice(&self.dst);
        let [p0, p1] = self.src_port.to_be_bytes();
        let [q0, q1] = self.dst_port.to_be_bytes();
        rest.copy_from_slice(&[p0, p1, q0, q1, self.proto, u8::from(self.v6)]);
        h.write(&bytes);
        h.finish()
    }
}

/// The 128-bit secret key of the table hashes. The caller draws it from
/// the OS's randomness at start-up (the switch reads none itself); pods
/// must not learn it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HashSeed(pub u64, pub u64);

impl std::fmt::Debug for HashSeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashSeed(..)")
    }
}

impl HashSeed {
    /// A seed from 16 bytes.
    pub fn from_bytes(b: [u8; 16]) -> Self {
        let [a0, a1, a2, a3, a4, a5, a6, a7, b0, b1, b2, b3, b4, b5, b6, b7] = b;
        Self(
            u64::from_le_bytes([a0, a1, a2, a3, a4, a5, a6, a7]),
            u64::from_le_bytes([b0, b1, b2, b3, b4, b5, b6, b7]),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn reverse_swaps_both_ends_and_round_trips() {
        let k = FlowKey::new(6, ip("10.244.1.2"), 40000, ip("10.96.0.1"), 443).unwrap();
        let r = k.reverse();
        assert_eq!((r.src(), r.src_port()), (ip("10.96.0.1"), 443));
        assert_eq!((r.dst(), r.dst_port()), (ip("10.244.1.2"), 40000));
        assert_eq!(r.reverse(), k);
        assert!(!k.is_v6());
        let k6 = FlowKey::new(17, ip("fd00::1"), 1, ip("fd00::2"), 2).unwrap();
        assert!(k6.is_v6());
        assert_eq!(k6.src(), ip("fd00::1"));
    }

    #[test]
    fn families_stay_apart() {
        assert_eq!(FlowKey::new(6, ip("10.0.0.1"), 1, ip("fd00::1"), 2), None);
        // An IPv4 address and its IPv4-mapped IPv6 form are different keys.
        let v4 = FlowKey::new(17, ip("10.0.0.1"), 1, ip("10.0.0.2"), 2).unwrap();
        let mapped = FlowKey::new(17, ip("::ffff:10.0.0.1"), 1, ip("::ffff:10.0.0.2"), 2).unwrap();
        assert_ne!(v4, mapped);
        let seed = HashSeed(1, 2);
        assert_ne!(v4.hash(&seed), mapped.hash(&seed));
        assert_eq!(mapped.src(), ip("::ffff:10.0.0.1"));
    }

    #[test]
    fn echo_request_reversed_is_its_reply() {
        let (a, b) = (ip("10.244.1.2"), ip("10.244.2.3"));
        let req = FlowKey::icmp_echo(a, b, 0x1234, true).unwrap();
        let rep = FlowKey::icmp_echo(b, a, 0x1234, false).unwrap();
        assert_eq!(req.reverse(), rep);
        assert_eq!(req.proto(), 1);
        let req6 = FlowKey::icmp_echo(ip("fd00::1"), ip("fd00::2"), 7, true).unwrap();
        assert_eq!(req6.proto(), 58);
    }

    #[test]
    fn the_hash_depends_on_the_seed_and_every_field() {
        let k = FlowKey::new(6, ip("10.0.0.1"), 1, ip("10.0.0.2"), 2).unwrap();
        let (s1, s2) = (HashSeed(1, 2), HashSeed(3, 4));
        assert_eq!(k.hash(&s1), k.hash(&s1));
        assert_ne!(k.hash(&s1), k.hash(&s2));
        let others = [
            FlowKey::new(17, ip("10.0.0.1"), 1, ip("10.0.0.2"), 2).unwrap(),
            FlowKey::new(6, ip("10.0.0.3"), 1, ip("10.0.0.2"), 2).unwrap(),
            FlowKey::new(6, ip("10.0.0.1"), 9, ip("10.0.0.2"), 2).unwrap(),
            FlowKey::new(6, ip("10.0.0.1"), 1, ip("10.0.0.2"), 9).unwrap(),
            k.reverse(),
        ];
        for o in others {
            assert_ne!(k.hash(&s1), o.hash(&s1), "{o:?}");
        }
        assert_eq!(
            HashSeed::from_bytes([1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]),
            HashSeed(1, 2)
        );
    }
}
