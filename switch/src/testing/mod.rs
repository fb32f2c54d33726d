//! Packet fixtures for tests and benchmarks (cargo feature `testing`): one
//! builder of well-formed IPv4/IPv6 packets with right lengths and
//! checksums, which tests then break on purpose, and an independent
//! textbook checker to judge what the crate produced.
//!
//! Test support, not packet-path code: it allocates and panics on misuse
//! (an unparsable address, mixed families), as test helpers do. Its
//! checksums are computed two bytes at a time, on purpose not with the
//! crate's own [`checksum`](crate::wire::checksum), so that tests compare
//! the fast code against a slow oracle.

// Test support: indexing a fixture it built itself, and panicking on a
// test's misuse, is what it is for.
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

mod check;

use std::net::IpAddr;
use std::time::Instant;

pub use check::{as_partial, fold, refill_v4_checksum, slow_sum, valid};

/// What follows the IP header(s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    /// A UDP header.
    Udp,
    /// A TCP header (with [`Fixture::tcp_options`]).
    Tcp,
    /// An ICMP or ICMPv6 header (by family) of this type and code, with
    /// [`Fixture::echo_id`] and [`Fixture::echo_seq`] in bytes 4..8.
    Icmp(u8, u8),
    /// Nothing: the payload follows as protocol number `.0`.
    Raw(u8),
}

/// A packet under construction: set fields directly or chain the
/// builder calls, then [`Fixture::build`].
#[derive(Debug, Clone)]
pub struct Fixture {
    /// Source address (its family is the packet's).
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// TTL / hop limit.
    pub ttl: u8,
    /// IPv4 TOS / IPv6 traffic class.
    pub tos: u8,
    /// IPv6 flow label (20 bits).
    pub flow_label: u32,
    /// IPv4 identification.
    pub id: u16,
    /// IPv4 "don't fragment".
    pub df: bool,
    /// IPv4 options (a multiple of 4 bytes).
    pub ip_options: Vec<u8>,
    /// IPv4 fragment offset (8-byte units) and "more fragments".
    pub frag: (u16, bool),
    /// IPv6 extension headers: (next-header value, bytes but the first).
    pub ext: Vec<(u8, Vec<u8>)>,
    /// The transport header.
    pub l4: L4,
    /// TCP/UDP source port.
    pub src_port: u16,
    /// TCP/UDP destination port.
    pub dst_port: u16,
    /// TCP sequence number.
    pub seq: u32,
    /// TCP acknowledgment number.
    pub ack: u32,
    /// TCP flags.
    pub flags: u8,
    /// TCP window.
    pub window: u16,
    /// TCP options (a multiple of 4 bytes).
    pub tcp_options: Vec<u8>,
    /// ICMP echo identifier.
    pub echo_id: u16,
    /// ICMP echo sequence number.
    pub echo_seq: u16,
    /// What follows the transport header.
    pub payload: Vec<u8>,
}

/// Where a test's or benchmark's clock starts: the one clock read in
/// weft-switch's tests (the crate takes time as an argument; tests pass
/// `epoch() + offset`, as the engine passes its clock).
#[allow(clippy::disallowed_methods)]
pub fn epoch() -> Instant {
    Instant::now()
}

/// A packet from `src` to `dst` (family from the addresses), TTL 64, ID
/// 0x1234, no transport header (protocol 59) and no payload; chain
/// builder calls, then [`Fixture::build`].
pub fn pkt(src: &str, dst: &str) -> Fixture {
    pkt_between(src.parse().unwrap(), dst.parse().unwrap())
}

/// [`pkt`] with parsed addresses.
pub fn pkt_between(src: IpAddr, dst: IpAddr) -> Fixture {
    Fixture {
        src,
        dst,
        ttl: 64,
        tos: 0,
        flow_label: 0,
        id: 0x1234,
        df: false,
        ip_options: Vec::new(),
        frag: (0, false),
        ext: Vec::new(),
        l4: L4::Raw(59),
        src_port: 0,
        dst_port: 0,
        seq: 0,
        ack: 0,
        flags: crate::wire::tcp_flags::ACK,
        window: 65_535,
        tcp_options: Vec::new(),
        echo_id: 0x1234,
        echo_seq: 1,
        payload: Vec::new(),
    }
}

/// `n` bytes of a recognisable pattern (offset by `salt`).
pub fn pattern(n: usize, salt: usize) -> Vec<u8> {
    (0..n).map(|i| ((i + salt) * 31 + 7) as u8).collect()
}

impl Fixture {
    /// A segment of a bulk TCP stream, as the offload tests use:
    /// 10.244.1.2 -> 10.244.2.2 (or fd00:244:1::2 -> fd00:244:2::2),
    /// 40000 -> 5201, DF, ACK, `payload_len` pattern bytes from `seq`, and
    /// `options_len` bytes of TCP options (NOPs, then a pattern).
    pub fn tcp_stream(v6: bool, seq: u32, payload_len: usize, options_len: usize) -> Self {
        let (src, dst) = if v6 {
            ("fd00:244:1::2", "fd00:244:2::2")
        } else {
            ("10.244.1.2", "10.244.2.2")
        };
        let mut f = pkt(src, dst).tcp(40000, 5201).dont_frag(true);
        f.seq = seq;
        f.ack = 0xa0b0_c0d0;
        f.window = 502;
        f.tcp_options = (0..options_len)
            .map(|i| if i < 2 { 1 } else { 0x42 + i as u8 })
            .collect();
        f.payload = pattern(payload_len, seq as usize);
        f
    }

    /// A datagram of a UDP stream, addressed as [`Self::tcp_stream`].
    pub fn udp_stream(v6: bool, payload_len: usize) -> Self {
        let mut f = Self::tcp_stream(v6, 0, 0, 0);
        f.l4 = L4::Udp;
        f.payload = pattern(payload_len, 3);
        f
    }

    /// Sets the TTL / hop limit.
    pub fn ttl(mut self, ttl: u8) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets the IPv4 "don't fragment" flag.
    pub fn dont_frag(mut self, df: bool) -> Self {
        self.df = df;
        self
    }

    /// IPv4 options, zero-padded to a multiple of 4 bytes.
    pub fn options(mut self, options: &[u8]) -> Self {
        self.ip_options = options.to_vec();
        self.ip_options.resize(options.len().next_multiple_of(4), 0);
        self
    }

    /// IPv4 fragment offset in 8-byte units and the MF flag.
    pub fn frag(mut self, offset: u16, more: bool) -> Self {
        self.frag = (offset, more);
        self
    }

    /// An 8-byte IPv6 hop-by-hop header (one PadN option).
    pub fn ext_hop_by_hop(mut self) -> Self {
        self.ext.push((0, vec![0, 1, 4, 0, 0, 0, 0]));
        self
    }

    /// An 8-byte IPv6 destination-options header (one PadN option).
    pub fn ext_dest_opts(mut self) -> Self {
        self.ext.push((60, vec![0, 1, 4, 0, 0, 0, 0]));
        self
    }

    /// An IPv6 fragment header with `offset` (8-byte units) and M flag.
    pub fn ext_fragment(mut self, offset: u16, more: bool) -> Self {
        let field = (offset << 3) | u16::from(more);
        let [hi, lo] = field.to_be_bytes();
        self.ext.push((44, vec![0, hi, lo, 0xde, 0xad, 0xbe, 0xef]));
        self
    }

    /// A UDP header with these ports.
    pub fn udp(mut self, src_port: u16, dst_port: u16) -> Self {
        self.l4 = L4::Udp;
        (self.src_port, self.dst_port) = (src_port, dst_port);
        self
    }

    /// A TCP header with these ports (ACK, window 65535, no options).
    pub fn tcp(mut self, src_port: u16, dst_port: u16) -> Self {
        self.l4 = L4::Tcp;
        (self.src_port, self.dst_port) = (src_port, dst_port);
        self
    }

    /// ICMP or ICMPv6 (by family) with identifier 0x1234 and sequence 1.
    pub fn icmp(mut self, ty: u8, code: u8) -> Self {
        self.l4 = L4::Icmp(ty, code);
        self
    }

    /// No transport header: the payload follows the IP header as protocol
    /// `proto`.
    pub fn raw(mut self, proto: u8) -> Self {
        self.l4 = L4::Raw(proto);
        self
    }

    /// What follows the transport header.
    pub fn payload(mut self, payload: &[u8]) -> Self {
        self.payload = payload.to_vec();
        self
    }

    /// The IP protocol number and the transport bytes (checksum filled).
    pub fn transport(&self) -> (u8, Vec<u8>) {
        let v6 = self.src.is_ipv6();
        let (proto, mut l4, checksum_at) = match self.l4 {
            L4::Udp => {
                let len = u16::try_from(8 + self.payload.len()).unwrap();
                let mut h = Vec::new();
                h.extend_from_slice(&self.src_port.to_be_bytes());
                h.extend_from_slice(&self.dst_port.to_be_bytes());
                h.extend_from_slice(&len.to_be_bytes());
                h.extend_from_slice(&[0, 0]);
                (17, h, Some(6))
            }
            L4::Tcp => {
                let mut h = vec![0u8; 20];
                h[0..2].copy_from_slice(&self.src_port.to_be_bytes());
                h[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
                h[4..8].copy_from_slice(&self.seq.to_be_bytes());
                h[8..12].copy_from_slice(&self.ack.to_be_bytes());
                h[12] = u8::try_from((20 + self.tcp_options.len()) / 4).unwrap() << 4;
                h[13] = self.flags;
                h[14..16].copy_from_slice(&self.window.to_be_bytes());
                h.extend_from_slice(&self.tcp_options);
                (6, h, Some(16))
            }
            L4::Icmp(ty, code) => {
                let mut h = vec![ty, code, 0, 0];
                h.extend_from_slice(&self.echo_id.to_be_bytes());
                h.extend_from_slice(&self.echo_seq.to_be_bytes());
                (if v6 { 58 } else { 1 }, h, Some(2))
            }
            L4::Raw(p) => (p, Vec::new(), None),
        };
        l4.extend_from_slice(&self.payload);
        if let Some(at) = checksum_at {
            let pseudo = if proto == 1 {
                0
            } else {
                check::pseudo_slow(self.src, self.dst, proto, l4.len())
            };
            let mut sum = !fold(pseudo + slow_sum(&l4));
            if proto == 17 && sum == 0 {
                sum = 0xffff;
            }
            l4[at..at + 2].copy_from_slice(&sum.to_be_bytes());
        }
        (proto, l4)
    }

    /// The packet's bytes.
    pub fn build(&self) -> Vec<u8> {
        let (proto, l4) = self.transport();
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let header_len = 20 + self.ip_options.len();
                let total = u16::try_from(header_len + l4.len()).unwrap();
                let mut b = vec![0x40 | u8::try_from(header_len / 4).unwrap(), self.tos];
                b.extend_from_slice(&total.to_be_bytes());
                b.extend_from_slice(&self.id.to_be_bytes());
                let flags = (self.frag.0 & 0x1fff)
                    | if self.frag.1 { 0x2000 } else { 0 }
                    | if self.df { 0x4000 } else { 0 };
                b.extend_from_slice(&flags.to_be_bytes());
                b.extend_from_slice(&[self.ttl, proto, 0, 0]);
                b.extend_from_slice(&s.octets());
                b.extend_from_slice(&d.octets());
                b.extend_from_slice(&self.ip_options);
                refill_v4_checksum(&mut b);
                b.extend_from_slice(&l4);
                b
            }
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
                let word =
                    (6u32 << 28) | (u32::from(self.tos) << 20) | (self.flow_label & 0xf_ffff);
                let mut b = word.to_be_bytes().to_vec();
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
}
