//! The compiled table (endpoint sets, traffic policies, conflicts,
//! health checks) and the endpoint choice (spread, affinity).

use std::collections::HashMap;
use std::time::Duration;

use super::support::*;
use crate::service::*;

const TCP: u8 = 6;
const UDP: u8 = 17;

fn endpoints(t: &ServiceTable, f: Frontend, origin: Origin) -> Vec<String> {
    match t.candidates(f, origin) {
        Candidates::Endpoints(set) => set.iter().map(|e| e.to_string()).collect(),
        other => vec![format!("{other:?}")],
    }
}

#[test]
fn a_cluster_ip_maps_to_its_ready_endpoints_target_ports() {
    let mut s = svc("default", "web", "10.96.0.20", 80, Protocol::Tcp);
    s.endpoints = vec![
        ep("10.244.2.5", "p", Protocol::Tcp, 8080),
        ep("10.244.1.7", "p", Protocol::Tcp, 8081),
        // Not ready, not terminating: unused.
        EndpointSpec {
            ready: false,
            serving: false,
            ..ep("10.244.3.9", "p", Protocol::Tcp, 8080)
        },
        // Another port's endpoint, and a UDP one of the same name: unused.
        ep("10.244.3.10", "other", Protocol::Tcp, 9000),
        ep("10.244.3.11", "p", Protocol::Udp, 8080),
    ];
    let t = ServiceTable::compile(&[s]).unwrap();
    let f = t.frontend(TCP, sa("10.96.0.20:80")).unwrap();
    assert_eq!(f.kind, FrontendKind::ClusterIp);
    assert_eq!(
        endpoints(&t, f, Origin::Internal),
        ["10.244.1.7:8081", "10.244.2.5:8080"]
    );
    assert_eq!(t.frontend(UDP, sa("10.96.0.20:80")), None);
    assert_eq!(t.frontend(TCP, sa("10.96.0.20:81")), None);
    assert!(t.is_vip(ip("10.96.0.20")));
    assert!(!t.is_vip(ip("10.96.0.21")));
    assert_eq!(t.service_name(f), Some(("default", "web")));
    assert!(t.problems().is_empty());
}

#[test]
fn terminating_endpoints_serve_only_when_nothing_is_ready() {
    let terminating = |a: &str| EndpointSpec {
        ready: false,
        serving: true,
        terminating: true,
        ..ep(a, "p", Protocol::Tcp, 80)
    };
    let mut s = svc("ns", "a", "10.96.0.30", 80, Protocol::Tcp);
    s.endpoints = vec![
        ep("10.244.2.1", "p", Protocol::Tcp, 80),
        terminating("10.244.2.2"),
    ];
    let t = ServiceTable::compile(&[s.clone()]).unwrap();
    let f = t.frontend(TCP, sa("10.96.0.30:80")).unwrap();
    assert_eq!(endpoints(&t, f, Origin::Internal), ["10.244.2.1:80"]);
    // Existing flows may stay on the terminating one.
    assert!(t.still_listed(f, sa("10.244.2.2:80")));
    assert!(!t.still_listed(f, sa("10.244.2.3:80")));

    s.endpoints = vec![terminating("10.244.2.2")];
    let t = ServiceTable::compile(&[s.clone()]).unwrap();
    let f = t.frontend(TCP, sa("10.96.0.30:80")).unwrap();
    assert_eq!(endpoints(&t, f, Origin::Internal), ["10.244.2.2:80"]);

    // Terminating and no longer serving: no endpoint at all.
    s.endpoints = vec![EndpointSpec {
        serving: false,
        ..terminating("10.244.2.2")
    }];
    let t = ServiceTable::compile(&[s]).unwrap();
    let f = t.frontend(TCP, sa("10.96.0.30:80")).unwrap();
    assert_eq!(t.candidates(f, Origin::Internal), Candidates::NoEndpoints);
    assert!(!t.still_listed(f, sa("10.244.2.2:80")));
}

#[test]
fn internal_traffic_policy_local_uses_this_nodes_endpoints_or_drops() {
    let local = |a: &str| EndpointSpec {
        local: true,
        ..ep(a, "p", Protocol::Udp, 53)
    };
    let mut s = svc("ns", "dns", "10.96.0.40", 53, Protocol::Udp);
    s.internal_traffic_policy = TrafficPolicy::Local;
    s.endpoints = vec![
        local("10.244.1.5"),
        ep("10.244.2.5", "p", Protocol::Udp, 53),
    ];
    let t = ServiceTable::compile(&[s.clone()]).unwrap();
    let f = t.frontend(UDP, sa("10.96.0.40:53")).unwrap();
    assert_eq!(endpoints(&t, f, Origin::Internal), ["10.244.1.5:53"]);

    // Endpoints elsewhere only: dropped, not rejected.
    s.endpoints = vec![ep("10.244.2.5", "p", Protocol::Udp, 53)];
    let t = ServiceTable::compile(&[s.clone()]).unwrap();
    let f = t.frontend(UDP, sa("10.96.0.40:53")).unwrap();
    assert_eq!(
        t.candidates(f, Origin::Internal),
        Candidates::NoLocalEndpoints
    );

    // None anywhere: rejected.
    s.endpoints.clear();
    let t = ServiceTable::compile(&[s]).unwrap();
    let f = t.frontend(UDP, sa("10.96.0.40:53")).unwrap();
    assert_eq!(t.candidates(f, Origin::Internal), Candidates::NoEndpoints);
}

#[test]
fn external_traffic_policy_applies_to_outside_clients_only() {
    let mut s = svc("ns", "lb", "10.96.0.50", 443, Protocol::Tcp);
    s.external_ips = vec![ip("192.0.2.10")];
    s.load_balancer_ips = vec![ip("198.51.100.7")];
    s.ports[0].node_port = Some(30443);
    s.external_traffic_policy = TrafficPolicy::Local;
    s.health_check_node_port = Some(32000);
    s.endpoints = vec![
        EndpointSpec {
            local: true,
            ..ep("10.244.1.5", "p", Protocol::Tcp, 8443)
        },
        ep("10.244.2.5", "p", Protocol::Tcp, 8443),
    ];
    let t = ServiceTable::compile(&[s]).unwrap();
    let both = ["10.244.1.5:8443", "10.244.2.5:8443"];
    let cluster_ip = t.frontend(TCP, sa("10.96.0.50:443")).unwrap();
    let external = t.frontend(TCP, sa("192.0.2.10:443")).unwrap();
    let lb = t.frontend(TCP, sa("198.51.100.7:443")).unwrap();
    let node_port = t.node_port(TCP, 30443, false).unwrap();
    assert_eq!(external.kind, FrontendKind::ExternalIp);
    assert_eq!(lb.kind, FrontendKind::LoadBalancer);
    assert_eq!(node_port.kind, FrontendKind::NodePort);
    assert_eq!(t.node_port(TCP, 30443, true), None, "no IPv6 cluster IP");
    assert_eq!(t.node_port(UDP, 30443, false), None);
    // ETP does not touch the cluster IP, nor in-cluster clients.
    for f in [cluster_ip, external, lb, node_port] {
        assert_eq!(endpoints(&t, f, Origin::Internal), both);
    }
    for f in [external, lb, node_port] {
        assert_eq!(endpoints(&t, f, Origin::External), ["10.244.1.5:8443"]);
    }
    let hc: Vec<_> = t.health_checks().collect();
    assert_eq!(hc.len(), 1);
    assert_eq!((hc[0].node_port, hc[0].local_endpoints), (32000, 1));
    let (status, body) = hc[0].response(true);
    assert_eq!(status, 200);
    assert_eq!(
        body,
        r#"{"service":{"namespace":"ns","name":"lb"},"localEndpoints":1,"serviceProxyHealthy":true}"#
    );
    assert_eq!(hc[0].response(false).0, 503);
}

#[test]
fn health_checks_count_distinct_ready_local_endpoints_only() {
    let mut s = svc("ns", "hc", "10.96.0.51", 80, Protocol::Tcp);
    s.health_check_node_port = Some(32001);
    let local = |a: &str, ready: bool| EndpointSpec {
        local: true,
        ready,
        serving: ready,
        ..ep(a, "p", Protocol::Tcp, 80)
    };
    s.endpoints = vec![
        local("10.244.1.5", false),
        ep("10.244.2.5", "p", Protocol::Tcp, 80),
    ];
    let t = ServiceTable::compile(&[s.clone()]).unwrap();
    let hc = t.health_checks().next().unwrap();
    assert_eq!(hc.local_endpoints, 0);
    assert_eq!(hc.response(true).0, 503);
    s.endpoints.push(local("10.244.1.6", true));
    // The same address in two slices counts once.
    s.endpoints.push(local("10.244.1.6", true));
    let t = ServiceTable::compile(&[s]).unwrap();
    assert_eq!(t.health_checks().next().unwrap().local_endpoints, 1);
}

#[test]
fn dual_stack_frontends_keep_to_their_family() {
    let mut s = svc("ns", "ds", "10.96.0.60", 80, Protocol::Tcp);
    s.cluster_ips.push(ip("fd00:96::60"));
    s.ports[0].node_port = Some(30080);
    s.endpoints = vec![
        ep("10.244.1.5", "p", Protocol::Tcp, 80),
        ep("fd00:244:1::5", "p", Protocol::Tcp, 80),
    ];
    let t = ServiceTable::compile(&[s]).unwrap();
    let v4 = t.frontend(TCP, sa("10.96.0.60:80")).unwrap();
    let v6 = t.frontend(TCP, sa("[fd00:96::60]:80")).unwrap();
    assert_eq!(endpoints(&t, v4, Origin::Internal), ["10.244.1.5:80"]);
    assert_eq!(endpoints(&t, v6, Origin::Internal), ["[fd00:244:1::5]:80"]);
    let np6 = t.node_port(TCP, 30080, true).unwrap();
    assert_eq!(endpoints(&t, np6, Origin::External), ["[fd00:244:1::5]:80"]);
}

#[test]
fn services_another_proxy_owns_headless_ones_and_sctp_are_not_translated() {
    let mut owned = svc("ns", "owned", "10.96.0.70", 80, Protocol::Tcp);
    owned
        .labels
        .insert(LABEL_SERVICE_PROXY_NAME.into(), "other".into());
    let mut labelled = svc("ns", "labelled", "10.96.0.71", 80, Protocol::Tcp);
    labelled.labels.insert(LABEL_HEADLESS.into(), String::new());
    let mut headless = svc("ns", "headless", "10.96.0.72", 80, Protocol::Tcp);
    headless.cluster_ips.clear();
    let sctp = svc("ns", "sctp", "10.96.0.73", 80, Protocol::Sctp);
    let t = ServiceTable::compile(&[owned, labelled, headless, sctp]).unwrap();
    for vip in ["10.96.0.70", "10.96.0.71", "10.96.0.72", "10.96.0.73"] {
        assert!(!t.is_vip(ip(vip)), "{vip}");
    }
    assert_eq!(
        t.problems(),
        [Problem::SctpUnsupported {
            service: "ns/sctp".into(),
            port: 80
        }]
    );
}

#[test]
fn a_frontend_claimed_twice_goes_to_the_first_service_by_name() {
    let mut b = svc("ns", "b", "10.96.0.81", 80, Protocol::Tcp);
    b.external_ips = vec![ip("192.0.2.1")];
    b.endpoints = vec![ep("10.244.2.2", "p", Protocol::Tcp, 80)];
    let mut a = svc("ns", "a", "10.96.0.80", 80, Protocol::Tcp);
    a.external_ips = vec![ip("192.0.2.1")];
    a.endpoints = vec![ep("10.244.2.1", "p", Protocol::Tcp, 80)];
    // Given in the other order: the result does not depend on it.
    let t = ServiceTable::compile(&[b, a]).unwrap();
    let f = t.frontend(TCP, sa("192.0.2.1:80")).unwrap();
    assert_eq!(t.service_name(f), Some(("ns", "a")));
    assert_eq!(
        t.problems(),
        [Problem::FrontendTaken {
            service: "ns/b".into(),
            frontend: "192.0.2.1:80".into(),
            owner: "ns/a".into()
        }]
    );
    // Each keeps its own cluster IP.
    assert!(t.frontend(TCP, sa("10.96.0.81:80")).is_some());
}

#[test]
fn every_compile_has_a_new_generation() {
    let a = ServiceTable::compile(&[]).unwrap();
    let b = ServiceTable::compile(&[]).unwrap();
    assert_ne!(a.generation(), b.generation());
    assert_ne!(a.generation(), 0);
    assert_eq!(a.sizes(), (0, 0, 0));
}

fn spread_service(n: u8) -> ServiceSpec {
    let mut s = svc("ns", "spread", "10.96.0.90", 80, Protocol::Tcp);
    s.endpoints = (1..=n)
        .map(|i| ep(&format!("10.244.2.{i}"), "p", Protocol::Tcp, 80))
        .collect();
    s
}

#[test]
fn new_connections_spread_over_every_endpoint() {
    let now = t0();
    let t = ServiceTable::compile(&[spread_service(4)]).unwrap();
    let f = t.frontend(TCP, sa("10.96.0.90:80")).unwrap();
    let mut tr = translator(now);
    let mut seen: HashMap<String, u32> = HashMap::new();
    for _ in 0..4000 {
        match tr.choose(&t, f, Origin::Internal, ip("10.244.1.2"), now) {
            Choice::Endpoint(e) => *seen.entry(e.to_string()).or_default() += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(seen.len(), 4);
    // Uniform: 1000 each expected; 800 is more than 6 sigma away.
    for (e, n) in &seen {
        assert!(*n > 800 && *n < 1200, "{e}: {n}");
    }
    assert_eq!(tr.stats().affinity_hits, 0);
}

#[test]
fn client_ip_affinity_sticks_until_its_timeout_and_follows_endpoint_removal() {
    let now = t0();
    let mut s = spread_service(8);
    s.session_affinity = SessionAffinity::ClientIp {
        timeout: Duration::from_secs(10),
    };
    let t = ServiceTable::compile(&[s.clone()]).unwrap();
    let f = t.frontend(TCP, sa("10.96.0.90:80")).unwrap();
    let mut tr = translator(now);
    let client = ip("10.244.1.2");
    let first = tr.choose(&t, f, Origin::Internal, client, now);
    // Each new connection within the timeout refreshes it: 9 s apart,
    // for a minute.
    for i in 1..=7u64 {
        let at = now + Duration::from_secs(9 * i);
        assert_eq!(tr.choose(&t, f, Origin::Internal, client, at), first);
    }
    assert_eq!(tr.stats().affinity_hits, 7);
    // Other clients spread.
    let others: std::collections::HashSet<_> = (0..200u8)
        .map(|i| tr.choose(&t, f, Origin::Internal, ip(&format!("10.244.3.{i}")), now))
        .collect();
    assert!(others.len() > 1);
    // Idle past the timeout: chosen afresh (over 50 tries, at least one
    // differs from the old endpoint).
    let mut changed = false;
    for i in 0..50u64 {
        let c = ip(&format!("10.244.4.{i}"));
        let a = tr.choose(&t, f, Origin::Internal, c, now);
        let b = tr.choose(&t, f, Origin::Internal, c, now + Duration::from_secs(11));
        changed |= a != b;
    }
    assert!(changed);
    // The endpoint removed: the next connection moves, and sticks there.
    let Choice::Endpoint(old) = first else {
        panic!("{first:?}")
    };
    s.endpoints.retain(|e| e.address != old.ip());
    let t2 = ServiceTable::compile(&[s]).unwrap();
    let f2 = t2.frontend(TCP, sa("10.96.0.90:80")).unwrap();
    let at = now + Duration::from_secs(64);
    let moved = tr.choose(&t2, f2, Origin::Internal, client, at);
    assert_ne!(moved, first);
    assert_eq!(tr.choose(&t2, f2, Origin::Internal, client, at), moved);
}
