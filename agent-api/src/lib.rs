//! The node agent's local API (a unix socket, root only): the messages and a
//! client, shared by the agent, `weftctl` and `weft-cni`.
//!
//! Protocol (documented for people in `docs/agent-api.md`):
//! - A unix stream socket, [`DEFAULT_SOCKET`] unless configured, mode 0600.
//! - Newline-delimited JSON: the client writes one [`Request`] object on one
//!   line, the agent answers with one [`Response`] object on one line, in
//!   order. A connection may carry any number of requests.
//! - A request is an object with an `"op"` field (`ping`, `status`,
//!   `pod_add`, `pod_get`, `pod_del`, `pod_list`) and that op's fields; unknown
//!   fields are refused, so a typo never goes unnoticed.
//! - A response is `{"ok":true,"result":{...}}` or
//!   `{"ok":false,"error":{"code":"...","message":"..."}}`, the code one of
//!   [`ErrorCode`].
//! - A request line is at most [`MAX_REQUEST_BYTES`]; a longer one is answered
//!   with an `invalid` error and the connection is closed.
//!
//! [`AgentClient`] (blocking, for `weft-cni`) and [`AsyncAgentClient`]
//! (tokio, for `weftctl`) speak it; [`Request::parse`] is the one parser the
//! agent uses, so both sides agree on every message.

#![forbid(unsafe_code)]

mod client;
mod dns;
mod pod_meta;
mod wire;

pub use client::{AgentApiError, AgentClient, AsyncAgentClient};
pub use dns::{DnsInfo, LatencyBucket, NamedCount};
pub use pod_meta::{
    parse_label, validate_pod_meta, NamedPort, DEFAULT_POD_NAMESPACE, MAX_LABELS, MAX_PORTS,
    PORT_PROTOCOLS,
};
pub use wire::{
    ClusterViewInfo, DataplaneInfo, DropCount, ErrorBody, ErrorCode, OffloadInfo, PeerInfo, Pod,
    PodAddRequest, PodDelResult, PodList, PodRegistration, PodResult, PolicyCount, PolicyInfo,
    PongResult, PortInfo, RegistrationInfo, RegistrationProblem, RegistrationState, Request,
    Response, ServicesInfo, StatusResult, TraceRequest, TraceResult, TraceStep, DEFAULT_IFNAME,
    DEFAULT_SOCKET, MAX_REQUEST_BYTES, OPS,
};

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
