//! The engine's state ([`Core`]), in named parts that each own one concern,
//! so a packet path borrows the parts it needs and nothing else:
//!
//! - `switch`: the sans-IO decision ([`weft_switch::Switch`]): routes,
//!   anti-spoofing, ICMP errors, and the compiled cluster state swapped in
//!   by the control path;
//! - [`Egress`]: where a packet can go and how that is counted: the TUNs
//!   ([`Links`]), the peers' tunnels ([`PeerTable`]), the UDP send batch
//!   ([`TxBatch`]), the coalescer of decrypted TCP segments, and the
//!   engine's counters. [`Egress::dispatch`](super::dispatch) is the one
//!   place a switch decision is carried out, for both directions;
//! - [`WgInbound`]: WireGuard before a peer is known: the node's key, the
//!   gate (rate limits, MACs, cookies) and the handshake queue;
//! - [`Buffers`]: the packet buffers, allocated once;
//! - [`Offloads`]: what was negotiated with the kernel;
//! - `dns`: the upstream forwarder of cluster DNS ([`super::dns`]).

use std::net::UdpSocket;

use super::counters::{EngineCounters, EngineDrop};
use super::dns::DnsUpstream;
use super::handshakes::HandshakeQueue;
use super::link::Link;
use super::links::{LinkId, Links};
use super::peers::PeerTable;
use super::udp::{TxBatch, MAX_DATAGRAM};
use crate::wg::{Gate, NodeKey, HANDSHAKE_RATE_LIMIT};
use weft_switch::offload::{Coalescer, VNET_HDR_LEN};
use weft_switch::Switch;

/// Coalescing slots (64 KiB each) for packets from peers.
const GRO_SLOTS: usize = 16;

/// Everything the packet paths touch, by part (see the module docs).
pub(super) struct Core {
    pub(super) switch: Switch,
    pub(super) egress: Egress,
    pub(super) wg: WgInbound,
    pub(super) bufs: Buffers,
    pub(super) offloads: Offloads,
    /// Cluster DNS: forwarding to the node's upstream resolvers.
    pub(super) dns: DnsUpstream,
}

/// Where a packet can go, and the counts of where packets went.
pub(super) struct Egress {
    pub(super) links: Links,
    pub(super) peers: PeerTable,
    pub(super) tx: TxBatch,
    /// Decrypted TCP segments on their way to a TUN, to be coalesced.
    pub(super) gro: Coalescer<LinkId>,
    pub(super) counters: EngineCounters,
}

/// WireGuard's side of the socket, before a datagram's peer is known.
pub(super) struct WgInbound {
    pub(super) key: NodeKey,
    pub(super) gate: Gate,
    /// Persistent keepalive for every new tunnel, in seconds.
    pub(super) keepalive: Option<u16>,
    /// Admitted handshake messages waiting for their turn.
    pub(super) handshakes: HandshakeQueue,
    /// Transport data datagrams received (the UDP read budget counts them).
    pub(super) data_datagrams: u64,
}

/// The packet buffers, allocated once.
pub(super) struct Buffers {
    /// A TUN read: [`VNET_HDR_LEN`] bytes of room, then the packet.
    pub(super) pkt: Box<[u8]>,
    /// A decrypted datagram (or a handshake reply), laid out as `pkt`.
    pub(super) dec: Box<[u8]>,
    /// The switch's ICMP errors.
    pub(super) scratch: Box<[u8]>,
}

/// What was negotiated with the kernel.
#[derive(Debug, Clone, Copy)]
pub(super) struct Offloads {
    /// Whether offloads were asked for (new ports negotiate them).
    pub(super) requested: bool,
    /// Whether the socket has UDP GRO on.
    pub(super) udp_gro: bool,
}

impl Core {
    /// The engine's state at start: no peers, no pod ports.
    pub(super) fn new(
        switch: Switch,
        key: NodeKey,
        keepalive: Option<u16>,
        host: Link,
        socket: UdpSocket,
        offloads: Offloads,
        udp_gso: bool,
    ) -> Self {
        let buffer = || vec![0; VNET_HDR_LEN + MAX_DATAGRAM + 64].into_boxed_slice();
        Core {
            switch,
            egress: Egress {
                links: Links::new(host),
                peers: PeerTable::default(),
                tx: TxBatch::new(socket, udp_gso),
                // Decrypted packets passed WireGuard's AEAD.
                gro: Coalescer::new(if offloads.requested { GRO_SLOTS } else { 1 })
                    .trust_checksums(),
                counters: EngineCounters::default(),
            },
            wg: WgInbound {
                gate: Gate::new(&key, HANDSHAKE_RATE_LIMIT),
                key,
                keepalive,
                handshakes: HandshakeQueue::new(),
                data_datagrams: 0,
            },
            bufs: Buffers {
                pkt: buffer(),
                dec: buffer(),
                scratch: vec![0; 4096].into_boxed_slice(),
            },
            offloads,
            dns: DnsUpstream::default(),
        }
    }

    /// Writes out what the coalescer holds, then sends what is queued in
    /// the send batch.
    pub(super) fn flush(&mut self) {
        self.egress.flush_gro();
        self.egress.tx.flush();
    }

    /// The engine counters, with the send batch's drops folded in.
    pub(super) fn counters(&self) -> EngineCounters {
        let tx = &self.egress.tx;
        let mut counters = self.egress.counters.clone();
        counters.drop_n(EngineDrop::UdpSendFull, tx.stats.full);
        counters.drop_n(EngineDrop::UdpSendError, tx.stats.errors);
        counters.drop_n(EngineDrop::UdpGsoInvalid, tx.stats.gso_invalid);
        counters
    }
}

impl Egress {
    /// Writes out everything the coalescer holds (the end of a receive
    /// batch).
    pub(super) fn flush_gro(&mut self) {
        let Egress {
            links,
            gro,
            counters,
            ..
        } = self;
        gro.flush(&mut |dst, bytes, segments| links.write_item(dst, bytes, segments, counters));
    }
}
