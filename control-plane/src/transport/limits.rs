//! Connection caps: at most `max_total` connections at once, and at most
//! `max_per_source` from one source, where a source is an IPv4 address or
//! an IPv6 /64 (one host's usual allocation; IPv4-mapped addresses count as
//! IPv4). A connection holds a [`Slot`] from accept until it closes; the
//! slot frees itself on drop.
//!
//! [`RefusalLog`] decides when refusals are worth a log line: the first at
//! once, then at most one summary per [`REPORT_EVERY`], so a flood of
//! refused connections cannot flood the log. It takes the time as an
//! argument.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// Least time between two refusal log lines.
pub const REPORT_EVERY: Duration = Duration::from_secs(10);

/// What connections are grouped by for the per-source cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source(IpAddr);

impl Source {
    /// The source of a peer address.
    pub fn of(ip: IpAddr) -> Source {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Source(IpAddr::V4(v4)),
            IpAddr::V6(v6) => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                Source(IpAddr::V6(bits.into()))
            }
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}"),
            IpAddr::V6(a) => write!(f, "{a}/64"),
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_total` connections are open.
    Total,
    /// `max_per_source` connections from this source are open.
    PerSource,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_source: HashMap<Source, usize>,
}

/// The caps, shared by the accept loop and every open connection.
#[derive(Debug)]
pub struct ConnLimiter {
    max_total: usize,
    max_per_source: usize,
    counts: Mutex<Counts>,
}

/// One open connection's place under the caps; freed on drop.
#[derive(Debug)]
pub struct Slot {
    limiter: Arc<ConnLimiter>,
    source: Source,
}

impl ConnLimiter {
    /// Caps of `max_total` and `max_per_source` (each at least 1).
    pub fn new(max_total: usize, max_per_source: usize) -> Arc<ConnLimiter> {
        Arc::new(ConnLimiter {
            max_total: max_total.max(1),
            max_per_source: max_per_source.max(1),
            counts: Mutex::new(Counts::default()),
        })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Take a slot for a connection from `source`, or say why not.
    pub fn try_acquire(self: &Arc<Self>, source: Source) -> Result<Slot, Refusal> {
        let mut c = self.counts();
        if c.total >= self.max_total {
            return Err(Refusal::Total);
        }
        let n = c.per_source.entry(source).or_insert(0);
        if *n >= self.max_per_source {
            return Err(Refusal::PerSource);
        }
        *n += 1;
        c.total += 1;
        Ok(Slot {
            limiter: Arc::clone(self),
            source,
        })
    }

    /// Connections open now: (total, from `source`).
    pub fn open(&self, source: Source) -> (usize, usize) {
        let c = self.counts();
        (c.total, c.per_source.get(&source).copied().unwrap_or(0))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.limiter.counts();
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                c.per_source.remove(&self.source);
            }
        }
    }
}

/// Refusals since the last log line, and when that was.
#[derive(Debug, Default)]
pub struct RefusalLog {
    last_report: Option<Instant>,
    total: u64,
    per_source: u64,
    last_source: Option<Source>,
}

/// A log line's worth of refusals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusalReport {
    /// Refused over the total cap since the last report.
    pub total: u64,
    /// Refused over the per-source cap since the last report.
    pub per_source: u64,
    /// The source of the latest refusal.
    pub last_source: Source,
}

impl RefusalLog {
    /// Note a refusal at `now`; returns a report when one is due.
    pub fn note(&mut self, now: Instant, why: Refusal, source: Source) -> Option<RefusalReport> {
        match why {
            Refusal::Total => self.total += 1,
            Refusal::PerSource => self.per_source += 1,
        }
        self.last_source = Some(source);
        let due = self
            .last_report
            .is_none_or(|at| now.saturating_duration_since(at) >= REPORT_EVERY);
        if !due {
            return None;
        }
        self.last_report = Some(now);
        let report = RefusalReport {
            total: self.total,
            per_source: self.per_source,
            last_source: source,
        };
        self.total = 0;
        self.per_source = 0;
        Some(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(s: &str) -> Source {
        Source::of(s.parse().unwrap())
    }

    #[test]
    fn sources_are_v4_addresses_and_v6_64s() {
        assert_eq!(src("192.0.2.1"), src("::ffff:192.0.2.1"));
        assert_ne!(src("192.0.2.1"), src("192.0.2.2"));
        assert_eq!(src("2001:db8::1"), src("2001:db8::ffff:1"));
        assert_ne!(src("2001:db8::1"), src("2001:db8:0:1::1"));
        assert_eq!(src("2001:db8::7").to_string(), "2001:db8::/64");
    }

    #[test]
    fn the_per_source_cap_refuses_the_next_and_frees_on_drop() {
        let l = ConnLimiter::new(100, 3);
        let a = src("192.0.2.1");
        let slots: Vec<Slot> = (0..3).map(|_| l.try_acquire(a).unwrap()).collect();
        assert_eq!(l.try_acquire(a).unwrap_err(), Refusal::PerSource);
        // Another source is not affected.
        let b = l.try_acquire(src("192.0.2.2")).unwrap();
        assert_eq!(l.open(a), (4, 3));
        drop(slots);
        assert_eq!(l.open(a), (1, 0));
        let _again = l.try_acquire(a).unwrap();
        drop(b);
        assert_eq!(l.open(src("192.0.2.2")), (1, 0));
    }

    #[test]
    fn the_total_cap_refuses_every_source() {
        let l = ConnLimiter::new(2, 10);
        let _x = l.try_acquire(src("192.0.2.1")).unwrap();
        let y = l.try_acquire(src("192.0.2.2")).unwrap();
        assert_eq!(l.try_acquire(src("192.0.2.3")).unwrap_err(), Refusal::Total);
        drop(y);
        l.try_acquire(src("192.0.2.3")).unwrap();
    }

    #[test]
    fn refusals_are_reported_at_most_once_per_period() {
        let mut log = RefusalLog::default();
        let t0 = Instant::now();
        let a = src("192.0.2.1");
        let first = log.note(t0, Refusal::PerSource, a).unwrap();
        assert_eq!((first.total, first.per_source), (0, 1));
        for i in 1..1000u64 {
            let now = t0 + Duration::from_millis(i);
            assert_eq!(log.note(now, Refusal::Total, a), None);
        }
        let later = log
            .note(t0 + REPORT_EVERY, Refusal::PerSource, src("192.0.2.9"))
            .unwrap();
        assert_eq!(
            later,
            RefusalReport {
                total: 999,
                per_source: 1,
                last_source: src("192.0.2.9")
            }
        );
    }
}
