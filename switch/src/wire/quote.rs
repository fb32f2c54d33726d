//! The packet an ICMP error quotes: its IP header and the start of its
//! transport header, cut short (RFC 792: header plus 8 bytes; RFC 4443:
//! as much as fits). What connection tracking needs to find the flow an
//! error belongs to, read without trusting the quote's length fields.
//!
//! Contract: [`Quoted::parse`] reads only within the quote; the quoted
//! header must be complete (IPv4 IHL, IPv6 fixed header, no IPv6
//! extension headers) and the first 4 transport bytes present for TCP and
//! UDP (their ports) or 8 for ICMP (the echo identifier). Nothing else of
//! the quote is checked: a router may have changed its TTL and checksum.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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
        match ports {
            (Some(s), Some(d)) => Ok(Self {
                src,
                dst,
                protocol,
                ports: (s, d),
            }),
            _ => Err(ParseError::TruncatedTransport),
        }
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
