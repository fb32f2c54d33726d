//! The switch's port and peer identifiers and the route kinds its table holds.
//!
//! Contract: ids are small dense integers chosen by the IO shell (slab keys,
//! at most [`MAX_ID`](super::MAX_ID)); the switch indexes plain vectors by
//! them, so the per-packet path never hashes.

use std::fmt;

/// A pod port (one pod's TUN or TAP), as numbered by the IO shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortId(pub u32);

/// A WireGuard peer (another node), as numbered by the IO shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId(pub u32);

impl fmt::Display for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "port {}", self.0)
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer {}", self.0)
    }
}

/// Where the route table sends a destination (and, read backwards, where a
/// source is allowed to come from: the strict reverse-path check).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A local pod's address.
    Port(PortId),
    /// One of the node's own overlay addresses, on the host port `weft0`.
    Host,
    /// Another node's prefixes (its pod CIDR), through its tunnel.
    Peer(PeerId),
    /// Inside this node's pod CIDR, but no pod holds the address.
    Unassigned,
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Port(p) => p.fmt(f),
            Self::Host => f.write_str("the host port"),
            Self::Peer(p) => p.fmt(f),
            Self::Unassigned => f.write_str("the node's pod CIDR"),
        }
    }
}

/// Which port a packet came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ingress {
    /// A pod port.
    Port(PortId),
    /// The host port.
    Host,
    /// A peer's tunnel (after decryption).
    Peer(PeerId),
}

impl Ingress {
    /// The only route the packet's source may have (strict reverse path).
    pub(crate) fn expected_source_route(self) -> Route {
        match self {
            Self::Port(p) => Route::Port(p),
            Self::Host => Route::Host,
            Self::Peer(p) => Route::Peer(p),
        }
    }
}
