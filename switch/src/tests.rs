//! Switch-level tests: the per-packet decision end to end on byte fixtures,
//! the configuration API, and property tests that no input panics.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use proptest::prelude::*;

use super::testutil::{pkt, refill_v4_checksum, verify_icmpv6_checksum};
use super::*;

// Node 1 owns 10.244.1.0/24 and fd00:244:1::/64; peers 1 and 2 own the next two.
const HOST4: &str = "10.244.1.1";
const HOST6: &str = "fd00:244:1::1";
const POD_A4: &str = "10.244.1.2";
const POD_A6: &str = "fd00:244:1::2";
const POD_B4: &str = "10.244.1.3";
const POD_B6: &str = "fd00:244:1::3";
const UNASSIGNED4: &str = "10.244.1.77";
const UNASSIGNED6: &str = "fd00:244:1::77";
const PEER1_POD4: &str = "10.244.2.5";
const PEER1_POD6: &str = "fd00:244:2::5";
const PEER2_POD4: &str = "10.244.3.5";
const PEER2_POD6: &str = "fd00:244:3::5";
const NOWHERE4: &str = "192.0.2.1";
const NOWHERE6: &str = "2001:db8::1";

const A: PortId = PortId(1);
const B: PortId = PortId(2);
const P1: PeerId = PeerId(1);
const P2: PeerId = PeerId(2);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn configured() -> Switch {
    let mut sw = Switch::new();
    sw.set_node_cidrs(&[net("10.244.1.0/24"), net("fd00:244:1::/64")])
        .unwrap();
    sw.set_host_addresses(&[ip(HOST4), ip(HOST6)]).unwrap();
    sw.set_pod_port(A, &[ip(POD_A4), ip(POD_A6)]).unwrap();
    sw.set_pod_port(B, &[ip(POD_B4), ip(POD_B6)]).unwrap();
    sw.set_peer(P1, &[net("10.244.2.0/24"), net("fd00:244:2::/64")])
        .unwrap();
    sw.set_peer(P2, &[net("10.244.3.0/24"), net("fd00:244:3::/64")])
        .unwrap();
    sw
}

/// A switch, a clock and a scratch buffer; keeps the last packet and reply.
struct Harness {
    sw: Switch,
    now: Instant,
    scratch: Vec<u8>,
    last: Vec<u8>,
}

impl Harness {
    fn new() -> Self {
        Self::with(configured())
    }

    fn with(sw: Switch) -> Self {
        Self {
            sw,
            now: Instant::now(),
            scratch: vec![0; 1500],
            last: Vec::new(),
        }
    }

    fn pod(&mut self, port: PortId, mut packet: Vec<u8>) -> Action {
        let a = self
            .sw
            .from_pod(port, &mut packet, &mut self.scratch, self.now);
        self.last = packet;
        a
    }

    fn peer(&mut self, peer: PeerId, mut packet: Vec<u8>) -> Action {
        let a = self
            .sw
            .from_peer(peer, &mut packet, &mut self.scratch, self.now);
        self.last = packet;
        a
    }

    fn host(&mut self, mut packet: Vec<u8>) -> Action {
        let a = self.sw.from_host(&mut packet, &mut self.scratch, self.now);
        self.last = packet;
        a
    }

    /// The reply of an `Action::Reply`, parsed.
    fn reply(&self, action: Action) -> IpPacket<&[u8]> {
        let Action::Reply(n) = action else {
            panic!("expected a reply, got {action:?}")
        };
        IpPacket::new_checked(&self.scratch[..n]).expect("reply parses (IPv4 checksum valid)")
    }

    fn dropped(&self, reason: DropReason) -> u64 {
        self.sw.counters().dropped(reason)
    }
}

// ---- forwarding ----------------------------------------------------------

#[test]
fn pod_to_pod_forwards_and_decrements_ttl() {
    let mut h = Harness::new();
    let p = pkt(POD_A4, POD_B4)
        .ttl(64)
        .udp(5000, 53)
        .payload(b"q")
        .build();
    assert_eq!(h.pod(A, p.clone()), Action::ToPort(B));
    let out = Ipv4Packet::new_checked(&h.last[..]).expect("checksum still valid");
    assert_eq!(out.ttl(), 63);
    assert_eq!(&h.last[20..], &p[20..], "payload untouched");
    assert_eq!(h.sw.counters().forwarded_to_port(), 1);
    assert_eq!(h.sw.counters().total_dropped(), 0);
}

#[test]
fn forwarding_matrix_both_families_all_transports() {
    let cases = [
        // (ingress, src, dst, expected)
        ("pod A", POD_A4, POD_B4, Action::ToPort(B)),
        ("pod A", POD_A4, HOST4, Action::ToHost),
        ("pod A", POD_A4, PEER1_POD4, Action::ToPeer(P1)),
        ("pod A", POD_A4, PEER2_POD4, Action::ToPeer(P2)),
        ("host", HOST4, POD_A4, Action::ToPort(A)),
        ("host", HOST4, PEER2_POD4, Action::ToPeer(P2)),
        ("peer 1", PEER1_POD4, POD_B4, Action::ToPort(B)),
        ("peer 1", PEER1_POD4, HOST4, Action::ToHost),
        ("pod A", POD_A6, POD_B6, Action::ToPort(B)),
        ("pod A", POD_A6, HOST6, Action::ToHost),
        ("pod A", POD_A6, PEER1_POD6, Action::ToPeer(P1)),
        ("host", HOST6, POD_B6, Action::ToPort(B)),
        ("host", HOST6, PEER1_POD6, Action::ToPeer(P1)),
        ("peer 2", PEER2_POD6, POD_A6, Action::ToPort(A)),
        ("peer 2", PEER2_POD6, HOST6, Action::ToHost),
    ];
    let mut h = Harness::new();
    let mut forwarded = 0;
    for (ingress, src, dst, expected) in cases {
        let packets = [
            pkt(src, dst).udp(1000, 53).payload(b"hi").build(),
            pkt(src, dst).tcp(40000, 443).build(),
            pkt(src, dst)
                .icmp(if ip(src).is_ipv4() { 8 } else { 128 }, 0)
                .build(),
            pkt(src, dst).raw(47).payload(&[0; 12]).build(),
        ];
        for p in packets {
            let action = match ingress {
                "pod A" => h.pod(A, p),
                "host" => h.host(p),
                "peer 1" => h.peer(P1, p),
                "peer 2" => h.peer(P2, p),
                _ => unreachable!(),
            };
            assert_eq!(action, expected, "{ingress}: {src} -> {dst}");
            assert_eq!(IpPacket::new_checked(&h.last[..]).unwrap().hop_limit(), 63);
            forwarded += 1;
        }
    }
    let c = h.sw.counters();
    assert_eq!(
        c.forwarded_to_port() + c.forwarded_to_host() + c.forwarded_to_peer(),
        forwarded
    );
    assert_eq!(c.total_dropped(), 0);
}

#[test]
fn link_padding_is_tolerated() {
    let mut h = Harness::new();
    let mut p = pkt(POD_A4, POD_B4).udp(1, 2).build();
    p.extend_from_slice(&[0; 6]);
    assert_eq!(h.pod(A, p), Action::ToPort(B));
}

// ---- malformed input -----------------------------------------------------

fn malformed_packets() -> Vec<(&'static str, Vec<u8>)> {
    let good = pkt(POD_A4, POD_B4).udp(1, 2).payload(&[9; 8]).build();
    let good6 = pkt(POD_A6, POD_B6).udp(1, 2).payload(&[9; 8]).build();
    let mut v = vec![
        ("empty", Vec::new()),
        ("one byte", vec![0x45]),
        ("truncated v4 header", good[..19].to_vec()),
        ("truncated v6 header", good6[..39].to_vec()),
        ("total length > buffer", good[..good.len() - 1].to_vec()),
        (
            "v6 payload length > buffer",
            good6[..good6.len() - 1].to_vec(),
        ),
    ];
    let mut bad_ihl = good.clone();
    bad_ihl[0] = 0x44;
    refill_v4_checksum(&mut bad_ihl);
    v.push(("IHL 4", bad_ihl));
    let mut long_ihl = good.clone();
    long_ihl[0] = 0x4f;
    v.push(("IHL past buffer", long_ihl));
    let mut bad_sum = good.clone();
    bad_sum[10] ^= 0xff;
    v.push(("bad checksum", bad_sum));
    let mut v5 = good.clone();
    v5[0] = 0x55;
    refill_v4_checksum(&mut v5);
    v.push(("version 5", v5));
    let mut v4_as_6 = good6.clone();
    v4_as_6[0] = 0x40;
    v.push(("v6 bytes with version 4", v4_as_6));
    let mut short_len = good.clone();
    short_len[2..4].copy_from_slice(&19u16.to_be_bytes());
    refill_v4_checksum(&mut short_len);
    v.push(("total length < header", short_len));
    v.push((
        "truncated TCP",
        pkt(POD_A4, POD_B4).raw(6).payload(&[0; 10]).build(),
    ));
    v.push((
        "truncated UDP v6",
        pkt(POD_A6, POD_B6).raw(17).payload(&[0; 4]).build(),
    ));
    v.push((
        "truncated ICMP",
        pkt(POD_A4, POD_B4).raw(1).payload(&[8, 0, 0]).build(),
    ));
    let mut bad_ext = pkt(POD_A6, POD_B6).ext_hop_by_hop().udp(1, 2).build();
    bad_ext[41] = 200;
    v.push(("v6 extension header past payload", bad_ext));
    v
}

#[test]
fn malformed_packets_are_dropped_and_counted_on_every_entry_point() {
    let mut h = Harness::new();
    let cases = malformed_packets();
    for (name, p) in &cases {
        assert_eq!(
            h.pod(A, p.clone()),
            Action::Drop(DropReason::Malformed),
            "pod: {name}"
        );
        assert_eq!(
            h.peer(P1, p.clone()),
            Action::Drop(DropReason::Malformed),
            "peer: {name}"
        );
        assert_eq!(
            h.host(p.clone()),
            Action::Drop(DropReason::Malformed),
            "host: {name}"
        );
    }
    assert_eq!(h.dropped(DropReason::Malformed), 3 * cases.len() as u64);
    assert_eq!(h.sw.counters().total_dropped(), 3 * cases.len() as u64);
}

#[test]
fn unknown_port_and_peer() {
    let mut h = Harness::new();
    let p = pkt(POD_A4, POD_B4).udp(1, 2).build();
    assert_eq!(
        h.pod(PortId(9), p.clone()),
        Action::Drop(DropReason::UnknownPort)
    );
    assert_eq!(
        h.pod(PortId(u32::MAX), p.clone()),
        Action::Drop(DropReason::UnknownPort)
    );
    assert_eq!(h.peer(PeerId(9), p), Action::Drop(DropReason::UnknownPeer));
}

#[test]
fn martians_are_dropped() {
    let mut h = Harness::new();
    for (src, dst) in [
        (POD_A4, "127.0.0.1"),
        (POD_A4, "239.1.2.3"),
        (POD_A4, "0.0.0.0"),
        ("169.254.1.1", POD_B4),
        (POD_A6, "::1"),
        (POD_A6, "ff05::2"),
        ("fe80::1", POD_B6),
    ] {
        assert_eq!(
            h.pod(A, pkt(src, dst).udp(1, 2).build()),
            Action::Drop(DropReason::Martian),
            "{src} -> {dst}"
        );
    }
}

#[test]
fn link_scoped_traffic_is_dropped_under_its_own_name() {
    let mut h = Harness::new();
    // What a TUN's own kernel sends (router solicitations, MLD, mDNS,
    // DHCP) and link-local unicast.
    for (src, dst) in [
        (POD_A4, "224.0.0.251"),
        (POD_A4, "255.255.255.255"),
        (POD_A4, "169.254.169.254"),
        ("0.0.0.0", "255.255.255.255"),
        ("fe80::1", "ff02::2"),
        ("::", "ff02::1:ff00:1"),
        (POD_A6, "ff02::1"),
        (POD_A6, "fe80::1"),
    ] {
        assert_eq!(
            h.pod(A, pkt(src, dst).udp(1, 2).build()),
            Action::Drop(DropReason::LinkLocal),
            "{src} -> {dst}"
        );
    }
    assert_eq!(h.sw.counters().dropped(DropReason::LinkLocal), 8);
    assert_eq!(h.sw.counters().dropped(DropReason::Martian), 0);
}

// ---- anti-spoofing -------------------------------------------------------

#[test]
fn pod_may_only_send_from_its_own_address() {
    let mut h = Harness::new();
    for src in [
        POD_B4,
        UNASSIGNED4,
        HOST4,
        PEER1_POD4,
        NOWHERE4,
        POD_B6,
        UNASSIGNED6,
        NOWHERE6,
    ] {
        let dst = if ip(src).is_ipv4() {
            PEER1_POD4
        } else {
            PEER1_POD6
        };
        assert_eq!(
            h.pod(A, pkt(src, dst).udp(1, 2).build()),
            Action::Drop(DropReason::SpoofedPodSource),
            "pod A from {src}"
        );
    }
    // A v4-only pod cannot send IPv6 at all.
    h.sw.set_pod_port(PortId(3), &[ip("10.244.1.4")]).unwrap();
    let p = pkt(POD_A6, POD_B6).udp(1, 2).build();
    assert_eq!(
        h.pod(PortId(3), p),
        Action::Drop(DropReason::SpoofedPodSource)
    );
    assert_eq!(h.dropped(DropReason::SpoofedPodSource), 9);
}

#[test]
fn peer_may_only_send_from_its_allowed_prefixes() {
    let mut h = Harness::new();
    // Another peer's range, our own pods, our host, our CIDR, the outside.
    for src in [
        PEER2_POD4,
        POD_A4,
        HOST4,
        UNASSIGNED4,
        NOWHERE4,
        PEER2_POD6,
        POD_B6,
        NOWHERE6,
    ] {
        let dst = if ip(src).is_ipv4() { POD_A4 } else { POD_A6 };
        assert_eq!(
            h.peer(P1, pkt(src, dst).udp(1, 2).build()),
            Action::Drop(DropReason::SpoofedPeerSource),
            "peer 1 from {src}"
        );
    }
    assert_eq!(
        h.peer(P1, pkt(PEER1_POD4, POD_A4).udp(1, 2).build()),
        Action::ToPort(A)
    );
}

#[test]
fn default_route_peer_cannot_claim_local_addresses() {
    // A gateway peer allowed 0.0.0.0/0 may send from anywhere outside, but
    // the longer local routes still win the reverse-path check.
    let mut h = Harness::new();
    h.sw.set_peer(PeerId(7), &[net("0.0.0.0/0")]).unwrap();
    assert_eq!(
        h.peer(PeerId(7), pkt(NOWHERE4, POD_A4).udp(1, 2).build()),
        Action::ToPort(A)
    );
    assert_eq!(
        h.peer(PeerId(7), pkt(POD_B4, POD_A4).udp(1, 2).build()),
        Action::Drop(DropReason::SpoofedPeerSource)
    );
    assert_eq!(
        h.peer(PeerId(7), pkt(PEER1_POD4, POD_A4).udp(1, 2).build()),
        Action::Drop(DropReason::SpoofedPeerSource)
    );
    // And pods reach the outside through it.
    assert_eq!(
        h.pod(A, pkt(POD_A4, NOWHERE4).udp(1, 2).build()),
        Action::ToPeer(PeerId(7))
    );
}

#[test]
fn host_may_only_send_from_host_addresses() {
    let mut h = Harness::new();
    for src in [POD_A4, UNASSIGNED4, "192.168.122.10", PEER1_POD4, POD_A6] {
        let dst = if ip(src).is_ipv4() { POD_B4 } else { POD_B6 };
        assert_eq!(
            h.host(pkt(src, dst).udp(1, 2).build()),
            Action::Drop(DropReason::SpoofedHostSource),
            "host from {src}"
        );
    }
    // A second host address is accepted too.
    h.sw.set_host_addresses(&[ip(HOST4), ip("10.244.1.254"), ip(HOST6)])
        .unwrap();
    assert_eq!(
        h.host(pkt("10.244.1.254", POD_B4).udp(1, 2).build()),
        Action::ToPort(B)
    );
}

// ---- routing -------------------------------------------------------------

#[test]
fn longest_prefix_wins_between_overlapping_routes() {
    let mut h = Harness::new();
    h.sw.set_peer(P1, &[net("10.0.0.0/8"), net("fd00::/16")])
        .unwrap();
    h.sw.set_peer(
        P2,
        &[
            net("10.244.3.0/24"),
            net("10.244.3.128/25"),
            net("fd00:244:3::/64"),
        ],
    )
    .unwrap();
    h.sw.set_peer(PeerId(3), &[net("10.244.3.200/32")]).unwrap();
    let to = |h: &mut Harness, dst: &str| {
        let src = if ip(dst).is_ipv4() { POD_A4 } else { POD_A6 };
        h.pod(A, pkt(src, dst).udp(1, 2).build())
    };
    assert_eq!(to(&mut h, "10.244.3.5"), Action::ToPeer(P2));
    assert_eq!(to(&mut h, "10.244.3.129"), Action::ToPeer(P2));
    assert_eq!(to(&mut h, "10.244.3.200"), Action::ToPeer(PeerId(3)));
    assert_eq!(to(&mut h, "10.5.0.1"), Action::ToPeer(P1));
    assert_eq!(
        to(&mut h, POD_B4),
        Action::ToPort(B),
        "local /32 beats the peer's /8"
    );
    assert_eq!(to(&mut h, HOST4), Action::ToHost);
    assert_eq!(to(&mut h, PEER2_POD6), Action::ToPeer(P2));
    assert_eq!(to(&mut h, "fd00:99::1"), Action::ToPeer(P1));
    assert_eq!(
        h.sw.route(ip(UNASSIGNED4)),
        Some(Route::Unassigned),
        "node /24 beats the /8"
    );
}

#[test]
fn removed_peer_has_no_route() {
    let mut h = Harness::new();
    assert!(h.sw.remove_peer(P1));
    assert!(!h.sw.remove_peer(P1));
    let r = h.pod(A, pkt(POD_A4, PEER1_POD4).udp(1, 2).build());
    let reply = h.reply(r);
    assert_eq!(
        reply.transport().unwrap(),
        Transport::Icmpv4 {
            ty: 3,
            code: 0,
            echo_id: None
        }
    );
    assert_eq!(h.dropped(DropReason::NoRoute), 1);
    assert_eq!(
        h.peer(P1, pkt(PEER1_POD4, POD_A4).udp(1, 2).build()),
        Action::Drop(DropReason::UnknownPeer)
    );
    assert_eq!(h.sw.route(ip(PEER1_POD6)), None);
    // Peer 2 is untouched.
    assert_eq!(
        h.pod(A, pkt(POD_A4, PEER2_POD4).udp(1, 2).build()),
        Action::ToPeer(P2)
    );
}

#[test]
fn removed_pod_becomes_unassigned() {
    let mut h = Harness::new();
    assert!(h.sw.remove_pod_port(B));
    assert!(!h.sw.remove_pod_port(B));
    assert_eq!(h.sw.route(ip(POD_B4)), Some(Route::Unassigned));
    let r = h.pod(A, pkt(POD_A4, POD_B4).udp(1, 2).build());
    assert_eq!(
        h.reply(r).transport().unwrap(),
        Transport::Icmpv4 {
            ty: 3,
            code: 1,
            echo_id: None
        }
    );
    assert_eq!(h.dropped(DropReason::NoPod), 1);
    assert_eq!(
        h.pod(B, pkt(POD_B4, POD_A4).udp(1, 2).build()),
        Action::Drop(DropReason::UnknownPort)
    );
}

#[test]
fn peer_to_peer_is_never_transit_routed() {
    let mut h = Harness::new();
    assert_eq!(
        h.peer(P1, pkt(PEER1_POD4, PEER2_POD4).udp(1, 2).build()),
        Action::Drop(DropReason::PeerToPeer)
    );
    assert_eq!(
        h.peer(P1, pkt(PEER1_POD6, PEER2_POD6).udp(1, 2).build()),
        Action::Drop(DropReason::PeerToPeer)
    );
    // Hairpin back to the same peer is transit too.
    assert_eq!(
        h.peer(P1, pkt(PEER1_POD4, "10.244.2.9").udp(1, 2).build()),
        Action::Drop(DropReason::PeerToPeer)
    );
    assert_eq!(h.dropped(DropReason::PeerToPeer), 3);
    assert_eq!(h.sw.counters().icmp_sent(), 0);
}

#[test]
fn peer_to_nowhere_is_dropped_silently() {
    let mut h = Harness::new();
    assert_eq!(
        h.peer(P1, pkt(PEER1_POD4, NOWHERE4).udp(1, 2).build()),
        Action::Drop(DropReason::NoRoute)
    );
    assert_eq!(
        h.peer(P1, pkt(PEER1_POD6, NOWHERE6).udp(1, 2).build()),
        Action::Drop(DropReason::NoRoute)
    );
    assert_eq!(h.sw.counters().icmp_sent(), 0);
}

#[test]
fn peer_to_unassigned_local_address_gets_host_unreachable() {
    let mut h = Harness::new();
    let orig = pkt(PEER1_POD4, UNASSIGNED4)
        .tcp(40000, 80)
        .payload(&[1; 40])
        .build();
    let r = h.peer(P1, orig.clone());
    let reply = h.reply(r);
    assert_eq!(reply.src_addr(), ip(HOST4));
    assert_eq!(
        reply.dst_addr(),
        ip(PEER1_POD4),
        "addressed back to the sender"
    );
    let IpPacket::V4(v4) = &reply else { panic!() };
    assert_eq!(&v4.payload()[..2], &[3, 1]);
    assert_eq!(&v4.payload()[8..], &orig[..28], "original header + 8 bytes");
    assert_eq!(h.dropped(DropReason::NoPod), 1);
    assert_eq!(h.sw.counters().icmp_sent(), 1);

    let orig = pkt(PEER1_POD6, UNASSIGNED6).udp(1, 2).build();
    let r = h.peer(P1, orig.clone());
    let reply = h.reply(r);
    let IpPacket::V6(v6) = &reply else { panic!() };
    assert!(verify_icmpv6_checksum(v6));
    assert_eq!(v6.dst_addr().to_string(), PEER1_POD6);
    assert_eq!(&v6.payload()[..2], &[1, 3]);
    assert_eq!(&v6.payload()[8..], &orig[..]);
}

// ---- ICMP errors -----------------------------------------------------------

#[test]
fn no_route_from_pod_answers_net_unreachable_v4() {
    let mut h = Harness::new();
    let orig = pkt(POD_A4, NOWHERE4)
        .ttl(64)
        .udp(33434, 33435)
        .payload(&[0xab; 32])
        .build();
    let r = h.pod(A, orig.clone());
    let Action::Reply(n) = r else { panic!("{r:?}") };
    let bytes = &h.scratch[..n];
    assert_eq!(n, 20 + 8 + 20 + 8);
    let reply = Ipv4Packet::new_checked(bytes).expect("header checksum valid");
    assert_eq!(reply.src_addr(), Ipv4Addr::new(10, 244, 1, 1));
    assert_eq!(reply.dst_addr(), Ipv4Addr::new(10, 244, 1, 2));
    assert_eq!(reply.protocol(), 1);
    let icmp = reply.payload();
    assert_eq!(
        super::checksum::fold(super::checksum::sum(icmp, 0)),
        0xffff,
        "ICMP checksum valid"
    );
    assert_eq!(&icmp[..2], &[3, 0]);
    // The quote is the packet as received: TTL not decremented.
    assert_eq!(&icmp[8..], &orig[..28]);
    assert_eq!(h.last, orig, "a rejected packet is not modified");
    // The reply itself passes the switch back to the pod's port.
    let mut back = bytes.to_vec();
    assert_eq!(
        h.sw.from_host(&mut back, &mut [0; 100], h.now),
        Action::ToPort(A)
    );
}

#[test]
fn no_route_from_host_answers_too() {
    let mut h = Harness::new();
    let r = h.host(pkt(HOST6, NOWHERE6).tcp(1, 2).build());
    let reply = h.reply(r);
    assert_eq!(reply.dst_addr(), ip(HOST6));
    assert_eq!(
        reply.transport().unwrap(),
        Transport::Icmpv6 {
            ty: 1,
            code: 0,
            echo_id: None
        }
    );
}

#[test]
fn no_route_v6_answers_with_checksummed_icmpv6() {
    let mut h = Harness::new();
    let orig = pkt(POD_A6, NOWHERE6)
        .icmp(128, 0)
        .payload(&[7; 100])
        .build();
    let r = h.pod(A, orig.clone());
    let reply = h.reply(r);
    let IpPacket::V6(v6) = &reply else { panic!() };
    assert_eq!(v6.src_addr().to_string(), HOST6);
    assert_eq!(v6.dst_addr().to_string(), POD_A6);
    assert!(verify_icmpv6_checksum(v6));
    assert_eq!(&v6.payload()[..2], &[1, 0]);
    assert_eq!(
        &v6.payload()[8..],
        &orig[..],
        "RFC 4443: as much as fits in 1280"
    );
}

#[test]
fn icmp_errors_and_non_first_fragments_get_no_answer() {
    let mut h = Harness::new();
    for p in [
        pkt(POD_A4, NOWHERE4).icmp(3, 1).payload(&[0; 28]).build(),
        pkt(POD_A4, NOWHERE4).icmp(11, 0).payload(&[0; 28]).build(),
        pkt(POD_A6, NOWHERE6).icmp(1, 0).payload(&[0; 48]).build(),
        pkt(POD_A6, NOWHERE6).icmp(3, 0).payload(&[0; 48]).build(),
        pkt(POD_A4, NOWHERE4)
            .frag(100, false)
            .raw(17)
            .payload(&[0; 30])
            .build(),
        pkt(POD_A6, NOWHERE6)
            .ext_fragment(100, false)
            .raw(17)
            .payload(&[0; 30])
            .build(),
    ] {
        assert_eq!(h.pod(A, p), Action::Drop(DropReason::NoRoute));
    }
    assert_eq!(h.sw.counters().icmp_sent(), 0);
    // Queries (echo) and first fragments do get an answer.
    let r = h.pod(A, pkt(POD_A4, NOWHERE4).icmp(8, 0).build());
    assert!(matches!(r, Action::Reply(_)));
    let r = h.pod(
        A,
        pkt(POD_A4, NOWHERE4)
            .frag(0, true)
            .udp(1, 2)
            .payload(&[0; 16])
            .build(),
    );
    assert!(matches!(r, Action::Reply(_)));
}

#[test]
fn icmp_errors_are_rate_limited_by_the_time_passed_in() {
    let mut h = Harness::new();
    h.sw.set_icmp_rate_limit(2, 3);
    let p = pkt(POD_A4, NOWHERE4).udp(1, 2).build();
    for _ in 0..3 {
        assert!(matches!(h.pod(A, p.clone()), Action::Reply(_)));
    }
    assert_eq!(h.pod(A, p.clone()), Action::Drop(DropReason::NoRoute));
    assert_eq!(h.pod(A, p.clone()), Action::Drop(DropReason::NoRoute));
    assert_eq!(h.sw.counters().icmp_rate_limited(), 2);
    h.now += Duration::from_millis(499);
    assert_eq!(h.pod(A, p.clone()), Action::Drop(DropReason::NoRoute));
    h.now += Duration::from_millis(1);
    assert!(matches!(h.pod(A, p.clone()), Action::Reply(_)));
    assert_eq!(h.sw.counters().icmp_sent(), 4);
    assert_eq!(
        h.dropped(DropReason::NoRoute),
        7,
        "every rejected packet is a drop"
    );
    // Zero disables ICMP errors altogether.
    h.sw.set_icmp_rate_limit(0, 10);
    h.now += Duration::from_secs(60);
    assert_eq!(h.pod(A, p), Action::Drop(DropReason::NoRoute));
}

#[test]
fn no_host_address_of_the_family_means_no_answer() {
    let mut h = Harness::new();
    h.sw.set_host_addresses(&[ip(HOST4)]).unwrap();
    assert_eq!(
        h.pod(A, pkt(POD_A6, NOWHERE6).udp(1, 2).build()),
        Action::Drop(DropReason::NoRoute)
    );
    assert!(matches!(
        h.pod(A, pkt(POD_A4, NOWHERE4).udp(1, 2).build()),
        Action::Reply(_)
    ));
    assert_eq!(
        h.sw.counters().icmp_rate_limited(),
        0,
        "no token spent without a source"
    );
}

#[test]
fn scratch_too_small_means_no_answer() {
    let mut h = Harness::new();
    h.scratch = vec![0; 40];
    assert_eq!(
        h.pod(A, pkt(POD_A4, NOWHERE4).udp(1, 2).build()),
        Action::Drop(DropReason::NoRoute)
    );
    h.scratch = Vec::new();
    assert_eq!(
        h.pod(A, pkt(POD_A6, NOWHERE6).udp(1, 2).build()),
        Action::Drop(DropReason::NoRoute)
    );
}

// ---- TTL ---------------------------------------------------------------

#[test]
fn ttl_one_answers_time_exceeded() {
    let mut h = Harness::new();
    for ttl in [0, 1] {
        let orig = pkt(POD_A4, POD_B4).ttl(ttl).udp(1, 2).build();
        let r = h.pod(A, orig.clone());
        let reply = h.reply(r);
        assert_eq!(reply.dst_addr(), ip(POD_A4));
        assert_eq!(
            reply.transport().unwrap(),
            Transport::Icmpv4 {
                ty: 11,
                code: 0,
                echo_id: None
            }
        );
        let IpPacket::V4(v4) = &reply else { panic!() };
        assert_eq!(&v4.payload()[8..], &orig[..]);
    }
    // Hop limit 1 in IPv6, arriving from a peer: answered back to the peer.
    let r = h.peer(P1, pkt(PEER1_POD6, POD_A6).ttl(1).udp(1, 2).build());
    let reply = h.reply(r);
    assert_eq!(reply.dst_addr(), ip(PEER1_POD6));
    assert_eq!(
        reply.transport().unwrap(),
        Transport::Icmpv6 {
            ty: 3,
            code: 0,
            echo_id: None
        }
    );
    assert_eq!(h.dropped(DropReason::TtlExceeded), 3);
    // TTL 2 is forwarded with TTL 1.
    assert_eq!(
        h.pod(A, pkt(POD_A4, PEER1_POD4).ttl(2).udp(1, 2).build()),
        Action::ToPeer(P1)
    );
    assert_eq!(Ipv4Packet::new_checked(&h.last[..]).unwrap().ttl(), 1);
}

#[test]
fn no_route_takes_precedence_over_ttl() {
    // Like Linux: route lookup first, then the TTL check on forwarding.
    let mut h = Harness::new();
    let r = h.pod(A, pkt(POD_A4, NOWHERE4).ttl(1).udp(1, 2).build());
    assert_eq!(
        h.reply(r).transport().unwrap(),
        Transport::Icmpv4 {
            ty: 3,
            code: 0,
            echo_id: None
        }
    );
}

// ---- configuration ---------------------------------------------------------

#[test]
fn conflicting_config_is_refused_and_leaves_the_switch_unchanged() {
    let mut sw = configured();
    let before: Vec<_> = sw.routes().collect();
    let err = sw.set_pod_port(PortId(5), &[ip(HOST4)]).unwrap_err();
    assert!(matches!(
        err,
        ConfigError::Conflict {
            existing: Route::Host,
            wanted: Route::Port(PortId(5)),
            ..
        }
    ));
    assert!(err.to_string().contains("10.244.1.1/32"), "{err}");
    let err = sw.set_pod_port(PortId(5), &[ip(POD_A4)]).unwrap_err();
    assert!(matches!(
        err,
        ConfigError::Conflict {
            existing: Route::Port(A),
            ..
        }
    ));
    let err = sw.set_peer(PeerId(5), &[net("10.244.2.0/24")]).unwrap_err();
    assert!(matches!(
        err,
        ConfigError::Conflict {
            existing: Route::Peer(P1),
            ..
        }
    ));
    let err = sw.set_peer(PeerId(5), &[net("10.244.1.0/24")]).unwrap_err();
    assert!(matches!(
        err,
        ConfigError::Conflict {
            existing: Route::Unassigned,
            ..
        }
    ));
    let err = sw.set_host_addresses(&[ip(POD_B4)]).unwrap_err();
    assert!(matches!(err, ConfigError::Conflict { .. }));
    assert_eq!(sw.routes().collect::<Vec<_>>(), before);
    // PeerId 5 was not half-added.
    let mut p = pkt("10.9.9.9", POD_A4).udp(1, 2).build();
    assert_eq!(
        sw.from_peer(PeerId(5), &mut p, &mut [], Instant::now()),
        Action::Drop(DropReason::UnknownPeer)
    );
}

#[test]
fn invalid_pod_ports_are_refused() {
    let mut sw = configured();
    assert_eq!(
        sw.set_pod_port(PortId(5), &[]),
        Err(ConfigError::NoAddress(PortId(5)))
    );
    assert_eq!(
        sw.set_pod_port(PortId(5), &[ip("10.244.1.8"), ip("10.244.1.9")]),
        Err(ConfigError::TwoAddressesOfOneFamily(PortId(5)))
    );
    assert_eq!(
        sw.set_pod_port(PortId(5), &[ip("127.0.0.1")]),
        Err(ConfigError::UnusableAddress(ip("127.0.0.1")))
    );
    assert_eq!(
        sw.set_pod_port(PortId(MAX_ID + 1), &[ip("10.244.1.8")]),
        Err(ConfigError::IdOutOfRange(MAX_ID + 1))
    );
    assert_eq!(
        sw.set_peer(PeerId(u32::MAX), &[]),
        Err(ConfigError::IdOutOfRange(u32::MAX))
    );
    assert_eq!(
        sw.set_host_addresses(&[ip("fe80::1")]),
        Err(ConfigError::UnusableAddress(ip("fe80::1")))
    );
    sw.set_pod_port(PortId(MAX_ID), &[ip("10.244.1.8")])
        .unwrap();
}

#[test]
fn set_peer_replaces_prefixes_and_set_pod_port_replaces_addresses() {
    let mut h = Harness::new();
    h.sw.set_peer(P1, &[net("10.244.20.0/24")]).unwrap();
    assert_eq!(h.sw.route(ip(PEER1_POD4)), None);
    assert_eq!(h.sw.route(ip(PEER1_POD6)), None);
    assert_eq!(h.sw.route(ip("10.244.20.1")), Some(Route::Peer(P1)));
    assert_eq!(
        h.peer(P1, pkt(PEER1_POD4, POD_A4).udp(1, 2).build()),
        Action::Drop(DropReason::SpoofedPeerSource)
    );
    assert_eq!(
        h.peer(P1, pkt("10.244.20.1", POD_A4).udp(1, 2).build()),
        Action::ToPort(A)
    );

    h.sw.set_pod_port(B, &[ip("10.244.1.30")]).unwrap();
    assert_eq!(h.sw.route(ip(POD_B4)), Some(Route::Unassigned));
    assert_eq!(h.sw.route(ip(POD_B6)), Some(Route::Unassigned));
    assert_eq!(
        h.pod(B, pkt(POD_B4, POD_A4).udp(1, 2).build()),
        Action::Drop(DropReason::SpoofedPodSource)
    );
    assert_eq!(
        h.pod(B, pkt("10.244.1.30", POD_A4).udp(1, 2).build()),
        Action::ToPort(A)
    );
    // A peer with no prefixes is known, but can send nothing.
    h.sw.set_peer(P2, &[]).unwrap();
    assert_eq!(
        h.peer(P2, pkt(PEER2_POD4, POD_A4).udp(1, 2).build()),
        Action::Drop(DropReason::SpoofedPeerSource)
    );
}

#[test]
fn unconfigured_switch_drops_everything() {
    let mut h = Harness::with(Switch::new());
    let p = pkt(POD_A4, POD_B4).udp(1, 2).build();
    assert_eq!(h.pod(A, p.clone()), Action::Drop(DropReason::UnknownPort));
    assert_eq!(h.peer(P1, p.clone()), Action::Drop(DropReason::UnknownPeer));
    assert_eq!(h.host(p), Action::Drop(DropReason::SpoofedHostSource));
    assert_eq!(h.sw.routes().count(), 0);
}

#[test]
fn route_table_lists_everything() {
    let sw = configured();
    let routes: Vec<_> = sw.routes().collect();
    assert!(routes.contains(&(net("10.244.1.1/32"), Route::Host)));
    assert!(routes.contains(&(net("10.244.1.0/24"), Route::Unassigned)));
    assert!(routes.contains(&(net("fd00:244:1::2/128"), Route::Port(A))));
    assert!(routes.contains(&(net("fd00:244:3::/64"), Route::Peer(P2))));
    // 2 host + 2 CIDR + 4 pod + 4 peer prefixes.
    assert_eq!(routes.len(), 12);
}

// ---- never panics -----------------------------------------------------------

fn ingress_strategy() -> impl Strategy<Value = (u8, u32)> {
    (0u8..3, 0u32..5)
}

fn run_everywhere(
    sw: &mut Switch,
    which: (u8, u32),
    packet: &mut [u8],
    scratch: &mut [u8],
    now: Instant,
) -> Action {
    match which.0 {
        0 => sw.from_pod(PortId(which.1), packet, scratch, now),
        1 => sw.from_peer(PeerId(which.1), packet, scratch, now),
        _ => sw.from_host(packet, scratch, now),
    }
}

fn check_action(action: Action, scratch: &[u8]) -> Result<(), TestCaseError> {
    if let Action::Reply(n) = action {
        prop_assert!(n <= scratch.len());
        prop_assert!(IpPacket::new_checked(&scratch[..n]).is_ok());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..2000),
        which in ingress_strategy(),
        scratch_len in 0usize..2000,
        millis in 0u64..10_000,
    ) {
        let mut sw = configured();
        let mut packet = bytes.clone();
        let mut scratch = vec![0u8; scratch_len];
        let now = Instant::now() + Duration::from_millis(millis);
        let action = run_everywhere(&mut sw, which, &mut packet, &mut scratch, now);
        check_action(action, &scratch)?;
        let c = sw.counters();
        prop_assert_eq!(c.total_dropped() + c.forwarded_to_port() + c.forwarded_to_host() + c.forwarded_to_peer(), 1);
    }

    #[test]
    fn mutated_valid_packets_never_panic(
        base in 0usize..8,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        fix_checksum in any::<bool>(),
        truncate in proptest::option::of(any::<usize>()),
        which in ingress_strategy(),
        scratch_len in prop_oneof![Just(1500usize), 0usize..200],
    ) {
        let srcs = [POD_A4, POD_A6, PEER1_POD4, PEER1_POD6, HOST4, HOST6, POD_A4, POD_A6];
        let dsts = [NOWHERE4, UNASSIGNED6, POD_B4, POD_A6, PEER2_POD4, NOWHERE6, UNASSIGNED4, PEER1_POD6];
        let f = pkt(srcs[base], dsts[base]).ttl(u8::try_from(base).unwrap());
        let data = [0x5a; 24];
        let mut packet = match base % 4 {
            0 => f.udp(1, 2).payload(&data).build(),
            1 => f.tcp(3, 4).payload(&data).build(),
            2 => f.icmp(8, 0).payload(&data).build(),
            // Hop-by-hop header, then a UDP header, then data.
            _ => {
                let mut raw = vec![17, 0, 1, 4, 0, 0, 0, 0, 0, 1, 0, 2, 0, 32, 0, 0];
                raw.extend_from_slice(&data);
                f.raw(0).payload(&raw).build()
            }
        };
        for (at, x) in flips {
            let len = packet.len();
            packet[at % len] ^= x;
        }
        if let Some(t) = truncate {
            packet.truncate(t % (packet.len() + 1));
        }
        if fix_checksum && packet.len() >= 20 && packet[0] >> 4 == 4 {
            refill_v4_checksum(&mut packet);
        }
        let mut sw = configured();
        let mut scratch = vec![0u8; scratch_len];
        let action = run_everywhere(&mut sw, which, &mut packet, &mut scratch, Instant::now());
        check_action(action, &scratch)?;
    }
}
