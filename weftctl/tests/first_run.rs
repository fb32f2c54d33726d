//! What a newcomer walking the README and docs/agent.md by hand runs into,
//! on a lab cluster (real `weft-control-plane` and `weft-agent` processes,
//! each started by `ip netns exec` in a network namespace of its own, as on
//! any namespaced or sandboxed host):
//!
//! - `weftctl pod add NAME` (the agent creates the namespace) gives a
//!   namespace the host sees and that outlives the agent; `weftctl check
//!   run --all` runs through it;
//! - an agent that cannot have `weft0` fails before it joins: no node, no
//!   token use;
//! - `weftctl lab status` tells the truth about agents that were killed or
//!   restarted by hand, and `weftctl lab restart` brings one back.
//!
//! Root only: these fail, rather than skip, without it. Lab names carry the
//! pid; every lab is removed by a guard, also on panic, and so is every
//! namespace a test makes outside the lab.

use std::net::IpAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use weft_lab::{
    build_binaries_once, exec_in, ping, Binaries, ClusterGuard, ClusterSpec, LiveProcess, Signal,
};
use weft_proto::v1::{CreateTokenRequest, ListNodesRequest, ListTokensRequest};

const WEFTCTL: &str = env!("CARGO_BIN_EXE_weftctl");
const PING_TIMEOUT: Duration = Duration::from_secs(3);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the first-run tests need root (network namespaces, TUN devices); run them as root"
    );
}

/// `weft-control-plane` and `weft-agent` next to this package's `weftctl`
/// (built once per test process; see lab_cluster.rs).
fn binaries() -> Binaries {
    let dir = Path::new(WEFTCTL).parent().expect("a directory");
    build_binaries_once(dir).unwrap_or_else(|e| panic!("cannot build the lab's binaries: {e}"))
}

fn spec(tag: &str, nodes: usize, pods_per_node: usize) -> ClusterSpec {
    let name = format!("{tag}{}", std::process::id());
    let mut spec = ClusterSpec::new(&name, nodes, pods_per_node).unwrap();
    spec.binaries = Some(binaries());
    spec
}

/// Deletes a named network namespace on drop (if it is still there).
struct NetnsGuard(String);

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if Path::new("/run/netns").join(&self.0).exists() {
            let _ = Command::new("ip")
                .args(["netns", "delete", &self.0])
                .output();
        }
    }
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `weftctl ARGS` run inside the network namespace `ns` (as `weftctl lab
/// exec` would), with the lab's variables cleared.
fn weftctl_in(ns: &str, args: &[&str]) -> Output {
    exec_in(ns, WEFTCTL, args, COMMAND_TIMEOUT).expect("weftctl runs")
}

/// `weftctl ARGS` on the host.
fn weftctl(args: &[&str]) -> Output {
    Command::new(WEFTCTL)
        .args(args)
        .env_remove("CARGO")
        .env_remove("WEFT_LAB")
        .env_remove("WEFT_LAB_STATE_ROOT")
        .output()
        .expect("weftctl runs")
}

/// Pings `to` from namespace `ns` until a reply comes back, for up to 20 s
/// (a restarted agent's peers handshake on the first packets).
fn reaches(ns: &str, to: IpAddr) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if matches!(ping(ns, to, 3, PING_TIMEOUT), Ok(Some(_))) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
    }
}

#[test]
fn a_pod_the_agent_creates_under_ip_netns_exec_is_the_hosts_and_outlives_it() {
    require_root();
    let mut cluster = ClusterGuard::up(spec("frpod", 1, 0)).unwrap();
    let n1 = cluster.node("n1").unwrap().clone();
    let overlay = n1.overlay.expect("n1 joined");
    let socket = n1.api_socket.display().to_string();
    let pod = format!("frweb{}", std::process::id());
    let _pod_ns = NetnsGuard(pod.clone());

    // The node's admin adds a pod; the agent creates its namespace.
    let out = weftctl_in(&n1.ns, &["pod", "add", &pod, "--agent-socket", &socket]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let prefix = format!("pod {pod} added: ");
    let rest = stdout
        .trim_end()
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{stdout}"));
    let address: IpAddr = rest.split_whitespace().next().unwrap().parse().unwrap();
    assert!(
        rest.ends_with(&format!("on eth0 in /run/netns/{pod}")),
        "{stdout}"
    );

    // The host sees the namespace (this test runs in the host's mount
    // namespace, not the agent's) and the pod's address in it.
    let seen = |what: &str| {
        let out = Command::new("ip")
            .args([
                "netns", "exec", &pod, "ip", "-o", "addr", "show", "dev", "eth0",
            ])
            .output()
            .unwrap();
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{what}: {stderr}");
        assert!(
            stdout.contains(&format!("{address}/32")),
            "{what}: {stdout}"
        );
    };
    seen("after pod add");
    assert!(reaches(&pod, overlay), "the pod does not reach its node");

    // The agent stops: the namespace and its interface stay.
    cluster.stop_agent("n1", Signal::SIGTERM).unwrap();
    seen("with the agent stopped");
    // It starts again and takes the pod back (not "dropping the pod").
    cluster.start_agent("n1").unwrap();
    seen("after the agent's restart");
    assert_eq!(cluster.agent_status("n1").unwrap().pods, 1);
    let log = std::fs::read_to_string(&n1.log).unwrap();
    assert!(!log.contains("dropping the pod"), "{log}");
    assert!(
        reaches(&pod, overlay),
        "the pod does not reach its node after the restart"
    );

    // The connectivity check, run on the node for everything there, runs
    // through the pod's namespace and passes.
    let out = weftctl_in(&n1.ns, &["check", "inventory", "--agent-socket", &socket]);
    let (inventory, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("inventory.json");
    std::fs::write(&file, &inventory).unwrap();
    let file = file.display().to_string();
    let out = weftctl_in(
        &n1.ns,
        &["check", "run", "--all", "--inventory", &file, "--wait", "0"],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "check run --all: {stdout}{stderr}");

    // Deleting the pod removes the host's namespace.
    let out = weftctl_in(&n1.ns, &["pod", "del", &pod, "--agent-socket", &socket]);
    assert!(out.status.success(), "{}", text(&out).1);
    assert!(!Path::new("/run/netns").join(&pod).exists());
    cluster.down().unwrap();
}

#[test]
fn an_agent_that_cannot_have_weft0_registers_no_node_and_spends_no_token() {
    require_root();
    let cluster = ClusterGuard::up(spec("frghost", 1, 0)).unwrap();
    let n1 = cluster.node("n1").unwrap().clone();
    let cp = cluster.control_plane().address.to_string();
    let token = cluster
        .admin(|mut admin| async move {
            admin
                .create_token(CreateTokenRequest {
                    ttl_seconds: 600,
                    usages: 1,
                    description: "ghost".into(),
                })
                .await
                .map(|r| r.into_inner())
        })
        .unwrap();
    let token_id = token.token_string.split('.').next().unwrap().to_string();

    // A second agent in n1's namespace, where n1's agent holds weft0.
    let state = tempfile::tempdir().unwrap();
    let agent = cluster.record().binaries.agent.display().to_string();
    let state_dir = state.path().display().to_string();
    let socket = state.path().join("agent.sock").display().to_string();
    let out = exec_in(
        &n1.ns,
        "env",
        &[
            "WEFT_LOG=error",
            &agent,
            "--control-plane",
            &cp,
            "--token",
            &token.token_string,
            "--ca-hash",
            &token.ca_cert_hash,
            "--name",
            "ghost",
            "--state-dir",
            &state_dir,
            "--listen-port",
            "51999",
            "--api-socket",
            &socket,
        ],
        COMMAND_TIMEOUT,
    )
    .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("the TUN device weft0 is held by another process")
            && stderr.contains("has not joined"),
        "{stderr}"
    );
    // The cause once: not "...: X: X".
    assert_eq!(stderr.matches("held by another process").count(), 1);

    // The control plane has no new node and the token is unused.
    let nodes = cluster
        .admin(|mut admin| async move {
            admin
                .list_nodes(ListNodesRequest::default())
                .await
                .map(|r| r.into_inner().nodes)
        })
        .unwrap();
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["n1"]);
    let tokens = cluster
        .admin(|mut admin| async move {
            admin
                .list_tokens(ListTokensRequest::default())
                .await
                .map(|r| r.into_inner().tokens)
        })
        .unwrap();
    let ghost = tokens.iter().find(|t| t.id == token_id).expect("the token");
    assert_eq!((ghost.used, ghost.usages_left), (0, 1));
    assert!(!state.path().join("node.json").exists());
    // n1's agent is untouched.
    assert_eq!(cluster.agent_status("n1").unwrap().node.name, "n1");
    cluster.down().unwrap();
}

/// `weftctl lab status -o json`'s record of node `node`.
fn node_status(lab: &str, node: &str) -> Value {
    let out = weftctl(&["lab", "status", "--name", lab, "-o", "json"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    doc["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == node)
        .cloned()
        .unwrap()
}

#[test]
fn lab_status_tells_the_truth_and_lab_restart_brings_an_agent_back() {
    require_root();
    let mut cluster = ClusterGuard::up(spec("frrs", 2, 1)).unwrap();
    let lab = cluster.name().to_string();
    let n1_p1 = cluster.pod("n1-p1").unwrap().clone();
    let n2_p1 = cluster.pod("n2-p1").unwrap().clone();

    // Killed: status says so.
    cluster.stop_agent("n2", Signal::SIGKILL).unwrap();
    let n2 = node_status(&lab, "n2");
    assert_eq!(n2["running"], false, "{n2}");
    assert_eq!(n2["process"]["state"], "stopped", "{n2}");

    // `lab restart` brings it back, with its state: no new join.
    let out = weftctl(&["lab", "restart", "n2", "--name", &lab]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.starts_with("Restarted the agent of n2 (it was stopped): running (pid "),
        "{stdout}"
    );
    let n2 = node_status(&lab, "n2");
    assert_eq!(n2["running"], true, "{n2}");
    assert_eq!(n2["process"]["state"], "running", "{n2}");
    assert_eq!(cluster.agent_status("n2").unwrap().pods, 1);
    // The restarted side sends first (its peer's old session is void).
    assert!(reaches(&n2_p1.ns, n1_p1.ip), "n2-p1 -> n1-p1");
    assert!(reaches(&n1_p1.ns, n2_p1.ip), "n1-p1 -> n2-p1");

    // Restarted by hand, with the command line lab.json holds: status
    // finds it, by its namespace and state dir.
    let lab_state = weft_lab::Lab::open(cluster.name(), Path::new(weft_lab::DEFAULT_STATE_ROOT))
        .unwrap()
        .state()
        .clone();
    let record = lab_state
        .processes
        .iter()
        .find(|p| p.label == "n2")
        .unwrap()
        .clone();
    let pid = node_status(&lab, "n2")["pid"].as_u64().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
        Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while cluster.live_process("n2") != LiveProcess::Stopped {
        assert!(Instant::now() < deadline, "n2's agent did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut by_hand = Command::new("ip")
        .args(["netns", "exec", &record.ns, &record.program])
        .args(&record.args)
        .env("WEFT_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while cluster.agent_status("n2").is_err() {
        assert!(
            Instant::now() < deadline,
            "the agent started by hand does not answer"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let n2 = node_status(&lab, "n2");
    assert_eq!(n2["running"], true, "{n2}");
    assert_eq!(n2["process"]["state"], "restarted_by_hand", "{n2}");
    assert_eq!(n2["pid"], by_hand.id(), "{n2}");
    let table = text(&weftctl(&["lab", "status", "--name", &lab])).0;
    assert!(
        table.contains(&format!(
            "running (restarted by hand, pid {})",
            by_hand.id()
        )),
        "{table}"
    );

    // `lab restart` stops that one too and starts the recorded command.
    let out = weftctl(&["lab", "restart", "n2", "--name", &lab]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains(&format!(
            "it was running (restarted by hand, pid {})",
            by_hand.id()
        )),
        "{stdout}"
    );
    assert!(by_hand.wait().is_ok());
    assert_eq!(node_status(&lab, "n2")["process"]["state"], "running");
    assert!(
        reaches(&n2_p1.ns, n1_p1.ip),
        "n2-p1 -> n1-p1 after the second restart"
    );
    cluster.down().unwrap();
}
