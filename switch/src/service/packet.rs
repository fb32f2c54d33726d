//! The header reads and rewrites service translation needs, on the
//! crate's wire views (`crate::wire`): nothing here indexes packet bytes
//! itself, and the one checksum of the crate is the only one used.
//!
//! Contract: [`parse`] runs the views' checked constructors, so nothing
//! after it can read out of bounds; the writers return `false` / `None`
//! rather than panic when bytes do not fit what they need. Rewrites keep
//! the IPv4 header checksum and the transport checksum right for its
//! state (full, or the partial pseudo-header sum of a super-packet).

use std::net::{IpAddr, SocketAddr};

use crate::conntrack::FlowKey;
use crate::icmp_error::{self, IcmpError};
use crate::wire::tcp_flags as flags;
use crate::wire::{
    proto, FlowPacket, IcmpPacket, IpPacket, Ipv4Packet, Ipv6Packet, L4Checksum, ParseError,
    Quoted, TcpPacket, Transport, IPV4_HEADER_LEN, IPV6_HEADER_LEN, TCP_HEADER_LEN,
};

/// TTL / hop limit of the resets the translator writes.
const RESET_HOP_LIMIT: u8 = 64;

/// The IPv4 header of a reset: no options, DF, TCP; lengths, addresses
/// and checksum filled in.
#[rustfmt::skip]
const V4_HEADER: [u8; IPV4_HEADER_LEN] = [
    0x45, 0, 0, 0,
    0, 0, 0x40, 0,
    RESET_HOP_LIMIT, proto::TCP, 0, 0,
    0, 0, 0, 0,
    0, 0, 0, 0,
];

/// A TCP header without options (data offset 5); the rest filled in.
#[rustfmt::skip]
const TCP_HEADER: [u8; TCP_HEADER_LEN] = [
    0, 0, 0, 0,
    0, 0, 0, 0,
    0, 0, 0, 0,
    0x50, 0, 0, 0,
    0, 0, 0, 0,
];

/// What follows the IP header, as translation sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum L4 {
    Tcp {
        src_port: u16,
        dst_port: u16,
        flags: u8,
        seq: u32,
        ack: u32,
        /// Payload bytes (for a reset's acknowledgment number).
        payload_len: usize,
    },
    Udp {
        src_port: u16,
        dst_port: u16,
    },
    /// ICMP or ICMPv6 echo request or reply.
    Echo {
        id: u16,
        request: bool,
    },
    /// An ICMP error and the key of the packet it quotes (as quoted).
    IcmpError {
        quoted: FlowKey,
    },
    /// Other ICMP messages.
    Icmp,
    /// An IPv4 fragment or an IPv6 non-first fragment.
    Fragment,
    /// Another protocol.
    Other,
}

/// A packet's addresses and transport summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Headers {
    pub(super) src: IpAddr,
    pub(super) dst: IpAddr,
    /// The upper-layer protocol number.
    pub(super) proto: u8,
    /// The IP packet's length.
    pub(super) len: usize,
    /// Whether the transport header follows the fixed IP header directly
    /// (no IPv6 extension headers, not a fragment): only such packets
    /// can be rewritten.
    pub(super) plain: bool,
    pub(super) l4: L4,
}

impl Headers {
    /// Source port (0 if none).
    pub(super) fn src_port(&self) -> u16 {
        match self.l4 {
            L4::Tcp { src_port, .. } | L4::Udp { src_port, .. } => src_port,
            L4::Echo { id, request: true } => id,
            _ => 0,
        }
    }

    /// Destination port (0 if none).
    pub(super) fn dst_port(&self) -> u16 {
        match self.l4 {
            L4::Tcp { dst_port, .. } | L4::Udp { dst_port, .. } => dst_port,
            L4::Echo { id, request: false } => id,
            _ => 0,
        }
    }
}

/// The flow key of a quoted packet.
fn quoted_key(q: &Quoted) -> Option<FlowKey> {
    match (q.protocol, q.echo_request) {
        (proto::ICMP | proto::ICMPV6, Some(request)) => {
            FlowKey::icmp_echo(q.src, q.dst, q.ports.0, request)
        }
        (proto::TCP | proto::UDP, _) => {
            FlowKey::new(q.protocol, q.src, q.ports.0, q.dst, q.ports.1)
        }
        (p, _) => FlowKey::new(p, q.src, 0, q.dst, 0),
    }
}

/// Reads `b`'s headers (checked views; see the module docs).
pub(super) fn parse(b: &[u8]) -> Result<Headers, ParseError> {
    let ip = IpPacket::new_checked(b)?;
    let v6 = ip.is_v6();
    let mut h = Headers {
        src: ip.src_addr(),
        dst: ip.dst_addr(),
        proto: 0,
        len: ip.packet_bytes().len(),
        plain: false,
        l4: L4::Fragment,
    };
    let fragment = matches!(&ip, IpPacket::V4(p) if p.is_fragment());
    let Some((proto, l4)) = ip.upper_layer()?.filter(|_| !fragment) else {
        if let IpPacket::V4(p) = &ip {
            h.proto = p.protocol();
        }
        return Ok(h);
    };
    h.proto = proto;
    h.plain = match &ip {
        IpPacket::V4(_) => true,
        IpPacket::V6(p) => p.next_header() == proto,
    };
    h.l4 = match ip.transport()? {
        Transport::Tcp { src_port, dst_port } => {
            let t = TcpPacket::new_checked(l4)?;
            L4::Tcp {
                src_port,
                dst_port,
                flags: t.flags(),
                seq: t.seq(),
                ack: t.ack(),
                payload_len: t.payload().len(),
            }
        }
        Transport::Udp { src_port, dst_port } => L4::Udp { src_port, dst_port },
        Transport::Icmpv4 {
            ty,
            echo_id: Some(id),
            ..
        } => L4::Echo {
            id,
            request: ty == 8,
        },
        Transport::Icmpv6 {
            ty,
            echo_id: Some(id),
            ..
        } => L4::Echo {
            id,
            request: ty == 128,
        },
        t if t.is_icmp_error() => {
            let icmp = IcmpPacket::new_checked(l4)?;
            let q = Quoted::parse(icmp.quote(), v6)?;
            let quoted = quoted_key(&q).ok_or(ParseError::TruncatedTransport)?;
            L4::IcmpError { quoted }
        }
        Transport::Icmpv4 { .. } | Transport::Icmpv6 { .. } => L4::Icmp,
        Transport::Fragment => L4::Fragment,
        Transport::Other(_) => L4::Other,
    };
    Ok(h)
}

/// The destination address of bytes [`parse`] refused, if the fixed IP
/// header is there (to count malformed packets aimed at a Service).
pub(super) fn peek_dst(b: &[u8]) -> Option<IpAddr> {
    IpPacket::<&[u8]>::peek_dst_addr(b)
}

/// Rewrites a TCP or UDP packet's source and/or destination (address and
/// port), checksums updated for `csum`. False if `b` is not such a packet
/// or the families differ; then nothing changed.
pub(super) fn rewrite(
    b: &mut [u8],
    csum: L4Checksum,
    src: Option<SocketAddr>,
    dst: Option<SocketAddr>,
) -> bool {
    let Ok(mut p) = FlowPacket::new_checked(b, csum) else {
        return false;
    };
    if let Some(s) = src {
        if p.rewrite_src(s.ip(), s.port()).is_err() {
            return false;
        }
    }
    if let Some(d) = dst {
        if p.rewrite_dst(d.ip(), d.port()).is_err() {
            return false;
        }
    }
    true
}

/// Rewrites an ICMP error: its outer source and/or destination address,
/// and the packet it quotes to carry `inner` (addresses and ports, with
/// the quote's IPv4 header checksum and transport checksum kept right);
/// then recomputes the ICMP checksum. False if `b` is not a plain ICMP
/// error or the quote cannot be rewritten.
pub(super) fn rewrite_icmp_error(
    b: &mut [u8],
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    inner: &FlowKey,
) -> bool {
    let Ok(mut ip) = IpPacket::new_checked(b) else {
        return false;
    };
    let v6 = ip.is_v6();
    if let Some(a) = src {
        if ip.set_src_addr(a).is_err() {
            return false;
        }
    }
    if let Some(a) = dst {
        if ip.set_dst_addr(a).is_err() {
            return false;
        }
    }
    let icmp_len = ip.payload().len();
    let pseudo = if v6 {
        ip.pseudo_header(proto::ICMPV6, icmp_len)
    } else {
        0
    };
    let Ok(mut icmp) = IcmpPacket::new_checked(ip.payload_mut()) else {
        return false;
    };
    let ports = (inner.src_port(), inner.dst_port());
    if Quoted::rewrite(icmp.quote_mut(), v6, inner.src(), inner.dst(), ports).is_err() {
        return false;
    }
    icmp.fill_checksum(pseudo);
    true
}

/// Writes the TCP reset that refuses segment `h` (RFC 9293 3.10.7.1:
/// `<SEQ=SEG.ACK><CTL=RST>` if it had an ACK, else `<SEQ=0><ACK=SEG.SEQ
/// + SEG.LEN><CTL=RST,ACK>`), from its destination to its source.
pub(super) fn write_reset(out: &mut [u8], h: &Headers) -> Option<usize> {
    let L4::Tcp {
        src_port,
        dst_port,
        flags: f,
        seq,
        ack,
        payload_len,
    } = h.l4
    else {
        return None;
    };
    let seg_len = u32::try_from(payload_len).unwrap_or(u32::MAX)
        + u32::from(f & flags::SYN != 0)
        + u32::from(f & flags::FIN != 0);
    let (rst_seq, rst_ack, rst_flags) = if f & flags::ACK != 0 {
        (ack, 0, flags::RST)
    } else {
        (0, seq.wrapping_add(seg_len), flags::RST | flags::ACK)
    };
    let ip_len = if h.src.is_ipv6() {
        IPV6_HEADER_LEN
    } else {
        IPV4_HEADER_LEN
    };
    let total = ip_len + TCP_HEADER_LEN;
    let out = out.get_mut(..total)?;
    out.fill(0);
    out.get_mut(ip_len..)?.copy_from_slice(&TCP_HEADER);
    let rst = |mut t: TcpPacket<&mut [u8]>, pseudo: u64| {
        t.set_src_port(dst_port);
        t.set_dst_port(src_port);
        t.set_seq(rst_seq);
        t.set_ack(rst_ack);
        t.set_flags(rst_flags);
        t.fill_checksum(pseudo);
    };
    match (h.dst, h.src) {
        (IpAddr::V4(from), IpAddr::V4(to)) => {
            out.get_mut(..ip_len)?.copy_from_slice(&V4_HEADER);
            let mut ip = Ipv4Packet::new_fitted(out).ok()?;
            ip.set_src_addr(from);
            ip.set_dst_addr(to);
            ip.fill_checksum();
            let pseudo = ip.pseudo_header(proto::TCP, TCP_HEADER_LEN);
            rst(TcpPacket::new_checked(ip.payload_mut()).ok()?, pseudo);
        }
        (IpAddr::V6(from), IpAddr::V6(to)) => {
            *out.first_mut()? = 0x60;
            let mut ip = Ipv6Packet::new_fitted(out).ok()?;
            ip.set_hop_limit(RESET_HOP_LIMIT);
            ip.set_next_header(proto::TCP);
            ip.set_src_addr(from);
            ip.set_dst_addr(to);
            let pseudo = ip.pseudo_header(proto::TCP, TCP_HEADER_LEN);
            rst(TcpPacket::new_checked(ip.payload_mut()).ok()?, pseudo);
        }
        _ => return None,
    }
    Some(total)
}

/// Writes an ICMP (ICMPv6) port unreachable for `b` from its destination.
pub(super) fn write_port_unreachable(out: &mut [u8], b: &[u8]) -> Option<usize> {
    match IpPacket::new_checked(b).ok()? {
        IpPacket::V4(p) => icmp_error::write_v4(out, p.dst_addr(), &p, IcmpError::PortUnreachable),
        IpPacket::V6(p) => icmp_error::write_v6(out, p.dst_addr(), &p, IcmpError::PortUnreachable),
    }
}
