//! A token bucket driven by the time the caller passes in.
//!
//! Contract: never reads a clock; never panics, whatever `Instant`s it is
//! given (time that goes backwards is treated as no time passing). The bucket
//! holds credit as a `Duration`: every token costs `1 s / rate`, credit grows
//! with elapsed time up to `burst` tokens' worth, and a fresh bucket is full.

use std::time::{Duration, Instant};

/// A token bucket: at most `burst` events at once, `rate` per second on average.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Cost of one token; `None` when the rate is zero (never allow).
    cost: Option<Duration>,
    /// Most credit the bucket can hold.
    capacity: Duration,
    credit: Duration,
    /// Latest time seen; `None` until the first call.
    last: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket allowing `per_second` events per second on average and
    /// bursts of `burst` (at least 1). `per_second == 0` allows nothing.
    pub fn new(per_second: u32, burst: u32) -> Self {
        let cost = (per_second > 0).then(|| Duration::from_secs(1) / per_second);
        let capacity = cost.unwrap_or_default().saturating_mul(burst.max(1));
        Self {
            cost,
            capacity,
            credit: capacity,
            last: None,
        }
    }

    /// Takes one token at time `now` if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let Some(cost) = self.cost else {
            return false;
        };
        let elapsed = match self.last {
            Some(last) => now.saturating_duration_since(last),
            None => Duration::ZERO,
        };
        if self.last.is_none_or(|last| now > last) {
            self.last = Some(now);
        }
        self.credit = self.credit.saturating_add(elapsed).min(self.capacity);
        if self.credit >= cost {
            self.credit -= cost;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::epoch as t0;

    #[test]
    fn burst_then_refill() {
        let t0 = t0();
        let mut b = TokenBucket::new(10, 3);
        assert!(b.try_take(t0));
        assert!(b.try_take(t0));
        assert!(b.try_take(t0));
        assert!(!b.try_take(t0));
        // One token every 100 ms.
        assert!(!b.try_take(t0 + Duration::from_millis(99)));
        assert!(b.try_take(t0 + Duration::from_millis(100)));
        assert!(!b.try_take(t0 + Duration::from_millis(100)));
        // A long pause refills only up to the burst.
        let later = t0 + Duration::from_secs(3600);
        assert!((0..3).all(|_| b.try_take(later)));
        assert!(!b.try_take(later));
    }

    #[test]
    fn zero_rate_allows_nothing_and_zero_burst_means_one() {
        let t0 = t0();
        assert!(!TokenBucket::new(0, 100).try_take(t0));
        let mut b = TokenBucket::new(1, 0);
        assert!(b.try_take(t0));
        assert!(!b.try_take(t0));
    }

    #[test]
    fn time_going_backwards_adds_no_credit() {
        let t0 = t0() + Duration::from_secs(10);
        let mut b = TokenBucket::new(1, 1);
        assert!(b.try_take(t0));
        let earlier = t0 - Duration::from_secs(5);
        assert!(!b.try_take(earlier));
        // Back to t0: still nothing, the detour did not mint credit.
        assert!(!b.try_take(t0));
        assert!(b.try_take(t0 + Duration::from_secs(1)));
    }

    #[test]
    fn huge_rates_do_not_overflow() {
        let t0 = t0();
        let mut b = TokenBucket::new(u32::MAX, u32::MAX);
        assert!(b.try_take(t0));
        assert!(b.try_take(t0 + Duration::from_secs(1_000_000)));
    }
}
