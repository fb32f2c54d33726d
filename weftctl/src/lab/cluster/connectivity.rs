//! The connectivity check of a lab cluster: ICMP echo from every pod to every
//! other pod and to every node's overlay address, and from every node to
//! every pod and every other node's overlay address, all in parallel, with
//! round-trip times.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use super::record::ClusterRecord;
use crate::lab::{ping_stats, LabError, LabName, PingStats};

/// Echo requests per check.
const COUNT: u32 = 3;
/// The bound of one check.
const TIMEOUT: Duration = Duration::from_secs(3);
/// Checks running at once.
const PARALLEL: usize = 64;

/// What a check goes from and to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CheckKind {
    /// From a pod to another pod.
    PodToPod,
    /// From a pod to a node's overlay address.
    PodToNode,
    /// From a node (its namespace, through `weft0`) to a pod.
    NodeToPod,
    /// From a node to another node's overlay address.
    NodeToNode,
}

/// One check: echo requests from `from` to `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// The source: a pod (`n1-p1`) or a node (`n1`).
    pub from: String,
    /// The namespace the requests leave from.
    pub from_ns: String,
    /// The destination: a pod or a node.
    pub to: String,
    /// The destination address.
    pub to_ip: IpAddr,
    /// Which kind of path.
    pub kind: CheckKind,
    /// What came back.
    pub stats: PingStats,
}

impl Check {
    /// Whether any reply came back.
    pub fn ok(&self) -> bool {
        self.stats.received > 0
    }
}

/// The result of [`Cluster::check_connectivity`](super::Cluster::check_connectivity).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connectivity {
    /// Every check, pods' first, in a stable order.
    pub checks: Vec<Check>,
    /// How long the whole check took.
    pub elapsed: Duration,
}

impl Connectivity {
    /// Whether every check got a reply.
    pub fn all_ok(&self) -> bool {
        self.checks.iter().all(Check::ok)
    }

    /// The checks that got no reply.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.ok())
    }

    /// The check from `from` to `to`, if there is one.
    pub fn get(&self, from: &str, to: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.from == from && c.to == to)
    }
}

/// Runs every check of the cluster `record` of lab `name` (none without pods).
pub(super) fn check(record: &ClusterRecord, name: &LabName) -> Result<Connectivity, LabError> {
    let start = Instant::now();
    let plan = plan(record)?;
    tracing::debug!(lab = %name, checks = plan.len(), "checking connectivity");
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<PingStats, LabError>>>> =
        Mutex::new((0..plan.len()).map(|_| None).collect());
    thread::scope(|scope| {
        for _ in 0..PARALLEL.min(plan.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(c) = plan.get(i) else { return };
                let result = ping_stats(&c.from_ns, c.to_ip, COUNT, TIMEOUT);
                if let Ok(mut r) = results.lock() {
                    r[i] = Some(result);
                }
            });
        }
    });
    let results = results
        .into_inner()
        .map_err(|_| LabError::InvalidArgument("a ping thread panicked".to_string()))?;
    let mut checks = Vec::with_capacity(plan.len());
    for (mut c, result) in plan.into_iter().zip(results) {
        c.stats = match result {
            Some(r) => r?,
            None => {
                return Err(LabError::InvalidArgument(format!(
                    "the check {} -> {} did not run",
                    c.from, c.to
                )))
            }
        };
        checks.push(c);
    }
    Ok(Connectivity {
        checks,
        elapsed: start.elapsed(),
    })
}

/// Every check, before it runs.
fn plan(record: &ClusterRecord) -> Result<Vec<Check>, LabError> {
    let check = |from: &str, from_ns: &str, to: &str, to_ip: IpAddr, kind| Check {
        from: from.to_string(),
        from_ns: from_ns.to_string(),
        to: to.to_string(),
        to_ip,
        kind,
        stats: PingStats::default(),
    };
    let mut nodes = Vec::new();
    for n in &record.nodes {
        let ip = n.overlay.ok_or_else(|| {
            LabError::InvalidArgument(format!(
                "node {} has no overlay address recorded (has it joined?)",
                n.name
            ))
        })?;
        nodes.push((n, ip));
    }
    let mut plan = Vec::new();
    for from in &record.pods {
        for to in record.pods.iter().filter(|p| p.name != from.name) {
            plan.push(check(
                &from.name,
                &from.ns,
                &to.name,
                to.ip,
                CheckKind::PodToPod,
            ));
        }
        for (node, ip) in &nodes {
            plan.push(check(
                &from.name,
                &from.ns,
                &node.name,
                *ip,
                CheckKind::PodToNode,
            ));
        }
    }
    for (node, _) in &nodes {
        for to in &record.pods {
            plan.push(check(
                &node.name,
                &node.ns,
                &to.name,
                to.ip,
                CheckKind::NodeToPod,
            ));
        }
        for (to, ip) in nodes.iter().filter(|(n, _)| n.name != node.name) {
            plan.push(check(
                &node.name,
                &node.ns,
                &to.name,
                *ip,
                CheckKind::NodeToNode,
            ));
        }
    }
    Ok(plan)
}
