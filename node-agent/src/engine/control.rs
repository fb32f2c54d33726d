//! The control path: the commands the [`Dataplane`](super::Dataplane)
//! handle sends, and how the engine applies them between packet batches.
//!
//! Contract: each command is applied atomically with respect to packets
//! (the engine thread runs it between batches) and answered on its oneshot.
//! A refused change leaves everything as it was: the switch validates and
//! swaps its route table whole, and the engine's tables change only after
//! the switch accepted.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;
use tracing::{info, info_span};

use super::core::Core;
use super::counters::EngineCounters;
use super::peers::{Peer, PeerTraffic};
use super::{DataplaneError, DataplaneStatus, OffloadStatus, PeerSpec, PeerStatus};
use crate::kernel::tun::Tun;
use crate::wg::Tunnel;
use weft_switch::policy::PolicyTable;
use weft_switch::service::ServiceTable;
use weft_switch::{Action, Denial, Ingress};

use super::TraceOutcome;
use weft_switch::PeerId;

/// Where a command's answer goes.
pub(super) type Reply<T> = oneshot::Sender<Result<T, DataplaneError>>;

/// A request from the handle to the engine.
pub(super) enum Command {
    SetPeer(PeerSpec, Reply<()>),
    SetPeers(Vec<PeerSpec>, Reply<()>),
    RemovePeer(String, Reply<bool>),
    AttachPod(super::PodPort, Reply<()>),
    DetachPod(String, Reply<Option<Tun>>),
    Status(Reply<DataplaneStatus>),
    SetDns(super::DnsSettings, Reply<()>),
    /// A new compiled service table (issue 14; `crate::services`).
    SetServices(Arc<ServiceTable>, Reply<()>),
    /// A new compiled NetworkPolicy table (`crate::policy`).
    SetPolicy(Arc<PolicyTable>, Reply<()>),
    /// The denied new connections recorded since the last call.
    TakeDenials(Reply<Vec<Denial>>),
    /// A probe packet from a pod port (by id) through a clone of the
    /// switch (`weftctl trace`).
    Trace(String, Vec<u8>, Reply<TraceOutcome>),
    Shutdown,
}

fn rejected(message: impl Into<String>) -> DataplaneError {
    DataplaneError::Rejected(message.into())
}

impl Core {
    /// Adds or updates a peer by name.
    pub(super) fn set_peer(&mut self, spec: PeerSpec) -> Result<(), DataplaneError> {
        if spec.name.is_empty() {
            return Err(rejected("a peer needs a name"));
        }
        if spec.public_key == self.wg.key.public_bytes() {
            return Err(rejected(format!(
                "peer {} has this node's own public key",
                spec.name
            )));
        }
        if let Some(other) = self.egress.peers.id_by_key(&spec.public_key) {
            if let Some(owner) = self.egress.peers.get(other).filter(|p| p.name != spec.name) {
                return Err(rejected(format!(
                    "peer {}: its public key is already the key of peer {}",
                    spec.name, owner.name
                )));
            }
        }
        match self.egress.peers.id_by_name(&spec.name) {
            Some(id) => self.update_peer(id, spec),
            None => self.add_peer(spec),
        }
    }

    fn tunnel(&mut self, id: PeerId, spec: &PeerSpec) -> Result<Tunnel, DataplaneError> {
        let index = self.egress.peers.next_index(id);
        Tunnel::new(&self.wg.key, spec.public_key, self.wg.keepalive, index)
            .map_err(|e| rejected(format!("peer {}: {e}", spec.name)))
    }

    fn add_peer(&mut self, spec: PeerSpec) -> Result<(), DataplaneError> {
        let id = self
            .egress
            .peers
            .free_id()
            .ok_or_else(|| rejected(format!("peer {}: too many peers", spec.name)))?;
        let tunnel = self.tunnel(id, &spec)?;
        self.switch
            .set_peer(id, &spec.allowed)
            .map_err(|e| rejected(format!("peer {}: {e}", spec.name)))?;
        let span = info_span!("peer", peer = %spec.name);
        info!(parent: &span, endpoint = ?spec.endpoint, allowed = ?spec.allowed, "peer added");
        let endpoint = spec.endpoint;
        self.egress.peers.insert(
            id,
            Peer {
                name: spec.name,
                public_key: spec.public_key,
                endpoint,
                configured_endpoint: endpoint,
                allowed: spec.allowed,
                tunnel,
                traffic: PeerTraffic::default(),
                expired: false,
                ready: spec.ready,
                unanswered: 0,
                unanswered_logged: None,
                span,
            },
        );
        // Handshake at once with a peer we can reach. After an agent restart
        // every peer is new here while the peers still hold sessions with
        // our previous incarnation: what they send on those is dropped
        // (wg_no_session) until a new handshake, and they would only start
        // one when their keepalive and rekey timers run out (~15 s).
        // Not toward a NotReady node: it answers when it comes back.
        if let Some(peer) = self.egress.peers.get_mut(id) {
            if peer.may_initiate() {
                peer.initiate(&mut self.egress.tx);
            }
        }
        Ok(())
    }

    fn update_peer(&mut self, id: PeerId, spec: PeerSpec) -> Result<(), DataplaneError> {
        let Some(current) = self.egress.peers.get(id) else {
            return Err(rejected(format!("peer {} vanished", spec.name)));
        };
        let rekey = current.public_key != spec.public_key;
        let reroute = current.allowed != spec.allowed;
        let tunnel = if rekey {
            Some(self.tunnel(id, &spec)?)
        } else {
            None
        };
        if reroute {
            self.switch
                .set_peer(id, &spec.allowed)
                .map_err(|e| rejected(format!("peer {}: {e}", spec.name)))?;
        }
        if let Some(tunnel) = tunnel {
            self.egress.peers.rekey(id, spec.public_key, tunnel);
        }
        let Some(peer) = self.egress.peers.get_mut(id) else {
            return Ok(());
        };
        if rekey {
            info!(parent: &peer.span, "peer has a new public key: new session");
        }
        if reroute {
            info!(parent: &peer.span, allowed = ?spec.allowed, "peer's allowed prefixes changed");
            peer.allowed = spec.allowed;
        }
        let mut handshake_now = false;
        if spec.ready != peer.ready {
            peer.ready = spec.ready;
            if spec.ready {
                info!(parent: &peer.span, "peer's node is Ready again: handshakes resume");
                handshake_now = true;
            } else {
                info!(parent: &peer.span, "peer's node is NotReady: no handshakes toward it until it is Ready (it may still start one)");
            }
            peer.unanswered = 0;
            peer.unanswered_logged = None;
        }
        // A configured endpoint applies when it changes; re-sending the same
        // one (a watch snapshot) does not undo roaming.
        if spec.endpoint != peer.configured_endpoint {
            peer.configured_endpoint = spec.endpoint;
            if let Some(endpoint) = spec.endpoint {
                info!(parent: &peer.span, from = ?peer.endpoint, to = %endpoint, "peer endpoint configured");
                peer.endpoint = Some(endpoint);
                // Without a session, a handshake may be waiting on the old
                // endpoint's retry timer (5 s): start one at the new one now.
                handshake_now = true;
            }
        }
        if handshake_now && peer.ready && peer.tunnel.last_handshake().is_none() {
            peer.initiate(&mut self.egress.tx);
        }
        Ok(())
    }

    /// Replaces the whole peer set.
    pub(super) fn set_peers(&mut self, specs: Vec<PeerSpec>) -> Result<(), DataplaneError> {
        let mut names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        names.sort_unstable();
        if let Some(pair) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(rejected(format!("peer {} is listed twice", pair[0])));
        }
        for name in self.egress.peers.names() {
            if !specs.iter().any(|s| s.name == name) {
                self.remove_peer(&name);
            }
        }
        // Prefixes may move between peers (a CIDR freed by one and leased
        // to another): retry what failed while anything succeeds.
        let mut pending = specs;
        loop {
            let before = pending.len();
            let mut failed = Vec::new();
            for spec in pending {
                if let Err(e) = self.set_peer(spec.clone()) {
                    failed.push((spec, e));
                }
            }
            if failed.is_empty() {
                return Ok(());
            }
            if failed.len() == before {
                let messages: Vec<String> = failed.iter().map(|(_, e)| e.to_string()).collect();
                return Err(rejected(messages.join("; ")));
            }
            pending = failed.into_iter().map(|(spec, _)| spec).collect();
        }
    }

    /// Removes a peer by name.
    pub(super) fn remove_peer(&mut self, name: &str) -> bool {
        let Some(id) = self.egress.peers.id_by_name(name) else {
            return false;
        };
        self.switch.remove_peer(id);
        if let Some(peer) = self.egress.peers.remove(id) {
            info!(parent: &peer.span, "peer removed");
        }
        true
    }

    /// Puts a compiled service table in force (see `crate::services`).
    pub(super) fn set_services(&mut self, table: Arc<ServiceTable>) -> Result<(), DataplaneError> {
        if self.switch.set_service_table(table) {
            Ok(())
        } else {
            Err(rejected("service translation is off in this data plane"))
        }
    }

    /// Puts a compiled policy table in force (see `crate::policy`).
    pub(super) fn set_policy(&mut self, table: Arc<PolicyTable>) -> Result<(), DataplaneError> {
        if self.switch.set_policy_table(table) {
            Ok(())
        } else {
            Err(rejected(
                "NetworkPolicy needs connection tracking, which is off in this data plane (--no-services)",
            ))
        }
    }

    /// The denied new connections the switch recorded since the last call.
    pub(super) fn take_denials(&mut self) -> Vec<Denial> {
        let mut out = Vec::new();
        self.switch.take_denials(&mut out);
        out
    }

    /// `packet` from pod port `port` through a clone of the switch, the
    /// outcome named (pods by id, peers by node name).
    pub(super) fn trace(&self, port: &str, packet: &[u8]) -> Result<TraceOutcome, DataplaneError> {
        let ports = &self.egress.links.ports;
        let id = ports
            .id_of(port)
            .ok_or_else(|| rejected(format!("no pod port {port} on this node")))?;
        let trace = self
            .switch
            .trace(Ingress::Port(id), packet, Instant::now())
            .ok_or_else(|| rejected("the probe packet does not parse"))?;
        let destination = match trace.action {
            Action::ToPort(p) => Some(format!(
                "pod {}",
                ports.get(p).map_or("(gone)", |p| p.id.as_str())
            )),
            Action::ToPeer(p) => Some(format!(
                "node {}",
                self.egress
                    .peers
                    .get(p)
                    .map_or("(gone)", |p| p.name.as_str())
            )),
            Action::ToHost => Some("this node (weft0)".to_string()),
            _ => None,
        };
        Ok(TraceOutcome { trace, destination })
    }

    /// A snapshot of peers, ports and counters.
    pub(super) fn status(&self) -> DataplaneStatus {
        let mut peers: Vec<PeerStatus> = self
            .egress
            .peers
            .iter()
            .map(|(_, p)| PeerStatus {
                name: p.name.clone(),
                public_key: p.public_key,
                endpoint: p.endpoint,
                allowed: p.allowed.clone(),
                last_handshake: p.tunnel.last_handshake(),
                rx_bytes: p.traffic.rx_bytes,
                tx_bytes: p.traffic.tx_bytes,
                rx_packets: p.traffic.rx_packets,
                tx_packets: p.traffic.tx_packets,
                ready: p.ready,
                queued_packets: p.traffic.queued_packets,
            })
            .collect();
        peers.sort_by(|a, b| a.name.cmp(&b.name));
        let mut ports: Vec<(String, Vec<IpAddr>)> = self
            .egress
            .links
            .ports
            .iter()
            .map(|(_, p)| (p.id.clone(), p.addresses.clone()))
            .collect();
        ports.sort();
        let counters: EngineCounters = self.counters();
        let switch = self.switch.counters();
        let drops = switch
            .drops()
            .map(|(reason, n)| (reason.as_str(), n))
            .chain(counters.named())
            .collect();
        DataplaneStatus {
            peers,
            ports,
            drops,
            forwarded_to_ports: counters.to_ports,
            forwarded_to_host: counters.to_host,
            forwarded_to_peers: counters.to_peers,
            offload: OffloadStatus {
                tun: self.egress.links.host.offload(),
                udp_gso: self.egress.tx.gso(),
                udp_gro: self.offloads.udp_gro,
                tun_super_packets_read: counters.super_read,
                tun_super_packets_written: counters.super_written,
                segments_coalesced: self.egress.gro.stats.merged,
                udp_gso_messages: self.egress.tx.stats.gso_messages,
                udp_gro_messages: counters.gro_messages,
            },
            services: self.switch.services_status(),
            policy: self.switch.policy_status(),
            dns: self.dns_status(),
        }
    }
}
