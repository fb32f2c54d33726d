//! Issue 10's lesser item: a packet too big for its egress (per segment
//! for a super-packet) is answered with ICMP "fragmentation needed" /
//! ICMPv6 "packet too big" carrying the MTU, rate-limited, and dropped.

use super::*;
use crate::testing::{as_partial, pkt, Fixture};
use crate::wire::vnet::{GSO_TCPV4, GSO_UDP_L4};

const MTU: u32 = 1420;

fn with_mtu() -> Harness {
    let mut h = Harness::new();
    h.sw.set_mtu(MTU).unwrap();
    h
}

/// An IPv4 UDP packet of exactly `len` bytes from pod A to peer 1's pod.
fn v4_of(len: usize, df: bool) -> Vec<u8> {
    pkt(POD_A4, PEER1_POD4)
        .dont_frag(df)
        .udp(40000, 53)
        .payload(&vec![0x5a; len - 28])
        .build()
}

/// The MTU an ICMP "fragmentation needed" reply carries.
fn frag_needed_mtu(reply: &IpPacket<&[u8]>) -> u16 {
    let IpPacket::V4(v4) = reply else {
        panic!("not IPv4")
    };
    let icmp = v4.payload();
    assert_eq!(&icmp[..2], &[3, 4], "ICMP fragmentation needed");
    u16::from_be_bytes([icmp[6], icmp[7]])
}

#[test]
fn a_df_packet_over_the_mtu_gets_fragmentation_needed() {
    let mut h = with_mtu();
    assert_eq!(
        h.pod(A, v4_of(1420, true)),
        Action::ToPeer(P1),
        "exactly the MTU"
    );
    let orig = v4_of(1421, true);
    let r = h.pod(A, orig.clone());
    let reply = h.reply(r);
    assert_eq!(reply.src_addr(), ip(HOST4));
    assert_eq!(reply.dst_addr(), ip(POD_A4));
    assert_eq!(frag_needed_mtu(&reply), 1420);
    let IpPacket::V4(v4) = &reply else { panic!() };
    assert!(crate::wire::checksum::verify(v4.payload(), 0));
    assert_eq!(
        &v4.payload()[8..],
        &orig[..28],
        "the packet as received is quoted"
    );
    assert_eq!(h.last, orig, "not forwarded, not modified");
    assert_eq!(h.dropped(DropReason::PacketTooBig), 1);
    assert_eq!(h.sw.counters().icmp_sent(), 1);
}

#[test]
fn the_largest_ip_packet_gets_one_too() {
    let mut h = with_mtu();
    let r = h.pod(A, v4_of(65_535, true));
    assert_eq!(frag_needed_mtu(&h.reply(r)), 1420);
}

#[test]
fn without_df_ipv4_is_forwarded_as_before() {
    let mut h = with_mtu();
    assert_eq!(h.pod(A, v4_of(1500, false)), Action::ToPeer(P1));
    assert_eq!(h.dropped(DropReason::PacketTooBig), 0);
}

#[test]
fn any_ipv6_packet_over_the_mtu_gets_packet_too_big() {
    let mut h = with_mtu();
    let fits = pkt(POD_A6, PEER1_POD6)
        .udp(1, 2)
        .payload(&[1; 1372])
        .build();
    assert_eq!(fits.len(), 1420);
    assert_eq!(h.pod(A, fits), Action::ToPeer(P1));
    let orig = pkt(POD_A6, PEER1_POD6)
        .udp(1, 2)
        .payload(&[1; 1373])
        .build();
    let r = h.pod(A, orig.clone());
    let reply = h.reply(r);
    let IpPacket::V6(v6) = &reply else { panic!() };
    assert!(verify_icmpv6_checksum(v6));
    assert_eq!(v6.dst_addr().to_string(), POD_A6);
    assert_eq!(&v6.payload()[..2], &[2, 0]);
    assert_eq!(&v6.payload()[4..8], &1420u32.to_be_bytes());
    assert_eq!(&v6.payload()[8..], &orig[..1232]);
}

#[test]
fn answers_are_rate_limited_by_the_shared_bucket() {
    let mut h = with_mtu();
    h.sw.set_icmp_rate_limit(1, 1);
    assert!(matches!(h.pod(A, v4_of(1500, true)), Action::Reply(_)));
    assert_eq!(
        h.pod(A, v4_of(1500, true)),
        Action::Drop(DropReason::PacketTooBig)
    );
    assert_eq!(h.sw.counters().icmp_rate_limited(), 1);
    assert_eq!(h.dropped(DropReason::PacketTooBig), 2);
    h.now += std::time::Duration::from_secs(1);
    assert!(matches!(h.pod(A, v4_of(1500, true)), Action::Reply(_)));
}

#[test]
fn icmp_errors_too_big_are_dropped_unanswered() {
    let mut h = with_mtu();
    let big_error = pkt(POD_A4, PEER1_POD4)
        .dont_frag(true)
        .icmp(3, 1)
        .payload(&[0; 1500])
        .build();
    assert_eq!(h.pod(A, big_error), Action::Drop(DropReason::PacketTooBig));
    assert_eq!(h.sw.counters().icmp_sent(), 0);
}

#[test]
fn from_a_peer_the_answer_goes_back_to_the_peer() {
    let mut h = with_mtu();
    h.sw.set_route_mtu(Route::Port(A), Some(1280)).unwrap();
    let orig = pkt(PEER1_POD4, POD_A4)
        .dont_frag(true)
        .tcp(1, 2)
        .payload(&[0; 1300])
        .build();
    let r = h.peer(P1, orig);
    let reply = h.reply(r);
    assert_eq!(reply.dst_addr(), ip(PEER1_POD4));
    assert_eq!(frag_needed_mtu(&reply), 1280);
}

#[test]
fn each_egress_has_its_own_mtu() {
    let mut h = with_mtu();
    h.sw.set_route_mtu(Route::Port(B), Some(1280)).unwrap();
    assert_eq!(h.sw.mtu(Route::Port(B)), 1280);
    assert_eq!(h.sw.mtu(Route::Port(A)), 1420);
    assert_eq!(h.sw.mtu(Route::Peer(P1)), 1420);
    let to_b = pkt(POD_A4, POD_B4)
        .dont_frag(true)
        .udp(1, 2)
        .payload(&[0; 1272])
        .build();
    assert_eq!(to_b.len(), 1300);
    let r = h.pod(A, to_b);
    assert_eq!(frag_needed_mtu(&h.reply(r)), 1280);
    assert_eq!(h.pod(A, v4_of(1300, true)), Action::ToPeer(P1));
    // The host port and peers can have theirs too.
    h.sw.set_route_mtu(Route::Peer(P1), Some(1300)).unwrap();
    h.sw.set_route_mtu(Route::Host, Some(9000)).unwrap();
    assert_eq!(h.sw.mtu(Route::Peer(P1)), 1300);
    assert_eq!(h.sw.mtu(Route::Host), 9000);
    let r = h.pod(A, v4_of(1301, true));
    assert_eq!(frag_needed_mtu(&h.reply(r)), 1300);
    // Back to the default.
    h.sw.set_route_mtu(Route::Port(B), None).unwrap();
    assert_eq!(h.sw.mtu(Route::Port(B)), 1420);
}

#[test]
fn super_packets_are_checked_per_segment() {
    let mut h = with_mtu();
    let mut f = Fixture::tcp_stream(false, 1, 30_000, 12);
    (f.src, f.dst) = (ip(POD_A4), ip(PEER1_POD4));
    // 52 bytes of headers + 1368 = 1420: every segment fits.
    let (hdr, p) = as_partial(f.build(), GSO_TCPV4, 1368);
    assert_eq!(h.pod_gso(A, p, &hdr), Action::ToPeer(P1));
    // 9000-byte segments on a 1420-byte path (issue 10, item 3 (a)).
    let (hdr, p) = as_partial(f.build(), GSO_TCPV4, 9000);
    let r = h.pod_gso(A, p, &hdr);
    assert_eq!(frag_needed_mtu(&h.reply(r)), 1420);
    // A UDP super-packet without DF is dropped but not answered.
    let mut u = Fixture::udp_stream(false, 20_000);
    (u.src, u.dst, u.df) = (ip(POD_A4), ip(PEER1_POD4), false);
    let (hdr, p) = as_partial(u.build(), GSO_UDP_L4, 1500);
    assert_eq!(
        h.pod_gso(A, p, &hdr),
        Action::Drop(DropReason::PacketTooBig)
    );
    assert_eq!(h.dropped(DropReason::PacketTooBig), 2);
}

#[test]
fn mtus_are_validated() {
    let mut sw = configured();
    assert_eq!(sw.mtu(Route::Host), 65_535, "no limit until set");
    assert_eq!(sw.set_mtu(575), Err(ConfigError::MtuOutOfRange(575)));
    assert_eq!(sw.set_mtu(65_536), Err(ConfigError::MtuOutOfRange(65_536)));
    sw.set_mtu(576).unwrap();
    sw.set_mtu(65_535).unwrap();
    assert_eq!(
        sw.set_route_mtu(Route::Port(PortId(99)), Some(1400)),
        Err(ConfigError::NoSuchEgress(Route::Port(PortId(99))))
    );
    assert_eq!(
        sw.set_route_mtu(Route::Unassigned, Some(1400)),
        Err(ConfigError::NoSuchEgress(Route::Unassigned))
    );
    // A port keeps its MTU when its addresses change, and loses it when
    // removed.
    sw.set_route_mtu(Route::Port(A), Some(1400)).unwrap();
    sw.set_pod_port(A, &[ip("10.244.1.40")]).unwrap();
    assert_eq!(sw.mtu(Route::Port(A)), 1400);
    assert!(sw.remove_pod_port(A));
    sw.set_pod_port(A, &[ip(POD_A4)]).unwrap();
    assert_eq!(sw.mtu(Route::Port(A)), 65_535);
}
