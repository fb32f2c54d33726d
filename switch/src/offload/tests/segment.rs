use crate::offload::segment::*;
use crate::testing::{as_partial, valid, Fixture};
use crate::wire::tcp_flags::{ACK, CWR, ECE, FIN, PSH, SYN};
use crate::wire::vnet::{
    VnetHdr, F_NEEDS_CSUM, GSO_ECN, GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4,
};

/// An MTU no test packet reaches.
const NO_LIMIT: usize = 65_535;

/// Segments `p` for a path of MTU `mtu` and returns the segments' bytes.
fn split_mtu(
    p: &Fixture,
    gso_type: u8,
    gso: u16,
    mtu: usize,
) -> Result<Vec<Vec<u8>>, SegmentError> {
    let (hdr, mut buf) = as_partial(p.build(), gso_type, gso);
    let checked = check(&buf, &hdr, mtu);
    let mut out = Vec::new();
    let result = segment(&mut buf, &hdr, mtu, |s| out.push(s.to_vec()));
    if hdr.is_gso() {
        // `check` says what `segment` does to the header, without splitting.
        assert_eq!(checked, result, "check and segment agree");
    }
    let n = result?;
    assert_eq!(n, out.len());
    assert_eq!(
        n,
        segment_count(&as_partial(p.build(), gso_type, gso).1, &hdr)
    );
    Ok(out)
}

fn split(p: &Fixture, gso_type: u8, gso: u16) -> Result<Vec<Vec<u8>>, SegmentError> {
    split_mtu(p, gso_type, gso, NO_LIMIT)
}

fn field32(p: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]])
}

#[test]
fn tcp4_splits_by_gso_size_with_a_short_last_segment() {
    let mut p = Fixture::tcp_stream(false, 0xffff_f000, 3500, 12);
    p.flags = ACK | PSH | FIN | CWR;
    p.id = 0xfffe;
    let segs = split(&p, GSO_TCPV4, 1000).unwrap();
    assert_eq!(segs.len(), 4);
    let mut joined = Vec::new();
    for (i, s) in segs.iter().enumerate() {
        assert!(valid(s), "segment {i} checksums");
        let last = i == 3;
        assert_eq!(s.len(), 52 + if last { 500 } else { 1000 });
        // IPv4 ID increments (and wraps).
        assert_eq!(
            u16::from_be_bytes([s[4], s[5]]),
            0xfffe_u16.wrapping_add(i as u16)
        );
        // Sequence numbers advance by payload (and wrap).
        assert_eq!(
            field32(s, 24),
            0xffff_f000_u32.wrapping_add(1000 * i as u32)
        );
        let flags = s[33];
        assert_eq!(flags & CWR != 0, i == 0, "CWR only on the first");
        assert_eq!(
            flags & (PSH | FIN) == PSH | FIN,
            last,
            "PSH and FIN only on the last"
        );
        assert_eq!(flags & (PSH | FIN) != 0, last);
        assert!(flags & ACK != 0);
        // Options are copied unchanged.
        assert_eq!(s[40..52], p.build()[40..52]);
        joined.extend_from_slice(&s[52..]);
    }
    assert_eq!(joined, p.payload);
}

#[test]
fn tcp6_splits_too() {
    let p = Fixture::tcp_stream(true, 1, 2800, 0);
    let segs = split(&p, GSO_TCPV6 | GSO_ECN, 1400).unwrap();
    assert_eq!(segs.len(), 2);
    for s in &segs {
        assert!(valid(s));
        assert_eq!(s.len(), 60 + 1400);
    }
    assert_eq!(field32(&segs[1], 44), 1401);
    assert_eq!([&segs[0][60..], &segs[1][60..]].concat(), p.payload);
}

#[test]
fn udp_splits_both_families() {
    for v6 in [false, true] {
        let p = Fixture::udp_stream(v6, 3000);
        let segs = split(&p, GSO_UDP_L4, 1200).unwrap();
        let h = if v6 { 48 } else { 28 };
        assert_eq!(
            segs.iter().map(Vec::len).collect::<Vec<_>>(),
            [h + 1200, h + 1200, h + 600]
        );
        assert!(segs.iter().all(|s| valid(s)), "v6 {v6}");
        let joined: Vec<u8> = segs.iter().flat_map(|s| s[h..].to_vec()).collect();
        assert_eq!(joined, p.payload);
    }
}

#[test]
fn a_gso_size_above_the_payload_makes_one_segment() {
    let p = Fixture::tcp_stream(false, 5, 700, 0);
    let segs = split(&p, GSO_TCPV4, 1400).unwrap();
    assert_eq!(segs, vec![p.build()]);
    // An exact multiple has no short tail.
    let p = Fixture::tcp_stream(false, 5, 2800, 0);
    assert_eq!(split(&p, GSO_TCPV4, 1400).unwrap().len(), 2);
    // No payload at all: the headers alone.
    let p = Fixture::tcp_stream(false, 5, 0, 0);
    assert_eq!(split(&p, GSO_TCPV4, 1400).unwrap(), vec![p.build()]);
}

#[test]
fn mismatched_headers_are_refused() {
    let p4 = Fixture::tcp_stream(false, 5, 3000, 0);
    let p6 = Fixture::tcp_stream(true, 5, 3000, 0);
    assert_eq!(split(&p4, GSO_TCPV6, 1000), Err(SegmentError::Malformed));
    assert_eq!(split(&p6, GSO_TCPV4, 1000), Err(SegmentError::Malformed));
    assert_eq!(split(&p4, GSO_UDP_L4, 1000), Err(SegmentError::Malformed));
    // UFO (type 3) is not split.
    assert_eq!(
        split(&Fixture::udp_stream(false, 3000), 3, 1000),
        Err(SegmentError::Unsupported)
    );
    // A GSO header on garbage.
    let hdr = VnetHdr {
        gso_type: GSO_TCPV4,
        gso_size: 100,
        ..VnetHdr::default()
    };
    let mut junk = [0x45u8; 64];
    assert_eq!(
        segment(&mut junk, &hdr, NO_LIMIT, |_| panic!("emitted")),
        Err(SegmentError::Malformed)
    );
    assert_eq!(segment_count(&junk, &hdr), 1);
}

#[test]
fn single_packets_get_their_partial_checksum_completed() {
    for p in [
        Fixture::tcp_stream(false, 9, 333, 12),
        Fixture::tcp_stream(true, 9, 1, 0),
        Fixture::udp_stream(false, 0),
        Fixture::udp_stream(true, 77),
    ] {
        let (hdr, mut buf) = as_partial(p.build(), GSO_NONE, 0);
        let mut out = Vec::new();
        assert_eq!(
            segment(&mut buf, &hdr, NO_LIMIT, |s| out.push(s.to_vec())),
            Ok(1)
        );
        assert_eq!(out, vec![p.build()], "{p:?}");
    }
    // Without NEEDS_CSUM the packet passes as it is.
    let p = Fixture::tcp_stream(false, 9, 10, 0).build();
    let mut buf = p.clone();
    let mut out = Vec::new();
    segment(&mut buf, &VnetHdr::default(), NO_LIMIT, |s| {
        out.push(s.to_vec())
    })
    .unwrap();
    assert_eq!(out, vec![p]);
    // A checksum field out of bounds.
    let hdr = VnetHdr {
        flags: F_NEEDS_CSUM,
        csum_start: 20,
        csum_offset: 200,
        ..VnetHdr::default()
    };
    let mut buf = Fixture::tcp_stream(false, 9, 10, 0).build();
    assert_eq!(
        segment(&mut buf, &hdr, NO_LIMIT, |_| {}),
        Err(SegmentError::BadChecksumOffsets)
    );
}

#[test]
fn other_flags_pass_through() {
    let mut p = Fixture::tcp_stream(false, 5, 2000, 0);
    p.flags = ACK | ECE | SYN;
    let segs = split(&p, GSO_TCPV4, 1000).unwrap();
    assert!(segs.iter().all(|s| s[33] == ACK | ECE | SYN));
}

#[test]
fn segments_smaller_than_their_headers() {
    // gso_size below the header length (80): each segment's headers cover
    // more than the previous payload.
    let p = Fixture::tcp_stream(false, 77, 1000, 40);
    let segs = split(&p, GSO_TCPV4, MIN_GSO_SIZE).unwrap();
    assert_eq!(segs.len(), 16);
    assert!(segs.iter().all(|s| valid(s)));
    let joined: Vec<u8> = segs.iter().flat_map(|s| s[80..].to_vec()).collect();
    assert_eq!(joined, p.payload);
}

// ---- issue 10, item 3: crafted offload metadata from a pod ----------------

/// The super-packet of issue 10 (a): 30 KB of TCP, 1 420-byte path.
fn thirty_kb(v6: bool) -> Fixture {
    Fixture::tcp_stream(v6, 1, 30_000, 12)
}

#[test]
fn a_gso_size_above_the_path_mtu_is_refused_before_anything_is_emitted() {
    for v6 in [false, true] {
        let gso_type = if v6 { GSO_TCPV6 } else { GSO_TCPV4 };
        let p = thirty_kb(v6);
        let h = if v6 { 72 } else { 52 };
        // 9000-byte segments on a 1420-byte path.
        assert_eq!(
            split_mtu(&p, gso_type, 9000, 1420),
            Err(SegmentError::SegmentAboveMtu)
        );
        // The largest segment that fits is accepted, one byte more is not.
        let fits = u16::try_from(1420 - h).unwrap();
        let segs = split_mtu(&p, gso_type, fits, 1420).unwrap();
        assert!(segs.iter().all(|s| s.len() <= 1420 && valid(s)));
        assert_eq!(
            split_mtu(&p, gso_type, fits + 1, 1420),
            Err(SegmentError::SegmentAboveMtu)
        );
    }
    // A super-packet whose only segment is short fits whatever gso_size says.
    let small = Fixture::tcp_stream(false, 1, 500, 0);
    assert_eq!(split_mtu(&small, GSO_TCPV4, 9000, 1420).unwrap().len(), 1);
    // IPv6 paths carry 1280 bytes whatever the configured MTU.
    let p = Fixture::udp_stream(true, 3000);
    assert_eq!(split_mtu(&p, GSO_UDP_L4, 1232, 1000).unwrap().len(), 3);
    assert_eq!(
        split_mtu(&p, GSO_UDP_L4, 1233, 1000),
        Err(SegmentError::SegmentAboveMtu)
    );
}

#[test]
fn a_tiny_gso_size_is_refused_not_amplified() {
    // Issue 10 (b): gso_size 1 on 65 KB made ~65 000 packets of one write.
    let p = Fixture::tcp_stream(false, 1, 65_000, 0);
    for gso in [0u16, 1, 7, MIN_GSO_SIZE - 1] {
        assert_eq!(
            split_mtu(&p, GSO_TCPV4, gso, 1420),
            Err(SegmentError::GsoSizeTooSmall),
            "gso_size {gso}"
        );
    }
    let segs = split_mtu(&p, GSO_TCPV4, MIN_GSO_SIZE, 1420).unwrap();
    assert_eq!(segs.len(), 65_000usize.div_ceil(usize::from(MIN_GSO_SIZE)));
    assert!(segs.len() <= MAX_TSO_SEGMENTS);
}

#[test]
fn udp_super_packets_hold_at_most_the_kernels_datagram_count() {
    let p = Fixture::udp_stream(false, usize::from(MIN_GSO_SIZE) * MAX_USO_SEGMENTS);
    let segs = split_mtu(&p, GSO_UDP_L4, MIN_GSO_SIZE, 1420).unwrap();
    assert_eq!(segs.len(), MAX_USO_SEGMENTS);
    let p = Fixture::udp_stream(false, usize::from(MIN_GSO_SIZE) * MAX_USO_SEGMENTS + 1);
    assert_eq!(
        split_mtu(&p, GSO_UDP_L4, MIN_GSO_SIZE, 1420),
        Err(SegmentError::TooManySegments)
    );
}

#[test]
fn the_checks_use_a_byte_fixture_as_a_pod_would_write_it() {
    // A TCP/IPv4 super-packet as written through AF_PACKET with
    // PACKET_VNET_HDR: virtio-net header (NEEDS_CSUM, TCPV4, hdr_len 40,
    // gso_size 9000, csum 20+16), then 20 + 20 + 3000 bytes.
    let vnet = [0x01, 0x01, 40, 0, 0x28, 0x23, 20, 0, 16, 0];
    let hdr = VnetHdr::decode(&vnet).unwrap();
    assert_eq!(hdr.gso_size, 9000);
    let mut p = crate::testing::pkt("10.244.1.2", "10.244.2.2")
        .tcp(40000, 5201)
        .dont_frag(true)
        .payload(&[0x5a; 3000])
        .build();
    let emitted = std::cell::Cell::new(0);
    assert_eq!(
        segment(&mut p, &hdr, 1420, |_| emitted.set(emitted.get() + 1)),
        Err(SegmentError::SegmentAboveMtu)
    );
    assert_eq!(emitted.get(), 0);
    let mut tiny = vnet;
    tiny[4..6].copy_from_slice(&1u16.to_le_bytes());
    let hdr = VnetHdr::decode(&tiny).unwrap();
    assert_eq!(
        segment(&mut p, &hdr, 1420, |_| emitted.set(1)),
        Err(SegmentError::GsoSizeTooSmall)
    );
    assert_eq!(emitted.get(), 0);
}

#[test]
fn every_cause_is_listed_once_in_declaration_order() {
    // Callers index per-cause counters by `cause as usize`.
    for (i, cause) in SegmentError::ALL.iter().enumerate() {
        assert_eq!(*cause as usize, i, "{cause:?}");
    }
}
