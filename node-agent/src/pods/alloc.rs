//! The address pool of a node's pod CIDR: pure functions, no IO, no state
//! of their own (the set of used addresses is the caller's).
//!
//! Rules: the CIDR's network address and its first host address (`.1`, the
//! node's own address on `weft0`) are never handed out, nor is the node
//! address if it is configured elsewhere, nor (IPv4) the broadcast address.
//! Pods get the lowest free address from `.2` up.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// The assignable addresses of one node CIDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPool {
    cidr: IpNet,
    node: IpAddr,
    /// The first and last assignable address, as integers; `first > last`
    /// for a CIDR too small to hold a pod.
    first: u128,
    last: u128,
}

/// Why an address cannot be a pod's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unassignable {
    /// The address is not in the node CIDR (or of the other family).
    #[error("{addr} is outside node CIDR {cidr}")]
    OutsideCidr {
        /// The address.
        addr: IpAddr,
        /// The node CIDR.
        cidr: IpNet,
    },
    /// The address is reserved: network, node, or broadcast address.
    #[error("{addr} is reserved in node CIDR {cidr} (network, node or broadcast address)")]
    Reserved {
        /// The address.
        addr: IpAddr,
        /// The node CIDR.
        cidr: IpNet,
    },
}

fn to_int(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

impl AddressPool {
    /// The pool of `cidr` whose node address is `node`. Fails (saying why)
    /// if `node` is not a host address of `cidr`.
    pub fn new(cidr: IpNet, node: IpAddr) -> Result<Self, String> {
        let cidr = cidr.trunc();
        if !cidr.contains(&node) {
            return Err(format!("node address {node} is not in node CIDR {cidr}"));
        }
        let network = to_int(cidr.network());
        let (first, last) = match cidr {
            // The broadcast address is never a host's.
            IpNet::V4(_) => (network + 2, to_int(cidr.broadcast()).saturating_sub(1)),
            IpNet::V6(_) => (network + 2, to_int(cidr.broadcast())),
        };
        if to_int(node) == network {
            return Err(format!(
                "node address {node} is the network address of node CIDR {cidr}"
            ));
        }
        Ok(Self {
            cidr,
            node,
            first,
            last,
        })
    }

    /// The node CIDR.
    pub fn cidr(&self) -> IpNet {
        self.cidr
    }

    /// The node's own address.
    pub fn node_address(&self) -> IpAddr {
        self.node
    }

    /// How many pod addresses the pool holds.
    pub fn capacity(&self) -> u128 {
        if self.first > self.last {
            return 0;
        }
        let node_inside = (self.first..=self.last).contains(&to_int(self.node));
        (self.last - self.first).saturating_add(1) - u128::from(node_inside)
    }

    /// Whether `addr` may be a pod's address.
    pub fn check(&self, addr: IpAddr) -> Result<(), Unassignable> {
        if !self.cidr.contains(&addr) {
            return Err(Unassignable::OutsideCidr {
                addr,
                cidr: self.cidr,
            });
        }
        let n = to_int(addr);
        if n < self.first || n > self.last || addr == self.node {
            return Err(Unassignable::Reserved {
                addr,
                cidr: self.cidr,
            });
        }
        Ok(())
    }

    /// The lowest assignable address not in `used`; `None` if every one is.
    pub fn lowest_free(&self, used: &BTreeSet<IpAddr>) -> Option<IpAddr> {
        let node = to_int(self.node);
        let mut n = self.first;
        // At most used.len() + 1 steps (the node) before a free one, so this
        // stays cheap even for an IPv6 /64.
        while n <= self.last {
            let addr = self.addr_at(n);
            if n != node && !used.contains(&addr) {
                return Some(addr);
            }
            n = n.checked_add(1)?;
        }
        None
    }

    fn addr_at(&self, n: u128) -> IpAddr {
        match self.cidr {
            // n is within the IPv4 CIDR, so it fits in 32 bits.
            IpNet::V4(_) => IpAddr::V4(Ipv4Addr::from(n as u32)),
            IpNet::V6(_) => IpAddr::V6(Ipv6Addr::from(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn pool(cidr: &str, node: &str) -> AddressPool {
        AddressPool::new(cidr.parse().unwrap(), node.parse().unwrap()).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_slash_24_starts_at_dot_2_and_ends_before_broadcast() {
        let p = pool("10.244.3.0/24", "10.244.3.1");
        assert_eq!(p.capacity(), 253);
        assert_eq!(p.lowest_free(&BTreeSet::new()), Some(ip("10.244.3.2")));
        let all: BTreeSet<IpAddr> = (2..=253).map(|i| ip(&format!("10.244.3.{i}"))).collect();
        assert_eq!(p.lowest_free(&all), Some(ip("10.244.3.254")));
        for bad in ["10.244.3.0", "10.244.3.1", "10.244.3.255"] {
            assert!(
                matches!(p.check(ip(bad)), Err(Unassignable::Reserved { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            p.check(ip("10.244.4.2")),
            Err(Unassignable::OutsideCidr { .. })
        ));
        assert!(matches!(
            p.check(ip("fd00::2")),
            Err(Unassignable::OutsideCidr { .. })
        ));
    }

    #[test]
    fn a_node_address_elsewhere_is_skipped_too() {
        let p = pool("10.0.0.0/29", "10.0.0.3");
        assert_eq!(p.capacity(), 4); // .2 .4 .5 .6
        let used: BTreeSet<IpAddr> = [ip("10.0.0.2")].into();
        assert_eq!(p.lowest_free(&used), Some(ip("10.0.0.4")));
    }

    #[test]
    fn tiny_and_bad_cidrs() {
        assert_eq!(pool("10.0.0.0/31", "10.0.0.1").capacity(), 0);
        assert_eq!(
            pool("10.0.0.0/31", "10.0.0.1").lowest_free(&BTreeSet::new()),
            None
        );
        let e = AddressPool::new("10.0.0.1/32".parse().unwrap(), ip("10.0.0.1")).unwrap_err();
        assert!(e.contains("is the network address"), "{e}");
        let e = AddressPool::new("10.0.0.0/24".parse().unwrap(), ip("10.0.1.1")).unwrap_err();
        assert_eq!(e, "node address 10.0.1.1 is not in node CIDR 10.0.0.0/24");
        assert!(AddressPool::new("10.0.0.0/24".parse().unwrap(), ip("10.0.0.0")).is_err());
    }

    #[test]
    fn ipv6_works_and_large_pools_are_cheap() {
        let p = pool("fd00:244:3::/64", "fd00:244:3::1");
        assert_eq!(p.lowest_free(&BTreeSet::new()), Some(ip("fd00:244:3::2")));
        assert_eq!(p.capacity(), (1u128 << 64) - 2);
        let top = pool("::/0", "::1");
        assert_eq!(top.capacity(), u128::MAX - 1); // ::2 to the last
    }

    #[test]
    fn exhaustion_then_free_gives_the_freed_address_back() {
        let p = pool("10.0.0.0/29", "10.0.0.1");
        let mut used = BTreeSet::new();
        while let Some(a) = p.lowest_free(&used) {
            used.insert(a);
        }
        assert_eq!(used.len(), 5); // .2 to .6
        assert!(used.remove(&ip("10.0.0.4")));
        assert_eq!(p.lowest_free(&used), Some(ip("10.0.0.4")));
    }

    /// An op of the property test: add a pod, or delete the k-th live one.
    #[derive(Debug, Clone)]
    enum Op {
        Add,
        Del(usize),
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        prop::collection::vec(
            prop_oneof![3 => Just(Op::Add), 2 => any::<usize>().prop_map(Op::Del)],
            0..200,
        )
    }

    proptest! {
        /// Random add/del sequences on small CIDRs: no duplicates, never a
        /// reserved address, always the lowest free one, exhaustion exactly
        /// when every address is used, and freed addresses come back.
        #[test]
        fn allocations_are_unique_lowest_free_and_never_reserved(
            prefix in 26u8..=30,
            node_offset in 1u32..4,
            ops in ops(),
        ) {
            let cidr: IpNet = format!("10.9.8.0/{prefix}").parse().unwrap();
            let size = 1u32 << (32 - prefix);
            let node = IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 9, 8, 0)) + node_offset.min(size - 2)));
            let p = AddressPool::new(cidr, node).unwrap();
            let reserved: BTreeSet<IpAddr> = [
                ip("10.9.8.0"), ip("10.9.8.1"), node,
                IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 9, 8, 0)) + size - 1)),
            ].into();
            let candidates: Vec<IpAddr> = cidr.hosts().chain([cidr.network(), cidr.broadcast()])
                .filter(|a| !reserved.contains(a)).collect::<BTreeSet<_>>().into_iter().collect();
            prop_assert_eq!(p.capacity(), candidates.len() as u128);

            let mut live: BTreeMap<usize, IpAddr> = BTreeMap::new();
            let mut next_id = 0;
            for op in ops {
                let used: BTreeSet<IpAddr> = live.values().copied().collect();
                match op {
                    Op::Add => match p.lowest_free(&used) {
                        Some(addr) => {
                            prop_assert!(!used.contains(&addr), "duplicate {}", addr);
                            prop_assert!(!reserved.contains(&addr), "reserved {}", addr);
                            prop_assert!(p.check(addr).is_ok());
                            let expect = candidates.iter().find(|a| !used.contains(a)).copied();
                            prop_assert_eq!(Some(addr), expect, "not the lowest free");
                            live.insert(next_id, addr);
                            next_id += 1;
                        }
                        None => {
                            prop_assert_eq!(used.len(), candidates.len(), "exhausted too early");
                        }
                    },
                    Op::Del(k) => {
                        if !live.is_empty() {
                            let id = *live.keys().nth(k % live.len()).unwrap();
                            let freed = live.remove(&id).unwrap();
                            let now: BTreeSet<IpAddr> = live.values().copied().collect();
                            // A freed address is free again: it, or a lower one, comes next.
                            let next = p.lowest_free(&now).unwrap();
                            prop_assert!(next <= freed);
                        }
                    }
                }
            }
        }
    }
}
