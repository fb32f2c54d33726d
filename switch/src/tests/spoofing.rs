use super::*;
use crate::testing::pkt;

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
