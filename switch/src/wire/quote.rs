//! The packet an ICMP error quotes: its IP header and the start of its
//! transport header, cut short (RFC 792: header plus 8 bytes; RFC 4443:
//! as much as fits). What connection tracking needs to find the flow an
//! error belongs to, read without trusting the quote's length fields,
//! and rewritten in place ([`Quoted::rewrite`]) when connection tracking
//! translates that flow.
//!
//! Contract: [`Quoted::parse`] reads only within the quote; the quoted
//! header must be complete (IPv4 IHL, IPv6 fixed header, no IPv6
//! extension headers) and the first 4 transport bytes present for TCP and
//! UDP (their ports) or 8 for ICMP (the echo identifier). Nothing else of
//! the quote is checked: a router may have changed its TTL and checksum.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::checksum;
use super::transport::proto;
use super::ParseError;

/// What an ICMP error says about the packet that caused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quoted {
    /// The quoted packet's source (the sender of the error's addressee).
    pub src: IpAddr,
    /// The quoted packet's destination.
    pub dst: IpAddr,
    /// Its IP protocol number.
    pub protocol: u8,
    /// TCP or UDP: source and destination port. ICMP echo: the
    /// identifier, twice. Otherwise zeros.
    pub ports: (u16, u16),
    /// ICMP or ICMPv6 echo: whether the quoted packet was a request (it
    /// was a reply otherwise); `None` for anything else.
    pub echo_request: Option<bool>,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    super::be16_at(b, at)
}

impl Quoted {
    /// Parses `quote`, the bytes after an ICMP (`v6` false) or ICMPv6
    /// error's 8-byte header.
    pub fn parse(quote: &[u8], v6: bool) -> Result<Self, ParseError> {
        let version = quote.first().map(|b| b >> 4).ok_or(ParseError::Truncated)?;
        let (src, dst, protocol, l4) = match (v6, version) {
            (false, 4) => {
                let ihl = usize::from(quote.first().map_or(0, |b| b & 0x0f)) * 4;
                let (src, dst) = match quote.get(12..20) {
                    Some([a, b, c, d, e, f, g, h]) => {
                        (Ipv4Addr::new(*a, *b, *c, *d), Ipv4Addr::new(*e, *f, *g, *h))
                    }
                    _ => return Err(ParseError::Truncated),
                };
                if ihl < 20 {
                    return Err(ParseError::BadHeaderLength);
                }
                let protocol = *quote.get(9).ok_or(ParseError::Truncated)?;
                let l4 = quote.get(ihl..).ok_or(ParseError::BadHeaderLength)?;
                (IpAddr::V4(src), IpAddr::V4(dst), protocol, l4)
            }
            (true, 6) => {
                let addr = |at: usize| -> Result<Ipv6Addr, ParseError> {
                    let b: [u8; 16] = quote
                        .get(at..at + 16)
                        .and_then(|s| s.try_into().ok())
                        .ok_or(ParseError::Truncated)?;
                    Ok(Ipv6Addr::from(b))
                };
                let protocol = *quote.get(6).ok_or(ParseError::Truncated)?;
                let l4 = quote.get(40..).ok_or(ParseError::Truncated)?;
                (IpAddr::V6(addr(8)?), IpAddr::V6(addr(24)?), protocol, l4)
            }
            _ => return Err(ParseError::BadVersion),
        };
        let ports = match protocol {
            proto::TCP | proto::UDP => (be16(l4, 0), be16(l4, 2)),
            proto::ICMP | proto::ICMPV6 if l4.len() >= 8 => (be16(l4, 4), be16(l4, 4)),
            proto::ICMP | proto::ICMPV6 => (None, None),
            _ => (Some(0), Some(0)),
        };
        let echo_request = match (protocol, l4.first()) {
            (proto::ICMP, Some(0 | 8)) => l4.first().map(|t| *t == 8),
            (proto::ICMPV6, Some(128 | 129)) => l4.first().map(|t| *t == 128),
            _ => None,
        };
        match ports {
            (Some(s), Some(d)) => Ok(Self {
                src,
                dst,
                protocol,
                ports: (s, d),
                echo_request,
            }),
            _ => Err(ParseError::TruncatedTransport),
        }
    }
}

/// Overwrites `b[at..at + new.len()]` with `new` (at most 16 bytes) and
/// returns the old bytes.
fn swap(b: &mut [u8], at: usize, new: &[u8]) -> Result<[u8; 16], ParseError> {
    let field = b.get_mut(at..at + new.len()).ok_or(ParseError::Truncated)?;
    let mut old = [0u8; 16];
    old.get_mut(..new.len())
        .ok_or(ParseError::Truncated)?
        .copy_from_slice(field);
    field.copy_from_slice(new);
    Ok(old)
}

fn put16(b: &mut [u8], at: usize, v: u16) -> Result<(), ParseError> {
    b.get_mut(at..at + 2)
        .ok_or(ParseError::Truncated)?
        .copy_from_slice(&v.to_be_bytes());
    Ok(())
}

/// An address's bytes (4 or 16) at the start of 16.
fn addr_bytes(a: &IpAddr) -> ([u8; 16], usize) {
    match a {
        IpAddr::V4(a) => {
            let mut o = [0u8; 16];
            let [x, y, z, w] = a.octets();
            o[0] = x;
            o[1] = y;
            o[2] = z;
            o[3] = w;
            (o, 4)
        }
        IpAddr::V6(a) => (a.octets(), 16),
    }
}

impl Quoted {
    /// Rewrites the quoted packet in `quote` (as [`Self::parse`] reads
    /// it) to carry `src`, `dst` and, for TCP and UDP, `ports`. The
    /// quoted IPv4 header checksum and the quoted transport checksum (when
    /// the quote holds it: UDP's and ICMPv6's always, TCP's if the quote
    /// reaches byte 18 of its header) are updated incrementally, so they
    /// stay as right as they were. An ICMP echo's identifier is left
    /// alone. Nothing changes on an error (a quote [`Self::parse`]
    /// refuses, or addresses of the other family).
    pub fn rewrite(
        quote: &mut [u8],
        v6: bool,
        src: IpAddr,
        dst: IpAddr,
        ports: (u16, u16),
    ) -> Result<(), ParseError> {
        let old = Self::parse(quote, v6)?;
        if src.is_ipv6() != v6 || dst.is_ipv6() != v6 {
            return Err(ParseError::BadVersion);
        }
        let (src_at, dst_at, l4) = if v6 {
            (8, 24, 40)
        } else {
            let ihl = usize::from(quote.first().map_or(0, |b| b & 0x0f)) * 4;
            (12, 16, ihl)
        };
        let l4_sum_at = match old.protocol {
            proto::TCP => Some(l4 + 16),
            proto::UDP => Some(l4 + 6),
            proto::ICMPV6 => Some(l4 + 2),
            _ => None,
        };
        let mut l4_sum = l4_sum_at.and_then(|at| be16(quote, at));
        // UDP over IPv4 without a checksum stays without one.
        if old.protocol == proto::UDP && !v6 && l4_sum == Some(0) {
            l4_sum = None;
        }
        let mut ip_sum = if v6 { None } else { be16(quote, 10) };
        for (at, new) in [(src_at, src), (dst_at, dst)] {
            let (bytes, n) = addr_bytes(&new);
            let new = bytes.get(..n).unwrap_or_default();
            let old = swap(quote, at, new)?;
            let old = old.get(..n).unwrap_or_default();
            ip_sum = ip_sum.map(|c| checksum::update(c, old, new));
            l4_sum = l4_sum.map(|c| checksum::update(c, old, new));
        }
        if matches!(old.protocol, proto::TCP | proto::UDP) {
            put16(quote, l4, ports.0)?;
            put16(quote, l4 + 2, ports.1)?;
            l4_sum = l4_sum.map(|c| checksum::update_word(c, old.ports.0, ports.0));
            l4_sum = l4_sum.map(|c| checksum::update_word(c, old.ports.1, ports.1));
        }
        if let Some(c) = ip_sum {
            put16(quote, 10, c)?;
        }
        if let (Some(at), Some(c)) = (l4_sum_at, l4_sum) {
            let c = if old.protocol == proto::UDP && c == 0 {
                0xffff
            } else {
                c
            };
            put16(quote, at, c)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::pkt;

    #[test]
    fn reads_the_flow_of_a_cut_quote() {
        let p = pkt("10.0.0.1", "10.0.0.2")
            .udp(40000, 53)
            .payload(&[0; 100])
            .build();
        let q = Quoted::parse(&p[..28], false).unwrap();
        assert_eq!(q.src, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(q.dst, "10.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!((q.protocol, q.ports), (17, (40000, 53)));
        let p = pkt("fd00::1", "fd00::2").tcp(1, 2).build();
        let q = Quoted::parse(&p[..44], true).unwrap();
        assert_eq!((q.protocol, q.ports), (6, (1, 2)));
        // An echo: the identifier the builder puts in, 0x1234.
        let p = pkt("10.0.0.1", "10.0.0.2").icmp(8, 0).build();
        assert_eq!(Quoted::parse(&p, false).unwrap().ports, (0x1234, 0x1234));
    }

    #[test]
    fn a_rewritten_quote_is_the_quote_of_the_rewritten_packet() {
        let moved = |f: crate::testing::Fixture| {
            let mut g = f.clone();
            (g.src, g.dst) = ("10.96.0.1".parse().unwrap(), "10.244.3.3".parse().unwrap());
            (f, g)
        };
        // IPv4: header plus 8 bytes, which hold UDP's checksum but not TCP's.
        for (f, g) in [
            moved(
                pkt("10.244.1.1", "10.244.2.2")
                    .udp(40000, 53)
                    .payload(&[7; 50]),
            ),
            moved(
                pkt("10.244.1.1", "10.244.2.2")
                    .tcp(40000, 80)
                    .payload(&[7; 50]),
            ),
        ] {
            let mut q = f.build()[..28].to_vec();
            let (src, dst) = (g.src, g.dst);
            Quoted::rewrite(&mut q, false, src, dst, (1234, 8080)).unwrap();
            let mut g = g;
            (g.src_port, g.dst_port) = (1234, 8080);
            assert_eq!(q, g.build()[..28].to_vec(), "{:?}", f.l4);
            let r = Quoted::parse(&q, false).unwrap();
            assert_eq!((r.src, r.dst, r.ports), (src, dst, (1234, 8080)));
        }
        // IPv6, the whole packet quoted: TCP's checksum too; ICMPv6 echo's
        // checksum covers the addresses, its identifier stays.
        let fresh =
            |src: &str,
             dst: &str,
             f: &dyn Fn(crate::testing::Fixture) -> crate::testing::Fixture| {
                f(pkt(src, dst).payload(&[9; 30])).build()
            };
        let tcp = |f: crate::testing::Fixture| f.tcp(5, 6);
        let echo = |f: crate::testing::Fixture| f.icmp(128, 0);
        for (make, ports) in [(&tcp as &dyn Fn(_) -> _, (5, 6)), (&echo, (0, 0))] {
            let mut q = fresh("fd00::1", "fd00::2", make);
            let (s, d): (IpAddr, IpAddr) = ("fd00::9".parse().unwrap(), "fd00::8".parse().unwrap());
            Quoted::rewrite(&mut q, true, s, d, ports).unwrap();
            assert_eq!(q, fresh("fd00::9", "fd00::8", make));
        }
        let p = pkt("fd00::1", "fd00::2").icmp(129, 0).build();
        assert_eq!(Quoted::parse(&p, true).unwrap().echo_request, Some(false));
        assert_eq!(
            Quoted::parse(&p[..48], true).unwrap().echo_request,
            Some(false)
        );
        let p = pkt("10.0.0.1", "10.0.0.2").icmp(8, 0).build();
        assert_eq!(Quoted::parse(&p, false).unwrap().echo_request, Some(true));
    }

    #[test]
    fn a_quote_of_the_other_family_or_too_short_is_left_alone() {
        let p = pkt("10.0.0.1", "10.0.0.2").udp(1, 2).build();
        let mut q = p[..28].to_vec();
        let v6: IpAddr = "fd00::1".parse().unwrap();
        assert!(Quoted::rewrite(&mut q, false, v6, v6, (1, 2)).is_err());
        assert!(Quoted::rewrite(&mut q[..23], false, p_src(), p_src(), (1, 2)).is_err());
        assert_eq!(q, p[..28].to_vec());
        // UDP over IPv4 without a checksum stays without one.
        let mut q = p[..28].to_vec();
        q[26..28].copy_from_slice(&[0, 0]);
        Quoted::rewrite(&mut q, false, p_src(), p_src(), (3, 4)).unwrap();
        assert_eq!(&q[26..28], &[0, 0]);
    }

    fn p_src() -> IpAddr {
        "10.9.9.9".parse().unwrap()
    }

    #[test]
    fn refuses_what_is_cut_too_short_or_of_the_wrong_family() {
        let p = pkt("10.0.0.1", "10.0.0.2").udp(1, 2).build();
        for n in 0..24 {
            assert!(Quoted::parse(&p[..n], false).is_err(), "{n}");
        }
        assert!(Quoted::parse(&p, true).is_err());
        let p = pkt("fd00::1", "fd00::2").udp(1, 2).build();
        assert!(Quoted::parse(&p[..43], true).is_err());
        assert!(Quoted::parse(&p, false).is_err());
        // Another protocol needs no transport bytes.
        let p = pkt("10.0.0.1", "10.0.0.2").raw(47).build();
        assert_eq!(Quoted::parse(&p, false).unwrap().ports, (0, 0));
    }
}
