//! ClusterIP and node-port allocation for Services, planned here and
//! committed by the caller in the same store transaction as the Service.
//!
//! Contract:
//! - Every allocated value has a key, `alloc/clusterip/<ip>` or
//!   `alloc/nodeport/<port>` (node ports and health-check node ports share
//!   one space, as in Kubernetes), whose value is the owner `<ns>/<name>`.
//!   A [`Plan`] lists the keys to create (the transaction compares each
//!   `Absent`, so no value is ever handed out twice, whatever races or
//!   crashes) and the keys to delete (values the Service gave up).
//! - Values the user asked for are honoured when free and refused with
//!   Kubernetes' wording when taken; values left empty are picked at random
//!   as Kubernetes does ([`pick`]); values an update leaves unchanged are
//!   kept without a write.
//! - The first address of the service CIDR (Kubernetes' `kubernetes`
//!   Service; weft has none) and the cluster DNS address are never handed
//!   out: asking for them is "already allocated".
//! - Pure: the caller reads what is taken ([`Taken`]) and passes the
//!   randomness.

pub mod pick;

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;
use rand::Rng;
use weft_objects::defaults::{set_cluster_ips, set_headless_families};
use weft_objects::field::FieldError;
use weft_objects::validation::allocation::{self, Exhausted};
use weft_objects::validation::NodePortRange;
use weft_objects::values::{IpFamily, ServiceType};
use weft_objects::Service;

/// Prefix of ClusterIP allocation keys.
pub const CLUSTER_IP_PREFIX: &str = "alloc/clusterip/";
/// Prefix of node-port allocation keys (node ports and health-check ports).
pub const NODE_PORT_PREFIX: &str = "alloc/nodeport/";

/// The key of an allocated ClusterIP.
pub fn cluster_ip_key(ip: &IpAddr) -> String {
    format!("{CLUSTER_IP_PREFIX}{ip}")
}

/// The key of an allocated node port.
pub fn node_port_key(port: u16) -> String {
    format!("{NODE_PORT_PREFIX}{port}")
}

/// One allocated value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Value {
    ClusterIp(IpAddr),
    NodePort(u16),
}

impl Value {
    /// Its store key.
    pub fn key(&self) -> String {
        match self {
            Value::ClusterIp(ip) => cluster_ip_key(ip),
            Value::NodePort(p) => node_port_key(*p),
        }
    }

    /// The value of an allocation key, if it is one.
    pub fn from_key(key: &str) -> Option<Value> {
        if let Some(ip) = key.strip_prefix(CLUSTER_IP_PREFIX) {
            return ip.parse().ok().map(Value::ClusterIp);
        }
        key.strip_prefix(NODE_PORT_PREFIX)
            .and_then(|p| p.parse().ok())
            .map(Value::NodePort)
    }
}

/// The ranges values come from.
#[derive(Debug, Clone)]
pub struct Ranges {
    /// The service CIDR.
    pub service_cidr: IpNet,
    /// Addresses never handed out (the first one, the cluster DNS).
    pub reserved: Vec<IpAddr>,
    /// The node-port range.
    pub node_ports: NodePortRange,
}

impl Ranges {
    /// Usable ClusterIPs: every address but the network's (and IPv4's
    /// broadcast), at most 2^32.
    fn cluster_ip_count(&self) -> u64 {
        let host_bits =
            u32::from(self.service_cidr.max_prefix_len() - self.service_cidr.prefix_len());
        let all: u128 = if host_bits >= 127 {
            u128::MAX
        } else {
            1u128 << host_bits
        };
        let usable = match self.service_cidr {
            IpNet::V4(_) => all.saturating_sub(2),
            IpNet::V6(_) => all.saturating_sub(1),
        };
        u64::try_from(usable.min(1 << 32)).unwrap_or(1 << 32)
    }

    /// The ClusterIP at `offset` (0 is the first address after the network's).
    fn cluster_ip_at(&self, offset: u64) -> IpAddr {
        match self.service_cidr {
            IpNet::V4(n) => {
                let base = u32::from(n.network());
                IpAddr::V4(base.wrapping_add(1).wrapping_add(offset as u32).into())
            }
            IpNet::V6(n) => {
                let base = u128::from(n.network());
                IpAddr::V6(base.wrapping_add(1).wrapping_add(u128::from(offset)).into())
            }
        }
    }

    fn node_port_count(&self) -> u64 {
        u64::from(self.node_ports.last.saturating_sub(self.node_ports.first)) + 1
    }

    fn is_reserved(&self, ip: &IpAddr) -> bool {
        self.reserved.contains(ip)
    }
}

/// What is taken: value -> owner (`<ns>/<name>`), as read from the store,
/// plus what earlier Services of the same request claimed.
#[derive(Debug, Clone, Default)]
pub struct Taken {
    owners: HashMap<Value, String>,
}

impl Taken {
    /// Record that `owner` holds `value`.
    pub fn insert(&mut self, value: Value, owner: impl Into<String>) {
        self.owners.insert(value, owner.into());
    }

    /// Forget `value` (released earlier in the same request).
    pub fn remove(&mut self, value: &Value) {
        self.owners.remove(value);
    }

    /// Who holds `value`.
    pub fn owner(&self, value: &Value) -> Option<&str> {
        self.owners.get(value).map(String::as_str)
    }

    /// How many values are held.
    pub fn len(&self) -> usize {
        self.owners.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }

    /// Every value and owner.
    pub fn iter(&self) -> impl Iterator<Item = (&Value, &str)> {
        self.owners.iter().map(|(v, o)| (v, o.as_str()))
    }
}

/// What to write for one Service: allocation keys to create and to delete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// New values, each created with an `Absent` compare.
    pub claim: BTreeSet<Value>,
    /// Values given up, deleted.
    pub release: BTreeSet<Value>,
}

/// Why a Service could not get its values.
#[derive(Debug, Clone, PartialEq)]
pub enum AllocError {
    /// Asked-for values that are taken (INVALID_ARGUMENT).
    Taken(Vec<FieldError>),
    /// A range with nothing left (RESOURCE_EXHAUSTED).
    Exhausted(Exhausted),
}

/// The values a stored Service holds.
pub fn held(svc: &Service) -> BTreeSet<Value> {
    let mut out = BTreeSet::new();
    if svc.service_type() != ServiceType::ExternalName {
        for ip in &svc.spec.cluster_ips {
            if let Ok(ip) = ip.parse::<IpAddr>() {
                out.insert(Value::ClusterIp(ip));
            }
        }
    }
    if svc.needs_node_ports() {
        for p in &svc.spec.ports {
            if let Ok(p) = u16::try_from(p.node_port) {
                if p != 0 {
                    out.insert(Value::NodePort(p));
                }
            }
        }
    }
    if svc.needs_health_check() {
        if let Ok(p) = u16::try_from(svc.spec.health_check_node_port) {
            if p != 0 {
                out.insert(Value::NodePort(p));
            }
        }
    }
    out
}

/// Fill in `svc`'s ClusterIP, node ports and health-check port (defaulted
/// and validated already; for an update, after `prepare_update` copied
/// `old`'s values) and plan the writes. `taken` is updated with the plan,
/// so the next Service of the same request sees it.
pub fn allocate(
    svc: &mut Service,
    old: Option<&Service>,
    ranges: &Ranges,
    taken: &mut Taken,
    rng: &mut impl Rng,
) -> Result<Plan, AllocError> {
    let owner = format!("{}/{}", svc.metadata.namespace, svc.metadata.name);
    let before = old.map(held).unwrap_or_default();
    let mine = |v: &Value, taken: &Taken| taken.owner(v) == Some(owner.as_str());
    let mut errors = Vec::new();
    let mut want = BTreeSet::new();

    // ClusterIP.
    if svc.service_type() != ServiceType::ExternalName && !svc.is_headless() {
        let requested = svc.spec.cluster_ip.clone();
        let ip = if requested.is_empty() {
            let size = ranges.cluster_ip_count();
            let found = pick::pick(
                size,
                pick::cluster_ip_offset(size),
                |o| {
                    let ip = ranges.cluster_ip_at(o);
                    ranges.is_reserved(&ip) || taken.owner(&Value::ClusterIp(ip)).is_some()
                },
                rng,
            );
            match found {
                Some(o) => Some(ranges.cluster_ip_at(o)),
                None => return Err(AllocError::Exhausted(Exhausted::ClusterIps)),
            }
        } else {
            match requested.parse::<IpAddr>() {
                Ok(ip) => {
                    let v = Value::ClusterIp(ip);
                    let free =
                        !ranges.is_reserved(&ip) && (taken.owner(&v).is_none() || mine(&v, taken));
                    if free {
                        Some(ip)
                    } else {
                        let ips = if svc.spec.cluster_ips.is_empty() {
                            vec![requested.clone()]
                        } else {
                            svc.spec.cluster_ips.clone()
                        };
                        errors.push(allocation::cluster_ip_in_use(&ips, &requested));
                        None
                    }
                }
                // Validation refuses unparsable addresses before this.
                Err(_) => None,
            }
        };
        if let Some(ip) = ip {
            set_cluster_ips(svc, &[ip]);
            want.insert(Value::ClusterIp(ip));
        }
    } else if svc.is_headless() {
        set_headless_families(svc, family_of(&ranges.service_cidr));
    }

    // Node ports: one per port; a port number used with two protocols
    // shares one node port, as Kubernetes allocates it.
    if svc.needs_node_ports() {
        let mut by_port: HashMap<i32, i32> = HashMap::new();
        for p in svc.spec.ports.iter().filter(|p| p.node_port != 0) {
            by_port.entry(p.port).or_insert(p.node_port);
        }
        for i in 0..svc.spec.ports.len() {
            let (port, node_port) = (svc.spec.ports[i].port, svc.spec.ports[i].node_port);
            if node_port != 0 {
                let Ok(np) = u16::try_from(node_port) else {
                    continue; // out of range: refused by validation
                };
                let v = Value::NodePort(np);
                let taken_by_other = taken.owner(&v).is_some() && !mine(&v, taken);
                if taken_by_other || (want.contains(&v) && by_port.get(&port) != Some(&node_port)) {
                    errors.push(allocation::node_port_in_use(i, node_port));
                } else {
                    want.insert(v);
                }
                continue;
            }
            let chosen = match by_port.get(&port) {
                Some(&np) => Some(np),
                None => pick_port(ranges, taken, &want, rng).map(i32::from),
            };
            let Some(np) = chosen else {
                return Err(AllocError::Exhausted(Exhausted::NodePorts));
            };
            svc.spec.ports[i].node_port = np;
            by_port.insert(port, np);
            if let Ok(np) = u16::try_from(np) {
                want.insert(Value::NodePort(np));
            }
        }
    }

    // Health-check node port.
    if svc.needs_health_check() {
        let hc = svc.spec.health_check_node_port;
        if hc != 0 {
            if let Ok(p) = u16::try_from(hc) {
                let v = Value::NodePort(p);
                let taken_by_other = taken.owner(&v).is_some() && !mine(&v, taken);
                if taken_by_other || want.contains(&v) {
                    errors.push(allocation::health_check_node_port_in_use(hc));
                } else {
                    want.insert(v);
                }
            }
        } else {
            match pick_port(ranges, taken, &want, rng) {
                Some(p) => {
                    svc.spec.health_check_node_port = i32::from(p);
                    want.insert(Value::NodePort(p));
                }
                None => return Err(AllocError::Exhausted(Exhausted::NodePorts)),
            }
        }
    }

    if !errors.is_empty() {
        return Err(AllocError::Taken(errors));
    }
    let plan = Plan {
        claim: want.difference(&before).copied().collect(),
        release: before.difference(&want).copied().collect(),
    };
    for v in &plan.release {
        if mine(v, taken) {
            taken.remove(v);
        }
    }
    for v in &plan.claim {
        taken.insert(*v, owner.clone());
    }
    Ok(plan)
}

fn pick_port(
    ranges: &Ranges,
    taken: &Taken,
    want: &BTreeSet<Value>,
    rng: &mut impl Rng,
) -> Option<u16> {
    let size = ranges.node_port_count();
    let first = ranges.node_ports.first;
    let at = |o: u64| first.saturating_add(o as u16);
    pick::pick(
        size,
        pick::node_port_offset(size),
        |o| {
            let v = Value::NodePort(at(o));
            taken.owner(&v).is_some() || want.contains(&v)
        },
        rng,
    )
    .map(at)
}

fn family_of(net: &IpNet) -> IpFamily {
    match net {
        IpNet::V4(_) => IpFamily::IPv4,
        IpNet::V6(_) => IpFamily::IPv6,
    }
}
