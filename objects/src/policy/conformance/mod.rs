//! weft's NetworkPolicy conformance suite as data, on the model of the
//! upstream e2e tests (`test/e2e/network/netpol`): the cluster
//! ([`Model`]: namespaces x, y, z labelled `ns=<name>` and
//! `kubernetes.io/metadata.name=<name>`; pods a, b, c in each labelled
//! `pod=<name>`, spread over nodes n1..n3, each serving TCP and UDP on 80
//! and 81 with ports named `serve-80-tcp` etc.), the scenarios (steps of
//! object changes, each followed by the expected 9×9 reachability per
//! port and protocol), and the truth tables with upstream's printing.
//!
//! Contract: scenarios are plain YAML files (`scenarios/*.yaml`, listed by
//! [`scenarios`]), so the pure tests of this crate (policies resolved and
//! compiled per node, then evaluated) and a lab suite (the same objects
//! applied to a real cluster, the same probes sent) share one definition.
//! Every step names an expectation for each of the four probes
//! (80/TCP, 81/TCP, 80/UDP, 81/UDP); [`Scenario::parse`] refuses a file
//! that leaves one out. Addresses a scenario needs (ipBlocks) are written
//! as `${ip:x/b}` (the pod's address) or `${cidr:x/b/16}` (the network of
//! that length around it) and filled in by [`Scenario::render`], since a
//! lab allocates its own addresses.
//!
//! Files: `mod.rs` (the model), `scenario.rs` (the format and applying a
//! step to a [`ModelState`]), `table.rs` ([`Reachability`]).

mod scenario;
mod table;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

pub use scenario::{
    Action, Expectation, LabelChange, ModelState, Probe, Scenario, ScenarioError, Step,
};
pub use table::Reachability;

use crate::types::namespace::LABEL_METADATA_NAME;
use crate::types::pod::{Container, ContainerPort, PodIp};
use crate::values::{PodPhase, Protocol};
use crate::{Namespace, Pod};

/// The model's namespaces.
pub const NAMESPACES: [&str; 3] = ["x", "y", "z"];
/// The pods of each namespace.
pub const PODS: [&str; 3] = ["a", "b", "c"];
/// The nodes the pods are spread over.
pub const NODES: [&str; 3] = ["n1", "n2", "n3"];
/// The ports every pod serves, on TCP and UDP.
pub const PORTS: [u16; 2] = [80, 81];

/// The model cluster before any scenario step.
#[derive(Debug, Clone)]
pub struct Model {
    /// x, y, z with their labels.
    pub namespaces: Vec<Namespace>,
    /// The nine pods, `x/a` first, `z/c` last.
    pub pods: Vec<Pod>,
}

impl Model {
    /// The model: pod `i` of namespace `j` runs on node `(i + j) % 3` (each
    /// node holds one pod of each name and of each namespace), addressed
    /// `10.244.<node+1>.<10 + 3j + i>`.
    pub fn new() -> Self {
        let mut namespaces = Vec::new();
        let mut pods = Vec::new();
        for (j, ns) in NAMESPACES.iter().enumerate() {
            let mut n = Namespace::new(ns);
            n.metadata.labels = [
                ("ns".to_string(), ns.to_string()),
                (LABEL_METADATA_NAME.to_string(), ns.to_string()),
            ]
            .into();
            namespaces.push(n);
            for (i, name) in PODS.iter().enumerate() {
                let node = (i + j) % NODES.len();
                let ip = Ipv4Addr::new(10, 244, node as u8 + 1, (10 + 3 * j + i) as u8);
                pods.push(model_pod(ns, name, NODES[node], ip.into()));
            }
        }
        Model { namespaces, pods }
    }

    /// `ns/pod` of the nine pods, in table order.
    pub fn pod_names() -> Vec<String> {
        NAMESPACES
            .iter()
            .flat_map(|ns| PODS.iter().map(move |p| format!("{ns}/{p}")))
            .collect()
    }
}

impl Default for Model {
    fn default() -> Self {
        Self::new()
    }
}

/// A model pod: labelled `pod=<name>`, one container per served port.
fn model_pod(ns: &str, name: &str, node: &str, ip: IpAddr) -> Pod {
    let mut pod = Pod::new(ns, name);
    pod.metadata.labels = BTreeMap::from([("pod".to_string(), name.to_string())]);
    pod.spec.node_name = node.to_string();
    for port in PORTS {
        for (proto, p) in [("tcp", Protocol::Tcp), ("udp", Protocol::Udp)] {
            pod.spec.containers.push(Container {
                name: format!("cont-{port}-{proto}"),
                ports: vec![ContainerPort {
                    name: format!("serve-{port}-{proto}"),
                    container_port: i32::from(port),
                    protocol: Some(p),
                }],
            });
        }
    }
    pod.status.phase = Some(PodPhase::Running);
    pod.status.pod_ip = ip.to_string();
    pod.status.pod_ips = vec![PodIp { ip: ip.to_string() }];
    pod.set_ready(true, None);
    pod
}

/// Every scenario file: (file name, text).
pub fn scenarios() -> Vec<(&'static str, &'static str)> {
    macro_rules! files {
        ($($f:literal),* $(,)?) => {
            vec![$(($f, include_str!(concat!("scenarios/", $f)))),*]
        };
    }
    files![
        "allow-from-namespace-selector.yaml",
        "allow-from-pod-selector.yaml",
        "deny-all-egress.yaml",
        "deny-all-ingress.yaml",
        "egress-and-ingress.yaml",
        "ip-block.yaml",
        "match-expressions.yaml",
        "multiple-policies.yaml",
        "named-ports.yaml",
        "namespace-relabelling.yaml",
        "pod-and-namespace-selector.yaml",
        "pod-relabelling.yaml",
        "policy-deletion.yaml",
        "policy-types.yaml",
        "port-ranges.yaml",
        "udp.yaml",
    ]
}
