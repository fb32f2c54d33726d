use super::*;
use crate::testing::{pkt, refill_v4_checksum};
use proptest::prelude::*;
use std::time::Duration;

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
        0 => sw.from_pod(PortId(which.1), packet, &VnetHdr::default(), scratch, now),
        1 => sw.from_peer(PeerId(which.1), packet, scratch, now),
        _ => sw.from_host(packet, &VnetHdr::default(), scratch, now),
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
        let now = t0() + Duration::from_millis(millis);
        let action = run_everywhere(&mut sw, which, &mut packet, &mut scratch, now);
        check_action(action, &scratch)?;
        let c = sw.counters();
        prop_assert_eq!(c.total_dropped() + c.forwarded_to_port() + c.forwarded_to_host() + c.forwarded_to_peer() + c.delivered_to_dns(), 1);
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
        let action = run_everywhere(&mut sw, which, &mut packet, &mut scratch, t0());
        check_action(action, &scratch)?;
    }
}
