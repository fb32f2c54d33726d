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
//! - [`Gate`] looks at every datagram before any peer is known, as kernel
//!   WireGuard does: data passes at once; a handshake message must be
//!   within its source address's token bucket ([`SourceLimiter`]: 20 a
//!   second, bursts of 5), checked before any cryptography, then have a
//!   valid MAC1 and, under load ([`LoadMeter`]: more than
//!   [`HANDSHAKE_RATE_LIMIT`] a second, or a backlog), a valid MAC2 (else
//!   it is answered with a cookie reply, itself within the source's
//!   bucket). Then it says how to find the peer: by the static key inside a
//!   handshake initiation, or by the receiver index of anything else
//!   (`receiver_idx >> 8` is the 24-bit index the peer's [`Tunnel`] was
//!   created with; see [`tunnel_index_of`]).
//! - [`Tunnel`] is one peer's session state (`Tunn`): encapsulate, decapsulate,
//!   flush packets queued during a handshake, and timers.
//! - [`roams`] is the roaming rule: which authenticated messages may move a
//!   peer's endpoint to the datagram's source address.
//!
//! Files: this one (message kinds, drop reasons), `key` (the node's key
//! pair and its file), `gate`, `limit` (the rate limits) and `tunnel`.

mod gate;
mod key;
mod limit;
mod tunnel;

#[cfg(test)]
mod tests;

use boringtun::noise::errors::WireGuardError;

pub use gate::{Admit, Gate, Inbound, HANDSHAKE_RATE_LIMIT};
pub use key::{KeyError, NodeKey};
pub use limit::{LoadMeter, SourceLimiter, PER_SOURCE_BURST, PER_SOURCE_RATE};
pub use tunnel::{roams, Decap, Encap, Timer, Tunnel, TunnelError};

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

/// The public key of an X25519 private key.
pub fn public_key_of(private_key: [u8; 32]) -> [u8; 32] {
    NodeKey::from_bytes(private_key).public_bytes()
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
    /// A well-formed handshake message this side no longer waits for: the
    /// answer to an initiation superseded by the peer's own (both sides
    /// started a handshake at once, e.g. both agents just started).
    StaleHandshake,
    /// A handshake message over its source address's rate (20 a second,
    /// bursts of 5): dropped before any cryptography.
    RateLimited,
    /// A handshake message admitted while the queue of handshakes waiting
    /// for the engine was full.
    HandshakeBacklog,
}

impl WgDrop {
    /// Every reason, in a stable order.
    pub const ALL: [WgDrop; 13] = [
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
        Self::StaleHandshake,
        Self::RateLimited,
        Self::HandshakeBacklog,
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
            Self::StaleHandshake => "wg_stale_handshake",
            Self::RateLimited => "wg_rate_limited",
            Self::HandshakeBacklog => "wg_handshake_backlog",
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
            | WireGuardError::WrongPacketType => Self::Invalid,
            WireGuardError::UnexpectedPacket => Self::StaleHandshake,
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
