use super::*;
use crate::testing::pkt;

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
