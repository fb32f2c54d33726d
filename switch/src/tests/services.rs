//! Conntrack and service translation inside the decision (`services.rs`):
//! a pod and the host reach a ClusterIP and leave for the endpoint's peer
//! or port, replies from peers and local pods come back from the VIP,
//! rejects go back at once and are counted, a VIP port not served is
//! refused, hairpin, a TSO super-packet decided once, and a switch without
//! services untouched.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::conntrack::{ConntrackConfig, HashSeed};
use crate::service::{
    EndpointPort, EndpointSpec, Protocol, ServicePort, ServiceSpec, ServiceTable, TranslatorConfig,
};
use crate::testing::{as_partial, pattern, pkt};
use crate::wire::tcp_flags::{ACK, RST, SYN};
use crate::wire::vnet::GSO_TCPV4;
use crate::wire::{TcpPacket, Transport};

pub(super) const VIP: &str = "10.96.0.20";
const EMPTY_VIP: &str = "10.96.0.30";

pub(super) fn endpoint(addr: &str, port: u16, local: bool) -> EndpointSpec {
    EndpointSpec {
        address: ip(addr),
        local,
        ports: vec![EndpointPort {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port,
        }],
        ..EndpointSpec::default()
    }
}

pub(super) fn service(name: &str, vip: &str, endpoints: Vec<EndpointSpec>) -> ServiceSpec {
    ServiceSpec {
        namespace: "shop".into(),
        name: name.into(),
        cluster_ips: vec![ip(vip)],
        ports: vec![ServicePort {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port: 80,
            node_port: None,
        }],
        endpoints,
        ..ServiceSpec::default()
    }
}

/// The test node with services on and `specs` in force.
pub(super) fn with_services(specs: &[ServiceSpec]) -> Harness {
    let mut sw = configured();
    sw.enable_services(
        ServicesConfig {
            conntrack: ConntrackConfig {
                capacity: 1024,
                ..ConntrackConfig::default()
            },
            translator: TranslatorConfig::default(),
            conntrack_seed: HashSeed(1, 2),
            affinity_seed: HashSeed(3, 4),
            random_seed: [9; 32],
        },
        t0(),
    );
    assert!(sw.set_service_table(Arc::new(ServiceTable::compile(specs).unwrap())));
    Harness::with(sw)
}

pub(super) fn tcp(src: &str, sport: u16, dst: &str, dport: u16, flags: u8) -> Vec<u8> {
    let mut f = pkt(src, dst).tcp(sport, dport);
    f.flags = flags;
    f.build()
}

/// `(src, sport, dst, dport)` of the last packet handled.
fn flow_of(b: &[u8]) -> (IpAddr, u16, IpAddr, u16) {
    let p = IpPacket::new_checked(b).unwrap();
    match p.transport().unwrap() {
        Transport::Tcp { src_port, dst_port } | Transport::Udp { src_port, dst_port } => {
            (p.src_addr(), src_port, p.dst_addr(), dst_port)
        }
        t => panic!("{t:?}"),
    }
}

#[test]
fn a_pod_reaches_a_cluster_ip_on_another_node_and_the_reply_comes_from_the_vip() {
    // The one endpoint is behind peer 1.
    let mut h = with_services(&[service("web", VIP, vec![endpoint(PEER1_POD4, 8080, false)])]);
    let a = h.pod(A, tcp(POD_A4, 40000, VIP, 80, SYN));
    assert_eq!(a, Action::ToPeer(P1));
    assert!(valid(&h.last), "checksums after translation");
    // The client's address is kept (no SNAT).
    assert_eq!(flow_of(&h.last), (ip(POD_A4), 40000, ip(PEER1_POD4), 8080));
    // The endpoint answers through peer 1: back to the pod, from the VIP.
    let a = h.peer(P1, tcp(PEER1_POD4, 8080, POD_A4, 40000, SYN | ACK));
    assert_eq!(a, Action::ToPort(A));
    assert!(valid(&h.last));
    assert_eq!(flow_of(&h.last), (ip(VIP), 80, ip(POD_A4), 40000));
    // Later packets take the same entry: one entry, one translation.
    let a = h.pod(A, tcp(POD_A4, 40000, VIP, 80, ACK));
    assert_eq!(a, Action::ToPeer(P1));
    let st = h.sw.services_status().unwrap();
    assert_eq!(st.translation.translations, 1);
    assert_eq!(st.conntrack.entries, 1);
    assert_eq!((st.services, st.frontends), (1, 1));
    assert_eq!(h.sw.counters().forwarded_to_peer(), 2);
}

#[test]
fn the_host_reaches_a_cluster_ip_and_a_local_endpoint_answers_it() {
    let mut h = with_services(&[service("web", VIP, vec![endpoint(POD_B4, 8080, true)])]);
    let a = h.host(tcp(HOST4, 50000, VIP, 80, SYN));
    assert_eq!(a, Action::ToPort(B));
    assert_eq!(flow_of(&h.last), (ip(HOST4), 50000, ip(POD_B4), 8080));
    let a = h.pod(B, tcp(POD_B4, 8080, HOST4, 50000, SYN | ACK));
    assert_eq!(a, Action::ToHost);
    assert!(valid(&h.last));
    assert_eq!(flow_of(&h.last), (ip(VIP), 80, ip(HOST4), 50000));
}

#[test]
fn no_endpoint_is_answered_with_a_reset_at_once_and_counted() {
    let mut h = with_services(&[service("empty", EMPTY_VIP, vec![])]);
    let a = h.pod(A, tcp(POD_A4, 40001, EMPTY_VIP, 80, SYN));
    let reply = h.reply(a);
    assert_eq!(reply.src_addr(), ip(EMPTY_VIP));
    assert_eq!(reply.dst_addr(), ip(POD_A4));
    let t = TcpPacket::new_checked(reply.payload()).unwrap();
    assert_ne!(t.flags() & RST, 0, "a reset");
    assert_eq!((t.src_port(), t.dst_port()), (80, 40001));
    assert_eq!(h.dropped(DropReason::ServiceNoEndpoints), 1);
    // UDP to it: ICMP port unreachable.
    let a = h.pod(A, pkt(POD_A4, EMPTY_VIP).udp(5000, 80).build());
    assert!(matches!(
        h.reply(a).transport().unwrap(),
        Transport::Icmpv4 { ty: 3, code: 3, .. }
    ));
    let st = h.sw.services_status().unwrap();
    // (the Service has no UDP port 80: refused as an unknown port)
    assert_eq!(st.translation.no_endpoint_rejects, 1);
    assert_eq!(st.translation.unknown_port_rejects, 1);
    assert_eq!(st.conntrack.entries, 0, "a reject leaves no entry");
}

#[test]
fn a_vip_port_not_served_is_refused_and_counted_never_routed() {
    let mut h = with_services(&[service("web", VIP, vec![endpoint(PEER1_POD4, 8080, false)])]);
    let a = h.pod(A, tcp(POD_A4, 40002, VIP, 81, SYN));
    assert!(matches!(a, Action::Reply(_)));
    assert_eq!(h.dropped(DropReason::ServiceUnknownPort), 1);
    // A segment that cannot open a connection, to the VIP: dropped.
    let a = h.pod(A, tcp(POD_A4, 40003, VIP, 80, ACK));
    assert_eq!(a, Action::Drop(DropReason::ServiceInvalid));
    // From a peer: never translated here.
    let a = h.peer(P1, tcp(PEER1_POD4, 40004, VIP, 80, SYN));
    assert_eq!(a, Action::Drop(DropReason::ServiceInvalid));
}

#[test]
fn a_pod_reaches_itself_through_its_service_by_hairpin() {
    let mut h = with_services(&[service("web", VIP, vec![endpoint(POD_A4, 8080, true)])]);
    let a = h.pod(A, tcp(POD_A4, 40005, VIP, 80, SYN));
    assert_eq!(a, Action::ToPort(A));
    let (src, sport, dst, dport) = flow_of(&h.last);
    assert_eq!((src, dst, dport), (ip(HOST4), ip(POD_A4), 8080));
    // The pod answers the node's address; it gets it back from the VIP.
    let a = h.pod(A, tcp(POD_A4, 8080, HOST4, sport, SYN | ACK));
    assert_eq!(a, Action::ToPort(A));
    assert_eq!(flow_of(&h.last), (ip(VIP), 80, ip(POD_A4), 40005));
    assert_eq!(h.sw.services_status().unwrap().translation.hairpins, 1);
}

#[test]
fn a_tso_super_packet_is_translated_with_one_lookup() {
    let mut h = with_services(&[service("web", VIP, vec![endpoint(PEER1_POD4, 8080, false)])]);
    h.pod(A, tcp(POD_A4, 40006, VIP, 80, SYN));
    let mut f = pkt(POD_A4, VIP).tcp(40006, 80).payload(&pattern(14_000, 1));
    f.flags = ACK;
    let (hdr, b) = as_partial(f.build(), GSO_TCPV4, 1400);
    let a = h.pod_gso(A, b, &hdr);
    assert_eq!(a, Action::ToPeer(P1));
    assert_eq!(flow_of(&h.last), (ip(POD_A4), 40006, ip(PEER1_POD4), 8080));
    let mut segs = Vec::new();
    crate::offload::segment(&mut h.last, &hdr, 1500, |s| segs.push(s.to_vec())).unwrap();
    assert_eq!(segs.len(), 10);
    assert!(segs.iter().all(|s| valid(s)), "every segment's checksum");
    let ct = h.sw.conntrack().unwrap();
    let (_, e) = ct.iter().next().unwrap();
    assert_eq!(e.packets(crate::conntrack::Dir::Original), 11);
}

#[test]
fn pod_to_pod_flows_are_tracked_untranslated_and_expire() {
    let mut h = with_services(&[service("web", VIP, vec![endpoint(PEER1_POD4, 8080, false)])]);
    let a = h.pod(A, pkt(POD_A4, PEER1_POD4).udp(7000, 7001).build());
    assert_eq!(a, Action::ToPeer(P1));
    assert_eq!(flow_of(&h.last), (ip(POD_A4), 7000, ip(PEER1_POD4), 7001));
    assert_eq!(h.sw.conntrack().unwrap().len(), 1);
    // UDP's 30 s pass: the engine's timer reclaims the entry.
    assert_eq!(h.sw.expire_conntrack(t0() + Duration::from_secs(31), 64), 1);
    assert_eq!(h.sw.conntrack().unwrap().len(), 0);
}

#[test]
fn without_services_the_decision_is_unchanged() {
    let mut h = Harness::new();
    assert!(!h.sw.set_service_table(Arc::new(ServiceTable::default())));
    assert!(h.sw.services_status().is_none());
    // A Service address is just an address with no route here.
    let a = h.pod(A, tcp(POD_A4, 40007, VIP, 80, SYN));
    assert!(matches!(a, Action::Reply(_)));
    assert_eq!(h.dropped(DropReason::NoRoute), 1);
    let a = h.pod(A, tcp(POD_A4, 40008, PEER1_POD4, 80, SYN));
    assert_eq!(a, Action::ToPeer(P1));
}

#[test]
fn a_pod_reaches_a_service_and_its_endpoint_from_one_source_port() {
    // Linux may give two connections to different destinations the same
    // source port: after translation their reply tuples would be one.
    let mut h = with_services(&[service("web", VIP, vec![endpoint(POD_B4, 8080, true)])]);
    assert_eq!(
        h.pod(A, tcp(POD_A4, 40000, VIP, 80, SYN)),
        Action::ToPort(B)
    );
    assert_eq!(flow_of(&h.last), (ip(POD_A4), 40000, ip(POD_B4), 8080));
    // The same source port straight to the endpoint: moved to a free one.
    assert_eq!(
        h.pod(A, tcp(POD_A4, 40000, POD_B4, 8080, SYN)),
        Action::ToPort(B)
    );
    assert!(valid(&h.last));
    let (src, moved, dst, dport) = flow_of(&h.last);
    assert_eq!((src, dst, dport), (ip(POD_A4), ip(POD_B4), 8080));
    assert_ne!(moved, 40000);
    // Each connection's replies go back to its own socket.
    assert_eq!(
        h.pod(B, tcp(POD_B4, 8080, POD_A4, moved, SYN | ACK)),
        Action::ToPort(A)
    );
    assert!(valid(&h.last));
    assert_eq!(flow_of(&h.last), (ip(POD_B4), 8080, ip(POD_A4), 40000));
    assert_eq!(
        h.pod(B, tcp(POD_B4, 8080, POD_A4, 40000, SYN | ACK)),
        Action::ToPort(A)
    );
    assert_eq!(flow_of(&h.last), (ip(VIP), 80, ip(POD_A4), 40000));
    let st = h.sw.services_status().unwrap();
    assert_eq!(st.translation.source_ports_remapped, 1);
    assert_eq!(h.dropped(DropReason::ConntrackKeyTaken), 0);
}
