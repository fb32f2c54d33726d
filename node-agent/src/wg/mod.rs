//! WireGuard, as the data plane uses it: a thin wrapper around boringtun's
//! `noise` module, so that every use of boringtun stays in this one place.
//!
//! Contract:
//! - No IO and no clock of ours: the caller hands in datagrams and packets
//!   and an output buffer, and gets back what to do (send `out[..n]`, write
//!   `out[..n]` to a port, nothing, or an error). boringtun reads its own
//!   clock for timers and handshakes.
//! - Nothing panics on any input bytes or any buffer size: boringtun panics
//!   on a too-small output buffer, so every call checks [`MIN_OUT`] and the
//!   packet length first and returns an error instead.
//! - [`Gate`] looks at every datagram before any peer is known: it checks
//!   the MAC of handshake messages, applies the under-load cookie rule
//!   (answering with a cookie reply), and says how to find the peer: by the
//!   static key inside a handshake initiation, or by the receiver index of
//!   anything else (`receiver_idx >> 8` is the 24-bit index the peer's
//!   [`Tunnel`] was created with; see [`tunnel_index_of`]).
//! - [`Tunnel`] is one peer's session state (`Tunn`): encapsulate, decapsulate,
//!   flush packets queued during a handshake, and timers.
//! - [`roams`] is the roaming rule: which authenticated messages may move a
//!   peer's endpoint to the datagram's source address.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use boringtun::noise::errors::WireGuardError;
use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Packet, Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};

#[cfg(test)]
mod tests;

/// The smallest output buffer any call accepts: a handshake initiation
/// (148 bytes) fits, and so does a cookie reply.
pub const MIN_OUT: usize = 148;

/// What WireGuard adds to an IP packet: type, receiver index, counter
/// (16 bytes) and the AEAD tag (16 bytes).
pub const DATA_OVERHEAD: usize = 32;

/// The largest index a [`Tunnel`] may be created with: boringtun keeps it in
/// the upper 24 bits of its 32-bit session indexes.
pub const MAX_TUNNEL_INDEX: u32 = (1 << 24) - 1;

/// The [`Tunnel`] index a receiver index (from a handshake response, cookie
/// reply or data message) belongs to.
pub const fn tunnel_index_of(receiver_idx: u32) -> u32 {
    receiver_idx >> 8
}

/// This node's WireGuard static key pair.
#[derive(Clone)]
pub struct Identity {
    secret: StaticSecret,
    public: PublicKey,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("public", &self.public.as_bytes())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// The key pair of an X25519 private key.
    pub fn from_private(private_key: [u8; 32]) -> Self {
        let secret = StaticSecret::from(private_key);
        let public = PublicKey::from(&secret);
        Self { secret, public }
    }

    /// The public key peers know this node by.
    pub fn public_key(&self) -> [u8; 32] {
        *self.public.as_bytes()
    }
}

/// The public key of an X25519 private key.
pub fn public_key_of(private_key: [u8; 32]) -> [u8; 32] {
    Identity::from_private(private_key).public_key()
}

/// The four WireGuard message types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// Handshake initiation (type 1).
    HandshakeInit,
    /// Handshake response (type 2).
    HandshakeResponse,
    /// Cookie reply (type 3).
    CookieReply,
    /// Transport data, keepalives included (type 4).
    Data,
}

/// How to find the peer a datagram is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRef {
    /// A handshake initiation from the holder of this static public key.
    Key([u8; 32]),
    /// Anything else, addressed to the [`Tunnel`] created with this index.
    Index(u32),
}

/// Why a datagram was dropped before it reached a peer, or by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WgDrop {
    /// Not a WireGuard message (unknown type or wrong length).
    Invalid,
    /// A handshake message whose MAC1 does not match our key.
    BadMac,
    /// A handshake initiation whose static key cannot be decrypted with our
    /// key.
    UndecryptableInit,
    /// Under load and without a valid cookie: a cookie reply was sent (or,
    /// without a source address, could not be).
    UnderLoad,
    /// Authentication failed: a bad AEAD tag, a wrong key or index, a stale
    /// timestamp.
    Auth,
    /// A replayed or too old data message (counter).
    Replay,
    /// A data message for a session that does not exist (any more).
    NoSession,
    /// The decrypted payload is not an IP packet.
    BadPayload,
    /// The peer's session has expired (no handshake for too long).
    Expired,
    /// The output buffer was too small for the result.
    BufferTooSmall,
}

impl WgDrop {
    /// Every reason, in a stable order.
    pub const ALL: [WgDrop; 10] = [
        Self::Invalid,
        Self::BadMac,
        Self::UndecryptableInit,
        Self::UnderLoad,
        Self::Auth,
        Self::Replay,
        Self::NoSession,
        Self::BadPayload,
        Self::Expired,
        Self::BufferTooSmall,
    ];

    /// The stable metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Invalid => "wg_invalid",
            Self::BadMac => "wg_bad_mac",
            Self::UndecryptableInit => "wg_undecryptable_init",
            Self::UnderLoad => "wg_under_load",
            Self::Auth => "wg_auth_failed",
            Self::Replay => "wg_replay",
            Self::NoSession => "wg_no_session",
            Self::BadPayload => "wg_bad_payload",
            Self::Expired => "wg_expired",
            Self::BufferTooSmall => "wg_buffer_too_small",
        }
    }

    /// Its position in [`Self::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    fn from_error(error: &WireGuardError) -> Self {
        match error {
            WireGuardError::InvalidPacket
            | WireGuardError::IncorrectPacketLength
            | WireGuardError::WrongPacketType
            | WireGuardError::UnexpectedPacket => Self::Invalid,
            WireGuardError::InvalidMac => Self::BadMac,
            WireGuardError::UnderLoad => Self::UnderLoad,
            WireGuardError::InvalidCounter | WireGuardError::DuplicateCounter => Self::Replay,
            WireGuardError::NoCurrentSession => Self::NoSession,
            WireGuardError::ConnectionExpired => Self::Expired,
            WireGuardError::DestinationBufferTooSmall => Self::BufferTooSmall,
            WireGuardError::WrongIndex
            | WireGuardError::WrongKey
            | WireGuardError::InvalidTai64nTimestamp
            | WireGuardError::WrongTai64nTimestamp
            | WireGuardError::InvalidAeadTag
            | WireGuardError::LockFailed => Self::Auth,
        }
    }
}

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

/// What [`Tunnel::encapsulate`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encap {
    /// Send `out[..n]` to the peer: the encrypted packet or, without a
    /// session, a handshake initiation (the packet is queued until the
    /// handshake completes).
    Send(usize),
    /// Queued while a handshake is in progress; nothing to send now.
    Queued,
    /// Dropped.
    Drop(WgDrop),
}

/// What [`Tunnel::decapsulate`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decap {
    /// Authenticated, nothing to deliver (a keepalive, a cookie reply).
    Done,
    /// Send `out[..n]` back to the datagram's source (a handshake response,
    /// or the keepalive that completes our handshake), then send what
    /// [`Tunnel::next_queued`] returns.
    Reply(usize),
    /// Under load (this peer's handshake rate): send the cookie reply
    /// `out[..n]` back to the source; the datagram itself was dropped.
    Cookie(usize),
    /// `out[..n]` is a decrypted IP packet from the peer.
    Packet(usize),
    /// Dropped.
    Drop(WgDrop),
}

impl Decap {
    /// Whether the datagram was authenticated as coming from the peer.
    pub fn is_authenticated(&self) -> bool {
        matches!(self, Self::Done | Self::Reply(_) | Self::Packet(_))
    }
}

/// The roaming rule: a datagram of `kind` that produced `result` moves the
/// peer's endpoint to its source address if it proved the sender holds the
/// session or static key (a handshake message, a data message or a
/// keepalive), and was not a replay (boringtun rejects replayed handshake
/// timestamps and data counters). Cookie replies do not roam: anyone on the
/// path can replay one.
pub fn roams(kind: MessageKind, result: &Decap) -> bool {
    kind != MessageKind::CookieReply && result.is_authenticated()
}

/// What [`Tunnel::update_timers`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// Nothing to do.
    Idle,
    /// Send `out[..n]` to the peer (a handshake initiation or a keepalive).
    Send(usize),
    /// The session expired; nothing is sent until new traffic starts a
    /// handshake. Reported on every tick while it lasts.
    Expired,
    /// Another timer error.
    Error(WgDrop),
}

/// One peer's WireGuard session state.
pub struct Tunnel {
    tunn: Tunn,
    index: u32,
}

impl std::fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnel")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

/// Why a [`Tunnel`] could not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TunnelError {
    /// The index does not fit in 24 bits.
    #[error("tunnel index {0} is above {MAX_TUNNEL_INDEX}")]
    IndexOutOfRange(u32),
    /// boringtun refused the keys.
    #[error("invalid WireGuard keys: {0}")]
    InvalidKeys(&'static str),
}

impl Tunnel {
    /// A tunnel from `identity` to the peer holding `peer_public_key`. Its
    /// session indexes carry `index` in their upper 24 bits, which is how
    /// the engine routes responses and data back to it.
    pub fn new(
        identity: &Identity,
        peer_public_key: [u8; 32],
        persistent_keepalive: Option<u16>,
        index: u32,
    ) -> Result<Self, TunnelError> {
        if index > MAX_TUNNEL_INDEX {
            return Err(TunnelError::IndexOutOfRange(index));
        }
        let tunn = Tunn::new(
            identity.secret.clone(),
            PublicKey::from(peer_public_key),
            None,
            persistent_keepalive.filter(|k| *k > 0),
            index,
            // Each tunnel keeps its own handshake rate limit, on top of the
            // gate's; boringtun resets it from `update_timers`.
            None,
        )
        .map_err(TunnelError::InvalidKeys)?;
        Ok(Self { tunn, index })
    }

    /// The index it was created with.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Encrypts the IP packet `packet` into `out`, which must hold
    /// `packet.len() + DATA_OVERHEAD` and at least [`MIN_OUT`] bytes.
    pub fn encapsulate(&mut self, packet: &[u8], out: &mut [u8]) -> Encap {
        if out.len() < MIN_OUT || out.len() < packet.len() + DATA_OVERHEAD {
            return Encap::Drop(WgDrop::BufferTooSmall);
        }
        match self.tunn.encapsulate(packet, out) {
            TunnResult::WriteToNetwork(sent) => Encap::Send(sent.len()),
            TunnResult::Done => Encap::Queued,
            TunnResult::Err(e) => Encap::Drop(WgDrop::from_error(&e)),
            TunnResult::WriteToTunnelV4(..) | TunnResult::WriteToTunnelV6(..) => {
                Encap::Drop(WgDrop::Invalid)
            }
        }
    }

    /// Handles a datagram from `src` that [`Gate::classify`] routed here.
    /// `out` must hold the datagram's length and at least [`MIN_OUT`] bytes.
    pub fn decapsulate(&mut self, src: IpAddr, datagram: &[u8], out: &mut [u8]) -> Decap {
        if datagram.is_empty() {
            // boringtun reads an empty datagram as "flush the queue".
            return Decap::Drop(WgDrop::Invalid);
        }
        if out.len() < MIN_OUT || out.len() < datagram.len() {
            return Decap::Drop(WgDrop::BufferTooSmall);
        }
        match self.tunn.decapsulate(Some(src), datagram, out) {
            TunnResult::Done => Decap::Done,
            TunnResult::WriteToNetwork(reply) => {
                let n = reply.len();
                if is_cookie_reply(reply) {
                    Decap::Cookie(n)
                } else {
                    Decap::Reply(n)
                }
            }
            TunnResult::WriteToTunnelV4(packet, _) | TunnResult::WriteToTunnelV6(packet, _) => {
                Decap::Packet(packet.len())
            }
            TunnResult::Err(e) => Decap::Drop(WgDrop::from_error(&e)),
        }
    }

    /// After a [`Decap::Reply`]: the next packet queued during the
    /// handshake, encrypted into `out` (which must hold the largest packet
    /// plus [`DATA_OVERHEAD`]); `None` when the queue is empty. Call until
    /// `None`.
    pub fn next_queued(&mut self, out: &mut [u8]) -> Option<usize> {
        if out.len() < MIN_OUT {
            return None;
        }
        match self.tunn.decapsulate(None, &[], out) {
            TunnResult::WriteToNetwork(sent) => Some(sent.len()),
            _ => None,
        }
    }

    /// Starts a new handshake now, even if one is in progress (e.g. after
    /// the peer's endpoint changed): the initiation is written to `out`.
    pub fn initiate(&mut self, out: &mut [u8]) -> Option<usize> {
        if out.len() < MIN_OUT {
            return None;
        }
        match self.tunn.format_handshake_initiation(out, true) {
            TunnResult::WriteToNetwork(sent) => Some(sent.len()),
            _ => None,
        }
    }

    /// Runs the session timers (call every ~250 ms): handshake retries,
    /// rekeying, keepalives, expiry.
    pub fn update_timers(&mut self, out: &mut [u8]) -> Timer {
        if out.len() < MIN_OUT {
            return Timer::Error(WgDrop::BufferTooSmall);
        }
        match self.tunn.update_timers(out) {
            TunnResult::Done => Timer::Idle,
            TunnResult::WriteToNetwork(sent) => Timer::Send(sent.len()),
            TunnResult::Err(WireGuardError::ConnectionExpired) => Timer::Expired,
            TunnResult::Err(e) => Timer::Error(WgDrop::from_error(&e)),
            TunnResult::WriteToTunnelV4(..) | TunnResult::WriteToTunnelV6(..) => {
                Timer::Error(WgDrop::Invalid)
            }
        }
    }

    /// Time since the current session's handshake completed, if there is a
    /// session.
    pub fn last_handshake(&self) -> Option<Duration> {
        self.tunn.stats().0
    }
}

/// Whether `message` is a cookie reply (type 3).
fn is_cookie_reply(message: &[u8]) -> bool {
    message.first() == Some(&3)
}
