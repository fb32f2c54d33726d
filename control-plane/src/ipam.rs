//! Pod-CIDR address management, as pure functions.
//!
//! A [`Pool`] is the cluster CIDR cut into equal node CIDRs of one prefix
//! length (10.244.0.0/16 into 256 /24s by default). The pool itself holds no
//! state: callers pass in which node CIDRs are taken, and the store's
//! compare-and-swap transactions make an allocation stick (see
//! `registry.rs`). [`Allocations`] is the in-memory view of what is taken,
//! kept in step with the store by the registry.
//!
//! Contract: every CIDR a pool hands out lies inside the cluster CIDR, has
//! the node prefix length, and is aligned; [`Allocations`] never holds one
//! CIDR for two owners. Works for IPv4 and IPv6 alike.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Why a pool cannot be built from the given CIDR and prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// The node prefix is not longer than the cluster prefix.
    #[error(
        "node CIDR prefix /{node} must be longer than the cluster CIDR prefix /{cluster} ({cidr})"
    )]
    PrefixNotLonger { cidr: IpNet, cluster: u8, node: u8 },
    /// The node prefix is longer than the address family allows.
    #[error("node CIDR prefix /{node} is too long for {cidr} (at most /{max})")]
    PrefixTooLong { cidr: IpNet, node: u8, max: u8 },
    /// The node CIDRs would hold fewer than two addresses each (a node needs
    /// its own overlay address and at least one pod address).
    #[error("node CIDR prefix /{node} leaves no room for pods (at most /{max} for {cidr})")]
    NoRoomForPods { cidr: IpNet, node: u8, max: u8 },
    /// The cluster CIDR has host bits set (e.g. 10.244.1.0/16).
    #[error("cluster CIDR {cidr} has host bits set; did you mean {trunc}?")]
    NotANetwork { cidr: IpNet, trunc: IpNet },
}

/// The cluster CIDR cut into node CIDRs of `node_prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    cluster: IpNet,
    node_prefix: u8,
}

impl Pool {
    /// A pool of `/node_prefix` CIDRs inside `cluster`.
    pub fn new(cluster: IpNet, node_prefix: u8) -> Result<Pool, PoolError> {
        if cluster.trunc() != cluster {
            return Err(PoolError::NotANetwork {
                cidr: cluster,
                trunc: cluster.trunc(),
            });
        }
        let max = cluster.max_prefix_len();
        if node_prefix <= cluster.prefix_len() {
            return Err(PoolError::PrefixNotLonger {
                cidr: cluster,
                cluster: cluster.prefix_len(),
                node: node_prefix,
            });
        }
        if node_prefix > max {
            return Err(PoolError::PrefixTooLong {
                cidr: cluster,
                node: node_prefix,
                max,
            });
        }
        // A node CIDR holds the node's own address and its pods: at least
        // four addresses for IPv4 (network, node, pod, broadcast).
        let room_max = if cluster.addr().is_ipv4() { 30 } else { 126 };
        if node_prefix > room_max {
            return Err(PoolError::NoRoomForPods {
                cidr: cluster,
                node: node_prefix,
                max: room_max,
            });
        }
        Ok(Pool {
            cluster,
            node_prefix,
        })
    }

    /// The cluster CIDR.
    pub fn cluster(&self) -> IpNet {
        self.cluster
    }

    /// The node CIDR prefix length.
    pub fn node_prefix(&self) -> u8 {
        self.node_prefix
    }

    /// How many node CIDRs the pool holds (saturating at `u64::MAX` for huge
    /// IPv6 pools).
    pub fn len(&self) -> u64 {
        let bits = u32::from(self.node_prefix - self.cluster.prefix_len());
        if bits >= 64 {
            u64::MAX
        } else {
            1u64 << bits
        }
    }

    /// Always false: a pool holds at least two node CIDRs.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The `index`-th node CIDR, or `None` past the end.
    pub fn nth(&self, index: u64) -> Option<IpNet> {
        if index >= self.len() {
            return None;
        }
        let host_bits = u32::from(self.cluster.max_prefix_len() - self.node_prefix);
        let base = addr_to_u128(self.cluster.network());
        let offset = u128::from(index).checked_shl(host_bits)?;
        let addr = u128_to_addr(base + offset, self.cluster.addr().is_ipv4());
        IpNet::new(addr, self.node_prefix).ok()
    }

    /// The index of `net` in the pool, if it is one of the pool's node CIDRs
    /// (right prefix length, aligned, inside the cluster CIDR).
    pub fn index_of(&self, net: &IpNet) -> Option<u64> {
        if net.prefix_len() != self.node_prefix
            || net.trunc() != *net
            || !self.cluster.contains(net)
        {
            return None;
        }
        let host_bits = u32::from(self.cluster.max_prefix_len() - self.node_prefix);
        let offset = addr_to_u128(net.network()) - addr_to_u128(self.cluster.network());
        u64::try_from(offset >> host_bits).ok()
    }

    /// The lowest node CIDR for which `taken` is false, or `None` if every
    /// one is taken. Scans from index 0, so a freed CIDR is reused first.
    pub fn first_free(&self, mut taken: impl FnMut(&IpNet) -> bool) -> Option<IpNet> {
        (0..self.len())
            .map_while(|i| self.nth(i))
            .find(|net| !taken(net))
    }

    /// The node's own overlay address in a node CIDR: its first host address
    /// (10.244.3.1 in 10.244.3.0/24).
    pub fn node_address(net: &IpNet) -> IpAddr {
        let base = addr_to_u128(net.network());
        u128_to_addr(base + 1, net.addr().is_ipv4())
    }
}

fn addr_to_u128(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn u128_to_addr(v: u128, v4: bool) -> IpAddr {
    if v4 {
        // Callers only pass values derived from IPv4 networks.
        IpAddr::V4(Ipv4Addr::from(v as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(v))
    }
}

/// Why an allocation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    /// Every node CIDR is taken.
    #[error("no free pod CIDR: cluster CIDR {cluster} holds {total} /{prefix} node CIDRs and every one is leased; remove nodes (`weftctl node remove`) or use a larger --cluster-cidr")]
    Exhausted {
        cluster: IpNet,
        prefix: u8,
        total: u64,
    },
}

/// Which node holds which node CIDR: the in-memory view of allocations.
#[derive(Debug, Clone)]
pub struct Allocations {
    pool: Pool,
    by_owner: BTreeMap<String, IpNet>,
    taken: BTreeSet<IpNet>,
}

impl Allocations {
    /// No allocations yet.
    pub fn new(pool: Pool) -> Allocations {
        Allocations {
            pool,
            by_owner: BTreeMap::new(),
            taken: BTreeSet::new(),
        }
    }

    /// The pool allocations come from.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The CIDR `owner` holds, if any.
    pub fn get(&self, owner: &str) -> Option<IpNet> {
        self.by_owner.get(owner).copied()
    }

    /// The CIDR `owner` holds, or the lowest free one (not yet recorded:
    /// call [`Allocations::record`] once the store accepted it).
    pub fn candidate(&self, owner: &str) -> Result<IpNet, AllocError> {
        if let Some(net) = self.get(owner) {
            return Ok(net);
        }
        self.pool
            .first_free(|n| self.taken.contains(n))
            .ok_or(AllocError::Exhausted {
                cluster: self.pool.cluster(),
                prefix: self.pool.node_prefix(),
                total: self.pool.len(),
            })
    }

    /// Record that `owner` holds `net`. Returns false (and changes nothing)
    /// if `net` is not a node CIDR of the pool or another owner holds it.
    pub fn record(&mut self, owner: &str, net: IpNet) -> bool {
        if self.pool.index_of(&net).is_none() {
            return false;
        }
        match self.by_owner.get(owner) {
            Some(held) if *held == net => return true,
            _ if self.taken.contains(&net) => return false,
            Some(held) => {
                let held = *held;
                self.taken.remove(&held);
            }
            None => {}
        }
        self.taken.insert(net);
        self.by_owner.insert(owner.to_string(), net);
        true
    }

    /// Forget `owner`'s CIDR, returning it to the pool.
    pub fn release(&mut self, owner: &str) -> Option<IpNet> {
        let net = self.by_owner.remove(owner)?;
        self.taken.remove(&net);
        Some(net)
    }

    /// Whether `net` is held by anyone.
    pub fn is_taken(&self, net: &IpNet) -> bool {
        self.taken.contains(net)
    }

    /// How many node CIDRs are taken.
    pub fn taken(&self) -> u64 {
        self.taken.len() as u64
    }

    /// How many node CIDRs are free.
    pub fn free(&self) -> u64 {
        self.pool.len().saturating_sub(self.taken())
    }

    /// Every (owner, CIDR) pair.
    pub fn iter(&self) -> impl Iterator<Item = (&str, IpNet)> {
        self.by_owner.iter().map(|(k, v)| (k.as_str(), *v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn default_pool_is_256_slash_24s() {
        let p = Pool::new(net("10.244.0.0/16"), 24).unwrap();
        assert_eq!(p.len(), 256);
        assert_eq!(p.nth(0), Some(net("10.244.0.0/24")));
        assert_eq!(p.nth(3), Some(net("10.244.3.0/24")));
        assert_eq!(p.nth(255), Some(net("10.244.255.0/24")));
        assert_eq!(p.nth(256), None);
        assert_eq!(p.index_of(&net("10.244.7.0/24")), Some(7));
        assert_eq!(p.index_of(&net("10.245.7.0/24")), None);
        assert_eq!(p.index_of(&net("10.244.7.0/25")), None);
        assert_eq!(
            Pool::node_address(&net("10.244.3.0/24")),
            "10.244.3.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn ipv6_pool() {
        let p = Pool::new(net("fd00:10:244::/56"), 64).unwrap();
        assert_eq!(p.len(), 256);
        assert_eq!(p.nth(1), Some(net("fd00:10:244:1::/64")));
        assert_eq!(p.index_of(&net("fd00:10:244:ff::/64")), Some(255));
        let huge = Pool::new(net("fd00::/8"), 120).unwrap();
        assert_eq!(huge.len(), u64::MAX);
        assert!(huge.nth(12345).is_some());
    }

    #[test]
    fn bad_pools_are_refused_precisely() {
        let e = Pool::new(net("10.244.0.0/16"), 16).unwrap_err();
        assert!(
            e.to_string()
                .contains("must be longer than the cluster CIDR prefix /16"),
            "{e}"
        );
        let e = Pool::new(net("10.244.0.0/16"), 33).unwrap_err();
        assert!(matches!(e, PoolError::PrefixTooLong { .. }));
        let e = Pool::new(net("10.244.0.0/16"), 31).unwrap_err();
        assert!(matches!(e, PoolError::NoRoomForPods { .. }));
        let e = Pool::new(net("10.244.1.0/16"), 24).unwrap_err();
        assert!(e.to_string().contains("did you mean 10.244.0.0/16"), "{e}");
    }

    #[test]
    fn exhausted_pool_names_cidr_and_prefix_and_frees_up() {
        let mut a = Allocations::new(Pool::new(net("10.0.0.0/23"), 24).unwrap());
        let c1 = a.candidate("a").unwrap();
        assert!(a.record("a", c1));
        let c2 = a.candidate("b").unwrap();
        assert!(a.record("b", c2));
        let e = a.candidate("c").unwrap_err();
        assert!(e.to_string().contains("10.0.0.0/23"), "{e}");
        assert!(e.to_string().contains("/24"), "{e}");
        assert_eq!(a.release("a"), Some(c1));
        assert_eq!(a.candidate("c").unwrap(), c1);
    }

    #[test]
    fn record_refuses_double_owner_and_foreign_cidrs() {
        let mut a = Allocations::new(Pool::new(net("10.244.0.0/16"), 24).unwrap());
        assert!(a.record("a", net("10.244.1.0/24")));
        assert!(!a.record("b", net("10.244.1.0/24")));
        assert!(!a.record("b", net("10.1.1.0/24")));
        assert!(!a.record("b", net("10.244.1.0/25")));
        assert!(
            a.record("a", net("10.244.1.0/24")),
            "re-recording the same pair is fine"
        );
        assert_eq!(a.taken(), 1);
        assert_eq!(
            a.candidate("a").unwrap(),
            net("10.244.1.0/24"),
            "an owner keeps its CIDR"
        );
    }

    #[derive(Debug, Clone)]
    enum Step {
        Join(u8),
        Leave(u8),
        Expire(u8),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0u8..24).prop_map(Step::Join),
            (0u8..24).prop_map(Step::Leave),
            (0u8..24).prop_map(Step::Expire),
        ]
    }

    proptest! {
        /// Random join / re-join / leave / expire sequences on a pool of 16:
        /// never a duplicate, overlap or out-of-range CIDR; a re-join keeps
        /// its CIDR; an exhausted pool frees up after a removal.
        #[test]
        fn allocations_stay_disjoint(steps in proptest::collection::vec(step(), 1..300)) {
            let pool = Pool::new(net("10.244.0.0/20"), 24).unwrap();
            let mut a = Allocations::new(pool);
            for s in steps {
                match s {
                    Step::Join(n) => {
                        let owner = format!("node-{n}");
                        let before = a.get(&owner);
                        match a.candidate(&owner) {
                            Ok(c) => {
                                prop_assert!(a.record(&owner, c));
                                if let Some(b) = before { prop_assert_eq!(b, c); }
                            }
                            Err(AllocError::Exhausted { .. }) => {
                                prop_assert_eq!(a.free(), 0);
                                prop_assert!(before.is_none());
                                // Free one and the join succeeds.
                                let victim = a.iter().next().map(|(o, _)| o.to_string()).unwrap();
                                let freed = a.release(&victim).unwrap();
                                let c = a.candidate(&owner).unwrap();
                                prop_assert_eq!(c, freed);
                                prop_assert!(a.record(&owner, c));
                            }
                        }
                    }
                    Step::Leave(n) | Step::Expire(n) => {
                        let owner = format!("node-{n}");
                        let held = a.get(&owner);
                        prop_assert_eq!(a.release(&owner), held);
                    }
                }
                let nets: Vec<IpNet> = a.iter().map(|(_, n)| n).collect();
                for (i, x) in nets.iter().enumerate() {
                    prop_assert!(pool.cluster().contains(x));
                    prop_assert_eq!(x.prefix_len(), 24);
                    for y in &nets[i + 1..] {
                        prop_assert!(!x.contains(y) && !y.contains(x), "{} overlaps {}", x, y);
                    }
                }
                prop_assert_eq!(a.taken() + a.free(), pool.len());
            }
        }
    }
}
