//! Segmentation (TSO/USO in software): a super-packet that a TUN handed out
//! with a GSO virtio-net header becomes MTU-sized packets, in place.
//!
//! Contract:
//! - [`segment`] checks the header against the packet, then emits each
//!   segment as one contiguous slice of the input buffer: segment `i` is
//!   written over bytes the earlier segments no longer need (its headers go
//!   just before its payload, over the tail of segment `i - 1`), so nothing
//!   is copied but the headers. A slice is valid only during its `emit`
//!   call.
//! - TCP (GSO_TCPV4/6): IPv4 total length, ID (+1 per segment) and header
//!   checksum; IPv6 payload length; TCP sequence number (+ payload so far),
//!   CWR on the first segment only, FIN and PSH on the last only, and the
//!   full TCP checksum of each segment.
//! - UDP (GSO_UDP_L4): IP fields as for TCP, the UDP length and checksum.
//! - Not GSO: one packet; a partial checksum (`NEEDS_CSUM`) is completed.
//! - Anything inconsistent (a type that does not match the packet, a zero
//!   segment size, bad bounds) is an error, and nothing is emitted: the
//!   caller counts a drop. No input panics.

use super::csum;
use super::layout::{Layout, CWR, FIN, PSH, TCP, UDP};
use super::vnet::{VnetHdr, GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4};

/// Why a packet from a TUN could not be segmented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentError {
    /// The virtio-net header does not match the packet, or the packet is
    /// malformed.
    Malformed,
    /// A GSO type this code does not split (e.g. IPv6 extension headers,
    /// UFO).
    Unsupported,
}

/// The longest headers a segment can have: IPv4 with options (60) and TCP
/// with options (60).
const MAX_HEADERS: usize = 120;

/// Splits `pkt` (an IP packet, after its virtio-net header `hdr`) into
/// packets of at most `hdr.gso_size` payload bytes and calls `emit` with
/// each, in order. Returns how many it emitted.
pub fn segment(
    pkt: &mut [u8],
    hdr: &VnetHdr,
    mut emit: impl FnMut(&[u8]),
) -> Result<usize, SegmentError> {
    if !hdr.is_gso() {
        let len = complete(pkt, hdr)?;
        emit(&pkt[..len]);
        return Ok(1);
    }
    let l = Layout::parse(pkt).ok_or(SegmentError::Malformed)?;
    match (hdr.gso(), l.proto, l.v6) {
        (GSO_TCPV4, TCP, false) | (GSO_TCPV6, TCP, true) | (GSO_UDP_L4, UDP, _) => {}
        (GSO_TCPV4 | GSO_TCPV6 | GSO_UDP_L4, _, _) => return Err(SegmentError::Malformed),
        _ => return Err(SegmentError::Unsupported),
    }
    let gso = usize::from(hdr.gso_size);
    if gso == 0 || l.hlen > MAX_HEADERS {
        return Err(SegmentError::Malformed);
    }
    let payload = l.len - l.hlen;
    let count = payload.div_ceil(gso).max(1);
    let mut template = [0u8; MAX_HEADERS];
    template[..l.hlen].copy_from_slice(&pkt[..l.hlen]);
    let template = &template[..l.hlen];
    let id = u16::from_be_bytes([template[4], template[5]]);
    let (seq, flags) = if l.proto == TCP {
        let t = &template[l.l4..];
        (u32::from_be_bytes([t[4], t[5], t[6], t[7]]), t[13])
    } else {
        (0, 0)
    };
    for i in 0..count {
        let off = i * gso;
        let seg_len = gso.min(payload - off.min(payload));
        // Segment i: its headers at `off`, its payload right after, where
        // the super-packet had it.
        let seg = &mut pkt[off..off + l.hlen + seg_len];
        if i > 0 {
            seg[..l.hlen].copy_from_slice(template);
        }
        fix_ip(seg, &l, id.wrapping_add(i as u16));
        let last = i + 1 == count;
        if l.proto == TCP {
            let t = &mut seg[l.l4..];
            t[4..8].copy_from_slice(&seq.wrapping_add(off as u32).to_be_bytes());
            let mut f = flags;
            if i > 0 {
                f &= !CWR;
            }
            if !last {
                f &= !(FIN | PSH);
            }
            t[13] = f;
            fill_l4_checksum(seg, &l, 16);
        } else {
            let udp_len = (seg.len() - l.l4) as u16;
            seg[l.l4 + 4..l.l4 + 6].copy_from_slice(&udp_len.to_be_bytes());
            fill_l4_checksum(seg, &l, 6);
        }
        emit(seg);
    }
    Ok(count)
}

/// Sets the IP length fields of `seg` (and, for IPv4, the ID and the
/// header checksum).
fn fix_ip(seg: &mut [u8], l: &Layout, id: u16) {
    if l.v6 {
        let plen = (seg.len() - 40) as u16;
        seg[4..6].copy_from_slice(&plen.to_be_bytes());
    } else {
        let len = seg.len() as u16;
        seg[2..4].copy_from_slice(&len.to_be_bytes());
        seg[4..6].copy_from_slice(&id.to_be_bytes());
        seg[10..12].fill(0);
        let c = csum::finish(csum::sum(&seg[..l.l4], 0));
        seg[10..12].copy_from_slice(&c.to_be_bytes());
    }
}

/// Computes the transport checksum (field at `l4 + field`) of `seg` from
/// scratch.
fn fill_l4_checksum(seg: &mut [u8], l: &Layout, field: usize) {
    let at = l.l4 + field;
    seg[at..at + 2].fill(0);
    let pseudo = csum::pseudo(l.addrs(seg), l.proto, seg.len() - l.l4);
    let mut c = csum::finish(csum::sum(&seg[l.l4..], pseudo));
    if l.proto == UDP && c == 0 {
        c = 0xffff;
    }
    seg[at..at + 2].copy_from_slice(&c.to_be_bytes());
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
    let len = ip_len(pkt).unwrap_or(pkt.len());
    if !hdr.needs_csum() {
        return Ok(len);
    }
    let start = usize::from(hdr.csum_start);
    let at = start + usize::from(hdr.csum_offset);
    if start >= len || at + 2 > len {
        return Err(SegmentError::Malformed);
    }
    let mut c = csum::finish(csum::sum(&pkt[start..len], 0));
    if c == 0 {
        c = 0xffff;
    }
    pkt[at..at + 2].copy_from_slice(&c.to_be_bytes());
    Ok(len)
}

/// The length an IP packet's header gives it, if that fits the buffer.
fn ip_len(pkt: &[u8]) -> Option<usize> {
    let len = match pkt.first()? >> 4 {
        4 => usize::from(u16::from_be_bytes([*pkt.get(2)?, *pkt.get(3)?])),
        6 => 40 + usize::from(u16::from_be_bytes([*pkt.get(4)?, *pkt.get(5)?])),
        _ => return None,
    };
    (len <= pkt.len() && len > 0).then_some(len)
}

#[cfg(test)]
mod tests {
    use super::super::layout::{ACK, ECE, SYN};
    use super::super::testutil::{as_partial, valid, Pkt};
    use super::super::vnet::{F_NEEDS_CSUM, GSO_ECN};
    use super::*;

    /// Segments `p` and returns the segments' bytes.
    fn split(p: &Pkt, gso_type: u8, gso: u16) -> Result<Vec<Vec<u8>>, SegmentError> {
        let (hdr, mut buf) = as_partial(p.build(), gso_type, gso);
        let mut out = Vec::new();
        let n = segment(&mut buf, &hdr, |s| out.push(s.to_vec()))?;
        assert_eq!(n, out.len());
        Ok(out)
    }

    fn field32(p: &[u8], at: usize) -> u32 {
        u32::from_be_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]])
    }

    #[test]
    fn tcp4_splits_by_gso_size_with_a_short_last_segment() {
        let mut p = Pkt::tcp(false, 0xffff_f000, 3500, 12);
        p.flags = ACK | PSH | FIN | CWR;
        p.id = 0xfffe;
        let segs = split(&p, GSO_TCPV4, 1000).unwrap();
        assert_eq!(segs.len(), 4);
        let mut joined = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            assert!(valid(s), "segment {i} checksums");
            let last = i == 3;
            assert_eq!(s.len(), 52 + if last { 500 } else { 1000 });
            // IPv4 ID increments (and wraps).
            assert_eq!(
                u16::from_be_bytes([s[4], s[5]]),
                0xfffe_u16.wrapping_add(i as u16)
            );
            // Sequence numbers advance by payload (and wrap).
            assert_eq!(
                field32(s, 24),
                0xffff_f000_u32.wrapping_add(1000 * i as u32)
            );
            let flags = s[33];
            assert_eq!(flags & CWR != 0, i == 0, "CWR only on the first");
            assert_eq!(
                flags & (PSH | FIN) != 0,
                last,
                "PSH and FIN only on the last"
            );
            assert_eq!(flags & (PSH | FIN) == PSH | FIN, last);
            assert!(flags & ACK != 0);
            // Options are copied unchanged.
            assert_eq!(s[40..52], p.build()[40..52]);
            joined.extend_from_slice(&s[52..]);
        }
        assert_eq!(joined, p.payload);
    }

    #[test]
    fn tcp6_splits_too() {
        let p = Pkt::tcp(true, 1, 2800, 0);
        let segs = split(&p, GSO_TCPV6 | GSO_ECN, 1400).unwrap();
        assert_eq!(segs.len(), 2);
        for s in &segs {
            assert!(valid(s));
            assert_eq!(s.len(), 60 + 1400);
        }
        assert_eq!(field32(&segs[1], 44), 1401);
        assert_eq!([&segs[0][60..], &segs[1][60..]].concat(), p.payload);
    }

    #[test]
    fn udp_splits_both_families() {
        for v6 in [false, true] {
            let p = Pkt::udp(v6, 3000);
            let segs = split(&p, GSO_UDP_L4, 1200).unwrap();
            let h = if v6 { 48 } else { 28 };
            assert_eq!(
                segs.iter().map(Vec::len).collect::<Vec<_>>(),
                [h + 1200, h + 1200, h + 600]
            );
            assert!(segs.iter().all(|s| valid(s)), "v6 {v6}");
            let joined: Vec<u8> = segs.iter().flat_map(|s| s[h..].to_vec()).collect();
            assert_eq!(joined, p.payload);
        }
    }

    #[test]
    fn a_gso_size_above_the_payload_makes_one_segment() {
        let p = Pkt::tcp(false, 5, 700, 0);
        let segs = split(&p, GSO_TCPV4, 1400).unwrap();
        assert_eq!(segs, vec![p.build()]);
        // An exact multiple has no short tail.
        let p = Pkt::tcp(false, 5, 2800, 0);
        assert_eq!(split(&p, GSO_TCPV4, 1400).unwrap().len(), 2);
        // No payload at all: the headers alone.
        let p = Pkt::tcp(false, 5, 0, 0);
        assert_eq!(split(&p, GSO_TCPV4, 1400).unwrap(), vec![p.build()]);
    }

    #[test]
    fn mismatched_headers_are_refused() {
        let p4 = Pkt::tcp(false, 5, 3000, 0);
        let p6 = Pkt::tcp(true, 5, 3000, 0);
        assert_eq!(split(&p4, GSO_TCPV6, 1000), Err(SegmentError::Malformed));
        assert_eq!(split(&p6, GSO_TCPV4, 1000), Err(SegmentError::Malformed));
        assert_eq!(split(&p4, GSO_UDP_L4, 1000), Err(SegmentError::Malformed));
        assert_eq!(split(&p4, GSO_TCPV4, 0), Err(SegmentError::Malformed));
        // UFO (type 3) is not split.
        assert_eq!(
            split(&Pkt::udp(false, 3000), 3, 1000),
            Err(SegmentError::Unsupported)
        );
        // A GSO header on garbage.
        let hdr = VnetHdr {
            gso_type: GSO_TCPV4,
            gso_size: 100,
            ..VnetHdr::default()
        };
        let mut junk = [0x45u8; 64];
        assert!(segment(&mut junk, &hdr, |_| panic!("emitted")).is_err());
    }

    #[test]
    fn single_packets_get_their_partial_checksum_completed() {
        for p in [
            Pkt::tcp(false, 9, 333, 12),
            Pkt::tcp(true, 9, 1, 0),
            Pkt::udp(false, 0),
            Pkt::udp(true, 77),
        ] {
            let (hdr, mut buf) = as_partial(p.build(), GSO_NONE, 0);
            let mut out = Vec::new();
            assert_eq!(segment(&mut buf, &hdr, |s| out.push(s.to_vec())), Ok(1));
            assert_eq!(out, vec![p.build()], "{p:?}");
        }
        // Without NEEDS_CSUM the packet passes as it is.
        let p = Pkt::tcp(false, 9, 10, 0).build();
        let mut buf = p.clone();
        let mut out = Vec::new();
        segment(&mut buf, &VnetHdr::default(), |s| out.push(s.to_vec())).unwrap();
        assert_eq!(out, vec![p]);
        // A checksum field out of bounds.
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            csum_start: 20,
            csum_offset: 200,
            ..VnetHdr::default()
        };
        let mut buf = Pkt::tcp(false, 9, 10, 0).build();
        assert_eq!(
            segment(&mut buf, &hdr, |_| {}),
            Err(SegmentError::Malformed)
        );
    }

    #[test]
    fn other_flags_pass_through() {
        let mut p = Pkt::tcp(false, 5, 2000, 0);
        p.flags = ACK | ECE | SYN;
        let segs = split(&p, GSO_TCPV4, 1000).unwrap();
        assert!(segs.iter().all(|s| s[33] == ACK | ECE | SYN));
    }

    #[test]
    fn tiny_segments_and_long_headers() {
        // gso_size below the header length: each segment's headers cover
        // more than the previous payload.
        let p = Pkt::tcp(false, 77, 100, 40);
        let segs = split(&p, GSO_TCPV4, 7).unwrap();
        assert_eq!(segs.len(), 15);
        assert!(segs.iter().all(|s| valid(s)));
        let joined: Vec<u8> = segs.iter().flat_map(|s| s[80..].to_vec()).collect();
        assert_eq!(joined, p.payload);
    }
}
