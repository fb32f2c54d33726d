//! The packet paths from peers: what the engine does with a message read
//! from the UDP socket (a datagram, or a GRO run of datagrams from one
//! source), and WireGuard's timer tick.
//!
//! Contract:
//! - Each datagram -> [`Gate::admit`](crate::wg::Gate::admit): data goes
//!   on at once; a handshake message within its source's rate and with
//!   valid MACs waits in the handshake queue, served after the round's
//!   data ([`Core::serve_handshakes`], [`Gate::route`](crate::wg::Gate::route))
//!   -> the peer (by static key for a
//!   handshake initiation, by receiver index otherwise) -> its
//!   [`Tunnel`](crate::wg::Tunnel) -> replies to the source, packets queued
//!   during a handshake to the peer, and decrypted packets through
//!   [`Switch::from_peer`](weft_switch::Switch::from_peer), one decision
//!   per packet (it checks the inner source against the peer's allowed
//!   prefixes), and on: [`Core::on_decrypted`] and the one dispatch of
//!   `dispatch.rs`, shared with packets from TUNs.
//! - Roaming: a datagram that [`roams`] moves the peer's endpoint to its
//!   source address.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::core::{Core, Egress};
use super::counters::EngineDrop;
use super::handshakes::HANDSHAKE_BUDGET;
use super::peers::Peer;
use super::udp::{Message, TxBatch};
use crate::wg::{roams, Admit, Decap, Inbound, MessageKind, PeerRef, Timer, WgDrop};
use weft_switch::offload::VNET_HDR_LEN;
use weft_switch::PeerId;

impl Core {
    /// Handles one received message: each datagram in it, in order.
    pub(super) fn on_message(&mut self, msg: &Message<'_>, now: Instant) {
        let Some(src) = msg.src else {
            self.egress
                .counters
                .drop_n(EngineDrop::UdpNoSource, msg.datagrams().len() as u64);
            return;
        };
        if msg.truncated {
            self.egress.counters.drop(EngineDrop::UdpTruncated);
            return;
        }
        if msg.bytes.is_empty() {
            // An empty datagram is still one (and invalid).
            self.on_datagram(src, &[], now);
            return;
        }
        if msg.segment < msg.bytes.len() {
            self.egress.counters.gro_messages = self.egress.counters.gro_messages.wrapping_add(1);
        }
        for datagram in msg.datagrams() {
            self.on_datagram(src, datagram, now);
        }
    }

    /// Handles one datagram from `src`: data at once; a handshake message
    /// is admitted by the gate (source rate, MACs, cookies) into the queue
    /// that [`Core::serve_handshakes`] works through after the data.
    fn on_datagram(&mut self, src: SocketAddr, bytes: &[u8], now: Instant) {
        let out = &mut self.bufs.dec[VNET_HDR_LEN..];
        match self.wg.gate.admit(src.ip(), bytes, now, out) {
            Admit::Data(index) => {
                self.wg.data_datagrams = self.wg.data_datagrams.wrapping_add(1);
                match self.egress.peers.by_index(index) {
                    Some((id, _)) => self.hand_to_peer(id, MessageKind::Data, src, bytes, now),
                    None => self.egress.counters.drop(EngineDrop::UnknownIndex),
                }
            }
            Admit::Handshake => {
                if !self.wg.handshakes.push(src, bytes) {
                    self.egress.counters.wg_drop(WgDrop::HandshakeBacklog);
                }
                if self.wg.handshakes.backlogged() {
                    self.wg.gate.backlog(now);
                }
            }
            Admit::CookieReply(n) => {
                self.egress.counters.wg_drop(WgDrop::UnderLoad);
                self.egress.counters.cookies_sent =
                    self.egress.counters.cookies_sent.wrapping_add(1);
                if let Some(cookie) = out.get(..n) {
                    self.egress.tx.push(cookie, src);
                }
            }
            Admit::Drop(reason) => self.egress.counters.wg_drop(reason),
        }
    }

    /// Works through up to [`HANDSHAKE_BUDGET`] queued handshake messages:
    /// finds each one's peer (an X25519 for an initiation) and hands it to
    /// the peer's tunnel. Returns whether more are waiting.
    pub(super) fn serve_handshakes(&mut self, now: Instant) -> bool {
        for _ in 0..HANDSHAKE_BUDGET {
            let Some(queued) = self.wg.handshakes.pop() else {
                return false;
            };
            let bytes = queued.bytes();
            let (id, kind) = match self.wg.gate.route(bytes) {
                Inbound::Drop(reason) => {
                    self.egress.counters.wg_drop(reason);
                    continue;
                }
                Inbound::CookieReply(_) => continue,
                Inbound::Peer {
                    peer: PeerRef::Key(key),
                    kind,
                } => match self.egress.peers.id_by_key(&key) {
                    Some(id) => (id, kind),
                    None => {
                        self.egress.counters.drop(EngineDrop::UnknownPeerKey);
                        continue;
                    }
                },
                Inbound::Peer {
                    peer: PeerRef::Index(index),
                    kind,
                } => match self.egress.peers.by_index(index) {
                    Some((id, _)) => (id, kind),
                    None => {
                        self.egress.counters.drop(EngineDrop::UnknownIndex);
                        continue;
                    }
                },
            };
            self.hand_to_peer(id, kind, queued.src, bytes, now);
        }
        !self.wg.handshakes.is_empty()
    }

    /// Hands a datagram from `src`, of `kind`, to peer `id`'s tunnel, and
    /// does what its answer says.
    fn hand_to_peer(
        &mut self,
        id: PeerId,
        kind: MessageKind,
        src: SocketAddr,
        bytes: &[u8],
        now: Instant,
    ) {
        let out = &mut self.bufs.dec[VNET_HDR_LEN..];
        let Some(peer) = self.egress.peers.get_mut(id) else {
            return;
        };
        let result = peer.tunnel.decapsulate(src.ip(), bytes, out);
        if result.is_authenticated() {
            peer.count_rx(bytes.len());
        }
        if roams(kind, &result) && peer.endpoint != Some(src) {
            info!(parent: &peer.span, from = ?peer.endpoint, to = %src, "peer endpoint changed (roaming)");
            peer.endpoint = Some(src);
        }
        match result {
            Decap::Done if kind == MessageKind::CookieReply => {
                // The peer is under load and sent a cookie for our
                // initiation: initiate again now, with the cookie (MAC2),
                // rather than after the 5 s retry timer.
                if peer.tunnel.last_handshake().is_none() && peer.may_initiate() {
                    peer.initiate(&mut self.egress.tx);
                }
            }
            Decap::Done => {}
            Decap::Drop(reason) => self.egress.counters.wg_drop(reason),
            Decap::Cookie(n) => {
                self.egress.counters.wg_drop(WgDrop::UnderLoad);
                self.egress.counters.cookies_sent =
                    self.egress.counters.cookies_sent.wrapping_add(1);
                send_reply(peer, &mut self.egress.tx, out, n, src);
            }
            Decap::Reply(n) => {
                if matches!(
                    kind,
                    MessageKind::HandshakeInit | MessageKind::HandshakeResponse
                ) {
                    peer.expired = false;
                    note_answered(peer);
                    debug!(parent: &peer.span, endpoint = %src, message = ?kind, "handshake");
                }
                send_reply(peer, &mut self.egress.tx, out, n, src);
                // Packets queued while the handshake was in progress.
                loop {
                    let slot = self.egress.tx.slot();
                    match peer.tunnel.next_queued(slot) {
                        Some(m) => {
                            self.egress.tx.commit(m, src);
                            peer.count_tx(m);
                        }
                        None => break,
                    }
                }
            }
            Decap::Packet(n) => self.on_decrypted(id, n, now),
        }
    }

    /// Runs every peer's timers (every [`TICK`](super::engine::TICK)),
    /// in the peer's span (so WireGuard's own events name it). A peer that
    /// may not be handshaken with (NotReady, no session) gets no timers:
    /// they would only retry handshakes toward it.
    pub(super) fn tick(&mut self, now: Instant) {
        self.wg.gate.tick(now);
        let Egress { peers, tx, .. } = &mut self.egress;
        for (_, peer) in peers.iter_mut() {
            if !peer.may_initiate() {
                continue;
            }
            let span = peer.span.clone();
            let out = tx.slot();
            let timer = span.in_scope(|| peer.tunnel.update_timers(out));
            let initiation = matches!(timer, Timer::Send(_)) && out.first() == Some(&1);
            match timer {
                Timer::Idle => {}
                Timer::Send(n) => {
                    if let Some(dst) = peer.endpoint {
                        tx.commit(n, dst);
                        peer.count_tx(n);
                        if initiation {
                            note_unanswered(peer, now);
                        }
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
}

/// How often an unanswered peer's handshakes are logged, at most.
const UNANSWERED_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Counts a handshake initiation the timers sent (the previous one went
/// unanswered for 5 s, or a rekey), and logs a peer whose handshakes go
/// unanswered: at the first retry, then at most once a minute.
fn note_unanswered(peer: &mut Peer, now: Instant) {
    peer.unanswered = peer.unanswered.saturating_add(1);
    if peer.unanswered < 2 {
        return;
    }
    if peer
        .unanswered_logged
        .is_some_and(|t| now.saturating_duration_since(t) < UNANSWERED_LOG_INTERVAL)
    {
        return;
    }
    peer.unanswered_logged = Some(now);
    warn!(parent: &peer.span, endpoint = ?peer.endpoint, attempts = peer.unanswered,
        "handshakes to this peer go unanswered; retrying every 5 s (logged at most once a minute)");
}

/// A completed handshake: the peer answers again.
fn note_answered(peer: &mut Peer) {
    if peer.unanswered_logged.is_some() {
        info!(parent: &peer.span, attempts = peer.unanswered, "the peer answers handshakes again");
    }
    peer.unanswered = 0;
    peer.unanswered_logged = None;
}

/// Sends `buf[..n]`, produced by `peer`'s tunnel, back to `src`.
fn send_reply(peer: &mut Peer, tx: &mut TxBatch, buf: &[u8], n: usize, src: SocketAddr) {
    if let Some(reply) = buf.get(..n) {
        tx.push(reply, src);
        peer.count_tx(n);
    }
}
