//! The packet paths out of the TUNs: what the engine does with a packet
//! read from the host or a pod TUN (this file), and the state every path
//! shares ([`Core`]). Datagrams from peers are `inbound`'s.
//!
//! Contract:
//! - TUN read -> one [`Switch`] decision per read, even for a 64 KiB
//!   super-packet (its segments share every header the switch looks at:
//!   addresses, ports, TTL) -> a peer: segmented ([`segment`]) and each
//!   segment encrypted into the [`TxBatch`], which sends runs of equal
//!   datagrams to one peer as one UDP GSO message; or a TUN: written whole
//!   with its virtio-net header if that TUN takes super-packets, else
//!   segmented and written packet by packet. A partial checksum
//!   (`NEEDS_CSUM`) is completed before a packet leaves for a peer or a
//!   TUN without offloads.
//! - An ICMP error from the switch goes back out the port it came in on
//!   (re-encrypted for a peer).
//! - Every packet ends in exactly one place: written, queued for sending,
//!   or counted as a drop (by the switch, or here; a super-packet counts as
//!   its segments). No allocation, lock or hash per packet: ports and
//!   peers are found by index; only handshake initiations look a key up in
//!   a map.

use std::io;
use std::time::Instant;

use tracing::warn;

use super::counters::{EngineCounters, EngineDrop};
use super::handshakes::HandshakeQueue;
use super::link::Link;
use super::peers::{Peer, PeerTable};
use super::ports::PortTable;
use super::udp::TxBatch;
use crate::wg::{Encap, Gate, Identity};
use weft_switch::offload::{check, segment, segment_count, Coalescer, VnetHdr, VNET_HDR_LEN};
use weft_switch::{Action, PeerId, PortId, Route, Switch};

/// Reads from one TUN per round, before other fds get their turn.
pub(super) const TUN_BUDGET: usize = 64;

/// Packets (a super-packet counts as its segments) from one TUN per round:
/// a pod that sends super-packets of tiny segments gets no more of the
/// engine than one that sends that many packets.
pub(super) const TUN_SEGMENT_BUDGET: u64 = 1024;

/// Coalescing slots (64 KiB each) for packets from peers.
pub(super) const GRO_SLOTS: usize = 16;

/// Where a packet came in, or goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    Host,
    Port(PortId),
    Peer(PeerId),
}

/// Everything the packet paths touch.
pub(super) struct Core {
    pub(super) identity: Identity,
    pub(super) gate: Gate,
    pub(super) keepalive: Option<u16>,
    pub(super) switch: Switch,
    pub(super) host: Link,
    pub(super) ports: PortTable,
    pub(super) peers: PeerTable,
    pub(super) tx: TxBatch,
    /// A TUN read: [`VNET_HDR_LEN`] bytes of room, then the packet.
    pub(super) pkt: Box<[u8]>,
    /// A decrypted datagram (or a handshake reply), laid out as `pkt`.
    pub(super) dec: Box<[u8]>,
    /// The switch's ICMP errors.
    pub(super) scratch: Box<[u8]>,
    pub(super) counters: EngineCounters,
    pub(super) host_read_error_logged: bool,
    /// Whether offloads were asked for (new ports negotiate them).
    pub(super) offload: bool,
    /// Whether the socket has UDP GRO on.
    pub(super) udp_gro: bool,
    /// Decrypted TCP segments on their way to a TUN, to be coalesced.
    pub(super) gro: Coalescer<Source>,
    /// Admitted handshake messages waiting for their turn.
    pub(super) handshakes: HandshakeQueue,
    /// Transport data datagrams received (the UDP read budget counts them).
    pub(super) data_datagrams: u64,
}

/// The TUN of `dst`.
pub(super) fn link_of<'a>(host: &'a Link, ports: &'a PortTable, dst: Source) -> Option<&'a Link> {
    match dst {
        Source::Host => Some(host),
        Source::Port(p) => ports.get(p).map(|port| &port.link),
        Source::Peer(_) => None,
    }
}

/// Writes a coalescer item (`n` segments) to the TUN of `dst`.
pub(super) fn write_item(
    (host, ports): (&Link, &PortTable),
    dst: Source,
    bytes: &[u8],
    n: usize,
    counters: &mut EngineCounters,
) {
    if let Some(link) = link_of(host, ports, dst) {
        if n > 1 {
            counters.super_written = counters.super_written.wrapping_add(1);
        }
        count_write(link.write_gso(bytes), dst, n as u64, counters);
    }
}

/// Counts the outcome of writing `n` packets to the TUN of `dst`.
pub(super) fn count_write(
    result: io::Result<()>,
    dst: Source,
    n: u64,
    counters: &mut EngineCounters,
) {
    match result {
        Ok(()) => match dst {
            Source::Host => counters.to_host = counters.to_host.wrapping_add(n),
            Source::Port(_) => counters.to_ports = counters.to_ports.wrapping_add(n),
            Source::Peer(_) => {}
        },
        Err(e) if queue_full(&e) => counters.drop_n(EngineDrop::TunQueueFull, n),
        Err(_) => counters.drop_n(EngineDrop::TunWriteError, n),
    }
}

/// Whether a TUN write failed because the device's queue is full: EAGAIN
/// (a non-blocking fd) or ENOBUFS (no room for the packet).
pub(super) fn queue_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::ENOBUFS)
}

/// Encrypts `packet` for `peer` into the send batch.
pub(super) fn encrypt_to(
    peer: &mut Peer,
    packet: &[u8],
    tx: &mut TxBatch,
    counters: &mut EngineCounters,
) {
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

/// Sends the switch's ICMP error `reply` back to where its packet came from.
pub(super) fn send_back(
    source: Source,
    reply: &[u8],
    (host, ports, peers): (&Link, &PortTable, &mut PeerTable),
    tx: &mut TxBatch,
    counters: &mut EngineCounters,
) {
    match source {
        Source::Peer(p) => {
            if let Some(peer) = peers.get_mut(p) {
                encrypt_to(peer, reply, tx, counters);
            }
        }
        dst => {
            if let Some(link) = link_of(host, ports, dst) {
                count_write(link.write_copy(reply), dst, 1, counters);
            }
        }
    }
}

impl Core {
    /// Runs `pkt[VNET_HDR_LEN..][..len]`, read from the TUN of `source`
    /// with header `hdr`, through the switch and out. Returns how many
    /// packets that was (a super-packet's segments).
    pub(super) fn forward(
        &mut self,
        source: Source,
        hdr: VnetHdr,
        len: usize,
        now: Instant,
    ) -> u64 {
        let Core {
            switch,
            host,
            ports,
            peers,
            tx,
            pkt,
            scratch,
            counters,
            ..
        } = self;
        let Some(packet) = pkt.get_mut(VNET_HDR_LEN..VNET_HDR_LEN + len) else {
            return 1;
        };
        let segments = segment_count(packet, &hdr) as u64;
        let action = match source {
            Source::Host => switch.from_host(packet, &hdr, scratch, now),
            Source::Port(p) => switch.from_pod(p, packet, &hdr, scratch, now),
            Source::Peer(p) => switch.from_peer(p, packet, scratch, now),
        };
        let offloaded = hdr.is_gso() || hdr.needs_csum();
        if hdr.is_gso() {
            counters.super_read = counters.super_read.wrapping_add(1);
        }
        let dst = match action {
            // The DNS VIP step is off until the engine calls
            // `Switch::set_dns` (issue 15's engine wiring): never returned.
            Action::Drop(_) | Action::DnsForward(_) | Action::DnsTcp(_) => return segments,
            Action::Reply(n) => {
                if let Some(reply) = scratch.get(..n) {
                    send_back(source, reply, (host, ports, peers), tx, counters);
                }
                return segments;
            }
            Action::ToPort(p) => Source::Port(p),
            Action::ToHost => Source::Host,
            Action::ToPeer(p) => {
                let Some(peer) = peers.get_mut(p) else {
                    return segments;
                };
                let mtu = usize::from(switch.mtu(Route::Peer(p)));
                if !offloaded {
                    encrypt_to(peer, packet, tx, counters);
                } else if let Err(cause) =
                    segment(packet, &hdr, mtu, |seg| encrypt_to(peer, seg, tx, counters))
                {
                    counters.offload_drop(cause);
                }
                return segments;
            }
        };
        let Some(link) = link_of(host, ports, dst) else {
            return segments;
        };
        let mtu = usize::from(switch.mtu(match dst {
            Source::Port(p) => Route::Port(p),
            _ => Route::Host,
        }));
        if !offloaded {
            count_write(link.write(pkt, len), dst, 1, counters);
        } else if link.offload() {
            // Local traffic stays a super-packet: the kernel takes it whole,
            // and would split it by what its header claims, so the header
            // is held to the rules segmenting applies.
            if let Err(cause) = check(packet, &hdr, mtu) {
                counters.offload_drop(cause);
                return segments;
            }
            if hdr.is_gso() {
                counters.super_written = counters.super_written.wrapping_add(1);
            }
            hdr.encode(pkt);
            count_write(
                link.write_gso(&pkt[..VNET_HDR_LEN + len]),
                dst,
                segments,
                counters,
            );
        } else if let Err(cause) = segment(packet, &hdr, mtu, |seg| {
            count_write(link.write_copy(seg), dst, 1, counters)
        }) {
            counters.offload_drop(cause);
        }
        segments
    }

    /// Reads up to [`TUN_BUDGET`] packets (and [`TUN_SEGMENT_BUDGET`]
    /// segments) from the host TUN. Returns whether it may have more (the
    /// budget ran out).
    pub(super) fn drain_host(&mut self, now: Instant) -> bool {
        let mut spent = 0;
        for _ in 0..TUN_BUDGET {
            if spent >= TUN_SEGMENT_BUDGET {
                return true;
            }
            match self.host.read(&mut self.pkt) {
                Ok((hdr, n)) => spent += self.forward(Source::Host, hdr, n, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if !self.host_read_error_logged {
                        self.host_read_error_logged = true;
                        warn!(ifname = self.host.tun().name(), error = %e, "reading the host TUN failed");
                    }
                    return false;
                }
            }
        }
        true
    }

    /// Reads up to [`TUN_BUDGET`] packets (and [`TUN_SEGMENT_BUDGET`]
    /// segments) from pod port `id`. Returns whether it may have more.
    pub(super) fn drain_port(&mut self, id: PortId, now: Instant) -> bool {
        let mut spent = 0;
        for _ in 0..TUN_BUDGET {
            if spent >= TUN_SEGMENT_BUDGET {
                return true;
            }
            let Some(port) = self.ports.get_mut(id) else {
                return false;
            };
            match port.link.read(&mut self.pkt) {
                Ok((hdr, n)) => spent += self.forward(Source::Port(id), hdr, n, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if !port.read_error_logged {
                        port.read_error_logged = true;
                        warn!(port = %port.id, ifname = port.link.tun().name(), error = %e, "reading a pod TUN failed");
                    }
                    return false;
                }
            }
        }
        true
    }

    /// Writes out what the coalescer holds, then sends what is queued in
    /// the send batch.
    pub(super) fn flush(&mut self) {
        self.flush_gro();
        self.tx.flush();
    }

    /// The engine counters, with the send batch's drops folded in.
    pub(super) fn counters(&self) -> EngineCounters {
        let mut counters = self.counters.clone();
        counters.drop_n(EngineDrop::UdpSendFull, self.tx.stats.full);
        counters.drop_n(EngineDrop::UdpSendError, self.tx.stats.errors);
        counters.drop_n(EngineDrop::UdpGsoInvalid, self.tx.stats.gso_invalid);
        counters
    }
}
