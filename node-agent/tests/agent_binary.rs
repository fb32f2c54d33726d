//! The `weft-agent` binary's edges, run as a process: bad flags and bad
//! state exit 64 with one line on stderr naming what is wrong; `--help`
//! documents every flag and its environment variable.

use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_weft-agent");

/// Runs the binary with `args` and no WEFT_* variables, bounded by a timeout.
fn run(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("WEFT_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("WEFT_LOG", "error");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn weft-agent");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("weft-agent {args:?} did not exit in time");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts exit 64 with one stderr line containing every `want`.
fn config_error(args: &[&str], envs: &[(&str, &str)], want: &[&str]) {
    let out = run(args, envs);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "{args:?}: one line, got {stderr:?}"
    );
    assert!(stderr.starts_with("weft-agent: "), "{stderr}");
    for w in want {
        assert!(stderr.contains(w), "{args:?}: {stderr:?} lacks {w:?}");
    }
}

const CP: &str = "127.0.0.1:9";

#[test]
fn bad_flags_exit_64_with_one_line() {
    config_error(&[], &[], &["--control-plane", "WEFT_CONTROL_PLANE"]);
    config_error(
        &["--control-plane", "nope"],
        &[],
        &["--control-plane \"nope\""],
    );
    config_error(
        &["--control-plane", CP, "--token", "abc"],
        &[],
        &["--token"],
    );
    config_error(
        &["--control-plane", CP, "--ca-hash", "sha256:xyz"],
        &[],
        &["--ca-hash"],
    );
    config_error(
        &["--control-plane", CP, "--name", "Not_A_Label"],
        &[],
        &["--name", "DNS-1123"],
    );
    config_error(
        &["--control-plane", CP, "--endpoint", "10.0.0.1"],
        &[],
        &["--endpoint"],
    );
    config_error(
        &["--control-plane", CP, "--listen-port", "0"],
        &[],
        &["--listen-port"],
    );
    config_error(
        &["--control-plane", CP, "--listen-port", "70000"],
        &[],
        &["--listen-port"],
    );
    config_error(&["--control-plane", CP, "--mtu", "99"], &[], &["--mtu"]);
    config_error(
        &["--control-plane", CP, "--no-such-flag"],
        &[],
        &["--no-such-flag"],
    );
    // The same through the environment.
    config_error(
        &[],
        &[("WEFT_CONTROL_PLANE", CP), ("WEFT_NODE_NAME", "UPPER")],
        &["--name"],
    );
    config_error(
        &[],
        &[("WEFT_CONTROL_PLANE", CP), ("WEFT_TOKEN", "x.y")],
        &["--token"],
    );
}

#[test]
fn help_documents_flags_and_environment() {
    let out = run(&["--help"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--control-plane",
        "--token",
        "--ca-hash",
        "--name",
        "--endpoint",
        "--state-dir",
        "--listen-port",
        "--mtu",
        "--api-socket",
        "--log-json",
        "WEFT_CONTROL_PLANE",
        "WEFT_TOKEN",
        "WEFT_CA_HASH",
        "WEFT_NODE_NAME",
        "leave",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    // The token's value from the environment is never shown.
    let out = run(&["--help"], &[("WEFT_TOKEN", "abc123.0123456789abcdef")]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("0123456789abcdef"));
}

/// A free UDP port (so the binary gets past binding its socket).
fn free_udp_port() -> String {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    s.local_addr().unwrap().port().to_string()
}

#[test]
fn a_bad_private_key_exits_64_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("private.key");
    std::fs::write(&key, "c2hvcnQ=\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let state = dir.path().to_str().unwrap();
    let port = free_udp_port();
    let args = [
        "--control-plane",
        CP,
        "--name",
        "n1",
        "--state-dir",
        state,
        "--listen-port",
        &port,
    ];
    let path = key.display().to_string();
    config_error(
        &args,
        &[],
        &[&path, "malformed", "decodes to 5 bytes, not 32"],
    );

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    config_error(&args, &[], &[&path, "mode 0644", "chmod 600"]);
}

#[test]
fn a_first_start_without_a_token_exits_64_saying_what_is_needed() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("agent");
    let port = free_udp_port();
    let args = [
        "--control-plane",
        CP,
        "--name",
        "n1",
        "--state-dir",
        state.to_str().unwrap(),
        "--listen-port",
        &port,
        "--endpoint",
        "192.0.2.1:51820",
        "--mtu",
        "1400",
    ];
    config_error(
        &args,
        &[],
        &["--token", "--ca-hash", "weftctl token create"],
    );
    // The key was generated, with mode 0600, in a 0700 state dir.
    let mode = std::fs::metadata(state.join("private.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let mode = std::fs::metadata(&state).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[test]
fn a_taken_udp_port_is_a_clear_error() {
    let taken = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--control-plane",
        CP,
        "--name",
        "n1",
        "--state-dir",
        dir.path().to_str().unwrap(),
        "--listen-port",
        &port,
        "--endpoint",
        "192.0.2.1:51820",
        "--mtu",
        "1400",
    ];
    config_error(
        &args,
        &[],
        &[
            &format!("UDP port {port}"),
            "already in use",
            "--listen-port",
        ],
    );
}

#[test]
fn leave_without_a_credential_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["leave", "--state-dir", dir.path().to_str().unwrap()], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("has not joined"), "{stderr}");
}

#[test]
fn a_second_agent_on_the_api_socket_is_refused_before_joining() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    // Something live answers on the socket: another agent.
    let _live = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let state = dir.path().join("state");
    let port = free_udp_port();
    let args = [
        "--control-plane",
        CP,
        "--name",
        "n1",
        "--state-dir",
        state.to_str().unwrap(),
        "--listen-port",
        &port,
        "--endpoint",
        "192.0.2.1:51820",
        "--mtu",
        "1400",
        "--api-socket",
        socket.to_str().unwrap(),
    ];
    config_error(&args, &[], &["another weft-agent is serving"]);
    assert!(!state.join("node.json").exists());
}
