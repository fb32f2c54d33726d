//! A first start of the `weft-agent` binary against a control plane that
//! is not there: it gives up after `--join-timeout` with one line naming
//! the address and the last failure, and leaves no `weft0` and no identity
//! behind. Each agent runs, as a real process, inside a network namespace
//! of the test's own (`ip netns exec`), so its `weft0` and its connection
//! attempts never touch the machine's network. Root only: it fails, not
//! skips, without root.

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{ip, link_exists, TestNs};

const BIN: &str = env!("CARGO_BIN_EXE_weft-agent");
/// A syntactically valid token and CA hash: nothing answers to check them.
const TOKEN: &str = "abc123.0123456789abcdef";
const HASH: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// Runs a first start of the agent in `ns` against `control_plane`, with a
/// 2 s join timeout; kills it (and fails) if it is still running after 60 s.
fn first_start(ns: &TestNs, state: &Path, control_plane: &str) -> Output {
    let socket = state.join("agent.sock");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ns.name, BIN])
        .args(["--control-plane", control_plane])
        .args(["--token", TOKEN, "--ca-hash", HASH])
        .args(["--name", "n1", "--join-timeout", "2"])
        .arg("--state-dir")
        .arg(state)
        .arg("--api-socket")
        .arg(&socket)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("WEFT_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("WEFT_LOG", "error");
    let mut child = cmd.spawn().expect("spawn ip netns exec weft-agent");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("weft-agent kept trying past its --join-timeout");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

/// The one line the agent printed, checked to name `address` and `why`.
fn gave_up(out: &Output, address: &str, why: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr:?}");
    assert!(
        stderr.starts_with(&format!(
            "weft-agent: no control plane answered at {address} within 2s ("
        )),
        "{stderr}"
    );
    assert!(stderr.contains(why), "{stderr} lacks {why:?}");
    assert!(stderr.contains("--join-timeout"), "{stderr}");
    stderr
}

#[test]
fn a_first_join_to_a_closed_port_gives_up_naming_it() {
    let ns = TestNs::new("wfj", "closed");
    ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
    let state = tempfile::tempdir().unwrap();
    // Nothing listens on port 1 in a fresh namespace: connection refused.
    let out = first_start(&ns, state.path(), "127.0.0.1:1");
    gave_up(&out, "127.0.0.1:1", "Connection refused");
    // Nothing of it is left: no node identity, no weft0.
    assert!(!state.path().join("node.json").exists());
    assert!(!state.path().join("credentials.json").exists());
    assert!(!link_exists(&ns.name, "weft0"), "weft0 left behind");
}

#[test]
fn a_first_join_to_an_unroutable_address_gives_up_naming_it() {
    let ns = TestNs::new("wfj", "noroute");
    ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
    let state = tempfile::tempdir().unwrap();
    // The namespace has no route but loopback's: unreachable at once.
    let out = first_start(&ns, state.path(), "192.0.2.77:7443");
    gave_up(&out, "192.0.2.77:7443", "unreachable");
    assert!(!link_exists(&ns.name, "weft0"), "weft0 left behind");
}
