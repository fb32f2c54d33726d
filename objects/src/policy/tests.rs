//! Resolution details the truth tables do not reach: selection limits,
//! named ports on egress through ipBlocks, dual-stack pods, objects that
//! validation would refuse, and explanations.

use std::net::IpAddr;

use weft_switch::policy::{Direction, PolicyTable, Protocol, Verdict};

use super::*;
use crate::types::pod::{Container, ContainerPort, PodIp};
use crate::values::PodPhase;
use crate::{parse_manifests, Object};

const TCP: u8 = 6;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn pod(ns: &str, name: &str, node: &str, ips: &[&str], labels: &[(&str, &str)]) -> Pod {
    let mut p = Pod::new(ns, name);
    p.metadata.labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    p.spec.node_name = node.into();
    p.spec.containers = vec![Container {
        name: "main".into(),
        ports: vec![ContainerPort {
            name: "http".into(),
            container_port: 8080,
            protocol: None,
        }],
    }];
    p.status.phase = Some(PodPhase::Running);
    if let Some(first) = ips.first() {
        p.status.pod_ip = first.to_string();
    }
    p.status.pod_ips = ips.iter().map(|i| PodIp { ip: i.to_string() }).collect();
    p
}

fn ns(name: &str, labels: &[(&str, &str)]) -> Namespace {
    let mut n = Namespace::new(name);
    n.metadata.labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    n
}

/// Policies from YAML, defaulted as the control plane stores them.
fn policies(yaml: &str) -> Vec<NetworkPolicy> {
    parse_manifests(yaml)
        .unwrap()
        .into_iter()
        .map(|mut o| {
            crate::defaults::apply(&mut o);
            match o {
                Object::NetworkPolicy(p) => p,
                other => panic!("not a policy: {other:?}"),
            }
        })
        .collect()
}

fn cluster() -> (Vec<Namespace>, Vec<Pod>) {
    let namespaces = vec![ns("shop", &[("team", "a")]), ns("ops", &[])];
    let mut done = pod("shop", "done", "n1", &["10.244.1.9"], &[("app", "web")]);
    done.status.phase = Some(PodPhase::Succeeded);
    let pods = vec![
        pod(
            "shop",
            "web",
            "n1",
            &["10.244.1.2", "fd00::2"],
            &[("app", "web")],
        ),
        pod("shop", "db", "n2", &["10.244.2.3"], &[("app", "db")]),
        pod("ops", "tool", "n2", &["10.244.2.4"], &[("app", "tool")]),
        pod("shop", "pending", "n1", &[], &[("app", "web")]),
        done,
    ];
    (namespaces, pods)
}

#[test]
fn only_addressed_running_pods_of_the_policys_namespace_are_selected() {
    let (namespaces, pods) = cluster();
    let nps = policies(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: all, namespace: shop}\nspec: {podSelector: {}}\n",
    );
    let view = PolicyView::new(&namespaces, &pods, &nps);
    let n1 = view.specs_for_node("n1");
    assert_eq!(n1.len(), 1);
    assert_eq!(n1[0].name, "shop/all");
    let selected: Vec<IpAddr> = n1[0]
        .ingress
        .as_ref()
        .unwrap()
        .iter()
        .map(|(a, _)| *a)
        .collect();
    // web's two addresses; not the pending pod (no address) nor the
    // finished one.
    assert_eq!(selected, [ip("10.244.1.2"), ip("fd00::2")]);
    assert!(n1[0].egress.is_none(), "no egress rules: Ingress only");
    // ops/tool on n2 is not in shop: n2's spec holds db only.
    let n2 = view.specs_for_node("n2");
    let selected: Vec<IpAddr> = n2[0]
        .ingress
        .as_ref()
        .unwrap()
        .iter()
        .map(|(a, _)| *a)
        .collect();
    assert_eq!(selected, [ip("10.244.2.3")]);
    // A node without selected pods gets no spec.
    assert!(view.specs_for_node("n3").is_empty());
}

#[test]
fn egress_named_ports_resolve_per_destination_inside_ip_blocks() {
    let (namespaces, pods) = cluster();
    let nps = policies(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: out, namespace: shop}\nspec:\n  podSelector: {matchLabels: {app: web}}\n  egress:\n  - to:\n    - ipBlock: {cidr: 10.244.0.0/16, except: [10.244.2.4/32]}\n    ports:\n    - port: http\n    - port: 443\n",
    );
    let view = PolicyView::new(&namespaces, &pods, &nps);
    let table = PolicyTable::compile(&view.specs_for_node("n1"));
    let web = ip("10.244.1.2");
    let eval = |to: &str, port| {
        table
            .evaluate(Direction::Egress, web, ip(to), TCP, port)
            .allows()
    };
    // db is a pod inside the block: its `http` (8080) and 443.
    assert!(eval("10.244.2.3", 8080));
    assert!(eval("10.244.2.3", 443));
    assert!(!eval("10.244.2.3", 80));
    // An address in the block that is no pod has no named ports.
    assert!(!eval("10.244.7.7", 8080));
    assert!(eval("10.244.7.7", 443));
    // ops/tool is excepted, named port or not.
    assert!(!eval("10.244.2.4", 8080));
    assert!(!eval("10.244.2.4", 443));
    // Outside the block.
    assert!(!eval("192.168.0.1", 443));
}

#[test]
fn a_dual_stack_pod_in_an_ipv4_block_gets_no_ipv6_hole() {
    let (namespaces, mut pods) = cluster();
    pods[1].status.pod_ips.push(PodIp {
        ip: "fd00::3".into(),
    });
    let nps = policies(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: out, namespace: shop}\nspec:\n  podSelector: {matchLabels: {app: web}}\n  policyTypes: [Egress]\n  egress:\n  - to:\n    - ipBlock: {cidr: 10.244.2.0/24}\n    ports: [{port: http}]\n",
    );
    let view = PolicyView::new(&namespaces, &pods, &nps);
    let table = PolicyTable::compile(&view.specs_for_node("n1"));
    let v4 = table.evaluate(
        Direction::Egress,
        ip("10.244.1.2"),
        ip("10.244.2.3"),
        TCP,
        8080,
    );
    assert!(v4.allows());
    let v6 = table.evaluate(Direction::Egress, ip("fd00::2"), ip("fd00::3"), TCP, 8080);
    assert!(!v6.allows(), "{v6:?}");
}

#[test]
fn what_validation_refuses_matches_nothing() {
    let (namespaces, pods) = cluster();
    let mut nps = policies(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: odd, namespace: shop}\nspec:\n  podSelector: {matchLabels: {app: db}}\n  ingress:\n  - from:\n    - ipBlock: {cidr: 10.0.0.0/8, except: [nonsense]}\n  - ports: [{protocol: SCTP}, {port: 70000}, {port: 90, endPort: 80}]\n",
    );
    nps[0].spec.ingress[1]
        .ports
        .push(crate::types::network_policy::NetworkPolicyPort {
            protocol: Some(crate::values::Protocol::Other("ICMP".into())),
            port: None,
            end_port: None,
        });
    let view = PolicyView::new(&namespaces, &pods, &nps);
    let table = PolicyTable::compile(&view.specs_for_node("n2"));
    let db = ip("10.244.2.3");
    for (peer, proto, port) in [
        ("10.1.1.1", TCP, 80),
        ("10.244.1.2", TCP, 90),
        ("10.244.1.2", TCP, 85),
        ("10.244.1.2", 1, 0),
    ] {
        let v = table.evaluate(Direction::Ingress, db, ip(peer), proto, port);
        assert_eq!(v, Verdict::Denied { policy: 0 }, "{peer} {proto} {port}");
    }
    // SCTP as written is kept (validation refuses it at apply).
    assert!(table
        .evaluate(Direction::Ingress, db, ip("10.244.1.2"), 132, 9)
        .allows());
}

#[test]
fn a_namespace_not_yet_seen_still_has_its_name_label() {
    let (_, pods) = cluster();
    let nps = policies(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: from-ops, namespace: shop}\nspec:\n  podSelector: {matchLabels: {app: db}}\n  ingress:\n  - from:\n    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ops}}\n",
    );
    let view = PolicyView::new(&[], &pods, &nps);
    let table = PolicyTable::compile(&view.specs_for_node("n2"));
    let db = ip("10.244.2.3");
    assert!(table
        .evaluate(Direction::Ingress, db, ip("10.244.2.4"), TCP, 1)
        .allows());
    assert!(!table
        .evaluate(Direction::Ingress, db, ip("10.244.1.2"), TCP, 1)
        .allows());
}

#[test]
fn explanations_name_the_rule_or_the_isolating_policies() {
    let (namespaces, pods) = cluster();
    let nps = policies(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db-from-web, namespace: shop}\nspec:\n  podSelector: {matchLabels: {app: db}}\n  ingress:\n  - from: [{podSelector: {matchLabels: {app: tool}}}]\n  - from: [{podSelector: {matchLabels: {app: web}}}]\n    ports: [{port: 5432}]\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: shop}\nspec: {podSelector: {}}\n",
    );
    let view = PolicyView::new(&namespaces, &pods, &nps);
    let db = Target::Pod {
        namespace: "shop".into(),
        name: "db".into(),
    };
    let e = view
        .explain(("shop", "web"), &db, 5432, Protocol::Tcp)
        .unwrap();
    assert!(e.allowed());
    assert_eq!(e.egress.decision, Decision::NotIsolated);
    assert_eq!(
        e.ingress.decision,
        Decision::Allowed {
            policy: "shop/db-from-web".into(),
            rule: 1
        }
    );
    assert_eq!(
        e.to_string(),
        "shop/web (10.244.1.2) -> shop/db (10.244.2.3) port 5432/TCP: allowed\n  \
         egress  (shop/web on node n1): allowed: no policy selects the source for egress: allowed by default\n  \
         ingress (shop/db on node n2): allowed by networkpolicy shop/db-from-web, rule spec.ingress[1]\n"
    );
    let e = view
        .explain(("shop", "web"), &db, 80, Protocol::Tcp)
        .unwrap();
    assert!(!e.allowed());
    assert_eq!(
        e.ingress.decision,
        Decision::Denied {
            policies: vec!["shop/db-from-web".into(), "shop/deny".into()]
        }
    );
    assert!(e.to_string().contains(
        "denied: isolated for ingress by networkpolicy shop/db-from-web, shop/deny and no rule allows this"
    ));
    // To an address: a pod's is judged as that pod; another is no pod.
    let e = view
        .explain(
            ("ops", "tool"),
            &Target::Address(ip("10.244.2.3")),
            1,
            Protocol::Udp,
        )
        .unwrap();
    assert_eq!(e.ingress.pod.as_deref(), Some("shop/db"));
    // A podSelector alone names pods of the policy's namespace only: ops's
    // app=tool is not shop's.
    assert!(!e.allowed());
    let e = view
        .explain(
            ("shop", "db"),
            &Target::Address(ip("192.0.2.1")),
            53,
            Protocol::Udp,
        )
        .unwrap();
    assert_eq!(e.ingress.decision, Decision::NotAPod);
    assert!(e.to_string().contains("the destination is not a pod"));
}

#[test]
fn explain_refuses_unknown_pods_precisely() {
    let (namespaces, pods) = cluster();
    let view = PolicyView::new(&namespaces, &pods, &[]);
    let to = Target::Address(ip("10.244.2.3"));
    let err = |from: (&str, &str)| {
        view.explain(from, &to, 80, Protocol::Tcp)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(err(("nope", "web")), "namespaces \"nope\" not found");
    assert_eq!(
        err(("shop", "nope")),
        "pods \"nope\" not found in namespace \"shop\""
    );
    assert!(
        err(("shop", "pending")).contains("has no address"),
        "{}",
        err(("shop", "pending"))
    );
    assert!(err(("shop", "done")).contains("has no address"));
    let e = view
        .explain(
            ("shop", "db"),
            &Target::Address(ip("fd00::9")),
            80,
            Protocol::Tcp,
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "pod shop/db has no IPv6 address to reach fd00::9"
    );
}

#[test]
fn port_syntax() {
    assert_eq!(parse_port("80/TCP"), Ok((80, Protocol::Tcp)));
    assert_eq!(parse_port("53/udp"), Ok((53, Protocol::Udp)));
    assert_eq!(parse_port("8080"), Ok((8080, Protocol::Tcp)));
    for bad in ["0/TCP", "70000/TCP", "http/TCP", "80/ICMP", "", "/TCP"] {
        assert!(parse_port(bad).is_err(), "{bad}");
    }
    assert!(parse_port("80/SCTP")
        .unwrap_err()
        .contains("weft does not support SCTP"));
}
