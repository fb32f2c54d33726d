//! `NetworkPolicy` (networking.k8s.io/v1), the whole spec.

use serde::{Deserialize, Serialize};

use crate::meta::ObjectMeta;
use crate::selector::LabelSelector;
use crate::values::{IntOrString, PolicyType, Protocol};

/// A NetworkPolicy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicy {
    /// Always `networking.k8s.io/v1`.
    #[serde(default)]
    pub api_version: String,
    /// Always `NetworkPolicy`.
    #[serde(default)]
    pub kind: String,
    /// Name (a DNS-1123 subdomain), namespace, labels.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Which pods, which directions, which peers and ports.
    #[serde(default)]
    pub spec: NetworkPolicySpec,
}

/// `spec` of a NetworkPolicy.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// The pods of the namespace this policy isolates; `{}` selects all.
    #[serde(default)]
    pub pod_selector: LabelSelector,
    /// Allowed incoming traffic; empty (with Ingress in `policyTypes`): none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<NetworkPolicyIngressRule>,
    /// Allowed outgoing traffic; empty (with Egress in `policyTypes`): none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<NetworkPolicyEgressRule>,
    /// Ingress and/or Egress; defaulted to `[Ingress]`, plus Egress when
    /// there are egress rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_types: Vec<PolicyType>,
}

/// An ingress rule: traffic from any of `from` to any of `ports`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicyIngressRule {
    /// Empty: every port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<NetworkPolicyPort>,
    /// Empty: every source.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<NetworkPolicyPeer>,
}

/// An egress rule: traffic to any of `to` on any of `ports`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicyEgressRule {
    /// Empty: every port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<NetworkPolicyPort>,
    /// Empty: every destination.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<NetworkPolicyPeer>,
}

/// A port (or port range) of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicyPort {
    /// TCP (default) or UDP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// A number or a named container port; absent: every port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<IntOrString>,
    /// With a numeric `port`, the last port of the range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_port: Option<i32>,
}

/// A peer: pods (of this or selected namespaces) or an address block.
/// `podSelector` and `namespaceSelector` together mean both must match.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicyPeer {
    /// Pods with these labels (in this namespace, or in the namespaces of
    /// `namespaceSelector`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    /// Namespaces with these labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Addresses in `cidr` but in none of `except`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_block: Option<IpBlock>,
}

/// `ipBlock`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpBlock {
    /// The block.
    #[serde(default)]
    pub cidr: String,
    /// Sub-blocks taken out (each strictly inside `cidr`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<String>,
}

impl NetworkPolicy {
    /// `networking.k8s.io/v1`.
    pub const API_VERSION: &'static str = "networking.k8s.io/v1";
    /// `NetworkPolicy`.
    pub const KIND: &'static str = "NetworkPolicy";

    /// A policy with this namespace and name (selecting every pod, no rules).
    pub fn new(namespace: &str, name: &str) -> Self {
        NetworkPolicy {
            metadata: ObjectMeta::named(namespace, name),
            ..Default::default()
        }
    }

    /// The effective policy types: `policyTypes`, or (when empty) the
    /// default Kubernetes applies.
    pub fn effective_policy_types(&self) -> Vec<PolicyType> {
        if !self.spec.policy_types.is_empty() {
            return self.spec.policy_types.clone();
        }
        let mut types = vec![PolicyType::Ingress];
        if !self.spec.egress.is_empty() {
            types.push(PolicyType::Egress);
        }
        types
    }
}

impl Default for NetworkPolicy {
    fn default() -> Self {
        NetworkPolicy {
            api_version: Self::API_VERSION.into(),
            kind: Self::KIND.into(),
            metadata: ObjectMeta::default(),
            spec: NetworkPolicySpec::default(),
        }
    }
}
