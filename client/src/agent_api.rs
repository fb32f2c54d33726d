//! The node agent's local API (a unix socket, root only): the messages and a
//! client, shared by the agent, `weftctl` and `weft-cni`.
//!
//! STATUS: interface stub; the protocol and client are being written.

use serde::{Deserialize, Serialize};

/// What the agent knows about its node and its link to the control plane.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    pub node_id: u64,
    /// This node's pod CIDR, e.g. "10.244.3.0/24".
    pub pod_cidr: String,
    /// This node's own overlay address (on weft0), e.g. "10.244.3.1".
    pub node_address: String,
    pub cluster_cidr: String,
    pub service_cidr: String,
    pub cluster_dns: String,
    pub cluster_domain: String,
    /// The overlay MTU pods get.
    pub mtu: u32,
    /// The WireGuard UDP port this node listens on.
    pub listen_port: u16,
    /// The control plane's address.
    pub control_plane: String,
    /// Whether the watch stream to the control plane is up right now.
    pub control_plane_connected: bool,
    /// The last store revision seen on the watch.
    pub watch_revision: u64,
    /// The last control-plane error, if the link is down.
    pub last_error: Option<String>,
}
