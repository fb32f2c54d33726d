//! The packet paths: what the engine does with one packet read from a TUN
//! or one datagram read from the UDP socket, and the 250 ms timer tick.
//!
//! Contract:
//! - TUN packet -> [`Switch`] decision -> pod TUN, host TUN, or encrypted
//!   to a peer into the [`TxBatch`]; an ICMP error from the switch goes back
//!   out the port it came in on (re-encrypted for a peer).
//! - Datagram -> [`Gate::classify`] -> the peer (by static key for a
//!   handshake initiation, by receiver index otherwise) -> its
//!   [`Tunnel`](crate::wg::Tunnel) -> replies to the source, packets queued
//!   during a handshake to the peer, decrypted packets through
//!   [`Switch::from_peer`] (which checks the inner source against the
//!   peer's allowed prefixes) and on.
//! - Roaming: a datagram that [`roams`] moves the peer's endpoint to its
//!   source address.
//! - Every packet ends in exactly one place: written, queued for sending,
//!   or counted as a drop (by the switch, or here). No allocation, lock or
//!   hash per packet: ports and peers are found by index; only handshake
//!   initiations look a key up in a map.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use tracing::{debug, info, warn};

use super::counters::{EngineCounters, EngineDrop};
use super::peers::{Peer, PeerTable};
use super::ports::PortTable;
use super::udp::{Datagram, TxBatch};
use crate::switch::{Action, PeerId, PortId, Switch};
use crate::tun::Tun;
use crate::wg::{roams, Decap, Encap, Gate, Identity, Inbound, MessageKind, PeerRef, Timer};

/// Packets read from one TUN per round, before other fds get their turn.
pub(super) const TUN_BUDGET: usize = 64;

/// Where a packet came in.
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
    pub(super) host: Tun,
    pub(super) ports: PortTable,
    pub(super) peers: PeerTable,
    pub(super) tx: TxBatch,
    /// A TUN read, or a decrypted datagram.
    pub(super) pkt: Box<[u8]>,
    /// The switch's ICMP errors.
    pub(super) scratch: Box<[u8]>,
    pub(super) counters: EngineCounters,
    pub(super) host_read_error_logged: bool,
}

/// Writes `packet` to `tun`; counts a failure.
fn write_tun(tun: &Tun, packet: &[u8], counters: &mut EngineCounters) -> bool {
    match tun.try_send(packet) {
        Ok(_) => true,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            counters.drop(EngineDrop::TunQueueFull);
            false
        }
        Err(_) => {
            counters.drop(EngineDrop::TunWriteError);
            false
        }
    }
}

/// Encrypts `packet` for `peer` into the send batch.
fn encrypt_to(peer: &mut Peer, packet: &[u8], tx: &mut TxBatch, counters: &mut EngineCounters) {
    let Some(dst) = peer.endpoint else {
        counters.drop(EngineDrop::PeerNoEndpoint);
        return;
    };
    match peer.tunnel.encapsulate(packet, tx.slot()) {
        Encap::Send(n) => {
            tx.commit(n, dst);
            peer.count_tx(n);
            counters.to_peers = counters.to_peers.wrapping_add(1);
        }
        // Held by the tunnel until its handshake completes.
        Encap::Queued => counters.to_peers = counters.to_peers.wrapping_add(1),
        Encap::Drop(reason) => counters.wg_drop(reason),
    }
}

impl Core {
    /// Runs `pkt[..len]`, from `source`, through the switch and out.
    pub(super) fn forward(&mut self, source: Source, len: usize, now: Instant) {
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
        let Some(packet) = pkt.get_mut(..len) else {
            return;
        };
        let action = match source {
            Source::Host => switch.from_host(packet, scratch, now),
            Source::Port(p) => switch.from_pod(p, packet, scratch, now),
            Source::Peer(p) => switch.from_peer(p, packet, scratch, now),
        };
        let (out, dst): (&[u8], Source) = match action {
            Action::Drop(_) => return,
            Action::ToPort(p) => (packet, Source::Port(p)),
            Action::ToHost => (packet, Source::Host),
            Action::ToPeer(p) => (packet, Source::Peer(p)),
            Action::Reply(n) => match scratch.get(..n) {
                Some(reply) => (reply, source),
                None => return,
            },
        };
        match dst {
            Source::Host => {
                if write_tun(host, out, counters) {
                    counters.to_host = counters.to_host.wrapping_add(1);
                }
            }
            Source::Port(p) => {
                if let Some(port) = ports.get(p) {
                    if write_tun(&port.tun, out, counters) {
                        counters.to_ports = counters.to_ports.wrapping_add(1);
                    }
                }
            }
            Source::Peer(p) => {
                if let Some(peer) = peers.get_mut(p) {
                    encrypt_to(peer, out, tx, counters);
                }
            }
        }
    }

    /// Reads up to [`TUN_BUDGET`] packets from the host TUN. Returns whether
    /// it may have more (the budget ran out).
    pub(super) fn drain_host(&mut self, now: Instant) -> bool {
        for _ in 0..TUN_BUDGET {
            match self.host.try_recv(&mut self.pkt) {
                Ok(n) => self.forward(Source::Host, n, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if !self.host_read_error_logged {
                        self.host_read_error_logged = true;
                        warn!(ifname = self.host.name(), error = %e, "reading the host TUN failed");
                    }
                    return false;
                }
            }
        }
        true
    }

    /// Reads up to [`TUN_BUDGET`] packets from pod port `id`. Returns
    /// whether it may have more.
    pub(super) fn drain_port(&mut self, id: PortId, now: Instant) -> bool {
        for _ in 0..TUN_BUDGET {
            let Some(port) = self.ports.get_mut(id) else {
                return false;
            };
            match port.tun.try_recv(&mut self.pkt) {
                Ok(n) => self.forward(Source::Port(id), n, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if !port.read_error_logged {
                        port.read_error_logged = true;
                        warn!(port = %port.id, ifname = port.tun.name(), error = %e, "reading a pod TUN failed");
                    }
                    return false;
                }
            }
        }
        true
    }

    /// Handles one datagram from the UDP socket.
    pub(super) fn on_datagram(&mut self, datagram: Datagram<'_>, now: Instant) {
        let Some(src) = datagram.src else {
            self.counters.drop(EngineDrop::UdpNoSource);
            return;
        };
        if datagram.truncated {
            self.counters.drop(EngineDrop::UdpTruncated);
            return;
        }
        let bytes = datagram.bytes;
        let (id, kind) = match self.gate.classify(src.ip(), bytes, &mut self.pkt) {
            Inbound::Drop(reason) => {
                self.counters.wg_drop(reason);
                return;
            }
            Inbound::CookieReply(n) => {
                self.counters.wg_drop(crate::wg::WgDrop::UnderLoad);
                self.counters.cookies_sent = self.counters.cookies_sent.wrapping_add(1);
                if let Some(cookie) = self.pkt.get(..n) {
                    self.tx.push(cookie, src);
                }
                return;
            }
            Inbound::Peer {
                peer: PeerRef::Key(key),
                kind,
            } => match self.peers.id_by_key(&key) {
                Some(id) => (id, kind),
                None => {
                    self.counters.drop(EngineDrop::UnknownPeerKey);
                    return;
                }
            },
            Inbound::Peer {
                peer: PeerRef::Index(index),
                kind,
            } => match self.peers.by_index(index) {
                Some((id, _)) => (id, kind),
                None => {
                    self.counters.drop(EngineDrop::UnknownIndex);
                    return;
                }
            },
        };
        let Some(peer) = self.peers.get_mut(id) else {
            return;
        };
        let result = peer.tunnel.decapsulate(src.ip(), bytes, &mut self.pkt);
        if result.is_authenticated() {
            peer.count_rx(bytes.len());
        }
        if roams(kind, &result) && peer.endpoint != Some(src) {
            info!(parent: &peer.span, from = ?peer.endpoint, to = %src, "peer endpoint changed (roaming)");
            peer.endpoint = Some(src);
        }
        match result {
            Decap::Done => {}
            Decap::Drop(reason) => self.counters.wg_drop(reason),
            Decap::Cookie(n) => {
                self.counters.wg_drop(crate::wg::WgDrop::UnderLoad);
                self.counters.cookies_sent = self.counters.cookies_sent.wrapping_add(1);
                send_reply(peer, &mut self.tx, &self.pkt, n, src);
            }
            Decap::Reply(n) => {
                if matches!(
                    kind,
                    MessageKind::HandshakeInit | MessageKind::HandshakeResponse
                ) {
                    peer.expired = false;
                    debug!(parent: &peer.span, endpoint = %src, message = ?kind, "handshake");
                }
                send_reply(peer, &mut self.tx, &self.pkt, n, src);
                // Packets queued while the handshake was in progress.
                loop {
                    let slot = self.tx.slot();
                    match peer.tunnel.next_queued(slot) {
                        Some(m) => {
                            self.tx.commit(m, src);
                            peer.count_tx(m);
                        }
                        None => break,
                    }
                }
            }
            Decap::Packet(n) => self.forward(Source::Peer(id), n, now),
        }
    }

    /// Runs every peer's timers (every [`TICK`](super::engine::TICK)).
    pub(super) fn tick(&mut self) {
        self.gate.tick();
        let Core { peers, tx, .. } = self;
        for (_, peer) in peers.iter_mut() {
            match peer.tunnel.update_timers(tx.slot()) {
                Timer::Idle => {}
                Timer::Send(n) => {
                    if let Some(dst) = peer.endpoint {
                        tx.commit(n, dst);
                        peer.count_tx(n);
                    }
                }
                Timer::Expired => {
                    if !peer.expired {
                        peer.expired = true;
                        debug!(parent: &peer.span, "session expired");
                    }
                }
                Timer::Error(reason) => {
                    debug!(parent: &peer.span, error = reason.as_str(), "timer error");
                }
            }
        }
    }

    /// Sends what is queued in the send batch.
    pub(super) fn flush(&mut self) {
        self.tx.flush();
    }

    /// The engine counters, with the send batch's drops folded in.
    pub(super) fn counters(&self) -> EngineCounters {
        let mut counters = self.counters.clone();
        counters.drop_n(EngineDrop::UdpSendFull, self.tx.stats.full);
        counters.drop_n(EngineDrop::UdpSendError, self.tx.stats.errors);
        counters
    }
}

/// Sends `pkt[..n]`, produced by `peer`'s tunnel, back to `src`.
fn send_reply(peer: &mut Peer, tx: &mut TxBatch, pkt: &[u8], n: usize, src: SocketAddr) {
    if let Some(reply) = pkt.get(..n) {
        tx.push(reply, src);
        peer.count_tx(n);
    }
}
