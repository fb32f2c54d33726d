//! The connectivity check of a weft cluster, one code path for the local
//! lab (`weftctl lab up`, `weftctl lab check`) and for real hosts and the
//! Vagrant lab (`weftctl check inventory|run|cluster`).
//!
//! 1. An [`Inventory`] says what there is: the nodes (name, overlay address,
//!    the namespace their own echo requests leave from) and the pods (name,
//!    node, address, network namespace). The lab makes it from `lab.json`;
//!    a real node makes its own part from its agent (`weftctl check
//!    inventory`), and the parts of several nodes [merge](Inventory::merge).
//! 2. [`plan`] turns it into every [`Check`]: from every pod to every other
//!    pod and to every node's overlay address, from every node to every pod
//!    and every other node.
//! 3. [`run`] pings them all (3 echo requests each, 3 s bound, 64 at once)
//!    from inside the source's namespace; on a real host only the checks of
//!    its own node can run there ([`plan_for_node`]), and the results of the
//!    nodes are put back together with [`Connectivity::assemble`].
//! 4. Printing the ✓/✗ matrix and the one-line summary is the CLI's
//!    (weftctl's `render::check`).

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::{ping_stats_in, LabError, PingStats};

/// Echo requests per check.
pub const COUNT: u32 = 3;
/// The bound of one check.
pub const TIMEOUT: Duration = Duration::from_secs(3);
/// Checks running at once.
const PARALLEL: usize = 64;

/// A node of an [`Inventory`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryNode {
    /// The node name.
    pub name: String,
    /// Its overlay address (on `weft0`): the first address of its pod CIDR.
    pub address: IpAddr,
    /// The network namespace its own echo requests leave from; `None`: the
    /// namespace the check runs in (a real node's host namespace).
    #[serde(default)]
    pub netns: Option<PathBuf>,
}

/// A pod of an [`Inventory`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryPod {
    /// The pod's name (its id on the agent).
    pub name: String,
    /// Its node's name.
    pub node: String,
    /// Its address.
    pub address: IpAddr,
    /// Its network namespace (`/run/netns/NAME`, ...).
    pub netns: PathBuf,
}

/// What a connectivity check covers: nodes and pods, in display order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// The nodes.
    pub nodes: Vec<InventoryNode>,
    /// The pods.
    pub pods: Vec<InventoryPod>,
}

impl Inventory {
    /// Several nodes' inventories as one: nodes and pods in the order given.
    /// Refuses a node or pod name that appears twice.
    pub fn merge(parts: impl IntoIterator<Item = Inventory>) -> Result<Inventory, LabError> {
        let mut all = Inventory::default();
        for part in parts {
            all.nodes.extend(part.nodes);
            all.pods.extend(part.pods);
        }
        all.validate()?;
        Ok(all)
    }

    /// Names are unique, and every pod's node is a node of the inventory.
    pub fn validate(&self) -> Result<(), LabError> {
        let mut names = BTreeSet::new();
        for name in self
            .nodes
            .iter()
            .map(|n| &n.name)
            .chain(self.pods.iter().map(|p| &p.name))
        {
            if !names.insert(name.as_str()) {
                return Err(LabError::InvalidArgument(format!(
                    "the inventory names {name:?} twice (node and pod names must be unique)"
                )));
            }
        }
        for pod in &self.pods {
            if !self.nodes.iter().any(|n| n.name == pod.node) {
                return Err(LabError::InvalidArgument(format!(
                    "pod {} is on node {:?}, which the inventory does not have",
                    pod.name, pod.node
                )));
            }
        }
        Ok(())
    }

    /// The node named `name`.
    pub fn node(&self, name: &str) -> Option<&InventoryNode> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Rows and columns of the matrix: the pods, then the nodes.
    pub fn names(&self) -> Vec<&str> {
        self.pods
            .iter()
            .map(|p| p.name.as_str())
            .chain(self.nodes.iter().map(|n| n.name.as_str()))
            .collect()
    }
}

/// What a check goes from and to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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

impl CheckKind {
    /// "pod to pod", ...
    pub fn describe(self) -> &'static str {
        match self {
            CheckKind::PodToPod => "pod to pod",
            CheckKind::PodToNode => "pod to node",
            CheckKind::NodeToPod => "node to pod",
            CheckKind::NodeToNode => "node to node",
        }
    }
}

/// One check: echo requests from `from` to `to`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// The source: a pod (`n1-p1`) or a node (`n1`).
    pub from: String,
    /// The node the source is on (itself, for a node).
    pub from_node: String,
    /// The namespace the requests leave from (`None`: the one the check
    /// runs in).
    pub from_netns: Option<PathBuf>,
    /// The destination: a pod or a node.
    pub to: String,
    /// The destination address.
    pub to_ip: IpAddr,
    /// Which kind of path.
    pub kind: CheckKind,
    /// What came back.
    #[serde(with = "stats_json")]
    pub stats: PingStats,
}

impl Check {
    /// Whether any reply came back.
    pub fn ok(&self) -> bool {
        self.stats.received > 0
    }
}

/// The result of a connectivity check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connectivity {
    /// What was checked.
    pub inventory: Inventory,
    /// Every check, pods' first, in a stable order.
    pub checks: Vec<Check>,
    /// How long the whole check took.
    #[serde(with = "millis")]
    pub elapsed: Duration,
    /// Checks of the plan that did not run (a node could not be reached):
    /// "n2: why". They count as failed.
    #[serde(default)]
    pub not_run: Vec<String>,
}

impl Connectivity {
    /// Whether every check ran and got a reply.
    pub fn all_ok(&self) -> bool {
        self.not_run.is_empty() && self.checks.iter().all(Check::ok)
    }

    /// The checks that got no reply.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.ok())
    }

    /// The check from `from` to `to`, if there is one.
    pub fn get(&self, from: &str, to: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.from == from && c.to == to)
    }

    /// The whole cluster's result from the results of its nodes (each ran
    /// its own [`plan_for_node`]): the full plan of `inventory`, each check
    /// with the stats a part reported for it. A check no part reported
    /// keeps empty stats (failed); `not_run` says which nodes gave nothing.
    pub fn assemble(
        inventory: Inventory,
        parts: &[Connectivity],
        not_run: Vec<String>,
        elapsed: Duration,
    ) -> Result<Connectivity, LabError> {
        let mut reported: HashMap<(&str, &str), &Check> = HashMap::new();
        for part in parts {
            for c in &part.checks {
                reported.insert((c.from.as_str(), c.to.as_str()), c);
            }
        }
        let mut checks = plan(&inventory)?;
        for c in &mut checks {
            if let Some(r) = reported.get(&(c.from.as_str(), c.to.as_str())) {
                c.stats = r.stats.clone();
            }
        }
        Ok(Connectivity {
            inventory,
            checks,
            elapsed,
            not_run,
        })
    }
}

/// Every check of `inventory`, before it runs: from every pod to every other
/// pod and every node, then from every node to every pod and every other
/// node.
pub fn plan(inventory: &Inventory) -> Result<Vec<Check>, LabError> {
    inventory.validate()?;
    let check =
        |from: &str, from_node: &str, from_netns: Option<&Path>, to: &str, to_ip, kind| Check {
            from: from.to_string(),
            from_node: from_node.to_string(),
            from_netns: from_netns.map(Path::to_path_buf),
            to: to.to_string(),
            to_ip,
            kind,
            stats: PingStats::default(),
        };
    let mut plan = Vec::new();
    for from in &inventory.pods {
        let netns = Some(from.netns.as_path());
        for to in inventory.pods.iter().filter(|p| p.name != from.name) {
            plan.push(check(
                &from.name,
                &from.node,
                netns,
                &to.name,
                to.address,
                CheckKind::PodToPod,
            ));
        }
        for to in &inventory.nodes {
            plan.push(check(
                &from.name,
                &from.node,
                netns,
                &to.name,
                to.address,
                CheckKind::PodToNode,
            ));
        }
    }
    for from in &inventory.nodes {
        let netns = from.netns.as_deref();
        for to in &inventory.pods {
            plan.push(check(
                &from.name,
                &from.name,
                netns,
                &to.name,
                to.address,
                CheckKind::NodeToPod,
            ));
        }
        for to in inventory.nodes.iter().filter(|n| n.name != from.name) {
            plan.push(check(
                &from.name,
                &from.name,
                netns,
                &to.name,
                to.address,
                CheckKind::NodeToNode,
            ));
        }
    }
    Ok(plan)
}

/// The checks of [`plan`] whose source is on node `node` (the node itself
/// and its pods): what can run on that node.
pub fn plan_for_node(inventory: &Inventory, node: &str) -> Result<Vec<Check>, LabError> {
    if inventory.node(node).is_none() {
        let names: Vec<&str> = inventory.nodes.iter().map(|n| n.name.as_str()).collect();
        return Err(LabError::InvalidArgument(format!(
            "the inventory has no node {node:?} (it has {})",
            names.join(", ")
        )));
    }
    Ok(plan(inventory)?
        .into_iter()
        .filter(|c| c.from_node == node)
        .collect())
}

/// Echo requests per check and the bound of each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    /// Echo requests per check (1..=10000).
    pub count: u32,
    /// The bound of one check.
    pub timeout: Duration,
}

impl Default for Probe {
    fn default() -> Self {
        Probe {
            count: COUNT,
            timeout: TIMEOUT,
        }
    }
}

/// Runs `checks` (from [`plan`] or [`plan_for_node`]) from here, 64 at once,
/// each from its source's namespace.
pub fn run(
    inventory: &Inventory,
    checks: Vec<Check>,
    probe: Probe,
) -> Result<Connectivity, LabError> {
    let start = Instant::now();
    tracing::debug!(checks = checks.len(), "checking connectivity");
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<PingStats, LabError>>>> =
        Mutex::new((0..checks.len()).map(|_| None).collect());
    thread::scope(|scope| {
        for _ in 0..PARALLEL.min(checks.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(c) = checks.get(i) else { return };
                let result =
                    ping_stats_in(c.from_netns.as_deref(), c.to_ip, probe.count, probe.timeout);
                if let Ok(mut r) = results.lock() {
                    r[i] = Some(result);
                }
            });
        }
    });
    let results = results
        .into_inner()
        .map_err(|_| LabError::InvalidArgument("a ping thread panicked".to_string()))?;
    // A check that could not even send (its source's namespace is gone or
    // unusable) fails with the others running on; why is said once per
    // source in `not_run`.
    let mut done = Vec::with_capacity(checks.len());
    let mut not_run: Vec<String> = Vec::new();
    let mut failed_sources: Vec<String> = Vec::new();
    for (mut c, result) in checks.into_iter().zip(results) {
        match result {
            Some(Ok(stats)) => c.stats = stats,
            Some(Err(e)) => {
                if !failed_sources.contains(&c.from) {
                    not_run.push(format!("{}: {e}", c.from));
                    failed_sources.push(c.from.clone());
                }
            }
            None => not_run.push(format!("{} -> {}: did not run", c.from, c.to)),
        }
        done.push(c);
    }
    Ok(Connectivity {
        inventory: inventory.clone(),
        checks: done,
        elapsed: start.elapsed(),
        not_run,
    })
}

/// [`PingStats`] as JSON: `{"sent": 3, "received": 3, "rtts_ns": [...]}`.
mod stats_json {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::PingStats;

    #[derive(Serialize, Deserialize)]
    struct Json {
        sent: u32,
        received: u32,
        rtts_ns: Vec<u64>,
    }

    pub(super) fn serialize<S: Serializer>(stats: &PingStats, s: S) -> Result<S::Ok, S::Error> {
        Json {
            sent: stats.sent,
            received: stats.received,
            rtts_ns: stats
                .rtts
                .iter()
                .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
                .collect(),
        }
        .serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PingStats, D::Error> {
        let j = Json::deserialize(d)?;
        Ok(PingStats {
            sent: j.sent,
            received: j.received,
            rtts: j
                .rtts_ns
                .into_iter()
                .map(std::time::Duration::from_nanos)
                .collect(),
        })
    }
}

/// A [`Duration`] as whole milliseconds.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inventory() -> Inventory {
        let node = |n: &str, a: &str| InventoryNode {
            name: n.into(),
            address: a.parse().unwrap(),
            netns: None,
        };
        let pod = |n: &str, node: &str, a: &str| InventoryPod {
            name: n.into(),
            node: node.into(),
            address: a.parse().unwrap(),
            netns: PathBuf::from(format!("/run/netns/{n}")),
        };
        Inventory {
            nodes: vec![node("n1", "10.244.1.1"), node("n2", "10.244.0.1")],
            pods: vec![
                pod("n1-p1", "n1", "10.244.1.2"),
                pod("n1-p2", "n1", "10.244.1.3"),
                pod("n2-p1", "n2", "10.244.0.2"),
            ],
        }
    }

    #[test]
    fn the_plan_covers_every_pair_once() {
        let inv = inventory();
        let p = plan(&inv).unwrap();
        let count = |kind| p.iter().filter(|c| c.kind == kind).count();
        assert_eq!(count(CheckKind::PodToPod), 3 * 2);
        assert_eq!(count(CheckKind::PodToNode), 3 * 2);
        assert_eq!(count(CheckKind::NodeToPod), 2 * 3);
        assert_eq!(count(CheckKind::NodeToNode), 2);
        assert_eq!(p[0].from, "n1-p1");
        assert_eq!(p[0].to, "n1-p2");
        assert_eq!(
            p[0].from_netns.as_deref(),
            Some(Path::new("/run/netns/n1-p1"))
        );
        let pairs: BTreeSet<(&str, &str)> =
            p.iter().map(|c| (c.from.as_str(), c.to.as_str())).collect();
        assert_eq!(pairs.len(), p.len());
        assert!(p.iter().all(|c| c.from != c.to));
        // A node's own checks leave from the namespace the check runs in.
        let n2 = p.iter().find(|c| c.from == "n2").unwrap();
        assert_eq!(n2.from_netns, None);
        assert_eq!(n2.from_node, "n2");
    }

    /// A source whose namespace cannot be entered (here a plain file, as a
    /// namespace whose mount is gone leaves behind) fails its checks and
    /// says why once; it does not abort the others.
    #[test]
    fn an_unusable_source_namespace_fails_its_checks_only() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join("stale");
        std::fs::write(&stale, b"").unwrap();
        let mut inv = inventory();
        inv.pods[0].netns = stale.clone();
        let checks: Vec<Check> = plan(&inv)
            .unwrap()
            .into_iter()
            .filter(|c| c.from == "n1-p1")
            .collect();
        let n = checks.len();
        let probe = Probe {
            count: 1,
            timeout: Duration::from_millis(100),
        };
        let result = run(&inv, checks, probe).unwrap();
        assert_eq!(result.checks.len(), n);
        assert!(result.checks.iter().all(|c| !c.ok()));
        assert!(!result.all_ok());
        assert_eq!(result.not_run.len(), 1, "{:?}", result.not_run);
        assert!(
            result.not_run[0].starts_with("n1-p1: ")
                && result.not_run[0].contains(&stale.display().to_string()),
            "{:?}",
            result.not_run
        );
    }

    #[test]
    fn each_node_runs_its_own_sources_and_together_they_are_the_plan() {
        let inv = inventory();
        let n1 = plan_for_node(&inv, "n1").unwrap();
        let n2 = plan_for_node(&inv, "n2").unwrap();
        assert!(n1.iter().all(|c| c.from_node == "n1"));
        // n1-p1, n1-p2 (4 checks each) and n1 (3 pods + n2).
        assert_eq!(n1.len(), 4 + 4 + 4);
        assert_eq!(n2.len(), 4 + 4);
        assert_eq!(n1.len() + n2.len(), plan(&inv).unwrap().len());
        let err = plan_for_node(&inv, "n3").unwrap_err().to_string();
        assert_eq!(err, "the inventory has no node \"n3\" (it has n1, n2)");
    }

    #[test]
    fn merged_inventories_must_not_repeat_names() {
        let inv = inventory();
        let (a, b) = (
            Inventory {
                nodes: vec![inv.nodes[0].clone()],
                pods: inv.pods[..2].to_vec(),
            },
            Inventory {
                nodes: vec![inv.nodes[1].clone()],
                pods: inv.pods[2..].to_vec(),
            },
        );
        assert_eq!(Inventory::merge([a.clone(), b.clone()]).unwrap(), inv);
        let err = Inventory::merge([a.clone(), a]).unwrap_err().to_string();
        assert!(err.contains("names \"n1\" twice"), "{err}");
        let lonely = Inventory {
            nodes: vec![],
            pods: b.pods,
        };
        let err = lonely.validate().unwrap_err().to_string();
        assert!(err.contains("pod n2-p1 is on node \"n2\""), "{err}");
    }

    #[test]
    fn parts_assemble_into_the_whole_and_missing_rows_fail() {
        let inv = inventory();
        let reply = |mut c: Check| {
            c.stats = PingStats {
                sent: 3,
                received: 3,
                rtts: vec![Duration::from_micros(500); 3],
            };
            c
        };
        let part = |node| Connectivity {
            inventory: inv.clone(),
            checks: plan_for_node(&inv, node)
                .unwrap()
                .into_iter()
                .map(reply)
                .collect(),
            elapsed: Duration::from_millis(10),
            not_run: vec![],
        };
        let whole = Connectivity::assemble(
            inv.clone(),
            &[part("n1"), part("n2")],
            vec![],
            Duration::ZERO,
        )
        .unwrap();
        assert!(whole.all_ok());
        assert_eq!(whole.checks.len(), plan(&inv).unwrap().len());

        let half = Connectivity::assemble(
            inv.clone(),
            &[part("n1")],
            vec!["n2: unreachable".into()],
            Duration::ZERO,
        )
        .unwrap();
        assert!(!half.all_ok());
        assert_eq!(
            half.failures().count(),
            plan_for_node(&inv, "n2").unwrap().len()
        );
        assert!(half.get("n2", "n1").is_some_and(|c| !c.ok()));
    }

    #[test]
    fn results_survive_json() {
        let inv = inventory();
        let mut checks = plan(&inv).unwrap();
        checks[0].stats = PingStats {
            sent: 3,
            received: 2,
            rtts: vec![Duration::from_nanos(1_234_567), Duration::from_micros(80)],
        };
        let c = Connectivity {
            inventory: inv,
            checks,
            elapsed: Duration::from_millis(420),
            not_run: vec![],
        };
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains(r#""kind":"pod_to_pod""#), "{json}");
        assert!(json.contains(r#""rtts_ns":[1234567,80000]"#), "{json}");
        assert!(json.contains(r#""elapsed":420"#), "{json}");
        let back: Connectivity = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
        // An inventory written by hand needs no netns for its nodes.
        let inv: Inventory =
            serde_json::from_str(r#"{"nodes":[{"name":"a","address":"10.244.0.1"}],"pods":[]}"#)
                .unwrap();
        assert_eq!(inv.nodes[0].netns, None);
    }
}
