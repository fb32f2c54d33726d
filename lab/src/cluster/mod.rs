//! A whole weft cluster on one machine, on top of the lab topology.
//!
//! [`Cluster::up`] builds the topology ([`Lab::up`]), starts
//! `weft-control-plane` in the control-plane namespace, adds the outside
//! host `ext` (on the underlay, not a node), creates a join token over the
//! Admin API, starts one `weft-agent` per node namespace, adds
//! `pods_per_node` pods to each node through its agent's local API
//! (registered as `default/nK-pJ`), and waits until every agent has every
//! other node as a peer. Pods with names, labels and ports come and go on a
//! running cluster with [`Cluster::add_named_pod`] and
//! [`Cluster::remove_pod`].
//! [`Cluster::check_connectivity`] then pings pod to pod, pod to node, node
//! to pod and node to node.
//!
//! # Layout (lab `x`, state root `/run/weft-lab`)
//!
//! | what | where |
//! |---|---|
//! | control plane | namespace `weft-x-cp`, `192.0.2.1:7443`, state `/run/weft-lab/x/cp/`, log `logs/cp.log` |
//! | node `nK` | namespace `weft-x-nK`, underlay `192.0.2.(K+1)`, WireGuard `:51820`, agent state `/run/weft-lab/x/nK/state/`, API `/run/weft-lab/x/nK/agent.sock`, log `logs/nK.log` |
//! | pod `nK-pJ` | namespace `weft-x-nK-pJ` (`/run/netns/weft-x-nK-pJ`), `eth0` with an address of node K's pod CIDR; in the cluster `default/nK-pJ`, or the `NS/NAME` it was added as |
//! | outside host `ext` | namespace `weft-x-ext`, the underlay's last address (`192.0.2.254`), not a node |
//!
//! Everything is recorded in `lab.json` ([`ClusterRecord`] in
//! [`LabState::cluster`](super::LabState::cluster)), so another invocation
//! finds it with [`Cluster::open`]; [`teardown`](super::teardown) removes it
//! all like any lab.
//!
//! # Contract
//!
//! - Every wait is bounded ([`ClusterSpec::wait`]); errors name the step and
//!   carry the tail of the log of the process concerned.
//! - `up` refuses a lab that is already up ([`LabError::AlreadyUp`], leaving
//!   it alone); if a later step fails it removes everything it made.
//! - The control plane listens on the underlay only, so Admin calls run from
//!   inside its namespace ([`Cluster::admin`]); agents' API sockets are plain
//!   files and work from anywhere.
//! - Nothing here prints; `up` reports its steps to a callback.

mod admin;
mod agent;
mod connectivity;
mod ha;
mod liveness;
mod pods;
mod record;
mod spec;
mod up;

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

pub use nix::sys::signal::Signal;
use tonic::transport::Channel;
use weft_agent_api::StatusResult;
use weft_proto::v1::admin_client::AdminClient;

pub use crate::check::{Check, CheckKind, Connectivity};
pub use admin::in_netns;
pub use agent::LAB_METRICS;
pub use ha::ETCD_LABEL;
pub use liveness::LiveProcess;
pub use record::{
    Binaries, ClusterPod, ClusterRecord, ControlPlaneRecord, EtcdRecord, NodeRecord, ReplicaRecord,
    CONTROL_PLANE_LABEL,
};
pub use spec::{
    build_binaries_once, cargo_build_binaries, profile_dir, workspace_manifest, ClusterSpec,
    AGENT_PROGRAM, CONTROL_PLANE_PORT, CONTROL_PLANE_PROGRAM, DEFAULT_WAIT, MAX_REPLICAS,
    WIREGUARD_PORT,
};
pub use up::PodIdentity;

use super::{teardown, Lab, LabError, LabName, LabProcess, TeardownReport};

/// How long a process gets to exit after a terminating signal.
const EXIT_WAIT: Duration = Duration::from_secs(15);
/// The bound of one Admin call.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

/// A lab cluster that is up. Dropping it leaves the cluster running (other
/// invocations use it); [`Cluster::down`] or [`ClusterGuard`] remove it.
///
/// Lab `x` has the control plane in namespace `weft-x-cp` on
/// `192.0.2.1:7443`, node `nK` in `weft-x-nK` on `192.0.2.(K+1)` with its
/// agent's state and API socket under `/run/weft-lab/x/nK/`, and pod `nK-pJ`
/// in `weft-x-nK-pJ`; everything is recorded in `lab.json` (docs/lab.md).
#[derive(Debug)]
pub struct Cluster {
    lab: Lab,
    record: ClusterRecord,
    wait: Duration,
    log_filter: String,
    /// The processes this handle started, by label, so they are reaped.
    children: HashMap<String, LabProcess>,
}

impl Cluster {
    /// Brings up the cluster `spec` describes: the topology, the control
    /// plane, a join token, the agents, the pods; waits until every node has
    /// every other one as a peer. Refuses a lab that is up; removes what it
    /// made if a step fails.
    pub fn up(spec: ClusterSpec) -> Result<Cluster, LabError> {
        up::up(spec, &mut |_| {})
    }

    /// Like [`Cluster::up`], calling `progress` with a short description of
    /// each step as it starts ("starting the control plane", ...).
    pub fn up_with_progress(
        spec: ClusterSpec,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Cluster, LabError> {
        up::up(spec, progress)
    }

    /// The cluster of lab `name`, as recorded under `state_root` by an
    /// earlier `up` (maybe by another process).
    pub fn open(name: &LabName, state_root: &Path) -> Result<Cluster, LabError> {
        let lab = Lab::open(name, state_root)?;
        let record = lab.state().cluster.clone().ok_or_else(|| LabError::State {
            path: lab.state_dir().join("lab.json"),
            reason: format!("lab '{name}' has no weft cluster (it is a bare topology)"),
        })?;
        Ok(Cluster {
            lab,
            record,
            wait: DEFAULT_WAIT,
            log_filter: "info".to_string(),
            children: HashMap::new(),
        })
    }

    /// The lab name.
    pub fn name(&self) -> &LabName {
        self.lab.name()
    }

    /// The topology underneath.
    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    /// Everything recorded about the cluster.
    pub fn record(&self) -> &ClusterRecord {
        &self.record
    }

    /// The control plane.
    pub fn control_plane(&self) -> &ControlPlaneRecord {
        &self.record.control_plane
    }

    /// The admin credential (`admin.conf`). Its server address is on the
    /// underlay: use it from inside a lab namespace (or [`Cluster::admin`]).
    pub fn admin_conf(&self) -> &Path {
        &self.record.control_plane.admin_conf
    }

    /// The nodes, `n1` first.
    pub fn nodes(&self) -> &[NodeRecord] {
        &self.record.nodes
    }

    /// The node named `name` (`nK`).
    pub fn node(&self, name: &str) -> Option<&NodeRecord> {
        self.record.node(name)
    }

    /// The pods, in creation order.
    pub fn pods(&self) -> &[ClusterPod] {
        &self.record.pods
    }

    /// The pod named `name` (`nK-pJ`).
    pub fn pod(&self, name: &str) -> Option<&ClusterPod> {
        self.record.pod(name)
    }

    /// The pid of the process labelled `label` (`cp`, `nK`) if it runs.
    pub fn running_pid(&self, label: &str) -> Option<u32> {
        self.lab
            .state()
            .processes
            .iter()
            .find(|p| p.label == label)
            .filter(|p| super::process_is_running(p))
            .map(|p| p.pid)
    }

    /// What runs for `label` (`cp` or a node, `nK`) now: the recorded
    /// process, one started by hand in its place (same namespace and state
    /// dir), or nothing.
    pub fn live_process(&self, label: &str) -> LiveProcess {
        let recorded = self.lab.state().processes.iter().find(|p| p.label == label);
        let cp = &self.record.control_plane;
        let (ns, state_dir) = if label == CONTROL_PLANE_LABEL {
            (&cp.ns, &cp.state_dir)
        } else if let Some(n) = self.record.node(label) {
            (&n.ns, &n.state_dir)
        } else {
            return LiveProcess::Stopped;
        };
        liveness::find(recorded, ns, state_dir)
    }

    /// Restarts `label` (`cp` or a node, `nK`): stops what runs for it (the
    /// recorded process or one started by hand; SIGTERM, then SIGKILL),
    /// then starts it with the command line `lab.json` recorded and waits
    /// until it is ready (an agent keeps its state dir, so it does not join
    /// again). Returns what runs afterwards.
    pub fn restart(&mut self, label: &str) -> Result<LiveProcess, LabError> {
        if label != CONTROL_PLANE_LABEL {
            self.node_record(label)?;
        }
        match self.live_process(label) {
            LiveProcess::Running { .. } => self
                .stop_process(label, Signal::SIGTERM)
                .map_err(|e| e.in_step(format!("stopping {label}")))?,
            LiveProcess::RestartedByHand { pid, start_ticks } => {
                let ns = match self.record.node(label) {
                    Some(n) => n.ns.clone(),
                    None => self.record.control_plane.ns.clone(),
                };
                let mut by_hand = LabProcess::from_record(super::ProcessRecord {
                    label: label.to_string(),
                    ns,
                    program: String::new(),
                    args: Vec::new(),
                    pid,
                    start_ticks,
                    log_path: self
                        .lab
                        .state_dir()
                        .join("logs")
                        .join(format!("{label}.log")),
                });
                by_hand
                    .kill()
                    .map_err(|e| e.in_step(format!("stopping {label} (pid {pid})")))?;
            }
            LiveProcess::Stopped => {}
        }
        if label == CONTROL_PLANE_LABEL {
            self.start_control_plane()?;
        } else {
            self.start_agent(label)?;
        }
        Ok(self.live_process(label))
    }

    /// The status of node `node`'s agent, over its API socket.
    pub fn agent_status(&self, node: &str) -> Result<StatusResult, LabError> {
        let n = self.node_record(node)?;
        agent::status(&n.api_socket, ADMIN_TIMEOUT).map_err(|reason| LabError::Api {
            what: format!("status of agent {node}"),
            reason,
        })
    }

    /// Runs `call` with an Admin client connected with `admin.conf`, from
    /// inside the control plane's namespace, within a few seconds.
    pub fn admin<T, F, Fut>(&self, call: F) -> Result<T, LabError>
    where
        T: Send + 'static,
        F: FnOnce(AdminClient<Channel>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let cp = &self.record.control_plane;
        admin::admin_call(&cp.ns, &cp.admin_conf, ADMIN_TIMEOUT, "Admin call", call)
    }

    /// Sends `signal` to node `node`'s agent; for a terminating signal
    /// (TERM, INT, QUIT, KILL) waits until it has exited. Succeeds if it was
    /// not running.
    pub fn stop_agent(&mut self, node: &str, signal: Signal) -> Result<(), LabError> {
        self.node_record(node)?;
        self.stop_process(node, signal)
            .map_err(|e| e.in_step(format!("stopping agent {node}")))
    }

    /// Starts node `node`'s agent again with its state dir (no token: it has
    /// joined before) and waits until it answers and shows the node joined.
    /// The control plane need not be up.
    pub fn start_agent(&mut self, node: &str) -> Result<(), LabError> {
        let n = self.node_record(node)?.clone();
        self.spawn_agent(&n, None)
            .and_then(|mut process| {
                let result = agent::wait_joined(&mut process, &n, self.wait);
                self.children.insert(n.name.clone(), process);
                result
            })
            .map(|_| ())
            .map_err(|e| e.in_step(format!("starting agent {node}")))
    }

    /// Sends `signal` to the control plane; for a terminating signal waits
    /// until it has exited. Succeeds if it was not running.
    pub fn stop_control_plane(&mut self, signal: Signal) -> Result<(), LabError> {
        self.stop_process(CONTROL_PLANE_LABEL, signal)
            .map_err(|e| e.in_step("stopping the control plane"))
    }

    /// Starts the control plane again (same state dir and address) and waits
    /// until an Admin call works.
    pub fn start_control_plane(&mut self) -> Result<(), LabError> {
        self.spawn_control_plane()
            .map_err(|e| e.in_step("starting the control plane"))
    }

    /// Adds a node: a new node namespace (`n<N+1>`), its agent joined with a
    /// fresh one-use token, `pods_per_node` pods; waits until every node has
    /// every other one as a peer. Returns the new node.
    pub fn add_node(&mut self) -> Result<NodeRecord, LabError> {
        let host = self
            .lab
            .add_node()
            .map_err(|e| e.in_step("adding a node"))?;
        let k = self.lab.nodes().len();
        let name = format!("n{k}");
        let step = |what: &str| format!("adding node {name}: {what}");
        let node = up::node_record(self.lab.state_dir(), &name, k, &host);
        self.update(|c| {
            c.nodes.push(node.clone());
            Ok(())
        })?;
        let cp = self.record.control_plane.clone();
        let token = admin::create_token(&cp.ns, &cp.admin_conf, ADMIN_TIMEOUT, 1, &name)
            .map_err(|e| e.in_step(step("creating a join token")))?;
        let mut process = self
            .spawn_agent(&node, Some(&token))
            .map_err(|e| e.in_step(step("starting its agent")))?;
        let joined = agent::wait_joined(&mut process, &node, self.wait);
        self.children.insert(name.clone(), process);
        let status = joined.map_err(|e| e.in_step(step("waiting for its agent to join")))?;
        self.record_joined(&name, &status)?;
        for _ in 0..self.record.pods_per_node {
            self.add_pod(&name)?;
        }
        agent::wait_mesh(&self.record.nodes, self.wait).map_err(|e| {
            e.in_step(step(
                "waiting until every node has every other one as a peer",
            ))
        })?;
        self.node_record(&name).cloned()
    }

    /// Adds a pod to node `node`: a new lab pod namespace (`nK-pJ`) and an
    /// address on `eth0` through the node's agent.
    pub fn add_pod(&mut self, node: &str) -> Result<ClusterPod, LabError> {
        let n = self.node_record(node)?.clone();
        let ns = self
            .lab
            .add_pod(n.index)
            .map_err(|e| e.in_step(format!("adding a pod namespace to {node}")))?;
        let pod = up::add_pod_to_agent(&n, &ns, self.wait)?;
        self.update(|c| {
            c.pods.push(pod.clone());
            Ok(())
        })?;
        Ok(pod)
    }

    /// Pings pod to pod, pod to node, node to pod and node to node (see
    /// [`Connectivity`]).
    pub fn check_connectivity(&self) -> Result<Connectivity, LabError> {
        connectivity::check(&self.record, self.lab.name())
    }

    /// What [`Cluster::check_connectivity`] checks: the nodes (their
    /// namespaces and overlay addresses) and the pods.
    pub fn inventory(&self) -> Result<crate::check::Inventory, LabError> {
        connectivity::inventory(&self.record)
    }

    /// Waits until every node has every other node as a peer.
    pub fn wait_for_mesh(&self, timeout: Duration) -> Result<(), LabError> {
        agent::wait_mesh(&self.record.nodes, timeout)
    }

    /// Tears the whole lab down: processes, namespaces, state.
    pub fn down(self) -> Result<TeardownReport, LabError> {
        self.lab.down()
    }

    /// The overlay address of node `node`, once it has joined.
    pub fn node_overlay(&self, node: &str) -> Option<IpAddr> {
        self.node(node).and_then(|n| n.overlay)
    }

    fn node_record(&self, node: &str) -> Result<&NodeRecord, LabError> {
        self.record.node(node).ok_or_else(|| {
            let names: Vec<&str> = self.record.nodes.iter().map(|n| n.name.as_str()).collect();
            LabError::InvalidArgument(format!(
                "lab '{}' has no node {node:?} (it has {})",
                self.lab.name(),
                names.join(", ")
            ))
        })
    }

    /// Changes the cluster record in `lab.json` under its lock.
    fn update<T>(
        &mut self,
        f: impl FnOnce(&mut ClusterRecord) -> Result<T, LabError>,
    ) -> Result<T, LabError> {
        let value = self.lab.update_state(|state| {
            let record = state.cluster.get_or_insert_with(|| self.record.clone());
            f(record)
        })?;
        if let Some(record) = &self.lab.state().cluster {
            self.record = record.clone();
        }
        Ok(value)
    }

    /// Records a joined node's overlay address and pod CIDR.
    fn record_joined(&mut self, node: &str, status: &StatusResult) -> Result<(), LabError> {
        let overlay = status.node.node_address.parse().ok();
        let pod_cidr = status.node.pod_cidr.parse().ok();
        self.update(|c| {
            if let Some(n) = c.nodes.iter_mut().find(|n| n.name == node) {
                n.overlay = overlay;
                n.pod_cidr = pod_cidr;
            }
            Ok(())
        })
    }

    fn spawn_agent(
        &mut self,
        node: &NodeRecord,
        token: Option<&admin::JoinToken>,
    ) -> Result<LabProcess, LabError> {
        let cp = &self.record.control_plane;
        // A restart runs the command line recorded when the agent was first
        // started; a join builds it.
        let recorded = match token {
            None => self
                .lab
                .state()
                .processes
                .iter()
                .find(|p| p.label == node.name)
                .cloned(),
            Some(_) => None,
        };
        let (program, args) = match recorded {
            Some(r) => (r.program, r.args),
            None => (
                self.record.binaries.agent.display().to_string(),
                agent::agent_args(
                    cp,
                    node,
                    token.map(|t| t.ca_hash.as_str()),
                    self.lab.dns_upstream(),
                ),
            ),
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // Plain text logs: they go to files.
        let mut env = vec![("WEFT_LOG", self.log_filter.as_str()), ("NO_COLOR", "1")];
        if let Some(t) = token {
            env.push(("WEFT_TOKEN", t.token.as_str()));
        }
        self.lab
            .spawn_in(&node.ns, &node.name, &program, &args, &env)
    }

    /// Starts the control plane and waits until it answers an Admin call.
    fn spawn_control_plane(&mut self) -> Result<(), LabError> {
        let cp = self.record.control_plane.clone();
        self.spawn_replica(
            CONTROL_PLANE_LABEL,
            cp.address,
            &cp.state_dir,
            &cp.admin_conf,
        )
    }

    /// Starts a control-plane replica (`cp`, or `cpK` of an HA lab) on
    /// `address` and waits until it answers an Admin call.
    fn spawn_replica(
        &mut self,
        label: &str,
        address: std::net::SocketAddr,
        state_dir: &Path,
        admin_conf: &Path,
    ) -> Result<(), LabError> {
        let cp = self.record.control_plane.clone();
        let address = address.to_string();
        let state_dir = state_dir.display().to_string();
        let store = ha::store_args(&cp);
        let mut args = vec![
            "--listen",
            &address,
            "--advertise-address",
            &address,
            "--state-dir",
            &state_dir,
        ];
        args.extend(store.iter().map(String::as_str));
        args.extend(cp.extra_args.iter().map(String::as_str));
        let program = self.record.binaries.control_plane.display().to_string();
        let env = [("WEFT_LOG", self.log_filter.as_str()), ("NO_COLOR", "1")];
        let mut process = self.lab.spawn_in(&cp.ns, label, &program, &args, &env)?;
        let ready = process.wait_ready(self.wait, || {
            admin_conf.exists()
                && admin::cluster_version(&cp.ns, admin_conf, Duration::from_secs(1)).is_ok()
        });
        self.children.insert(label.to_string(), process);
        ready
    }

    /// Signals the process labelled `label` and, for a terminating signal,
    /// waits for it to exit (SIGKILL after [`EXIT_WAIT`], as an error).
    fn stop_process(&mut self, label: &str, signal: Signal) -> Result<(), LabError> {
        let mut process = match self.children.remove(label) {
            Some(p) => p,
            None => match self.lab.state().processes.iter().find(|p| p.label == label) {
                Some(record) => LabProcess::from_record(record.clone()),
                None => return Ok(()),
            },
        };
        let terminating = matches!(
            signal,
            Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT | Signal::SIGKILL
        );
        let sent = process.signal(signal)?;
        if !sent || !terminating {
            self.children.insert(label.to_string(), process);
            return Ok(());
        }
        if process.wait_exit(EXIT_WAIT) {
            return Ok(());
        }
        let log_tail = process.log_tail(20);
        let _ = process.kill();
        Err(LabError::WaitTimeout {
            timeout: EXIT_WAIT,
            last: format!(
                "process '{label}' (pid {}) did not exit after {signal}; killed it",
                process.pid()
            ),
            log: process.log_path().to_path_buf(),
            log_tail,
        })
    }
}

/// Owns a cluster that is up and tears its lab down on drop, also when the
/// test holding it panics. Derefs to [`Cluster`].
///
/// Prefer [`ClusterGuard::down`] at the end of a test: it returns the
/// teardown's result, where a drop can only log a failure.
#[derive(Debug)]
pub struct ClusterGuard {
    cluster: Cluster,
    done: bool,
}

impl ClusterGuard {
    /// Brings up `spec` (see [`Cluster::up`]) under a guard.
    pub fn up(spec: ClusterSpec) -> Result<Self, LabError> {
        Ok(ClusterGuard {
            cluster: Cluster::up(spec)?,
            done: false,
        })
    }

    /// Tears the lab down now and reports what was removed.
    pub fn down(mut self) -> Result<TeardownReport, LabError> {
        self.done = true;
        teardown(self.cluster.name(), self.cluster.lab.state_root())
    }
}

impl std::ops::Deref for ClusterGuard {
    type Target = Cluster;
    fn deref(&self) -> &Cluster {
        &self.cluster
    }
}

impl std::ops::DerefMut for ClusterGuard {
    fn deref_mut(&mut self) -> &mut Cluster {
        &mut self.cluster
    }
}

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let name = self.cluster.name();
        if let Err(e) = teardown(name, self.cluster.lab.state_root()) {
            tracing::error!(lab = %name, error = %e, "cluster guard could not tear the lab down");
        }
    }
}
