//! The [`Gate`]: the first look at every datagram, before any peer is
//! known, in two steps so that the engine can serve data first: [`Gate::admit`]
//! (cheap: per-source rate, MACs, cookies) when the datagram is read, and
//! [`Gate::route`] (an X25519 for an initiation) when the engine gets to
//! the queued handshake. See the [module docs](super).

use std::net::IpAddr;
use std::time::Instant;

use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Packet, Tunn, TunnResult};

use super::limit::{LoadMeter, SourceLimiter};
use super::{tunnel_index_of, MessageKind, NodeKey, PeerRef, WgDrop, MIN_OUT};

/// What [`Gate::classify`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    /// A well-formed message for the peer `peer`: hand the datagram to its
    /// [`Tunnel::decapsulate`].
    Peer {
        /// How to find the peer.
        peer: PeerRef,
        /// The message type.
        kind: MessageKind,
    },
    /// Under load: send the cookie reply `out[..n]` back to the source and
    /// drop the datagram (counted as [`WgDrop::UnderLoad`]).
    CookieReply(usize),
    /// Drop the datagram.
    Drop(WgDrop),
}

/// What [`Gate::admit`] decided: the cheap first look, before any
/// Diffie-Hellman.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// A transport data message for the [`Tunnel`] with this index: handle
    /// it at once.
    Data(u32),
    /// A handshake message within its source's rate and with valid MACs:
    /// queue it and find its peer with [`Gate::route`] when its turn comes.
    Handshake,
    /// Under load and without a valid cookie: send the cookie reply
    /// `out[..n]` back to the source (counted as [`WgDrop::UnderLoad`]).
    CookieReply(usize),
    /// Drop the datagram.
    Drop(WgDrop),
}

/// Handshake messages admitted per second across all sources before the
/// gate asks for cookies (boringtun's device uses the same figure).
pub const HANDSHAKE_RATE_LIMIT: u64 = 100;

/// The first look at every datagram: the per-source rate of handshake
/// messages, their MACs and the load rule, and which peer a message is
/// for. Shared by all peers; see the module docs.
pub struct Gate {
    identity: NodeKey,
    /// Checks MAC1 only.
    lenient: RateLimiter,
    /// Checks MAC1 and MAC2, answering a missing cookie with a reply.
    strict: RateLimiter,
    sources: SourceLimiter,
    load: LoadMeter,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("identity", &self.identity)
            .field("sources", &self.sources.len())
            .finish_non_exhaustive()
    }
}

impl Gate {
    /// A gate for `identity`, under load (asking for cookies) above
    /// `handshakes_per_second` admitted handshake messages (0: always).
    pub fn new(identity: &NodeKey, handshakes_per_second: u64) -> Self {
        Self {
            identity: identity.clone(),
            lenient: RateLimiter::new(identity.public(), u64::MAX),
            strict: RateLimiter::new(identity.public(), 0),
            sources: SourceLimiter::default(),
            load: LoadMeter::new(handshakes_per_second),
        }
    }

    /// The first look at `datagram`, received from `src` at `now`: data
    /// goes through untouched; a handshake message must be within its
    /// source address's rate (checked before any cryptography), then its
    /// MAC1 (and under load its MAC2, else a cookie reply is written to
    /// `out`) must be right. Costs a hash lookup and at most two BLAKE2s.
    pub fn admit(&mut self, src: IpAddr, datagram: &[u8], now: Instant, out: &mut [u8]) -> Admit {
        if let Some(receiver_idx) = data_receiver(datagram) {
            // The hot path: a transport data message carries no MAC for the
            // gate to check.
            return Admit::Data(tunnel_index_of(receiver_idx));
        }
        if out.len() < MIN_OUT {
            return Admit::Drop(WgDrop::BufferTooSmall);
        }
        if !matches!(datagram.first(), Some(1..=3)) {
            return Admit::Drop(WgDrop::Invalid);
        }
        if !self.sources.allow(src, now) {
            return Admit::Drop(WgDrop::RateLimited);
        }
        self.load.admitted(now);
        let limiter = if self.load.under_load(now) {
            &self.strict
        } else {
            &self.lenient
        };
        match limiter.verify_packet(Some(src), datagram, out) {
            Ok(Packet::PacketData(_)) => Admit::Drop(WgDrop::Invalid),
            Ok(_) => Admit::Handshake,
            Err(TunnResult::WriteToNetwork(cookie)) => Admit::CookieReply(cookie.len()),
            Err(TunnResult::Err(e)) => Admit::Drop(WgDrop::from_error(&e)),
            Err(_) => Admit::Drop(WgDrop::Invalid),
        }
    }

    /// Which peer an admitted handshake message is for: by the static key
    /// inside an initiation (this costs one X25519), by the receiver index
    /// otherwise.
    pub fn route(&self, datagram: &[u8]) -> Inbound {
        let packet = match Tunn::parse_incoming_packet(datagram) {
            Ok(packet) => packet,
            Err(e) => return Inbound::Drop(WgDrop::from_error(&e)),
        };
        match packet {
            Packet::HandshakeInit(init) => {
                match parse_handshake_anon(self.identity.secret(), self.identity.public(), &init) {
                    Ok(half) => Inbound::Peer {
                        peer: PeerRef::Key(half.peer_static_public),
                        kind: MessageKind::HandshakeInit,
                    },
                    Err(_) => Inbound::Drop(WgDrop::UndecryptableInit),
                }
            }
            Packet::HandshakeResponse(p) => Inbound::Peer {
                peer: PeerRef::Index(tunnel_index_of(p.receiver_idx)),
                kind: MessageKind::HandshakeResponse,
            },
            Packet::PacketCookieReply(p) => Inbound::Peer {
                peer: PeerRef::Index(tunnel_index_of(p.receiver_idx)),
                kind: MessageKind::CookieReply,
            },
            Packet::PacketData(p) => Inbound::Peer {
                peer: PeerRef::Index(tunnel_index_of(p.receiver_idx)),
                kind: MessageKind::Data,
            },
        }
    }

    /// [`Self::admit`] then, for a handshake, [`Self::route`] at once.
    pub fn classify(
        &mut self,
        src: IpAddr,
        datagram: &[u8],
        now: Instant,
        out: &mut [u8],
    ) -> Inbound {
        match self.admit(src, datagram, now, out) {
            Admit::Data(index) => Inbound::Peer {
                peer: PeerRef::Index(index),
                kind: MessageKind::Data,
            },
            Admit::Handshake => self.route(datagram),
            Admit::CookieReply(n) => Inbound::CookieReply(n),
            Admit::Drop(reason) => Inbound::Drop(reason),
        }
    }

    /// Handshakes are waiting in a backlog: the node is under load.
    pub fn backlog(&mut self, now: Instant) {
        self.load.backlog(now);
    }

    /// Whether handshakes must carry a cookie now.
    pub fn under_load(&self, now: Instant) -> bool {
        self.load.under_load(now)
    }

    /// Forgets idle sources; call it about once a second.
    pub fn tick(&mut self, now: Instant) {
        self.sources.expire(now);
    }
}

/// The receiver index of a transport data message (type 4, three zero
/// bytes, then the index; at least the header and the AEAD tag, as
/// boringtun's parser requires); `None` for anything else.
fn data_receiver(datagram: &[u8]) -> Option<u32> {
    const DATA_MIN: usize = 32;
    match datagram {
        [4, 0, 0, 0, a, b, c, d, ..] if datagram.len() >= DATA_MIN => {
            Some(u32::from_le_bytes([*a, *b, *c, *d]))
        }
        _ => None,
    }
}
