//! The compiled policy table and the per-connection decision.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use super::merged::RuleSet;
use super::{Direction, PolicySpec, RuleSpec};

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

/// The rules that apply to one local pod in one direction, merged.
#[derive(Debug)]
struct PodRules {
    /// The first policy that isolates the pod here.
    isolating: u32,
    /// Shared by every pod (and direction) with the same rule list.
    rules: Arc<RuleSet>,
}

/// Rule lists by pod while compiling: the isolating policy and the rules in
/// evaluation order (policy order, then rule order).
type Lists<'a> = HashMap<IpAddr, (u32, Vec<(RuleRef, &'a RuleSpec)>)>;

/// Every local pod's compiled rules. See the module docs.
#[derive(Debug, Default)]
pub struct PolicyTable {
    names: Vec<String>,
    ingress: HashMap<IpAddr, PodRules>,
    egress: HashMap<IpAddr, PodRules>,
    rules: usize,
}

impl PolicyTable {
    /// Compiles the policies that apply to this node's pods: per local pod
    /// and direction, the list of rules that apply, merged into one
    /// [`RuleSet`]; identical lists (pods selected by the same policies)
    /// share one.
    pub fn compile(policies: &[PolicySpec]) -> Self {
        let mut table = Self::default();
        let mut ingress: Lists<'_> = HashMap::new();
        let mut egress: Lists<'_> = HashMap::new();
        for (i, policy) in policies.iter().enumerate() {
            let pi = u32::try_from(i).unwrap_or(u32::MAX);
            table.names.push(policy.name.clone());
            if let Some(per_pod) = &policy.ingress {
                for (pod, rules) in per_pod {
                    table.rules += rules.len();
                    add(&mut ingress, *pod, pi, rules);
                }
            }
            if let Some((pods, rules)) = &policy.egress {
                table.rules += rules.len();
                for pod in pods {
                    add(&mut egress, *pod, pi, rules);
                }
            }
        }
        let mut shared: Shared<'_> = HashMap::new();
        table.ingress = merge(ingress, &mut shared);
        table.egress = merge(egress, &mut shared);
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
        match pod_rules.rules.first(peer, proto, port) {
            Some(rule) => Verdict::Allowed(rule),
            None => Verdict::Denied {
                policy: pod_rules.isolating,
            },
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

    /// Policies and rules as given (ingress rules counted once per
    /// selected pod, egress rules once per policy), for status.
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

/// Compiled rule sets by rule list.
type Shared<'a> = HashMap<Vec<(RuleRef, &'a RuleSpec)>, Arc<RuleSet>>;

/// Each pod's list compiled, identical lists once.
fn merge<'a>(lists: Lists<'a>, shared: &mut Shared<'a>) -> HashMap<IpAddr, PodRules> {
    lists
        .into_iter()
        .map(|(pod, (isolating, list))| {
            let rules = shared
                .entry(list)
                .or_insert_with_key(|list| Arc::new(RuleSet::compile(list)))
                .clone();
            (pod, PodRules { isolating, rules })
        })
        .collect()
}

fn add<'a>(lists: &mut Lists<'a>, pod: IpAddr, policy: u32, rules: &'a [RuleSpec]) {
    let (_, list) = lists.entry(pod).or_insert_with(|| (policy, Vec::new()));
    list.extend(rules.iter().enumerate().map(|(ri, r)| (at(policy, ri), r)));
}
