//! `lab.json`: what a lab is made of, for other invocations to find.
//!
//! Writes go to a temporary file renamed over `lab.json`, so a reader never
//! sees half a file; read-modify-write cycles hold an exclusive `flock` on
//! `lab.lock`, so two invocations adding processes do not lose either.

use std::fs::{self, OpenOptions};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::{ClusterRecord, LabError};

/// The version of the `lab.json` format written by this code.
pub(crate) const STATE_VERSION: u32 = 1;

/// Everything a lab is made of.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabState {
    /// The format version (`STATE_VERSION`, 1).
    pub version: u32,
    /// The lab name.
    pub name: String,
    /// The underlay network.
    pub underlay_cidr: Ipv4Net,
    /// The namespace holding the underlay bridge.
    pub underlay_ns: String,
    /// The bridge's name inside `underlay_ns`.
    pub bridge: String,
    /// The control-plane host.
    pub control_plane: HostRecord,
    /// Node 1..N, in order: `nodes[K - 1]` is node K.
    pub nodes: Vec<HostRecord>,
    /// The outside host (`ext`): on the underlay, not a node; absent until
    /// a cluster adds it ([`Lab::add_external`](super::Lab::add_external)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<HostRecord>,
    /// Pod namespaces, in creation order.
    pub pods: Vec<PodRecord>,
    /// Processes started in the lab, in start order (some may have exited).
    pub processes: Vec<ProcessRecord>,
    /// The weft cluster running in the lab, if one was brought up
    /// ([`Cluster`](super::Cluster)); absent for a bare topology.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterRecord>,
}

/// A host: the control plane or a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    /// Its namespace.
    pub ns: String,
    /// Its underlay interface inside `ns` (`eth0`).
    pub interface: String,
    /// Its underlay address, with the underlay's prefix length.
    pub address: Ipv4Net,
    /// The veth end in the underlay namespace, a port of the bridge.
    pub bridge_port: String,
}

/// A pod namespace: no links but `lo`, waiting for the agent's TUN.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRecord {
    /// Its namespace.
    pub ns: String,
    /// The node it belongs to.
    pub node: usize,
    /// Its index among the node's pods, from 1.
    pub index: usize,
}

/// A process started in the lab.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    /// A unique label, also the log file's stem.
    pub label: String,
    /// The namespace it runs in.
    pub ns: String,
    /// The program.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its pid.
    pub pid: u32,
    /// Its start time in clock ticks since boot (`/proc/PID/stat` field 22):
    /// with the pid, it identifies the process even after the pid is reused.
    pub start_ticks: u64,
    /// Where its stdout and stderr go.
    pub log_path: PathBuf,
}

impl LabState {
    /// The control plane, then node 1..N.
    pub fn hosts(&self) -> impl Iterator<Item = &HostRecord> {
        std::iter::once(&self.control_plane).chain(&self.nodes)
    }

    /// Node `k` (from 1).
    pub fn node(&self, k: usize) -> Option<&HostRecord> {
        self.nodes.get(k.checked_sub(1)?)
    }

    /// The host record for namespace `ns`, if it is a host (the outside
    /// host included).
    pub fn host(&self, ns: &str) -> Option<&HostRecord> {
        self.hosts()
            .chain(self.external.as_ref())
            .find(|h| h.ns == ns)
    }

    /// Every namespace of the lab: underlay, hosts, the outside host, pods.
    pub fn namespaces(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.underlay_ns.as_str())
            .chain(self.hosts().map(|h| h.ns.as_str()))
            .chain(self.external.iter().map(|h| h.ns.as_str()))
            .chain(self.pods.iter().map(|p| p.ns.as_str()))
    }
}

/// `dir/lab.json`.
pub(crate) fn state_file(dir: &Path) -> PathBuf {
    dir.join("lab.json")
}

/// Reads `dir/lab.json`; `None` when it does not exist.
pub(crate) fn load(dir: &Path) -> Result<Option<LabState>, LabError> {
    let path = state_file(dir);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LabError::io(format!("reading {}", path.display()), e)),
    };
    let state: LabState = serde_json::from_str(&text).map_err(|e| LabError::State {
        path: path.clone(),
        reason: format!("not valid lab state: {e}"),
    })?;
    if state.version != STATE_VERSION {
        return Err(LabError::State {
            path,
            reason: format!(
                "format version {} (this weftctl reads {STATE_VERSION})",
                state.version
            ),
        });
    }
    Ok(Some(state))
}

/// Writes `dir/lab.json` atomically.
pub(crate) fn store(dir: &Path, state: &LabState) -> Result<(), LabError> {
    let path = state_file(dir);
    let mut text = serde_json::to_string_pretty(state).map_err(|e| LabError::State {
        path: path.clone(),
        reason: format!("cannot encode: {e}"),
    })?;
    text.push('\n');
    weft_files::write_atomic(&path, text.as_bytes(), 0o644)
        .map_err(|e| LabError::io(format!("writing {}", path.display()), e))
}

/// Holds `dir/lab.lock` exclusively while `f` changes the state read from
/// `dir/lab.json`, then writes it back. Returns the new state and `f`'s value.
pub(crate) fn update<T>(
    dir: &Path,
    name: &str,
    f: impl FnOnce(&mut LabState) -> Result<T, LabError>,
) -> Result<(LabState, T), LabError> {
    let lock_path = dir.join("lab.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| LabError::io(format!("opening {}", lock_path.display()), e))?;
    let _lock = Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| {
        LabError::io(format!("locking {}", lock_path.display()), errno.into())
    })?;
    let mut state = load(dir)?.ok_or_else(|| LabError::NotUp {
        name: name.to_string(),
        path: state_file(dir),
    })?;
    let value = f(&mut state)?;
    store(dir, &state)?;
    Ok((state, value))
}
