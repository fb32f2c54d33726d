//! `Service` (v1).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::meta::ObjectMeta;
use crate::values::{
    IntOrString, IpFamily, IpFamilyPolicy, LoadBalancerIpMode, Protocol, Refused, ServiceType,
    SessionAffinity, TrafficPolicy,
};

fn is_zero(v: &i32) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}

/// `clusterIP: None`: a headless Service.
pub const CLUSTER_IP_NONE: &str = "None";
/// The longest `sessionAffinityConfig.clientIP.timeoutSeconds` (one day).
pub const MAX_CLIENT_IP_AFFINITY_SECONDS: i32 = 86400;
/// The default `sessionAffinityConfig.clientIP.timeoutSeconds` (three hours).
pub const DEFAULT_CLIENT_IP_AFFINITY_SECONDS: i32 = 10800;

/// A Service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    /// Always `v1`.
    #[serde(default)]
    pub api_version: String,
    /// Always `Service`.
    #[serde(default)]
    pub kind: String,
    /// Name (a DNS-1035 label), namespace, labels.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// What the Service serves and how.
    #[serde(default)]
    pub spec: ServiceSpec,
    /// `loadBalancer.ingress` for LoadBalancer Services.
    #[serde(default)]
    pub status: ServiceStatus,
}

/// `spec` of a Service.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// The ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ServicePort>,
    /// Pods with all these labels are the endpoints; empty: no endpoints are
    /// derived (endpoints are managed by hand).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: BTreeMap<String, String>,
    /// The virtual IP, `None` (headless), or empty (to be allocated).
    #[serde(
        rename = "clusterIP",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub cluster_ip: String,
    /// `clusterIP` and, when dual-stack, the other family's address.
    #[serde(rename = "clusterIPs", default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_ips: Vec<String>,
    /// ClusterIP (default), NodePort, LoadBalancer, ExternalName.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub service_type: Option<ServiceType>,
    /// Extra addresses on which the Service's ports answer.
    #[serde(rename = "externalIPs", default, skip_serializing_if = "Vec::is_empty")]
    pub external_ips: Vec<String>,
    /// None (default) or ClientIP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity: Option<SessionAffinity>,
    /// Deprecated in Kubernetes; kept as given.
    #[serde(
        rename = "loadBalancerIP",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub load_balancer_ip: String,
    /// The DNS name an ExternalName Service is an alias of.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub external_name: String,
    /// Cluster (default for NodePort/LoadBalancer/externalIPs) or Local.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_traffic_policy: Option<TrafficPolicy>,
    /// For LoadBalancer with `externalTrafficPolicy: Local`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub health_check_node_port: i32,
    /// Endpoints are ready even when their pods are not.
    #[serde(default, skip_serializing_if = "is_false")]
    pub publish_not_ready_addresses: bool,
    /// ClientIP affinity settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity_config: Option<SessionAffinityConfig>,
    /// IPv4 and/or IPv6, in the order of `clusterIPs`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_families: Vec<IpFamily>,
    /// SingleStack, PreferDualStack, RequireDualStack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_family_policy: Option<IpFamilyPolicy>,
    /// LoadBalancer only; defaults to true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocate_load_balancer_node_ports: Option<bool>,
    /// Cluster (default) or Local.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_traffic_policy: Option<TrafficPolicy>,

    /// Refused: weft does not filter LoadBalancer sources.
    #[serde(default, skip_serializing)]
    pub load_balancer_source_ranges: Option<Refused>,
    /// Refused: weft is the only load-balancer implementation.
    #[serde(default, skip_serializing)]
    pub load_balancer_class: Option<Refused>,
    /// Refused: weft does not prefer close endpoints.
    #[serde(default, skip_serializing)]
    pub traffic_distribution: Option<Refused>,
}

/// One port of a Service.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    /// Required when the Service has more than one port (a DNS-1123 label).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// TCP (default) or UDP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// The application protocol (a label key, e.g. `http`, `kubernetes.io/h2c`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
    /// The Service's port.
    #[serde(default)]
    pub port: i32,
    /// The pods' port: a number, or a container port name; defaults to `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<IntOrString>,
    /// The node port (NodePort/LoadBalancer), allocated when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub node_port: i32,
}

/// `spec.sessionAffinityConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionAffinityConfig {
    /// ClientIP settings.
    #[serde(rename = "clientIP", default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<ClientIpConfig>,
}

/// `spec.sessionAffinityConfig.clientIP`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientIpConfig {
    /// How long a client sticks to its endpoint (1..=86400, default 10800).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i32>,
}

/// `status` of a Service.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    /// Printed as `loadBalancer: {}` when empty, as Kubernetes does.
    #[serde(default)]
    pub load_balancer: LoadBalancerStatus,
}

/// `status.loadBalancer`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerStatus {
    /// The addresses the LoadBalancer answers on (weft: the nodes').
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<LoadBalancerIngress>,
}

/// One `status.loadBalancer.ingress` entry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerIngress {
    /// An address.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ip: String,
    /// Or a DNS name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    /// VIP (default when `ip` is set) or Proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_mode: Option<LoadBalancerIpMode>,
}

impl Service {
    /// `v1`.
    pub const API_VERSION: &'static str = "v1";
    /// `Service`.
    pub const KIND: &'static str = "Service";

    /// A Service with this namespace and name.
    pub fn new(namespace: &str, name: &str) -> Self {
        Service {
            metadata: ObjectMeta::named(namespace, name),
            ..Default::default()
        }
    }

    /// `spec.type`, ClusterIP when unset.
    pub fn service_type(&self) -> ServiceType {
        match &self.spec.service_type {
            Some(t) if !t.is_empty() => t.clone(),
            _ => ServiceType::ClusterIp,
        }
    }

    /// `clusterIP: None` (Kubernetes' `isHeadlessService` also requires
    /// `clusterIPs` to be exactly `["None"]`; after defaulting both agree).
    pub fn is_headless(&self) -> bool {
        self.spec.cluster_ip == CLUSTER_IP_NONE
    }

    /// Kubernetes' `IsServiceIPSet`: a real ClusterIP (not empty, not None).
    pub fn has_cluster_ip(&self) -> bool {
        !self.spec.cluster_ip.is_empty() && !self.is_headless()
    }

    /// Kubernetes' `ExternallyAccessible`: NodePort, LoadBalancer, or
    /// ClusterIP with external IPs.
    pub fn externally_accessible(&self) -> bool {
        match self.service_type() {
            ServiceType::NodePort | ServiceType::LoadBalancer => true,
            ServiceType::ClusterIp => !self.spec.external_ips.is_empty(),
            _ => false,
        }
    }

    /// Kubernetes' `NeedsHealthCheck`: LoadBalancer with
    /// `externalTrafficPolicy: Local`.
    pub fn needs_health_check(&self) -> bool {
        self.service_type() == ServiceType::LoadBalancer
            && self.spec.external_traffic_policy == Some(TrafficPolicy::Local)
    }

    /// Whether node ports are allocated: NodePort, or LoadBalancer unless
    /// `allocateLoadBalancerNodePorts: false`.
    pub fn needs_node_ports(&self) -> bool {
        match self.service_type() {
            ServiceType::NodePort => true,
            ServiceType::LoadBalancer => self.spec.allocate_load_balancer_node_ports != Some(false),
            _ => false,
        }
    }

    /// Whether endpoints are derived from pods (the selector is not empty).
    pub fn has_selector(&self) -> bool {
        !self.spec.selector.is_empty()
    }

    /// The ClientIP affinity timeout when `sessionAffinity: ClientIP`.
    pub fn client_ip_affinity_seconds(&self) -> Option<i32> {
        if self.spec.session_affinity != Some(SessionAffinity::ClientIp) {
            return None;
        }
        let configured = self
            .spec
            .session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref());
        Some(
            configured
                .and_then(|c| c.timeout_seconds)
                .unwrap_or(DEFAULT_CLIENT_IP_AFFINITY_SECONDS),
        )
    }
}

impl ServicePort {
    /// `protocol`, TCP when unset.
    pub fn protocol(&self) -> Protocol {
        match &self.protocol {
            Some(p) if !p.is_empty() => p.clone(),
            _ => Protocol::Tcp,
        }
    }
}

impl Default for Service {
    fn default() -> Self {
        Service {
            api_version: Self::API_VERSION.into(),
            kind: Self::KIND.into(),
            metadata: ObjectMeta::default(),
            spec: ServiceSpec::default(),
            status: ServiceStatus::default(),
        }
    }
}
