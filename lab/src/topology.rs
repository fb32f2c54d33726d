//! Building the lab's namespaces and links, and the handle on a running lab.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::cmd::{ip, list_namespaces};
use super::process::{process_is_running, spawn};
use super::state::{self, STATE_VERSION};
use super::{
    teardown, HostRecord, LabError, LabName, LabProcess, LabSpec, LabState, NamespaceRole,
    PodRecord, TeardownReport,
};

/// The bridge inside the underlay namespace.
const BRIDGE: &str = "br0";
/// Every host's underlay interface.
const HOST_INTERFACE: &str = "eth0";

/// A lab that is up: its name, state directory and the state last read or
/// written. Several handles (in several processes) may share one lab; each
/// change re-reads `lab.json` under a lock.
#[derive(Debug)]
pub struct Lab {
    name: LabName,
    state_root: PathBuf,
    dir: PathBuf,
    state: LabState,
}

impl Lab {
    /// Builds the lab described by `spec` (see the [module docs](super)):
    /// refuses with [`LabError::AlreadyUp`] if its state directory or any of
    /// its namespaces exists; removes what it made if a step fails.
    pub fn up(spec: &LabSpec) -> Result<Lab, LabError> {
        spec.validate()?;
        let name = &spec.name;
        let dir = spec.state_root.join(name.as_str());
        let already = |found: String| LabError::AlreadyUp {
            name: name.to_string(),
            found,
        };
        if dir.exists() {
            return Err(already(format!("state directory {}", dir.display())));
        }
        let existing: Vec<String> = list_namespaces()?
            .into_iter()
            .filter(|ns| name.owns(ns))
            .collect();
        if !existing.is_empty() {
            return Err(already(format!("namespace {}", existing.join(", "))));
        }
        fs::create_dir_all(&spec.state_root)
            .map_err(|e| LabError::io(format!("creating {}", spec.state_root.display()), e))?;
        // Creating the directory claims the name, also against a racing `up`.
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                return Err(already(format!("state directory {}", dir.display())));
            }
            Err(e) => return Err(LabError::io(format!("creating {}", dir.display()), e)),
        }

        let built = plan(spec).and_then(|state| {
            let logs = dir.join("logs");
            fs::create_dir(&logs)
                .map_err(|e| LabError::io(format!("creating {}", logs.display()), e))?;
            // Recorded before anything exists, so a crash leaves a trace.
            state::store(&dir, &state)?;
            build(&state)?;
            Ok(state)
        });
        match built {
            Ok(state) => {
                tracing::info!(lab = %name, nodes = spec.nodes, underlay = %spec.underlay, "lab is up");
                Ok(Lab {
                    name: name.clone(),
                    state_root: spec.state_root.clone(),
                    dir,
                    state,
                })
            }
            Err(cause) => match teardown(name, &spec.state_root) {
                Ok(_) => Err(cause),
                Err(cleanup) => Err(LabError::UpFailed {
                    name: name.to_string(),
                    cause: Box::new(cause),
                    cleanup: Box::new(cleanup),
                }),
            },
        }
    }

    /// The lab `name` as recorded under `state_root`, e.g. by an earlier
    /// `weftctl lab up`. [`LabError::NotUp`] if there is no state file.
    pub fn open(name: &LabName, state_root: &Path) -> Result<Lab, LabError> {
        let dir = state_root.join(name.as_str());
        let state = state::load(&dir)?.ok_or_else(|| LabError::NotUp {
            name: name.to_string(),
            path: state::state_file(&dir),
        })?;
        check_names(name, &dir, &state)?;
        Ok(Lab {
            name: name.clone(),
            state_root: state_root.to_path_buf(),
            dir,
            state,
        })
    }

    /// The lab name.
    pub fn name(&self) -> &LabName {
        &self.name
    }

    /// The directory holding `lab.json` and `logs/`.
    pub fn state_dir(&self) -> &Path {
        &self.dir
    }

    /// The state as last read or written by this handle.
    pub fn state(&self) -> &LabState {
        &self.state
    }

    /// Re-reads `lab.json` (another invocation may have changed it).
    pub fn reload(&mut self) -> Result<&LabState, LabError> {
        *self = Lab::open(&self.name, &self.state_root)?;
        Ok(&self.state)
    }

    /// The control-plane host.
    pub fn control_plane(&self) -> &HostRecord {
        &self.state.control_plane
    }

    /// Node `k` (from 1), if the lab has it.
    pub fn node(&self, k: usize) -> Option<&HostRecord> {
        self.state.node(k)
    }

    /// Node 1..N in order.
    pub fn nodes(&self) -> &[HostRecord] {
        &self.state.nodes
    }

    /// Adds a pod namespace `weft-<name>-n<node>-p<J>` (J: the next free
    /// index of that node) with only `lo`, up, for the agent to put a TUN into.
    pub fn add_pod(&mut self, node: usize) -> Result<PodRecord, LabError> {
        let name = self.name.clone();
        let (state, pod) = state::update(&self.dir, name.as_str(), |state| {
            if state.node(node).is_none() {
                return Err(LabError::InvalidArgument(format!(
                    "lab '{name}' has no node {node} (it has nodes 1..={})",
                    state.nodes.len()
                )));
            }
            let index = state
                .pods
                .iter()
                .filter(|p| p.node == node)
                .map(|p| p.index)
                .max()
                .unwrap_or(0)
                + 1;
            let ns = name.namespace(NamespaceRole::Pod { node, pod: index });
            add_namespace(&ns)?;
            let pod = PodRecord { ns, node, index };
            state.pods.push(pod.clone());
            Ok(pod)
        })?;
        self.state = state;
        Ok(pod)
    }

    /// Removes the pod namespace `ns` (and whatever is in it) from the lab.
    /// Succeeds if the lab has no such pod.
    pub fn remove_pod(&mut self, ns: &str) -> Result<(), LabError> {
        let name = self.name.clone();
        self.update_state(|state| {
            if !state.pods.iter().any(|p| p.ns == ns) {
                return Ok(());
            }
            if name.role_of(ns).is_none() {
                return Err(LabError::InvalidArgument(format!(
                    "{ns} is not a namespace of lab '{name}'"
                )));
            }
            crate::resolv::remove(ns);
            if Path::new("/run/netns").join(ns).exists() {
                ip(&["netns", "delete", ns])?;
            }
            state.pods.retain(|p| p.ns != ns);
            Ok(())
        })
    }

    /// The resolver lab agents forward names outside the cluster to: the
    /// outside host `ext`'s address (the underlay's last host address,
    /// `192.0.2.254` on the default `/24`), whether or not `ext` is up, so
    /// no lab query ever leaves the machine.
    pub fn dns_upstream(&self) -> std::net::Ipv4Addr {
        let state = self.state();
        if let Some(ext) = &state.external {
            return ext.address.addr();
        }
        let net = state.underlay_cidr;
        u32::from(net.broadcast())
            .checked_sub(1)
            .map(std::net::Ipv4Addr::from)
            .unwrap_or(net.addr())
    }

    /// Adds the outside host `ext` (`weft-<name>-ext`): a host on the
    /// underlay bridge that is not a node, at the underlay's last host
    /// address (`192.0.2.254` on the default `/24`), for clients from
    /// outside the cluster. Returns it; a lab that has one keeps it.
    pub fn add_external(&mut self) -> Result<HostRecord, LabError> {
        let name = self.name.clone();
        self.update_state(|state| {
            if let Some(ext) = &state.external {
                return Ok(ext.clone());
            }
            let net = state.underlay_cidr;
            let last = u32::from(net.broadcast()).checked_sub(1).map(std::net::Ipv4Addr::from);
            let addr = last.filter(|a| net.prefix_len() <= 30 && net.contains(a)).ok_or_else(|| {
                LabError::InvalidArgument(format!(
                    "underlay {} has no host address for the outside host",
                    state.underlay_cidr
                ))
            })?;
            let taken = state.hosts().any(|h| h.address.addr() == addr);
            if taken {
                return Err(LabError::InvalidArgument(format!(
                    "underlay {} has no room for the outside host: its last address {addr} is a node's",
                    state.underlay_cidr
                )));
            }
            let host = HostRecord {
                ns: name.namespace(NamespaceRole::External),
                interface: HOST_INTERFACE.to_string(),
                address: ipnet::Ipv4Net::new(addr, state.underlay_cidr.prefix_len())
                    .map_err(|e| LabError::InvalidArgument(e.to_string()))?,
                bridge_port: "v-ext".to_string(),
            };
            if let Err(e) = add_host(&state.underlay_ns, &host) {
                if Path::new("/run/netns").join(&host.ns).exists() {
                    let _ = ip(&["netns", "delete", &host.ns]);
                }
                return Err(e);
            }
            state.external = Some(host.clone());
            Ok(host)
        })
    }

    /// Adds node host N+1 (`weft-<name>-n<N+1>`, the next underlay address,
    /// a veth port on the bridge) to a lab that has N nodes. Removes what it
    /// made if a step fails.
    pub fn add_node(&mut self) -> Result<HostRecord, LabError> {
        let name = self.name.clone();
        self.update_state(|state| {
            let k = state.nodes.len() + 1;
            let addr = state
                .underlay_cidr
                .hosts()
                .nth(k)
                .filter(|a| {
                    state
                        .external
                        .as_ref()
                        .is_none_or(|e| e.address.addr() != *a)
                })
                .ok_or_else(|| {
                    LabError::InvalidArgument(format!(
                        "underlay {} has no room for node {k}",
                        state.underlay_cidr
                    ))
                })?;
            let host = HostRecord {
                ns: name.namespace(NamespaceRole::Node(k)),
                interface: HOST_INTERFACE.to_string(),
                address: ipnet::Ipv4Net::new(addr, state.underlay_cidr.prefix_len())
                    .map_err(|e| LabError::InvalidArgument(e.to_string()))?,
                bridge_port: format!("v-n{k}"),
            };
            if let Err(e) = add_host(&state.underlay_ns, &host) {
                // The veth goes with the namespace.
                if Path::new("/run/netns").join(&host.ns).exists() {
                    let _ = ip(&["netns", "delete", &host.ns]);
                }
                return Err(e);
            }
            state.nodes.push(host.clone());
            Ok(host)
        })
    }

    /// Changes `lab.json` under its lock with `f` and keeps the new state.
    pub(crate) fn update_state<T>(
        &mut self,
        f: impl FnOnce(&mut LabState) -> Result<T, LabError>,
    ) -> Result<T, LabError> {
        let (state, value) = state::update(&self.dir, self.name.as_str(), f)?;
        self.state = state;
        Ok(value)
    }

    /// Starts `program args...` inside the lab namespace `ns` with `env`
    /// added to this process's environment, stdout and stderr appended to
    /// `<state dir>/logs/<label>.log`, and records it in `lab.json`.
    ///
    /// `label` (`[A-Za-z0-9._-]`, at most 64 bytes, not starting with '.')
    /// must not belong to a recorded process that still runs.
    pub fn spawn_in(
        &mut self,
        ns: &str,
        label: &str,
        program: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<LabProcess, LabError> {
        check_label(label)?;
        let log_path = self.dir.join("logs").join(format!("{label}.log"));
        let mut spawned: Option<LabProcess> = None;
        let result = state::update(&self.dir, self.name.as_str(), |state| {
            if !state.namespaces().any(|n| n == ns) {
                return Err(LabError::UnknownNamespace {
                    ns: ns.to_string(),
                    lab: state.name.clone(),
                });
            }
            if let Some(old) = state.processes.iter().find(|p| p.label == label) {
                if process_is_running(old) {
                    return Err(LabError::InvalidArgument(format!(
                        "a process labelled '{label}' is already running (pid {})",
                        old.pid
                    )));
                }
            }
            let process = spawn(ns, label, program, args, env, log_path)?;
            state.processes.retain(|p| p.label != label);
            state.processes.push(process.record().clone());
            spawned = Some(process);
            Ok(())
        });
        match (result, spawned) {
            (Ok((state, ())), Some(process)) => {
                self.state = state;
                tracing::info!(lab = %self.name, ns, label, pid = process.pid(), "started lab process");
                Ok(process)
            }
            (Err(e), Some(mut unrecorded)) => {
                let _ = unrecorded.kill();
                Err(e)
            }
            (Err(e), None) => Err(e),
            (Ok(_), None) => Err(LabError::InvalidArgument(format!(
                "process '{label}' was recorded but not started"
            ))),
        }
    }

    /// Tears the lab down (see [`teardown`](super::teardown)).
    pub fn down(self) -> Result<TeardownReport, LabError> {
        teardown(&self.name, &self.state_root)
    }

    pub(crate) fn state_root(&self) -> &Path {
        &self.state_root
    }
}

/// The state of the lab `spec` describes, before anything is built.
fn plan(spec: &LabSpec) -> Result<LabState, LabError> {
    let name = &spec.name;
    let host = |role: NamespaceRole, i: usize, port: String| -> Result<HostRecord, LabError> {
        Ok(HostRecord {
            ns: name.namespace(role),
            interface: HOST_INTERFACE.to_string(),
            address: spec.host_address(i)?,
            bridge_port: port,
        })
    };
    Ok(LabState {
        version: STATE_VERSION,
        name: name.to_string(),
        underlay_cidr: spec.underlay,
        underlay_ns: name.namespace(NamespaceRole::Underlay),
        bridge: BRIDGE.to_string(),
        control_plane: host(NamespaceRole::ControlPlane, 0, "v-cp".to_string())?,
        nodes: (1..=spec.nodes)
            .map(|k| host(NamespaceRole::Node(k), k, format!("v-n{k}")))
            .collect::<Result<_, _>>()?,
        external: None,
        pods: Vec::new(),
        processes: Vec::new(),
        cluster: None,
    })
}

/// Makes the namespaces, the bridge and one veth pair per host.
fn build(state: &LabState) -> Result<(), LabError> {
    let ul = state.underlay_ns.as_str();
    add_namespace(ul)?;
    ip(&[
        "-n",
        ul,
        "link",
        "add",
        BRIDGE,
        "type",
        "bridge",
        "stp_state",
        "0",
        "forward_delay",
        "0",
    ])?;
    ip(&["-n", ul, "link", "set", BRIDGE, "up"])?;
    for host in state.hosts() {
        add_host(ul, host)?;
    }
    Ok(())
}

/// Makes `host`'s namespace and its veth pair to the bridge in `ul`.
fn add_host(ul: &str, host: &HostRecord) -> Result<(), LabError> {
    let ns = host.ns.as_str();
    let port = host.bridge_port.as_str();
    let address = host.address.to_string();
    add_namespace(ns)?;
    // Both ends are born in lab namespaces: nothing touches the caller's.
    ip(&[
        "-n",
        ul,
        "link",
        "add",
        port,
        "type",
        "veth",
        "peer",
        "name",
        HOST_INTERFACE,
        "netns",
        ns,
    ])?;
    ip(&["-n", ul, "link", "set", port, "master", BRIDGE, "up"])?;
    ip(&["-n", ns, "addr", "add", &address, "dev", HOST_INTERFACE])?;
    ip(&["-n", ns, "link", "set", HOST_INTERFACE, "up"])?;
    Ok(())
}

/// `ip netns add ns` and `lo` up; deletes it again if `lo` fails.
fn add_namespace(ns: &str) -> Result<(), LabError> {
    ip(&["netns", "add", ns])?;
    if let Err(e) = ip(&["-n", ns, "link", "set", "lo", "up"]) {
        let _ = ip(&["netns", "delete", ns]);
        return Err(e);
    }
    Ok(())
}

/// Refuses a state file whose namespace names are not this lab's: teardown
/// and spawning trust them.
fn check_names(name: &LabName, dir: &Path, state: &LabState) -> Result<(), LabError> {
    let foreign = state.namespaces().find(|ns| !name.owns(ns));
    if state.name != name.as_str() || foreign.is_some() {
        return Err(LabError::State {
            path: state::state_file(dir),
            reason: format!(
                "it describes lab '{}' (namespace {}), not lab '{name}'",
                state.name,
                foreign.unwrap_or("-")
            ),
        });
    }
    Ok(())
}

fn check_label(label: &str) -> Result<(), LabError> {
    let ok = !label.is_empty()
        && label.len() <= 64
        && !label.starts_with('.')
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(LabError::InvalidArgument(format!(
            "invalid process label {label:?}: use 1 to 64 of [A-Za-z0-9._-], not starting with '.'"
        )))
    }
}
