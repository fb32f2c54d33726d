//! The packet path's IO, both directions, in one file: a packet read from
//! a TUN ([`Core::drain_link`]) or decrypted from a peer
//! ([`Core::on_decrypted`]) goes through the switch's one decision
//! ([`Switch::process`]), and [`Egress::dispatch`] carries the
//! [`Action`] out: to a peer's tunnel and the UDP send batch, to a TUN, or
//! back where it came from (an ICMP error).
//!
//! Contract:
//! - One [`Switch`] decision per TUN read, even for a 64 KiB super-packet
//!   (its segments share every header the switch looks at: addresses,
//!   ports, TTL), and one per decrypted packet.
//! - To a peer: segmented ([`segment`]) if it is a super-packet, each
//!   segment encrypted into the [`TxBatch`], which sends runs of equal
//!   datagrams to one peer as one UDP GSO message. To a TUN: written whole
//!   with its virtio-net header if that TUN takes super-packets (after
//!   [`check`] holds the header to the rules segmenting applies), else
//!   segmented and written packet by packet; a packet decrypted from a
//!   peer is offered to the [`Coalescer`](weft_switch::offload::Coalescer)
//!   first, which merges in-order TCP segments of a flow. A partial
//!   checksum (`NEEDS_CSUM`) is completed before a packet leaves for a
//!   peer or a TUN without offloads.
//! - An ICMP error from the switch goes back out the way its packet came
//!   in (re-encrypted for a peer).
//! - Every packet ends in exactly one place: written, queued for sending,
//!   or counted as a drop (by the switch, or here; a super-packet counts as
//!   its segments). No allocation, lock or hash per packet: links and
//!   peers are found by index.

use std::io;
use std::time::Instant;

use super::core::{Buffers, Core, Egress};
use super::counters::{EngineCounters, EngineDrop};
use super::links::{count_write, LinkId};
use super::peers::Peer;
use super::udp::TxBatch;
use crate::wg::Encap;
use weft_switch::offload::{check, segment, segment_count, VnetHdr, VNET_HDR_LEN};
use weft_switch::{Action, Ingress, PeerId, Route, Switch};

/// Reads from one TUN per round, before other fds get their turn.
pub(super) const TUN_BUDGET: usize = 64;

/// Packets (a super-packet counts as its segments) from one TUN per round:
/// a pod that sends super-packets of tiny segments gets no more of the
/// engine than one that sends that many packets.
pub(super) const TUN_SEGMENT_BUDGET: u64 = 1024;

/// A packet in one of the engine's buffers: `buf[VNET_HDR_LEN..][..len]`,
/// with the virtio-net header it came with (all zero for a plain packet;
/// always so for one decrypted from a peer).
pub(super) struct Packet<'a> {
    buf: &'a mut [u8],
    len: usize,
    hdr: VnetHdr,
}

impl<'a> Packet<'a> {
    /// The packet of `len` bytes after the header room of `buf`; `None` if
    /// `buf` is too short for it.
    fn new(buf: &'a mut [u8], len: usize, hdr: VnetHdr) -> Option<Self> {
        (buf.len() >= VNET_HDR_LEN + len).then_some(Self { buf, len, hdr })
    }

    /// The IP packet.
    fn ip(&mut self) -> &mut [u8] {
        let end = VNET_HDR_LEN + self.len;
        self.buf.get_mut(VNET_HDR_LEN..end).unwrap_or_default()
    }

    /// Whether it is a super-packet or has a partial checksum.
    fn offloaded(&self) -> bool {
        self.hdr.is_gso() || self.hdr.needs_csum()
    }
}

impl Core {
    /// Reads up to [`TUN_BUDGET`] packets (and [`TUN_SEGMENT_BUDGET`]
    /// segments) from the TUN `id` and sends each on its way. Returns
    /// whether it may have more (the budget ran out).
    pub(super) fn drain_link(&mut self, id: LinkId, now: Instant) -> bool {
        let mut spent = 0;
        for _ in 0..TUN_BUDGET {
            if spent >= TUN_SEGMENT_BUDGET {
                return true;
            }
            let Some(link) = self.egress.links.get_mut(id) else {
                return false;
            };
            match link.read(&mut self.bufs.pkt) {
                Ok((hdr, len)) => spent += self.on_tun_packet(id, hdr, len, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    link.read_failed(&e);
                    return false;
                }
            }
        }
        true
    }

    /// Runs `pkt[VNET_HDR_LEN..][..len]`, read from the TUN `id` with
    /// header `hdr`, through the switch and out. Returns how many packets
    /// that was (a super-packet's segments).
    fn on_tun_packet(&mut self, id: LinkId, hdr: VnetHdr, len: usize, now: Instant) -> u64 {
        let Core {
            switch,
            egress,
            bufs: Buffers { pkt, scratch, .. },
            dns,
            ..
        } = self;
        let Some(mut packet) = Packet::new(pkt, len, hdr) else {
            return 1;
        };
        let segments = segment_count(packet.ip(), &hdr) as u64;
        let from = id.ingress();
        let action = switch.process(from, packet.ip(), &hdr, scratch, now);
        if let Action::DnsForward(query) = action {
            // Cluster DNS: a name for the upstream resolvers.
            dns.forward(now, query, packet.ip(), egress);
            return segments;
        }
        if hdr.is_gso() {
            egress.counters.super_read = egress.counters.super_read.wrapping_add(1);
        }
        egress.dispatch(switch, from, action, packet, scratch);
        segments
    }

    /// Runs the packet decrypted from peer `id`, `dec[VNET_HDR_LEN..][..len]`,
    /// through the switch and out.
    pub(super) fn on_decrypted(&mut self, id: PeerId, len: usize, now: Instant) {
        let Core {
            switch,
            egress,
            bufs: Buffers { dec, scratch, .. },
            ..
        } = self;
        let Some(mut packet) = Packet::new(dec, len, VnetHdr::default()) else {
            return;
        };
        let from = Ingress::Peer(id);
        let hdr = packet.hdr;
        let action = switch.process(from, packet.ip(), &hdr, scratch, now);
        egress.dispatch(switch, from, action, packet, scratch);
    }
}

impl Egress {
    /// Carries out the switch's `action` for `packet`, which came in by
    /// `from`; `scratch` holds the ICMP error of an [`Action::Reply`].
    pub(super) fn dispatch(
        &mut self,
        switch: &Switch,
        from: Ingress,
        action: Action,
        packet: Packet<'_>,
        scratch: &[u8],
    ) {
        match action {
            Action::Drop(_) => {}
            // Forwarded queries are taken before dispatch
            // (`Core::forward_dns`); the VIP never answers peers.
            // DNS over TCP is not terminated by the engine: dropped.
            Action::DnsForward(_) | Action::DnsTcp(_) => {}
            Action::Reply(n) => {
                if let Some(reply) = scratch.get(..n) {
                    self.send_back(from, reply);
                }
            }
            Action::ToPeer(p) => {
                self.send_to_peer(p, packet, usize::from(switch.mtu(Route::Peer(p))))
            }
            Action::ToPort(p) => self.write_to_link(from, LinkId::Port(p), packet, switch),
            Action::ToHost => self.write_to_link(from, LinkId::Host, packet, switch),
        }
    }

    /// Encrypts `packet` (segment by segment for a super-packet) for peer
    /// `id`, whose tunnel takes at most `mtu` bytes a packet.
    fn send_to_peer(&mut self, id: PeerId, mut packet: Packet<'_>, mtu: usize) {
        let Egress {
            peers,
            tx,
            counters,
            ..
        } = self;
        let Some(peer) = peers.get_mut(id) else {
            return;
        };
        let hdr = packet.hdr;
        if !packet.offloaded() {
            encrypt(peer, packet.ip(), tx, counters);
        } else if let Err(cause) = segment(packet.ip(), &hdr, mtu, |seg| {
            encrypt(peer, seg, tx, counters)
        }) {
            counters.offload_drop(cause);
        }
    }

    /// Writes `packet`, which came in by `from`, to the TUN `dst`.
    fn write_to_link(
        &mut self,
        from: Ingress,
        dst: LinkId,
        mut packet: Packet<'_>,
        switch: &Switch,
    ) {
        let Egress {
            links,
            gro,
            counters,
            ..
        } = self;
        let Some(link) = links.get(dst) else {
            return;
        };
        let offloaded = packet.offloaded();
        let hdr = packet.hdr;
        let len = packet.len;
        let bytes = packet.ip();
        if !offloaded {
            // Decrypted TCP segments of a flow are merged again for a TUN
            // that takes super-packets.
            if matches!(from, Ingress::Peer(_)) && link.offload() {
                let mut out = |d: LinkId, item: &[u8], segments: usize| {
                    links.write_item(d, item, segments, counters);
                };
                if gro.push(dst, bytes, link.uso(), &mut out) {
                    return;
                }
            }
            count_write(link.write(packet.buf, len), dst, 1, counters);
            return;
        }
        let segments = segment_count(bytes, &hdr) as u64;
        let mtu = usize::from(switch.mtu(dst.route()));
        if link.offload() {
            // Local traffic stays a super-packet: the kernel takes it whole,
            // and would split it by what its header claims, so the header
            // is held to the rules segmenting applies.
            if let Err(cause) = check(bytes, &hdr, mtu) {
                counters.offload_drop(cause);
                return;
            }
            if hdr.is_gso() {
                counters.super_written = counters.super_written.wrapping_add(1);
            }
            hdr.encode(packet.buf);
            let whole = packet.buf.get(..VNET_HDR_LEN + len).unwrap_or_default();
            count_write(link.write_gso(whole), dst, segments, counters);
        } else if let Err(cause) = segment(bytes, &hdr, mtu, |seg| {
            count_write(link.write_copy(seg), dst, 1, counters)
        }) {
            counters.offload_drop(cause);
        }
    }

    /// Sends the switch's ICMP error `reply` back the way its packet came.
    fn send_back(&mut self, from: Ingress, reply: &[u8]) {
        match from {
            Ingress::Peer(p) => {
                if let Some(peer) = self.peers.get_mut(p) {
                    encrypt(peer, reply, &mut self.tx, &mut self.counters);
                }
            }
            Ingress::Host | Ingress::Port(_) => {
                let Some(dst) = LinkId::of(from) else {
                    return;
                };
                if let Some(link) = self.links.get(dst) {
                    count_write(link.write_copy(reply), dst, 1, &mut self.counters);
                }
            }
        }
    }
}

/// Encrypts `packet` for `peer` into the send batch.
fn encrypt(peer: &mut Peer, packet: &[u8], tx: &mut TxBatch, counters: &mut EngineCounters) {
    let Some(dst) = peer.endpoint else {
        counters.drop(EngineDrop::PeerNoEndpoint);
        return;
    };
    if !peer.may_initiate() {
        // No session, and the node is NotReady: a packet would start a
        // handshake toward it.
        counters.drop(EngineDrop::PeerNotReady);
        return;
    }
    match peer.tunnel.encapsulate(packet, tx.slot()) {
        Encap::Send(n) => {
            tx.commit(n, dst);
            peer.count_tx(n);
            counters.to_peers = counters.to_peers.wrapping_add(1);
        }
        // Held by the tunnel until its handshake completes.
        Encap::Queued => {
            peer.traffic.queued_packets = peer.traffic.queued_packets.wrapping_add(1);
            counters.to_peers = counters.to_peers.wrapping_add(1);
        }
        Encap::Drop(reason) => counters.wg_drop(reason),
    }
}
