//! `sessionAffinity: ClientIP`: which endpoint a client address last
//! used for a Service port, until the port's timeout passes without a
//! new connection from it (kube-proxy's iptables `recent` match: the
//! record is refreshed by each new connection, not by each packet).
//!
//! Contract: a fixed-size, 8-way set-associative table, preallocated by
//! [`AffinityTable::new`]; lookups and updates never allocate, read a
//! clock or panic. The set is chosen by a keyed SipHash of the Service
//! port's identity and the client address, so clients cannot aim at one
//! set. A full set gives up its expired or soonest-expiring record
//! (counted): the table holds at least `capacity` live records before
//! any is lost, and a lost record only means the client's next
//! connection picks an endpoint afresh.

use std::hash::Hasher;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use siphasher::sip::SipHasher13;

use crate::conntrack::HashSeed;

/// Records per set.
const WAYS: usize = 8;

#[derive(Debug, Clone, Copy)]
struct Record {
    service: u64,
    client: IpAddr,
    endpoint: SocketAddr,
    /// Milliseconds since the table's epoch; 0 is an empty slot.
    deadline: u64,
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct AffinityTable {
    seed: HashSeed,
    epoch: Instant,
    slots: Vec<Option<Record>>,
    sets: usize,
    evicted: u64,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl AffinityTable {
    /// A table for about `capacity` records (rounded up to a power of
    /// two, at least one set), keyed by `seed`, times relative to `now`.
    pub fn new(capacity: usize, seed: HashSeed, now: Instant) -> Self {
        let sets = capacity
            .div_ceil(WAYS)
            .clamp(1, 1 << 24)
            .next_power_of_two();
        Self {
            seed,
            epoch: now,
            slots: vec![None; sets * WAYS],
            sets,
            evicted: 0,
        }
    }

    fn tick(&self, now: Instant) -> u64 {
        // +1 so that no live deadline is 0.
        ms(now.saturating_duration_since(self.epoch)).saturating_add(1)
    }

    fn set_of(&self, service: u64, client: IpAddr) -> usize {
        let mut h = SipHasher13::new_with_keys(self.seed.0, self.seed.1);
        h.write_u64(service);
        match client {
            IpAddr::V4(a) => h.write(&a.octets()),
            IpAddr::V6(a) => h.write(&a.octets()),
        }
        let set = usize::try_from(h.finish() >> 32).unwrap_or(0) & (self.sets - 1);
        set * WAYS
    }

    fn ways(&mut self, service: u64, client: IpAddr) -> &mut [Option<Record>] {
        let start = self.set_of(service, client);
        self.slots.get_mut(start..start + WAYS).unwrap_or_default()
    }

    /// The endpoint `client` last used for Service port `service`, if its
    /// record has not expired at `now`.
    pub fn get(&mut self, service: u64, client: IpAddr, now: Instant) -> Option<SocketAddr> {
        let tick = self.tick(now);
        self.ways(service, client)
            .iter()
            .flatten()
            .find(|r| r.service == service && r.client == client && r.deadline > tick)
            .map(|r| r.endpoint)
    }

    /// Records that `client` uses `endpoint` for `service` until
    /// `timeout` from `now`.
    pub fn set(
        &mut self,
        service: u64,
        client: IpAddr,
        endpoint: SocketAddr,
        timeout: Duration,
        now: Instant,
    ) {
        let tick = self.tick(now);
        let record = Record {
            service,
            client,
            endpoint,
            deadline: tick.saturating_add(ms(timeout)).max(1),
        };
        let ways = self.ways(service, client);
        // The client's own record, else a free or expired slot, else the
        // record that expires first.
        let mut pick = 0;
        let mut best = u64::MAX;
        let mut evicts = true;
        for (i, slot) in ways.iter().enumerate() {
            match slot {
                Some(r) if r.service == service && r.client == client => {
                    (pick, evicts) = (i, false);
                    break;
                }
                Some(r) if r.deadline > tick => {
                    if r.deadline < best {
                        (pick, best) = (i, r.deadline);
                    }
                }
                _ => {
                    if best != 0 {
                        (pick, best, evicts) = (i, 0, false);
                    }
                }
            }
        }
        if let Some(slot) = ways.get_mut(pick) {
            *slot = Some(record);
        }
        if evicts && best != u64::MAX && best != 0 {
            self.evicted += 1;
        }
    }

    /// Live records given up to make room.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Record slots.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::epoch as t0;

    fn ep(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn records_stick_until_the_timeout_and_are_refreshed_by_set() {
        let now = t0();
        let mut t = AffinityTable::new(64, HashSeed(1, 2), now);
        let c = ip("10.244.1.2");
        let ten = Duration::from_secs(10);
        assert_eq!(t.get(7, c, now), None);
        t.set(7, c, ep("10.244.2.3:80"), ten, now);
        assert_eq!(
            t.get(7, c, now + Duration::from_secs(9)),
            Some(ep("10.244.2.3:80"))
        );
        assert_eq!(t.get(7, c, now + ten), None);
        // Another service port or client has its own record.
        assert_eq!(t.get(8, c, now), None);
        assert_eq!(t.get(7, ip("10.244.1.3"), now), None);
        // A new connection refreshes (and may change) the record.
        t.set(7, c, ep("10.244.2.4:80"), ten, now + Duration::from_secs(9));
        let later = now + Duration::from_secs(18);
        assert_eq!(t.get(7, c, later), Some(ep("10.244.2.4:80")));
        assert_eq!(t.evicted(), 0);
    }

    #[test]
    fn a_full_set_gives_up_the_record_that_expires_first() {
        let now = t0();
        // One set of 8.
        let mut t = AffinityTable::new(1, HashSeed(1, 2), now);
        assert_eq!(t.capacity(), WAYS);
        let s = Duration::from_secs;
        for i in 0..8u8 {
            let c = IpAddr::from([10, 0, 0, i]);
            t.set(1, c, ep("10.1.1.1:1"), s(100 + u64::from(i)), now);
        }
        t.set(1, ip("10.0.1.0"), ep("10.1.1.1:2"), s(50), now);
        assert_eq!(t.evicted(), 1);
        assert_eq!(
            t.get(1, ip("10.0.0.0"), now),
            None,
            "the soonest to expire went"
        );
        for i in 1..8u8 {
            assert!(t.get(1, IpAddr::from([10, 0, 0, i]), now).is_some());
        }
        // An expired record is reused without counting an eviction.
        let later = now + s(60);
        t.set(1, ip("10.0.2.0"), ep("10.1.1.1:3"), s(50), later);
        assert_eq!(t.evicted(), 1);
        assert_eq!(t.get(1, ip("10.0.2.0"), later), Some(ep("10.1.1.1:3")));
    }
}
