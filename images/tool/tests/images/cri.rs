//! The kubelet's path: containerd's CRI with weft-cni as its CNI, on two
//! lab nodes. Kubelet's calls (RunPodSandbox, PodSandboxStatus,
//! StopPodSandbox, RemovePodSandbox) come from a small CRI client.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use weft_agent_api::{AgentClient, Pod};
use weft_e2e::{E2eError, Result};
use weft_lab::{ping_stats_in, Binaries, ClusterGuard, ClusterSpec, NodeRecord};

use crate::support::containerd::{runtime, Cni, Containerd};
use crate::support::cri_api::{
    CriClient, LinuxPodSandboxConfig, PodSandboxConfig, PodSandboxMetadata, SANDBOX_READY,
};
use crate::support::{bin_dir, repo, require_root, run_ok, unique, wait_until, Stopwatch};

const PAUSE: &str = "docker.io/weft/pause:1";

/// One node's containerd and its sandbox.
struct NodeRuntime {
    node: NodeRecord,
    containerd: Containerd,
    sandbox: String,
    ip: IpAddr,
    netns: PathBuf,
}

#[test]
fn sandboxes_on_two_nodes_get_weft_addresses_reach_each_other_and_go_cleanly() -> Result<()> {
    require_root()?;
    let mut clock = Stopwatch::start("cri");
    let bins = bin_dir()?;
    let tmp = tempfile::tempdir().map_err(|e| E2eError::io("tempdir", e))?;
    let pause = tmp.path().join("pause.tar");
    run_ok(
        Command::new(repo().join("images/pause/build"))
            .arg("--out")
            .arg(&pause)
            .arg("--tool")
            .arg(bins.join("weft-image")),
        Duration::from_secs(120),
    )?;

    let mut spec = ClusterSpec::new(&unique("cri"), 2, 0)?;
    spec.binaries = Some(Binaries::in_dir(&bins));
    let cluster = ClusterGuard::up(spec)?;
    clock.lap("pause image built, lab of 2 nodes up");

    let rt = runtime()?;
    let mut nodes = Vec::new();
    for node in cluster.nodes() {
        let cni = cni_dirs(tmp.path(), node, &bins)?;
        let containerd = Containerd::start(Some(&node.ns), PAUSE, Some(&cni))?;
        containerd.ctr(
            &[
                "-n",
                "k8s.io",
                "images",
                "import",
                &pause.display().to_string(),
            ],
            Duration::from_secs(60),
        )?;
        nodes.push((node.clone(), containerd));
    }
    clock.lap("containerd up on both nodes, pause image imported");

    let mut runtimes = Vec::new();
    for (node, mut containerd) in nodes {
        let mut cri = containerd.cri(&rt)?;
        let name = format!("web-{}", node.name);
        let config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.clone(),
                uid: format!("uid-{}-{}", node.name, std::process::id()),
                namespace: "default".into(),
                attempt: 0,
            }),
            hostname: name.clone(),
            log_directory: tmp
                .path()
                .join(format!("logs-{}", node.name))
                .display()
                .to_string(),
            linux: Some(LinuxPodSandboxConfig::default()),
            ..PodSandboxConfig::default()
        };
        let sandbox = rt
            .block_on(cri.run_pod_sandbox(config))
            .map_err(|e| E2eError::failed(format!("{e}\n{}", containerd.log_tail())))?;
        containerd.track(&sandbox);
        let (ip, netns) = sandbox_network(&rt, &mut cri, &sandbox)?;
        // A weft address of the node's pod CIDR, and the agent's record of
        // the pod with its Kubernetes name (from CNI_ARGS).
        let cidr = node
            .pod_cidr
            .ok_or_else(|| E2eError::failed(format!("{} has no pod CIDR", node.name)))?;
        assert!(cidr.contains(&ip), "{ip} is not in {}'s {cidr}", node.name);
        let pod = agent_pod(&node, ip)?
            .ok_or_else(|| E2eError::failed(format!("agent {} has no pod {ip}", node.name)))?;
        assert_eq!(pod.pod_namespace.as_deref(), Some("default"));
        assert_eq!(pod.pod_name.as_deref(), Some(name.as_str()));
        assert!(pod.id.starts_with(&sandbox), "{} vs {sandbox}", pod.id);
        assert!(pod.attached);
        runtimes.push(NodeRuntime {
            node,
            containerd,
            sandbox,
            ip,
            netns,
        });
    }
    clock.lap("a sandbox on each node (RunPodSandbox, PodSandboxStatus)");

    reach_each_other(&runtimes)?;
    clock.lap("sandboxes ping each other across the nodes");

    // containerd restarts; the sandboxes keep their network.
    for r in &mut runtimes {
        r.containerd.restart()?;
        let mut cri = r.containerd.cri(&rt)?;
        let (ip, netns) = sandbox_network(&rt, &mut cri, &r.sandbox)?;
        assert_eq!(
            (ip, &netns),
            (r.ip, &r.netns),
            "{} after a restart",
            r.node.name
        );
    }
    reach_each_other(&runtimes)?;
    clock.lap("containerd restarted on both nodes; still reachable");

    // Stop and remove: CNI DEL reaches the agent, which frees the address.
    for r in &mut runtimes {
        let mut cri = r.containerd.cri(&rt)?;
        rt.block_on(cri.stop_pod_sandbox(&r.sandbox))
            .map_err(E2eError::Failed)?;
        assert!(
            agent_pod(&r.node, r.ip)?.is_none(),
            "agent {} still has pod {} after StopPodSandbox",
            r.node.name,
            r.ip
        );
        rt.block_on(cri.remove_pod_sandbox(&r.sandbox))
            .map_err(E2eError::Failed)?;
        r.containerd.untrack(&r.sandbox);
        let gone = rt.block_on(cri.pod_sandbox_status(&r.sandbox, false));
        assert!(gone.is_err(), "sandbox {} still there", r.sandbox);
        let status = AgentClient::connect(&r.node.api_socket)
            .and_then(|mut c| c.status())
            .map_err(|e| E2eError::failed(e.to_string()))?;
        assert_eq!(status.pods, 0, "agent {} still counts pods", r.node.name);
        assert!(!r.netns.exists(), "{} still exists", r.netns.display());
    }
    clock.lap("StopPodSandbox + RemovePodSandbox: pods and namespaces gone");

    drop(runtimes);
    cluster.down()?;
    clock.lap("torn down");
    Ok(())
}

/// Node `node`'s CNI: weft-cni (talking to its agent), Debian's loopback
/// (containerd sets up each sandbox's `lo` with it), portmap, bandwidth;
/// the list is the repository's template at cniVersion 1.0.0 (Debian's
/// plugins stop there).
fn cni_dirs(root: &Path, node: &NodeRecord, bins: &Path) -> Result<Cni> {
    let cni = Cni {
        bin_dir: root.join(format!("cni-bin-{}", node.name)),
        conf_dir: root.join(format!("cni-conf-{}", node.name)),
    };
    let io = |e| E2eError::io(format!("CNI dirs of {}", node.name), e);
    std::fs::create_dir_all(&cni.bin_dir).map_err(io)?;
    std::fs::create_dir_all(&cni.conf_dir).map_err(io)?;
    std::os::unix::fs::symlink(bins.join("weft-cni"), cni.bin_dir.join("weft-cni")).map_err(io)?;
    for plugin in ["loopback", "portmap", "bandwidth"] {
        let src = Path::new("/usr/lib/cni").join(plugin);
        if !src.exists() {
            return Err(E2eError::failed(format!(
                "{} is missing: apt-get install containernetworking-plugins",
                src.display()
            )));
        }
        std::os::unix::fs::symlink(&src, cni.bin_dir.join(plugin)).map_err(io)?;
    }
    let template = std::fs::read_to_string(repo().join("cni/10-weft.conflist")).map_err(io)?;
    let list = template.replace("\"1.1.0\"", "\"1.0.0\"").replace(
        "/run/weft/agent.sock",
        &node.api_socket.display().to_string(),
    );
    std::fs::write(cni.conf_dir.join("10-weft.conflist"), list).map_err(io)?;
    Ok(cni)
}

/// The sandbox's IP (PodSandboxStatus) and its network namespace (the
/// pause process's, from the verbose info), once it is ready.
fn sandbox_network(
    rt: &tokio::runtime::Runtime,
    cri: &mut CriClient,
    id: &str,
) -> Result<(IpAddr, PathBuf)> {
    let status = rt
        .block_on(cri.pod_sandbox_status(id, true))
        .map_err(E2eError::Failed)?;
    let s = status
        .status
        .ok_or_else(|| E2eError::failed("PodSandboxStatus without a status"))?;
    if s.state != SANDBOX_READY {
        return Err(E2eError::failed(format!(
            "sandbox {id} is not ready ({})",
            s.state
        )));
    }
    let ip: IpAddr = s
        .network
        .map(|n| n.ip)
        .unwrap_or_default()
        .parse()
        .map_err(|_| E2eError::failed(format!("sandbox {id} has no IP")))?;
    let info: serde_json::Value = status
        .info
        .get("info")
        .and_then(|i| serde_json::from_str(i).ok())
        .ok_or_else(|| E2eError::failed("PodSandboxStatus verbose info has no 'info' JSON"))?;
    let pid = info["pid"]
        .as_u64()
        .ok_or_else(|| E2eError::failed(format!("no pid in the sandbox info: {info}")))?;
    let netns = PathBuf::from(
        info["runtimeSpec"]["linux"]["namespaces"]
            .as_array()
            .and_then(|a| a.iter().find(|n| n["type"] == "network"))
            .and_then(|n| n["path"].as_str())
            .unwrap_or_default(),
    );
    // The pause process is in that namespace.
    let same = std::fs::metadata(format!("/proc/{pid}/ns/net"))
        .and_then(|a| std::fs::metadata(&netns).map(|b| (a, b)))
        .map(|(a, b)| {
            use std::os::unix::fs::MetadataExt;
            a.ino() == b.ino()
        })
        .unwrap_or(false);
    if !same {
        return Err(E2eError::failed(format!(
            "sandbox {id}: pid {pid} is not in {}",
            netns.display()
        )));
    }
    Ok((ip, netns))
}

/// The pod with address `ip` in `node`'s agent, if any.
fn agent_pod(node: &NodeRecord, ip: IpAddr) -> Result<Option<Pod>> {
    let pods = AgentClient::connect(&node.api_socket)
        .and_then(|mut c| c.pod_list())
        .map_err(|e| E2eError::failed(format!("pod list of {}: {e}", node.name)))?;
    Ok(pods.into_iter().find(|p| p.address == ip))
}

/// Each sandbox pings the others, from inside its own network namespace.
fn reach_each_other(runtimes: &[NodeRuntime]) -> Result<()> {
    for a in runtimes {
        for b in runtimes {
            if a.sandbox == b.sandbox {
                continue;
            }
            wait_until(
                &format!("{} -> {} ({})", a.node.name, b.node.name, b.ip),
                Duration::from_secs(10),
                || match ping_stats_in(Some(&a.netns), b.ip, 1, Duration::from_secs(1)) {
                    Ok(stats) if stats.average().is_some() => Ok(()),
                    Ok(_) => Err("no reply".to_string()),
                    Err(e) => Err(e.to_string()),
                },
            )?;
        }
    }
    Ok(())
}
