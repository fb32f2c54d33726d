//! What the agent hands [`ServiceTable::compile`](super::ServiceTable::compile):
//! plain descriptions of Services and their EndpointSlices, with every
//! name already resolved (target ports per endpoint, which endpoints are
//! on this node). Nothing here is validated beyond what the table needs;
//! the control plane validates objects as the API server does.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

pub use crate::policy::Protocol;

/// The label whose presence hands a Service to another proxy
/// (`service.kubernetes.io/service-proxy-name`): not translated here, as
/// kube-proxy skips it.
pub const LABEL_SERVICE_PROXY_NAME: &str = "service.kubernetes.io/service-proxy-name";
/// The label that marks a Service headless (`service.kubernetes.io/headless`):
/// not translated.
pub const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";

/// Kubernetes' default `sessionAffinityConfig.clientIP.timeoutSeconds`.
pub const DEFAULT_AFFINITY_TIMEOUT: Duration = Duration::from_secs(10_800);

/// `externalTrafficPolicy` / `internalTrafficPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrafficPolicy {
    /// Any ready endpoint in the cluster.
    #[default]
    Cluster,
    /// Only endpoints on this node.
    Local,
}

/// `sessionAffinity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SessionAffinity {
    /// A new endpoint per connection.
    #[default]
    None,
    /// The same endpoint for a client address until `timeout` passes
    /// without a new connection from it.
    ClientIp {
        /// `sessionAffinityConfig.clientIP.timeoutSeconds`.
        timeout: Duration,
    },
}

/// One entry of `spec.ports`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// The port's name (may be empty when the Service has one port); the
    /// endpoints' ports are matched by it.
    pub name: String,
    pub protocol: Protocol,
    /// The port on the cluster IP, external IPs and load-balancer IPs.
    pub port: u16,
    /// `nodePort`, for NodePort and LoadBalancer Services.
    pub node_port: Option<u16>,
}

/// A port of an endpoint (an EndpointSlice's `ports` entry: the
/// Service port's name and the resolved target port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointPort {
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
}

/// One endpoint (an address of an EndpointSlice endpoint) with its
/// conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSpec {
    pub address: IpAddr,
    /// `conditions.ready`.
    pub ready: bool,
    /// `conditions.serving`.
    pub serving: bool,
    /// `conditions.terminating`.
    pub terminating: bool,
    /// Whether the endpoint's `nodeName` is this node.
    pub local: bool,
    pub ports: Vec<EndpointPort>,
}

/// One Service with its endpoints, as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceSpec {
    pub namespace: String,
    pub name: String,
    /// The Service's labels (only [`LABEL_SERVICE_PROXY_NAME`] and
    /// [`LABEL_HEADLESS`] matter here).
    pub labels: BTreeMap<String, String>,
    /// `spec.clusterIPs`; empty for a headless (`None`) or ExternalName
    /// Service, which get no translation.
    pub cluster_ips: Vec<IpAddr>,
    /// `spec.externalIPs`.
    pub external_ips: Vec<IpAddr>,
    /// `status.loadBalancer.ingress[].ip`.
    pub load_balancer_ips: Vec<IpAddr>,
    pub ports: Vec<ServicePort>,
    pub session_affinity: SessionAffinity,
    pub external_traffic_policy: TrafficPolicy,
    pub internal_traffic_policy: TrafficPolicy,
    /// `spec.healthCheckNodePort` (LoadBalancer with
    /// `externalTrafficPolicy: Local`).
    pub health_check_node_port: Option<u16>,
    pub endpoints: Vec<EndpointSpec>,
}

impl ServiceSpec {
    /// `namespace/name`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Whether weft proxies this Service at all: not when another proxy
    /// owns it or it is labelled headless (kube-proxy's own label
    /// selector), nor without a cluster IP.
    pub fn is_proxied(&self) -> bool {
        !self.labels.contains_key(LABEL_SERVICE_PROXY_NAME)
            && !self.labels.contains_key(LABEL_HEADLESS)
            && !self.cluster_ips.is_empty()
    }
}

impl Default for EndpointSpec {
    fn default() -> Self {
        Self {
            address: IpAddr::from([0, 0, 0, 0]),
            ready: true,
            serving: true,
            terminating: false,
            local: false,
            ports: Vec::new(),
        }
    }
}
