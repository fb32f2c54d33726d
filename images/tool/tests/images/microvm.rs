//! Two microVM nodes from `images/node` joined to a control plane in the
//! test's own namespace, a pod each: ping and a checksummed 10 MiB TCP
//! transfer between the pods, across the VMs, through weft.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use weft_e2e::{E2eError, Result};
use weft_images::vm;

use crate::support::{
    bin_dir, repo, require_root, run, run_ok, unique, wait_until, ChildGuard, NetnsGuard, Stopwatch,
};

/// The bound of `run up` (boot to ready, two VMs under software emulation
/// on a busy 2-core machine).
const BOOT: Duration = Duration::from_secs(600);
/// 10 MiB.
const BLOB: u64 = 10 * 1024 * 1024;

/// A microVM cluster of `images/node/run`, removed (`run down`) on drop.
struct VmCluster {
    name: String,
    state_root: PathBuf,
}

impl VmCluster {
    fn dir(&self) -> PathBuf {
        self.state_root.join(&self.name)
    }

    /// Runs `script` in node `node` (n1, n2) through its command channel.
    fn exec(&self, node: &str, script: &str, timeout: Duration) -> Result<String> {
        let socket = self.dir().join(format!("{node}.ctl"));
        let out = vm::exec(&socket, script, timeout)
            .map_err(|e| E2eError::failed(format!("{node}: {e}\n{}", self.console(node))))?;
        if out.status != 0 {
            return Err(E2eError::failed(format!(
                "{node}: `{script}` exited {}: {}",
                out.status,
                out.text()
            )));
        }
        Ok(out.text())
    }

    /// The end of node `node`'s console.
    fn console(&self, node: &str) -> String {
        let text = std::fs::read(self.dir().join(format!("{node}.console")))
            .map(|b| String::from_utf8_lossy(&b).replace(['\r', '\u{1b}'], ""))
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "---- console of {node} (last 40 lines) ----\n{}",
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    }

    /// `key=value` lines of `nK.info` (address, cidr, joined, ready, pods).
    fn info(&self, node: &str) -> HashMap<String, String> {
        std::fs::read_to_string(self.dir().join(format!("{node}.info")))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

impl Drop for VmCluster {
    fn drop(&mut self) {
        let _ = run(
            Command::new(repo().join("images/node/run"))
                .args(["down", "--name", &self.name])
                .env("WEFT_VM_STATE", &self.state_root),
            Duration::from_secs(60),
        );
    }
}

#[test]
fn two_microvm_nodes_ping_and_move_10_mib_through_weft() -> Result<()> {
    require_root()?;
    let mut clock = Stopwatch::start("microvm");
    let bins = bin_dir()?;
    let tmp = tempfile::tempdir().map_err(|e| E2eError::io("tempdir", e))?;
    let image = tmp.path().join("image");
    let built = run_ok(
        Command::new(repo().join("images/node/build"))
            .arg("--bin-dir")
            .arg(&bins)
            .arg("--out")
            .arg(&image)
            .args(["--compress", "none"]),
        Duration::from_secs(600),
    )?;
    eprintln!("{}", built.trim_end());
    clock.lap("node image built");

    // The test's own namespace: a bridge for the VMs' taps, and the
    // control plane on it.
    let ns = NetnsGuard::add(&unique("wvm"))?;
    ns.ip(&["link", "add", "br0", "type", "bridge"])?;
    ns.ip(&["addr", "add", "192.0.2.1/24", "dev", "br0"])?;
    ns.ip(&["link", "set", "br0", "up"])?;
    let cp_dir = tmp.path().join("cp");
    let mut cp = ChildGuard::spawn(
        Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .arg(bins.join("weft-control-plane"))
            .args([
                "--listen",
                "192.0.2.1:7443",
                "--advertise-address",
                "192.0.2.1:7443",
            ])
            .arg("--state-dir")
            .arg(&cp_dir)
            .env("NO_COLOR", "1"),
        &tmp.path().join("cp.log"),
    )?;
    let admin = cp_dir.join("admin.conf");
    let token = wait_until(
        "the control plane to issue a token",
        Duration::from_secs(60),
        || {
            if !cp.running() {
                return Err("weft-control-plane exited (see cp.log)".into());
            }
            if !admin.exists() {
                return Err("no admin.conf yet".into());
            }
            let out = run(
                Command::new("ip")
                    .args(["netns", "exec", &ns.name])
                    .arg(bins.join("weftctl"))
                    .args(["token", "create", "--usages", "2", "--ttl", "1h"])
                    .env("WEFT_CONFIG", &admin),
                Duration::from_secs(10),
            )
            .map_err(|e| e.to_string())?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let word = |flag: &str| {
                text.split_whitespace()
                    .skip_while(|w| *w != flag)
                    .nth(1)
                    .map(str::to_string)
            };
            match (word("--token"), word("--ca-hash")) {
                (Some(t), Some(h)) => Ok((t, h)),
                _ => Err(format!("weftctl token create said: {text}")),
            }
        },
    )?;
    clock.lap("control plane up, token created");

    let cluster = VmCluster {
        name: unique("t"),
        state_root: tmp.path().join("vms"),
    };
    let up = run(
        Command::new(repo().join("images/node/run"))
            .args(["up", "--name", &cluster.name, "--nodes", "2", "--pods", "1"])
            .arg("--image")
            .arg(&image)
            .args(["--netns", &ns.name, "--bridge", "br0"])
            .args(["--control-plane", "192.0.2.1:7443"])
            .args(["--token", &token.0, "--ca-hash", &token.1])
            .args(["--no-check", "--lifetime", "900", "--timeout", "540"])
            .env("WEFT_VM_STATE", &cluster.state_root),
        BOOT,
    )?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&up.stdout),
        String::from_utf8_lossy(&up.stderr)
    );
    eprintln!("{}", said.trim_end());
    if !up.status.success() {
        return Err(E2eError::failed(format!(
            "images/node/run up failed:\n{said}\n{}\n{}",
            cluster.console("n1"),
            cluster.console("n2")
        )));
    }
    clock.lap("two microVM nodes booted and joined, a pod each");

    let pod_ip = |node: &str| -> Result<String> {
        let pods = cluster.info(node).get("pods").cloned().unwrap_or_default();
        pods.strip_prefix("p1=")
            .map(str::to_string)
            .ok_or_else(|| E2eError::failed(format!("{node} reported pods '{pods}'")))
    };
    let (ip1, ip2) = (pod_ip("n1")?, pod_ip("n2")?);
    let in_pod = "nsenter --net=/run/netns/p1";
    // Both nodes see each other as peers at the control plane's word.
    for (node, other) in [("n1", "n2"), ("n2", "n1")] {
        let status = cluster.exec(node, "weftctl status", Duration::from_secs(60))?;
        assert!(
            status.contains(other),
            "{node} has no peer {other}:\n{status}"
        );
    }
    for (node, dst) in [("n1", &ip2), ("n2", &ip1)] {
        let out = cluster.exec(
            node,
            &format!("{in_pod} ping -c 3 -W 10 {dst}"),
            Duration::from_secs(90),
        )?;
        assert!(
            out.contains("0% packet loss") && !out.contains("100% packet loss"),
            "{out}"
        );
    }
    clock.lap("pods ping each other across the VMs");

    // 10 MiB from n1's pod to n2's pod over TCP, SHA-256 on both ends.
    cluster.exec(
        "n2",
        &format!(
            "rm -f /tmp/recv; (sleep 600 | {in_pod} nc -l -p 5001 >/tmp/recv 2>/dev/null &) ; sleep 1; echo listening"
        ),
        Duration::from_secs(60),
    )?;
    let sent = cluster.exec(
        "n1",
        &format!("head -c {BLOB} /dev/urandom >/tmp/blob && sha256sum /tmp/blob"),
        Duration::from_secs(120),
    )?;
    cluster.exec(
        "n1",
        &format!("{in_pod} timeout 400 nc {ip2} 5001 </tmp/blob"),
        Duration::from_secs(420),
    )?;
    let received = wait_until("n2 to hold all 10 MiB", Duration::from_secs(120), || {
        let size = cluster
            .exec("n2", "stat -c %s /tmp/recv", Duration::from_secs(30))
            .map_err(|e| e.to_string())?;
        if size.trim() == BLOB.to_string() {
            cluster
                .exec("n2", "sha256sum /tmp/recv", Duration::from_secs(60))
                .map_err(|e| e.to_string())
        } else {
            Err(format!("{} bytes so far", size.trim()))
        }
    })?;
    let hash = |s: &str| s.split_whitespace().next().unwrap_or_default().to_string();
    assert_eq!(hash(&sent).len(), 64, "{sent}");
    assert_eq!(hash(&sent), hash(&received), "the bytes differ");
    clock.lap("10 MiB over TCP pod to pod, SHA-256 equal");

    for node in ["n1", "n2"] {
        let info = cluster.info(node);
        eprintln!(
            "[microvm] {node}: joined at guest uptime {}, ready {} after run up started",
            info.get("joined").map_or("?", String::as_str),
            info.get("ready").map_or("?", String::as_str)
        );
    }
    let dir = cluster.dir();
    drop(cluster);
    assert!(!dir.exists(), "run down left {}", dir.display());
    cp.stop(Duration::from_secs(10));
    let ns_path = ns.path();
    drop(ns);
    assert!(!ns_path.exists(), "{} is still there", ns_path.display());
    clock.lap("VMs, control plane and namespace removed");
    Ok(())
}
