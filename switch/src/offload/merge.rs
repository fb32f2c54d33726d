//! What may merge, for [`coalesce`](super::coalesce): the key that makes
//! packets one flow, and the header fields that must agree for a segment
//! to continue an item (everything but lengths, IPv4 ID, checksums, the
//! TCP sequence number and PSH), read through the wire views.
//!
//! Contract: pure functions of checked [`FlowPacket`]s; no panics.

use crate::wire::tcp_flags::PSH;
use crate::wire::{FlowPacket, IpPacket, L4Proto};

/// What makes packets one flow: family, protocol, addresses and ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FlowKey {
    v6: bool,
    proto: L4Proto,
    /// Source then destination address bytes (IPv4: the first 8).
    addrs: [u8; 32],
    ports: (u16, u16),
}

impl FlowKey {
    pub(super) fn of<T: AsRef<[u8]>>(p: &FlowPacket<T>) -> Self {
        let mut addrs = [0u8; 32];
        let (src, dst) = p.ip().addr_bytes();
        let n = src.len();
        if let Some(a) = addrs.get_mut(..n) {
            a.copy_from_slice(src);
        }
        if let Some(a) = addrs.get_mut(n..2 * n) {
            a.copy_from_slice(dst);
        }
        Self {
            v6: p.is_v6(),
            proto: p.proto(),
            addrs,
            ports: (p.src_port(), p.dst_port()),
        }
    }
}

/// Whether the IP headers of `a` and `b` agree on everything but lengths,
/// IPv4 ID and checksum.
pub(super) fn same_ip_headers<A: AsRef<[u8]>, B: AsRef<[u8]>>(
    a: &FlowPacket<A>,
    b: &FlowPacket<B>,
) -> bool {
    match (a.ip(), b.ip()) {
        (IpPacket::V4(a), IpPacket::V4(b)) => {
            a.tos() == b.tos()
                && a.flags() == b.flags()
                && a.ttl() == b.ttl()
                && a.protocol() == b.protocol()
                && a.options() == b.options()
        }
        (IpPacket::V6(a), IpPacket::V6(b)) => {
            a.traffic_class() == b.traffic_class()
                && a.flow_label() == b.flow_label()
                && a.next_header() == b.next_header()
                && a.hop_limit() == b.hop_limit()
        }
        _ => false,
    }
}

/// Whether the headers of TCP segments `a` and `b` (the same flow) agree
/// on everything but lengths, IPv4 ID and checksums, the sequence number,
/// and PSH.
pub(super) fn same_tcp_headers<A: AsRef<[u8]>, B: AsRef<[u8]>>(
    a: &FlowPacket<A>,
    b: &FlowPacket<B>,
) -> bool {
    let (Some(ta), Some(tb)) = (a.tcp(), b.tcp()) else {
        return false;
    };
    same_ip_headers(a, b)
        && ta.ack() == tb.ack()
        && ta.header_len() == tb.header_len()
        && ta.reserved() == tb.reserved()
        && ta.flags() & !PSH == tb.flags() & !PSH
        && ta.window() == tb.window()
        && ta.urgent() == tb.urgent()
        && ta.options() == tb.options()
}
