//! Test fixtures: a small builder of well-formed IPv4/IPv6 packets (valid
//! header and transport checksums) that tests then break on purpose.

use std::net::{IpAddr, Ipv4Addr};

use super::checksum;
use super::ipv6::Ipv6Packet;

#[derive(Debug, Clone)]
enum L4 {
    Udp(u16, u16),
    Tcp(u16, u16),
    Icmp(u8, u8),
    Raw(u8),
}

/// A packet under construction; see [`pkt`].
#[derive(Debug, Clone)]
pub(crate) struct Fixture {
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
    options: Vec<u8>,
    /// IPv4: fragment offset (8-byte units) and "more fragments".
    frag: (u16, bool),
    /// IPv6 extension headers: (next-header value, bytes without the first).
    ext: Vec<(u8, Vec<u8>)>,
    l4: L4,
    payload: Vec<u8>,
}

/// A UDP-less, payload-less packet from `src` to `dst` (family from the
/// addresses), TTL 64; chain builder calls, then [`Fixture::build`].
pub(crate) fn pkt(src: &str, dst: &str) -> Fixture {
    Fixture {
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        ttl: 64,
        options: Vec::new(),
        frag: (0, false),
        ext: Vec::new(),
        l4: L4::Raw(59),
        payload: Vec::new(),
    }
}

impl Fixture {
    pub(crate) fn ttl(mut self, ttl: u8) -> Self {
        self.ttl = ttl;
        self
    }

    /// IPv4 options, zero-padded to a multiple of 4 bytes.
    pub(crate) fn options(mut self, options: &[u8]) -> Self {
        self.options = options.to_vec();
        self.options.resize(options.len().next_multiple_of(4), 0);
        self
    }

    /// IPv4 fragment offset in 8-byte units and the MF flag.
    pub(crate) fn frag(mut self, offset: u16, more: bool) -> Self {
        self.frag = (offset, more);
        self
    }

    /// An 8-byte IPv6 hop-by-hop header (one PadN option).
    pub(crate) fn ext_hop_by_hop(mut self) -> Self {
        self.ext.push((0, vec![0, 1, 4, 0, 0, 0, 0]));
        self
    }

    /// An 8-byte IPv6 destination-options header (one PadN option).
    pub(crate) fn ext_dest_opts(mut self) -> Self {
        self.ext.push((60, vec![0, 1, 4, 0, 0, 0, 0]));
        self
    }

    /// An IPv6 fragment header with `offset` (8-byte units) and M flag.
    pub(crate) fn ext_fragment(mut self, offset: u16, more: bool) -> Self {
        let field = (offset << 3) | u16::from(more);
        let [hi, lo] = field.to_be_bytes();
        self.ext.push((44, vec![0, hi, lo, 0xde, 0xad, 0xbe, 0xef]));
        self
    }

    pub(crate) fn udp(mut self, src_port: u16, dst_port: u16) -> Self {
        self.l4 = L4::Udp(src_port, dst_port);
        self
    }

    pub(crate) fn tcp(mut self, src_port: u16, dst_port: u16) -> Self {
        self.l4 = L4::Tcp(src_port, dst_port);
        self
    }

    /// ICMP or ICMPv6 (by family) with identifier 0x1234 and sequence 1.
    pub(crate) fn icmp(mut self, ty: u8, code: u8) -> Self {
        self.l4 = L4::Icmp(ty, code);
        self
    }

    /// No transport header: the payload follows the IP header as protocol `proto`.
    pub(crate) fn raw(mut self, proto: u8) -> Self {
        self.l4 = L4::Raw(proto);
        self
    }

    pub(crate) fn payload(mut self, payload: &[u8]) -> Self {
        self.payload = payload.to_vec();
        self
    }

    fn transport(&self) -> (u8, Vec<u8>) {
        let v6 = self.src.is_ipv6();
        let (proto, mut l4, checksum_at) = match self.l4 {
            L4::Udp(s, d) => {
                let len = u16::try_from(8 + self.payload.len()).unwrap();
                let mut h = Vec::new();
                h.extend_from_slice(&s.to_be_bytes());
                h.extend_from_slice(&d.to_be_bytes());
                h.extend_from_slice(&len.to_be_bytes());
                h.extend_from_slice(&[0, 0]);
                (17, h, Some(6))
            }
            L4::Tcp(s, d) => {
                let mut h = vec![0u8; 20];
                h[0..2].copy_from_slice(&s.to_be_bytes());
                h[2..4].copy_from_slice(&d.to_be_bytes());
                h[12] = 5 << 4;
                h[13] = 0x10; // ACK
                h[14..16].copy_from_slice(&65535u16.to_be_bytes());
                (6, h, Some(16))
            }
            L4::Icmp(ty, code) => (
                if v6 { 58 } else { 1 },
                vec![ty, code, 0, 0, 0x12, 0x34, 0, 1],
                Some(2),
            ),
            L4::Raw(p) => (p, Vec::new(), None),
        };
        l4.extend_from_slice(&self.payload);
        if let Some(at) = checksum_at {
            let len = u32::try_from(l4.len()).unwrap();
            let pseudo = match (self.src, self.dst) {
                (IpAddr::V6(s), IpAddr::V6(d)) => checksum::pseudo_header_v6(s, d, proto, len),
                (IpAddr::V4(s), IpAddr::V4(d)) if proto != 1 => {
                    let acc = checksum::sum(&s.octets(), 0);
                    checksum::sum(&d.octets(), acc) + u64::from(proto) + u64::from(len)
                }
                _ => 0,
            };
            let sum = checksum::finish(checksum::sum(&l4, pseudo));
            l4[at..at + 2].copy_from_slice(&sum.to_be_bytes());
        }
        (proto, l4)
    }

    pub(crate) fn build(&self) -> Vec<u8> {
        let (proto, l4) = self.transport();
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => self.build_v4(s, d, proto, &l4),
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let mut ext = Vec::new();
                let mut first = proto;
                // Built back to front: each header names the one after it.
                for (kind, body) in self.ext.iter().rev() {
                    let mut h = vec![first];
                    h.extend_from_slice(body);
                    ext.splice(0..0, h);
                    first = *kind;
                }
                let payload_len = u16::try_from(ext.len() + l4.len()).unwrap();
                let mut b = vec![0x60, 0, 0, 0];
                b.extend_from_slice(&payload_len.to_be_bytes());
                b.push(first);
                b.push(self.ttl);
                b.extend_from_slice(&s.octets());
                b.extend_from_slice(&d.octets());
                b.extend_from_slice(&ext);
                b.extend_from_slice(&l4);
                b
            }
            _ => panic!("mixed address families"),
        }
    }

    fn build_v4(&self, s: Ipv4Addr, d: Ipv4Addr, proto: u8, l4: &[u8]) -> Vec<u8> {
        let header_len = 20 + self.options.len();
        let total = u16::try_from(header_len + l4.len()).unwrap();
        let mut b = vec![0x40 | u8::try_from(header_len / 4).unwrap(), 0];
        b.extend_from_slice(&total.to_be_bytes());
        b.extend_from_slice(&[0x12, 0x34]);
        let flags = (self.frag.0 & 0x1fff) | if self.frag.1 { 0x2000 } else { 0 };
        b.extend_from_slice(&flags.to_be_bytes());
        b.extend_from_slice(&[self.ttl, proto, 0, 0]);
        b.extend_from_slice(&s.octets());
        b.extend_from_slice(&d.octets());
        b.extend_from_slice(&self.options);
        refill_v4_checksum(&mut b);
        b.extend_from_slice(l4);
        b
    }
}

/// Recomputes the IPv4 header checksum after a test edited the header.
pub(crate) fn refill_v4_checksum(b: &mut [u8]) {
    let header_len = (usize::from(b[0] & 0x0f) * 4).clamp(20, b.len());
    b[10..12].fill(0);
    let sum = checksum::checksum(&b[..header_len]);
    b[10..12].copy_from_slice(&sum.to_be_bytes());
}

/// True if an ICMPv6 message (no extension headers) has a valid checksum.
pub(crate) fn verify_icmpv6_checksum(p: &Ipv6Packet<&[u8]>) -> bool {
    let len = u32::try_from(p.payload().len()).unwrap();
    let pseudo = checksum::pseudo_header_v6(p.src_addr(), p.dst_addr(), 58, len);
    checksum::fold(checksum::sum(p.payload(), pseudo)) == 0xffff
}

#[test]
fn fixtures_have_valid_transport_checksums() {
    for (s, d) in [("10.0.0.1", "10.0.0.2"), ("fd00::1", "fd00::2")] {
        for f in [
            pkt(s, d).udp(1, 2),
            pkt(s, d).tcp(3, 4),
            pkt(s, d).icmp(8, 0),
        ] {
            let f = f.payload(b"abc");
            let b = f.build();
            let (proto, l4) = f.transport();
            let hl = b.len() - l4.len();
            let pseudo = match (f.src, f.dst) {
                (IpAddr::V6(s), IpAddr::V6(d)) => {
                    checksum::pseudo_header_v6(s, d, proto, u32::try_from(l4.len()).unwrap())
                }
                (IpAddr::V4(s), IpAddr::V4(d)) if proto != 1 => {
                    let acc = checksum::sum(&s.octets(), checksum::sum(&d.octets(), 0));
                    acc + u64::from(proto) + l4.len() as u64
                }
                _ => 0,
            };
            assert_eq!(checksum::fold(checksum::sum(&b[hl..], pseudo)), 0xffff);
        }
    }
}
