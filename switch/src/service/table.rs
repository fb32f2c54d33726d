//! The compiled service table: frontends (`ip:port/proto`) to the
//! endpoint sets Kubernetes' traffic policies select.
//!
//! Contract: [`ServiceTable::compile`] runs on the control path
//! (allocates, sorts); every lookup afterwards is a hash-map probe or a
//! slice index and never allocates or panics. Each compiled table has a
//! generation no other table of the process shares, so a conntrack entry
//! can tell whether the table changed since it last checked its endpoint.
//!
//! Endpoint sets, per Service port and address family, as kube-proxy's
//! `CategorizeEndpoints`: *cluster* = ready endpoints, or, when none is
//! ready anywhere, the serving-and-terminating ones; *local* = the same
//! among this node's endpoints (falling back independently); *usable* =
//! every ready or serving-and-terminating endpoint anywhere, which
//! existing UDP flows may keep using.

use std::collections::{HashMap, HashSet};
use std::hash::Hasher;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use siphasher::sip::SipHasher13;

use super::spec::{
    EndpointSpec, Protocol, ServicePort, ServiceSpec, SessionAffinity, TrafficPolicy,
};

/// Generations handed out so far (0 is never a table's).
static GENERATIONS: AtomicU64 = AtomicU64::new(0);

/// How a frontend is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrontendKind {
    ClusterIp,
    ExternalIp,
    LoadBalancer,
    NodePort,
}

/// Where a new connection to a frontend comes from, which decides the
/// traffic policy that applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A pod or a node of the cluster (the packet path): a cluster IP
    /// follows `internalTrafficPolicy`; external IPs, load-balancer IPs
    /// and node ports use every cluster endpoint (kube-proxy's
    /// short-circuit for in-cluster clients).
    Internal,
    /// A client outside the cluster, relayed by the agent from a node
    /// port or load-balancer IP: `externalTrafficPolicy` applies.
    External,
}

/// A frontend found in the table (valid for the table it came from).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frontend {
    group: u32,
    pub kind: FrontendKind,
}

/// The endpoints a new connection may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Candidates<'a> {
    /// Pick one of these (never empty).
    Endpoints(&'a [SocketAddr]),
    /// The policy is Local and this node has none, but others do:
    /// dropped, as kube-proxy does.
    NoLocalEndpoints,
    /// No usable endpoint anywhere: rejected (TCP RST, ICMP port
    /// unreachable).
    NoEndpoints,
}

/// A problem compile found in one Service; the rest of the table is
/// unaffected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Another Service (compiled first, by namespace/name order) already
    /// serves this frontend.
    FrontendTaken {
        service: String,
        frontend: String,
        owner: String,
    },
    /// SCTP ports are not translated (SCTP's CRC32c checksum cannot be
    /// updated incrementally).
    SctpUnsupported { service: String, port: u16 },
}

/// Why a table could not be compiled at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// More endpoints (summed over ports and families) than 32-bit
    /// indices address.
    #[error("too many endpoints in the service table")]
    TooLarge,
}

/// A Service's health-check node port, for the agent's
/// `externalTrafficPolicy: Local` health server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthCheck<'a> {
    pub node_port: u16,
    pub namespace: &'a str,
    pub name: &'a str,
    /// Distinct ready endpoints of the Service on this node.
    pub local_endpoints: usize,
}

impl HealthCheck<'_> {
    /// The status and body kube-proxy's health server answers with: 200
    /// when this node has a ready endpoint and the proxy is healthy,
    /// else 503; `{"service":{"namespace":..,"name":..},
    /// "localEndpoints":N,"serviceProxyHealthy":..}`.
    pub fn response(&self, proxy_healthy: bool) -> (u16, String) {
        let status = if self.local_endpoints > 0 && proxy_healthy {
            200
        } else {
            503
        };
        let body = format!(
            r#"{{"service":{{"namespace":"{}","name":"{}"}},"localEndpoints":{},"serviceProxyHealthy":{}}}"#,
            json_escape(self.namespace),
            json_escape(self.name),
            self.local_endpoints,
            proxy_healthy
        );
        (status, body)
    }
}

/// `s` as the inside of a JSON string.
fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

#[derive(Debug, Clone)]
struct ServiceInfo {
    namespace: String,
    name: String,
    health_check_node_port: Option<u16>,
    local_ready: usize,
}

/// One Service port in one address family.
#[derive(Debug, Clone)]
struct Group {
    service: u32,
    cluster: Range<u32>,
    local: Range<u32>,
    listed: Range<u32>,
    has_any: bool,
    internal_local: bool,
    external_local: bool,
    affinity: Option<(u64, Duration)>,
}

/// See the module docs.
#[derive(Debug, Clone, Default)]
pub struct ServiceTable {
    generation: u64,
    services: Vec<ServiceInfo>,
    groups: Vec<Group>,
    backends: Vec<SocketAddr>,
    frontends: HashMap<(u8, SocketAddr), Frontend>,
    node_ports: HashMap<(u8, u16, bool), Frontend>,
    vips: HashSet<IpAddr>,
    problems: Vec<Problem>,
}

fn range(start: usize, end: usize) -> Result<Range<u32>, CompileError> {
    let s = u32::try_from(start).map_err(|_| CompileError::TooLarge)?;
    let e = u32::try_from(end).map_err(|_| CompileError::TooLarge)?;
    Ok(s..e)
}

/// A stable identity of a Service port for affinity records, the same in
/// every compile of the process.
fn affinity_id(svc: &ServiceSpec, port: &ServicePort) -> u64 {
    let mut h = SipHasher13::new_with_keys(0, 0);
    for part in [&svc.namespace, &svc.name, &port.name] {
        h.write(part.as_bytes());
        h.write_u8(0);
    }
    h.write_u16(port.port);
    h.write_u8(port.protocol.number());
    h.finish()
}

/// The target port of `ep` for Service port `port`, matched by name and
/// protocol.
fn target_port(ep: &EndpointSpec, port: &ServicePort) -> Option<u16> {
    ep.ports
        .iter()
        .find(|p| p.name == port.name && p.protocol == port.protocol)
        .map(|p| p.port)
}

/// Sorted, deduplicated endpoints of `svc` on `port` in family `v6`
/// accepted by `keep`.
fn select(
    svc: &ServiceSpec,
    port: &ServicePort,
    v6: bool,
    keep: impl Fn(&EndpointSpec) -> bool,
) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = svc
        .endpoints
        .iter()
        .filter(|ep| ep.address.is_ipv6() == v6 && keep(ep))
        .filter_map(|ep| Some(SocketAddr::new(ep.address, target_port(ep, port)?)))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

fn usable(ep: &EndpointSpec) -> bool {
    ep.ready || (ep.serving && ep.terminating)
}

impl ServiceTable {
    /// Compiles the Services this node proxies (see
    /// [`ServiceSpec::is_proxied`]; the others are skipped). Conflicts
    /// and unsupported ports are recorded in [`Self::problems`], not
    /// fatal.
    pub fn compile(specs: &[ServiceSpec]) -> Result<Self, CompileError> {
        let mut order: Vec<&ServiceSpec> = specs.iter().filter(|s| s.is_proxied()).collect();
        order.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        let mut t = Self {
            generation: GENERATIONS.fetch_add(1, Ordering::Relaxed) + 1,
            ..Self::default()
        };
        for svc in order {
            t.add_service(svc)?;
        }
        Ok(t)
    }

    fn add_service(&mut self, svc: &ServiceSpec) -> Result<(), CompileError> {
        let service = u32::try_from(self.services.len()).map_err(|_| CompileError::TooLarge)?;
        let mut local_ready: Vec<IpAddr> = svc
            .endpoints
            .iter()
            .filter(|ep| ep.local && ep.ready)
            .map(|ep| ep.address)
            .collect();
        local_ready.sort_unstable();
        local_ready.dedup();
        self.services.push(ServiceInfo {
            namespace: svc.namespace.clone(),
            name: svc.name.clone(),
            health_check_node_port: svc.health_check_node_port,
            local_ready: local_ready.len(),
        });
        for port in &svc.ports {
            if port.protocol == Protocol::Sctp {
                self.problems.push(Problem::SctpUnsupported {
                    service: svc.full_name(),
                    port: port.port,
                });
                continue;
            }
            for v6 in [false, true] {
                let front_ips = svc
                    .cluster_ips
                    .iter()
                    .map(|ip| (*ip, FrontendKind::ClusterIp))
                    .chain(
                        svc.external_ips
                            .iter()
                            .map(|ip| (*ip, FrontendKind::ExternalIp)),
                    )
                    .chain(
                        svc.load_balancer_ips
                            .iter()
                            .map(|ip| (*ip, FrontendKind::LoadBalancer)),
                    )
                    .filter(|(ip, _)| ip.is_ipv6() == v6);
                let fronts: Vec<(IpAddr, FrontendKind)> = front_ips.collect();
                if fronts.is_empty() {
                    continue;
                }
                let group = self.add_group(service, svc, port, v6)?;
                let proto = port.protocol.number();
                for (ip, kind) in fronts {
                    let key = (proto, SocketAddr::new(ip, port.port));
                    self.claim(svc, key, Frontend { group, kind }, &format!("{}", key.1));
                    self.vips.insert(ip);
                }
                if let Some(np) = port.node_port {
                    let has_cluster_ip = svc.cluster_ips.iter().any(|ip| ip.is_ipv6() == v6);
                    let front = Frontend {
                        group,
                        kind: FrontendKind::NodePort,
                    };
                    if has_cluster_ip {
                        if let Some(owner) = self.node_ports.get(&(proto, np, v6)) {
                            let owner = self.service_name_of(*owner);
                            self.problems.push(Problem::FrontendTaken {
                                service: svc.full_name(),
                                frontend: format!("nodePort {np}"),
                                owner,
                            });
                        } else {
                            self.node_ports.insert((proto, np, v6), front);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn claim(&mut self, svc: &ServiceSpec, key: (u8, SocketAddr), f: Frontend, what: &str) {
        if let Some(owner) = self.frontends.get(&key) {
            let owner = self.service_name_of(*owner);
            self.problems.push(Problem::FrontendTaken {
                service: svc.full_name(),
                frontend: what.to_string(),
                owner,
            });
        } else {
            self.frontends.insert(key, f);
        }
    }

    fn service_name_of(&self, f: Frontend) -> String {
        self.service_name(f)
            .map(|(ns, n)| format!("{ns}/{n}"))
            .unwrap_or_default()
    }

    fn push(&mut self, addrs: Vec<SocketAddr>) -> Result<Range<u32>, CompileError> {
        let start = self.backends.len();
        self.backends.extend(addrs);
        range(start, self.backends.len())
    }

    fn add_group(
        &mut self,
        service: u32,
        svc: &ServiceSpec,
        port: &ServicePort,
        v6: bool,
    ) -> Result<u32, CompileError> {
        let mut cluster = select(svc, port, v6, |ep| ep.ready);
        if cluster.is_empty() {
            cluster = select(svc, port, v6, |ep| ep.serving && ep.terminating);
        }
        let mut local = select(svc, port, v6, |ep| ep.local && ep.ready);
        if local.is_empty() {
            local = select(svc, port, v6, |ep| ep.local && ep.serving && ep.terminating);
        }
        let listed = select(svc, port, v6, usable);
        let has_any = svc
            .endpoints
            .iter()
            .any(|ep| ep.address.is_ipv6() == v6 && usable(ep) && target_port(ep, port).is_some());
        let affinity = match svc.session_affinity {
            SessionAffinity::None => None,
            SessionAffinity::ClientIp { timeout } => Some((affinity_id(svc, port), timeout)),
        };
        let group = Group {
            service,
            cluster: self.push(cluster)?,
            local: self.push(local)?,
            listed: self.push(listed)?,
            has_any,
            internal_local: svc.internal_traffic_policy == TrafficPolicy::Local,
            external_local: svc.external_traffic_policy == TrafficPolicy::Local,
            affinity,
        };
        let id = u32::try_from(self.groups.len()).map_err(|_| CompileError::TooLarge)?;
        self.groups.push(group);
        Ok(id)
    }

    /// This table's generation (unique in the process, never 0).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The frontend a packet of protocol `proto` (IP protocol number) to
    /// `dst` addresses, if any.
    pub fn frontend(&self, proto: u8, dst: SocketAddr) -> Option<Frontend> {
        if self.frontends.is_empty() {
            return None;
        }
        self.frontends.get(&(proto, dst)).copied()
    }

    /// Whether `ip` is a cluster, external or load-balancer IP of some
    /// Service (whatever the port).
    pub fn is_vip(&self, ip: IpAddr) -> bool {
        !self.vips.is_empty() && self.vips.contains(&ip)
    }

    /// The NodePort frontend of `port`/`proto` for clients of family
    /// `v6`, for the agent's relays.
    pub fn node_port(&self, proto: u8, port: u16, v6: bool) -> Option<Frontend> {
        self.node_ports.get(&(proto, port, v6)).copied()
    }

    fn group(&self, f: Frontend) -> Option<&Group> {
        self.groups.get(usize::try_from(f.group).ok()?)
    }

    fn slice(&self, r: &Range<u32>) -> &[SocketAddr] {
        let (s, e) = (r.start as usize, r.end as usize);
        self.backends.get(s..e).unwrap_or_default()
    }

    /// The endpoints a new connection to `f` from `origin` may use.
    pub fn candidates(&self, f: Frontend, origin: Origin) -> Candidates<'_> {
        let Some(g) = self.group(f) else {
            return Candidates::NoEndpoints;
        };
        let local = match (f.kind, origin) {
            (FrontendKind::ClusterIp, _) => g.internal_local,
            (_, Origin::Internal) => false,
            (_, Origin::External) => g.external_local,
        };
        let set = self.slice(if local { &g.local } else { &g.cluster });
        match (set.is_empty(), g.has_any) {
            (false, _) => Candidates::Endpoints(set),
            (true, true) => Candidates::NoLocalEndpoints,
            (true, false) => Candidates::NoEndpoints,
        }
    }

    /// Whether existing flows of `f` may keep using `endpoint`: it is
    /// still ready, or serving while it terminates (graceful shutdown).
    pub fn still_listed(&self, f: Frontend, endpoint: SocketAddr) -> bool {
        self.group(f)
            .is_some_and(|g| self.slice(&g.listed).binary_search(&endpoint).is_ok())
    }

    /// The affinity identity and timeout of `f`'s Service port, if it has
    /// `sessionAffinity: ClientIP`.
    pub fn affinity(&self, f: Frontend) -> Option<(u64, Duration)> {
        self.group(f)?.affinity
    }

    /// `(namespace, name)` of `f`'s Service.
    pub fn service_name(&self, f: Frontend) -> Option<(&str, &str)> {
        let g = self.group(f)?;
        let s = self.services.get(usize::try_from(g.service).ok()?)?;
        Some((&s.namespace, &s.name))
    }

    /// Every Service's health-check node port.
    pub fn health_checks(&self) -> impl Iterator<Item = HealthCheck<'_>> {
        self.services.iter().filter_map(|s| {
            Some(HealthCheck {
                node_port: s.health_check_node_port?,
                namespace: &s.namespace,
                name: &s.name,
                local_endpoints: s.local_ready,
            })
        })
    }

    /// Services, frontends (node ports included) and endpoint slots, for
    /// status.
    pub fn sizes(&self) -> (usize, usize, usize) {
        (
            self.services.len(),
            self.frontends.len() + self.node_ports.len(),
            self.backends.len(),
        )
    }

    /// What compile skipped.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }
}
