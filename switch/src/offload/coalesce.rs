//! Coalescing (GRO in software): consecutive in-order TCP segments of one
//! flow, decrypted from a peer, become one super-packet that a TUN with
//! `IFF_VNET_HDR` takes in one write (GSO_TCPV4/6, `NEEDS_CSUM`), as the
//! kernel's own GRO would build it; and, for a TUN that takes USO, so do
//! consecutive UDP datagrams of one flow and one size (GSO_UDP_L4).
//!
//! Contract:
//! - [`Coalescer::push`] takes one IP packet for a destination `D` (a
//!   port). It keeps TCP segments (and UDP datagrams if asked to),
//!   appending each to the open item of its flow when it continues it
//!   exactly, and returns `false` for anything it does not keep, which the
//!   caller writes out itself, at once.
//! - A UDP datagram joins an item if its checksum passes (see below; an
//!   absent one, on IPv4, passes), its IP header equals the item's but for lengths, ID and
//!   checksum, its payload is at most the item's segment size (a shorter
//!   one ends the item), and the item stays within 64 KiB and
//!   [`MAX_UDP_SEGMENTS`].
//! - Checksums: the kernel trusts a merged (`NEEDS_CSUM`) item's payload,
//!   so by default a packet joins only if its TCP or UDP checksum is
//!   right. [`Coalescer::trust_checksums`] turns that check off for input
//!   that an AEAD already authenticated (decrypted WireGuard packets: the
//!   kernel's own WireGuard marks them `CHECKSUM_UNNECESSARY` for the same
//!   reason).
//! - A segment joins an item only if its checksum passes as above, it
//!   carries only ACK (PSH
//!   allowed: it then ends the item), its sequence number follows, its IP
//!   and TCP headers equal the item's but for lengths, IPv4 ID and
//!   checksums (options, ACK number and window included), its payload is
//!   at most the item's segment size (a shorter one ends the item), and the
//!   result stays within 64 KiB. IPv4 IDs must increment unless DF is set.
//! - Order within a flow is kept: a segment that cannot join its flow's
//!   item closes that item and is kept as a new item after it; packets of
//!   a flow with nothing pending go out at once. Items go out in the order
//!   they were started, at [`Coalescer::flush`] (the caller's end of a
//!   batch) or when every slot is taken.
//! - An item of one segment goes out unchanged (the kernel verifies it); a
//!   longer one with its IP lengths and header checksum fixed, the TCP
//!   checksum field holding the pseudo-header sum, and a GSO header.
//! - No allocation after [`Coalescer::new`], no panic on any input.

use super::csum;
use super::layout::{Layout, ACK, PSH, TCP, UDP};
use super::vnet::{VnetHdr, F_NEEDS_CSUM, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, VNET_HDR_LEN};

/// The largest IP packet an item grows to.
pub const MAX_ITEM: usize = 65_535;

/// Datagrams per UDP item (the kernel's `UDP_MAX_SEGMENTS` on older
/// kernels).
pub const MAX_UDP_SEGMENTS: usize = 64;

/// What a coalescer has done, for counters and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoalesceStats {
    /// Segments appended to an item that already had one.
    pub merged: u64,
    /// Items written out (super-packets or single packets).
    pub items: u64,
    /// Segments left out for a bad checksum.
    pub bad_checksum: u64,
}

/// One item: a flow's run of segments (or one packet kept for order).
#[derive(Debug, Clone, Copy)]
struct Item<D> {
    dst: D,
    layout: Layout,
    /// IP packet bytes in its buffer (after the header room).
    len: usize,
    /// Payload bytes of the first segment: the GSO size.
    seg: usize,
    segments: usize,
    next_seq: u32,
    last_id: u16,
    /// Whether it may still grow.
    open: bool,
}

/// The coalescing table: a fixed number of item slots.
pub struct Coalescer<D> {
    /// Item `i`'s buffer: [`VNET_HDR_LEN`] bytes of room for the virtio-net
    /// header, then the IP packet.
    bufs: Vec<Box<[u8]>>,
    /// The live items, in the order they were started (capacity reserved).
    items: Vec<Item<D>>,
    /// Whether a packet's checksum is checked before it joins an item.
    verify: bool,
    pub stats: CoalesceStats,
}

impl<D> std::fmt::Debug for Coalescer<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalescer")
            .field("slots", &self.bufs.len())
            .field("used", &self.items.len())
            .field("stats", &self.stats)
            .finish()
    }
}

fn be16(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([b[i], b[i + 1]])
}

fn be32(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// Whether `a` (laid out as `la`) and `b` (as `lb`) are the same flow:
/// family, addresses and ports.
fn same_flow(la: &Layout, a: &[u8], lb: &Layout, b: &[u8]) -> bool {
    la.v6 == lb.v6 && la.addrs(a) == lb.addrs(b) && a[la.l4..la.l4 + 4] == b[lb.l4..lb.l4 + 4]
}

/// Whether the headers of `a` and `b` (both laid out as `l`, the same
/// flow) agree on everything but lengths, IPv4 ID and checksums, the
/// sequence number, and PSH.
fn same_headers(l: &Layout, a: &[u8], b: &[u8]) -> bool {
    let ip = if l.v6 {
        a[..4] == b[..4] && a[6..8] == b[6..8]
    } else {
        a[..2] == b[..2] && a[6..10] == b[6..10] && a[20..l.l4] == b[20..l.l4]
    };
    let t = l.l4;
    ip && a[t + 8..t + 13] == b[t + 8..t + 13]
        && a[t + 13] & !PSH == b[t + 13] & !PSH
        && a[t + 14..t + 16] == b[t + 14..t + 16]
        && a[t + 18..l.hlen] == b[t + 18..l.hlen]
}

/// Whether the IP headers of `a` and `b` (both laid out as `l`, the same
/// UDP flow) agree on everything but lengths, IPv4 ID and checksum.
fn same_ip_headers(l: &Layout, a: &[u8], b: &[u8]) -> bool {
    if l.v6 {
        a[..4] == b[..4] && a[6..8] == b[6..8]
    } else {
        a[..2] == b[..2] && a[6..10] == b[6..10] && a[20..l.l4] == b[20..l.l4]
    }
}

/// Whether the TCP or UDP checksum of `pkt` (laid out as `l`) is right; an
/// absent UDP checksum (0, IPv4 only) counts as right.
fn checksum_ok(l: &Layout, pkt: &[u8]) -> bool {
    if l.proto == UDP && !l.v6 && pkt[l.l4 + 6..l.l4 + 8] == [0, 0] {
        return true;
    }
    let pseudo = csum::pseudo(l.addrs(pkt), l.proto, l.len - l.l4);
    csum::fold(csum::sum(&pkt[l.l4..l.len], pseudo)) == 0xffff
}

impl<D: Copy + PartialEq> Coalescer<D> {
    /// A table of `slots` items (at least one), each with a 64 KiB buffer.
    pub fn new(slots: usize) -> Self {
        let slots = slots.max(1);
        Self {
            bufs: (0..slots)
                .map(|_| vec![0; VNET_HDR_LEN + MAX_ITEM].into_boxed_slice())
                .collect(),
            items: Vec::with_capacity(slots),
            verify: true,
            stats: CoalesceStats::default(),
        }
    }

    /// Stops checking checksums: for packets whose integrity an AEAD
    /// already checked (see the module docs).
    pub fn trust_checksums(mut self) -> Self {
        self.verify = false;
        self
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Offers `pkt`, an IP packet for `dst`. `true`: kept (it goes out
    /// through `out` at a flush, maybe merged); `false`: the caller writes
    /// it itself, now. With `udp`, UDP datagrams are kept too (`dst` must
    /// take GSO_UDP_L4). `out` gets `(dst, virtio-net header + packet,
    /// segments)` for every item written on the way (when the slots run
    /// out).
    pub fn push(
        &mut self,
        dst: D,
        pkt: &[u8],
        udp: bool,
        out: &mut impl FnMut(D, &[u8], usize),
    ) -> bool {
        let Some(l) = Layout::parse(pkt).filter(|l| l.proto == TCP || udp && l.proto == UDP) else {
            return false;
        };
        let pkt = &pkt[..l.len];
        if self.verify && !checksum_ok(&l, pkt) {
            self.stats.bad_checksum += 1;
            // The kernel drops it (and counts it) itself.
            return false;
        }
        let tcp = l.proto == TCP;
        let flags = if tcp { pkt[l.l4 + 13] } else { 0 };
        let payload = l.len - l.hlen;
        let joins = payload > 0 && (!tcp || flags & !PSH == ACK);
        // Whether the flow has items pending, and its open one.
        let mut pending = false;
        let mut open = None;
        for (i, it) in self.items.iter().enumerate() {
            let head = &self.bufs[i][VNET_HDR_LEN..VNET_HDR_LEN + it.len];
            if it.dst == dst && it.layout.proto == l.proto && same_flow(&it.layout, head, &l, pkt) {
                pending = true;
                if it.open {
                    open = Some(i);
                }
            }
        }
        if let Some(i) = open {
            if joins && self.extends(i, &l, pkt) {
                self.append(i, &l, pkt);
                return true;
            }
            self.items[i].open = false;
        }
        if !pending && !joins {
            return false;
        }
        if self.items.len() == self.bufs.len() {
            self.flush(out);
        }
        let i = self.items.len();
        self.bufs[i][VNET_HDR_LEN..VNET_HDR_LEN + l.len].copy_from_slice(pkt);
        self.items.push(Item {
            dst,
            layout: l,
            len: l.len,
            seg: payload,
            segments: 1,
            next_seq: if tcp {
                be32(pkt, l.l4 + 4).wrapping_add(payload as u32)
            } else {
                0
            },
            last_id: be16(pkt, 4),
            open: joins && flags & PSH == 0 && l.len + payload <= MAX_ITEM,
        });
        true
    }

    /// Whether `pkt` continues item `i` exactly.
    fn extends(&self, i: usize, l: &Layout, pkt: &[u8]) -> bool {
        let it = &self.items[i];
        let head = &self.bufs[i][VNET_HDR_LEN..VNET_HDR_LEN + it.len];
        let payload = l.len - l.hlen;
        let common = it.layout.hlen == l.hlen
            && it.layout.l4 == l.l4
            && payload <= it.seg
            && it.len + payload <= MAX_ITEM
            && (l.v6 || pkt[6] & 0x40 != 0 || be16(pkt, 4) == it.last_id.wrapping_add(1));
        if l.proto == TCP {
            common && be32(pkt, l.l4 + 4) == it.next_seq && same_headers(l, head, pkt)
        } else {
            common && it.segments < MAX_UDP_SEGMENTS && same_ip_headers(l, head, pkt)
        }
    }

    /// Appends `pkt`'s payload to item `i`.
    fn append(&mut self, i: usize, l: &Layout, pkt: &[u8]) {
        let it = &mut self.items[i];
        let buf = &mut self.bufs[i];
        let payload = &pkt[l.hlen..l.len];
        let at = VNET_HDR_LEN + it.len;
        buf[at..at + payload.len()].copy_from_slice(payload);
        it.len += payload.len();
        it.next_seq = it.next_seq.wrapping_add(payload.len() as u32);
        it.segments += 1;
        it.last_id = be16(pkt, 4);
        if l.proto == TCP && pkt[l.l4 + 13] & PSH != 0 {
            buf[VNET_HDR_LEN + l.l4 + 13] |= PSH;
            it.open = false;
        }
        if payload.len() < it.seg || it.len + it.seg > MAX_ITEM {
            it.open = false;
        }
        if l.proto == UDP && it.segments == MAX_UDP_SEGMENTS {
            it.open = false;
        }
        self.stats.merged += 1;
    }

    /// Writes every pending item through `out`, in order, and empties the
    /// table.
    pub fn flush(&mut self, out: &mut impl FnMut(D, &[u8], usize)) {
        for (i, it) in self.items.iter().enumerate() {
            let buf = &mut self.bufs[i];
            let end = VNET_HDR_LEN + it.len;
            if it.segments == 1 {
                VnetHdr::default().encode(buf);
            } else {
                finish_super(&mut buf[VNET_HDR_LEN..end], it);
                let tcp = it.layout.proto == TCP;
                VnetHdr {
                    flags: F_NEEDS_CSUM,
                    gso_type: match (tcp, it.layout.v6) {
                        (true, false) => GSO_TCPV4,
                        (true, true) => GSO_TCPV6,
                        (false, _) => GSO_UDP_L4,
                    },
                    hdr_len: it.layout.hlen as u16,
                    gso_size: it.seg as u16,
                    csum_start: it.layout.l4 as u16,
                    csum_offset: if tcp { 16 } else { 6 },
                }
                .encode(buf);
            }
            self.stats.items += 1;
            out(it.dst, &buf[..end], it.segments);
        }
        self.items.clear();
    }
}

/// Fixes the headers of a merged item `p`: IP lengths (and the IPv4 header
/// checksum), the UDP length, and the transport checksum field to the
/// pseudo-header sum.
fn finish_super<D>(p: &mut [u8], it: &Item<D>) {
    let l = &it.layout;
    let len = p.len();
    if l.v6 {
        p[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
    } else {
        p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        p[10..12].fill(0);
        let c = csum::finish(csum::sum(&p[..l.l4], 0));
        p[10..12].copy_from_slice(&c.to_be_bytes());
    }
    let field = if l.proto == TCP {
        16
    } else {
        p[l.l4 + 4..l.l4 + 6].copy_from_slice(&((len - l.l4) as u16).to_be_bytes());
        6
    };
    let partial = csum::fold(csum::pseudo(l.addrs(p), l.proto, len - l.l4));
    p[l.l4 + field..l.l4 + field + 2].copy_from_slice(&partial.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::super::layout::{FIN, SYN};
    use super::super::segment::{complete, segment};
    use super::super::testutil::{udp4, valid, Pkt};
    use super::super::vnet::GSO_NONE;
    use super::*;

    /// What came out: (dst, header, packet).
    type Out = Vec<(u8, VnetHdr, Vec<u8>)>;

    fn run(c: &mut Coalescer<u8>, pkts: &[(u8, Vec<u8>)]) -> (Out, Vec<bool>) {
        let mut out = Out::new();
        let mut sink = |d: u8, b: &[u8], _: usize| {
            out.push((d, VnetHdr::decode(b).unwrap(), b[VNET_HDR_LEN..].to_vec()))
        };
        let kept: Vec<bool> = pkts
            .iter()
            .map(|(d, p)| c.push(*d, p, false, &mut sink))
            .collect();
        c.flush(&mut sink);
        (out, kept)
    }

    /// A flow's segments: `n` of `size` bytes from `seq`.
    fn flow(v6: bool, seq: u32, n: usize, size: usize) -> Vec<Pkt> {
        (0..n)
            .map(|i| {
                let mut p = Pkt::tcp(v6, seq.wrapping_add((i * size) as u32), size, 12);
                p.id = 100 + i as u16;
                p
            })
            .collect()
    }

    /// Splits a written super-packet back into segments.
    fn resegment(h: &VnetHdr, p: &[u8]) -> Vec<Vec<u8>> {
        let mut buf = p.to_vec();
        let mut segs = Vec::new();
        segment(&mut buf, h, |s| segs.push(s.to_vec())).unwrap();
        segs
    }

    #[test]
    fn in_order_segments_become_one_super_packet() {
        for v6 in [false, true] {
            let mut pkts = flow(v6, 0xffff_ff00, 5, 1000);
            pkts[4].flags |= PSH;
            let built: Vec<Vec<u8>> = pkts.iter().map(Pkt::build).collect();
            let mut c = Coalescer::new(4);
            let (out, kept) = run(
                &mut c,
                &built.iter().map(|p| (7, p.clone())).collect::<Vec<_>>(),
            );
            assert!(kept.iter().all(|k| *k));
            assert_eq!(out.len(), 1);
            let (dst, h, p) = &out[0];
            assert_eq!(*dst, 7);
            assert_eq!(h.gso(), if v6 { GSO_TCPV6 } else { GSO_TCPV4 });
            assert_eq!(
                (h.flags, h.gso_size, h.csum_offset),
                (F_NEEDS_CSUM, 1000, 16)
            );
            assert_eq!(usize::from(h.csum_start), if v6 { 40 } else { 20 });
            assert_eq!(usize::from(h.hdr_len), usize::from(h.csum_start) + 32);
            // The partial checksum completes to a valid super-packet.
            let mut whole = p.clone();
            let single = VnetHdr {
                gso_type: GSO_NONE,
                ..*h
            };
            complete(&mut whole, &single).unwrap();
            assert!(valid(&whole), "v6 {v6}");
            // And it splits back into exactly what came in.
            assert_eq!(resegment(h, p), built, "v6 {v6}");
            assert_eq!(c.stats.merged, 4);
            assert!(c.is_empty());
        }
    }

    #[test]
    fn a_gap_or_a_short_segment_starts_a_new_item_in_order() {
        let a = flow(false, 0, 6, 1000);
        let mut short = a[2].clone();
        short.payload.truncate(500);
        // 0, 1, short(2) | 2 (resent full: seq 2000 again -> gap) ...
        let seq: Vec<Vec<u8>> = vec![
            a[0].build(),
            a[1].build(),
            short.build(),
            // After the short one: a new item.
            Pkt::tcp(false, 2500, 1000, 12).build(),
            // A gap (3500 expected): a new item.
            a[4].build(),
            a[5].build(),
        ];
        let mut c = Coalescer::new(8);
        let (out, _) = run(
            &mut c,
            &seq.iter().map(|p| (1, p.clone())).collect::<Vec<_>>(),
        );
        let counts: Vec<usize> = out
            .iter()
            .map(|(_, h, p)| if h.is_gso() { resegment(h, p).len() } else { 1 })
            .collect();
        assert_eq!(counts, [3, 1, 2]);
        let all: Vec<Vec<u8>> = out
            .iter()
            .flat_map(|(_, h, p)| {
                if h.is_gso() {
                    resegment(h, p)
                } else {
                    vec![p.clone()]
                }
            })
            .collect();
        // Every byte, in order; IPv4 IDs of a re-split item follow its first.
        assert_eq!(all.len(), 6);
        for (got, want) in all.iter().zip(&seq) {
            assert_eq!(got[24..], want[24..]);
        }
    }

    #[test]
    fn flows_and_destinations_stay_apart() {
        let a = flow(false, 0, 3, 1000);
        let mut b = flow(false, 0, 3, 1000);
        for p in &mut b {
            p.src_port = 40001;
        }
        let mut c = Coalescer::new(8);
        let input = vec![
            (1, a[0].build()),
            (1, b[0].build()),
            (1, a[1].build()),
            (2, a[2].build()),
            (1, b[1].build()),
            (1, b[2].build()),
        ];
        let (out, kept) = run(&mut c, &input);
        assert!(kept.iter().all(|k| *k));
        let shape: Vec<(u8, u16, usize)> = out
            .iter()
            .map(|(d, h, p)| (*d, h.gso_size, p.len()))
            .collect();
        assert_eq!(shape, [(1, 1000, 2052), (1, 1000, 3052), (2, 0, 1052)]);
    }

    #[test]
    fn what_cannot_merge_goes_out_at_once_or_after_its_flow() {
        let mut c = Coalescer::new(8);
        let mut ack = Pkt::tcp(false, 0, 0, 12);
        ack.flags = ACK;
        let mut sink = |_: u8, _: &[u8], _: usize| panic!("nothing to flush yet");
        // Nothing of the flow pending: a pure ACK, a SYN, UDP, garbage go now.
        assert!(!c.push(1, &ack.build(), false, &mut sink));
        let mut syn = ack.clone();
        syn.flags = SYN;
        assert!(!c.push(1, &syn.build(), false, &mut sink));
        assert!(!c.push(1, &udp4(10), false, &mut sink));
        assert!(!c.push(1, &[0x45, 0, 0], true, &mut sink));
        // A bad checksum never joins.
        let mut bad = Pkt::tcp(false, 0, 100, 12).build();
        bad[60] ^= 1;
        assert!(!c.push(1, &bad, true, &mut sink));
        assert_eq!(c.stats.bad_checksum, 1);
        // With data pending, a FIN of the flow queues behind it.
        let data = flow(false, 0, 2, 1000);
        let mut fin = Pkt::tcp(false, 2000, 0, 12);
        fin.flags = ACK | FIN;
        let (out, kept) = run(
            &mut c,
            &[(1, data[0].build()), (1, data[1].build()), (1, fin.build())],
        );
        assert_eq!(kept, [true, true, true]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].2, fin.build());
        assert_eq!(out[1].1, VnetHdr::default());
    }

    #[test]
    fn trusting_checksums_merges_what_verifying_keeps_apart() {
        let mut segs: Vec<Vec<u8>> = flow(false, 0, 3, 1000).iter().map(Pkt::build).collect();
        // The middle segment's payload no longer matches its checksum.
        segs[1][60] ^= 1;
        let pkts: Vec<(u8, Vec<u8>)> = segs.iter().map(|p| (1, p.clone())).collect();
        let (out, kept) = run(&mut Coalescer::new(4), &pkts);
        assert_eq!(kept, [true, false, true]);
        assert_eq!(out.len(), 2, "the bad one is written at once, not merged");
        let mut trusting = Coalescer::new(4).trust_checksums();
        let (out, kept) = run(&mut trusting, &pkts);
        assert_eq!(kept, [true, true, true]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1.gso_size, 1000);
        assert_eq!(out[0].2.len(), 20 + 32 + 3000);
        assert_eq!(trusting.stats.bad_checksum, 0);
    }

    #[test]
    fn headers_must_agree() {
        let base = flow(false, 0, 2, 1000);
        let variants: [fn(&mut Pkt); 7] = [
            |p| p.opts[5] ^= 1,
            |p| p.ack += 1,
            |p| p.window += 1,
            |p| p.ttl -= 1,
            |p| p.tos = 2,
            |p| p.flags |= super::super::layout::ECE,
            // No DF, and an ID that does not follow.
            |p| {
                p.df = false;
                p.id = 7;
            },
        ];
        for (i, change) in variants.iter().enumerate() {
            let mut second = base[1].clone();
            change(&mut second);
            let mut c = Coalescer::new(4);
            let (out, _) = run(&mut c, &[(1, base[0].build()), (1, second.build())]);
            assert_eq!(out.len(), 2, "variant {i}");
        }
        // Without DF, incrementing IDs merge.
        let mut c = Coalescer::new(4);
        let mut a = base.clone();
        for p in &mut a {
            p.df = false;
        }
        let (out, _) = run(&mut c, &[(1, a[0].build()), (1, a[1].build())]);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn items_stop_at_64k_and_slots_flush_when_full() {
        let pkts = flow(false, 0, 70, 1000);
        let mut c = Coalescer::new(2);
        let (out, _) = run(
            &mut c,
            &pkts.iter().map(|p| (1, p.build())).collect::<Vec<_>>(),
        );
        let lens: Vec<usize> = out.iter().map(|(_, _, p)| p.len()).collect();
        // 65 segments fit in 65535 bytes (52 + 65 * 1000); then the rest.
        assert_eq!(lens, [52 + 65_000, 52 + 5000]);
        // Three flows through two slots: the first two go out early.
        let mut c = Coalescer::new(2);
        let out = std::cell::Cell::new(0);
        let mut sink = |_: u8, _: &[u8], _: usize| out.set(out.get() + 1);
        for port in 0..3u16 {
            let mut p = Pkt::tcp(false, 0, 100, 0);
            p.src_port = port;
            assert!(c.push(1, &p.build(), false, &mut sink));
        }
        assert_eq!(out.get(), 2);
        c.flush(&mut sink);
        assert_eq!(out.get(), 3);
    }

    /// `n` datagrams of `size` bytes of one UDP flow.
    fn udp_flow(v6: bool, n: usize, size: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                let mut p = Pkt::udp(v6, size);
                p.id = 500 + i as u16;
                p.payload = super::super::testutil::payload(size, i);
                p.build()
            })
            .collect()
    }

    #[test]
    fn udp_datagrams_of_one_size_become_one_uso_packet() {
        for v6 in [false, true] {
            let mut dgrams = udp_flow(v6, 5, 300);
            let mut last = Pkt::udp(v6, 120);
            last.id = 505;
            dgrams.push(last.build());
            let mut c = Coalescer::new(4);
            let (out, kept) = run_udp(&mut c, &dgrams);
            assert!(kept.iter().all(|k| *k));
            assert_eq!(out.len(), 1, "v6 {v6}");
            let (_, h, p) = &out[0];
            assert_eq!(
                (h.gso(), h.gso_size, h.csum_offset, h.flags),
                (GSO_UDP_L4, 300, 6, F_NEEDS_CSUM)
            );
            let mut whole = p.clone();
            complete(
                &mut whole,
                &VnetHdr {
                    gso_type: GSO_NONE,
                    ..*h
                },
            )
            .unwrap();
            assert!(valid(&whole), "the partial checksum completes (v6 {v6})");
            assert_eq!(resegment(h, p), dgrams, "v6 {v6}");
        }
    }

    fn run_udp(c: &mut Coalescer<u8>, pkts: &[Vec<u8>]) -> (Out, Vec<bool>) {
        let mut out = Out::new();
        let mut sink = |d: u8, b: &[u8], _: usize| {
            out.push((d, VnetHdr::decode(b).unwrap(), b[VNET_HDR_LEN..].to_vec()))
        };
        let kept: Vec<bool> = pkts.iter().map(|p| c.push(1, p, true, &mut sink)).collect();
        c.flush(&mut sink);
        (out, kept)
    }

    #[test]
    fn udp_items_end_at_a_shorter_datagram_and_at_64() {
        let mut dgrams = udp_flow(false, 3, 300);
        dgrams.insert(1, udp_flow(false, 1, 100).remove(0));
        let mut c = Coalescer::new(4);
        let (out, _) = run_udp(&mut c, &dgrams);
        // [300 100] [300 300]: a shorter one ends an item; order is kept.
        let shape: Vec<(u16, usize)> = out.iter().map(|(_, h, p)| (h.gso_size, p.len())).collect();
        assert_eq!(shape, [(300, 28 + 400), (300, 28 + 600)]);
        let dgrams = udp_flow(false, 70, 10);
        let (out, _) = run_udp(&mut c, &dgrams);
        let lens: Vec<usize> = out.iter().map(|(_, _, p)| p.len()).collect();
        assert_eq!(lens, [28 + 640, 28 + 60]);
        // IPv4 without a checksum joins; without `udp` nothing is kept.
        let mut bare = udp_flow(false, 2, 50);
        for d in &mut bare {
            d[26..28].fill(0);
        }
        let (out, _) = run_udp(&mut c, &bare);
        assert_eq!(out.len(), 1);
        let mut sink = |_: u8, _: &[u8], _: usize| {};
        assert!(!c.push(1, &bare[0], false, &mut sink));
    }
}
