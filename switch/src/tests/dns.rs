//! The DNS VIP step end to end on byte fixtures: queries from pods (IPv4
//! and IPv6) and the host answered with packets whose checksums the wire
//! layer and the independent oracle both accept; truncation to the MTU;
//! SERVFAIL before the zone is ready; peers not answered; other ports
//! refused; malformed queries counted.

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_proto::op::{Edns, Message, ResponseCode};
use hickory_proto::rr::RecordType;

use super::*;
use crate::dns::tests::{query_with, zone};
use crate::dns::{DnsClient, DnsConfig, DnsDropReason, DnsOrigin, DnsQtype, DnsRcode, DNS_PORT};
use crate::testing::{as_partial, pkt};
use crate::wire::vnet::GSO_UDP_L4;
use crate::wire::{FlowPacket, L4Checksum};

pub(super) const VIP4: &str = "10.96.0.10";
pub(super) const VIP6: &str = "fd00:96::a";

/// The test node, with the DNS VIPs answering from the fixed zone.
pub(super) fn with_dns() -> Harness {
    let mut sw = configured();
    sw.set_dns(DnsConfig {
        vips: vec![ip(VIP4), ip(VIP6)],
        zone: Arc::new(zone()),
    })
    .unwrap();
    Harness::with(sw)
}

pub(super) fn query(name: &str, qtype: RecordType) -> Vec<u8> {
    query_with(name, qtype, |_| {})
}

/// A UDP packet from `src`:40000 to `dst`:53 carrying `dns`.
pub(super) fn udp_query(src: &str, dst: &str, dns: &[u8]) -> Vec<u8> {
    pkt(src, dst).udp(40000, DNS_PORT).payload(dns).build()
}

/// Checks the reply packet in `h.scratch[..n]` as a pod's stack would (IP
/// header, UDP length and checksum, by the wire layer and by the slow
/// oracle) and returns its DNS message.
pub(super) fn answer_in(bytes: &[u8], from: &str, to: &str) -> Message {
    assert!(valid(bytes), "oracle: lengths and checksums");
    let flow = FlowPacket::new_checked(bytes, L4Checksum::Full).expect("IP + UDP parse");
    assert!(flow.checksum_ok(), "wire layer: UDP checksum");
    assert_eq!(flow.src(), SocketAddr::new(ip(from), 53));
    assert_eq!(flow.dst(), SocketAddr::new(ip(to), 40000));
    assert_eq!(flow.ip().hop_limit(), 64);
    if let IpPacket::V4(p) = flow.ip() {
        assert!(p.dont_frag() && !p.is_fragment());
    }
    Message::from_vec(flow.payload()).expect("a DNS message")
}

fn reply_of(h: &Harness, action: Action) -> &[u8] {
    let Action::Reply(n) = action else {
        panic!("expected a reply, got {action:?}")
    };
    &h.scratch[..n]
}

fn rdata(m: &Message) -> Vec<String> {
    m.answers.iter().map(|r| r.data.to_string()).collect()
}

#[test]
fn a_aaaa_srv_ptr_answered_to_ipv4_and_ipv6_pods() {
    let mut h = with_dns();
    for (src, vip, name, qtype, want) in [
        (
            POD_A4,
            VIP4,
            "web.shop.svc.cluster.local.",
            RecordType::A,
            "10.96.0.20",
        ),
        (
            POD_A6,
            VIP6,
            "web.shop.svc.cluster.local.",
            RecordType::AAAA,
            "fd00:96::20",
        ),
        (
            POD_A4,
            VIP4,
            "_http._tcp.web.shop.svc.cluster.local.",
            RecordType::SRV,
            "0 100 80 web.shop.svc.cluster.local.",
        ),
        (
            POD_A6,
            VIP6,
            "20.0.96.10.in-addr.arpa.",
            RecordType::PTR,
            "web.shop.svc.cluster.local.",
        ),
    ] {
        let a = h.pod(A, udp_query(src, vip, &query(name, qtype)));
        let m = answer_in(reply_of(&h, a), vip, src);
        assert_eq!(m.metadata.id, 0x1234, "{name}");
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative);
        assert_eq!(rdata(&m), [want], "{name} {qtype}");
    }
    let c = h.sw.counters();
    assert_eq!(c.delivered_to_dns(), 4);
    assert_eq!(c.total_dropped() + c.forwarded_to_port(), 0);
    let d = h.sw.dns_counters();
    assert_eq!(d.answered(DnsRcode::NoError), 4);
    for t in [DnsQtype::A, DnsQtype::Aaaa, DnsQtype::Srv, DnsQtype::Ptr] {
        assert_eq!(d.queries(t), 1, "{t:?}");
    }
}

#[test]
fn nxdomain_is_answered_and_counted() {
    let mut h = with_dns();
    let q = query("nope.shop.svc.cluster.local.", RecordType::A);
    let a = h.pod(B, udp_query(POD_B4, VIP4, &q));
    let m = answer_in(reply_of(&h, a), VIP4, POD_B4);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(h.sw.dns_counters().answered(DnsRcode::NxDomain), 1);
}

#[test]
fn the_host_port_is_answered_too() {
    let mut h = with_dns();
    let q = query("web.shop.svc.cluster.local.", RecordType::A);
    let a = h.host(udp_query(HOST4, VIP4, &q));
    let m = answer_in(reply_of(&h, a), VIP4, HOST4);
    assert_eq!(rdata(&m), ["10.96.0.20"]);
}

#[test]
fn servfail_until_the_zone_is_ready_then_swapped_in() {
    let mut sw = configured();
    sw.set_dns(DnsConfig {
        vips: vec![ip(VIP4)],
        ..DnsConfig::default()
    })
    .unwrap();
    let mut h = Harness::with(sw);
    let q = query("web.shop.svc.cluster.local.", RecordType::A);
    let a = h.pod(A, udp_query(POD_A4, VIP4, &q));
    let m = answer_in(reply_of(&h, a), VIP4, POD_A4);
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(h.sw.dns_counters().answered(DnsRcode::ServFail), 1);
    // The engine swaps in the compiled zone: the next query is answered.
    h.sw.set_dns_zone(Arc::new(zone()));
    let a = h.pod(A, udp_query(POD_A4, VIP4, &q));
    let m = answer_in(reply_of(&h, a), VIP4, POD_A4);
    assert_eq!(rdata(&m), ["10.96.0.20"]);
    assert!(h.sw.dns_zone().is_ready());
}

#[test]
fn large_answers_are_truncated_to_the_client_size_and_the_mtu() {
    let mut h = with_dns();
    let many = "many.shop.svc.cluster.local.";
    // No EDNS: 512 bytes at most, so TC.
    let a = h.pod(A, udp_query(POD_A4, VIP4, &query(many, RecordType::A)));
    let bytes = reply_of(&h, a);
    assert!(bytes.len() <= 20 + 8 + 512);
    let m = answer_in(bytes, VIP4, POD_A4);
    assert!(m.metadata.truncation && m.answers.is_empty());
    assert_eq!(m.queries[0].name().to_ascii(), many);
    // EDNS 4096 and a 1500-byte MTU: 60 records fit.
    let big = query_with(many, RecordType::A, |m| {
        let mut e = Edns::new();
        e.set_max_payload(4096);
        m.set_edns(e);
    });
    let a = h.pod(A, udp_query(POD_A4, VIP4, &big));
    let m = answer_in(reply_of(&h, a), VIP4, POD_A4);
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 60);
    // The same over a 576-byte pod MTU: truncated to fit it.
    h.sw.set_route_mtu(Route::Port(A), Some(576)).unwrap();
    let a = h.pod(A, udp_query(POD_A4, VIP4, &big));
    let bytes = reply_of(&h, a);
    assert!(bytes.len() <= 576, "{}", bytes.len());
    let m = answer_in(bytes, VIP4, POD_A4);
    assert!(m.metadata.truncation && m.answers.is_empty());
    assert_eq!(h.sw.dns_counters().truncated(), 2);
}

#[test]
fn peers_are_not_answered() {
    let mut h = with_dns();
    let q = query("web.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(
        h.peer(P1, udp_query(PEER1_POD4, VIP4, &q)),
        Action::Drop(DropReason::NoRoute)
    );
    assert_eq!(
        h.peer(P1, udp_query(PEER1_POD6, VIP6, &q)),
        Action::Drop(DropReason::NoRoute)
    );
    assert_eq!(h.sw.dns_counters(), &crate::dns::DnsCounters::default());
    assert_eq!(h.sw.counters().delivered_to_dns(), 0);
}

#[test]
fn a_spoofed_source_is_dropped_before_the_vip() {
    let mut h = with_dns();
    let q = query("web.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(
        h.pod(A, udp_query(POD_B4, VIP4, &q)),
        Action::Drop(DropReason::SpoofedPodSource)
    );
}

#[test]
fn off_until_configured() {
    let mut h = Harness::new();
    let q = query("web.shop.svc.cluster.local.", RecordType::A);
    let a = h.pod(A, udp_query(POD_A4, VIP4, &q));
    let icmp = h.reply(a);
    assert_eq!(icmp.src_addr(), ip(HOST4), "no route: net unreachable");
    assert_eq!(h.dropped(DropReason::NoRoute), 1);
    assert!(h.sw.dns_vips().is_empty());
    assert_eq!(
        h.sw.set_dns(DnsConfig {
            vips: vec![ip("127.0.0.1")],
            ..DnsConfig::default()
        }),
        Err(ConfigError::UnusableAddress(ip("127.0.0.1")))
    );
}

#[test]
fn tcp_to_port_53_is_handed_to_the_engine() {
    let mut h = with_dns();
    let a = h.pod(A, pkt(POD_A6, VIP6).tcp(40001, 53).build());
    assert_eq!(
        a,
        Action::DnsTcp(DnsClient {
            origin: DnsOrigin::Pod(A),
            client: SocketAddr::new(ip(POD_A6), 40001),
            server: SocketAddr::new(ip(VIP6), 53),
            max_message: u16::MAX,
        })
    );
    assert_eq!(h.sw.dns_counters().tcp(), 1);
    assert_eq!(h.sw.counters().delivered_to_dns(), 1);
}

#[test]
fn other_ports_and_protocols_get_port_unreachable_from_the_vip() {
    let mut h = with_dns();
    for (src, vip, packet, want) in [
        (
            POD_A4,
            VIP4,
            pkt(POD_A4, VIP4).udp(40000, 54).build(),
            (3, 3),
        ),
        (
            POD_A4,
            VIP4,
            pkt(POD_A4, VIP4).tcp(40000, 80).build(),
            (3, 3),
        ),
        (POD_A4, VIP4, pkt(POD_A4, VIP4).icmp(8, 0).build(), (3, 3)),
        (
            POD_A6,
            VIP6,
            pkt(POD_A6, VIP6).udp(5353, 5353).build(),
            (1, 4),
        ),
    ] {
        let a = h.pod(A, packet.clone());
        let bytes = reply_of(&h, a);
        assert!(valid(bytes), "checksums");
        let reply = IpPacket::new_checked(bytes).unwrap();
        assert_eq!(reply.src_addr(), ip(vip), "from the VIP itself");
        assert_eq!(reply.dst_addr(), ip(src));
        assert_eq!(&reply.payload()[..2], &[want.0, want.1]);
        assert_eq!(&reply.payload()[8..8 + 28], &packet[..28], "quoted");
    }
    assert_eq!(h.dropped(DropReason::DnsVipPort), 4);
    assert_eq!(h.sw.counters().icmp_sent(), 4);
    // An ICMP error to the VIP is never answered with one.
    let a = h.pod(A, pkt(POD_A4, VIP4).icmp(3, 3).payload(&[0; 28]).build());
    assert_eq!(a, Action::Drop(DropReason::DnsVipPort));
    assert_eq!(h.sw.dns_counters().other_port(), 5);
}

#[test]
fn malformed_queries_are_dropped_by_reason() {
    let mut h = with_dns();
    let q = query("web.shop.svc.cluster.local.", RecordType::A);
    let mut response = q.clone();
    response[2] |= 0x80;
    let mut bad_sum = udp_query(POD_A4, VIP4, &q);
    let last = bad_sum.len() - 1;
    bad_sum[last] ^= 0x40;
    let mut bad_len = udp_query(POD_A4, VIP4, &q);
    bad_len[24..26].copy_from_slice(&7u16.to_be_bytes());
    let mut long_len = udp_query(POD_A4, VIP4, &q);
    long_len[24..26].copy_from_slice(&2000u16.to_be_bytes());
    for (packet, reason) in [
        (udp_query(POD_A4, VIP4, &q[..11]), DnsDropReason::TooShort),
        (udp_query(POD_A6, VIP6, &response), DnsDropReason::NotAQuery),
        (bad_sum, DnsDropReason::BadChecksum),
        (bad_len, DnsDropReason::BadLength),
        (long_len, DnsDropReason::BadLength),
        (
            pkt(POD_A4, VIP4)
                .frag(0, true)
                .udp(1, 53)
                .payload(&q)
                .build(),
            DnsDropReason::Fragment,
        ),
        (
            pkt(POD_A4, VIP4).frag(8, false).raw(17).payload(&q).build(),
            DnsDropReason::Fragment,
        ),
        (
            pkt(POD_A6, VIP6)
                .ext_fragment(8, false)
                .raw(17)
                .payload(&q)
                .build(),
            DnsDropReason::Fragment,
        ),
    ] {
        let before = h.sw.dns_counters().dropped(reason);
        assert_eq!(
            h.pod(A, packet),
            Action::Drop(DropReason::DnsQuery),
            "{reason}"
        );
        assert_eq!(h.sw.dns_counters().dropped(reason), before + 1, "{reason}");
    }
    assert_eq!(h.dropped(DropReason::DnsQuery), 8);
    // A super-packet to port 53 is no query.
    let (hdr, p) = as_partial(udp_query(POD_A4, VIP4, &q), GSO_UDP_L4, 20);
    assert_eq!(h.pod_gso(A, p, &hdr), Action::Drop(DropReason::DnsQuery));
    assert_eq!(h.sw.dns_counters().dropped(DnsDropReason::SuperPacket), 1);
    // A checksum the device completes (NEEDS_CSUM) is not checked, and an
    // absent IPv4 UDP checksum is allowed.
    let (hdr, p) = as_partial(udp_query(POD_A4, VIP4, &q), 0, 0);
    assert!(matches!(h.pod_gso(A, p, &hdr), Action::Reply(_)));
    let mut none = udp_query(POD_A4, VIP4, &q);
    none[26..28].fill(0);
    assert!(matches!(h.pod(A, none), Action::Reply(_)));
}

#[test]
fn no_room_in_scratch_is_a_counted_drop() {
    let mut h = with_dns();
    h.scratch = vec![0; 40];
    let q = query("web.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(
        h.pod(A, udp_query(POD_A4, VIP4, &q)),
        Action::Drop(DropReason::DnsQuery)
    );
    assert_eq!(h.sw.dns_counters().dropped(DnsDropReason::NoRoom), 1);
}
