//! Coalescing (GRO in software): consecutive in-order TCP segments of one
//! flow, decrypted from a peer, become one super-packet that a TUN with
//! `IFF_VNET_HDR` takes in one write (GSO_TCPV4/6, `NEEDS_CSUM`), as the
//! kernel's own GRO would build it; and, for a TUN that takes USO, so do
//! consecutive UDP datagrams of one flow and one size (GSO_UDP_L4).
//!
//! Contract:
//! - [`Coalescer::push`] takes one IP packet for a destination `D` (a
//!   port) and parses it itself (a [`FlowPacket`]: nothing rests on a
//!   caller's parse). It keeps TCP segments (and UDP datagrams if asked
//!   to), appending each to the open item of its flow when it continues it
//!   exactly, and returns `false` for anything it does not keep, which the
//!   caller writes out itself, at once.
//! - A UDP datagram joins an item if its checksum passes (see below; an
//!   absent one, on IPv4, passes), its IP header equals the item's but for
//!   lengths, ID and checksum, its payload is at most the item's segment
//!   size (a shorter one ends the item), and the item stays within 64 KiB
//!   and [`MAX_UDP_SEGMENTS`].
//! - Checksums: the kernel trusts a merged (`NEEDS_CSUM`) item's payload,
//!   so by default a packet joins only if its TCP or UDP checksum is
//!   right. [`Coalescer::trust_checksums`] turns that check off for input
//!   that an AEAD already authenticated (decrypted WireGuard packets: the
//!   kernel's own WireGuard marks them `CHECKSUM_UNNECESSARY` for the same
//!   reason).
//! - A segment joins an item only if its checksum passes as above, it
//!   carries only ACK (PSH allowed: it then ends the item), its sequence
//!   number follows, its IP
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

use super::merge::{same_ip_headers, same_tcp_headers, FlowKey};
use crate::wire::tcp_flags::{ACK, PSH};
use crate::wire::vnet::{F_NEEDS_CSUM, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4};
use crate::wire::{FlowPacket, L4Checksum, L4Proto, VnetHdr, VNET_HDR_LEN};

/// The largest IP packet an item grows to.
pub const MAX_ITEM: usize = 65_535;

/// Datagrams per UDP item (the kernel's `UDP_MAX_SEGMENTS` on older
/// kernels, so that every kernel takes what is written).
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
    key: FlowKey,
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
    /// What it has done so far.
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

fn u16_of(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
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

    /// The checked head packet of item `i`.
    fn head(&self, i: usize) -> Option<FlowPacket<&[u8]>> {
        let len = self.items.get(i)?.len;
        let bytes = self.bufs.get(i)?.get(VNET_HDR_LEN..VNET_HDR_LEN + len)?;
        FlowPacket::new_checked(bytes, L4Checksum::Full).ok()
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
        let Ok(p) = FlowPacket::new_checked(pkt, L4Checksum::Full) else {
            return false;
        };
        if p.proto() == L4Proto::Udp && !udp {
            return false;
        }
        if self.verify && !p.checksum_ok() {
            self.stats.bad_checksum += 1;
            // The kernel drops it (and counts it) itself.
            return false;
        }
        let tcp = p.tcp();
        let flags = tcp.as_ref().map_or(0, |t| t.flags());
        let payload = p.total_len() - p.header_len();
        let joins = payload > 0 && (tcp.is_none() || flags & !PSH == ACK);
        let key = FlowKey::of(&p);
        // Whether the flow has items pending, and its open one.
        let mut pending = false;
        let mut open = None;
        for (i, it) in self.items.iter().enumerate() {
            if it.dst == dst && it.key == key {
                pending = true;
                if it.open {
                    open = Some(i);
                }
            }
        }
        if let Some(i) = open {
            if joins && self.extends(i, &p) {
                self.append(i, &p);
                return true;
            }
            if let Some(it) = self.items.get_mut(i) {
                it.open = false;
            }
        }
        if !pending && !joins {
            return false;
        }
        if self.items.len() == self.bufs.len() {
            self.flush(out);
        }
        let i = self.items.len();
        let len = p.total_len();
        let Some(buf) = self
            .bufs
            .get_mut(i)
            .and_then(|b| b.get_mut(VNET_HDR_LEN..VNET_HDR_LEN + len))
        else {
            return false;
        };
        buf.copy_from_slice(p.ip().packet_bytes());
        self.items.push(Item {
            dst,
            key,
            len,
            seg: payload,
            segments: 1,
            next_seq: tcp.map_or(0, |t| t.seq().wrapping_add(payload as u32)),
            last_id: p.ident(),
            open: joins && flags & PSH == 0 && len + payload <= MAX_ITEM,
        });
        true
    }

    /// Whether `p` continues item `i` exactly.
    fn extends(&self, i: usize, p: &FlowPacket<&[u8]>) -> bool {
        let (Some(it), Some(head)) = (self.items.get(i), self.head(i)) else {
            return false;
        };
        let payload = p.total_len() - p.header_len();
        let common = head.header_len() == p.header_len()
            && head.ip_header_len() == p.ip_header_len()
            && payload <= it.seg
            && it.len + payload <= MAX_ITEM
            && (p.dont_frag() || p.ident() == it.last_id.wrapping_add(1));
        match p.tcp() {
            Some(t) => common && t.seq() == it.next_seq && same_tcp_headers(&head, p),
            None => common && it.segments < MAX_UDP_SEGMENTS && same_ip_headers(&head, p),
        }
    }

    /// Appends `p`'s payload to item `i`.
    fn append(&mut self, i: usize, p: &FlowPacket<&[u8]>) {
        let (Some(it), Some(buf)) = (self.items.get_mut(i), self.bufs.get_mut(i)) else {
            return;
        };
        let payload = p.payload();
        let at = VNET_HDR_LEN + it.len;
        let Some(tail) = buf.get_mut(at..at + payload.len()) else {
            return;
        };
        tail.copy_from_slice(payload);
        it.len += payload.len();
        it.next_seq = it.next_seq.wrapping_add(payload.len() as u32);
        it.segments += 1;
        it.last_id = p.ident();
        if p.tcp().is_some_and(|t| t.flags() & PSH != 0) {
            // The merged packet carries the last segment's PSH.
            let head = buf.get_mut(VNET_HDR_LEN..VNET_HDR_LEN + it.len);
            if let Some(mut t) = head
                .and_then(|h| FlowPacket::new_checked(h, L4Checksum::Full).ok())
                .as_mut()
                .and_then(FlowPacket::tcp_mut)
            {
                let f = t.flags();
                t.set_flags(f | PSH);
            }
            it.open = false;
        }
        if payload.len() < it.seg || it.len + it.seg > MAX_ITEM {
            it.open = false;
        }
        if p.proto() == L4Proto::Udp && it.segments == MAX_UDP_SEGMENTS {
            it.open = false;
        }
        self.stats.merged += 1;
    }

    /// Writes every pending item through `out`, in order, and empties the
    /// table.
    pub fn flush(&mut self, out: &mut impl FnMut(D, &[u8], usize)) {
        for (it, buf) in self.items.iter().zip(self.bufs.iter_mut()) {
            let end = VNET_HDR_LEN + it.len;
            let hdr = if it.segments == 1 {
                VnetHdr::default()
            } else {
                // A merged item: its headers made to fit, the transport
                // checksum left for the kernel (it was checked above, or
                // an AEAD vouched for it). Its bytes were checked when it
                // started, so this cannot fail; were it to, the item is
                // left out rather than written wrong.
                let Some(Ok(mut p)) = buf
                    .get_mut(VNET_HDR_LEN..end)
                    .map(|b| FlowPacket::new_fitted(b, L4Checksum::Partial))
                else {
                    continue;
                };
                p.fill_partial_checksum();
                VnetHdr {
                    flags: F_NEEDS_CSUM,
                    gso_type: match (p.proto(), p.is_v6()) {
                        (L4Proto::Tcp, false) => GSO_TCPV4,
                        (L4Proto::Tcp, true) => GSO_TCPV6,
                        (L4Proto::Udp, _) => GSO_UDP_L4,
                    },
                    hdr_len: u16_of(p.header_len()),
                    gso_size: u16_of(it.seg),
                    csum_start: u16_of(p.ip_header_len()),
                    csum_offset: u16_of(p.proto().checksum_offset()),
                }
            };
            hdr.encode(buf);
            self.stats.items += 1;
            if let Some(bytes) = buf.get(..end) {
                out(it.dst, bytes, it.segments);
            }
        }
        self.items.clear();
    }
}
