//! The switch's configuration (control path): node CIDRs, host addresses,
//! pod ports and peers, the MTU of each egress, and the route table built
//! from them.
//!
//! Contract: every change is atomic. The new configuration is validated and
//! its whole route table rebuilt (a few hundred entries: microseconds) before
//! anything is replaced; on error the switch is left exactly as it was. These
//! calls may allocate; the per-packet path only reads the result.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::decide::Switch;
use crate::martian::is_martian;
use crate::ports::{PeerId, PortId, Route};
use crate::prefix::PrefixTable;
use crate::ratelimit::TokenBucket;

/// The largest [`PortId`] or [`PeerId`] value accepted: ids index vectors.
pub const MAX_ID: u32 = 65_535;

/// The smallest MTU accepted: the IPv4 datagram size every host must take
/// (RFC 791). IPv6 packets up to 1280 bytes pass any egress (RFC 8200 5:
/// the overlay is the link, and the underlay fragments the tunnel's
/// datagram if it must).
pub const MIN_MTU: u32 = 576;

/// The largest MTU accepted (the largest IP packet), and every egress's
/// MTU until one is set.
pub const MAX_MTU: u32 = 65_535;

/// Why a configuration change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A port or peer id above [`MAX_ID`].
    #[error("id {0} is above the maximum {MAX_ID}")]
    IdOutOfRange(u32),
    /// A pod port needs at least one address.
    #[error("{0} has no address")]
    NoAddress(PortId),
    /// A pod port has at most one IPv4 and one IPv6 address.
    #[error("{0} has more than one address of one family")]
    TwoAddressesOfOneFamily(PortId),
    /// The address can never be used on the overlay (loopback, link-local,
    /// multicast, ...).
    #[error("{0} cannot be used as an overlay address")]
    UnusableAddress(IpAddr),
    /// An MTU outside [`MIN_MTU`]..=[`MAX_MTU`].
    #[error("MTU {0} is outside {MIN_MTU}..={MAX_MTU}")]
    MtuOutOfRange(u32),
    /// An MTU for an egress that does not exist (an unknown port or peer,
    /// or [`Route::Unassigned`]).
    #[error("{0} is not an egress of this switch")]
    NoSuchEgress(Route),
    /// The prefix is already routed somewhere else.
    #[error("{prefix} is already routed to {existing}, so it cannot be routed to {wanted}")]
    Conflict {
        /// The prefix both want.
        prefix: IpNet,
        /// Who has it.
        existing: Route,
        /// Who asked for it.
        wanted: Route,
    },
}

/// A pod port's addresses: at most one per family.
#[derive(Debug, Clone, Copy, Default)]
struct PodAddrs {
    v4: Option<Ipv4Addr>,
    v6: Option<Ipv6Addr>,
}

/// A pod port: its addresses and, if it has its own, its TUN's MTU.
#[derive(Debug, Clone, Copy)]
struct PodPort {
    addrs: PodAddrs,
    mtu: Option<u16>,
}

/// A peer: its allowed prefixes and, if it has its own, its overlay MTU.
#[derive(Debug, Clone)]
struct PeerConfig {
    allowed: Vec<IpNet>,
    mtu: Option<u16>,
}

impl PodAddrs {
    fn iter(self) -> impl Iterator<Item = IpAddr> {
        self.v4
            .map(IpAddr::V4)
            .into_iter()
            .chain(self.v6.map(IpAddr::V6))
    }
}

/// Everything the route table is built from, and the egress MTUs.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    node_cidrs: Vec<IpNet>,
    host_addrs: Vec<IpAddr>,
    /// Indexed by `PortId`.
    ports: Vec<Option<PodPort>>,
    /// Indexed by `PeerId`.
    peers: Vec<Option<PeerConfig>>,
    /// The MTU of every egress without one of its own.
    default_mtu: u16,
    /// The host port's own MTU.
    host_mtu: Option<u16>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            node_cidrs: Vec::new(),
            host_addrs: Vec::new(),
            ports: Vec::new(),
            peers: Vec::new(),
            default_mtu: u16::MAX,
            host_mtu: None,
        }
    }
}

/// `mtu` checked against [`MIN_MTU`]..=[`MAX_MTU`].
fn checked_mtu(mtu: u32) -> Result<u16, ConfigError> {
    if mtu < MIN_MTU {
        return Err(ConfigError::MtuOutOfRange(mtu));
    }
    u16::try_from(mtu).map_err(|_| ConfigError::MtuOutOfRange(mtu))
}

fn slot<T>(v: &mut Vec<Option<T>>, id: u32) -> Result<&mut Option<T>, ConfigError> {
    if id > MAX_ID {
        return Err(ConfigError::IdOutOfRange(id));
    }
    let i = id as usize;
    if v.len() <= i {
        v.resize_with(i + 1, || None);
    }
    v.get_mut(i).ok_or(ConfigError::IdOutOfRange(id))
}

fn take<T>(v: &mut Vec<Option<T>>, id: u32) -> Option<T> {
    let taken = v.get_mut(id as usize)?.take();
    while v.last().is_some_and(Option::is_none) {
        v.pop();
    }
    taken
}

impl Config {
    /// Hot path: is `port` configured?
    pub(crate) fn has_port(&self, port: PortId) -> bool {
        self.ports.get(port.0 as usize).is_some_and(Option::is_some)
    }

    /// Hot path: is `peer` configured?
    pub(crate) fn has_peer(&self, peer: PeerId) -> bool {
        self.peers.get(peer.0 as usize).is_some_and(Option::is_some)
    }

    /// Hot path: the MTU of the egress `route` (the default for one
    /// without its own; [`MAX_MTU`] if none was ever set).
    pub(crate) fn egress_mtu(&self, route: Route) -> u16 {
        let own = match route {
            Route::Port(p) => self.ports.get(p.0 as usize).and_then(|p| p.as_ref()?.mtu),
            Route::Peer(p) => self.peers.get(p.0 as usize).and_then(|p| p.as_ref()?.mtu),
            Route::Host => self.host_mtu,
            Route::Unassigned => None,
        };
        own.unwrap_or(self.default_mtu)
    }

    /// The source address for ICMPv4 errors: the first IPv4 host address.
    pub(crate) fn host_v4(&self) -> Option<Ipv4Addr> {
        self.host_addrs.iter().find_map(|a| match a {
            IpAddr::V4(a) => Some(*a),
            IpAddr::V6(_) => None,
        })
    }

    /// The source address for ICMPv6 errors: the first IPv6 host address.
    pub(crate) fn host_v6(&self) -> Option<Ipv6Addr> {
        self.host_addrs.iter().find_map(|a| match a {
            IpAddr::V6(a) => Some(*a),
            IpAddr::V4(_) => None,
        })
    }

    /// Builds the route table, refusing two owners for one prefix.
    fn build_routes(&self) -> Result<PrefixTable<Route>, ConfigError> {
        let mut table = PrefixTable::new();
        let mut add = |prefix: IpNet, wanted: Route| match table.insert(prefix, wanted) {
            Some(existing) if existing != wanted => Err(ConfigError::Conflict {
                prefix: prefix.trunc(),
                existing,
                wanted,
            }),
            _ => Ok(()),
        };
        for addr in &self.host_addrs {
            add(IpNet::from(*addr), Route::Host)?;
        }
        for cidr in &self.node_cidrs {
            add(*cidr, Route::Unassigned)?;
        }
        for (id, port) in (0u32..).zip(&self.ports) {
            for addr in port.iter().flat_map(|p| p.addrs.iter()) {
                add(IpNet::from(addr), Route::Port(PortId(id)))?;
            }
        }
        for (id, peer) in (0u32..).zip(&self.peers) {
            for prefix in peer.iter().flat_map(|p| &p.allowed) {
                add(*prefix, Route::Peer(PeerId(id)))?;
            }
        }
        Ok(table)
    }
}

fn usable(addr: IpAddr) -> Result<IpAddr, ConfigError> {
    if is_martian(addr) {
        Err(ConfigError::UnusableAddress(addr))
    } else {
        Ok(addr)
    }
}

impl Switch {
    /// Applies `change` to a copy of the configuration and, if it and the
    /// route table built from it are valid, swaps both in.
    fn apply(
        &mut self,
        change: impl FnOnce(&mut Config) -> Result<(), ConfigError>,
    ) -> Result<(), ConfigError> {
        let mut next = self.config.clone();
        change(&mut next)?;
        self.routes = next.build_routes()?;
        self.config = next;
        Ok(())
    }

    /// Sets this node's pod CIDR(s) (one per family, e.g. `10.244.3.0/24`).
    /// Addresses inside them that no pod or host address holds answer "host
    /// unreachable". Replaces the previous CIDRs.
    pub fn set_node_cidrs(&mut self, cidrs: &[IpNet]) -> Result<(), ConfigError> {
        self.apply(|c| {
            c.node_cidrs = cidrs.iter().map(IpNet::trunc).collect();
            Ok(())
        })
    }

    /// Sets the node's own overlay address(es) on the host port `weft0`
    /// (e.g. `10.244.3.1`). The host port may send from these only; the first
    /// of each family is the source of the switch's ICMP errors. Replaces the
    /// previous addresses.
    pub fn set_host_addresses(&mut self, addrs: &[IpAddr]) -> Result<(), ConfigError> {
        let addrs = addrs
            .iter()
            .map(|a| usable(*a))
            .collect::<Result<Vec<_>, _>>()?;
        self.apply(|c| {
            c.host_addrs = addrs;
            Ok(())
        })
    }

    /// Adds pod port `port` with its address(es) (at most one per family),
    /// or replaces the addresses of an existing one.
    pub fn set_pod_port(&mut self, port: PortId, addrs: &[IpAddr]) -> Result<(), ConfigError> {
        let mut pod = PodAddrs::default();
        for addr in addrs {
            let duplicate = match usable(*addr)? {
                IpAddr::V4(a) => pod.v4.replace(a).is_some(),
                IpAddr::V6(a) => pod.v6.replace(a).is_some(),
            };
            if duplicate {
                return Err(ConfigError::TwoAddressesOfOneFamily(port));
            }
        }
        if pod.v4.is_none() && pod.v6.is_none() {
            return Err(ConfigError::NoAddress(port));
        }
        self.apply(|c| {
            let entry = slot(&mut c.ports, port.0)?;
            let mtu = entry.and_then(|p| p.mtu);
            *entry = Some(PodPort { addrs: pod, mtu });
            Ok(())
        })
    }

    /// Removes pod port `port`; its addresses become unassigned. Returns
    /// whether it existed.
    pub fn remove_pod_port(&mut self, port: PortId) -> bool {
        let existed = self.config.has_port(port);
        // Removing never creates a conflict, so this cannot fail.
        let _ = self.apply(|c| {
            take(&mut c.ports, port.0);
            Ok(())
        });
        existed
    }

    /// Adds peer `peer` with its allowed prefixes (its pod CIDR(s)), or
    /// replaces the prefixes of an existing one. Packets from the peer must
    /// come from these prefixes; packets to them go to the peer.
    pub fn set_peer(&mut self, peer: PeerId, allowed: &[IpNet]) -> Result<(), ConfigError> {
        let allowed: Vec<IpNet> = allowed.iter().map(IpNet::trunc).collect();
        self.apply(|c| {
            let entry = slot(&mut c.peers, peer.0)?;
            let mtu = entry.as_ref().and_then(|p| p.mtu);
            *entry = Some(PeerConfig { allowed, mtu });
            Ok(())
        })
    }

    /// Removes peer `peer` and its routes. Returns whether it existed.
    pub fn remove_peer(&mut self, peer: PeerId) -> bool {
        let existed = self.config.has_peer(peer);
        let _ = self.apply(|c| {
            take(&mut c.peers, peer.0);
            Ok(())
        });
        existed
    }

    /// Sets the MTU of every egress (pod ports, the host port, peers'
    /// tunnels) that has none of its own: the largest IP packet forwarded
    /// there. A larger one is answered with ICMP "fragmentation needed" /
    /// ICMPv6 "packet too big" (IPv4 without DF is forwarded: weft does
    /// not fragment, the underlay fragments the tunnel's datagram). Until
    /// set, [`MAX_MTU`].
    pub fn set_mtu(&mut self, mtu: u32) -> Result<(), ConfigError> {
        let mtu = checked_mtu(mtu)?;
        self.apply(|c| {
            c.default_mtu = mtu;
            Ok(())
        })
    }

    /// Gives the egress `route` (a pod port, the host port or a peer) an
    /// MTU of its own, or with `None` takes it back to the default. Ports
    /// and peers keep theirs when their addresses change and lose it when
    /// removed.
    pub fn set_route_mtu(&mut self, route: Route, mtu: Option<u32>) -> Result<(), ConfigError> {
        let mtu = mtu.map(checked_mtu).transpose()?;
        self.apply(|c| {
            let own = match route {
                Route::Port(p) => c
                    .ports
                    .get_mut(p.0 as usize)
                    .and_then(Option::as_mut)
                    .map(|p| &mut p.mtu),
                Route::Peer(p) => c
                    .peers
                    .get_mut(p.0 as usize)
                    .and_then(Option::as_mut)
                    .map(|p| &mut p.mtu),
                Route::Host => Some(&mut c.host_mtu),
                Route::Unassigned => None,
            };
            *own.ok_or(ConfigError::NoSuchEgress(route))? = mtu;
            Ok(())
        })
    }

    /// The MTU of the egress `route`: its own, else the default.
    pub fn mtu(&self, route: Route) -> u16 {
        self.config.egress_mtu(route)
    }

    /// Limits the ICMP errors the switch originates, across all ports: on
    /// average `per_second`, in bursts of up to `burst`. Zero disables them.
    pub fn set_icmp_rate_limit(&mut self, per_second: u32, burst: u32) {
        self.icmp_limit = TokenBucket::new(per_second, burst);
    }

    /// Where `addr` is routed (for `weftctl trace` and tests).
    pub fn route(&self, addr: IpAddr) -> Option<Route> {
        self.routes.lookup(addr)
    }

    /// The whole route table.
    pub fn routes(&self) -> impl Iterator<Item = (IpNet, Route)> + '_ {
        self.routes.iter()
    }
}
