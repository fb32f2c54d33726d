//! The [`Gate`]: the first look at every datagram, before any peer is
//! known. See the [module docs](super).

use std::net::IpAddr;
use std::sync::Arc;

use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Packet, TunnResult};

use super::{tunnel_index_of, Identity, MessageKind, PeerRef, WgDrop, MIN_OUT};

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

/// Handshake messages accepted per second across all peers before the
/// gate asks for cookies (boringtun's device uses the same figure).
pub const HANDSHAKE_RATE_LIMIT: u64 = 100;

/// The first look at every datagram: MAC and load checks for handshake
/// messages, and which peer it is for. Shared by all peers; see the module
/// docs.
pub struct Gate {
    identity: Identity,
    limiter: Arc<RateLimiter>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl Gate {
    /// A gate for `identity`, asking for cookies above `handshakes_per_second`.
    pub fn new(identity: &Identity, handshakes_per_second: u64) -> Self {
        Self {
            identity: identity.clone(),
            limiter: Arc::new(RateLimiter::new(&identity.public, handshakes_per_second)),
        }
    }

    /// Classifies `datagram`, received from `src`. Costs one X25519 for a
    /// handshake initiation (after its MAC and the load check passed),
    /// nothing much otherwise. A cookie reply is written to `out`.
    pub fn classify(&self, src: IpAddr, datagram: &[u8], out: &mut [u8]) -> Inbound {
        if out.len() < MIN_OUT {
            return Inbound::Drop(WgDrop::BufferTooSmall);
        }
        if let Some(receiver_idx) = data_receiver(datagram) {
            // The hot path: a transport data message carries no MAC for the
            // gate to check, so it skips the general parser.
            return Inbound::Peer {
                peer: PeerRef::Index(tunnel_index_of(receiver_idx)),
                kind: MessageKind::Data,
            };
        }
        let packet = match self.limiter.verify_packet(Some(src), datagram, out) {
            Ok(packet) => packet,
            Err(TunnResult::WriteToNetwork(cookie)) => return Inbound::CookieReply(cookie.len()),
            Err(TunnResult::Err(e)) => return Inbound::Drop(WgDrop::from_error(&e)),
            Err(_) => return Inbound::Drop(WgDrop::Invalid),
        };
        match packet {
            Packet::HandshakeInit(init) => {
                match parse_handshake_anon(&self.identity.secret, &self.identity.public, &init) {
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

    /// Resets the load count once a second; call it from the timer tick.
    pub fn tick(&self) {
        self.limiter.reset_count();
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
