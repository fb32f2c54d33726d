//! NetworkPolicy semantics over the cluster's objects (networking.k8s.io/v1,
//! as the upstream e2e suite `test/e2e/network/netpol` checks them): which
//! policies select which pod, which pods and addresses each peer names,
//! named ports resolved per pod; the result handed to the packet path as
//! `weft_switch::policy::PolicySpec`s, and explained for `weftctl explain`.
//!
//! Contract:
//! - Pure and total: no IO, no clock, never panics. Objects that validation
//!   would refuse (an unparsable CIDR, an out-of-range port, an unknown
//!   protocol) match nothing rather than erroring: the control plane
//!   refuses them at apply, and an agent must not stop enforcing the rest.
//! - Semantics:
//!   - a policy selects the pods of ITS namespace its `podSelector` matches
//!     (`{}`: all of them); it isolates them for each of its effective
//!     `policyTypes` ([`NetworkPolicy::effective_policy_types`]: as given,
//!     else `Ingress`, plus `Egress` when there are egress rules);
//!   - an isolated pod allows the union of the rules of every policy that
//!     selects it; no rules deny all; a rule without `from`/`to` allows
//!     every peer, without `ports` every port and protocol;
//!   - peers: `podSelector` alone, pods of the policy's namespace;
//!     `namespaceSelector` alone, every pod of the matching namespaces;
//!     both, pods matching both (AND); `ipBlock`, addresses in `cidr` and
//!     in none of `except`, pod addresses included;
//!   - ports: protocol TCP when absent, UDP, SCTP (refused at apply, so
//!     never enforced); a number, a number to `endPort`, a protocol without
//!     a port (every port of it), or a named port: resolved on the local
//!     pod for ingress and on each destination pod for egress, matching the
//!     container port's name AND protocol; a name a pod lacks matches
//!     nothing on that pod.
//!   - pods without an address or in a terminal phase (Succeeded, Failed)
//!     are neither selected nor peers: they have no network.
//! - Rule indices are kept: rule `i` of a [`PolicySpec`]'s ingress (egress)
//!   list is `spec.ingress[i]` (`spec.egress[i]`) of the policy, so a
//!   `RuleRef` names a field path of the stored object. Policies are
//!   ordered by `namespace/name`.
//!
//! Files: `mod.rs` ([`PolicyView`]), `select.rs` (which pods a selector or
//! peer names), `ports.rs` (port resolution), `specs.rs` (PolicySpecs for a
//! node's pods), `explain.rs` (one connection, both directions),
//! `conformance/` (the upstream model and the scenario format).

mod explain;
mod ports;
mod select;
mod specs;

#[cfg(test)]
mod tests;

/// The upstream NetworkPolicy model and the scenario format, for this
/// crate's truth-table tests and the lab suite (weftctl/tests/lab_netpol)
/// that replays the scenarios. Always built (no feature): a feature only
/// tests turn on would make `cargo test` and `cargo build` link different
/// binaries, and the lab's and the image's builds would keep relinking.
pub mod conformance;

use std::collections::BTreeMap;
use std::net::IpAddr;

pub use explain::{Decision, DirectionExplanation, ExplainError, Explanation, Target};
/// The protocol of explained connections and `PortRange`s.
pub use weft_switch::policy::Protocol;

use crate::types::namespace::LABEL_METADATA_NAME;
use crate::{Namespace, NetworkPolicy, Pod};

/// The cluster's namespaces, pods and policies, indexed for policy
/// resolution. Borrowed: build one per change of the objects (cheap: one
/// pass, no clones of the objects).
#[derive(Debug)]
pub struct PolicyView<'a> {
    /// Namespace name -> labels.
    namespaces: BTreeMap<&'a str, &'a BTreeMap<String, String>>,
    /// Pods with at least one address and not terminal, ordered by
    /// namespace/name.
    pods: Vec<&'a Pod>,
    /// Policies ordered by namespace/name.
    policies: Vec<&'a NetworkPolicy>,
    /// (namespace, name) of the pods left out, for precise explanations.
    absent: Vec<(&'a str, &'a str)>,
}

impl<'a> PolicyView<'a> {
    /// Indexes the objects. Pods without an address or in a terminal phase
    /// are left out (see the module docs).
    pub fn new(
        namespaces: impl IntoIterator<Item = &'a Namespace>,
        pods: impl IntoIterator<Item = &'a Pod>,
        policies: impl IntoIterator<Item = &'a NetworkPolicy>,
    ) -> Self {
        let namespaces = namespaces
            .into_iter()
            .map(|n| (n.metadata.name.as_str(), &n.metadata.labels))
            .collect();
        let (mut pods, left_out): (Vec<&Pod>, Vec<&Pod>) = pods
            .into_iter()
            .partition(|p| !p.is_terminal() && !p.ips().is_empty());
        let absent = left_out
            .iter()
            .map(|p| (p.metadata.namespace.as_str(), p.metadata.name.as_str()))
            .collect();
        pods.sort_by(|a, b| key(&a.metadata).cmp(&key(&b.metadata)));
        let mut policies: Vec<&NetworkPolicy> = policies.into_iter().collect();
        policies.sort_by(|a, b| key(&a.metadata).cmp(&key(&b.metadata)));
        PolicyView {
            namespaces,
            pods,
            policies,
            absent,
        }
    }

    /// The policies, in the order their `PolicySpec`s are produced.
    pub fn policies(&self) -> &[&'a NetworkPolicy] {
        &self.policies
    }

    /// The pods that take part (addressed, not terminal), by namespace/name.
    pub fn pods(&self) -> &[&'a Pod] {
        &self.pods
    }

    /// The pod `namespace/name`, if it takes part.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<&'a Pod> {
        self.pods
            .iter()
            .find(|p| p.metadata.namespace == namespace && p.metadata.name == name)
            .copied()
    }

    /// The pod with address `ip`, if one takes part.
    pub fn pod_by_ip(&self, ip: IpAddr) -> Option<&'a Pod> {
        self.pods.iter().find(|p| p.ips().contains(&ip)).copied()
    }

    /// Whether the namespace `name` is known.
    pub fn has_namespace(&self, name: &str) -> bool {
        self.namespaces.contains_key(name)
    }

    /// A namespace's labels as `namespaceSelector`s see them. A namespace
    /// the view does not hold (a pod seen before its namespace) has only
    /// `kubernetes.io/metadata.name`, which Kubernetes always sets.
    fn namespace_labels(&self, name: &str) -> NamespaceLabels<'a> {
        match self.namespaces.get(name) {
            Some(labels) => NamespaceLabels::Known(labels),
            None => NamespaceLabels::Implicit(
                [(LABEL_METADATA_NAME.to_string(), name.to_string())].into(),
            ),
        }
    }
}

/// A namespace's labels, borrowed or implied.
enum NamespaceLabels<'a> {
    Known(&'a BTreeMap<String, String>),
    Implicit(BTreeMap<String, String>),
}

impl NamespaceLabels<'_> {
    fn get(&self) -> &BTreeMap<String, String> {
        match self {
            Self::Known(l) => l,
            Self::Implicit(l) => l,
        }
    }
}

/// Reads `PORT/PROTOCOL` (`80/TCP`, `53/udp`; `80` alone is TCP), the
/// form `weftctl explain --port` and the conformance probes take.
pub fn parse_port(text: &str) -> Result<(u16, Protocol), String> {
    let (port, protocol) = text.split_once('/').unwrap_or((text, "TCP"));
    let port = port.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
        format!("{text:?}: the port must be a number from 1 to 65535, as in 80/TCP")
    })?;
    let protocol = match protocol.to_ascii_uppercase().as_str() {
        "TCP" => Protocol::Tcp,
        "UDP" => Protocol::Udp,
        "SCTP" => {
            return Err(format!(
                "{text:?}: weft does not support SCTP (TCP and UDP only)"
            ))
        }
        _ => {
            return Err(format!(
                "{text:?}: the protocol must be TCP or UDP, as in 80/TCP"
            ))
        }
    };
    Ok((port, protocol))
}

/// `namespace/name` of an object, the name policies are known by.
pub fn qualified_name(meta: &crate::ObjectMeta) -> String {
    format!("{}/{}", meta.namespace, meta.name)
}

fn key(meta: &crate::ObjectMeta) -> (&str, &str) {
    (meta.namespace.as_str(), meta.name.as_str())
}
