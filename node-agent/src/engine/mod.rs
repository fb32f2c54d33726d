//! The data-plane engine: the IO shell around the sans-IO [`weft_switch`]. It owns
//! the fds of the host TUN `weft0`, every pod TUN, and the one UDP socket
//! that carries WireGuard to peers; it runs boringtun's `Tunn` per peer
//! (handshakes, cookies, timers) and moves packets between them on a
//! dedicated thread, without a heap allocation or a lock per packet.
//!
//! The control side talks to it through a [`Dataplane`] handle: commands go
//! over a channel and wake the engine; each returns when the engine has
//! applied it.
//!
//! Fast path ([`DataplaneConfig::offload`], on by default in the agent):
//! TUNs with a virtio-net header and TSO/USO hand over 64 KiB super-packets;
//! the switch decides once per super-packet, which is then split
//! ([`offload::segment`]), each segment encrypted, and runs of equal
//! datagrams to a peer leave as one UDP GSO message. The socket's UDP GRO
//! hands over runs of datagrams; each is decrypted and checked by the
//! switch, and in-order TCP segments of a flow are merged again
//! ([`offload::Coalescer`]) and written to the TUN as one super-packet.
//! Whatever the kernel refuses (a TUN without the header, `TUNSETOFFLOAD`,
//! `UDP_SEGMENT`, `UDP_GRO`) falls back to one packet per read, write and
//! datagram, still with batched `recvmmsg`/`sendmmsg`.
//!
//! Files: `event_loop` (the thread and its epoll loop, budgets, pod
//! attach/detach), `core` (the engine's state in named parts: switch,
//! egress, WireGuard inbound, buffers, offloads), `dispatch` (the packet
//! path's IO: a TUN read or a decrypted packet -> the switch's decision ->
//! one dispatch of its `Action` to a peer, a TUN or back), `inbound`
//! (datagrams from peers: the gate, the tunnels, timers), `handshakes`
//! (the queue of admitted handshake messages, served after the data),
//! `control` (commands and status), `dns` (cluster DNS: the switch's
//! settings and the upstream forwarder), `links` (the TUNs: host and pod ports,
//! by `LinkId`) and `link` (one TUN and its offloads), `peers` (the peer
//! slots, by the switch's `PeerId`), `slots` (the slot vector of both tables), `udp` (socket tuning,
//! `recvmmsg`/`sendmmsg` batches with GSO/GRO) and `counters`. WireGuard
//! itself is [`crate::wg`]; the per-packet decision is [`weft_switch`].
//!
//! The control channel ([`Dataplane`]'s calls, `control.rs`) is the one
//! way cluster state enters the engine: it is compiled off the engine
//! thread (peers from the watch, pod ports from the pod manager) and
//! applied between packet batches, whole or not at all. State still to
//! come (the DNS zone, the policy table) takes the same way as the service
//! table ([`Dataplane::set_services`], compiled by [`crate::services`]):
//! built off the engine thread, swapped into the switch by a command.
//!
//! Counting: a peer's `rx_*` count authenticated datagrams from it (data,
//! keepalives, handshake messages) and `tx_*` the datagrams queued to it,
//! at their UDP payload size. `drops` lists the switch's reasons, then the
//! engine's (`peer_no_endpoint`, `udp_*`, `tun_*`, `wg_unknown_*`), then
//! WireGuard's (`wg_*`), all with zeros; the names are stable.

mod control;
mod core;
mod counters;
mod dispatch;
mod dns;
mod event_loop;
mod handshakes;
mod inbound;
mod link;
mod links;
mod peers;
mod slots;
mod udp;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use ipnet::IpNet;
use tokio::sync::oneshot;

use crate::kernel::tun::Tun;
use crate::wg::NodeKey;
use control::{Command, Reply};
pub use dns::{DnsEngineStats, DnsSettings, DnsStatus};
use weft_switch::conntrack::ConntrackConfig;
use weft_switch::policy::PolicyTable;
use weft_switch::service::ServiceTable;
use weft_switch::{Denial, PolicyStatus, ServicesStatus};

/// What the data plane needs to start.
#[derive(Debug, Clone)]
pub struct DataplaneConfig {
    /// This node's WireGuard key pair.
    pub key: NodeKey,
    /// This node's pod CIDR(s).
    pub node_cidrs: Vec<IpNet>,
    /// This node's own overlay address(es), held by the host port `weft0`.
    pub host_addresses: Vec<IpAddr>,
    /// WireGuard persistent keepalive sent to every peer, in seconds.
    pub persistent_keepalive: Option<u16>,
    /// Use offloads where the kernel has them: TSO/USO super-packets from
    /// TUNs with a virtio-net header, coalesced (GRO) writes back to them,
    /// UDP GSO and GRO on the socket. `false` moves one plain packet per
    /// read, write and datagram (batched syscalls still).
    pub offload: bool,
    /// The overlay MTU: of weft0, of every pod TUN and of the tunnels to
    /// peers. A packet larger than it (per segment for a super-packet) that
    /// must not be fragmented is answered with ICMP "fragmentation needed"
    /// / "packet too big"; super-packets are segmented to fit it.
    pub mtu: u32,
    /// Connection tracking and Service translation in the packet path,
    /// with this table size ([`Dataplane::set_services`] then puts service
    /// tables in force); `None` leaves both off.
    pub services: Option<ConntrackConfig>,
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
    /// Whether the control plane reports the node Ready. Toward a NotReady
    /// node the data plane starts no handshake (no retries, none for
    /// traffic: packets for it without a session are dropped as
    /// `peer_not_ready`); it still answers one the node starts, and a
    /// session that exists keeps working. Handshakes resume when it is
    /// Ready again.
    pub ready: bool,
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
    /// Whether the control plane reports the peer's node Ready.
    pub ready: bool,
    /// Packets for the peer that found no session (held for a handshake,
    /// or lost if the handshake never completes).
    pub queued_packets: u64,
}

/// What [`Dataplane::trace`] found: the switch's trace, and where the
/// packet goes by name (`None` when it does not leave the switch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceOutcome {
    pub trace: weft_switch::Trace,
    pub destination: Option<String>,
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
    /// What the offloads did.
    pub offload: OffloadStatus,
    /// Services, conntrack and translation counters (`None`: off).
    pub services: Option<ServicesStatus>,
    /// NetworkPolicy's counters (`None`: no table set yet, or off).
    pub policy: Option<PolicyStatus>,
    /// Cluster DNS's counters.
    pub dns: DnsStatus,
}

/// What the offloads are doing (all off and zero without
/// [`DataplaneConfig::offload`]). The local API converts it into its own
/// wire type at its edge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OffloadStatus {
    /// Whether the host TUN takes and hands over TSO/USO super-packets.
    pub tun: bool,
    /// Whether runs of datagrams to a peer leave as one UDP GSO message.
    pub udp_gso: bool,
    /// Whether the UDP socket hands over GRO runs of datagrams.
    pub udp_gro: bool,
    /// TSO/USO super-packets read from TUNs (each split into segments).
    pub tun_super_packets_read: u64,
    /// Super-packets written to TUNs.
    pub tun_super_packets_written: u64,
    /// Decrypted segments merged into a super-packet.
    pub segments_coalesced: u64,
    /// UDP GSO messages sent.
    pub udp_gso_messages: u64,
    /// UDP GRO messages received.
    pub udp_gro_messages: u64,
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
    #[error("{op}: {cause}")]
    Io {
        op: &'static str,
        cause: std::io::Error,
    },
}

/// The handle to the running data plane. Dropping it stops the engine (as
/// [`Dataplane::stop`] does).
#[derive(Debug)]
pub struct Dataplane {
    commands: mpsc::Sender<Command>,
    waker: Arc<mio::Waker>,
    thread: Mutex<Option<JoinHandle<bool>>>,
    public_key: [u8; 32],
    local_addr: Option<SocketAddr>,
}

impl Dataplane {
    /// Start the engine on its own thread with the host port and the UDP
    /// socket (bound by the caller, e.g. to 0.0.0.0:51820).
    pub fn start(
        cfg: DataplaneConfig,
        host: Tun,
        udp: UdpSocket,
    ) -> Result<Dataplane, DataplaneError> {
        let (commands, receiver) = mpsc::channel();
        let started = event_loop::start(cfg, host, udp, receiver)?;
        Ok(Dataplane {
            commands,
            waker: started.waker,
            thread: Mutex::new(Some(started.thread)),
            public_key: started.public_key,
            local_addr: started.local_addr,
        })
    }

    /// This node's WireGuard public key (derived from the private key).
    pub fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    /// The UDP socket's local address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// Sends a command to the engine and waits for its answer.
    async fn call<T>(
        &self,
        command: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, DataplaneError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .map_err(|_| DataplaneError::NotRunning)?;
        self.waker.wake().map_err(|cause| DataplaneError::Io {
            op: "waking the data plane",
            cause,
        })?;
        answer.await.map_err(|_| DataplaneError::NotRunning)?
    }

    /// Add a peer, or update it (by name): endpoint, allowed prefixes, or a
    /// new key (which starts a new session). Endpoint and prefix changes
    /// keep the session. A configured endpoint that did not change since the
    /// last call leaves a roamed endpoint alone.
    pub async fn set_peer(&self, peer: PeerSpec) -> Result<(), DataplaneError> {
        self.call(|reply| Command::SetPeer(peer, reply)).await
    }

    /// Replace the whole peer set (after a watch snapshot): peers not in
    /// `peers` are removed; unchanged peers keep their sessions.
    pub async fn set_peers(&self, peers: Vec<PeerSpec>) -> Result<(), DataplaneError> {
        self.call(|reply| Command::SetPeers(peers, reply)).await
    }

    /// Remove a peer by name. Ok(false) if there was none.
    pub async fn remove_peer(&self, name: &str) -> Result<bool, DataplaneError> {
        let name = name.to_owned();
        self.call(|reply| Command::RemovePeer(name, reply)).await
    }

    /// Attach a pod port. On error the TUN fd is closed (the device, being
    /// persistent, stays).
    pub async fn attach_pod(&self, port: PodPort) -> Result<(), DataplaneError> {
        self.call(|reply| Command::AttachPod(port, reply)).await
    }

    /// Detach a pod port by id, handing its TUN back. Ok(None) if unknown.
    pub async fn detach_pod(&self, id: &str) -> Result<Option<Tun>, DataplaneError> {
        let id = id.to_owned();
        self.call(|reply| Command::DetachPod(id, reply)).await
    }

    /// Configure cluster DNS (whole): the VIPs and zone the switch answers
    /// from, the upstreams other names go to. Sent again with every new
    /// zone; the forwarder (and its cache) is rebuilt only when the
    /// upstreams change.
    pub async fn set_dns(&self, settings: DnsSettings) -> Result<(), DataplaneError> {
        self.call(|reply| Command::SetDns(settings, reply)).await
    }

    /// Puts a compiled service table in force for new connections
    /// (existing ones are checked against it on their next packet).
    /// Refused if the data plane was started without services.
    pub async fn set_services(&self, table: Arc<ServiceTable>) -> Result<(), DataplaneError> {
        self.call(|reply| Command::SetServices(table, reply)).await
    }

    /// Puts a compiled NetworkPolicy table in force: new connections are
    /// judged by it, established ones on their next packet. Refused if
    /// the data plane was started without connection tracking.
    pub async fn set_policy(&self, table: Arc<PolicyTable>) -> Result<(), DataplaneError> {
        self.call(|reply| Command::SetPolicy(table, reply)).await
    }

    /// The denied new connections recorded since the last call (at most
    /// `weft_switch::DENIAL_LOG_BURST`, rate-limited by the switch).
    pub async fn take_denials(&self) -> Result<Vec<Denial>, DataplaneError> {
        self.call(Command::TakeDenials).await
    }

    /// `packet` (from [`weft_switch::probe_packet`]) from pod port `port`
    /// through a clone of the switch: what the packet path would do with
    /// it now, changing nothing (`weftctl trace`). The clone copies the
    /// connection table on the engine thread (milliseconds).
    pub async fn trace(&self, port: &str, packet: Vec<u8>) -> Result<TraceOutcome, DataplaneError> {
        let port = port.to_owned();
        self.call(|reply| Command::Trace(port, packet, reply)).await
    }

    /// Current peers, ports and counters.
    pub async fn status(&self) -> Result<DataplaneStatus, DataplaneError> {
        self.call(Command::Status).await
    }

    /// Stop the engine and wait for its thread. Pod TUNs stay (persistent).
    pub fn shutdown(self) -> Result<(), DataplaneError> {
        self.stop()
    }

    /// [`Self::shutdown`] through a shared reference (the handle is often in
    /// an `Arc`): stops the engine and joins its thread. Ok if it stopped
    /// (now or before), Err(NotRunning) if it had crashed. Afterwards the
    /// other calls return [`DataplaneError::NotRunning`].
    pub fn stop(&self) -> Result<(), DataplaneError> {
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(thread) = thread else {
            return Ok(());
        };
        // Either may fail if the engine already exited; joining tells.
        let _ = self.commands.send(Command::Shutdown);
        let _ = self.waker.wake();
        match thread.join() {
            Ok(true) => Ok(()),
            Ok(false) | Err(_) => Err(DataplaneError::NotRunning),
        }
    }

    /// Whether the engine thread is still running.
    pub fn is_running(&self) -> bool {
        self.thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|t| !t.is_finished())
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handle_can_be_shared_across_tasks() {
        fn shared<T: Send + Sync + 'static>() {}
        shared::<Dataplane>();
        shared::<DataplaneError>();
    }
}
