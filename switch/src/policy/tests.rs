//! The compiled table against Kubernetes' NetworkPolicy semantics.

use std::net::IpAddr;

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn peer(prefix: &str) -> PeerSpec {
    PeerSpec {
        prefix: net(prefix),
        except: vec![],
        ports: None,
    }
}

fn tcp(port: u16) -> PortRange {
    PortRange {
        protocol: Protocol::Tcp,
        port,
        end: port,
    }
}

const A: &str = "10.244.1.2";
const B: &str = "10.244.1.3";
const C: &str = "10.244.2.4";
const TCP: u8 = 6;
const UDP: u8 = 17;

fn ingress(name: &str, pods: &[&str], rules: Vec<RuleSpec>) -> PolicySpec {
    PolicySpec {
        name: name.into(),
        ingress: Some(pods.iter().map(|p| (ip(p), rules.clone())).collect()),
        egress: None,
    }
}

#[test]
fn unselected_pods_allow_everything() {
    let t = PolicyTable::compile(&[ingress("x/only-a", &[A], vec![])]);
    let v = t.evaluate(Direction::Ingress, ip(B), ip(C), TCP, 80);
    assert_eq!(v, Verdict::NotIsolated);
    assert!(v.allows());
    // Isolated for ingress only: egress stays open.
    assert_eq!(
        t.evaluate(Direction::Egress, ip(A), ip(C), TCP, 80),
        Verdict::NotIsolated
    );
}

#[test]
fn an_empty_rule_list_denies_and_names_the_policy() {
    let t = PolicyTable::compile(&[ingress("x/deny-all", &[A], vec![])]);
    let v = t.evaluate(Direction::Ingress, ip(A), ip(C), TCP, 80);
    assert_eq!(v, Verdict::Denied { policy: 0 });
    assert!(!v.allows());
    assert_eq!(t.policy_name(0), Some("x/deny-all"));
}

#[test]
fn empty_peers_and_empty_ports_allow_all() {
    let allow_all = RuleSpec {
        peers: None,
        ports: PortsSpec::Any,
    };
    let t = PolicyTable::compile(&[ingress("x/allow-all", &[A], vec![allow_all])]);
    for (proto, port) in [(TCP, 80), (UDP, 53), (1, 0)] {
        assert_eq!(
            t.evaluate(Direction::Ingress, ip(A), ip(C), proto, port),
            Verdict::Allowed(RuleRef { policy: 0, rule: 0 })
        );
    }
}

#[test]
fn peers_and_ports_must_both_match() {
    let rule = RuleSpec {
        peers: Some(vec![peer(&format!("{B}/32"))]),
        ports: PortsSpec::Ranges(vec![
            tcp(80),
            PortRange {
                protocol: Protocol::Udp,
                port: 5000,
                end: 5010,
            },
        ]),
    };
    let t = PolicyTable::compile(&[ingress("x/b-web", &[A], vec![rule])]);
    let ok = |src: &str, proto, port| {
        t.evaluate(Direction::Ingress, ip(A), ip(src), proto, port)
            .allows()
    };
    assert!(ok(B, TCP, 80));
    assert!(!ok(B, TCP, 81));
    assert!(!ok(B, UDP, 80), "protocol matters");
    assert!(
        ok(B, UDP, 5000) && ok(B, UDP, 5010) && !ok(B, UDP, 5011),
        "endPort inclusive"
    );
    assert!(!ok(C, TCP, 80), "another peer");
}

#[test]
fn policies_combine_as_a_union() {
    let from_b = RuleSpec {
        peers: Some(vec![peer(&format!("{B}/32"))]),
        ports: PortsSpec::Any,
    };
    let from_c_81 = RuleSpec {
        peers: Some(vec![peer(&format!("{C}/32"))]),
        ports: PortsSpec::Ranges(vec![tcp(81)]),
    };
    let t = PolicyTable::compile(&[
        ingress("x/p1", &[A], vec![from_b]),
        ingress("x/p2", &[A], vec![from_c_81]),
    ]);
    assert_eq!(
        t.evaluate(Direction::Ingress, ip(A), ip(C), TCP, 81),
        Verdict::Allowed(RuleRef { policy: 1, rule: 0 })
    );
    assert!(t
        .evaluate(Direction::Ingress, ip(A), ip(B), TCP, 9)
        .allows());
    assert_eq!(
        t.evaluate(Direction::Ingress, ip(A), ip(C), TCP, 80),
        Verdict::Denied { policy: 0 }
    );
}

#[test]
fn ip_blocks_with_except_and_or_semantics() {
    let block = PeerSpec {
        prefix: net("10.244.0.0/16"),
        except: vec![net("10.244.2.0/24")],
        ports: None,
    };
    // A second ipBlock that covers the except: peers are OR'ed, so its
    // addresses stay allowed.
    let wider = peer("10.244.2.0/23");
    let only_block = RuleSpec {
        peers: Some(vec![block.clone()]),
        ports: PortsSpec::Any,
    };
    let t = PolicyTable::compile(&[ingress("x/block", &[A], vec![only_block])]);
    assert!(t
        .evaluate(Direction::Ingress, ip(A), ip(B), TCP, 1)
        .allows());
    assert!(!t
        .evaluate(Direction::Ingress, ip(A), ip(C), TCP, 1)
        .allows());
    assert!(!t
        .evaluate(Direction::Ingress, ip(A), ip("192.0.2.1"), TCP, 1)
        .allows());

    let both = RuleSpec {
        peers: Some(vec![block, wider, peer(&format!("{C}/32"))]),
        ports: PortsSpec::Any,
    };
    let t = PolicyTable::compile(&[ingress("x/both", &[A], vec![both])]);
    assert!(t
        .evaluate(Direction::Ingress, ip(A), ip(C), TCP, 1)
        .allows());
    assert!(t
        .evaluate(Direction::Ingress, ip(A), ip("10.244.3.9"), TCP, 1)
        .allows());
}

#[test]
fn egress_named_ports_resolve_per_destination() {
    // "to pods with role=web on port http": B names http 8080, C names it 80.
    let rule = RuleSpec {
        peers: Some(vec![
            PeerSpec {
                ports: Some(PortsSpec::Ranges(vec![tcp(8080)])),
                ..peer(&format!("{B}/32"))
            },
            PeerSpec {
                ports: Some(PortsSpec::Ranges(vec![tcp(80)])),
                ..peer(&format!("{C}/32"))
            },
        ]),
        ports: PortsSpec::Ranges(vec![]),
    };
    let t = PolicyTable::compile(&[PolicySpec {
        name: "x/egress".into(),
        ingress: None,
        egress: Some((vec![ip(A)], vec![rule])),
    }]);
    let ok = |dst: &str, port| {
        t.evaluate(Direction::Egress, ip(A), ip(dst), TCP, port)
            .allows()
    };
    assert!(ok(B, 8080) && !ok(B, 80));
    assert!(ok(C, 80) && !ok(C, 8080));
    assert!(t.isolated(Direction::Egress, ip(A)));
    assert!(!t.isolated(Direction::Ingress, ip(A)));
}

#[test]
fn ipv6_peers() {
    let rule = RuleSpec {
        peers: Some(vec![peer("fd00:10::/64")]),
        ports: PortsSpec::Any,
    };
    let t = PolicyTable::compile(&[ingress("x/v6", &["fd00:1::2"], vec![rule])]);
    assert!(t
        .evaluate(
            Direction::Ingress,
            ip("fd00:1::2"),
            ip("fd00:10::7"),
            TCP,
            1
        )
        .allows());
    assert!(!t
        .evaluate(
            Direction::Ingress,
            ip("fd00:1::2"),
            ip("fd00:11::7"),
            TCP,
            1
        )
        .allows());
}

#[test]
fn a_large_policy_set_compiles_once_per_rule() {
    // 1000 policies selecting the same 100 pods (egress: shared rules).
    let pods: Vec<IpAddr> = (0..100u8).map(|i| IpAddr::from([10, 244, 1, i])).collect();
    let policies: Vec<PolicySpec> = (0..1000u32)
        .map(|i| PolicySpec {
            name: format!("x/p{i}"),
            ingress: None,
            egress: Some((
                pods.clone(),
                vec![RuleSpec {
                    peers: Some(vec![peer(&format!("10.{}.{}.0/24", i / 256, i % 256))]),
                    ports: PortsSpec::Ranges(vec![tcp(80)]),
                }],
            )),
        })
        .collect();
    let t = PolicyTable::compile(&policies);
    assert_eq!(t.sizes(), (1000, 1000));
    // Allowed by the last policy's rule.
    assert_eq!(
        t.evaluate(Direction::Egress, pods[7], ip("10.3.231.9"), TCP, 80),
        Verdict::Allowed(RuleRef {
            policy: 999,
            rule: 0
        })
    );
}

#[test]
fn a_ten_thousand_rule_policy_compiles_and_decides_by_its_rules() {
    // One policy, 10 000 rules: each allows one /32 on one port.
    let rules: Vec<RuleSpec> = (0..10_000u32)
        .map(|i| RuleSpec {
            peers: Some(vec![peer(&format!("10.9.{}.{}/32", i / 256, i % 256))]),
            ports: PortsSpec::Ranges(vec![tcp(1000 + u16::try_from(i % 5000).unwrap())]),
        })
        .collect();
    let t = PolicyTable::compile(&[ingress("x/huge", &[A], rules)]);
    assert_eq!(t.sizes(), (1, 10_000));
    // Rule 9999: 10.9.39.15 on port 1000 + 4999.
    assert_eq!(
        t.evaluate(Direction::Ingress, ip(A), ip("10.9.39.15"), TCP, 5999),
        Verdict::Allowed(RuleRef {
            policy: 0,
            rule: 9999
        })
    );
    // The right peer on another rule's port, and an unlisted peer: denied.
    assert_eq!(
        t.evaluate(Direction::Ingress, ip(A), ip("10.9.39.15"), TCP, 1000),
        Verdict::Denied { policy: 0 }
    );
    assert_eq!(
        t.evaluate(Direction::Ingress, ip(A), ip("10.9.200.1"), TCP, 5999),
        Verdict::Denied { policy: 0 }
    );
}
