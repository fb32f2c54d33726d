//! Handshake rate limits, as kernel WireGuard applies them: a token bucket
//! per source address ([`SourceLimiter`]), checked before any
//! cryptography, and the under-load state ([`LoadMeter`]) in which
//! handshakes must carry a cookie (MAC2).
//!
//! Contract: sans-IO; time is an argument. Memory is bounded: at most
//! [`MAX_SOURCES`] buckets; a source that is not in a full table is
//! refused until [`SourceLimiter::expire`] frees room (an idle bucket is
//! full again within 250 ms, so forgetting it after a second loses
//! nothing).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Handshake messages a source address may send per second (kernel
/// WireGuard's `PACKETS_PER_SECOND`).
pub const PER_SOURCE_RATE: u64 = 20;

/// ... and in a burst (`PACKETS_BURSTABLE`).
pub const PER_SOURCE_BURST: u64 = 5;

/// Buckets kept at most.
pub(super) const MAX_SOURCES: usize = 65_536;

const NANOS_PER_SEC: u64 = 1_000_000_000;
const COST: u64 = NANOS_PER_SEC / PER_SOURCE_RATE;
const TOKEN_MAX: u64 = COST * PER_SOURCE_BURST;

/// How long the gate stays under load after the last sign of load.
pub(super) const UNDER_LOAD_FOR: Duration = Duration::from_secs(1);

/// One source's bucket: tokens in nanoseconds of credit.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: u64,
    last: Instant,
}

/// A token bucket per source: an IPv4 address, or an IPv6 /64 (a host
/// usually owns a whole /64).
#[derive(Debug, Default)]
pub struct SourceLimiter {
    buckets: HashMap<u128, Bucket>,
}

/// The bucket key of `ip`: IPv4 addresses whole, IPv6 by their /64, in
/// distinct ranges.
fn key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => (u128::from(v6) >> 64) | (1 << 127),
    }
}

impl SourceLimiter {
    /// Whether one more handshake message from `ip` is allowed at `now`
    /// (and takes its token if so).
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        let full = self.buckets.len() >= MAX_SOURCES;
        match self.buckets.get_mut(&key(ip)) {
            Some(b) => {
                let elapsed = now.saturating_duration_since(b.last);
                let earned = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
                b.tokens = b.tokens.saturating_add(earned).min(TOKEN_MAX);
                b.last = now;
                if b.tokens >= COST {
                    b.tokens -= COST;
                    true
                } else {
                    false
                }
            }
            None if full => false,
            None => {
                self.buckets.insert(
                    key(ip),
                    Bucket {
                        tokens: TOKEN_MAX - COST,
                        last: now,
                    },
                );
                true
            }
        }
    }

    /// Forgets buckets idle for a second or more (they are full again);
    /// call it about once a second.
    pub fn expire(&mut self, now: Instant) {
        self.buckets
            .retain(|_, b| now.saturating_duration_since(b.last) < Duration::from_secs(1));
    }

    /// Sources with a bucket now.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no source has a bucket.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// Whether handshakes come in faster than the node wants to do their
/// Diffie-Hellman work: more than `threshold` admitted in one second, or
/// a backlog of queued ones. Sticky for [`UNDER_LOAD_FOR`].
#[derive(Debug)]
pub struct LoadMeter {
    threshold: u64,
    window_start: Option<Instant>,
    in_window: u64,
    until: Option<Instant>,
}

impl LoadMeter {
    /// Under load above `threshold` handshakes a second (0: always).
    pub fn new(threshold: u64) -> Self {
        Self {
            threshold,
            window_start: None,
            in_window: 0,
            until: None,
        }
    }

    /// Counts one handshake message admitted at `now`.
    pub fn admitted(&mut self, now: Instant) {
        let fresh = self
            .window_start
            .is_none_or(|s| now.saturating_duration_since(s) >= Duration::from_secs(1));
        if fresh {
            self.window_start = Some(now);
            self.in_window = 0;
        }
        self.in_window += 1;
        if self.in_window > self.threshold {
            self.until = Some(now + UNDER_LOAD_FOR);
        }
    }

    /// A backlog of queued handshakes is a sign of load too.
    pub fn backlog(&mut self, now: Instant) {
        self.until = Some(now + UNDER_LOAD_FOR);
    }

    /// Whether handshakes must carry a cookie at `now`.
    pub fn under_load(&self, now: Instant) -> bool {
        self.threshold == 0 || self.until.is_some_and(|t| now < t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    #[test]
    fn a_source_gets_its_burst_then_its_rate() {
        let mut l = SourceLimiter::default();
        let t0 = Instant::now();
        let burst = (0..100).filter(|_| l.allow(v4(1), t0)).count() as u64;
        assert_eq!(burst, PER_SOURCE_BURST);
        // Another source has its own bucket.
        assert!(l.allow(v4(2), t0));
        // Over ten seconds at a flood's pace: the rate, plus nothing.
        let mut allowed = 0;
        for ms in 1..=10_000u64 {
            let now = t0 + Duration::from_millis(ms);
            allowed += (0..10).filter(|_| l.allow(v4(1), now)).count() as u64;
        }
        assert_eq!(allowed, 10 * PER_SOURCE_RATE);
    }

    #[test]
    fn ipv6_sources_share_a_bucket_per_64() {
        let mut l = SourceLimiter::default();
        let t0 = Instant::now();
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2::ffff".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let from_a_and_b = (0..50)
            .filter(|i| l.allow(if i % 2 == 0 { a } else { b }, t0))
            .count() as u64;
        assert_eq!(from_a_and_b, PER_SOURCE_BURST);
        assert!(l.allow(c, t0));
        // An IPv4 address never shares an IPv6 bucket.
        assert_ne!(key(v4(1)), key(IpAddr::V6(Ipv6Addr::from(1u128 << 64))));
    }

    #[test]
    fn the_table_is_bounded_and_idle_sources_expire() {
        let mut l = SourceLimiter::default();
        let t0 = Instant::now();
        for i in 0..MAX_SOURCES as u32 {
            assert!(l.allow(IpAddr::V4(Ipv4Addr::from(i)), t0));
        }
        assert!(!l.allow(v4(200), t0), "a full table refuses new sources");
        l.expire(t0 + Duration::from_millis(500));
        assert_eq!(l.len(), MAX_SOURCES);
        l.expire(t0 + Duration::from_secs(1));
        assert!(l.is_empty());
        assert!(l.allow(v4(200), t0 + Duration::from_secs(1)));
    }

    #[test]
    fn load_is_a_rate_or_a_backlog_and_lasts_a_second() {
        let t0 = Instant::now();
        let mut m = LoadMeter::new(3);
        for _ in 0..3 {
            m.admitted(t0);
        }
        assert!(!m.under_load(t0));
        m.admitted(t0);
        assert!(m.under_load(t0));
        assert!(m.under_load(t0 + Duration::from_millis(999)));
        assert!(!m.under_load(t0 + UNDER_LOAD_FOR));
        // A new second starts a new count.
        m.admitted(t0 + Duration::from_secs(2));
        assert!(!m.under_load(t0 + Duration::from_secs(2)));
        m.backlog(t0 + Duration::from_secs(3));
        assert!(m.under_load(t0 + Duration::from_secs(3)));
        assert!(LoadMeter::new(0).under_load(t0));
    }
}
