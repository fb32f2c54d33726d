//! Talking to a lab node's agent over its local API socket, and waiting for
//! it: joined, and seeing its peers.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use weft_agent_api::{AgentClient, Pod, PodAddRequest, RegistrationState, StatusResult};

use super::record::{ControlPlaneRecord, NodeRecord};
use crate::process::log_tail;
use crate::{LabError, LabProcess};

/// How often the waits poll.
pub(crate) const POLL: Duration = Duration::from_millis(20);
/// The bound of one API exchange while polling.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Where each lab agent serves its metrics, inside its node's namespace
/// (`weftctl lab exec n1 -- curl -s 127.0.0.1:9590/metrics`).
pub const LAB_METRICS: &str = "127.0.0.1:9590";

/// The arguments of `weft-agent` for `node`. Its upstream resolver is
/// `dns_upstream`, the outside host `ext`'s address (tests run a resolver
/// there; without one, names outside the cluster get SERVFAIL). The token, needed only to join,
/// goes in the environment (`WEFT_TOKEN`), so it is not in `lab.json`.
pub(crate) fn agent_args(
    cp: &ControlPlaneRecord,
    node: &NodeRecord,
    ca_hash: Option<&str>,
    dns_upstream: std::net::Ipv4Addr,
) -> Vec<String> {
    let mut args = vec![
        "--control-plane".to_string(),
        cp.servers(),
        "--name".to_string(),
        node.name.clone(),
        "--endpoint".to_string(),
        node.endpoint.to_string(),
        "--listen-port".to_string(),
        node.endpoint.port().to_string(),
        "--state-dir".to_string(),
        node.state_dir.display().to_string(),
        "--api-socket".to_string(),
        node.api_socket.display().to_string(),
        // Each node has a network namespace, so each its own loopback.
        "--metrics-listen".to_string(),
        LAB_METRICS.to_string(),
        // Names outside the cluster go to the lab's outside host, never to
        // the machine's resolvers: no lab query leaves the machine.
        "--dns-upstream".to_string(),
        dns_upstream.to_string(),
    ];
    if let Some(hash) = ca_hash {
        args.push("--ca-hash".to_string());
        args.push(hash.to_string());
    }
    args
}

/// One connection to the agent at `socket`, with `timeout` per exchange.
pub(crate) fn client(socket: &Path, timeout: Duration) -> Result<AgentClient, String> {
    let mut client = AgentClient::connect(socket).map_err(|e| e.to_string())?;
    client.set_timeout(timeout).map_err(|e| e.to_string())?;
    Ok(client)
}

/// The agent's `status`.
pub(crate) fn status(socket: &Path, timeout: Duration) -> Result<StatusResult, String> {
    client(socket, timeout)?.status().map_err(|e| e.to_string())
}

/// Whether `status` shows a node that has joined: an id and a pod CIDR.
pub(crate) fn has_joined(status: &StatusResult) -> bool {
    status.node.node_id != 0 && !status.node.pod_cidr.is_empty()
}

/// Waits until the agent (`process`) answers `ping` and its `status` shows
/// the node joined; returns that status. Fails early if it exits.
pub(crate) fn wait_joined(
    process: &mut LabProcess,
    node: &NodeRecord,
    timeout: Duration,
) -> Result<StatusResult, LabError> {
    let mut joined = None;
    let socket = node.api_socket.clone();
    process.wait_ready(timeout, || {
        let probe = client(&socket, PROBE_TIMEOUT).and_then(|mut c| {
            c.ping().map_err(|e| e.to_string())?;
            c.status().map_err(|e| e.to_string())
        });
        match probe {
            Ok(status) if has_joined(&status) => {
                joined = Some(status);
                true
            }
            _ => false,
        }
    })?;
    joined.ok_or_else(|| LabError::InvalidArgument(format!("agent {} not ready", node.name)))
}

/// Adds a pod through the agent at `socket`.
pub(crate) fn pod_add(
    socket: &Path,
    request: PodAddRequest,
    timeout: Duration,
) -> Result<Pod, String> {
    client(socket, timeout)?
        .pod_add(request)
        .map_err(|e| e.to_string())
}

/// Waits until the agent at `socket` has registered its pod `id` with the
/// control plane; the last state seen on timeout.
pub(crate) fn wait_registered(
    node: &NodeRecord,
    id: &str,
    timeout: Duration,
) -> Result<(), LabError> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match client(&node.api_socket, PROBE_TIMEOUT)
            .and_then(|mut c| c.pod_get(id).map_err(|e| e.to_string()))
        {
            Ok(pod) => match pod.registration {
                Some(r) if r.state == RegistrationState::Registered => return Ok(()),
                Some(r) => format!(
                    "pod {id} on {} is {}{}",
                    node.name,
                    r.state.as_str(),
                    r.error.map(|e| format!(": {e}")).unwrap_or_default()
                ),
                None => format!("pod {id} on {} has no registration", node.name),
            },
            Err(e) => format!("asking {} for pod {id}: {e}", node.name),
        };
        if Instant::now() >= deadline {
            return Err(LabError::WaitTimeout {
                timeout,
                last,
                log: node.log.clone(),
                log_tail: log_tail(&node.log, 20),
            });
        }
        std::thread::sleep(POLL);
    }
}

/// The names of the peers the agent at `socket` has.
fn peer_names(socket: &Path) -> Result<BTreeSet<String>, String> {
    let status = status(socket, PROBE_TIMEOUT)?;
    match status.dataplane {
        Some(dp) => Ok(dp.peers.into_iter().map(|p| p.name).collect()),
        None => Err(format!(
            "its data plane does not answer: {}",
            status.dataplane_error.unwrap_or_default()
        )),
    }
}

/// Waits until every node of `nodes` has every other one as a peer.
pub(crate) fn wait_mesh(nodes: &[NodeRecord], timeout: Duration) -> Result<(), LabError> {
    let deadline = Instant::now() + timeout;
    let all: BTreeSet<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let mut done: BTreeSet<String> = BTreeSet::new();
    loop {
        let mut lagging: Option<(&NodeRecord, String)> = None;
        for node in nodes {
            if done.contains(&node.name) {
                continue;
            }
            let mut expected = all.clone();
            expected.remove(&node.name);
            match peer_names(&node.api_socket) {
                Ok(peers) if expected.is_subset(&peers) => {
                    done.insert(node.name.clone());
                }
                Ok(peers) => {
                    let missing: Vec<&str> =
                        expected.difference(&peers).map(String::as_str).collect();
                    lagging.get_or_insert((
                        node,
                        format!(
                            "{} has peers [{}] but not [{}]",
                            node.name,
                            join(&peers),
                            missing.join(", ")
                        ),
                    ));
                }
                Err(e) => {
                    lagging.get_or_insert((node, format!("{}: {e}", node.name)));
                }
            }
        }
        let Some((node, last)) = lagging else {
            return Ok(());
        };
        if Instant::now() >= deadline {
            return Err(LabError::WaitTimeout {
                timeout,
                last,
                log: node.log.clone(),
                log_tail: log_tail(&node.log, 20),
            });
        }
        std::thread::sleep(POLL);
    }
}

fn join(set: &BTreeSet<String>) -> String {
    set.iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}
