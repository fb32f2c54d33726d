//! Property tests of the DNS VIP step: whatever bytes a pod sends to the
//! VIP (as the DNS message of a well-formed packet, or as a mutated
//! packet), nothing panics, the packet is counted exactly once, and what
//! the switch hands back is well-formed and within bounds.

use proptest::prelude::*;

use super::dns::{udp_query, with_dns, VIP4, VIP6};
use super::*;
use crate::testing::{pkt, refill_v4_checksum};

/// What a reply or forward must satisfy, given the scratch buffer and the
/// pod's MTU.
fn check(action: Action, packet: &[u8], scratch: &[u8], mtu: usize) -> Result<(), TestCaseError> {
    match action {
        Action::Reply(n) => {
            prop_assert!(n <= scratch.len() && n <= mtu);
            prop_assert!(valid(&scratch[..n]), "reply lengths and checksums");
        }
        Action::DnsForward(q) => {
            prop_assert!(!q.message(packet).is_empty());
            prop_assert!(usize::from(q.client.max_message) + 28 <= mtu);
        }
        _ => {}
    }
    Ok(())
}

fn counted_once(sw: &Switch) -> u64 {
    let c = sw.counters();
    c.total_dropped()
        + c.forwarded_to_port()
        + c.forwarded_to_host()
        + c.forwarded_to_peer()
        + c.delivered_to_dns()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn random_dns_messages_to_the_vip_never_panic(
        dns in proptest::collection::vec(any::<u8>(), 0..1500),
        v6 in any::<bool>(),
        scratch_len in prop_oneof![Just(1500usize), 0usize..700],
        mtu in 576u32..1500,
    ) {
        let mut h = with_dns();
        h.sw.set_route_mtu(Route::Port(A), Some(mtu)).unwrap();
        h.scratch = vec![0; scratch_len];
        let packet = if v6 {
            udp_query(POD_A6, VIP6, &dns)
        } else {
            udp_query(POD_A4, VIP4, &dns)
        };
        let action = h.pod(A, packet);
        check(action, &h.last, &h.scratch, mtu as usize)?;
        prop_assert_eq!(counted_once(&h.sw), 1);
    }

    #[test]
    fn mutated_packets_to_the_vip_never_panic(
        base in 0usize..4,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        fix_checksum in any::<bool>(),
        truncate in proptest::option::of(any::<usize>()),
    ) {
        let q = super::dns::query("web.shop.svc.cluster.local.", hickory_proto::rr::RecordType::SRV);
        let mut packet = match base {
            0 => udp_query(POD_A4, VIP4, &q),
            1 => udp_query(POD_A6, VIP6, &q),
            2 => pkt(POD_A4, VIP4).tcp(1, 53).payload(&q).build(),
            _ => pkt(POD_A6, VIP6).udp(1, 9).payload(&q).build(),
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
        let mut h = with_dns();
        let action = h.pod(A, packet);
        check(action, &h.last, &h.scratch, 1500)?;
        prop_assert_eq!(counted_once(&h.sw), 1);
    }
}
