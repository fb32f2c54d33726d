//! The table's behaviour with a fake clock: lookups both ways, timeouts,
//! the eviction order of a full table, per-source fairness, the sweep.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::*;

use crate::testing::epoch as t0;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const SYN: TcpFlags = TcpFlags(TcpFlags::SYN);
const SYNACK: TcpFlags = TcpFlags(TcpFlags::SYN | TcpFlags::ACK);
const ACK: TcpFlags = TcpFlags(TcpFlags::ACK);

fn table(capacity: usize, per_source: usize, now: Instant) -> Conntrack {
    let cfg = ConntrackConfig {
        capacity,
        per_source,
        owner_slots: 16,
        ..ConntrackConfig::default()
    };
    Conntrack::new(cfg, HashSeed(0x0123, 0x4567), now)
}

/// TCP from pod `owner`'s address 10.244.1.<owner> port `port` to
/// 10.244.2.9:80.
fn tcp_key(owner: u32, port: u16) -> FlowKey {
    let src = ip(&format!("10.244.1.{owner}"));
    FlowKey::new(6, src, port, ip("10.244.2.9"), 80).unwrap()
}

fn udp_key(owner: u32, port: u16) -> FlowKey {
    let src = ip(&format!("10.244.1.{owner}"));
    FlowKey::new(17, src, port, ip("10.96.0.10"), 53).unwrap()
}

/// Opens a TCP connection (SYN tracked); returns its id.
fn syn(t: &mut Conntrack, owner: u32, port: u16, now: Instant) -> Result<EntryId, CreateError> {
    let k = tcp_key(owner, port);
    let st = FlowState::open(6, SYN, false).unwrap();
    let id = t.create(k, k.reverse(), Owner(owner), st, now)?;
    t.track(id, Dir::Original, SYN, 60, 1, now).unwrap();
    Ok(id)
}

/// Opens and establishes a TCP connection.
fn established(t: &mut Conntrack, owner: u32, port: u16, now: Instant) -> EntryId {
    let id = syn(t, owner, port, now).unwrap();
    t.track(id, Dir::Reply, SYNACK, 60, 1, now).unwrap();
    let st = t.track(id, Dir::Original, ACK, 52, 1, now).unwrap();
    assert_eq!(st.as_str(), "ESTABLISHED");
    id
}

fn live(t: &mut Conntrack, k: &FlowKey, now: Instant) -> bool {
    t.lookup(k, now).is_some()
}

#[test]
fn both_keys_find_the_entry_with_their_direction() {
    let now = t0();
    let mut t = table(16, 16, now);
    // A translated flow: client -> VIP, replies endpoint -> client.
    let orig = FlowKey::new(6, ip("10.244.1.2"), 40000, ip("10.96.0.1"), 443).unwrap();
    let reply = FlowKey::new(6, ip("10.244.2.7"), 8443, ip("10.244.1.2"), 40000).unwrap();
    let st = FlowState::open(6, SYN, false).unwrap();
    let id = t.create(orig, reply, Owner(2), st, now).unwrap();
    assert_eq!(t.lookup(&orig, now), Some((id, Dir::Original)));
    assert_eq!(t.lookup(&reply, now), Some((id, Dir::Reply)));
    // The untranslated reverse of the original is not a key.
    assert_eq!(t.lookup(&orig.reverse(), now), None);
    let e = t.get(id).unwrap();
    assert!(e.is_translated());
    // Originals are rewritten to reach the endpoint, replies to come from
    // the VIP.
    assert_eq!(e.rewrite_for(Dir::Original), reply.reverse());
    assert_eq!(e.rewrite_for(Dir::Reply), orig.reverse());
    // Neither key can start another entry.
    assert_eq!(
        t.create(orig, orig.reverse(), Owner(2), st, now),
        Err(CreateError::KeyTaken)
    );
    assert_eq!(
        t.create(reply.reverse(), reply, Owner(3), st, now),
        Err(CreateError::KeyTaken)
    );
    assert_eq!(t.stats().key_taken, 2);
    assert_eq!(t.len(), 1);
}

#[test]
fn tcp_timeouts_follow_the_state() {
    let now = t0();
    let mut t = table(16, 16, now);
    let id = syn(&mut t, 2, 1000, now).unwrap();
    assert_eq!(t.time_left(id, now), Some(secs(120)));
    let k = tcp_key(2, 1000);
    // SYN_SENT lives 120 s.
    assert!(live(&mut t, &k, now + secs(119)));
    assert!(!live(&mut t, &k, now + secs(120)));
    assert_eq!(t.stats().expired, 1);
    assert!(t.is_empty());

    // Established: 5 days; after RST: 10 s.
    let id = established(&mut t, 2, 1001, now);
    assert_eq!(t.time_left(id, now), Some(secs(432_000)));
    let later = now + secs(400_000);
    assert!(live(&mut t, &tcp_key(2, 1001), later));
    t.track(id, Dir::Reply, TcpFlags(TcpFlags::RST), 40, 1, later);
    assert_eq!(t.get(id).unwrap().state().as_str(), "CLOSE");
    assert!(live(&mut t, &tcp_key(2, 1001), later + secs(9)));
    assert!(!live(&mut t, &tcp_key(2, 1001), later + secs(10)));
}

#[test]
fn udp_stream_and_dns_like_exchanges() {
    let now = t0();
    let mut t = table(16, 16, now);
    let k = udp_key(2, 5353);
    let st = FlowState::open(17, TcpFlags(0), false).unwrap();
    let id = t.create(k, k.reverse(), Owner(2), st, now).unwrap();
    t.track(id, Dir::Original, TcpFlags(0), 60, 1, now);
    t.track(
        id,
        Dir::Reply,
        TcpFlags(0),
        120,
        1,
        now + Duration::from_millis(5),
    );
    // A query and its answer: 30 s from the answer, evictable.
    let answered = now + Duration::from_millis(5);
    assert_eq!(t.time_left(id, answered), Some(secs(30)));
    assert!(!t.get(id).unwrap().is_protected());
    // Still talking after 2 s: a stream, 120 s, protected.
    t.track(id, Dir::Original, TcpFlags(0), 60, 1, now + secs(3));
    assert_eq!(t.time_left(id, now + secs(3)), Some(secs(120)));
    assert!(t.get(id).unwrap().is_protected());
    let e = t.get(id).unwrap();
    assert_eq!((e.packets(Dir::Original), e.packets(Dir::Reply)), (2, 1));
    assert_eq!((e.bytes(Dir::Original), e.bytes(Dir::Reply)), (120, 120));
    // A UDP GSO super-packet of 40 segments is one track, 40 packets.
    t.track(id, Dir::Reply, TcpFlags(0), 40 * 1400, 40, now + secs(4));
    let e = t.get(id).unwrap();
    assert_eq!(e.packets(Dir::Reply), 41);
    assert_eq!(e.bytes(Dir::Reply), 120 + 40 * 1400);
}

#[test]
fn a_full_table_evicts_the_oldest_evictable_entry_and_never_an_established_one() {
    let now = t0();
    let mut t = table(8, 8, now);
    // Four established connections, then four half-open ones, a second
    // apart, from eight different pods.
    for o in 1..=4 {
        established(&mut t, o, 1000, now);
    }
    for o in 5..=8 {
        syn(&mut t, o, 1000, now + secs(u64::from(o))).unwrap();
    }
    assert_eq!(t.len(), 8);
    // Pod 5's SYN is refreshed: pod 6's is now the oldest.
    let (id5, _) = t.lookup(&tcp_key(5, 1000), now + secs(20)).unwrap();
    t.track(id5, Dir::Original, SYN, 60, 1, now + secs(20));
    let at = now + secs(21);
    syn(&mut t, 9, 1000, at).unwrap();
    assert!(
        !live(&mut t, &tcp_key(6, 1000), at),
        "oldest half-open evicted"
    );
    assert!(live(&mut t, &tcp_key(5, 1000), at));
    syn(&mut t, 10, 1000, at).unwrap();
    syn(&mut t, 11, 1000, at).unwrap();
    // Evicted in age order: 6, 7, 8; then 5, then the newcomers.
    assert!(!live(&mut t, &tcp_key(7, 1000), at));
    assert!(!live(&mut t, &tcp_key(8, 1000), at));
    assert!(live(&mut t, &tcp_key(5, 1000), at));
    syn(&mut t, 12, 1000, at).unwrap();
    assert!(!live(&mut t, &tcp_key(5, 1000), at));
    assert_eq!(t.stats().evicted, 4);
    for o in 1..=4 {
        assert!(live(&mut t, &tcp_key(o, 1000), at), "established {o} kept");
    }
    // Establish the newcomers: a table of protected entries refuses.
    for o in 9..=12 {
        let (id, _) = t.lookup(&tcp_key(o, 1000), at).unwrap();
        t.track(id, Dir::Reply, SYNACK, 60, 1, at);
        t.track(id, Dir::Original, ACK, 52, 1, at);
    }
    assert_eq!(syn(&mut t, 13, 1000, at), Err(CreateError::TableFull));
    assert_eq!(t.stats().table_full, 1);
    assert_eq!(t.len(), 8);
    // Unless one of them has expired: it is reclaimed.
    let (id1, _) = t.lookup(&tcp_key(1, 1000), at).unwrap();
    t.track(id1, Dir::Reply, TcpFlags(TcpFlags::RST), 40, 1, at);
    syn(&mut t, 13, 1000, at).unwrap();
    assert!(!live(&mut t, &tcp_key(1, 1000), at));
}

#[test]
fn a_flooding_pod_recycles_its_own_entries_not_other_pods() {
    let now = t0();
    let mut t = table(64, 16, now);
    // Pod 2: 8 established connections and 4 DNS queries in flight.
    for p in 0..8 {
        established(&mut t, 2, 1000 + p, now);
    }
    let st = FlowState::open(17, TcpFlags(0), false).unwrap();
    for p in 0..4 {
        let k = udp_key(2, 2000 + p);
        let id = t.create(k, k.reverse(), Owner(2), st, now).unwrap();
        t.track(id, Dir::Original, TcpFlags(0), 60, 1, now);
    }
    // Pod 3 floods SYNs: 10 000 of them.
    let mut refused = 0;
    for p in 0..10_000u16 {
        if syn(&mut t, 3, p, now + Duration::from_millis(u64::from(p))).is_err() {
            refused += 1;
        }
    }
    assert_eq!(refused, 0, "the flooder recycles its own half-open entries");
    assert_eq!(t.owner_entries(Owner(3)), 16, "held at its limit");
    assert_eq!(t.stats().source_evicted, 10_000 - 16);
    assert_eq!(t.stats().evicted, 0);
    let at = now + secs(11);
    for p in 0..8 {
        assert!(live(&mut t, &tcp_key(2, 1000 + p), at));
    }
    for p in 0..4 {
        assert!(live(&mut t, &udp_key(2, 2000 + p), at), "pending DNS kept");
    }
    // The flooder's newest entries are the ones it holds.
    assert!(live(&mut t, &tcp_key(3, 9_999), at));
    assert!(!live(&mut t, &tcp_key(3, 0), at));
}

#[test]
fn a_source_at_its_limit_with_only_established_entries_is_refused() {
    let now = t0();
    let mut t = table(64, 4, now);
    for p in 0..4 {
        established(&mut t, 2, p, now);
    }
    assert_eq!(syn(&mut t, 2, 99, now), Err(CreateError::SourceLimit));
    assert_eq!(t.stats().source_limited, 1);
    // Another pod is unaffected.
    syn(&mut t, 3, 99, now).unwrap();
}

#[test]
fn in_a_full_table_an_owner_above_its_fair_share_pays_first() {
    let now = t0();
    // No per-source limit to speak of: only the fair share applies.
    let mut t = table(8, 8, now);
    // Pod 2 holds one half-open connection, the oldest in the table.
    syn(&mut t, 2, 1, now).unwrap();
    // Pod 3 fills the rest and keeps opening.
    for p in 0..20 {
        syn(&mut t, 3, p, now + secs(1 + u64::from(p))).unwrap();
    }
    // Pod 3 holds 7 > 8 / 2, so it recycled its own; pod 2's survives.
    assert!(live(&mut t, &tcp_key(2, 1), now + secs(30)));
    assert_eq!(t.owner_entries(Owner(3)), 7);
    assert_eq!(t.stats().evicted, 0);
}

#[test]
fn expiry_runs_in_batches_and_reclaims_memory() {
    let now = t0();
    let mut t = table(1024, 1024, now);
    let st = FlowState::open(17, TcpFlags(0), false).unwrap();
    for p in 0..1000u16 {
        let k = udp_key(2, p);
        let id = t.create(k, k.reverse(), Owner(2), st, now).unwrap();
        t.track(id, Dir::Original, TcpFlags(0), 60, 1, now);
    }
    assert_eq!(t.len(), 1000);
    // Nothing expires early.
    assert_eq!(t.expire(now + secs(29), 1000), 0);
    // After 30 s, each call removes at most its budget.
    let later = now + secs(30);
    assert_eq!(t.expire(later, 100), 100);
    assert_eq!(t.len(), 900);
    let mut calls = 1;
    while !t.is_empty() {
        assert!(t.expire(later, 100) <= 100);
        calls += 1;
        assert!(
            calls <= 11,
            "the sweep covers the table in len / budget calls"
        );
    }
    assert_eq!(t.stats().expired, 1000);
    // Freed slots are reused: no growth past the first 1000.
    for p in 0..1000u16 {
        let k = udp_key(3, p);
        t.create(k, k.reverse(), Owner(3), st, later).unwrap();
    }
    assert_eq!(t.iter().count(), 1000);
}

#[test]
fn creates_sweep_a_few_entries_each() {
    let now = t0();
    let cfg = ConntrackConfig {
        capacity: 4096,
        per_source: 4096,
        owner_slots: 4,
        expire_per_insert: 4,
        ..ConntrackConfig::default()
    };
    let mut t = Conntrack::new(cfg, HashSeed(1, 1), now);
    let st = FlowState::open(17, TcpFlags(0), false).unwrap();
    for p in 0..1000u16 {
        let k = udp_key(2, p);
        let id = t.create(k, k.reverse(), Owner(2), st, now).unwrap();
        t.track(id, Dir::Original, TcpFlags(0), 60, 1, now);
    }
    let later = now + secs(31);
    for p in 0..250u16 {
        let k = udp_key(3, p);
        t.create(k, k.reverse(), Owner(3), st, later).unwrap();
    }
    // 250 creates x 4 entries looked at: every old entry swept.
    assert_eq!(t.stats().expired, 1000);
    assert_eq!(t.len(), 250);
}

#[test]
fn time_before_the_epoch_and_removal() {
    let now = t0() + secs(10);
    let mut t = table(4, 4, now);
    // A `now` earlier than the table's creation counts as its creation.
    let id = syn(&mut t, 2, 1, now - secs(5)).unwrap();
    assert_eq!(t.time_left(id, now), Some(secs(120)));
    assert!(t.remove(id));
    assert!(!t.remove(id));
    assert_eq!(t.get(id).map(|e| e.owner()), None);
    assert_eq!(t.track(id, Dir::Original, ACK, 1, 1, now), None);
    assert_eq!(t.stats().removed, 1);
    assert!(t.is_free(&tcp_key(2, 1), now));
}

#[test]
fn icmp_echo_flows_by_identifier() {
    let now = t0();
    let mut t = table(8, 8, now);
    let (a, b) = (ip("10.244.1.2"), ip("10.244.2.3"));
    let req = FlowKey::icmp_echo(a, b, 77, true).unwrap();
    let st = FlowState::open(1, TcpFlags(0), false).unwrap();
    let id = t.create(req, req.reverse(), Owner(2), st, now).unwrap();
    let reply = FlowKey::icmp_echo(b, a, 77, false).unwrap();
    assert_eq!(t.lookup(&reply, now), Some((id, Dir::Reply)));
    let other = FlowKey::icmp_echo(b, a, 78, false).unwrap();
    assert_eq!(t.lookup(&other, now), None);
    t.track(id, Dir::Original, TcpFlags(0), 84, 1, now);
    assert!(!live(&mut t, &req, now + secs(30)));
}
