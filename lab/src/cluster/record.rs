//! What a cluster adds to `lab.json`: the control plane, the nodes (agent
//! sockets, state dirs, pod CIDRs), the pods and their addresses, so that
//! other invocations (`weftctl lab status`, `exec`, `logs`, `down`) and
//! tests find them.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use weft_agent_api::NamedPort;

/// The process label (and log file stem) of the control plane.
pub const CONTROL_PLANE_LABEL: &str = "cp";

/// The cluster part of `lab.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRecord {
    /// The control plane.
    pub control_plane: ControlPlaneRecord,
    /// The nodes, in order: `nodes[K - 1]` is node `nK`.
    pub nodes: Vec<NodeRecord>,
    /// The pods, in creation order.
    pub pods: Vec<ClusterPod>,
    /// How many pods `up` (and `add_node`) give each node.
    pub pods_per_node: usize,
    /// The binaries the lab runs.
    pub binaries: Binaries,
}

/// The control plane of a lab cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlPlaneRecord {
    /// Its namespace (`weft-<lab>-cp`).
    pub ns: String,
    /// Its gRPC address, on the underlay (`192.0.2.1:7443`); reachable only
    /// from inside the lab's namespaces.
    pub address: SocketAddr,
    /// Its `--state-dir`.
    pub state_dir: PathBuf,
    /// The admin credential it writes (`<state dir>/admin.conf`).
    pub admin_conf: PathBuf,
    /// Its log file.
    pub log: PathBuf,
    /// The cluster CA's hash (`sha256:...`), once known.
    #[serde(default)]
    pub ca_hash: Option<String>,
    /// Extra flags it runs with, after the lab's own
    /// ([`ClusterSpec::control_plane_args`](super::ClusterSpec::control_plane_args)).
    #[serde(default)]
    pub extra_args: Vec<String>,
    /// The etcd every replica shares, in this namespace (labs of several
    /// replicas, [`ClusterSpec::replicas`](super::ClusterSpec::replicas)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd: Option<EtcdRecord>,
    /// The replicas besides this one (`cp2`, `cp3`, ...), in this
    /// namespace on the next ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ReplicaRecord>,
}

/// Another control-plane replica of an HA lab.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaRecord {
    /// Its process label and log file stem (`cp2`, ...).
    pub label: String,
    /// Its gRPC address, on the underlay (`192.0.2.1:7444`, ...).
    pub address: SocketAddr,
    /// Its `--state-dir`.
    pub state_dir: PathBuf,
    /// The admin credential it writes (its own address first).
    pub admin_conf: PathBuf,
}

/// The single-member etcd of an HA lab, on the control plane namespace's
/// loopback.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdRecord {
    /// The `etcd` program.
    pub program: String,
    /// Its client address (`127.0.0.1:2379` in the control plane's namespace).
    pub client: SocketAddr,
    /// Its peer address.
    pub peer: SocketAddr,
    /// Its `--data-dir`.
    pub data_dir: PathBuf,
}

impl ControlPlaneRecord {
    /// Every replica's address, this one first: the agents'
    /// `--control-plane` list.
    pub fn servers(&self) -> String {
        std::iter::once(self.address)
            .chain(self.replicas.iter().map(|r| r.address))
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A node of a lab cluster: a node namespace running `weft-agent`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The node name, `nK`: the weft node name and the process label.
    pub name: String,
    /// K, from 1.
    pub index: usize,
    /// Its namespace (`weft-<lab>-nK`).
    pub ns: String,
    /// Its underlay address.
    pub underlay: Ipv4Addr,
    /// The WireGuard endpoint it announces (`<underlay>:51820`).
    pub endpoint: SocketAddr,
    /// Its overlay address (on `weft0`), once it has joined.
    #[serde(default)]
    pub overlay: Option<IpAddr>,
    /// Its pod CIDR, once it has joined.
    #[serde(default)]
    pub pod_cidr: Option<IpNet>,
    /// The agent's local API socket.
    pub api_socket: PathBuf,
    /// The agent's `--state-dir`.
    pub state_dir: PathBuf,
    /// The agent's log file.
    pub log: PathBuf,
}

/// A pod of a lab cluster: a lab pod namespace with an address from its
/// node's pod CIDR, added through the node's agent, and registered with
/// the control plane as `namespace/pod_name`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterPod {
    /// `nK-pJ`: the pod's lab name and its id on the agent.
    pub name: String,
    /// Its namespace in the cluster (`default` for the pods of `up`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Its name in the cluster (`nK-pJ` for the pods of `up`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// Its labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Its named ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<NamedPort>,
    /// Its node's name (`nK`).
    pub node: String,
    /// Its namespace (`weft-<lab>-nK-pJ`).
    pub ns: String,
    /// The namespace's path (`/run/netns/weft-<lab>-nK-pJ`).
    pub netns: PathBuf,
    /// Its address.
    pub ip: IpAddr,
    /// Its interface inside the namespace.
    pub ifname: String,
}

/// The programs a lab cluster runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binaries {
    /// `weft-control-plane`.
    pub control_plane: PathBuf,
    /// `weft-agent`.
    pub agent: PathBuf,
}

impl ClusterPod {
    /// `NAMESPACE/NAME`, its name in the cluster (if it has one).
    pub fn cluster_name(&self) -> Option<String> {
        let name = self.pod_name.as_deref()?;
        Some(format!(
            "{}/{name}",
            self.namespace
                .as_deref()
                .unwrap_or(weft_agent_api::DEFAULT_POD_NAMESPACE)
        ))
    }
}

impl ClusterRecord {
    /// The node named `name` (`nK`).
    pub fn node(&self, name: &str) -> Option<&NodeRecord> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The pod named `name`: its lab name (`nK-pJ`) or its name in the
    /// cluster, `NAMESPACE/NAME`.
    pub fn pod(&self, name: &str) -> Option<&ClusterPod> {
        self.pods
            .iter()
            .find(|p| p.name == name || p.cluster_name().as_deref() == Some(name))
    }

    /// The pods of node `node`.
    pub fn pods_of<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a ClusterPod> + 'a {
        self.pods.iter().filter(move |p| p.node == node)
    }
}
