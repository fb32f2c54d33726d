//! The data plane: the IO shell around the sans-IO [`crate::switch`]. It owns
//! the fds of the host TUN `weft0`, every pod TUN, and the one UDP socket
//! that carries WireGuard to peers; it runs boringtun's `Tunn` per peer
//! (handshakes, cookies, timers) and moves packets between them on a
//! dedicated thread, without a heap allocation or a lock per packet.
//!
//! The control side talks to it through a [`Dataplane`] handle: commands go
//! over a channel and wake the engine; each returns when the engine has
//! applied it.
//!
//! STATUS: interface stub. The engine is being written; until then every
//! call returns [`DataplaneError::NotRunning`].

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use ipnet::IpNet;

use crate::tun::Tun;

/// What the data plane needs to start.
#[derive(Debug, Clone)]
pub struct DataplaneConfig {
    /// This node's WireGuard (X25519) private key.
    pub private_key: [u8; 32],
    /// This node's pod CIDR(s).
    pub node_cidrs: Vec<IpNet>,
    /// This node's own overlay address(es), held by the host port `weft0`.
    pub host_addresses: Vec<IpAddr>,
    /// WireGuard persistent keepalive sent to every peer, in seconds.
    pub persistent_keepalive: Option<u16>,
}

/// A peer: another node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSpec {
    /// The node's name: a peer's stable identity (its key may rotate).
    pub name: String,
    /// The node's WireGuard public key.
    pub public_key: [u8; 32],
    /// Where to send to it first; updated by roaming when it sends from
    /// elsewhere. `None`: wait for it to reach us.
    pub endpoint: Option<SocketAddr>,
    /// Inner source addresses allowed from it and routed to it: its pod CIDR(s).
    pub allowed: Vec<IpNet>,
}

/// A pod port to attach: an open TUN (already configured in the pod's
/// namespace) and the pod's address(es).
#[derive(Debug)]
pub struct PodPort {
    /// The attachment's unique id (pod name, or `<container-id>/<ifname>` for CNI).
    pub id: String,
    pub tun: Tun,
    pub addresses: Vec<IpAddr>,
}

/// A peer as the data plane sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    pub name: String,
    pub public_key: [u8; 32],
    /// The current endpoint (after roaming).
    pub endpoint: Option<SocketAddr>,
    pub allowed: Vec<IpNet>,
    /// Time since the last completed handshake, if any.
    pub last_handshake: Option<Duration>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
}

/// A snapshot of the data plane's state and counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataplaneStatus {
    pub peers: Vec<PeerStatus>,
    /// Attached pod ports: id and addresses.
    pub ports: Vec<(String, Vec<IpAddr>)>,
    /// Drop counters by reason name (stable names, for metrics).
    pub drops: Vec<(&'static str, u64)>,
    /// Packets forwarded to pod ports, the host port, and peers.
    pub forwarded_to_ports: u64,
    pub forwarded_to_host: u64,
    pub forwarded_to_peers: u64,
}

/// Errors of the data plane handle.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// The engine thread is not running (stopped, or crashed: see the log).
    #[error("the data plane is not running")]
    NotRunning,
    /// A peer or port was refused; the message says why.
    #[error("{0}")]
    Rejected(String),
    /// An OS call failed.
    #[error("{op}: {source}")]
    Io { op: &'static str, source: std::io::Error },
}

/// The handle to the running data plane.
#[derive(Debug)]
pub struct Dataplane {
    _private: (),
}

impl Dataplane {
    /// Start the engine on its own thread with the host port and the UDP
    /// socket (bound by the caller, e.g. to 0.0.0.0:51820).
    pub fn start(_cfg: DataplaneConfig, _host: Tun, _udp: UdpSocket) -> Result<Dataplane, DataplaneError> {
        Err(DataplaneError::NotRunning)
    }

    /// Add a peer, or update it (by name): endpoint, allowed prefixes, or a
    /// new key (which starts a new session).
    pub async fn set_peer(&self, _peer: PeerSpec) -> Result<(), DataplaneError> {
        Err(DataplaneError::NotRunning)
    }

    /// Replace the whole peer set (after a watch snapshot): peers not in
    /// `peers` are removed; unchanged peers keep their sessions.
    pub async fn set_peers(&self, _peers: Vec<PeerSpec>) -> Result<(), DataplaneError> {
        Err(DataplaneError::NotRunning)
    }

    /// Remove a peer by name. Ok(false) if there was none.
    pub async fn remove_peer(&self, _name: &str) -> Result<bool, DataplaneError> {
        Err(DataplaneError::NotRunning)
    }

    /// Attach a pod port.
    pub async fn attach_pod(&self, _port: PodPort) -> Result<(), DataplaneError> {
        Err(DataplaneError::NotRunning)
    }

    /// Detach a pod port by id, handing its TUN back. Ok(None) if unknown.
    pub async fn detach_pod(&self, _id: &str) -> Result<Option<Tun>, DataplaneError> {
        Err(DataplaneError::NotRunning)
    }

    /// Current peers, ports and counters.
    pub async fn status(&self) -> Result<DataplaneStatus, DataplaneError> {
        Err(DataplaneError::NotRunning)
    }

    /// Stop the engine and wait for its thread. Pod TUNs stay (persistent).
    pub fn shutdown(self) -> Result<(), DataplaneError> {
        Ok(())
    }
}
