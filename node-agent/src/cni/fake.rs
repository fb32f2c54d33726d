//! A fake agent and host for the unit tests of the commands and the
//! dispatcher: pods in a map, namespaces in a set, no kernel.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use weft_agent_api::{
    AgentApiError, DataplaneInfo, ErrorCode, NodeInfo, Pod, PodAddRequest, StatusResult,
};

use super::commands::{Agent, NetnsProblem, System};
use crate::kernel::netlink::Route;
use crate::kernel::tun::PortState;

/// The fake's whole state.
#[derive(Debug, Default)]
pub(super) struct FakeHost {
    /// No agent answers (as if its socket were missing).
    pub agent_down: bool,
    /// The agent answers status with no data plane.
    pub dataplane_down: bool,
    /// Pods by id.
    pub pods: BTreeMap<String, Pod>,
    /// Namespaces that exist.
    pub namespaces: HashSet<String>,
    /// Interfaces that exist, with their state, by (netns, ifname).
    pub ports: BTreeMap<(String, String), PortState>,
    /// Every call the agent got, in order.
    pub calls: Vec<String>,
    /// The pool size the agent pretends to have.
    pub capacity: usize,
    /// pod_del fails for these ids.
    pub del_fails: HashSet<String>,
}

impl FakeHost {
    pub(super) fn new() -> Self {
        Self {
            capacity: 253,
            namespaces: ["/run/netns/p1".to_string()].into_iter().collect(),
            ..Self::default()
        }
    }

    pub(super) fn node() -> NodeInfo {
        NodeInfo {
            name: "n1".into(),
            node_id: 1,
            pod_cidr: "10.244.3.0/24".into(),
            node_address: "10.244.3.1".into(),
            cluster_dns: "10.96.0.10".into(),
            cluster_domain: "cluster.local".into(),
            mtu: 1420,
            ..NodeInfo::default()
        }
    }

    pub(super) fn pod(id: &str, address: &str, netns: &str, ifname: &str) -> Pod {
        Pod {
            id: id.into(),
            address: address.parse().unwrap(),
            netns: netns.into(),
            ifname: ifname.into(),
            created_netns: false,
            pod_namespace: None,
            pod_name: None,
            labels: Default::default(),
            ports: Vec::new(),
            created_unix: 1,
            attached: true,
            registration: None,
        }
    }
}

struct FakeAgent<'a>(&'a mut FakeHost);

impl FakeAgent<'_> {
    fn up(&mut self, call: String) -> Result<(), AgentApiError> {
        self.0.calls.push(call);
        if self.0.agent_down {
            Err(AgentApiError::NoSocket {
                path: PathBuf::from("/run/weft/agent.sock"),
            })
        } else {
            Ok(())
        }
    }
}

fn api(code: ErrorCode, message: &str) -> AgentApiError {
    AgentApiError::Api {
        code,
        message: message.into(),
    }
}

impl Agent for FakeAgent<'_> {
    fn status(&mut self) -> Result<StatusResult, AgentApiError> {
        self.up("status".into())?;
        Ok(StatusResult {
            node: FakeHost::node(),
            pods: self.0.pods.len(),
            dataplane: (!self.0.dataplane_down).then(DataplaneInfo::default),
            dataplane_error: self
                .0
                .dataplane_down
                .then(|| "the data plane is not running".into()),
            registration: None,
            cluster_view: None,
        })
    }

    fn pod_get(&mut self, id: &str) -> Result<Pod, AgentApiError> {
        self.up(format!("pod_get {id}"))?;
        self.0
            .pods
            .get(id)
            .cloned()
            .ok_or_else(|| api(ErrorCode::NotFound, "no such pod"))
    }

    fn pod_add(&mut self, r: PodAddRequest) -> Result<Pod, AgentApiError> {
        self.up(format!("pod_add {}", r.id))?;
        if self.0.pods.len() >= self.0.capacity {
            return Err(api(ErrorCode::Exhausted, "no free address in node CIDR"));
        }
        let used: HashSet<IpAddr> = self.0.pods.values().map(|p| p.address).collect();
        let address = (2..255u8)
            .map(|i| IpAddr::from([10, 244, 3, i]))
            .find(|a| !used.contains(a))
            .unwrap();
        let netns = r.netns.unwrap_or_default();
        let ifname = r.ifname.unwrap_or_default();
        let mut pod = FakeHost::pod(&r.id, &address.to_string(), &netns, &ifname);
        pod.pod_namespace = r.pod_namespace;
        pod.pod_name = r.pod_name;
        self.0.pods.insert(r.id, pod.clone());
        let state = PortState {
            index: 2,
            mtu: 1420,
            up: true,
            addresses: vec![IpNet::from(address)],
            routes: vec![Route::dev("0.0.0.0/0".parse().unwrap())],
        };
        self.0.ports.insert((netns, ifname), state);
        Ok(pod)
    }

    fn pod_del(&mut self, id: &str) -> Result<Option<Pod>, AgentApiError> {
        self.up(format!("pod_del {id}"))?;
        if self.0.del_fails.contains(id) {
            return Err(api(ErrorCode::Internal, "deleting the TUN failed"));
        }
        let pod = self.0.pods.remove(id);
        if let Some(p) = &pod {
            self.0.ports.remove(&(p.netns.clone(), p.ifname.clone()));
        }
        Ok(pod)
    }

    fn pod_list(&mut self) -> Result<Vec<Pod>, AgentApiError> {
        self.up("pod_list".into())?;
        Ok(self.0.pods.values().cloned().collect())
    }
}

impl System for FakeHost {
    fn agent(&mut self, _socket: &Path, _timeout: Duration) -> Box<dyn Agent + '_> {
        Box::new(FakeAgent(self))
    }

    fn check_netns(&mut self, path: &str) -> Result<(), NetnsProblem> {
        match path {
            "/proc/1/ns/net" => Err(NetnsProblem::IsOurs),
            "/etc/hosts" => Err(NetnsProblem::NotANetns("a regular file".into())),
            p if self.namespaces.contains(p) => Ok(()),
            _ => Err(NetnsProblem::Missing),
        }
    }

    fn port_state(&mut self, netns: &str, ifname: &str) -> Result<Option<PortState>, String> {
        Ok(self.ports.get(&(netns.into(), ifname.into())).cloned())
    }
}
