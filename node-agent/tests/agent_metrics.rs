//! The agent's Prometheus endpoint, run for real: a control plane and the
//! `weft-agent` binary in a network namespace of the test's own (so
//! `weft0` and its routes never touch the host), scraped over plain
//! HTTP/1.1; and the flag's failures at start-up (exit 64, one line).
//!
//! Root only (namespaces, TUN devices): without root the test fails.
//! Every wait is bounded; the agent is stopped by its PID and the
//! namespace and temporary dirs are removed, also when a test panics.

mod agent_support;
mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agent_support::{start_cp, token, WAIT};
use support::{ip, TestNs};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use weft_node_agent::kernel::netns::run_in;

const BIN: &str = env!("CARGO_BIN_EXE_weft-agent");

/// `weft-agent` with `args`, no WEFT_* variables from the test's
/// environment, logging to `log` (or nowhere).
fn agent(args: &[&str], log: Option<&Path>) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null());
    match log {
        Some(path) => cmd.stderr(std::fs::File::create(path).unwrap()),
        None => cmd.stderr(Stdio::piped()),
    };
    for (k, _) in std::env::vars() {
        if k.starts_with("WEFT_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("WEFT_LOG", "info");
    cmd
}

/// A running agent, killed (by its PID) on drop if it still runs.
struct AgentProcess(Child);

impl AgentProcess {
    /// SIGTERM, then waits (bounded) for the exit code.
    fn stop(&mut self) -> Option<i32> {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.0.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("weft-agent did not stop within {WAIT:?} of SIGTERM");
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Runs `weft-agent args` to its exit (bounded): the code and stderr.
fn exit_of(args: &[&str]) -> (Option<i32>, String) {
    let mut child = AgentProcess(agent(args, None).spawn().expect("spawn weft-agent"));
    let deadline = Instant::now() + WAIT;
    while child.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "weft-agent {args:?} still runs");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut stderr).unwrap();
    (child.0.wait().unwrap().code(), stderr)
}

/// A port nothing listens on now, on 127.0.0.1 (TCP, or UDP).
fn free_port(udp: bool) -> u16 {
    if udp {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    } else {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }
}

/// A scrape's answer: status code, Content-Type, body.
struct Scrape {
    code: u16,
    content_type: String,
    body: String,
}

/// `GET path` over HTTP/1.1 (Connection: close), bounded by a timeout.
async fn get(addr: &str, path: &str) -> std::io::Result<Scrape> {
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&raw).into_owned())
    };
    let raw = tokio::time::timeout(Duration::from_secs(5), fetch)
        .await
        .map_err(|_| std::io::Error::other("no answer in 5 s"))??;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {head:?}")))?;
    let content_type = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_default();
    Ok(Scrape {
        code,
        content_type,
        body: body.to_string(),
    })
}

#[test]
fn a_running_agent_serves_its_status_as_metrics() {
    let ns = TestNs::new("wmet", "m");
    ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
    // Everything runs on a thread inside the namespace: the control plane
    // binds there, and the agent (spawned from that thread) starts there.
    run_in(&ns.ns, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(scrape_a_real_agent());
    })
    .expect("enter the test namespace");
}

async fn scrape_a_real_agent() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start_cp(&dir.path().join("cp")).await;
    let (token, ca_hash) = token(&cp).await;
    let metrics = format!("127.0.0.1:{}", free_port(false));
    let udp = free_port(true).to_string();
    let (state, socket, log) = (
        dir.path().join("state"),
        dir.path().join("agent.sock"),
        dir.path().join("agent.log"),
    );
    let cp_addr = cp.addr.to_string();
    let endpoint = format!("127.0.0.1:{udp}");
    let args = [
        "--control-plane",
        &cp_addr,
        "--token",
        &token,
        "--ca-hash",
        &ca_hash,
        "--name",
        "metrics-1",
        "--state-dir",
        state.to_str().unwrap(),
        "--listen-port",
        &udp,
        "--endpoint",
        &endpoint,
        "--mtu",
        "1400",
        "--api-socket",
        socket.to_str().unwrap(),
        "--metrics-listen",
        &metrics,
    ];
    let mut child = AgentProcess(agent(&args, Some(&log)).spawn().expect("spawn weft-agent"));
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();

    // Up, joined and watching: the control-plane link shows in the metrics.
    let deadline = Instant::now() + WAIT;
    let scrape = loop {
        if let Ok(s) = get(&metrics, "/metrics").await {
            if s.body.contains("\nweft_control_plane_connected 1\n") {
                break s;
            }
        }
        if let Some(status) = child.0.try_wait().unwrap() {
            panic!("weft-agent exited ({status}):\n{}", logs());
        }
        assert!(
            Instant::now() < deadline,
            "no connected scrape on {metrics} within {WAIT:?}; agent log:\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(scrape.code, 200);
    assert_eq!(
        scrape.content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let lines: Vec<&str> = scrape.body.lines().collect();
    for want in [
        "weft_control_plane_connected 1",
        "weft_dataplane_up 1",
        "weft_pods 0",
        "weft_peers 0",
        "weft_offload_enabled{kind=\"tun\"} 1",
        "# EOF",
    ] {
        assert!(lines.contains(&want), "{want:?} not in:\n{}", scrape.body);
    }
    for reason in ["malformed", "link_local", "wg_replay"] {
        let prefix = format!("weft_dropped_packets_total{{reason=\"{reason}\"}} ");
        assert!(
            lines.iter().any(|l| l
                .strip_prefix(&prefix)
                .is_some_and(|n| n.parse::<u64>().is_ok())),
            "no {prefix:?}<count> in:\n{}",
            scrape.body
        );
    }
    assert!(
        lines.iter().any(|l| l.starts_with("weft_watch_revision ")),
        "{}",
        scrape.body
    );
    assert!(
        logs().contains("metrics listening"),
        "agent log:\n{}",
        logs()
    );

    let nope = get(&metrics, "/nope").await.unwrap();
    assert_eq!(nope.code, 404);

    // The endpoint stops with the agent.
    assert_eq!(child.stop(), Some(0), "agent log:\n{}", logs());
    assert!(get(&metrics, "/metrics").await.is_err());
    cp.stop().await.expect("control plane stops");
}

#[test]
fn a_bad_metrics_address_exits_64_with_one_line() {
    for bad in ["9590", "localhost:9590", "127.0.0.1:0"] {
        let (code, stderr) = exit_of(&["--control-plane", "127.0.0.1:9", "--metrics-listen", bad]);
        assert_eq!(code, Some(64), "{bad}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{bad}: {stderr:?}");
        assert!(
            stderr.starts_with(&format!("weft-agent: --metrics-listen {bad:?}: ")),
            "{stderr:?}"
        );
    }
}

#[test]
fn a_metrics_address_in_use_stops_the_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let udp = free_port(true).to_string();
    let (code, stderr) = exit_of(&[
        "--control-plane",
        "127.0.0.1:9",
        "--name",
        "n1",
        "--state-dir",
        dir.path().join("state").to_str().unwrap(),
        "--api-socket",
        dir.path().join("agent.sock").to_str().unwrap(),
        "--listen-port",
        &udp,
        "--endpoint",
        "192.0.2.1:51820",
        "--mtu",
        "1400",
        "--metrics-listen",
        &addr,
    ]);
    assert!(code.is_some_and(|c| c != 0), "{code:?}: {stderr}");
    let last = stderr.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("weft-agent: binding the metrics listener ")
            && last.contains(&addr)
            && last.contains("in use"),
        "{stderr:?}"
    );
    // Refused before joining: nothing was written but the key.
    assert!(!dir.path().join("state/node.json").exists());
}
