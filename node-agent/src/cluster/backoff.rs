//! Exponential backoff with jitter for reconnects and retries.
//!
//! Contract: [`Backoff::next_delay`] returns a delay in
//! `[current / 2, current]` and then doubles `current` up to `max`; so no
//! wait is ever longer than `max`, and clients that failed together do not
//! retry together. [`Backoff::reset`] starts over after a success.

use std::time::Duration;

use rand::Rng as _;

/// Reconnect delays: e.g. 200 ms doubling to 10 s.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    /// A backoff from `initial` doubling up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        let initial = initial.max(Duration::from_millis(1));
        let max = max.max(initial);
        Self {
            initial,
            max,
            current: initial,
        }
    }

    /// The next delay to wait, with jitter.
    pub fn next_delay(&mut self) -> Duration {
        let cur = self.current;
        self.current = (self.current * 2).min(self.max);
        let half = cur / 2;
        let jitter_ns = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        let extra = if jitter_ns == 0 {
            0
        } else {
            rand::thread_rng().gen_range(0..=jitter_ns)
        };
        half + Duration::from_nanos(extra)
    }

    /// Start over from the initial delay.
    pub fn reset(&mut self) {
        self.current = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        let mut caps = vec![];
        for _ in 0..12 {
            let d = b.next_delay();
            assert!(d <= Duration::from_secs(10), "{d:?}");
            caps.push(d);
        }
        assert!(caps[0] >= Duration::from_millis(100) && caps[0] <= Duration::from_millis(200));
        assert!(caps[11] >= Duration::from_secs(5));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(200));
    }
}
