//! Which pods a policy selects and which pods or addresses a peer names.

use ipnet::IpNet;

use super::PolicyView;
use crate::types::network_policy::{IpBlock, NetworkPolicyPeer};
use crate::{NetworkPolicy, Pod};

/// A peer resolved against the cluster.
#[derive(Debug)]
pub(super) enum Peer<'a> {
    /// `podSelector` and/or `namespaceSelector`: these pods.
    Pods(Vec<&'a Pod>),
    /// `ipBlock`: `cidr` minus `except`.
    Block { cidr: IpNet, except: Vec<IpNet> },
    /// A peer that names nothing (an unparsable CIDR, no field set).
    Nothing,
}

impl<'a> PolicyView<'a> {
    /// Whether `policy` selects `pod`: same namespace, `podSelector`
    /// matching its labels.
    pub(super) fn selects(&self, policy: &NetworkPolicy, pod: &Pod) -> bool {
        pod.metadata.namespace == policy.metadata.namespace
            && policy.spec.pod_selector.matches(&pod.metadata.labels)
    }

    /// The pods `policy` selects.
    pub(super) fn selected(&self, policy: &NetworkPolicy) -> Vec<&'a Pod> {
        self.pods
            .iter()
            .filter(|p| self.selects(policy, p))
            .copied()
            .collect()
    }

    /// What `peer` of `policy` names.
    pub(super) fn peer(&self, policy: &NetworkPolicy, peer: &NetworkPolicyPeer) -> Peer<'a> {
        if let Some(block) = &peer.ip_block {
            return match parse_block(block) {
                Some((cidr, except)) => Peer::Block { cidr, except },
                None => Peer::Nothing,
            };
        }
        if peer.pod_selector.is_none() && peer.namespace_selector.is_none() {
            return Peer::Nothing;
        }
        let pods = self
            .pods
            .iter()
            .filter(|pod| self.peer_matches_pod(policy, peer, pod))
            .copied()
            .collect();
        Peer::Pods(pods)
    }

    /// Whether the selector peer `peer` of `policy` matches `pod`.
    fn peer_matches_pod(
        &self,
        policy: &NetworkPolicy,
        peer: &NetworkPolicyPeer,
        pod: &Pod,
    ) -> bool {
        let namespace_ok = match &peer.namespace_selector {
            // podSelector alone: the policy's own namespace.
            None => pod.metadata.namespace == policy.metadata.namespace,
            Some(sel) => sel.matches(self.namespace_labels(&pod.metadata.namespace).get()),
        };
        let pod_ok = peer
            .pod_selector
            .as_ref()
            .is_none_or(|sel| sel.matches(&pod.metadata.labels));
        namespace_ok && pod_ok
    }
}

impl Peer<'_> {
    /// Whether the peer matches `ip` (a pod's address, for explanations).
    pub(super) fn contains(&self, ip: std::net::IpAddr) -> bool {
        match self {
            Peer::Pods(pods) => pods.iter().any(|p| p.ips().contains(&ip)),
            Peer::Block { cidr, except } => {
                cidr.contains(&ip) && !except.iter().any(|e| e.contains(&ip))
            }
            Peer::Nothing => false,
        }
    }
}

/// The block's CIDR and excepts, host bits cleared (as Kubernetes' parser
/// reads them); `None` (the peer names nothing: fail closed) when the CIDR
/// or any except does not parse, which validation refuses at apply.
fn parse_block(block: &IpBlock) -> Option<(IpNet, Vec<IpNet>)> {
    let cidr = block.cidr.parse::<IpNet>().ok()?.trunc();
    let except = block
        .except
        .iter()
        .map(|e| e.parse::<IpNet>().ok().map(|e| e.trunc()))
        .collect::<Option<Vec<_>>>()?;
    Some((cidr, except))
}
