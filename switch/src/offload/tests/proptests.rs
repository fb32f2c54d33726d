//! Property tests: no input panics the segmenter or the coalescer, and
//! segmenting then coalescing gives back what went in.

use proptest::prelude::*;

use crate::offload::coalesce::Coalescer;
use crate::offload::segment::segment;
use crate::testing::{as_partial, valid, Fixture};
use crate::wire::vnet::{VnetHdr, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, VNET_HDR_LEN};

fn any_hdr() -> impl Strategy<Value = VnetHdr> {
    (
        any::<u8>(),
        prop_oneof![
            Just(0u8),
            Just(1),
            Just(3),
            Just(4),
            Just(5),
            Just(0x81),
            any::<u8>()
        ],
        any::<u16>(),
        prop_oneof![Just(0u16), 1u16..64, 500u16..1500, any::<u16>()],
        prop_oneof![0u16..80, any::<u16>()],
        prop_oneof![Just(6u16), Just(16), any::<u16>()],
    )
        .prop_map(
            |(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)| VnetHdr {
                flags,
                gso_type,
                hdr_len,
                gso_size,
                csum_start,
                csum_offset,
            },
        )
}

/// A real packet with some bytes flipped, or noise.
fn any_packet() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        (
            any::<bool>(),
            any::<bool>(),
            0usize..3000,
            0usize..10,
            proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4)
        )
            .prop_map(|(v6, tcp, len, opts, flips)| {
                let mut p = if tcp {
                    Fixture::tcp_stream(v6, 1, len, opts * 4).build()
                } else {
                    Fixture::udp_stream(v6, len).build()
                };
                for (at, x) in flips {
                    let n = p.len();
                    p[at % n] ^= x;
                }
                p
            }),
    ]
}

proptest! {
    #[test]
    fn segment_never_panics(hdr in any_hdr(), mut pkt in any_packet(), mtu in prop_oneof![Just(1420usize), 0usize..70_000]) {
        let mut total = 0;
        let _ = segment(&mut pkt, &hdr, mtu, |s| total += s.len());
    }

    #[test]
    fn coalesce_never_panics(pkts in proptest::collection::vec((0u8..3, any_packet()), 0..20)) {
        let mut c = Coalescer::new(3);
        let mut sink = |_: u8, b: &[u8], _: usize| assert!(b.len() >= VNET_HDR_LEN);
        for (d, p) in &pkts {
            c.push(*d, p, *d == 1, &mut sink);
        }
        c.flush(&mut sink);
    }

    #[test]
    fn segments_are_valid_and_coalesce_back(
        v6 in any::<bool>(),
        tcp in any::<bool>(),
        len in 1usize..20_000,
        gso in 200u16..1500,
        opts in 0usize..4,
    ) {
        let p = if tcp { Fixture::tcp_stream(v6, 0xffff_0000, len, opts * 4) } else { Fixture::udp_stream(v6, len) };
        let gso_type = match (tcp, v6) {
            (true, false) => GSO_TCPV4,
            (true, true) => GSO_TCPV6,
            _ => GSO_UDP_L4,
        };
        let (hdr, mut buf) = as_partial(p.build(), gso_type, gso);
        let mut segs = Vec::new();
        segment(&mut buf, &hdr, 65_535, |s| segs.push(s.to_vec())).unwrap();
        prop_assert_eq!(segs.len(), len.div_ceil(usize::from(gso)));
        for s in &segs {
            prop_assert!(valid(s));
        }
        {
            let mut c = Coalescer::new(2);
            let mut out = Vec::new();
            let mut sink = |_: u8, b: &[u8], _: usize| out.push(b.to_vec());
            for s in &segs {
                prop_assert!(c.push(0, s, true, &mut sink));
            }
            c.flush(&mut sink);
            // Back to one super-packet (or one per 64 KiB), whose payload
            // is the original's.
            let hlen = p.build().len() - len;
            let payload: Vec<u8> = out.iter().flat_map(|b| b[VNET_HDR_LEN + hlen..].to_vec()).collect();
            prop_assert_eq!(payload, p.payload.clone());
        }
    }
}
