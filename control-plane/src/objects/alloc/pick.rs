//! Picking a free value from a range, as Kubernetes' allocators pick
//! ClusterIPs and node ports (the bitmap allocator's "random scan with
//! offset" strategy, KEP-3070 and KEP-3668).
//!
//! Contract (pure: the caller passes what is taken and the randomness):
//! - A range of `size` values (offsets `0..size`) is split into a lower,
//!   "static" band `0..offset` and an upper, "dynamic" band
//!   `offset..size`. Dynamic allocation starts at a random offset of the
//!   upper band and takes the first free value from there, wrapping around
//!   inside the band; only when the upper band is full does it do the same
//!   in the lower band. Users who pick their own values (a well-known DNS
//!   ClusterIP, a node port written into a firewall) pick from the lower
//!   band and rarely collide with dynamic allocations.
//! - `offset` is Kubernetes': `min(max(16, size / 16), 256)` for ClusterIPs,
//!   `min(max(16, size / 32), 128)` for node ports, never more than `size`.
//! - `None` only when every value is taken.

use rand::Rng;

/// The size of the static band of a ClusterIP range of `size` addresses.
pub fn cluster_ip_offset(size: u64) -> u64 {
    (size / 16).clamp(16, 256).min(size)
}

/// The size of the static band of a node-port range of `size` ports.
pub fn node_port_offset(size: u64) -> u64 {
    (size / 32).clamp(16, 128).min(size)
}

/// A free offset in `0..size`, upper band first (see the module contract).
pub fn pick(
    size: u64,
    offset: u64,
    taken: impl Fn(u64) -> bool,
    rng: &mut impl Rng,
) -> Option<u64> {
    let offset = offset.min(size);
    scan(offset, size, &taken, rng).or_else(|| scan(0, offset, &taken, rng))
}

/// The first free value of `start..end` from a random point, wrapping.
fn scan(start: u64, end: u64, taken: &impl Fn(u64) -> bool, rng: &mut impl Rng) -> Option<u64> {
    if start >= end {
        return None;
    }
    let len = end - start;
    let first = rng.gen_range(0..len);
    (0..len)
        .map(|i| start + (first + i) % len)
        .find(|&v| !taken(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::collections::HashSet;

    fn rng() -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(7)
    }

    #[test]
    fn offsets_as_kubernetes() {
        // 10.96.0.0/12: 2^20 - 2 usable addresses.
        assert_eq!(cluster_ip_offset((1 << 20) - 2), 256);
        // 10.96.0.0/24: 254 usable addresses.
        assert_eq!(cluster_ip_offset(254), 16);
        // 30000-32767: 2768 ports.
        assert_eq!(node_port_offset(2768), 86);
        assert_eq!(node_port_offset(100), 16);
        assert_eq!(node_port_offset(8), 8);
    }

    #[test]
    fn dynamic_values_come_from_the_upper_band_until_it_is_full() {
        let mut r = rng();
        let mut taken = HashSet::new();
        for _ in 0..84 {
            let v = pick(100, 16, |v| taken.contains(&v), &mut r).unwrap();
            assert!(v >= 16, "{v} is in the static band");
            assert!(taken.insert(v));
        }
        for _ in 0..16 {
            let v = pick(100, 16, |v| taken.contains(&v), &mut r).unwrap();
            assert!(v < 16);
            assert!(taken.insert(v));
        }
        assert_eq!(pick(100, 16, |v| taken.contains(&v), &mut r), None);
    }

    #[test]
    fn start_is_random() {
        let mut r = rng();
        let firsts: HashSet<u64> = (0..50)
            .map(|_| pick(1000, 16, |_| false, &mut r).unwrap())
            .collect();
        assert!(firsts.len() > 40, "{firsts:?}");
    }

    #[test]
    fn empty_and_tiny_ranges() {
        let mut r = rng();
        assert_eq!(pick(0, 16, |_| false, &mut r), None);
        assert_eq!(pick(1, 16, |_| false, &mut r), Some(0));
        assert_eq!(pick(1, 16, |_| true, &mut r), None);
    }
}
