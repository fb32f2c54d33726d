use crate::offload::coalesce::*;
use crate::offload::segment::{complete, segment};
use crate::testing::{pattern, valid, Fixture};
use crate::wire::tcp_flags::{ACK, ECE, FIN, PSH, SYN};
use crate::wire::vnet::{VnetHdr, F_NEEDS_CSUM, GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4};
use crate::wire::VNET_HDR_LEN;

/// What came out: (dst, header, packet).
type Out = Vec<(u8, VnetHdr, Vec<u8>)>;

fn run(c: &mut Coalescer<u8>, pkts: &[(u8, Vec<u8>)]) -> (Out, Vec<bool>) {
    let mut out = Out::new();
    let mut sink = |d: u8, b: &[u8], _: usize| {
        out.push((d, VnetHdr::decode(b).unwrap(), b[VNET_HDR_LEN..].to_vec()))
    };
    let kept: Vec<bool> = pkts
        .iter()
        .map(|(d, p)| c.push(*d, p, false, &mut sink))
        .collect();
    c.flush(&mut sink);
    (out, kept)
}

/// A flow's segments: `n` of `size` bytes from `seq`.
fn flow(v6: bool, seq: u32, n: usize, size: usize) -> Vec<Fixture> {
    (0..n)
        .map(|i| {
            let mut p = Fixture::tcp_stream(v6, seq.wrapping_add((i * size) as u32), size, 12);
            p.id = 100 + i as u16;
            p
        })
        .collect()
}

/// Splits a written super-packet back into segments.
fn resegment(h: &VnetHdr, p: &[u8]) -> Vec<Vec<u8>> {
    let mut buf = p.to_vec();
    let mut segs = Vec::new();
    segment(&mut buf, h, 65_535, |s| segs.push(s.to_vec())).unwrap();
    segs
}

#[test]
fn in_order_segments_become_one_super_packet() {
    for v6 in [false, true] {
        let mut pkts = flow(v6, 0xffff_ff00, 5, 1000);
        pkts[4].flags |= PSH;
        let built: Vec<Vec<u8>> = pkts.iter().map(Fixture::build).collect();
        let mut c = Coalescer::new(4);
        let (out, kept) = run(
            &mut c,
            &built.iter().map(|p| (7, p.clone())).collect::<Vec<_>>(),
        );
        assert!(kept.iter().all(|k| *k));
        assert_eq!(out.len(), 1);
        let (dst, h, p) = &out[0];
        assert_eq!(*dst, 7);
        assert_eq!(h.gso(), if v6 { GSO_TCPV6 } else { GSO_TCPV4 });
        assert_eq!(
            (h.flags, h.gso_size, h.csum_offset),
            (F_NEEDS_CSUM, 1000, 16)
        );
        assert_eq!(usize::from(h.csum_start), if v6 { 40 } else { 20 });
        assert_eq!(usize::from(h.hdr_len), usize::from(h.csum_start) + 32);
        // The partial checksum completes to a valid super-packet.
        let mut whole = p.clone();
        let single = VnetHdr {
            gso_type: GSO_NONE,
            ..*h
        };
        complete(&mut whole, &single).unwrap();
        assert!(valid(&whole), "v6 {v6}");
        // And it splits back into exactly what came in.
        assert_eq!(resegment(h, p), built, "v6 {v6}");
        assert_eq!(c.stats.merged, 4);
        assert!(c.is_empty());
    }
}

#[test]
fn a_gap_or_a_short_segment_starts_a_new_item_in_order() {
    let a = flow(false, 0, 6, 1000);
    let mut short = a[2].clone();
    short.payload.truncate(500);
    // 0, 1, short(2) | 2 (resent full: seq 2000 again -> gap) ...
    let seq: Vec<Vec<u8>> = vec![
        a[0].build(),
        a[1].build(),
        short.build(),
        // After the short one: a new item.
        Fixture::tcp_stream(false, 2500, 1000, 12).build(),
        // A gap (3500 expected): a new item.
        a[4].build(),
        a[5].build(),
    ];
    let mut c = Coalescer::new(8);
    let (out, _) = run(
        &mut c,
        &seq.iter().map(|p| (1, p.clone())).collect::<Vec<_>>(),
    );
    let counts: Vec<usize> = out
        .iter()
        .map(|(_, h, p)| if h.is_gso() { resegment(h, p).len() } else { 1 })
        .collect();
    assert_eq!(counts, [3, 1, 2]);
    let all: Vec<Vec<u8>> = out
        .iter()
        .flat_map(|(_, h, p)| {
            if h.is_gso() {
                resegment(h, p)
            } else {
                vec![p.clone()]
            }
        })
        .collect();
    // Every byte, in order; IPv4 IDs of a re-split item follow its first.
    assert_eq!(all.len(), 6);
    for (got, want) in all.iter().zip(&seq) {
        assert_eq!(got[24..], want[24..]);
    }
}

#[test]
fn flows_and_destinations_stay_apart() {
    let a = flow(false, 0, 3, 1000);
    let mut b = flow(false, 0, 3, 1000);
    for p in &mut b {
        p.src_port = 40001;
    }
    let mut c = Coalescer::new(8);
    let input = vec![
        (1, a[0].build()),
        (1, b[0].build()),
        (1, a[1].build()),
        (2, a[2].build()),
        (1, b[1].build()),
        (1, b[2].build()),
    ];
    let (out, kept) = run(&mut c, &input);
    assert!(kept.iter().all(|k| *k));
    let shape: Vec<(u8, u16, usize)> = out
        .iter()
        .map(|(d, h, p)| (*d, h.gso_size, p.len()))
        .collect();
    assert_eq!(shape, [(1, 1000, 2052), (1, 1000, 3052), (2, 0, 1052)]);
}

#[test]
fn what_cannot_merge_goes_out_at_once_or_after_its_flow() {
    let mut c = Coalescer::new(8);
    let mut ack = Fixture::tcp_stream(false, 0, 0, 12);
    ack.flags = ACK;
    let mut sink = |_: u8, _: &[u8], _: usize| panic!("nothing to flush yet");
    // Nothing of the flow pending: a pure ACK, a SYN, UDP, garbage go now.
    assert!(!c.push(1, &ack.build(), false, &mut sink));
    let mut syn = ack.clone();
    syn.flags = SYN;
    assert!(!c.push(1, &syn.build(), false, &mut sink));
    assert!(!c.push(1, &Fixture::udp_stream(false, 10).build(), false, &mut sink));
    assert!(!c.push(1, &[0x45, 0, 0], true, &mut sink));
    // A bad checksum never joins.
    let mut bad = Fixture::tcp_stream(false, 0, 100, 12).build();
    bad[60] ^= 1;
    assert!(!c.push(1, &bad, true, &mut sink));
    assert_eq!(c.stats.bad_checksum, 1);
    // With data pending, a FIN of the flow queues behind it.
    let data = flow(false, 0, 2, 1000);
    let mut fin = Fixture::tcp_stream(false, 2000, 0, 12);
    fin.flags = ACK | FIN;
    let (out, kept) = run(
        &mut c,
        &[(1, data[0].build()), (1, data[1].build()), (1, fin.build())],
    );
    assert_eq!(kept, [true, true, true]);
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].2, fin.build());
    assert_eq!(out[1].1, VnetHdr::default());
}

#[test]
fn trusting_checksums_merges_what_verifying_keeps_apart() {
    let mut segs: Vec<Vec<u8>> = flow(false, 0, 3, 1000).iter().map(Fixture::build).collect();
    // The middle segment's payload no longer matches its checksum.
    segs[1][60] ^= 1;
    let pkts: Vec<(u8, Vec<u8>)> = segs.iter().map(|p| (1, p.clone())).collect();
    let (out, kept) = run(&mut Coalescer::new(4), &pkts);
    assert_eq!(kept, [true, false, true]);
    assert_eq!(out.len(), 2, "the bad one is written at once, not merged");
    let mut trusting = Coalescer::new(4).trust_checksums();
    let (out, kept) = run(&mut trusting, &pkts);
    assert_eq!(kept, [true, true, true]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1.gso_size, 1000);
    assert_eq!(out[0].2.len(), 20 + 32 + 3000);
    assert_eq!(trusting.stats.bad_checksum, 0);
}

#[test]
fn headers_must_agree() {
    let base = flow(false, 0, 2, 1000);
    let variants: [fn(&mut Fixture); 7] = [
        |p| p.tcp_options[5] ^= 1,
        |p| p.ack += 1,
        |p| p.window += 1,
        |p| p.ttl -= 1,
        |p| p.tos = 2,
        |p| p.flags |= ECE,
        // No DF, and an ID that does not follow.
        |p| {
            p.df = false;
            p.id = 7;
        },
    ];
    for (i, change) in variants.iter().enumerate() {
        let mut second = base[1].clone();
        change(&mut second);
        let mut c = Coalescer::new(4);
        let (out, _) = run(&mut c, &[(1, base[0].build()), (1, second.build())]);
        assert_eq!(out.len(), 2, "variant {i}");
    }
    // Without DF, incrementing IDs merge.
    let mut c = Coalescer::new(4);
    let mut a = base.clone();
    for p in &mut a {
        p.df = false;
    }
    let (out, _) = run(&mut c, &[(1, a[0].build()), (1, a[1].build())]);
    assert_eq!(out.len(), 1);
}

#[test]
fn items_stop_at_64k_and_slots_flush_when_full() {
    let pkts = flow(false, 0, 70, 1000);
    let mut c = Coalescer::new(2);
    let (out, _) = run(
        &mut c,
        &pkts.iter().map(|p| (1, p.build())).collect::<Vec<_>>(),
    );
    let lens: Vec<usize> = out.iter().map(|(_, _, p)| p.len()).collect();
    // 65 segments fit in 65535 bytes (52 + 65 * 1000); then the rest.
    assert_eq!(lens, [52 + 65_000, 52 + 5000]);
    // Three flows through two slots: the first two go out early.
    let mut c = Coalescer::new(2);
    let out = std::cell::Cell::new(0);
    let mut sink = |_: u8, _: &[u8], _: usize| out.set(out.get() + 1);
    for port in 0..3u16 {
        let mut p = Fixture::tcp_stream(false, 0, 100, 0);
        p.src_port = port;
        assert!(c.push(1, &p.build(), false, &mut sink));
    }
    assert_eq!(out.get(), 2);
    c.flush(&mut sink);
    assert_eq!(out.get(), 3);
}

/// `n` datagrams of `size` bytes of one UDP flow.
fn udp_flow(v6: bool, n: usize, size: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut p = Fixture::udp_stream(v6, size);
            p.id = 500 + i as u16;
            p.payload = pattern(size, i);
            p.build()
        })
        .collect()
}

#[test]
fn udp_datagrams_of_one_size_become_one_uso_packet() {
    for v6 in [false, true] {
        let mut dgrams = udp_flow(v6, 5, 300);
        let mut last = Fixture::udp_stream(v6, 120);
        last.id = 505;
        dgrams.push(last.build());
        let mut c = Coalescer::new(4);
        let (out, kept) = run_udp(&mut c, &dgrams);
        assert!(kept.iter().all(|k| *k));
        assert_eq!(out.len(), 1, "v6 {v6}");
        let (_, h, p) = &out[0];
        assert_eq!(
            (h.gso(), h.gso_size, h.csum_offset, h.flags),
            (GSO_UDP_L4, 300, 6, F_NEEDS_CSUM)
        );
        let mut whole = p.clone();
        complete(
            &mut whole,
            &VnetHdr {
                gso_type: GSO_NONE,
                ..*h
            },
        )
        .unwrap();
        assert!(valid(&whole), "the partial checksum completes (v6 {v6})");
        assert_eq!(resegment(h, p), dgrams, "v6 {v6}");
    }
}

fn run_udp(c: &mut Coalescer<u8>, pkts: &[Vec<u8>]) -> (Out, Vec<bool>) {
    let mut out = Out::new();
    let mut sink = |d: u8, b: &[u8], _: usize| {
        out.push((d, VnetHdr::decode(b).unwrap(), b[VNET_HDR_LEN..].to_vec()))
    };
    let kept: Vec<bool> = pkts.iter().map(|p| c.push(1, p, true, &mut sink)).collect();
    c.flush(&mut sink);
    (out, kept)
}

#[test]
fn udp_items_end_at_a_shorter_datagram_and_at_64() {
    let mut dgrams = udp_flow(false, 3, 300);
    dgrams.insert(1, udp_flow(false, 1, 100).remove(0));
    let mut c = Coalescer::new(4);
    let (out, _) = run_udp(&mut c, &dgrams);
    // [300 100] [300 300]: a shorter one ends an item; order is kept.
    let shape: Vec<(u16, usize)> = out.iter().map(|(_, h, p)| (h.gso_size, p.len())).collect();
    assert_eq!(shape, [(300, 28 + 400), (300, 28 + 600)]);
    let dgrams = udp_flow(false, 70, 10);
    let (out, _) = run_udp(&mut c, &dgrams);
    let lens: Vec<usize> = out.iter().map(|(_, _, p)| p.len()).collect();
    assert_eq!(lens, [28 + 640, 28 + 60]);
    // IPv4 without a checksum joins; without `udp` nothing is kept.
    let mut bare = udp_flow(false, 2, 50);
    for d in &mut bare {
        d[26..28].fill(0);
    }
    let (out, _) = run_udp(&mut c, &bare);
    assert_eq!(out.len(), 1);
    let mut sink = |_: u8, _: &[u8], _: usize| {};
    assert!(!c.push(1, &bare[0], false, &mut sink));
}

#[test]
fn flows_apart_by_one_address_byte_stay_apart() {
    // The last byte of an IPv6 destination, or of an IPv4 source.
    for v6 in [true, false] {
        let a = flow(v6, 0, 2, 1000);
        let mut b = flow(v6, 0, 2, 1000);
        for p in &mut b {
            if v6 {
                p.dst = "fd00:244:2::3".parse().unwrap();
            } else {
                p.src = "10.244.1.3".parse().unwrap();
            }
        }
        let input = vec![
            (1, a[0].build()),
            (1, b[0].build()),
            (1, a[1].build()),
            (1, b[1].build()),
        ];
        let (out, _) = run(&mut Coalescer::new(4), &input);
        assert_eq!(out.len(), 2, "v6 {v6}");
        let a: Vec<Vec<u8>> = a.iter().map(Fixture::build).collect();
        let b: Vec<Vec<u8>> = b.iter().map(Fixture::build).collect();
        assert_eq!(resegment(&out[0].1, &out[0].2), a, "v6 {v6}");
        assert_eq!(resegment(&out[1].1, &out[1].2), b, "v6 {v6}");
    }
}
