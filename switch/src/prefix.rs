//! A longest-prefix-match table from IP prefixes to small `Copy` values, in
//! the spirit of boringtun's `AllowedIps<D>`.
//!
//! Contract: [`PrefixTable::lookup`] never allocates and never panics; inserts
//! and removals (control path) may allocate. Prefixes are normalised (host
//! bits cleared) on the way in.
//!
//! Layout and why: per address family, one *level* per distinct prefix length,
//! levels sorted longest first, each holding its networks in a sorted `Vec`.
//! A lookup masks the address for each level and binary-searches it; the first
//! hit is the longest match. A node's table has a few hundred peers (usually
//! all one length, e.g. `/24`), up to a few hundred pod `/32`s, host addresses
//! and the node CIDR: 3-4 levels, so a lookup is ~4 binary searches of at most
//! ~9 steps over contiguous `u32`/`u128` keys, with no pointer chasing. A
//! binary trie would chase up to 32 (IPv4) or 128 (IPv6) pointers; a linear
//! scan of a length-sorted vector is O(entries). No per-call cache: nothing
//! measured asks for one.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// An address as an integer key of one family.
trait Key: Copy + Ord + std::fmt::Debug {
    const WIDTH: u8;
    fn mask(len: u8) -> Self;
    fn and(self, other: Self) -> Self;
}

impl Key for u32 {
    const WIDTH: u8 = 32;
    fn mask(len: u8) -> Self {
        u32::MAX
            .checked_shl(u32::from(Self::WIDTH.saturating_sub(len)))
            .unwrap_or(0)
    }
    fn and(self, other: Self) -> Self {
        self & other
    }
}

impl Key for u128 {
    const WIDTH: u8 = 128;
    fn mask(len: u8) -> Self {
        u128::MAX
            .checked_shl(u32::from(Self::WIDTH.saturating_sub(len)))
            .unwrap_or(0)
    }
    fn and(self, other: Self) -> Self {
        self & other
    }
}

/// All prefixes of one length.
#[derive(Debug, Clone)]
struct Level<K, D> {
    len: u8,
    mask: K,
    /// Sorted networks; `values[i]` belongs to `networks[i]`.
    networks: Vec<K>,
    values: Vec<D>,
}

/// All prefixes of one family, levels longest first.
#[derive(Debug, Clone)]
struct Family<K, D> {
    levels: Vec<Level<K, D>>,
}

impl<K: Key, D: Copy> Family<K, D> {
    const fn new() -> Self {
        Self { levels: Vec::new() }
    }

    fn insert(&mut self, network: K, len: u8, value: D) -> Option<D> {
        let li = match self.levels.binary_search_by(|l| len.cmp(&l.len)) {
            Ok(i) => i,
            Err(i) => {
                let mask = K::mask(len);
                let empty = Level {
                    len,
                    mask,
                    networks: Vec::new(),
                    values: Vec::new(),
                };
                self.levels.insert(i, empty);
                i
            }
        };
        // Found or just inserted at `li`.
        let level = self.levels.get_mut(li)?;
        let network = network.and(level.mask);
        match level.networks.binary_search(&network) {
            Ok(i) => level.values.get_mut(i).map(|v| std::mem::replace(v, value)),
            Err(i) => {
                level.networks.insert(i, network);
                level.values.insert(i, value);
                None
            }
        }
    }

    fn find(&self, network: K, len: u8) -> Option<(usize, usize)> {
        let li = self.levels.binary_search_by(|l| len.cmp(&l.len)).ok()?;
        let level = self.levels.get(li)?;
        let ni = level
            .networks
            .binary_search(&network.and(level.mask))
            .ok()?;
        Some((li, ni))
    }

    fn get(&self, network: K, len: u8) -> Option<D> {
        let (li, ni) = self.find(network, len)?;
        self.levels.get(li)?.values.get(ni).copied()
    }

    fn remove(&mut self, network: K, len: u8) -> Option<D> {
        let (li, ni) = self.find(network, len)?;
        let level = self.levels.get_mut(li)?;
        // `ni` indexes both vectors: `find` just found it.
        level.networks.remove(ni);
        let value = level.values.remove(ni);
        if level.networks.is_empty() {
            self.levels.remove(li);
        }
        Some(value)
    }

    fn lookup(&self, addr: K) -> Option<D> {
        self.levels.iter().find_map(|level| {
            let i = level.networks.binary_search(&addr.and(level.mask)).ok()?;
            level.values.get(i).copied()
        })
    }

    fn len(&self) -> usize {
        self.levels.iter().map(|l| l.networks.len()).sum()
    }

    fn iter(&self) -> impl Iterator<Item = (K, u8, D)> + '_ {
        self.levels.iter().flat_map(|l| {
            l.networks
                .iter()
                .zip(&l.values)
                .map(move |(n, v)| (*n, l.len, *v))
        })
    }
}

/// A longest-prefix-match table for both address families.
#[derive(Debug, Clone)]
pub struct PrefixTable<D> {
    v4: Family<u32, D>,
    v6: Family<u128, D>,
}

impl<D: Copy> Default for PrefixTable<D> {
    fn default() -> Self {
        Self::new()
    }
}

impl<D: Copy> PrefixTable<D> {
    /// An empty table.
    pub const fn new() -> Self {
        Self {
            v4: Family::new(),
            v6: Family::new(),
        }
    }

    /// Maps `prefix` to `value`; returns the value it replaced, if any.
    pub fn insert(&mut self, prefix: IpNet, value: D) -> Option<D> {
        match prefix {
            IpNet::V4(n) => self.v4.insert(n.network().to_bits(), n.prefix_len(), value),
            IpNet::V6(n) => self.v6.insert(n.network().to_bits(), n.prefix_len(), value),
        }
    }

    /// Removes exactly `prefix`; returns its value, if it was present.
    pub fn remove(&mut self, prefix: IpNet) -> Option<D> {
        match prefix {
            IpNet::V4(n) => self.v4.remove(n.network().to_bits(), n.prefix_len()),
            IpNet::V6(n) => self.v6.remove(n.network().to_bits(), n.prefix_len()),
        }
    }

    /// The value of exactly `prefix` (no longest-prefix matching).
    pub fn get(&self, prefix: IpNet) -> Option<D> {
        match prefix {
            IpNet::V4(n) => self.v4.get(n.network().to_bits(), n.prefix_len()),
            IpNet::V6(n) => self.v6.get(n.network().to_bits(), n.prefix_len()),
        }
    }

    /// The value of the longest prefix containing `addr`. Hot path.
    pub fn lookup(&self, addr: IpAddr) -> Option<D> {
        match addr {
            IpAddr::V4(a) => self.lookup_v4(a),
            IpAddr::V6(a) => self.lookup_v6(a),
        }
    }

    /// [`Self::lookup`] for an IPv4 address.
    pub fn lookup_v4(&self, addr: Ipv4Addr) -> Option<D> {
        self.v4.lookup(addr.to_bits())
    }

    /// [`Self::lookup`] for an IPv6 address.
    pub fn lookup_v6(&self, addr: Ipv6Addr) -> Option<D> {
        self.v6.lookup(addr.to_bits())
    }

    /// Number of prefixes.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// True if there are no prefixes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All entries, IPv4 first, longest prefixes first.
    pub fn iter(&self) -> impl Iterator<Item = (IpNet, D)> + '_ {
        let v4 = self.v4.iter().filter_map(|(n, len, v)| {
            Some((
                IpNet::V4(Ipv4Net::new(Ipv4Addr::from_bits(n), len).ok()?),
                v,
            ))
        });
        let v6 = self.v6.iter().filter_map(|(n, len, v)| {
            Some((
                IpNet::V6(Ipv6Net::new(Ipv6Addr::from_bits(n), len).ok()?),
                v,
            ))
        });
        v4.chain(v6)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins_with_overlaps() {
        let mut t = PrefixTable::new();
        t.insert(net("0.0.0.0/0"), 0);
        t.insert(net("10.0.0.0/8"), 8);
        t.insert(net("10.244.0.0/16"), 16);
        t.insert(net("10.244.3.0/24"), 24);
        t.insert(net("10.244.3.7/32"), 32);
        assert_eq!(t.lookup(ip("10.244.3.7")), Some(32));
        assert_eq!(t.lookup(ip("10.244.3.8")), Some(24));
        assert_eq!(t.lookup(ip("10.244.4.1")), Some(16));
        assert_eq!(t.lookup(ip("10.1.1.1")), Some(8));
        assert_eq!(t.lookup(ip("192.168.1.1")), Some(0));
        // Insertion order does not matter.
        let mut r = PrefixTable::new();
        for (n, v) in t.iter().collect::<Vec<_>>().into_iter().rev() {
            r.insert(n, v);
        }
        for a in [
            "10.244.3.7",
            "10.244.3.8",
            "10.244.4.1",
            "10.1.1.1",
            "192.168.1.1",
        ] {
            assert_eq!(r.lookup(ip(a)), t.lookup(ip(a)));
        }
    }

    #[test]
    fn families_are_separate() {
        let mut t = PrefixTable::new();
        t.insert(net("0.0.0.0/0"), 4);
        assert_eq!(t.lookup(ip("::")), None);
        t.insert(net("fd00:244::/48"), 48);
        t.insert(net("fd00:244:0:3::/64"), 64);
        t.insert(net("fd00:244:0:3::7/128"), 128);
        assert_eq!(t.lookup(ip("fd00:244:0:3::7")), Some(128));
        assert_eq!(t.lookup(ip("fd00:244:0:3::8")), Some(64));
        assert_eq!(t.lookup(ip("fd00:244:0:9::1")), Some(48));
        assert_eq!(t.lookup(ip("fd01::1")), None);
        assert_eq!(t.lookup(ip("1.2.3.4")), Some(4));
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn insert_replace_get_remove() {
        let mut t = PrefixTable::new();
        assert!(t.is_empty());
        assert_eq!(t.insert(net("10.244.1.0/24"), 'a'), None);
        // Host bits are cleared: this is the same prefix.
        assert_eq!(t.insert(net("10.244.1.9/24"), 'b'), Some('a'));
        assert_eq!(t.get(net("10.244.1.0/24")), Some('b'));
        assert_eq!(t.get(net("10.244.1.0/25")), None);
        assert_eq!(t.remove(net("10.244.1.0/25")), None);
        assert_eq!(t.remove(net("10.244.1.0/24")), Some('b'));
        assert_eq!(t.lookup(ip("10.244.1.1")), None);
        assert!(t.is_empty());
        assert_eq!(t.v4.levels.len(), 0, "empty levels are dropped");
    }

    #[test]
    fn zero_and_full_length_prefixes() {
        let mut t = PrefixTable::new();
        t.insert(net("::/0"), 0);
        t.insert(net("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"), 1);
        assert_eq!(
            t.lookup(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")),
            Some(1)
        );
        assert_eq!(
            t.lookup(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe")),
            Some(0)
        );
        t.insert(net("255.255.255.255/32"), 2);
        assert_eq!(t.lookup(ip("255.255.255.255")), Some(2));
        assert_eq!(t.lookup(ip("255.255.255.254")), None);
    }

    /// The obvious implementation, to check the fast one against.
    fn naive(entries: &[(IpNet, u16)], addr: IpAddr) -> Option<u16> {
        entries
            .iter()
            .filter(|(n, _)| n.contains(&addr))
            .max_by_key(|(n, _)| n.prefix_len())
            .map(|(_, v)| *v)
    }

    proptest! {
        #[test]
        fn matches_naive_lpm(
            raw in proptest::collection::vec((any::<u32>(), 0u8..=32, any::<u16>()), 0..64),
            probes in proptest::collection::vec(any::<u32>(), 1..64),
        ) {
            let mut t = PrefixTable::new();
            let mut entries: Vec<(IpNet, u16)> = Vec::new();
            for (a, len, v) in raw {
                // Cluster the addresses so that prefixes overlap often.
                let a = Ipv4Addr::from_bits(0x0af4_0000 | (a & 0x0000_ffff));
                let n = IpNet::V4(Ipv4Net::new(a, len).unwrap().trunc());
                t.insert(n, v);
                entries.retain(|(e, _)| *e != n);
                entries.push((n, v));
            }
            for p in probes {
                let addr = IpAddr::V4(Ipv4Addr::from_bits(0x0af4_0000 | (p & 0x0000_ffff)));
                prop_assert_eq!(t.lookup(addr), naive(&entries, addr));
            }
            prop_assert_eq!(t.len(), entries.len());
        }
    }
}
