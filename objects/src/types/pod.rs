//! `Pod` (v1), reduced to what weft's networking needs.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::meta::ObjectMeta;
use crate::values::{ConditionStatus, PodPhase, Protocol};

/// A pod as weft knows it: registered by the agent that attached it, with
/// its labels, node, hostname/subdomain (for headless-Service DNS), named
/// container ports, addresses and readiness. Container images, volumes and
/// the rest of Kubernetes' PodSpec are not part of weft's model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pod {
    /// Always `v1`.
    #[serde(default)]
    pub api_version: String,
    /// Always `Pod`.
    #[serde(default)]
    pub kind: String,
    /// Name, namespace, labels.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Node, hostname, containers and their ports.
    #[serde(default)]
    pub spec: PodSpec,
    /// Phase, addresses, conditions.
    #[serde(default)]
    pub status: PodStatus,
}

/// `spec` of a Pod.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    /// The node the pod runs on.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_name: String,
    /// The pod's hostname (a DNS-1123 label).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    /// With `hostname`, names the pod `<hostname>.<subdomain>.<ns>.svc` when a
    /// headless Service named `<subdomain>` selects it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subdomain: String,
    /// Containers, for their named ports. May be empty for pods registered
    /// without port information (weft does not require containers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<Container>,
}

/// A container of a Pod: only its name and ports.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    /// The container's name (a DNS-1123 label, unique in the pod).
    #[serde(default)]
    pub name: String,
    /// The ports it serves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ContainerPort>,
}

/// A container port.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    /// The port's name (IANA_SVC_NAME), looked up by named `targetPort`s and
    /// named NetworkPolicy ports.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The port number.
    #[serde(default)]
    pub container_port: i32,
    /// `TCP` (the default) or `UDP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
}

/// `status` of a Pod.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    /// Pending, Running, Succeeded, Failed, Unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<PodPhase>,
    /// The primary address (equal to `podIPs[0].ip`).
    #[serde(rename = "podIP", default, skip_serializing_if = "String::is_empty")]
    pub pod_ip: String,
    /// All addresses, at most one per family.
    #[serde(rename = "podIPs", default, skip_serializing_if = "Vec::is_empty")]
    pub pod_ips: Vec<PodIp>,
    /// Conditions; weft uses `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<PodCondition>,
}

/// One entry of `status.podIPs`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PodIp {
    /// The address.
    #[serde(default)]
    pub ip: String,
}

/// A pod condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodCondition {
    /// `Ready` (others are kept as given).
    #[serde(rename = "type")]
    pub condition_type: String,
    /// True, False, Unknown.
    pub status: ConditionStatus,
    /// RFC 3339 time of the last change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

/// The condition type that makes a pod an endpoint.
pub const CONDITION_READY: &str = "Ready";

impl Pod {
    /// `v1`.
    pub const API_VERSION: &'static str = "v1";
    /// `Pod`.
    pub const KIND: &'static str = "Pod";

    /// A pod with this namespace and name.
    pub fn new(namespace: &str, name: &str) -> Self {
        Pod {
            metadata: ObjectMeta::named(namespace, name),
            ..Default::default()
        }
    }

    /// Kubernetes' `IsPodReady`: a `Ready` condition with status `True`.
    pub fn is_ready(&self) -> bool {
        self.status
            .conditions
            .iter()
            .any(|c| c.condition_type == CONDITION_READY && c.status == ConditionStatus::True)
    }

    /// Sets the `Ready` condition (adding it if missing).
    pub fn set_ready(&mut self, ready: bool, now_rfc3339: Option<String>) {
        let status = if ready {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        };
        match self
            .status
            .conditions
            .iter_mut()
            .find(|c| c.condition_type == CONDITION_READY)
        {
            Some(c) => {
                if c.status != status {
                    c.status = status;
                    c.last_transition_time = now_rfc3339;
                }
            }
            None => self.status.conditions.push(PodCondition {
                condition_type: CONDITION_READY.into(),
                status,
                last_transition_time: now_rfc3339,
            }),
        }
    }

    /// The pod's addresses: `podIPs`, or `podIP` alone when `podIPs` is
    /// empty; unparsable entries skipped.
    pub fn ips(&self) -> Vec<IpAddr> {
        if self.status.pod_ips.is_empty() {
            return self.status.pod_ip.parse().into_iter().collect();
        }
        self.status
            .pod_ips
            .iter()
            .filter_map(|p| p.ip.parse().ok())
            .collect()
    }

    /// Whether the phase is Succeeded or Failed (the pod will not run again).
    pub fn is_terminal(&self) -> bool {
        matches!(
            self.status.phase,
            Some(PodPhase::Succeeded | PodPhase::Failed)
        )
    }

    /// The number of the container port named `name` with `protocol`
    /// (Kubernetes' `FindPort` for a named target port).
    pub fn find_named_port(&self, name: &str, protocol: &Protocol) -> Option<i32> {
        self.spec
            .containers
            .iter()
            .flat_map(|c| c.ports.iter())
            .find_map(|p| {
                let proto = p.protocol.clone().unwrap_or(Protocol::Tcp);
                (p.name == name && &proto == protocol).then_some(p.container_port)
            })
    }
}

impl Default for Pod {
    fn default() -> Self {
        Pod {
            api_version: Self::API_VERSION.into(),
            kind: Self::KIND.into(),
            metadata: ObjectMeta::default(),
            spec: PodSpec::default(),
            status: PodStatus::default(),
        }
    }
}
