//! The local lab and the multi-node e2e tests: a whole weft cluster on one
//! machine.
//!
//! Two layers:
//!
//! - The topology ([`Lab`]): an underlay network, a control-plane host and N
//!   node hosts, each a named network namespace, plus the processes that run
//!   inside them. It builds and removes that topology and supervises those
//!   processes, knowing nothing about what the processes are.
//! - The cluster ([`Cluster`]), on top: `weft-control-plane` and one
//!   `weft-agent` per node started in those namespaces, joined, with pods,
//!   and a connectivity check; `weftctl lab` is a thin CLI over it. See
//!   [`Cluster`] and `docs/lab.md`.
//!
//! # Layout
//!
//! For a lab named `x` (see [`LabName`] for the rules):
//!
//! | namespace | holds |
//! |---|---|
//! | `weft-x-ul` | bridge `br0`, one port per host (`v-cp`, `v-n1`, ...) |
//! | `weft-x-cp` | `eth0` (veth peer of `v-cp`), the first underlay address |
//! | `weft-x-nK` | `eth0` (veth peer of `v-nK`), the (K+1)-th underlay address |
//! | `weft-x-nK-pJ` | nothing but `lo`: a pod of node K, for the agent to put a TUN into |
//!
//! Every namespace is made with `ip netns add`, so `ip netns exec` works on
//! it, and has `lo` up. The veth pairs are made inside the underlay namespace,
//! so the lab never creates an interface, an address or a route in the
//! namespace it was started from, and interface names never depend on the lab
//! name. The underlay defaults to `192.0.2.0/24` (TEST-NET-1), and its
//! addresses only ever exist inside the lab's own namespaces.
//!
//! # State
//!
//! `<state root>/<name>/lab.json` (default root [`DEFAULT_STATE_ROOT`])
//! records the namespaces, addresses and processes (pid, start time, log
//! file) so that another invocation can find the lab: [`Lab::open`] reads it,
//! [`teardown`] removes everything. Process logs live in `<state dir>/logs/`.
//!
//! # Contract
//!
//! - [`Lab::up`] refuses a lab whose state directory or any of whose
//!   namespaces already exists; on failure it removes what it made.
//! - [`teardown`] removes every process and namespace of the lab and its state
//!   directory, also when the state file is gone (after a crash); it only
//!   touches namespaces whose names are exactly one of the lab's patterns
//!   (so tearing down `a` never touches lab `ab` or `a-n1`), is idempotent,
//!   and succeeds when there is nothing to remove.
//! - Every external command (`ip`) runs with a time bound; a failure names the
//!   command line, its exit status and its stderr.
//! - Nothing here panics on bad input; errors are [`LabError`]s.

#![forbid(unsafe_code)]

pub mod check;
mod cluster;
mod cmd;
mod error;
mod guard;
mod name;
mod ping;
mod process;
mod resolv;
mod spec;
mod state;
mod teardown;
mod topology;

pub use cluster::{
    build_binaries_once, cargo_build_binaries, in_netns, profile_dir, workspace_manifest, Binaries,
    Check, CheckKind, Cluster, ClusterGuard, ClusterPod, ClusterRecord, ClusterSpec, Connectivity,
    ControlPlaneRecord, EtcdRecord, LiveProcess, NodeRecord, PodIdentity, ReplicaRecord, Signal,
    AGENT_PROGRAM, CONTROL_PLANE_LABEL, CONTROL_PLANE_PORT, CONTROL_PLANE_PROGRAM, DEFAULT_WAIT,
    ETCD_LABEL, LAB_METRICS, MAX_REPLICAS, WIREGUARD_PORT,
};
pub use cmd::{exec_in, list_namespaces, namespace_pids, DEFAULT_COMMAND_TIMEOUT};
pub use error::LabError;
pub use guard::LabGuard;
pub use name::{LabName, NamespaceRole};
pub use ping::{ping, ping_stats, ping_stats_in, PingStats};
pub use process::{process_is_running, LabProcess};
pub use spec::{LabSpec, DEFAULT_STATE_ROOT, DEFAULT_UNDERLAY};
pub use state::{HostRecord, LabState, PodRecord, ProcessRecord};
pub use teardown::{teardown, KilledProcess, TeardownReport};
pub use topology::Lab;
