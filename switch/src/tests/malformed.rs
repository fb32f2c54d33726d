use super::*;
use crate::testing::{pkt, refill_v4_checksum};

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
