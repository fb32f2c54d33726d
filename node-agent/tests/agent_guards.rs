//! Issue 10, run for real: a control plane and the `weft-agent` binary in
//! a network namespace of the test's own, probed as an attacker or a
//! careless operator would:
//!
//! - a FIFO (and a socket, a device, a directory) given as a pod's network
//!   namespace is refused at once with a precise error, and the API, the
//!   metrics and the lease renewals go on (item 2);
//! - `pod_del` of an id `pod_add` refuses, and a request with a repeated
//!   key, are refused (lesser items);
//! - a node that claims an established peer's public key never displaces
//!   it, even across a restart of the agent (item 1).
//!
//! Root only (namespaces, TUN devices): without root the tests fail.
//! Every wait is bounded; agents are stopped by their PID, and namespaces
//! and temporary dirs are removed, also when a test panics.

mod agent_support;
mod support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agent_support::{admin, cp_settings, token, WAIT};
use base64::Engine as _;
use serde_json::Value;
use support::{ip, TestNs};
use weft_control_plane::server;
use weft_node_agent::kernel::netns::run_in;
use weft_proto::v1::ListNodesRequest;

const BIN: &str = env!("CARGO_BIN_EXE_weft-agent");

/// A running agent, killed (by its PID) on drop if it still runs.
struct AgentProcess {
    child: Child,
    log: PathBuf,
}

impl AgentProcess {
    fn start(args: &[String], log: &Path) -> Self {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap());
        for (k, _) in std::env::vars() {
            if k.starts_with("WEFT_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("WEFT_LOG", "info");
        Self {
            child: cmd.spawn().expect("spawn weft-agent"),
            log: log.to_owned(),
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits (bounded) for it to exit.
    fn stop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("weft-agent did not stop within {WAIT:?} of SIGTERM");
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Where one test's agent keeps things.
struct Layout {
    dir: tempfile::TempDir,
    udp: u16,
    metrics: String,
}

impl Layout {
    fn new() -> Self {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let metrics = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .to_string();
        Self {
            dir: tempfile::tempdir().unwrap(),
            udp,
            metrics,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn socket(&self) -> PathBuf {
        self.path("agent.sock")
    }

    /// The agent's flags; `join` is (token, CA hash) on the first start.
    fn args(&self, cp: &str, name: &str, join: Option<(&str, &str)>) -> Vec<String> {
        let mut args: Vec<String> = [
            "--control-plane",
            cp,
            "--name",
            name,
            "--state-dir",
            self.path("state").to_str().unwrap(),
            "--listen-port",
            &self.udp.to_string(),
            "--endpoint",
            &format!("127.0.0.1:{}", self.udp),
            "--mtu",
            "1400",
            "--api-socket",
            self.socket().to_str().unwrap(),
            "--metrics-listen",
            &self.metrics,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some((token, hash)) = join {
            args.extend([
                "--token".into(),
                token.into(),
                "--ca-hash".into(),
                hash.into(),
            ]);
        }
        args
    }
}

/// One request line on the API socket, and its answer within `timeout`.
fn try_api(socket: &Path, line: &str, timeout: Duration) -> Result<Value, String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(format!("{line}\n").as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .map_err(|e| format!("no answer to {line} within {timeout:?}: {e}"))?;
    serde_json::from_str(&answer).map_err(|e| format!("{answer:?}: {e}"))
}

/// One request line on the API socket, and its answer: within the API's
/// per-request deadline (20 s), with room to spare.
fn api(socket: &Path, line: &str) -> Value {
    try_api(socket, line, Duration::from_secs(25)).unwrap_or_else(|e| panic!("{e}"))
}

/// Waits (bounded) until the agent serves its API with its data plane up
/// (and, if `joined`, its control-plane link up).
fn wait_serving(agent: &mut AgentProcess, socket: &Path, joined: bool) {
    wait_until("the agent to serve its API", agent, || {
        let Ok(status) = try_api(socket, r#"{"op":"status"}"#, Duration::from_secs(2)) else {
            return false;
        };
        let result = &status["result"];
        !result["dataplane"].is_null()
            && (!joined || result["node"]["control_plane_connected"] == true)
    });
}

/// `GET /metrics` (bounded).
fn scrape(addr: &str) -> std::io::Result<String> {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )?;
    let mut body = String::new();
    stream.read_to_string(&mut body)?;
    Ok(body)
}

/// Waits (bounded) until `cond` holds; `what` and the agent's log on failure.
fn wait_until(what: &str, agent: &mut AgentProcess, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        if let Some(status) = agent.child.try_wait().unwrap() {
            panic!(
                "weft-agent exited ({status}) waiting for {what}:\n{}",
                agent.logs()
            );
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; agent log:\n{}",
            agent.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `body` on a thread inside a fresh namespace (with `lo` up): the
/// control plane binds there and the agent, spawned from there, starts
/// there. The runtime's workers (made by that thread, so in the namespace
/// too) serve the control plane while the body blocks on the agent.
fn in_namespace<F: std::future::Future<Output = ()>>(tag: &str, body: impl FnOnce() -> F + Send) {
    let ns = TestNs::new("wgrd", tag);
    ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
    run_in(&ns.ns, || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(body());
    })
    .expect("enter the test namespace");
}

/// The last renewal the control plane saw from `name`, in Unix ms.
async fn last_renewal(cp: &server::Running, name: &str) -> i64 {
    let nodes = admin(cp)
        .await
        .list_nodes(ListNodesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .nodes;
    nodes
        .iter()
        .find(|n| n.name == name)
        .map_or(0, |n| n.last_renewal_unix_ms)
}

#[test]
fn a_fifo_or_device_as_a_pods_namespace_is_refused_at_once_and_nothing_stalls() {
    in_namespace("fifo", || async {
        let layout = Layout::new();
        // Leases of 3 s: renewed every second, so a stall shows at once.
        let cp = server::spawn(cp_settings(&layout.path("cp"), &["--lease-ttl", "3"]))
            .await
            .expect("control plane");
        let (token, hash) = token(&cp).await;
        let cp_addr = cp.addr.to_string();
        let mut agent = AgentProcess::start(
            &layout.args(&cp_addr, "guard-1", Some((&token, &hash))),
            &layout.path("agent.log"),
        );
        let socket = layout.socket();
        wait_serving(&mut agent, &socket, true);

        let fifo = layout.path("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let unix = layout.path("unix.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&unix).unwrap();
        let dir = layout.path("state");
        let cases = [
            (fifo.as_path(), "a FIFO (named pipe)"),
            (unix.as_path(), "a unix socket"),
            (Path::new("/dev/null"), "a character device"),
            (dir.as_path(), "a directory"),
        ];
        for (path, found) in cases {
            let request = serde_json::json!({"op": "pod_add", "id": "t1", "netns": path});
            // Each answer comes within the API's per-request deadline (the
            // read times out after 25 s otherwise).
            let answer = api(&socket, &request.to_string());
            assert_eq!(answer["ok"], false, "{answer}");
            assert_eq!(answer["error"]["code"], "invalid", "{answer}");
            assert_eq!(
                answer["error"]["message"],
                format!("{} is not a network namespace ({found})", path.display()),
            );
        }
        // Nothing stalled: the API, the metrics and the lease go on.
        assert_eq!(api(&socket, r#"{"op":"ping"}"#)["ok"], true);
        let status = api(&socket, r#"{"op":"status"}"#);
        assert_eq!(status["result"]["pods"], 0, "{status}");
        let metrics = scrape(&layout.metrics).expect("metrics answer");
        assert!(metrics.contains("\nweft_pods 0\n"), "{metrics}");
        let before = last_renewal(&cp, "guard-1").await;
        let deadline = Instant::now() + WAIT;
        while last_renewal(&cp, "guard-1").await <= before {
            assert!(
                Instant::now() < deadline,
                "no lease renewal after the FIFO:\n{}",
                agent.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        // pod_del refuses what pod_add refuses; a repeated key is refused.
        let answer = api(&socket, r#"{"op":"pod_del","id":"../../etc/passwd"}"#);
        assert_eq!(answer["error"]["code"], "invalid", "{answer}");
        assert_eq!(
            answer["error"]["message"],
            "invalid pod id \"../../etc/passwd\": must start with a letter or digit"
        );
        let answer = api(&socket, r#"{"op":"ping","op":"pod_del","id":"web"}"#);
        assert_eq!(answer["error"]["code"], "invalid", "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("request repeats the key \"op\""),
            "{message}"
        );

        agent.stop();
        cp.stop().await.expect("control plane stops");
    });
}

/// A peer record as `peers.json` keeps it.
fn record(name: &str, id: u64, key: &[u8; 32], cidr: &str, joined: i64) -> Value {
    serde_json::json!({
        "name": name,
        "id": id,
        "public-key": base64::engine::general_purpose::STANDARD.encode(key),
        "endpoints": [format!("127.0.0.{id}:51820")],
        "pod-cidr": cidr,
        "ready": true,
        "joined-unix-ms": joined,
    })
}

#[test]
fn a_node_claiming_a_peers_key_never_displaces_it() {
    in_namespace("dupkey", || async {
        let layout = Layout::new();
        let cp_dir = layout.path("cp");
        let cp = server::spawn(cp_settings(&cp_dir, &[]))
            .await
            .expect("control plane");
        let (token, hash) = token(&cp).await;
        let cp_addr = cp.addr.to_string();
        let log = layout.path("agent.log");
        let mut agent =
            AgentProcess::start(&layout.args(&cp_addr, "n2", Some((&token, &hash))), &log);
        let socket = layout.socket();
        wait_serving(&mut agent, &socket, true);
        agent.stop();
        cp.stop().await.expect("control plane stops");

        // The peer cache as an agent writes it when a control plane let
        // "a-dup" join with n1's key (the control plane is down now, so
        // the agent runs on this cache alone, as after a restart).
        let key = weft_node_agent::wg::public_key_of([7; 32]);
        let peers = serde_json::json!({
            "revision": 9,
            "peers": [
                record("a-dup", 5, &key, "10.244.5.0/24", 2_000),
                record("n1", 3, &key, "10.244.3.0/24", 1_000),
            ],
        });
        std::fs::write(layout.path("state/peers.json"), peers.to_string()).unwrap();
        let log = layout.path("agent2.log");
        let mut agent = AgentProcess::start(&layout.args(&cp_addr, "n2", None), &log);
        wait_serving(&mut agent, &socket, false);
        let status = api(&socket, r#"{"op":"status"}"#);
        let peers = status["result"]["dataplane"]["peers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let names: Vec<&str> = peers.iter().filter_map(|p| p["name"].as_str()).collect();
        assert_eq!(names, ["n1"], "{peers:?}");
        assert_eq!(
            peers[0]["public_key"],
            base64::engine::general_purpose::STANDARD.encode(key)
        );
        let logs = agent.logs();
        let refusals = logs
            .lines()
            .filter(|l| {
                l.contains(
                    "refusing node a-dup as a peer: its public key is already held by peer n1",
                )
            })
            .count();
        assert_eq!(refusals, 1, "{logs}");
        assert!(!logs.contains("is already the key of peer"), "{logs}");
        agent.stop();
    });
}
