//! Whole weft clusters on one machine: the `Cluster` library and the
//! `weftctl lab` commands, on real network namespaces with the real
//! `weft-control-plane` and `weft-agent` binaries.
//!
//! These tests need root and fail, rather than skip, without it. Every lab
//! name carries this test process's pid, so they run in parallel with each
//! other and with other runs; every test removes its lab, through a
//! [`ClusterGuard`] (or a [`Down`] guard for the CLI) even when it panics.
//!
//! # The binaries
//!
//! The lab runs `weft-control-plane` and `weft-agent`, which are binaries of
//! other packages: cargo builds them for `cargo test --workspace` (those
//! packages have integration tests of their own), but not for
//! `cargo test -p weftctl`, and `CARGO_BIN_EXE_*` only names binaries of the
//! package under test. So [`binaries`] runs, once per test process,
//! `cargo build --bins -p weft-control-plane -p weft-node-agent` into the
//! very profile directory that holds this package's `weftctl` (derived from
//! `CARGO_BIN_EXE_weftctl`, so the profile and target dir match), with the
//! `cargo` that runs the tests (`$CARGO`). When they are fresh this is a
//! no-op taking well under a second; when they are missing or stale it
//! builds them, so the lab never runs an old agent. The `weftctl` binary
//! then finds them next to itself, as it does for users.

use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use weft_lab::{
    build_binaries_once, list_namespaces, ping, teardown, Binaries, CheckKind, ClusterGuard,
    ClusterSpec, LabError, LabName, Signal, DEFAULT_STATE_ROOT,
};

const WEFTCTL: &str = env!("CARGO_BIN_EXE_weftctl");
const PING_TIMEOUT: Duration = Duration::from_secs(3);

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the lab tests need root (network namespaces, TUN devices); run them as root"
    );
}

/// `weft-control-plane` and `weft-agent`, built (once per test process) next
/// to this package's `weftctl`; see the module docs.
fn binaries() -> Binaries {
    let dir = Path::new(WEFTCTL)
        .parent()
        .expect("CARGO_BIN_EXE_weftctl has a directory");
    build_binaries_once(dir).unwrap_or_else(|e| panic!("cannot build the lab's binaries: {e}"))
}

/// A lab name unique to this test process: `<tag><pid>`.
fn unique(tag: &str) -> String {
    format!("{tag}{}", std::process::id())
}

fn spec(tag: &str, nodes: usize, pods_per_node: usize) -> ClusterSpec {
    let mut spec = ClusterSpec::new(&unique(tag), nodes, pods_per_node).unwrap();
    spec.binaries = Some(binaries());
    spec
}

/// Whether `pid` has exited (gone, or a zombie nobody reaped yet).
fn is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// Nothing of lab `name` is left: no namespace, no mount of one, no process,
/// no state dir, no link of it in this namespace.
fn assert_nothing_left(name: &str, pids: &[u32]) {
    let lab = LabName::new(name).unwrap();
    let prefix = lab.prefix();
    let namespaces: Vec<String> = list_namespaces()
        .unwrap()
        .into_iter()
        .filter(|ns| ns.starts_with(&prefix))
        .collect();
    assert!(namespaces.is_empty(), "namespaces left: {namespaces:?}");
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    let needle = format!("/run/netns/{prefix}");
    let left: Vec<&str> = mounts.lines().filter(|l| l.contains(&needle)).collect();
    assert!(left.is_empty(), "namespace mounts left: {left:?}");
    let alive: Vec<u32> = pids.iter().copied().filter(|p| !is_gone(*p)).collect();
    assert!(alive.is_empty(), "processes left: {alive:?}");
    let dir = Path::new(DEFAULT_STATE_ROOT).join(name);
    assert!(!dir.exists(), "state dir left: {}", dir.display());
    // The lab makes its links inside its own namespaces only.
    let links = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    for bad in ["v-cp@", "v-n1@", "weft0"] {
        assert!(
            !links.contains(bad),
            "link {bad} in the test's namespace:\n{links}"
        );
    }
}

#[test]
fn three_nodes_two_pods_each_reach_everything() {
    require_root();
    let cluster = ClusterGuard::up(spec("cl", 3, 2)).unwrap();
    let name = cluster.name().to_string();

    let nodes: Vec<&str> = cluster.nodes().iter().map(|n| n.name.as_str()).collect();
    assert_eq!(nodes, ["n1", "n2", "n3"]);
    for (k, node) in cluster.nodes().iter().enumerate() {
        assert_eq!(node.ns, format!("weft-{name}-n{}", k + 1));
        assert_eq!(node.underlay.to_string(), format!("192.0.2.{}", k + 2));
        let cidr = node.pod_cidr.expect("pod CIDR recorded");
        let overlay = node.overlay.expect("overlay address recorded");
        assert!(cidr.contains(&overlay), "{overlay} not in {cidr}");
        assert!(node.api_socket.exists(), "{}", node.api_socket.display());
        assert!(cluster.running_pid(&node.name).is_some());
        let status = cluster.agent_status(&node.name).unwrap();
        assert_eq!(status.node.name, node.name);
        assert_eq!(status.pods, 2);
        assert_eq!(status.dataplane.unwrap().peers.len(), 2);
    }
    assert!(cluster.admin_conf().exists());
    assert!(cluster.running_pid("cp").is_some());

    let pods: Vec<&str> = cluster.pods().iter().map(|p| p.name.as_str()).collect();
    assert_eq!(pods, ["n1-p1", "n1-p2", "n2-p1", "n2-p2", "n3-p1", "n3-p2"]);
    for pod in cluster.pods() {
        let node = cluster.node(&pod.node).unwrap();
        assert!(node.pod_cidr.unwrap().contains(&pod.ip));
        assert_eq!(pod.netns, Path::new("/run/netns").join(&pod.ns));
        assert!(pod.ns.starts_with(&format!("weft-{name}-{}-p", pod.node)));
    }

    // Everything lab.json holds, another handle sees.
    let other = weft_lab::Cluster::open(cluster.name(), Path::new(DEFAULT_STATE_ROOT)).unwrap();
    assert_eq!(other.record(), cluster.record());

    let c = cluster.check_connectivity().unwrap();
    let failed: Vec<String> = c
        .failures()
        .map(|f| format!("{} -> {} ({})", f.from, f.to, f.to_ip))
        .collect();
    assert!(failed.is_empty(), "failed checks: {failed:?}");
    let count = |kind| c.checks.iter().filter(|x| x.kind == kind).count();
    assert_eq!(count(CheckKind::PodToPod), 6 * 5);
    assert_eq!(count(CheckKind::PodToNode), 6 * 3);
    assert_eq!(count(CheckKind::NodeToPod), 3 * 6);
    assert_eq!(count(CheckKind::NodeToNode), 3 * 2);
    assert!(c.checks.iter().all(|x| x.stats.average().is_some()));

    cluster.down().unwrap();
    assert_nothing_left(&name, &[]);
}

#[test]
fn agents_and_control_plane_restart_and_a_node_joins_later() {
    require_root();
    let mut cluster = ClusterGuard::up(spec("rs", 2, 1)).unwrap();
    let name = cluster.name().to_string();
    let pod_ip = |c: &ClusterGuard, pod: &str| -> IpAddr { c.pod(pod).unwrap().ip };
    let reach = |c: &ClusterGuard, from: &str, to: &str| {
        let ns = c.pod(from).unwrap().ns.clone();
        ping(&ns, pod_ip(c, to), 3, PING_TIMEOUT).unwrap().is_some()
    };
    assert!(reach(&cluster, "n1-p1", "n2-p1"));

    // An agent stops: its API goes; it starts again from its state dir (no
    // token) with the same CIDR and pods.
    let cidr = cluster.node("n2").unwrap().pod_cidr;
    let old_pid = cluster.running_pid("n2").unwrap();
    cluster.stop_agent("n2", Signal::SIGTERM).unwrap();
    assert!(cluster.running_pid("n2").is_none());
    assert!(is_gone(old_pid));
    assert!(cluster.agent_status("n2").is_err());
    cluster.stop_agent("n2", Signal::SIGTERM).unwrap(); // not running: fine
                                                        // The check notices: everything to and from n2's pod fails, the rest works.
    let c = cluster.check_connectivity().unwrap();
    assert!(!c.all_ok());
    for check in &c.checks {
        let involves_n2 = [&check.from, &check.to].iter().any(|x| x.starts_with("n2"));
        assert_eq!(check.ok(), !involves_n2, "{} -> {}", check.from, check.to);
    }
    cluster.start_agent("n2").unwrap();
    let status = cluster.agent_status("n2").unwrap();
    assert_eq!(status.node.pod_cidr, cidr.unwrap().to_string());
    assert_eq!(status.pods, 1);
    cluster.wait_for_mesh(Duration::from_secs(20)).unwrap();
    // From the restarted side first: its agent has no WireGuard session
    // until it sends, and n1's old session is void (n1 only re-handshakes
    // after its rekey timeout, ~10 s); sending from n2 makes the handshake.
    assert!(reach(&cluster, "n2-p1", "n1-p1"));
    assert!(reach(&cluster, "n1-p1", "n2-p1"));

    // SIGKILL too.
    cluster.stop_agent("n1", Signal::SIGKILL).unwrap();
    assert!(cluster.running_pid("n1").is_none());
    cluster.start_agent("n1").unwrap();
    cluster.wait_for_mesh(Duration::from_secs(20)).unwrap();
    assert!(reach(&cluster, "n1-p1", "n2-p1"));

    // The control plane goes away: tunnels keep working; it comes back with
    // the same state and answers Admin calls.
    cluster.stop_control_plane(Signal::SIGTERM).unwrap();
    assert!(cluster.running_pid("cp").is_none());
    assert!(reach(&cluster, "n2-p1", "n1-p1"));
    cluster.start_control_plane().unwrap();
    let nodes = cluster
        .admin(|mut admin| async move {
            let r = admin
                .list_nodes(weft_proto::v1::ListNodesRequest {})
                .await?;
            Ok(r.into_inner().nodes.len())
        })
        .unwrap();
    assert_eq!(nodes, 2);

    // A node joins later with a fresh token, gets its pod, and every node
    // peers with it.
    let n3 = cluster.add_node().unwrap();
    assert_eq!(n3.name, "n3");
    assert_eq!(n3.ns, format!("weft-{name}-n3"));
    assert_eq!(n3.underlay.to_string(), "192.0.2.4");
    assert!(n3.pod_cidr.is_some());
    assert_eq!(cluster.pods().len(), 3);
    let c = cluster.check_connectivity().unwrap();
    let failed: Vec<String> = c
        .failures()
        .map(|f| format!("{} -> {}", f.from, f.to))
        .collect();
    assert!(failed.is_empty(), "failed checks: {failed:?}");
    assert!(c.get("n3-p1", "n1-p1").is_some());

    // Bad names are errors, not panics.
    assert!(cluster.stop_agent("n9", Signal::SIGTERM).is_err());
    assert!(cluster.agent_status("nope").is_err());

    let pids: Vec<u32> = cluster
        .lab()
        .state()
        .processes
        .iter()
        .map(|p| p.pid)
        .collect();
    cluster.down().unwrap();
    assert_nothing_left(&name, &pids);
}

#[test]
fn missing_binaries_and_a_lab_that_is_up_are_refused() {
    require_root();
    let empty = tempfile::tempdir().unwrap();
    let mut s = spec("mb", 1, 1);
    s.binaries = Some(Binaries::in_dir(empty.path()));
    let err = ClusterGuard::up(s).unwrap_err();
    assert!(matches!(err, LabError::MissingBinary { .. }), "{err}");
    assert!(err.to_string().contains("cargo build"), "{err}");
    assert_nothing_left(&unique("mb"), &[]);

    let first = ClusterGuard::up(spec("au", 1, 1)).unwrap();
    let err = ClusterGuard::up(spec("au", 1, 1)).unwrap_err();
    assert!(matches!(err, LabError::AlreadyUp { .. }), "{err}");
    // The first is untouched.
    assert!(first.running_pid("n1").is_some());
    assert!(first.agent_status("n1").is_ok());
    first.down().unwrap();
}

#[test]
fn a_failing_agent_fails_up_with_its_log_and_leaves_nothing() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let agent = dir.path().join("weft-agent");
    std::fs::write(
        &agent,
        "#!/bin/sh\necho \"agent says: no TUN for you\" >&2\nexit 3\n",
    )
    .unwrap();
    std::fs::set_permissions(&agent, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut s = spec("fa", 2, 1);
    s.binaries = Some(Binaries {
        control_plane: binaries().control_plane,
        agent,
    });
    let err = ClusterGuard::up(s).unwrap_err().to_string();
    assert!(err.contains("waiting for agent n1 to join"), "{err}");
    assert!(err.contains("exit status: 3"), "{err}");
    assert!(err.contains("agent says: no TUN for you"), "{err}");
    assert_nothing_left(&unique("fa"), &[]);
}

/// Tears a lab that the CLI brought up down when dropped.
struct Down(String);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = teardown(
            &LabName::new(&self.0).unwrap(),
            Path::new(DEFAULT_STATE_ROOT),
        );
    }
}

/// Runs the weftctl binary. `CARGO` is removed so that `lab up` does not
/// build (the test built the binaries already).
fn weftctl(args: &[&str]) -> Output {
    Command::new(WEFTCTL)
        .args(args)
        .env_remove("CARGO")
        .env_remove("WEFT_LAB")
        .env_remove("WEFT_LAB_STATE_ROOT")
        .output()
        .expect("weftctl runs")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn weftctl_lab_up_status_exec_logs_down() {
    require_root();
    binaries();
    let name = unique("cli");
    let _down = Down(name.clone());

    let out = weftctl(&[
        "lab",
        "up",
        "--name",
        &name,
        "--nodes",
        "3",
        "--pods-per-node",
        "2",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "lab up failed:\n{stdout}\n{stderr}");
    for needle in [
        "NODES",
        "POD CIDR",
        "ENDPOINT",
        "PEERS",
        "PODS",
        "CONNECTIVITY",
        "FROM \\ TO",
        "All 72 checks passed",
        "Total time:",
        "lab exec",
        "lab down",
    ] {
        assert!(stdout.contains(needle), "no {needle:?} in:\n{stdout}");
    }
    assert!(stdout.contains('✓') && !stdout.contains('✗'), "{stdout}");
    for pod in ["n1-p1", "n2-p2", "n3-p1"] {
        assert!(stdout.contains(pod), "no {pod} in:\n{stdout}");
    }
    // Not a terminal: plain progress lines, no spinner escapes.
    assert!(stderr.contains("starting the control plane"), "{stderr}");
    assert!(!stderr.contains('\x1b'), "{stderr:?}");

    // status -o json: everything a script needs.
    let out = weftctl(&["lab", "status", "--name", &name, "-o", "json"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["name"], name.as_str());
    assert_eq!(doc["control_plane"]["running"], true);
    let nodes = doc["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    assert!(nodes
        .iter()
        .all(|n| n["running"] == true && n["peers"].as_array().unwrap().len() == 2));
    let pods = doc["pods"].as_array().unwrap();
    assert_eq!(pods.len(), 6);
    let pod = pods.iter().find(|p| p["name"] == "n2-p1").unwrap();
    let pod_ip = pod["ip"].as_str().unwrap().to_string();
    assert_eq!(pod["netns"], format!("/run/netns/weft-{name}-n2-p1"));
    let mut pids: Vec<u32> = nodes
        .iter()
        .map(|n| n["pid"].as_u64().unwrap() as u32)
        .collect();
    pids.push(doc["control_plane"]["pid"].as_u64().unwrap() as u32);

    // The table form too.
    let out = weftctl(&["lab", "status", "--name", &name]);
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    assert!(
        stdout.contains("running (pid") && stdout.contains(&pod_ip),
        "{stdout}"
    );

    // exec: inside the pod's namespace, its address on eth0.
    let out = weftctl(&[
        "lab", "exec", "--name", &name, "n2-p1", "--", "ip", "-j", "addr",
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    let addrs: Value = serde_json::from_slice(&out.stdout).unwrap();
    let has_ip = addrs.as_array().unwrap().iter().any(|link| {
        link["ifname"] == "eth0"
            && link["addr_info"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["local"] == pod_ip.as_str())
    });
    assert!(has_ip, "no {pod_ip} on eth0: {addrs}");
    // Exit codes pass through; unknown targets are refused with the choices.
    let out = weftctl(&[
        "lab", "exec", "--name", &name, "n1-p2", "--", "sh", "-c", "exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7));
    let out = weftctl(&["lab", "exec", "--name", &name, "n9-p9", "--", "true"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("no pod or node") && stderr.contains("n1-p1"),
        "{stderr}"
    );
    // Inside a node, weftctl talks to that node's agent.
    let out = weftctl(&[
        "lab", "exec", "--name", &name, "n3", "--", WEFTCTL, "status",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("n3 (id"), "{stdout}");
    // And each agent serves Prometheus metrics on the node's loopback
    // (fetched with bash's /dev/tcp: no curl needed).
    let scrape = "exec 3<>/dev/tcp/127.0.0.1/9590 && \
                  printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3";
    let out = weftctl(&[
        "lab", "exec", "--name", &name, "n2", "--", "bash", "-c", scrape,
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.starts_with("HTTP/1.0 200"), "{stdout}");
    for line in [
        "weft_dataplane_up 1",
        "weft_control_plane_connected 1",
        "weft_peers 2",
    ] {
        assert!(stdout.lines().any(|l| l == line), "{line}: {stdout}");
    }
    assert!(
        stdout.contains("weft_peer_last_handshake_seconds{peer=\"n1\"}"),
        "{stdout}"
    );

    // logs
    let out = weftctl(&["lab", "logs", "--name", &name, "cp"]);
    let (stdout, _) = text(&out);
    assert!(
        out.status.success() && stdout.contains("node joined"),
        "{stdout}"
    );
    let out = weftctl(&["lab", "logs", "--name", &name, "n1", "-n", "3"]);
    assert!(out.status.success());
    assert!(text(&out).0.lines().count() <= 3);
    assert!(!weftctl(&["lab", "logs", "--name", &name, "n7"])
        .status
        .success());

    // A second up of the same name fails cleanly and leaves the lab alone.
    let out = weftctl(&["lab", "up", "--name", &name]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("already up"), "{stderr}");
    assert!(stderr.contains("lab down"), "{stderr}");
    let out = weftctl(&["lab", "status", "--name", &name, "-o", "json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["nodes"].as_array().unwrap().len(), 3);
    assert!(pids.iter().all(|p| !is_gone(*p)));

    // down removes it all; a second down has nothing to do.
    let out = weftctl(&["lab", "down", "--name", &name]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("is down"), "{stdout}");
    assert_nothing_left(&name, &pids);
    let out = weftctl(&["lab", "down", "--name", &name]);
    assert!(out.status.success());
    assert!(text(&out).0.contains("not up"));
    // And status says so.
    let out = weftctl(&["lab", "status", "--name", &name]);
    assert!(!out.status.success());
    assert!(text(&out).1.contains("not up"));
}

#[test]
fn lab_down_with_nothing_up_succeeds() {
    require_root();
    let name = unique("none");
    let out = weftctl(&["lab", "down", "--name", &name]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("nothing to remove"), "{stdout}");
    // A bad name is one clear line, exit 1.
    let out = weftctl(&["lab", "down", "--name", "Bad_Name"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("invalid lab name"), "{stderr}");
}
