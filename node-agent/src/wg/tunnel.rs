//! One peer's session ([`Tunnel`]) and what its calls produce, plus the
//! roaming rule. See the [module docs](super).

use std::net::IpAddr;
use std::time::Duration;

use boringtun::noise::errors::WireGuardError;
use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::PublicKey;

use super::{MessageKind, NodeKey, WgDrop, DATA_OVERHEAD, MAX_TUNNEL_INDEX, MIN_OUT};

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
        identity: &NodeKey,
        peer_public_key: [u8; 32],
        persistent_keepalive: Option<u16>,
        index: u32,
    ) -> Result<Self, TunnelError> {
        if index > MAX_TUNNEL_INDEX {
            return Err(TunnelError::IndexOutOfRange(index));
        }
        let tunn = Tunn::new(
            identity.secret().clone(),
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
