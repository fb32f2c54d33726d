//! The cluster zone: every record the Kubernetes DNS specification (schema
//! 1.1.0) requires, built from plain descriptions of the Services.
//!
//! Contract: [`DnsZone::build`] takes a [`ZoneSpec`] (what the agent
//! compiled from the cluster's Services and EndpointSlices) and indexes it
//! by lower-case owner name, so a lookup is one hash probe whatever the
//! size of the cluster. Names are compared case-insensitively; owner names
//! are kept without the trailing dot. Building never fails: a Service
//! whose name would not make a valid DNS name is skipped and counted in
//! [`DnsZone::skipped`].

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use super::name::{reverse_name, valid_label};

/// The schema version answered at `dns-version.<zone>`.
pub const SCHEMA_VERSION: &str = "1.1.0";

/// The default TTL of cluster records, in seconds (CoreDNS's default).
pub const DEFAULT_TTL: u32 = 5;

/// What the zone is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneSpec {
    /// The cluster domain, e.g. `cluster.local` (no trailing dot needed).
    pub domain: String,
    /// TTL of every record, and the negative TTL (SOA minimum).
    pub ttl: u32,
    /// The Services.
    pub services: Vec<ServiceSpec>,
}

/// One Service as DNS sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    pub namespace: String,
    pub name: String,
    pub kind: ServiceKind,
    /// The Service's ports (for a ClusterIP Service; a headless Service's
    /// SRV records use the ports of its endpoints).
    pub ports: Vec<PortSpec>,
}

/// How a Service resolves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceKind {
    /// A ClusterIP (or NodePort/LoadBalancer) Service: its cluster IPs.
    ClusterIp(Vec<IpAddr>),
    /// A headless Service: its READY endpoints (the caller filters).
    Headless(Vec<EndpointSpec>),
    /// `type: ExternalName`: a CNAME to this name.
    ExternalName(String),
}

/// A ready endpoint of a headless Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSpec {
    pub addresses: Vec<IpAddr>,
    /// The endpoint's hostname; without one, the address in dashed form
    /// (`10-244-1-5`) stands in, as CoreDNS does.
    pub hostname: Option<String>,
    /// The endpoint's ports (from its EndpointSlice).
    pub ports: Vec<PortSpec>,
}

/// A port: SRV records exist for named ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    /// The port's name; unnamed ports get no SRV record.
    pub name: Option<String>,
    /// `tcp`, `udp` or `sctp` (lower case, as in the SRV owner name).
    pub protocol: String,
    pub port: u16,
}

/// One record's data, owner elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Data {
    Addr(IpAddr),
    /// priority, weight, port, target (lower case, no trailing dot).
    Srv(u16, u16, u16, String),
    Cname(String),
    Txt(String),
}

/// The indexed zone. See the module docs.
#[derive(Debug, Clone, Default)]
pub struct DnsZone {
    pub(crate) domain: String,
    pub(crate) ttl: u32,
    /// Owner (lower case, relative names made absolute, no trailing dot)
    /// -> its records.
    pub(crate) records: HashMap<String, Vec<Data>>,
    /// Every name that exists in the zone, empty non-terminals included
    /// (they answer NODATA, not NXDOMAIN).
    pub(crate) names: HashSet<String>,
    /// Reverse names (`d.c.b.a.in-addr.arpa`) -> PTR targets.
    pub(crate) reverse: HashMap<String, Vec<String>>,
    /// Whether the zone holds a first complete copy of the objects; until
    /// then names in it answer SERVFAIL.
    pub(crate) ready: bool,
    skipped: usize,
}

impl DnsZone {
    /// A zone for `domain` that answers SERVFAIL until built from objects.
    pub fn not_ready(domain: &str) -> Self {
        Self {
            domain: normalize(domain),
            ttl: DEFAULT_TTL,
            ..Self::default()
        }
    }

    /// Indexes `spec`. See the module docs.
    pub fn build(spec: &ZoneSpec) -> Self {
        let domain = normalize(&spec.domain);
        let mut zone = Self {
            domain: domain.clone(),
            ttl: spec.ttl,
            ready: true,
            ..Self::default()
        };
        zone.add(
            &format!("dns-version.{domain}"),
            Data::Txt(SCHEMA_VERSION.into()),
        );
        zone.exists(&format!("svc.{domain}"));
        zone.exists(&format!("pod.{domain}"));
        for svc in &spec.services {
            if !valid_label(&svc.name) || !valid_label(&svc.namespace) {
                zone.skipped += 1;
                continue;
            }
            zone.add_service(svc);
        }
        zone
    }

    /// The cluster domain (lower case, no trailing dot).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Whether the zone was built from a complete copy of the objects.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// Services skipped because their names are not DNS labels.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// Owner names with records (for status and tests).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the zone has no records at all (not even `dns-version`).
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    fn add_service(&mut self, svc: &ServiceSpec) {
        let ns = svc.namespace.to_ascii_lowercase();
        let base = format!("{}.{ns}.svc.{}", svc.name.to_ascii_lowercase(), self.domain);
        self.exists(&format!("{ns}.svc.{}", self.domain));
        self.exists(&format!("{ns}.pod.{}", self.domain));
        match &svc.kind {
            ServiceKind::ClusterIp(ips) => {
                self.exists(&base);
                for ip in ips {
                    self.add(&base, Data::Addr(*ip));
                    self.add_ptr(*ip, &base);
                }
                for port in named(&svc.ports) {
                    self.add_srv(&base, port, &base);
                }
            }
            ServiceKind::Headless(endpoints) => {
                // With no ready endpoint the name does not exist (NXDOMAIN,
                // as the specification says).
                for ep in endpoints {
                    let host = match &ep.hostname {
                        Some(h) if valid_label(h) => h.to_ascii_lowercase(),
                        _ => match ep.addresses.first() {
                            Some(ip) => dashed(*ip),
                            None => continue,
                        },
                    };
                    let host_name = format!("{host}.{base}");
                    for ip in &ep.addresses {
                        self.add(&base, Data::Addr(*ip));
                        self.add(&host_name, Data::Addr(*ip));
                        self.add_ptr(*ip, &host_name);
                    }
                    for port in named(&ep.ports) {
                        self.add_srv(&base, port, &host_name);
                    }
                }
            }
            ServiceKind::ExternalName(target) => {
                let target = target.trim_end_matches('.').to_ascii_lowercase();
                self.add(&base, Data::Cname(target));
            }
        }
    }

    fn add_srv(&mut self, base: &str, port: (&str, &PortSpec), target: &str) {
        let (name, p) = port;
        let owner = format!(
            "_{}._{}.{base}",
            name.to_ascii_lowercase(),
            p.protocol.to_ascii_lowercase()
        );
        // The specification leaves priority and weight open: every record
        // gets priority 0 and weight 100, so RFC 2782 clients pick
        // uniformly among them.
        self.add(&owner, Data::Srv(0, 100, p.port, target.to_owned()));
    }

    fn add_ptr(&mut self, ip: IpAddr, target: &str) {
        let targets = self.reverse.entry(reverse_name(ip)).or_default();
        if !targets.iter().any(|t| t == target) {
            targets.push(target.to_owned());
        }
    }

    fn add(&mut self, owner: &str, data: Data) {
        self.exists(owner);
        let list = self.records.entry(owner.to_owned()).or_default();
        if !list.contains(&data) {
            list.push(data);
        }
    }

    /// Marks `name` and every ancestor up to the zone apex as existing.
    fn exists(&mut self, name: &str) {
        let mut rest = name;
        while rest.len() > self.domain.len() && !self.names.contains(rest) {
            self.names.insert(rest.to_owned());
            match rest.split_once('.') {
                Some((_, parent)) => rest = parent,
                None => break,
            }
        }
    }
}

/// The named ports of a list.
fn named(ports: &[PortSpec]) -> impl Iterator<Item = (&str, &PortSpec)> {
    ports
        .iter()
        .filter_map(|p| p.name.as_deref().filter(|n| !n.is_empty()).map(|n| (n, p)))
}

/// `10.244.1.5` -> `10-244-1-5`; `fd00::5` -> `fd00--5` (CoreDNS's forms).
pub(crate) fn dashed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => v6.to_string().replace(':', "-"),
    }
}

/// Lower case, without a trailing dot.
pub(crate) fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}
