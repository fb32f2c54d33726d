//! The per-packet step on byte fixtures: translation and reverse
//! translation both families, checksums checked by the independent
//! oracle, rejects, hairpin, ICMP errors, endpoint removal, super-packets.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::support::*;
use crate::conntrack::{Conntrack, ConntrackConfig, Dir, HashSeed, Owner};
use crate::service::*;
use crate::testing::{pkt, valid, Fixture};
use crate::wire::{tcp_flags, IpPacket, L4Checksum, Transport};

pub(super) const SYN: u8 = tcp_flags::SYN;
pub(super) const ACK: u8 = tcp_flags::ACK;
pub(super) const SYNACK: u8 = tcp_flags::SYN | tcp_flags::ACK;

/// A node: its conntrack table, translator and service table.
pub(super) struct Node {
    pub(super) ct: Conntrack,
    pub(super) tr: Translator,
    pub(super) table: ServiceTable,
    pub(super) now: Instant,
}

impl Node {
    pub(super) fn new(services: &[ServiceSpec]) -> Self {
        let now = t0();
        Self {
            ct: Conntrack::new(ConntrackConfig::default(), HashSeed(3, 5), now),
            tr: translator(now),
            table: ServiceTable::compile(services).unwrap(),
            now,
        }
    }

    /// Hands `b` to the step as a local pod's (`local`) or a peer's
    /// packet with a full checksum.
    pub(super) fn send(&mut self, b: &mut [u8], local: bool) -> (Outcome, Vec<u8>) {
        self.send_as(b, local, L4Checksum::Full, 1)
    }

    pub(super) fn send_as(
        &mut self,
        b: &mut [u8],
        local: bool,
        checksum: L4Checksum,
        segments: u32,
    ) -> (Outcome, Vec<u8>) {
        let meta = PacketMeta {
            owner: Owner(1),
            local,
            checksum,
            segments,
        };
        let mut reply = vec![0u8; 1500];
        let out = self
            .tr
            .translate(&mut self.ct, &self.table, b, meta, &mut reply, self.now);
        if let Outcome::Reply { len, .. } = out {
            reply.truncate(len);
        } else {
            reply.clear();
        }
        (out, reply)
    }
}

/// `(src, src_port, dst, dst_port)` of a TCP or UDP packet.
pub(super) fn flow(b: &[u8]) -> (IpAddr, u16, IpAddr, u16) {
    let p = IpPacket::new_checked(b).unwrap();
    let (s, d) = match p.transport().unwrap() {
        Transport::Tcp { src_port, dst_port } | Transport::Udp { src_port, dst_port } => {
            (src_port, dst_port)
        }
        other => panic!("{other:?}"),
    };
    (p.src_addr(), s, p.dst_addr(), d)
}

pub(super) fn tcp(src: &str, sp: u16, dst: &str, dp: u16, flags: u8) -> Vec<u8> {
    let mut f: Fixture = pkt(src, dst).tcp(sp, dp).payload(b"GET / HTTP/1.1\r\n\r\n");
    f.flags = flags;
    f.seq = 1000;
    if flags & tcp_flags::SYN != 0 {
        f.payload.clear();
    }
    f.build()
}

pub(super) fn udp(src: &str, sp: u16, dst: &str, dp: u16) -> Vec<u8> {
    pkt(src, dst).udp(sp, dp).payload(b"query").build()
}

fn forwarded(o: Outcome) -> (Dir, bool) {
    match o {
        Outcome::Forward {
            entry: Some(_),
            dir,
            new,
        } => (dir, new),
        other => panic!("expected a tracked forward, got {other:?}"),
    }
}

/// `web` at 10.96.0.20:80/TCP and fd00:96::20, endpoints on two nodes.
pub(super) fn web() -> ServiceSpec {
    let mut s = svc("default", "web", "10.96.0.20", 80, Protocol::Tcp);
    s.cluster_ips.push(ip("fd00:96::20"));
    s.endpoints = vec![
        ep("10.244.2.7", "p", Protocol::Tcp, 8080),
        ep("fd00:244:2::7", "p", Protocol::Tcp, 8080),
    ];
    s
}

#[test]
fn a_tcp_connection_to_a_cluster_ip_is_translated_both_ways() {
    for (client, vip, endpoint) in [
        ("10.244.1.5", "10.96.0.20", "10.244.2.7"),
        ("fd00:244:1::5", "fd00:96::20", "fd00:244:2::7"),
    ] {
        let mut n = Node::new(&[web()]);
        let mut b = tcp(client, 40000, vip, 80, SYN);
        let (out, _) = n.send(&mut b, true);
        assert_eq!(forwarded(out), (Dir::Original, true));
        assert!(valid(&b), "{client}: translated SYN checksums");
        assert_eq!(flow(&b), (ip(client), 40000, ip(endpoint), 8080));
        // The SYN+ACK, from another node (a peer), comes back from the VIP.
        let mut b = tcp(endpoint, 8080, client, 40000, SYNACK);
        assert_eq!(forwarded(n.send(&mut b, false).0), (Dir::Reply, false));
        assert!(valid(&b));
        assert_eq!(flow(&b), (ip(vip), 80, ip(client), 40000));
        // Data both ways.
        let mut b = tcp(client, 40000, vip, 80, ACK);
        assert_eq!(forwarded(n.send(&mut b, true).0), (Dir::Original, false));
        assert!(valid(&b));
        assert_eq!(flow(&b).2, ip(endpoint));
        assert_eq!(n.ct.len(), 1);
        let (id, _) = n.ct.iter().next().unwrap();
        assert_eq!(n.ct.get(id).unwrap().state().as_str(), "ESTABLISHED");
        assert_eq!(n.tr.stats().translations, 1);
    }
}

#[test]
fn udp_and_the_payload_stay_intact_and_the_client_address_is_kept() {
    let mut s = svc("kube-system", "dns", "10.96.0.10", 53, Protocol::Udp);
    s.endpoints = vec![ep("10.244.3.4", "p", Protocol::Udp, 5353)];
    let mut n = Node::new(&[s]);
    let mut b = udp("10.244.1.5", 33000, "10.96.0.10", 53);
    n.send(&mut b, true);
    assert!(valid(&b));
    assert_eq!(flow(&b), (ip("10.244.1.5"), 33000, ip("10.244.3.4"), 5353));
    assert!(b.ends_with(b"query"));
    // A UDP datagram without a checksum (IPv4 allows it) stays without.
    let mut f = pkt("10.244.1.5", "10.96.0.10").udp(33001, 53).payload(b"q");
    let mut b = f.build();
    b[26..28].copy_from_slice(&[0, 0]);
    n.send(&mut b, true);
    assert_eq!(&b[26..28], &[0, 0]);
    assert!(valid(&b));
    f.dst = ip("10.244.3.4");
    assert_eq!(flow(&b).2, ip("10.244.3.4"));
}

#[test]
fn two_packets_of_a_new_tuple_take_the_same_endpoint() {
    let mut s = svc("kube-system", "dns", "10.96.0.10", 53, Protocol::Udp);
    s.endpoints = (1..=8)
        .map(|i| ep(&format!("10.244.3.{i}"), "p", Protocol::Udp, 53))
        .collect();
    let mut n = Node::new(&[s]);
    for port in 20000..20200u16 {
        // A and AAAA from one socket, back to back.
        let mut a = udp("10.244.1.5", port, "10.96.0.10", 53);
        let mut aaaa = udp("10.244.1.5", port, "10.96.0.10", 53);
        assert_eq!(forwarded(n.send(&mut a, true).0), (Dir::Original, true));
        assert_eq!(forwarded(n.send(&mut aaaa, true).0), (Dir::Original, false));
        assert_eq!(flow(&a), flow(&aaaa));
    }
}

#[test]
fn no_endpoint_answers_a_tcp_rst_or_an_icmp_port_unreachable_at_once() {
    let mut s = svc("ns", "empty", "10.96.0.30", 80, Protocol::Tcp);
    s.ports.push(ServicePort {
        name: "u".into(),
        protocol: Protocol::Udp,
        port: 53,
        node_port: None,
    });
    let mut n = Node::new(&[s]);
    let mut b = tcp("10.244.1.5", 40000, "10.96.0.30", 80, SYN);
    let (out, rst) = n.send(&mut b, true);
    assert!(matches!(
        out,
        Outcome::Reply {
            reason: Reject::NoEndpoints,
            ..
        }
    ));
    assert!(valid(&rst));
    assert_eq!(flow(&rst), (ip("10.96.0.30"), 80, ip("10.244.1.5"), 40000));
    let tcp_hdr = &rst[20..40];
    assert_eq!(tcp_hdr[13], tcp_flags::RST | tcp_flags::ACK);
    // SEQ 0, ACK = the SYN's sequence number + 1.
    assert_eq!(&tcp_hdr[4..8], &[0, 0, 0, 0]);
    assert_eq!(u32::from_be_bytes(tcp_hdr[8..12].try_into().unwrap()), 1001);

    let mut b = udp("10.244.1.5", 33000, "10.96.0.30", 53);
    let (out, icmp) = n.send(&mut b, true);
    assert!(matches!(out, Outcome::Reply { .. }));
    assert!(valid(&icmp));
    let p = IpPacket::new_checked(&icmp[..]).unwrap();
    assert_eq!(
        (p.src_addr(), p.dst_addr()),
        (ip("10.96.0.30"), ip("10.244.1.5"))
    );
    assert_eq!(
        p.transport().unwrap(),
        Transport::Icmpv4 {
            ty: 3,
            code: 3,
            echo_id: None
        }
    );
    // The quote is the datagram as the client sent it.
    assert_eq!(&icmp[28..48], &b[..20]);
    assert_eq!(n.tr.stats().no_endpoint_rejects, 2);
    assert!(n.ct.is_empty(), "a reject leaves no entry behind");
}

#[test]
fn an_ipv6_udp_reject_is_an_icmpv6_port_unreachable() {
    let mut s = svc("ns", "empty6", "fd00:96::30", 53, Protocol::Udp);
    s.endpoints.clear();
    let mut n = Node::new(&[s]);
    let mut b = udp("fd00:244:1::5", 33000, "fd00:96::30", 53);
    let (_, icmp) = n.send(&mut b, true);
    assert!(valid(&icmp));
    let p = IpPacket::new_checked(&icmp[..]).unwrap();
    assert_eq!(p.src_addr(), ip("fd00:96::30"));
    assert_eq!(
        p.transport().unwrap(),
        Transport::Icmpv6 {
            ty: 1,
            code: 4,
            echo_id: None
        }
    );
}

#[test]
fn what_cannot_start_a_translated_connection_never_leaves_untranslated() {
    let mut n = Node::new(&[web()]);
    // An ACK to the VIP with no connection (after an agent restart).
    let mut b = tcp("10.244.1.5", 40000, "10.96.0.20", 80, ACK);
    assert_eq!(
        n.send(&mut b, true).0,
        Outcome::Drop(NatDrop::InvalidToService)
    );
    // A SYN to the VIP from a peer (translation is the client node's).
    let mut b = tcp("10.244.1.5", 40001, "10.96.0.20", 80, SYN);
    assert_eq!(
        n.send(&mut b, false).0,
        Outcome::Drop(NatDrop::InvalidToService)
    );
    // A fragment to the VIP.
    let mut b = pkt("10.244.1.5", "10.96.0.20")
        .udp(1, 80)
        .frag(0, true)
        .build();
    assert_eq!(
        n.send(&mut b, true).0,
        Outcome::Drop(NatDrop::InvalidToService)
    );
    // Garbage to the VIP: malformed, and counted against the Service.
    let mut b = tcp("10.244.1.5", 40002, "10.96.0.20", 80, SYN);
    b.truncate(30);
    assert_eq!(n.send(&mut b, true).0, Outcome::Drop(NatDrop::Malformed));
    assert_eq!(n.tr.stats().invalid_to_service, 4);
    // A port the Service does not have: rejected.
    let mut b = tcp("10.244.1.5", 40003, "10.96.0.20", 81, SYN);
    let (out, rst) = n.send(&mut b, true);
    assert!(matches!(
        out,
        Outcome::Reply {
            reason: Reject::UnknownPort,
            ..
        }
    ));
    assert!(valid(&rst));
    // Ping to the VIP: port unreachable too.
    let mut b = pkt("10.244.1.5", "10.96.0.20").icmp(8, 0).build();
    assert!(matches!(n.send(&mut b, true).0, Outcome::Reply { .. }));
    assert!(n.ct.is_empty());
}

#[test]
fn packets_that_cannot_be_rewritten_are_dropped_not_sent_as_they_are() {
    let mut n = Node::new(&[web()]);
    let with_ext = |src: &str, sp: u16, dst: &str, dp: u16, flags: u8| {
        let mut f = pkt(src, dst).ext_hop_by_hop().tcp(sp, dp);
        f.flags = flags;
        f.build()
    };
    // An IPv6 SYN to the VIP behind an extension header.
    let mut b = with_ext("fd00:244:1::5", 40000, "fd00:96::20", 80, SYN);
    assert_eq!(
        n.send(&mut b, true).0,
        Outcome::Drop(NatDrop::InvalidToService)
    );
    assert!(n.ct.is_empty());
    // An answer with one, on a translated connection.
    let mut b = tcp("fd00:244:1::5", 40000, "fd00:96::20", 80, SYN);
    n.send(&mut b, true);
    let mut r = with_ext("fd00:244:2::7", 8080, "fd00:244:1::5", 40000, SYNACK);
    assert_eq!(
        n.send(&mut r, false).0,
        Outcome::Drop(NatDrop::Unrewritable)
    );
}

#[test]
fn flows_to_pod_ips_are_tracked_untranslated() {
    let mut n = Node::new(&[web()]);
    let mut b = tcp("10.244.1.5", 40000, "10.244.2.7", 8080, SYN);
    let before = b.clone();
    assert_eq!(forwarded(n.send(&mut b, true).0), (Dir::Original, true));
    assert_eq!(b, before);
    let mut r = tcp("10.244.2.7", 8080, "10.244.1.5", 40000, SYNACK);
    assert_eq!(forwarded(n.send(&mut r, false).0), (Dir::Reply, false));
    // ICMP echo by identifier.
    let mut b = pkt("10.244.1.5", "10.244.2.7").icmp(8, 0).build();
    assert_eq!(forwarded(n.send(&mut b, true).0), (Dir::Original, true));
    let mut b = pkt("10.244.2.7", "10.244.1.5").icmp(0, 0).build();
    assert_eq!(forwarded(n.send(&mut b, false).0), (Dir::Reply, false));
    // A stray RST belongs to nothing and creates nothing.
    let mut b = tcp("10.244.1.5", 41000, "10.244.2.7", 8080, tcp_flags::RST);
    assert_eq!(
        n.send(&mut b, true).0,
        Outcome::Forward {
            entry: None,
            dir: Dir::Original,
            new: false
        }
    );
    assert_eq!(n.ct.len(), 2);
    assert_eq!(n.tr.stats().translations, 0);
}

#[test]
fn a_pod_reaching_itself_through_its_service_is_hairpinned() {
    let mut s = svc("ns", "self", "10.96.0.40", 80, Protocol::Tcp);
    s.endpoints = vec![EndpointSpec {
        local: true,
        ..ep("10.244.1.5", "p", Protocol::Tcp, 8080)
    }];
    let mut n = Node::new(&[s]);
    let mut b = tcp("10.244.1.5", 40000, "10.96.0.40", 80, SYN);
    n.send(&mut b, true);
    assert!(valid(&b));
    let (src, sport, dst, dport) = flow(&b);
    assert_eq!(
        (src, dst, dport),
        (ip("10.244.1.1"), ip("10.244.1.5"), 8080)
    );
    assert!((61_000..=65_535).contains(&sport));
    // The pod answers the node's address; it is sent back from the VIP.
    let mut r = tcp("10.244.1.5", 8080, "10.244.1.1", sport, SYNACK);
    assert_eq!(forwarded(n.send(&mut r, true).0), (Dir::Reply, false));
    assert!(valid(&r));
    assert_eq!(flow(&r), (ip("10.96.0.40"), 80, ip("10.244.1.5"), 40000));
    assert_eq!(n.tr.stats().hairpins, 1);
    // A second connection gets another hairpin port.
    let mut b2 = tcp("10.244.1.5", 40001, "10.96.0.40", 80, SYN);
    n.send(&mut b2, true);
    assert_ne!(flow(&b2).1, sport);
}

#[test]
fn internal_traffic_policy_local_without_a_local_endpoint_drops() {
    let mut s = web();
    s.internal_traffic_policy = TrafficPolicy::Local;
    let mut n = Node::new(&[s]);
    let mut b = tcp("10.244.1.5", 40000, "10.96.0.20", 80, SYN);
    assert_eq!(
        n.send(&mut b, true).0,
        Outcome::Drop(NatDrop::NoLocalEndpoints)
    );
    assert_eq!(n.tr.stats().no_local_endpoint_drops, 1);
}

#[test]
fn icmp_errors_are_translated_for_the_flow_they_quote() {
    let mut s = svc("ns", "u", "10.96.0.50", 53, Protocol::Udp);
    s.endpoints = vec![ep("10.244.2.7", "p", Protocol::Udp, 5353)];
    let mut n = Node::new(&[s]);
    let mut q = udp("10.244.1.5", 33000, "10.96.0.50", 53);
    let sent = q.clone();
    n.send(&mut q, true);
    // The endpoint's port unreachable, quoting the translated datagram.
    let mut e = pkt("10.244.2.7", "10.244.1.5").icmp(3, 3).build();
    e.truncate(28);
    e.extend_from_slice(&q[..28]);
    let len = u16::try_from(e.len()).unwrap();
    e[2..4].copy_from_slice(&len.to_be_bytes());
    crate::testing::refill_v4_checksum(&mut e);
    fix_icmp_checksum(&mut e);
    assert!(valid(&e));
    let (out, _) = n.send(&mut e, false);
    assert_eq!(forwarded(out), (Dir::Reply, false));
    assert!(valid(&e), "outer, quoted and ICMP checksums");
    let p = IpPacket::new_checked(&e[..]).unwrap();
    assert_eq!(
        p.src_addr(),
        ip("10.96.0.50"),
        "the endpoint's address hidden"
    );
    assert_eq!(p.dst_addr(), ip("10.244.1.5"));
    // The quote is what the client sent (its IP header and ports).
    assert_eq!(&e[28..28 + 20], &sent[..20]);
    assert_eq!(&e[48..52], &sent[20..24]);
    assert_eq!(n.tr.stats().icmp_errors_translated, 1);

    // A router's time exceeded keeps the router's address.
    let mut e = pkt("10.244.9.9", "10.244.1.5").icmp(11, 0).build();
    e.truncate(28);
    e.extend_from_slice(&q[..28]);
    let len = u16::try_from(e.len()).unwrap();
    e[2..4].copy_from_slice(&len.to_be_bytes());
    crate::testing::refill_v4_checksum(&mut e);
    fix_icmp_checksum(&mut e);
    n.send(&mut e, false);
    assert!(valid(&e));
    let p = IpPacket::new_checked(&e[..]).unwrap();
    assert_eq!(p.src_addr(), ip("10.244.9.9"));
    assert_eq!(&e[28..28 + 20], &sent[..20]);
}

/// Recomputes the ICMP (IPv4) checksum of `e`, a test-built error.
fn fix_icmp_checksum(e: &mut [u8]) {
    e[22..24].copy_from_slice(&[0, 0]);
    let sum = !crate::testing::fold(crate::testing::slow_sum(&e[20..]));
    e[22..24].copy_from_slice(&sum.to_be_bytes());
}

#[test]
fn udp_flows_move_off_a_removed_endpoint_and_tcp_connections_finish() {
    let two = |s: &mut ServiceSpec| {
        s.endpoints = vec![
            ep("10.244.2.7", "p", Protocol::Udp, 53),
            ep("10.244.2.8", "p", Protocol::Udp, 53),
        ];
    };
    let mut s = svc("ns", "u", "10.96.0.60", 53, Protocol::Udp);
    two(&mut s);
    let mut n = Node::new(&[s.clone()]);
    let mut b = udp("10.244.1.5", 33000, "10.96.0.60", 53);
    n.send(&mut b, true);
    let old = flow(&b).2;
    s.endpoints.retain(|e| e.address != old);
    n.table = ServiceTable::compile(&[s.clone()]).unwrap();
    n.now += Duration::from_millis(200);
    // A late answer from the removed endpoint is dropped.
    let mut r = pkt(&old.to_string(), "10.244.1.5").udp(53, 33000).build();
    assert_eq!(
        n.send(&mut r, false).0,
        Outcome::Drop(NatDrop::StaleEndpoint)
    );
    // The client's next datagram goes to the live endpoint.
    let mut b = udp("10.244.1.5", 33000, "10.96.0.60", 53);
    assert_eq!(forwarded(n.send(&mut b, true).0), (Dir::Original, true));
    assert_ne!(flow(&b).2, old);
    assert_eq!(n.tr.stats().stale_flows, 1);

    // TCP: an established connection keeps its endpoint.
    let mut w = web();
    w.endpoints.push(ep("10.244.2.9", "p", Protocol::Tcp, 8080));
    let mut n = Node::new(&[w.clone()]);
    let mut b = tcp("10.244.1.5", 40000, "10.96.0.20", 80, SYN);
    n.send(&mut b, true);
    let (ep_ip, ep_port) = (flow(&b).2, flow(&b).3);
    let mut r = tcp(&ep_ip.to_string(), ep_port, "10.244.1.5", 40000, SYNACK);
    n.send(&mut r, false);
    w.endpoints.retain(|e| e.address != ep_ip);
    n.table = ServiceTable::compile(&[w]).unwrap();
    let mut b = tcp("10.244.1.5", 40000, "10.96.0.20", 80, ACK);
    assert_eq!(forwarded(n.send(&mut b, true).0), (Dir::Original, false));
    assert_eq!(flow(&b).2, ep_ip);
    // A new SYN on the same tuple (port reuse) goes to a live endpoint.
    let mut b = tcp("10.244.1.5", 40000, "10.96.0.20", 80, SYN);
    assert_eq!(forwarded(n.send(&mut b, true).0), (Dir::Original, true));
    assert_ne!(flow(&b).2, ep_ip);
}
