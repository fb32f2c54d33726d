//! The fixtures' independent oracle: the textbook checksum, two bytes at a
//! time, and a judge of whole packets built on it.

use std::net::IpAddr;

use crate::wire::vnet::{VnetHdr, F_NEEDS_CSUM};

/// RFC 1071, two bytes at a time (an odd last byte padded with zero).
pub fn slow_sum(data: &[u8]) -> u64 {
    data.chunks(2)
        .map(|c| u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

/// Folds a sum into 16 bits.
pub fn fold(mut s: u64) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

pub(super) fn pseudo_slow(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> u64 {
    let addrs = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => [s.octets(), d.octets()].concat(),
        (IpAddr::V6(s), IpAddr::V6(d)) => [s.octets(), d.octets()].concat(),
        _ => panic!("mixed address families"),
    };
    let len = len as u64;
    slow_sum(&addrs) + u64::from(proto) + (len & 0xffff) + (len >> 16)
}

/// Recomputes the IPv4 header checksum after a test edited the header.
pub fn refill_v4_checksum(b: &mut [u8]) {
    let header_len = (usize::from(b[0] & 0x0f) * 4).clamp(20, b.len());
    b[10..12].fill(0);
    let sum = !fold(slow_sum(&b[..header_len]));
    b[10..12].copy_from_slice(&sum.to_be_bytes());
}

/// Where `p`'s transport header starts and its protocol: after the IPv4
/// header, or after the IPv6 extension headers the fixtures build.
fn l4_of(p: &[u8]) -> (usize, u8) {
    if p[0] >> 4 == 4 {
        return (usize::from(p[0] & 0xf) * 4, p[9]);
    }
    let (mut at, mut next) = (40, p[6]);
    while matches!(next, 0 | 43 | 44 | 60) {
        let len = if next == 44 {
            8
        } else {
            (usize::from(p[at + 1]) + 1) * 8
        };
        next = p[at];
        at += len;
    }
    (at, next)
}

/// Whether `p` is exactly one well-formed packet: its length fields match
/// its size, its IPv4 header checksum (if IPv4) and its TCP, UDP, ICMP or
/// ICMPv6 checksum are right (an absent UDP checksum over IPv4 is right).
pub fn valid(p: &[u8]) -> bool {
    if p.len() < 20 {
        return false;
    }
    let v6 = p[0] >> 4 == 6;
    let (src, dst): (IpAddr, IpAddr) = if v6 {
        if p.len() < 40 || usize::from(u16::from_be_bytes([p[4], p[5]])) + 40 != p.len() {
            return false;
        }
        let a: [u8; 16] = p[8..24].try_into().unwrap();
        let b: [u8; 16] = p[24..40].try_into().unwrap();
        (a.into(), b.into())
    } else {
        let ihl = usize::from(p[0] & 0xf) * 4;
        if usize::from(u16::from_be_bytes([p[2], p[3]])) != p.len()
            || fold(slow_sum(&p[..ihl])) != 0xffff
        {
            return false;
        }
        let a: [u8; 4] = p[12..16].try_into().unwrap();
        let b: [u8; 4] = p[16..20].try_into().unwrap();
        (a.into(), b.into())
    };
    let (l4, proto) = l4_of(p);
    let body = &p[l4..];
    match proto {
        17 => {
            if usize::from(u16::from_be_bytes([body[4], body[5]])) != body.len() {
                return false;
            }
            (!v6 && body[6..8] == [0, 0])
                || fold(pseudo_slow(src, dst, proto, body.len()) + slow_sum(body)) == 0xffff
        }
        6 | 58 => fold(pseudo_slow(src, dst, proto, body.len()) + slow_sum(body)) == 0xffff,
        1 => fold(slow_sum(body)) == 0xffff,
        _ => true,
    }
}

/// `p` as the kernel hands out a TSO/USO super-packet: the transport
/// checksum field holds only the pseudo-header sum (for the whole length),
/// with the virtio-net header that says so (`gso_type`, `gso_size`).
pub fn as_partial(mut p: Vec<u8>, gso_type: u8, gso_size: u16) -> (VnetHdr, Vec<u8>) {
    let v6 = p[0] >> 4 == 6;
    let (l4, proto) = l4_of(&p);
    let (src, dst): (IpAddr, IpAddr) = if v6 {
        let a: [u8; 16] = p[8..24].try_into().unwrap();
        let b: [u8; 16] = p[24..40].try_into().unwrap();
        (a.into(), b.into())
    } else {
        let a: [u8; 4] = p[12..16].try_into().unwrap();
        let b: [u8; 4] = p[16..20].try_into().unwrap();
        (a.into(), b.into())
    };
    let off = if proto == 6 { 16 } else { 6 };
    let partial = fold(pseudo_slow(src, dst, proto, p.len() - l4));
    p[l4 + off..l4 + off + 2].copy_from_slice(&partial.to_be_bytes());
    let hlen = l4
        + if proto == 6 {
            usize::from(p[l4 + 12] >> 4) * 4
        } else {
            8
        };
    (
        VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type,
            hdr_len: hlen as u16,
            gso_size,
            csum_start: l4 as u16,
            csum_offset: off as u16,
        },
        p,
    )
}

#[cfg(test)]
mod tests {
    use super::super::pkt;
    use super::*;

    #[test]
    fn fixtures_are_valid_and_breaking_them_shows() {
        for (s, d) in [("10.0.0.1", "10.0.0.2"), ("fd00::1", "fd00::2")] {
            for f in [
                pkt(s, d).udp(1, 2),
                pkt(s, d).tcp(3, 4),
                pkt(s, d).icmp(8, 0),
                pkt(s, d).ext_hop_by_hop().udp(5, 6),
            ] {
                if s.contains('.') && !f.ext.is_empty() {
                    continue;
                }
                let mut b = f.payload(b"abc").build();
                assert!(valid(&b), "{s}: {b:?}");
                let last = b.len() - 1;
                b[last] ^= 1;
                assert!(!valid(&b), "{s}: corrupted {b:?}");
            }
        }
    }
}
