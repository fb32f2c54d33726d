//! Bringing a lab cluster up, step by step.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::thread;
use std::time::Duration;

use super::record::{Binaries, ClusterPod, ClusterRecord, ControlPlaneRecord, NodeRecord};
use super::spec::{ClusterSpec, CONTROL_PLANE_PORT, WIREGUARD_PORT};
use super::{admin, agent, Cluster, ADMIN_TIMEOUT, CONTROL_PLANE_LABEL};
use crate::{teardown, HostRecord, Lab, LabError, PodRecord};

/// See [`Cluster::up_with_progress`].
pub(super) fn up(spec: ClusterSpec, progress: &mut dyn FnMut(&str)) -> Result<Cluster, LabError> {
    spec.validate()?;
    let binaries = match &spec.binaries {
        Some(b) => {
            b.check()?;
            b.clone()
        }
        None => Binaries::locate()?,
    };
    let plural = if spec.lab.nodes == 1 { "" } else { "s" };
    progress(&format!(
        "building the topology ({} node namespace{plural}, underlay {})",
        spec.lab.nodes, spec.lab.underlay
    ));
    // An `AlreadyUp` lab is someone else's: it comes back untouched.
    let lab = Lab::up(&spec.lab)?;
    let record = plan(&lab, &spec, binaries);
    let mut cluster = Cluster {
        lab,
        record,
        wait: spec.wait,
        log_filter: spec.log_filter.clone(),
        children: HashMap::new(),
    };
    match bring_up(&mut cluster, &spec, progress) {
        Ok(()) => Ok(cluster),
        Err(cause) => {
            let name = cluster.name().clone();
            match teardown(&name, &spec.lab.state_root) {
                Ok(_) => Err(cause),
                Err(cleanup) => Err(LabError::UpFailed {
                    name: name.to_string(),
                    cause: Box::new(cause),
                    cleanup: Box::new(cleanup),
                }),
            }
        }
    }
}

/// The cluster record before anything runs.
fn plan(lab: &Lab, spec: &ClusterSpec, binaries: Binaries) -> ClusterRecord {
    let dir = lab.state_dir();
    let cp = lab.control_plane();
    let cp_state = dir.join("cp");
    let (etcd, replicas) = super::ha::plan(dir, IpAddr::V4(cp.address.addr()), spec);
    ClusterRecord {
        control_plane: ControlPlaneRecord {
            ns: cp.ns.clone(),
            address: SocketAddr::new(IpAddr::V4(cp.address.addr()), CONTROL_PLANE_PORT),
            admin_conf: cp_state.join("admin.conf"),
            state_dir: cp_state,
            log: dir.join("logs").join(format!("{CONTROL_PLANE_LABEL}.log")),
            ca_hash: None,
            extra_args: spec.control_plane_args.clone(),
            etcd,
            replicas,
        },
        nodes: lab
            .nodes()
            .iter()
            .enumerate()
            .map(|(i, host)| node_record(dir, &format!("n{}", i + 1), i + 1, host))
            .collect(),
        pods: Vec::new(),
        pods_per_node: spec.pods_per_node,
        binaries,
    }
}

/// The record of node `name` (index `k`) on `host`, nothing known yet.
pub(super) fn node_record(lab_dir: &Path, name: &str, k: usize, host: &HostRecord) -> NodeRecord {
    let node_dir = lab_dir.join(name);
    NodeRecord {
        name: name.to_string(),
        index: k,
        ns: host.ns.clone(),
        underlay: host.address.addr(),
        endpoint: SocketAddr::new(IpAddr::V4(host.address.addr()), WIREGUARD_PORT),
        overlay: None,
        pod_cidr: None,
        api_socket: node_dir.join("agent.sock"),
        state_dir: node_dir.join("state"),
        log: lab_dir.join("logs").join(format!("{name}.log")),
    }
}

fn bring_up(
    cluster: &mut Cluster,
    spec: &ClusterSpec,
    progress: &mut dyn FnMut(&str),
) -> Result<(), LabError> {
    let initial = cluster.record.clone();
    cluster.update(|c| {
        *c = initial;
        Ok(())
    })?;

    let cp = cluster.record.control_plane.clone();
    if let Some(etcd) = &cp.etcd {
        progress(&format!("starting etcd on {} (in {})", etcd.client, cp.ns));
        cluster.start_etcd()?;
    }
    progress(&format!("starting the control plane on {}", cp.address));
    cluster
        .spawn_control_plane()
        .map_err(|e| e.in_step("starting the control plane"))?;
    if !cp.replicas.is_empty() {
        progress(&format!(
            "starting {} more control-plane replicas",
            cp.replicas.len()
        ));
        cluster.start_replicas()?;
    }

    if spec.external {
        progress("adding the outside host ext");
        cluster
            .lab
            .add_external()
            .map_err(|e| e.in_step("adding the outside host ext"))?;
    }

    progress("creating a join token");
    let nodes = cluster.record.nodes.clone();
    let usages = u32::try_from(nodes.len()).unwrap_or(u32::MAX);
    let token = admin::create_token(&cp.ns, &cp.admin_conf, ADMIN_TIMEOUT, usages, "weft lab")
        .map_err(|e| e.in_step("creating a join token"))?;
    let ca_hash = token.ca_hash.clone();
    cluster.update(|c| {
        c.control_plane.ca_hash = Some(ca_hash);
        Ok(())
    })?;

    let plural = if nodes.len() == 1 { "" } else { "s" };
    progress(&format!("starting {} agent{plural}", nodes.len()));
    let mut started = Vec::new();
    for node in &nodes {
        let process = cluster
            .spawn_agent(node, Some(&token))
            .map_err(|e| e.in_step(format!("starting agent {}", node.name)))?;
        started.push((node, process));
    }
    progress(&format!(
        "waiting for {} agent{plural} to join",
        nodes.len()
    ));
    for (node, mut process) in started {
        let joined = agent::wait_joined(&mut process, node, spec.wait);
        cluster.children.insert(node.name.clone(), process);
        let status =
            joined.map_err(|e| e.in_step(format!("waiting for agent {} to join", node.name)))?;
        cluster.record_joined(&node.name, &status)?;
    }

    if spec.pods_per_node > 0 {
        progress(&format!(
            "adding {} pods ({} per node)",
            nodes.len() * spec.pods_per_node,
            spec.pods_per_node
        ));
        add_pods(cluster, spec.pods_per_node)?;
    }

    progress("waiting until every node has every other one as a peer");
    agent::wait_mesh(&cluster.record.nodes, spec.wait)
        .map_err(|e| e.in_step("waiting until every node has every other one as a peer"))?;
    Ok(())
}

/// Makes `per_node` pod namespaces on every node, then has the agents add
/// the pods, one thread per node.
fn add_pods(cluster: &mut Cluster, per_node: usize) -> Result<(), LabError> {
    let nodes = cluster.record.nodes.clone();
    let mut planned: Vec<(NodeRecord, Vec<PodRecord>)> = Vec::new();
    for node in &nodes {
        let mut namespaces = Vec::new();
        for _ in 0..per_node {
            let ns = cluster
                .lab
                .add_pod(node.index)
                .map_err(|e| e.in_step(format!("adding a pod namespace to {}", node.name)))?;
            namespaces.push(ns);
        }
        planned.push((node.clone(), namespaces));
    }
    let wait = cluster.wait;
    let results: Vec<Result<Vec<ClusterPod>, LabError>> = thread::scope(|scope| {
        let handles: Vec<_> = planned
            .iter()
            .map(|(node, namespaces)| {
                scope.spawn(move || {
                    namespaces
                        .iter()
                        .map(|ns| add_pod_to_agent(node, ns, wait))
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(LabError::InvalidArgument(
                        "a pod-adding thread panicked".to_string(),
                    ))
                })
            })
            .collect()
    });
    let mut pods = Vec::new();
    for result in results {
        pods.extend(result?);
    }
    cluster.update(|c| {
        c.pods.extend(pods);
        Ok(())
    })
}

/// Has `node`'s agent add the pod for the lab pod namespace `ns`.
pub(super) fn add_pod_to_agent(
    node: &NodeRecord,
    ns: &PodRecord,
    wait: Duration,
) -> Result<ClusterPod, LabError> {
    let name = format!("{}-p{}", node.name, ns.index);
    let identity = PodIdentity {
        namespace: weft_agent_api::DEFAULT_POD_NAMESPACE.to_string(),
        name: name.clone(),
        ..PodIdentity::default()
    };
    add_identified_pod(node, ns, &identity, wait)
}

/// A pod's identity in the cluster: what `weftctl lab pod add` gives.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodIdentity {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its labels.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Its named ports.
    pub ports: Vec<weft_agent_api::NamedPort>,
}

/// Has `node`'s agent add the pod `identity` in the lab pod namespace `ns`
/// (agent id `nK-pJ`).
pub(super) fn add_identified_pod(
    node: &NodeRecord,
    ns: &PodRecord,
    identity: &PodIdentity,
    wait: Duration,
) -> Result<ClusterPod, LabError> {
    let id = format!("{}-p{}", node.name, ns.index);
    let netns = Path::new("/run/netns").join(&ns.ns);
    let request = weft_agent_api::PodAddRequest {
        id: id.clone(),
        netns: Some(netns.display().to_string()),
        pod_namespace: Some(identity.namespace.clone()),
        pod_name: Some(identity.name.clone()),
        labels: identity.labels.clone(),
        ports: identity.ports.clone(),
        ..weft_agent_api::PodAddRequest::default()
    };
    let pod =
        agent::pod_add(&node.api_socket, request, wait).map_err(|reason| LabError::Refused {
            what: format!("adding pod {id} on {} (pod_add)", node.name),
            reason,
            log: node.log.clone(),
            log_tail: crate::process::log_tail(&node.log, 20),
        })?;
    // The pod resolves through the cluster DNS its agent answers.
    let settings = agent::status(&node.api_socket, wait).map_err(|reason| LabError::Refused {
        what: format!(
            "reading the cluster DNS settings from {} (status)",
            node.name
        ),
        reason,
        log: node.log.clone(),
        log_tail: crate::process::log_tail(&node.log, 20),
    })?;
    crate::resolv::write(
        &ns.ns,
        &settings.node.cluster_dns,
        &settings.node.cluster_domain,
        &identity.namespace,
    )?;
    Ok(ClusterPod {
        name: id,
        namespace: Some(identity.namespace.clone()),
        pod_name: Some(identity.name.clone()),
        labels: identity.labels.clone(),
        ports: identity.ports.clone(),
        node: node.name.clone(),
        ns: ns.ns.clone(),
        netns,
        ip: pod.address,
        ifname: pod.ifname,
    })
}
