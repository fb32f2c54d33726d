//! The merged table against a reference: the linear evaluator the table
//! replaced (every rule of the pod in order, each with its own prefix
//! tables), on random policies, addresses, protocols and ports. Both must
//! agree on the verdict AND on the rule (or isolating policy) reported.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use proptest::prelude::*;

use super::*;
use crate::prefix::PrefixTable;

/// Plain peers' table (to an index into `ports`) and carved ipBlocks.
type RefPeers = (PrefixTable<usize>, Vec<(PrefixTable<bool>, usize)>);

/// One rule, interpreted: plain peers share one longest-match table, each
/// ipBlock with excepts has its own (CIDR true, excepts false).
struct RefRule {
    at: RuleRef,
    peers: Option<RefPeers>,
    ports: Vec<PortsSpec>,
}

impl RefRule {
    fn new(at: RuleRef, spec: &RuleSpec) -> Self {
        let mut ports = vec![spec.ports.clone()];
        let peers = spec.peers.as_ref().map(|list| {
            let mut plain = PrefixTable::new();
            let mut carved = Vec::new();
            for peer in list {
                let idx = peer.ports.as_ref().map_or(0, |p| {
                    ports.push(p.clone());
                    ports.len() - 1
                });
                if peer.except.is_empty() {
                    plain.insert(peer.prefix, idx);
                } else {
                    let mut t = PrefixTable::new();
                    t.insert(peer.prefix, true);
                    for ex in &peer.except {
                        t.insert(*ex, false);
                    }
                    carved.push((t, idx));
                }
            }
            (plain, carved)
        });
        Self { at, peers, ports }
    }

    fn port_ok(&self, idx: usize, proto: u8, port: u16) -> bool {
        match &self.ports[idx] {
            PortsSpec::Any => true,
            PortsSpec::Ranges(r) => r
                .iter()
                .any(|r| r.protocol.number() == proto && r.port <= port && port <= r.end),
        }
    }

    fn matches(&self, peer: IpAddr, proto: u8, port: u16) -> bool {
        let Some((plain, carved)) = &self.peers else {
            return self.port_ok(0, proto, port);
        };
        plain
            .lookup(peer)
            .is_some_and(|i| self.port_ok(i, proto, port))
            || carved
                .iter()
                .any(|(t, i)| t.lookup(peer) == Some(true) && self.port_ok(*i, proto, port))
    }
}

type RefPods = HashMap<IpAddr, (u32, Vec<RefRule>)>;

fn reference(policies: &[PolicySpec]) -> (RefPods, RefPods) {
    let (mut ing, mut eg): (RefPods, RefPods) = Default::default();
    for (pi, p) in policies.iter().enumerate() {
        let pi = pi as u32;
        let compile = |rules: &[RuleSpec]| {
            rules
                .iter()
                .enumerate()
                .map(|(ri, r)| {
                    let at = RuleRef {
                        policy: pi,
                        rule: ri as u32,
                    };
                    RefRule::new(at, r)
                })
                .collect::<Vec<_>>()
        };
        for (pod, rules) in p.ingress.iter().flatten() {
            let e = ing.entry(*pod).or_insert((pi, Vec::new()));
            e.1.extend(compile(rules));
        }
        for (pods, rules) in p.egress.iter() {
            for pod in pods {
                let e = eg.entry(*pod).or_insert((pi, Vec::new()));
                e.1.extend(compile(rules));
            }
        }
    }
    (ing, eg)
}

fn ref_verdict(pods: &RefPods, pod: IpAddr, peer: IpAddr, proto: u8, port: u16) -> Verdict {
    let Some((isolating, rules)) = pods.get(&pod) else {
        return Verdict::NotIsolated;
    };
    rules
        .iter()
        .find(|r| r.matches(peer, proto, port))
        .map_or(Verdict::Denied { policy: *isolating }, |r| {
            Verdict::Allowed(r.at)
        })
}

const LOCAL: [[u8; 4]; 3] = [[10, 1, 0, 1], [10, 1, 0, 2], [10, 1, 1, 3]];

/// Addresses in a small space so prefixes nest and overlap often.
fn addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        9 => (0u8..2, 0u8..4, 0u8..8).prop_map(|(a, b, c)| IpAddr::from([10, a, b, c * 32 + 1])),
        1 => (0u16..4).prop_map(|x| IpAddr::from([0xfd00, 0, 0, 0, 0, 0, x, 1])),
    ]
}

fn prefix() -> impl Strategy<Value = IpNet> {
    (
        addr(),
        prop::sample::select(vec![0u8, 8, 15, 16, 23, 24, 27, 32]),
    )
        .prop_map(|(a, len)| {
            let len = if a.is_ipv6() { len * 4 } else { len };
            IpNet::new(a, len).unwrap()
        })
}

fn port() -> impl Strategy<Value = u16> {
    prop_oneof![4 => 0u16..12, 1 => 65530u16..=65535]
}

fn ports() -> impl Strategy<Value = PortsSpec> {
    let range = (0usize..3, port(), -2i32..5).prop_map(|(p, port, len)| PortRange {
        protocol: [Protocol::Tcp, Protocol::Udp, Protocol::Sctp][p],
        port,
        end: (i32::from(port) + len).clamp(0, 65535) as u16,
    });
    prop_oneof![
        1 => Just(PortsSpec::Any),
        3 => prop::collection::vec(range, 0..4).prop_map(PortsSpec::Ranges),
    ]
}

fn peer() -> impl Strategy<Value = PeerSpec> {
    (
        prefix(),
        prop_oneof![2 => Just(vec![]), 1 => prop::collection::vec(prefix(), 1..3)],
        prop::option::weighted(0.3, ports()),
    )
        .prop_map(|(prefix, except, ports)| PeerSpec {
            prefix,
            except,
            ports,
        })
}

fn rule() -> impl Strategy<Value = RuleSpec> {
    (
        prop::option::weighted(0.8, prop::collection::vec(peer(), 0..4)),
        ports(),
    )
        .prop_map(|(peers, ports)| RuleSpec { peers, ports })
}

fn policy() -> impl Strategy<Value = PolicySpec> {
    let rules = || prop::collection::vec(rule(), 0..4);
    let pods = || prop::sample::subsequence(LOCAL.to_vec(), 0..=3);
    (
        prop::option::of((pods(), rules())),
        prop::option::of((pods(), rules())),
    )
        .prop_map(|(ing, eg)| PolicySpec {
            name: "x/p".into(),
            ingress: ing.map(|(pods, rules)| {
                pods.into_iter()
                    .map(|p| (IpAddr::from(p), rules.clone()))
                    .collect()
            }),
            egress: eg.map(|(pods, rules)| (pods.into_iter().map(IpAddr::from).collect(), rules)),
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn merged_table_agrees_with_the_linear_walk(
        policies in prop::collection::vec(policy(), 1..6),
        probes in prop::collection::vec((addr(), prop::sample::select(vec![1u8, 6, 17, 132]), port()), 40),
    ) {
        let table = PolicyTable::compile(&policies);
        let (ing, eg) = reference(&policies);
        for pod in LOCAL.map(IpAddr::from) {
            for (peer, proto, port) in &probes {
                for (dir, pods) in [(Direction::Ingress, &ing), (Direction::Egress, &eg)] {
                    prop_assert_eq!(
                        table.evaluate(dir, pod, *peer, *proto, *port),
                        ref_verdict(pods, pod, *peer, *proto, *port),
                        "{:?} {} <-> {} {}/{}", dir, pod, peer, port, proto
                    );
                }
            }
        }
    }
}
