//! Segmentation (TSO/USO in software): a super-packet that a TUN handed
//! out with a GSO virtio-net header becomes MTU-sized packets, in place.
//!
//! Contract:
//! - [`segment`] parses the super-packet itself (a [`FlowPacket`]; nothing
//!   rests on a caller's earlier parse) and checks its virtio-net header
//!   against it and against the path before emitting anything: a type it
//!   splits and that matches the packet, a segment size of at least
//!   [`MIN_GSO_SIZE`], segments that fit the caller's `mtu`, and at most
//!   [`MAX_TSO_SEGMENTS`] / [`MAX_USO_SEGMENTS`] of them. Each refusal is
//!   its own [`SegmentError`], so the caller can count drops per cause.
//! - Each segment is one contiguous slice of the input buffer: segment `i`
//!   is written over bytes the earlier segments no longer need (its headers
//!   go just before its payload, over the tail of segment `i - 1`), so
//!   nothing is copied but the headers. A slice is valid only during its
//!   `emit` call.
//! - TCP (GSO_TCPV4/6): IPv4 total length, ID (+1 per segment) and header
//!   checksum; IPv6 payload length; TCP sequence number (+ payload so far),
//!   CWR on the first segment only, FIN and PSH on the last only, and the
//!   full TCP checksum of each segment. UDP (GSO_UDP_L4): IP fields as for
//!   TCP, the UDP length and checksum.
//! - Not GSO: one packet; a partial checksum (`NEEDS_CSUM`) is completed
//!   ([`complete`]).
//! - [`check`] applies the same header checks to a super-packet that goes
//!   out whole (to a TUN with offloads).
//! - No allocation, no panic on any input.

use crate::wire::vnet::{GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4};
use crate::wire::{checksum, tcp_flags, FlowPacket, IpPacket, L4Checksum, L4Proto, VnetHdr};

/// The smallest `gso_size` (payload bytes per segment) accepted. Below any
/// MSS a real path gives (an overlay's is over 1 000); a kernel only goes
/// lower for a TCP peer that advertises an MSS this small, which is what
/// Linux's own `tcp_min_snd_mss` (48) guards against. It bounds the
/// segments of a 64 KiB super-packet to [`MAX_TSO_SEGMENTS`].
pub const MIN_GSO_SIZE: u16 = 64;

/// The most segments a TCP super-packet may split into: 64 KiB at
/// [`MIN_GSO_SIZE`]. Checked on its own, so the cap does not depend on the
/// minimum.
pub const MAX_TSO_SEGMENTS: usize = 65_536 / MIN_GSO_SIZE as usize;

/// The most datagrams a UDP super-packet may hold: Linux's
/// `UDP_MAX_SEGMENTS` (64 on older kernels, 128 on newer), what a socket
/// may send with `UDP_SEGMENT`.
pub const MAX_USO_SEGMENTS: usize = 128;

/// The longest headers a segment can have: IPv4 with options (60) and TCP
/// with options (60).
const MAX_HEADERS: usize = 120;

/// Why a packet from a TUN could not be segmented (or completed). Nothing
/// was emitted; the caller drops it and counts it by cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    /// The packet is not a well-formed TCP/UDP packet, or not of the kind
    /// its virtio-net header says.
    #[error("the packet does not match its virtio-net header")]
    Malformed,
    /// A GSO type this code does not split (UFO, an unknown one).
    #[error("a GSO type that is not split")]
    Unsupported,
    /// `gso_size` below [`MIN_GSO_SIZE`] (0 included).
    #[error("a segment size below {MIN_GSO_SIZE}")]
    GsoSizeTooSmall,
    /// A segment (headers plus `gso_size`) would exceed the path MTU.
    #[error("segments larger than the path MTU")]
    SegmentAboveMtu,
    /// More segments than [`MAX_TSO_SEGMENTS`] / [`MAX_USO_SEGMENTS`].
    #[error("too many segments")]
    TooManySegments,
    /// A partial checksum whose start or field lies outside the packet.
    #[error("checksum offsets outside the packet")]
    BadChecksumOffsets,
}

impl SegmentError {
    /// Every cause, in declaration order (`cause as usize` indexes it).
    pub const ALL: [SegmentError; 6] = [
        Self::Malformed,
        Self::Unsupported,
        Self::GsoSizeTooSmall,
        Self::SegmentAboveMtu,
        Self::TooManySegments,
        Self::BadChecksumOffsets,
    ];
}

/// The largest IP packet a path of MTU `mtu` takes: IPv6 links carry at
/// least 1280 bytes (RFC 8200 5), whatever the configured MTU says.
pub(crate) fn path_limit(mtu: usize, v6: bool) -> usize {
    if v6 {
        mtu.max(crate::wire::IPV6_MIN_MTU)
    } else {
        mtu
    }
}

/// The checked super-packet and how it splits.
struct Plan {
    /// The first segment's headers, which every segment starts from.
    template: [u8; MAX_HEADERS],
    hlen: usize,
    payload: usize,
    gso: usize,
    count: usize,
    /// IPv4 identification (0 for IPv6).
    id: u16,
    /// TCP sequence number and flags (0 for UDP).
    seq: u32,
    flags: u8,
}

/// Checks `pkt` against its GSO header `hdr` and the path MTU.
fn plan(pkt: &[u8], hdr: &VnetHdr, mtu: usize) -> Result<Plan, SegmentError> {
    if !matches!(hdr.gso(), GSO_TCPV4 | GSO_TCPV6 | GSO_UDP_L4) {
        return Err(SegmentError::Unsupported);
    }
    let p =
        FlowPacket::new_checked(pkt, L4Checksum::Partial).map_err(|_| SegmentError::Malformed)?;
    match (hdr.gso(), p.proto(), p.is_v6()) {
        (GSO_TCPV4, L4Proto::Tcp, false)
        | (GSO_TCPV6, L4Proto::Tcp, true)
        | (GSO_UDP_L4, L4Proto::Udp, _) => {}
        _ => return Err(SegmentError::Malformed),
    }
    if hdr.gso_size < MIN_GSO_SIZE {
        return Err(SegmentError::GsoSizeTooSmall);
    }
    let (hlen, gso) = (p.header_len(), usize::from(hdr.gso_size));
    let payload = p.total_len() - hlen;
    if hlen + gso.min(payload) > path_limit(mtu, p.is_v6()) {
        return Err(SegmentError::SegmentAboveMtu);
    }
    let count = payload.div_ceil(gso).max(1);
    let cap = match p.proto() {
        L4Proto::Tcp => MAX_TSO_SEGMENTS,
        L4Proto::Udp => MAX_USO_SEGMENTS,
    };
    if count > cap {
        return Err(SegmentError::TooManySegments);
    }
    let mut template = [0u8; MAX_HEADERS];
    template
        .get_mut(..hlen)
        .ok_or(SegmentError::Malformed)?
        .copy_from_slice(p.headers());
    let id = p.ident();
    let (seq, flags) = p.tcp().map_or((0, 0), |t| (t.seq(), t.flags()));
    Ok(Plan {
        template,
        hlen,
        payload,
        gso,
        count,
        id,
        seq,
        flags,
    })
}

/// How many packets `pkt` (after its virtio-net header `hdr`) stands for:
/// a super-packet's segments, else 1 (also when it is malformed).
pub fn segment_count(pkt: &[u8], hdr: &VnetHdr) -> usize {
    if !hdr.is_gso() || hdr.gso_size == 0 {
        return 1;
    }
    match FlowPacket::new_checked(pkt, L4Checksum::Partial) {
        Ok(p) => (p.total_len() - p.header_len())
            .div_ceil(usize::from(hdr.gso_size))
            .max(1),
        Err(_) => 1,
    }
}

/// Holds a super-packet's virtio-net header to the rules [`segment`]
/// applies, without splitting it: for an egress that takes it whole (a TUN
/// with offloads, whose kernel would split it by what the header claims).
/// Returns how many segments it stands for (1 for a packet that is not
/// GSO).
pub fn check(pkt: &[u8], hdr: &VnetHdr, mtu: usize) -> Result<usize, SegmentError> {
    if !hdr.is_gso() {
        return Ok(1);
    }
    plan(pkt, hdr, mtu).map(|p| p.count)
}

/// Splits `pkt` (an IP packet, after its virtio-net header `hdr`) into
/// packets of at most `hdr.gso_size` payload bytes, none longer than `mtu`
/// (the egress path's MTU), and calls `emit` with each, in order. Returns
/// how many it emitted.
pub fn segment(
    pkt: &mut [u8],
    hdr: &VnetHdr,
    mtu: usize,
    mut emit: impl FnMut(&[u8]),
) -> Result<usize, SegmentError> {
    if !hdr.is_gso() {
        let len = complete(pkt, hdr)?;
        emit(pkt.get(..len).ok_or(SegmentError::Malformed)?);
        return Ok(1);
    }
    let plan = plan(pkt, hdr, mtu)?;
    let (hlen, payload, gso, count) = (plan.hlen, plan.payload, plan.gso, plan.count);
    let template = plan.template.get(..hlen).ok_or(SegmentError::Malformed)?;
    for i in 0..count {
        let off = i * gso;
        let seg_len = gso.min(payload - off.min(payload));
        // Segment i: its headers at `off`, its payload right after, where
        // the super-packet had it.
        let seg = pkt
            .get_mut(off..off + hlen + seg_len)
            .ok_or(SegmentError::Malformed)?;
        if i > 0 {
            seg.get_mut(..hlen)
                .ok_or(SegmentError::Malformed)?
                .copy_from_slice(template);
        }
        let mut s = FlowPacket::new_fitted(&mut *seg, L4Checksum::Partial)
            .map_err(|_| SegmentError::Malformed)?;
        // Segment counts are capped far below 2^16 and sequence space is
        // modular: the truncating conversions are the arithmetic wanted.
        s.set_ident(plan.id.wrapping_add(i as u16));
        if let Some(mut t) = s.tcp_mut() {
            t.set_seq(plan.seq.wrapping_add(off as u32));
            let mut f = plan.flags;
            if i > 0 {
                f &= !tcp_flags::CWR;
            }
            if i + 1 < count {
                f &= !(tcp_flags::FIN | tcp_flags::PSH);
            }
            t.set_flags(f);
        }
        s.fill_checksum();
        emit(seg);
    }
    Ok(count)
}

/// Completes a partial checksum (`NEEDS_CSUM`) of a single packet, as the
/// kernel's `skb_checksum_help` does: the field holds the pseudo-header
/// sum, so summing from `csum_start` to the end and folding gives the
/// checksum. Returns the packet's length (by its IP header if it has a
/// well-formed one, else the buffer's).
pub fn complete(pkt: &mut [u8], hdr: &VnetHdr) -> Result<usize, SegmentError> {
    if hdr.gso() != GSO_NONE {
        return Err(SegmentError::Malformed);
    }
    let len = IpPacket::new_checked(&*pkt).map_or(pkt.len(), |p| p.total_len());
    if !hdr.needs_csum() {
        return Ok(len);
    }
    let start = usize::from(hdr.csum_start);
    let at = start + usize::from(hdr.csum_offset);
    let (Some(covered), true) = (pkt.get(start..len), at + 2 <= len && start < len) else {
        return Err(SegmentError::BadChecksumOffsets);
    };
    let mut c = checksum::finish(checksum::sum(covered, 0));
    if c == 0 {
        c = 0xffff;
    }
    pkt.get_mut(at..at + 2)
        .ok_or(SegmentError::BadChecksumOffsets)?
        .copy_from_slice(&c.to_be_bytes());
    Ok(len)
}
