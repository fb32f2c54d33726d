use super::*;
use crate::testing::pkt;
use std::net::Ipv4Addr;
use std::time::Duration;

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
        crate::wire::checksum::fold(crate::wire::checksum::sum(icmp, 0)),
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
        h.sw.from_host(&mut back, &VnetHdr::default(), &mut [0; 100], h.now),
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
