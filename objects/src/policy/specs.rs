//! The `PolicySpec`s of a node's pods: what the agent compiles with
//! `weft_switch::policy::PolicyTable::compile`.

use std::net::IpAddr;

use ipnet::IpNet;
use weft_switch::policy::{PeerSpec, PolicySpec, RuleSpec};

use super::ports::RulePorts;
use super::select::Peer;
use super::{qualified_name, PolicyView};
use crate::types::network_policy::NetworkPolicyPeer;
use crate::values::PolicyType;
use crate::{NetworkPolicy, Pod};

impl<'a> PolicyView<'a> {
    /// The specs for the pods running on node `node` (`spec.nodeName`).
    pub fn specs_for_node(&self, node: &str) -> Vec<PolicySpec> {
        self.specs(|pod| pod.spec.node_name == node)
    }

    /// The specs for the pods `is_local` accepts: one per policy that
    /// selects at least one of them, in [`PolicyView::policies`] order, each
    /// listing only those pods. Rule `i` of a spec is rule `i` of the
    /// policy's `spec.ingress` / `spec.egress`.
    pub fn specs(&self, is_local: impl Fn(&Pod) -> bool) -> Vec<PolicySpec> {
        let mut out = Vec::new();
        for policy in &self.policies {
            let local: Vec<&Pod> = self
                .selected(policy)
                .into_iter()
                .filter(|p| is_local(p))
                .collect();
            if local.is_empty() {
                continue;
            }
            out.push(self.spec(policy, &local));
        }
        out
    }

    /// One policy's spec for the selected local pods `local`.
    pub(super) fn spec(&self, policy: &NetworkPolicy, local: &[&Pod]) -> PolicySpec {
        let types = policy.effective_policy_types();
        let ingress = types.contains(&PolicyType::Ingress).then(|| {
            let rules: Vec<(RulePorts, Option<Vec<PeerSpec>>)> = policy
                .spec
                .ingress
                .iter()
                .map(|r| (RulePorts::new(&r.ports), self.plain_peers(policy, &r.from)))
                .collect();
            // Named ports resolve on the local pod: one rule list per pod.
            let mut per_pod = Vec::new();
            for pod in local {
                let resolved: Vec<RuleSpec> = rules
                    .iter()
                    .map(|(ports, peers)| RuleSpec {
                        peers: peers.clone(),
                        ports: ports.on_pod(pod),
                    })
                    .collect();
                for ip in pod.ips() {
                    per_pod.push((ip, resolved.clone()));
                }
            }
            per_pod
        });
        let egress = types.contains(&PolicyType::Egress).then(|| {
            let pods: Vec<IpAddr> = local.iter().flat_map(|p| p.ips()).collect();
            let rules = policy
                .spec
                .egress
                .iter()
                .map(|r| self.egress_rule(policy, &r.to, &RulePorts::new(&r.ports)))
                .collect();
            (pods, rules)
        });
        PolicySpec {
            name: qualified_name(&policy.metadata),
            ingress,
            egress,
        }
    }

    /// Peers sharing the rule's ports (ingress, or egress without named
    /// ports); `None` for an empty list (every peer).
    fn plain_peers(
        &self,
        policy: &NetworkPolicy,
        peers: &[NetworkPolicyPeer],
    ) -> Option<Vec<PeerSpec>> {
        if peers.is_empty() {
            return None;
        }
        let mut out = Vec::new();
        for peer in peers {
            match self.peer(policy, peer) {
                Peer::Pods(pods) => {
                    out.extend(pods.iter().flat_map(|p| p.ips()).map(|ip| host(ip, None)))
                }
                Peer::Block { cidr, except } => out.push(PeerSpec {
                    prefix: cidr,
                    except,
                    ports: None,
                }),
                Peer::Nothing => {}
            }
        }
        Some(out)
    }

    /// An egress rule. Named ports resolve on each destination pod: every
    /// pod the rule reaches gets a `/32` (`/128`) peer with its own ports,
    /// a superset of the numeric ports its enclosing blocks carry, as
    /// `PeerSpec::ports` requires; addresses that are no pod get the
    /// numeric ports only.
    fn egress_rule(
        &self,
        policy: &NetworkPolicy,
        to: &[NetworkPolicyPeer],
        ports: &RulePorts,
    ) -> RuleSpec {
        if !ports.has_named() {
            return RuleSpec {
                peers: self.plain_peers(policy, to),
                ports: ports.numeric(),
            };
        }
        let mut peers = Vec::new();
        // The pod's addresses `keep` accepts, each with the pod's ports.
        let pod_peer = |pod: &Pod, keep: &dyn Fn(IpAddr) -> bool, out: &mut Vec<PeerSpec>| {
            let p = ports.on_pod(pod);
            out.extend(
                pod.ips()
                    .into_iter()
                    .filter(|ip| keep(*ip))
                    .map(|ip| host(ip, Some(p.clone()))),
            );
        };
        if to.is_empty() {
            for any in ["0.0.0.0/0", "::/0"] {
                if let Ok(prefix) = any.parse::<IpNet>() {
                    peers.push(PeerSpec {
                        prefix,
                        except: Vec::new(),
                        ports: None,
                    });
                }
            }
            for pod in &self.pods {
                pod_peer(pod, &|_| true, &mut peers);
            }
        }
        for peer in to {
            match self.peer(policy, peer) {
                Peer::Pods(pods) => {
                    for pod in pods {
                        pod_peer(pod, &|_| true, &mut peers);
                    }
                }
                block @ Peer::Block { .. } => {
                    for pod in &self.pods {
                        pod_peer(pod, &|ip| block.contains(ip), &mut peers);
                    }
                    if let Peer::Block { cidr, except } = block {
                        peers.push(PeerSpec {
                            prefix: cidr,
                            except,
                            ports: None,
                        });
                    }
                }
                Peer::Nothing => {}
            }
        }
        RuleSpec {
            peers: Some(peers),
            ports: ports.numeric(),
        }
    }
}

/// A peer of one address.
fn host(ip: IpAddr, ports: Option<weft_switch::policy::PortsSpec>) -> PeerSpec {
    PeerSpec {
        prefix: IpNet::from(ip),
        except: Vec::new(),
        ports,
    }
}
