//! NetworkPolicy inside the decision (`policing.rs`): judged once per
//! connection on the translated addresses, replies pass both ways, the
//! node's own host reaches isolated pods, a pod reaches itself through its
//! Service, a table change judges established connections again, per
//! policy counters follow names, and denied new connections are recorded
//! for the log at a bounded rate.

use std::sync::Arc;

use super::services::{endpoint, service, tcp, with_services, VIP};
use super::*;
use crate::policy::Verdict;
use crate::policy::{
    Direction, PeerSpec, PolicySpec, PolicyTable, PortRange, PortsSpec, Protocol, RuleSpec,
};
use crate::testing::pkt;
use crate::wire::tcp_flags::{ACK, SYN};

fn tcp_ports(ports: &[u16]) -> PortsSpec {
    PortsSpec::Ranges(
        ports
            .iter()
            .map(|p| PortRange {
                protocol: Protocol::Tcp,
                port: *p,
                end: *p,
            })
            .collect(),
    )
}

fn from(addr: &str, ports: PortsSpec) -> RuleSpec {
    RuleSpec {
        peers: Some(vec![PeerSpec {
            prefix: IpNet::from(ip(addr)),
            except: vec![],
            ports: None,
        }]),
        ports,
    }
}

/// A policy isolating `pod` for ingress with `rules`.
fn ingress(name: &str, pod: &str, rules: Vec<RuleSpec>) -> PolicySpec {
    PolicySpec {
        name: name.into(),
        ingress: Some(vec![(ip(pod), rules)]),
        egress: None,
    }
}

/// A policy isolating `pod` for egress with `rules`.
fn egress(name: &str, pod: &str, rules: Vec<RuleSpec>) -> PolicySpec {
    PolicySpec {
        name: name.into(),
        ingress: None,
        egress: Some((vec![ip(pod)], rules)),
    }
}

fn set(h: &mut Harness, policies: &[PolicySpec]) {
    assert!(h
        .sw
        .set_policy_table(Arc::new(PolicyTable::compile(policies))));
}

/// A node with pod B behind Service VIP:80 -> 8080.
fn node() -> Harness {
    with_services(&[service("web", VIP, vec![endpoint(POD_B4, 8080, true)])])
}

fn counters<'a>(status: &'a PolicyStatus, name: &str) -> &'a PolicyCounters {
    &status
        .by_policy
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{name} in {status:?}"))
        .1
}

#[test]
fn an_isolated_pod_is_unreachable_except_from_its_own_node() {
    let mut h = node();
    set(&mut h, &[ingress("x/deny", POD_B4, vec![])]);
    let a = h.pod(A, tcp(POD_A4, 40000, POD_B4, 8080, SYN));
    assert_eq!(a, Action::Drop(DropReason::PolicyDenied));
    // The retransmission reuses the verdict: judged once.
    let a = h.pod(A, tcp(POD_A4, 40000, POD_B4, 8080, SYN));
    assert_eq!(a, Action::Drop(DropReason::PolicyDenied));
    // Through the Service too: judged on the endpoint.
    let a = h.pod(A, tcp(POD_A4, 40001, VIP, 80, SYN));
    assert_eq!(a, Action::Drop(DropReason::PolicyDenied));
    // The kubelet's probe from the node itself passes.
    let a = h.host(tcp(HOST4, 50000, POD_B4, 8080, SYN));
    assert_eq!(a, Action::ToPort(B));
    // A peer's pod does not.
    let a = h.peer(P1, tcp(PEER1_POD4, 40002, POD_B4, 8080, SYN));
    assert_eq!(a, Action::Drop(DropReason::PolicyDenied));

    let st = h.sw.policy_status().unwrap();
    assert_eq!(counters(&st, "x/deny").denied, 3);
    assert_eq!((st.denied, st.judged), (3, 4));
    assert_eq!(h.dropped(DropReason::PolicyDenied), 4);
    let mut denials = Vec::new();
    h.sw.take_denials(&mut denials);
    assert_eq!(denials.len(), 3);
    assert_eq!(
        denials[1],
        Denial {
            src: ip(POD_A4),
            dst: ip(POD_B4),
            proto: 6,
            port: 8080,
            direction: Direction::Ingress,
            policy: "x/deny".into(),
        }
    );
    h.sw.take_denials(&mut denials);
    assert_eq!(denials.len(), 3, "taken once");
}

#[test]
fn an_allowed_connection_passes_both_ways_and_other_ports_do_not() {
    let mut h = node();
    set(
        &mut h,
        &[
            ingress("x/allow-a", POD_B4, vec![from(POD_A4, tcp_ports(&[8080]))]),
            // B may send nothing on its own: its replies still pass.
            egress("x/b-quiet", POD_B4, vec![]),
        ],
    );
    assert_eq!(
        h.pod(A, tcp(POD_A4, 40000, POD_B4, 8080, SYN)),
        Action::ToPort(B)
    );
    assert_eq!(
        h.pod(B, tcp(POD_B4, 8080, POD_A4, 40000, SYN | ACK)),
        Action::ToPort(A)
    );
    assert_eq!(
        h.pod(A, tcp(POD_A4, 40000, POD_B4, 8080, ACK)),
        Action::ToPort(B)
    );
    assert_eq!(
        h.pod(A, tcp(POD_A4, 40001, POD_B4, 9090, SYN)),
        Action::Drop(DropReason::PolicyDenied)
    );
    // B starting a connection is its egress: denied.
    assert_eq!(
        h.pod(B, tcp(POD_B4, 40002, POD_A4, 80, SYN)),
        Action::Drop(DropReason::PolicyDenied)
    );
    let st = h.sw.policy_status().unwrap();
    assert_eq!(counters(&st, "x/allow-a").allowed, 1);
    assert_eq!(counters(&st, "x/allow-a").denied, 1);
    assert_eq!(counters(&st, "x/b-quiet").denied, 1);
}

#[test]
fn a_service_connection_is_judged_on_the_endpoint_and_its_target_port() {
    let mut h = node();
    // Port 80 is the Service's port, not the pod's: it allows nothing.
    set(
        &mut h,
        &[ingress(
            "x/p80",
            POD_B4,
            vec![from(POD_A4, tcp_ports(&[80]))],
        )],
    );
    assert_eq!(
        h.pod(A, tcp(POD_A4, 40000, VIP, 80, SYN)),
        Action::Drop(DropReason::PolicyDenied)
    );
    set(
        &mut h,
        &[ingress(
            "x/p8080",
            POD_B4,
            vec![from(POD_A4, tcp_ports(&[8080]))],
        )],
    );
    assert_eq!(
        h.pod(A, tcp(POD_A4, 40001, VIP, 80, SYN)),
        Action::ToPort(B)
    );
    // The client's own address is what the endpoint's policy saw: a rule
    // for another source does not allow it.
    set(
        &mut h,
        &[ingress(
            "x/other",
            POD_B4,
            vec![from(PEER1_POD4, PortsSpec::Any)],
        )],
    );
    assert_eq!(
        h.pod(A, tcp(POD_A4, 40002, VIP, 80, SYN)),
        Action::Drop(DropReason::PolicyDenied)
    );
}

#[test]
fn a_table_change_judges_established_connections_again() {
    let mut h = node();
    let allow = ingress("x/allow-a", POD_B4, vec![from(POD_A4, PortsSpec::Any)]);
    set(&mut h, std::slice::from_ref(&allow));
    assert_eq!(
        h.pod(A, tcp(POD_A4, 40000, POD_B4, 8080, SYN)),
        Action::ToPort(B)
    );
    // Denied now: the established connection is cut, both ways.
    set(&mut h, &[ingress("x/deny", POD_B4, vec![])]);
    assert_eq!(
        h.pod(A, tcp(POD_A4, 40000, POD_B4, 8080, ACK)),
        Action::Drop(DropReason::PolicyDenied)
    );
    assert_eq!(
        h.pod(B, tcp(POD_B4, 8080, POD_A4, 40000, ACK)),
        Action::Drop(DropReason::PolicyDenied)
    );
    // Allowed again: it passes, and the policy's counters went on.
    set(&mut h, &[allow]);
    assert_eq!(
        h.pod(B, tcp(POD_B4, 8080, POD_A4, 40000, ACK)),
        Action::ToPort(A)
    );
    let st = h.sw.policy_status().unwrap();
    assert_eq!(st.generation, 3);
    assert_eq!(counters(&st, "x/allow-a").allowed, 2);
    // Re-judging is not a new connection: only the first was logged.
    let mut denials = Vec::new();
    h.sw.take_denials(&mut denials);
    assert!(denials.is_empty(), "{denials:?}");
}

#[test]
fn egress_is_judged_on_the_source_node() {
    let mut h = node();
    set(
        &mut h,
        &[egress(
            "x/a-out",
            POD_A4,
            vec![from(PEER1_POD4, tcp_ports(&[80]))],
        )],
    );
    assert_eq!(
        h.pod(A, tcp(POD_A4, 40000, PEER1_POD4, 80, SYN)),
        Action::ToPeer(P1)
    );
    assert_eq!(
        h.pod(A, tcp(POD_A4, 40001, PEER2_POD4, 80, SYN)),
        Action::Drop(DropReason::PolicyDenied)
    );
    // B is not isolated.
    assert_eq!(
        h.pod(B, tcp(POD_B4, 40002, PEER2_POD4, 80, SYN)),
        Action::ToPeer(P2)
    );
    // A connection from a peer's pod to A is not A's egress.
    assert_eq!(
        h.peer(P2, tcp(PEER2_POD4, 40003, POD_A4, 80, SYN)),
        Action::ToPort(A)
    );
    assert_eq!(
        h.pod(A, tcp(POD_A4, 80, PEER2_POD4, 40003, SYN | ACK)),
        Action::ToPeer(P2)
    );
}

#[test]
fn a_pod_reaches_itself_through_its_service_whatever_the_policies() {
    let mut h = with_services(&[service("web", VIP, vec![endpoint(POD_A4, 8080, true)])]);
    set(
        &mut h,
        &[
            ingress("x/deny-in", POD_A4, vec![]),
            egress("x/deny-out", POD_A4, vec![]),
        ],
    );
    assert_eq!(
        h.pod(A, tcp(POD_A4, 40005, VIP, 80, SYN)),
        Action::ToPort(A)
    );
}

#[test]
fn untracked_packets_are_judged_one_by_one() {
    let mut h = node();
    set(
        &mut h,
        &[ingress(
            "x/web-only",
            POD_B4,
            vec![from(POD_A4, tcp_ports(&[8080]))],
        )],
    );
    // ICMP other than echo is not tracked: port 0 matches no port rule.
    // A timestamp request.
    let a = h.pod(A, pkt(POD_A4, POD_B4).icmp(13, 0).build());
    assert_eq!(a, Action::Drop(DropReason::PolicyDenied));
    let st = h.sw.policy_status().unwrap();
    assert_eq!((st.untracked_judged, st.untracked_denied), (1, 1));
}

#[test]
fn denials_are_recorded_for_the_log_at_a_bounded_rate() {
    let mut h = node();
    set(&mut h, &[ingress("x/deny", POD_B4, vec![])]);
    for i in 0..(DENIAL_LOG_BURST + 10) {
        let port = 30000 + u16::try_from(i).unwrap();
        let a = h.pod(A, tcp(POD_A4, port, POD_B4, 8080, SYN));
        assert_eq!(a, Action::Drop(DropReason::PolicyDenied));
    }
    let st = h.sw.policy_status().unwrap();
    assert_eq!(st.denials_unlogged, 10);
    let mut denials = Vec::new();
    h.sw.take_denials(&mut denials);
    assert_eq!(denials.len(), DENIAL_LOG_BURST as usize);
}

#[test]
fn without_connection_tracking_no_table_is_taken() {
    let mut sw = configured();
    assert!(!sw.set_policy_table(Arc::new(PolicyTable::compile(&[]))));
    assert!(sw.policy_status().is_none());
}

#[test]
fn a_trace_shows_translation_and_policy_and_changes_nothing() {
    let mut h = node();
    set(&mut h, &[ingress("x/deny", POD_B4, vec![])]);
    let packet = tcp(POD_A4, 40000, VIP, 80, SYN);
    let t = h.sw.trace(Ingress::Port(A), &packet, h.now).unwrap();
    assert_eq!(t.action, Action::Drop(DropReason::PolicyDenied));
    let svc = t.service.as_ref().unwrap();
    assert_eq!((svc.namespace.as_str(), svc.name.as_str()), ("shop", "web"));
    assert_eq!(svc.endpoints, vec!["10.244.1.3:8080".parse().unwrap()]);
    let p = t.policy.as_ref().unwrap();
    assert_eq!(p.slot.ingress, Some(Verdict::Denied { policy: 0 }));
    assert_eq!(p.ingress_policy.as_deref(), Some("x/deny"));
    assert_eq!((p.slot.egress, p.egress_policy.as_deref()), (None, None));
    assert!(!t.existing_connection);
    // Nothing happened to the switch itself.
    assert_eq!(h.sw.conntrack().unwrap().len(), 0);
    assert_eq!(h.dropped(DropReason::PolicyDenied), 0);
    assert_eq!(h.sw.policy_status().unwrap().judged, 0);

    // Allowed: the packet leaves for the endpoint.
    set(
        &mut h,
        &[ingress("x/a", POD_B4, vec![from(POD_A4, PortsSpec::Any)])],
    );
    let t = h.sw.trace(Ingress::Port(A), &packet, h.now).unwrap();
    assert_eq!(t.action, Action::ToPort(B));
    assert_eq!(t.out_dst, Some("10.244.1.3:8080".parse().unwrap()));
    assert_eq!(t.out_src, Some("10.244.1.2:40000".parse().unwrap()));
    assert_eq!(t.policy.unwrap().ingress_policy.as_deref(), Some("x/a"));
}

#[test]
fn probe_packets_are_valid_for_every_kind_and_family() {
    for (src, dst) in [
        ("10.244.1.2:40000", "10.244.2.5:80"),
        ("[fd00:244:1::2]:40000", "[fd00:244:2::5]:80"),
    ] {
        for kind in [ProbeKind::TcpSyn, ProbeKind::Udp, ProbeKind::Echo] {
            let p = probe_packet(src.parse().unwrap(), dst.parse().unwrap(), kind).unwrap();
            assert!(valid(&p), "{kind:?} {src}");
            let ip = IpPacket::new_checked(&p[..]).unwrap();
            assert_eq!(
                ip.dst_addr(),
                dst.parse::<std::net::SocketAddr>().unwrap().ip()
            );
        }
    }
    assert!(probe_packet(
        "10.244.1.2:1".parse().unwrap(),
        "[fd00::1]:1".parse().unwrap(),
        ProbeKind::Udp
    )
    .is_none());
}
