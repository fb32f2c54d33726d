use super::*;
use crate::testing::pkt;

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
