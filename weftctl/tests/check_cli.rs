//! `weftctl check` (inventory, run, cluster) and `weftctl lab check`: the
//! connectivity check as it runs on real hosts and in the Vagrant lab, here
//! on a lab cluster whose node namespaces stand in for the hosts: `--exec
//! "ip netns exec weft-<lab>-{name} env WEFT_AGENT_SOCKET=..."` plays the
//! part of `ssh root@{host}`, so the check runs exactly as across machines
//! (each node's checks inside that node, from its own agent's inventory).
//!
//! These tests need root and fail, rather than skip, without it. The lab's
//! binaries are built next to this package's `weftctl` like in
//! `lab_cluster.rs`.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use weft_lab::check::{Connectivity, Inventory};
use weft_lab::{build_binaries_once, Binaries, ClusterGuard, ClusterSpec, DEFAULT_STATE_ROOT};

const WEFTCTL: &str = env!("CARGO_BIN_EXE_weftctl");

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the check tests need root (network namespaces, TUN devices, raw sockets); run them as root"
    );
}

/// `weft-control-plane` and `weft-agent`, built once per test process next
/// to this package's `weftctl` (see `lab_cluster.rs`).
fn binaries() -> Binaries {
    let dir = Path::new(WEFTCTL)
        .parent()
        .expect("CARGO_BIN_EXE_weftctl has a directory");
    build_binaries_once(dir).unwrap_or_else(|e| panic!("cannot build the lab's binaries: {e}"))
}

fn up(tag: &str, nodes: usize, pods_per_node: usize) -> ClusterGuard {
    let name = format!("{tag}{}", std::process::id());
    let mut spec = ClusterSpec::new(&name, nodes, pods_per_node).unwrap();
    spec.binaries = Some(binaries());
    ClusterGuard::up(spec).unwrap()
}

fn weftctl(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(WEFTCTL)
        .args(args)
        .env_remove("CARGO")
        .env_remove("WEFT_LAB")
        .env_remove("WEFT_LAB_STATE_ROOT")
        .env_remove("WEFT_AGENT_SOCKET")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weftctl runs");
    let mut input = child.stdin.take().unwrap();
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `--exec` prefix that runs a command "on" node `{name}` of `lab`:
/// inside its namespace, talking to its agent.
fn exec_prefix(lab: &str) -> String {
    format!(
        "ip netns exec weft-{lab}-{{name}} env WEFT_AGENT_SOCKET={DEFAULT_STATE_ROOT}/{lab}/{{name}}/agent.sock"
    )
}

fn pairs(c: &Connectivity) -> BTreeSet<(String, String)> {
    c.checks
        .iter()
        .map(|x| (x.from.clone(), x.to.clone()))
        .collect()
}

#[test]
fn check_cluster_across_node_namespaces_is_the_lab_check() {
    require_root();
    let cluster = up("ck", 2, 2);
    let lab = cluster.name().to_string();

    // Each node's own inventory, from its agent, inside its namespace.
    let exec = exec_prefix(&lab);
    let mut parts = Vec::new();
    for node in ["n1", "n2"] {
        let mut argv: Vec<String> = exec
            .replace("{name}", node)
            .split_whitespace()
            .map(String::from)
            .collect();
        argv.extend([WEFTCTL.into(), "check".into(), "inventory".into()]);
        let out = Command::new(&argv[0]).args(&argv[1..]).output().unwrap();
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        let part: Inventory = serde_json::from_str(&stdout).unwrap();
        assert_eq!(part.nodes.len(), 1);
        assert_eq!(part.nodes[0].name, node);
        assert_eq!(part.nodes[0].netns, None, "a node pings from where it runs");
        assert_eq!(Some(part.nodes[0].address), cluster.node_overlay(node));
        let mut pods: Vec<&str> = part.pods.iter().map(|p| p.name.as_str()).collect();
        pods.sort();
        assert_eq!(pods, [format!("{node}-p1"), format!("{node}-p2")]);
        for p in &part.pods {
            assert_eq!(p.address, cluster.pod(&p.name).unwrap().ip);
            assert_eq!(p.netns, cluster.pod(&p.name).unwrap().netns);
        }
        parts.push(part);
    }

    // The whole cluster, each node's checks run on that node.
    let out = weftctl(
        &[
            "check",
            "cluster",
            "--node",
            "n1",
            "--node",
            "n2",
            "--exec",
            &exec,
            "--weftctl",
            WEFTCTL,
        ],
        None,
    );
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "check cluster failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.starts_with("CONNECTIVITY (ICMP echo, mean round trip)\nFROM \\ TO  n1-p1"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "All 30 checks passed (pod to pod, pod to node, node to pod, node to node) in"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains('✗'), "{stdout}");

    // The same, as JSON, covers exactly what the lab's own check covers.
    let out = weftctl(
        &[
            "check",
            "cluster",
            "--node",
            "n1",
            "--node",
            "n2",
            "--exec",
            &exec,
            "--weftctl",
            WEFTCTL,
            "-o",
            "json",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out).1);
    let across: Connectivity = serde_json::from_slice(&out.stdout).unwrap();
    let out = weftctl(&["lab", "check", "--name", &lab, "-o", "json"], None);
    assert!(out.status.success(), "{}", text(&out).1);
    let local: Connectivity = serde_json::from_slice(&out.stdout).unwrap();
    assert!(across.all_ok() && local.all_ok());
    assert_eq!(pairs(&across), pairs(&local));
    assert_eq!(pairs(&local), pairs(&cluster.check_connectivity().unwrap()));
    let out = weftctl(&["lab", "check", "--name", &lab], None);
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    assert!(stdout.contains("All 30 checks passed"), "{stdout}");

    // `run` on one node, given the inventories as files: only its rows.
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let f = dir.path().join(format!("n{}.json", i + 1));
        std::fs::write(&f, serde_json::to_string(part).unwrap()).unwrap();
        files.push(f.display().to_string());
    }
    let out = Command::new("ip")
        .args(["netns", "exec", &format!("weft-{lab}-n2"), WEFTCTL])
        .args(["check", "run", "--inventory", &files[0], "--inventory"])
        .arg(&files[1])
        .args(["--node", "n2", "--wait", "5s"])
        .env(
            "WEFT_AGENT_SOCKET",
            format!("{DEFAULT_STATE_ROOT}/{lab}/n2/agent.sock"),
        )
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let rows: Vec<&str> = stdout
        .lines()
        .skip(2)
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(rows, ["n2-p1", "n2-p2", "n2"], "{stdout}");
    assert!(stdout.contains("All 15 checks passed"), "{stdout}");
}

#[test]
fn failed_and_unreachable_checks_are_reported() {
    require_root();
    let cluster = up("cf", 2, 1);
    let lab = cluster.name().to_string();
    let exec = exec_prefix(&lab);

    // A pod that answers nowhere: every check toward it fails, and `run`
    // exits 1 with the failures named.
    let mut inventory = cluster.inventory().unwrap();
    let mut ghost = inventory.pods[1].clone();
    ghost.name = "ghost".into();
    ghost.address = "10.244.250.2".parse().unwrap();
    inventory.pods.push(ghost);
    let input = serde_json::to_string(&inventory).unwrap();
    let out = weftctl(
        &[
            "check",
            "run",
            "--inventory",
            "-",
            "--all",
            "--timeout",
            "1s",
            "-c",
            "1",
        ],
        Some(&input),
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("checks FAILED: n1-p1 -> ghost (10.244.250.2, pod to pod)"),
        "{stdout}"
    );
    assert!(stdout.contains('✗'), "{stdout}");
    // The ghost's own checks leave from n2-p1's namespace; they pass.
    assert!(!stdout.contains("ghost -> "), "{stdout}");

    // A node that cannot be reached: the check names it and fails.
    let out = weftctl(
        &[
            "check",
            "cluster",
            "--node",
            "n1",
            "--node",
            "n3",
            "--exec",
            &exec,
            "--weftctl",
            WEFTCTL,
        ],
        None,
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("n3: gathering its inventory: `ip netns exec weft-"),
        "{stderr}"
    );

    // `run` refuses a node the inventory does not have, and bad input.
    let out = weftctl(
        &["check", "run", "--inventory", "-", "--node", "n9"],
        Some(&input),
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("the inventory has no node \"n9\" (it has n1, n2)"),
        "{stderr}"
    );
    let out = weftctl(
        &["check", "run", "--inventory", "-", "--all"],
        Some("{\"nodes\": 3}"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).1.contains("parsing the inventory -"),
        "{}",
        text(&out).1
    );
    // Without an agent, `inventory` says so.
    let out = weftctl(
        &[
            "check",
            "--agent-socket",
            "/nonexistent/agent.sock",
            "inventory",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).1.contains("/nonexistent/agent.sock"),
        "{}",
        text(&out).1
    );
}
