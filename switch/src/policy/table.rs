//! The compiled policy table and the per-connection decision.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use super::{Direction, PolicySpec, PortsSpec, RuleSpec};
use crate::prefix::PrefixTable;

/// Which rule decided: the policy's index in [`PolicyTable::policy_name`]
/// and the rule's index in that policy's ingress or egress list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RuleRef {
    pub policy: u32,
    pub rule: u32,
}

/// The outcome of [`PolicyTable::evaluate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No policy isolates the pod in this direction: allowed by default.
    NotIsolated,
    /// Allowed by this rule.
    Allowed(RuleRef),
    /// The pod is isolated and no rule allows it; `policy` is one of the
    /// policies that isolate it (the first compiled), for explanations.
    Denied { policy: u32 },
}

impl Verdict {
    /// Whether the connection may proceed.
    pub fn allows(self) -> bool {
        !matches!(self, Self::Denied { .. })
    }
}

/// A compiled rule. Peers without `except` share one longest-prefix-match
/// table mapping to an index into `ports`; an ipBlock with `except`s gets a
/// table of its own (its CIDR to `true`, each except to `false`), so that
/// an except never hides an address another peer of the rule allows
/// (peers are OR'ed).
#[derive(Debug)]
struct Rule {
    at: RuleRef,
    /// `None`: any peer, with `ports[0]`.
    peers: Option<Peers>,
    ports: Vec<PortsSpec>,
}

#[derive(Debug)]
struct Peers {
    plain: PrefixTable<u16>,
    carved: Vec<(PrefixTable<bool>, u16)>,
}

impl Rule {
    fn compile(at: RuleRef, spec: &RuleSpec) -> Self {
        let mut ports = vec![spec.ports.clone()];
        let peers = spec.peers.as_ref().map(|list| {
            let mut peers = Peers {
                plain: PrefixTable::new(),
                carved: Vec::new(),
            };
            for peer in list {
                let idx = match &peer.ports {
                    None => 0,
                    Some(p) => match ports.iter().position(|q| q == p) {
                        Some(i) => i,
                        None => {
                            ports.push(p.clone());
                            ports.len() - 1
                        }
                    },
                };
                let idx = u16::try_from(idx).unwrap_or(u16::MAX);
                if peer.except.is_empty() {
                    peers.plain.insert(peer.prefix, idx);
                } else {
                    let mut t = PrefixTable::new();
                    t.insert(peer.prefix, true);
                    for ex in &peer.except {
                        t.insert(*ex, false);
                    }
                    peers.carved.push((t, idx));
                }
            }
            peers
        });
        Self { at, peers, ports }
    }

    fn matches(&self, peer: IpAddr, proto: u8, port: u16) -> bool {
        let Some(peers) = &self.peers else {
            return self.port_matches(0, proto, port);
        };
        if let Some(i) = peers.plain.lookup(peer) {
            if self.port_matches(usize::from(i), proto, port) {
                return true;
            }
        }
        peers.carved.iter().any(|(t, i)| {
            t.lookup(peer) == Some(true) && self.port_matches(usize::from(*i), proto, port)
        })
    }

    fn port_matches(&self, idx: usize, proto: u8, port: u16) -> bool {
        match self.ports.get(idx) {
            Some(PortsSpec::Any) => true,
            Some(PortsSpec::Ranges(ranges)) => ranges
                .iter()
                .any(|r| r.protocol.number() == proto && r.port <= port && port <= r.end),
            None => false,
        }
    }
}

/// The rules that apply to one local pod in one direction.
#[derive(Debug, Default)]
struct PodRules {
    /// The first policy that isolates the pod here.
    isolating: u32,
    rules: Vec<Arc<Rule>>,
}

/// Every local pod's compiled rules. See the module docs.
#[derive(Debug, Default)]
pub struct PolicyTable {
    names: Vec<String>,
    ingress: HashMap<IpAddr, PodRules>,
    egress: HashMap<IpAddr, PodRules>,
    rules: usize,
}

impl PolicyTable {
    /// Compiles the policies that apply to this node's pods.
    pub fn compile(policies: &[PolicySpec]) -> Self {
        let mut table = Self::default();
        for (i, policy) in policies.iter().enumerate() {
            let pi = u32::try_from(i).unwrap_or(u32::MAX);
            table.names.push(policy.name.clone());
            if let Some(per_pod) = &policy.ingress {
                for (pod, rules) in per_pod {
                    let compiled: Vec<Arc<Rule>> = rules
                        .iter()
                        .enumerate()
                        .map(|(ri, r)| Arc::new(Rule::compile(at(pi, ri), r)))
                        .collect();
                    table.rules += compiled.len();
                    add(&mut table.ingress, *pod, pi, compiled);
                }
            }
            if let Some((pods, rules)) = &policy.egress {
                // One compilation shared by every selected pod.
                let compiled: Vec<Arc<Rule>> = rules
                    .iter()
                    .enumerate()
                    .map(|(ri, r)| Arc::new(Rule::compile(at(pi, ri), r)))
                    .collect();
                table.rules += compiled.len();
                for pod in pods {
                    add(&mut table.egress, *pod, pi, compiled.clone());
                }
            }
        }
        table
    }

    /// The verdict for a new connection of protocol `proto` (IP protocol
    /// number) between local pod `pod` and `peer`, on `port` (the
    /// destination port after service translation; 0 for protocols
    /// without ports). For [`Direction::Ingress`] `peer` is the source,
    /// for [`Direction::Egress`] the destination.
    pub fn evaluate(
        &self,
        direction: Direction,
        pod: IpAddr,
        peer: IpAddr,
        proto: u8,
        port: u16,
    ) -> Verdict {
        let map = match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        };
        let Some(pod_rules) = map.get(&pod) else {
            return Verdict::NotIsolated;
        };
        for rule in &pod_rules.rules {
            if rule.matches(peer, proto, port) {
                return Verdict::Allowed(rule.at);
            }
        }
        Verdict::Denied {
            policy: pod_rules.isolating,
        }
    }

    /// Whether `pod` is isolated in `direction`.
    pub fn isolated(&self, direction: Direction, pod: IpAddr) -> bool {
        match direction {
            Direction::Ingress => self.ingress.contains_key(&pod),
            Direction::Egress => self.egress.contains_key(&pod),
        }
    }

    /// A policy's `namespace/name` by its index.
    pub fn policy_name(&self, index: u32) -> Option<&str> {
        self.names.get(index as usize).map(String::as_str)
    }

    /// Policies and compiled rules (per-pod ingress compilations counted
    /// once per pod), for status.
    pub fn sizes(&self) -> (usize, usize) {
        (self.names.len(), self.rules)
    }
}

fn at(policy: u32, rule: usize) -> RuleRef {
    RuleRef {
        policy,
        rule: u32::try_from(rule).unwrap_or(u32::MAX),
    }
}

fn add(map: &mut HashMap<IpAddr, PodRules>, pod: IpAddr, policy: u32, rules: Vec<Arc<Rule>>) {
    let entry = map.entry(pod).or_insert_with(|| PodRules {
        isolating: policy,
        rules: Vec::new(),
    });
    entry.rules.extend(rules);
}
