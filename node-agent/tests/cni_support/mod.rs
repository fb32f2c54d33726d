//! Shared harness of the `weft-cni` tests: a real local API served
//! in-process (a real `PodManager` making real namespaces and TUNs, the
//! in-memory port sink standing in for the data plane), the real
//! `weft-cni` binary run with a CNI environment and stdin, and guards that
//! remove what a test made even when it fails.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use weft_agent_api::NodeInfo;
use weft_node_agent::api::{self, ApiError, DataplaneStatusSource, NodeInfoSource, Services};
use weft_node_agent::engine::{DataplaneError, DataplaneStatus};
use weft_node_agent::kernel::netns::NetNs;
use weft_node_agent::pods::{MemoryPortSink, PodManager};

/// Fails (never skips) a test that needs root.
pub(crate) fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the weft-cni tests need root (they create network namespaces and TUNs); CI runs them as root"
    );
}

/// A name unique to this process and call: `<prefix><pid>x<n>`.
pub(crate) fn unique(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Named namespaces deleted on drop.
#[derive(Default)]
pub(crate) struct Namespaces(Vec<String>);

impl Namespaces {
    /// Creates the named namespace `name`; its path.
    pub(crate) fn create(&mut self, name: &str) -> String {
        NetNs::create_named(name).unwrap();
        self.0.push(name.to_string());
        format!("/run/netns/{name}")
    }

    /// Deletes `name` on drop if something else created it.
    pub(crate) fn adopt(&mut self, name: &str) {
        self.0.push(name.to_string());
    }

    /// Deletes `name` now.
    pub(crate) fn delete(&mut self, name: &str) {
        NetNs::delete_named(name).unwrap();
        self.0.retain(|n| n != name);
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in &self.0 {
            if Path::new("/run/netns").join(name).exists() {
                let _ = NetNs::delete_named(name);
            }
        }
    }
}

/// What the fake node reports.
pub(crate) fn node_info(cidr: &str, node_address: &str) -> NodeInfo {
    NodeInfo {
        name: "node-cni".into(),
        node_id: 9,
        pod_cidr: cidr.into(),
        node_address: node_address.into(),
        cluster_cidr: "10.80.0.0/12".into(),
        service_cidr: "10.96.0.0/12".into(),
        cluster_dns: "10.96.0.10".into(),
        cluster_domain: "cluster.local".into(),
        mtu: 1420,
        listen_port: 51820,
        control_plane: "192.0.2.1:7443".into(),
        control_plane_connected: true,
        watch_revision: 1,
        last_error: None,
    }
}

struct FakeNode(NodeInfo);

impl NodeInfoSource for FakeNode {
    fn node_info(&self) -> NodeInfo {
        self.0.clone()
    }
}

/// A data plane that is down.
struct DownDataplane;

impl DataplaneStatusSource for DownDataplane {
    fn dataplane_status(&self) -> BoxFuture<'_, Result<DataplaneStatus, DataplaneError>> {
        Box::pin(async { Err(DataplaneError::NotRunning) })
    }
}

/// A local API served in-process on a temp socket.
pub(crate) struct Agent {
    /// The socket.
    pub socket: PathBuf,
    /// The pods, for looking behind the API.
    pub pods: Arc<PodManager>,
    /// The stand-in data plane.
    pub sink: Arc<MemoryPortSink>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ApiError>>>,
    dir: tempfile::TempDir,
}

impl Agent {
    /// Serves pods from `cidr` (the node at `node_address`).
    pub(crate) async fn start(cidr: &str, node_address: &str) -> Agent {
        Self::start_with(cidr, node_address, false).await
    }

    /// Like [`Agent::start`], with the data plane down if asked.
    pub(crate) async fn start_with(cidr: &str, node_address: &str, dataplane_down: bool) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("run/agent.sock");
        let sink = Arc::new(MemoryPortSink::new());
        let pods = Arc::new(
            PodManager::open_with(
                &dir.path().join("state"),
                cidr.parse().unwrap(),
                node_address.parse().unwrap(),
                1420,
                sink.clone(),
            )
            .await
            .unwrap(),
        );
        let dataplane: Arc<dyn DataplaneStatusSource> = if dataplane_down {
            Arc::new(DownDataplane)
        } else {
            sink.clone()
        };
        let services = Services {
            pods: pods.clone(),
            dataplane,
            node: Arc::new(FakeNode(node_info(cidr, node_address))),
            cluster: None,
        };
        let listener = api::bind(&socket).unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(api::serve_on(listener, services, async {
            let _ = rx.await;
        }));
        Agent {
            socket,
            pods,
            sink,
            stop: Some(tx),
            task: Some(task),
            dir,
        }
    }

    /// A path in the agent's temp dir.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Stops serving (the socket goes away).
    pub(crate) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

/// What one run of `weft-cni` gave.
#[derive(Debug)]
pub(crate) struct Run {
    /// Its exit status.
    pub code: i32,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

impl Run {
    /// Stdout as JSON.
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// Asserts success with nothing on stdout.
    pub(crate) fn assert_quiet_success(&self) {
        assert_eq!((self.code, self.stdout.as_str()), (0, ""), "{self:?}");
    }

    /// Asserts a CNI error of `code`; the error object.
    pub(crate) fn assert_error(&self, code: u64) -> Value {
        assert_eq!(self.code, 1, "{self:?}");
        let v = self.json();
        assert_eq!(v["code"].as_u64(), Some(code), "{self:?}");
        assert!(v["msg"].is_string(), "{v}");
        assert!(v["cniVersion"].is_string(), "{v}");
        v
    }

    /// The error message.
    pub(crate) fn msg(&self) -> String {
        self.json()["msg"].as_str().unwrap_or_default().to_string()
    }
}

/// Runs a CNI plugin binary with exactly these `CNI_*` variables (plus
/// `PATH`) and `stdin`.
pub(crate) fn exec(binary: &Path, vars: &[(&str, &str)], stdin: &[u8]) -> Run {
    let mut cmd = Command::new(binary);
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("the plugin runs");
    {
        let mut input = child.stdin.take().unwrap();
        // A plugin may exit before reading (e.g. on an env error).
        let _ = input.write_all(stdin);
    }
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The `weft-cni` binary under test.
pub(crate) fn weft_cni() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_weft-cni"))
}

/// One invocation of `weft-cni` for an attachment.
#[derive(Debug, Clone)]
pub(crate) struct Invocation {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_NETNS`; `None` leaves it unset.
    pub netns: Option<String>,
    /// `CNI_ARGS`.
    pub args: String,
}

impl Invocation {
    /// An attachment as containerd would pass it.
    pub(crate) fn new(container_id: &str, netns: &str) -> Self {
        Self {
            container_id: container_id.into(),
            ifname: "eth0".into(),
            netns: Some(netns.into()),
            args: format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-{container_id};K8S_POD_INFRA_CONTAINER_ID={container_id};K8S_POD_UID=uid-1"
            ),
        }
    }

    /// Runs `command` with `stdin` (off the async runtime, which serves
    /// the API).
    pub(crate) async fn run(&self, command: &str, stdin: &Value) -> Run {
        let stdin = serde_json::to_vec(stdin).unwrap();
        self.run_raw(command, stdin).await
    }

    /// Runs `command` with raw `stdin`.
    pub(crate) async fn run_raw(&self, command: &str, stdin: Vec<u8>) -> Run {
        let me = self.clone();
        let command = command.to_string();
        tokio::task::spawn_blocking(move || {
            let mut vars = vec![
                ("CNI_COMMAND", command.as_str()),
                ("CNI_CONTAINERID", me.container_id.as_str()),
                ("CNI_IFNAME", me.ifname.as_str()),
                ("CNI_ARGS", me.args.as_str()),
                ("CNI_PATH", "/opt/cni/bin"),
            ];
            if let Some(netns) = &me.netns {
                vars.push(("CNI_NETNS", netns.as_str()));
            }
            exec(&weft_cni(), &vars, &stdin)
        })
        .await
        .unwrap()
    }
}

/// Runs a command that takes no attachment (STATUS, GC, VERSION).
pub(crate) async fn run_plain(command: &str, stdin: &Value) -> Run {
    let command = command.to_string();
    let stdin = serde_json::to_vec(stdin).unwrap();
    tokio::task::spawn_blocking(move || {
        exec(
            &weft_cni(),
            &[("CNI_COMMAND", &command), ("CNI_PATH", "/opt/cni/bin")],
            &stdin,
        )
    })
    .await
    .unwrap()
}

/// The network configuration for `version`, talking to `socket`.
pub(crate) fn conf(version: &str, socket: &Path) -> Value {
    json!({
        "cniVersion": version,
        "name": "weft",
        "type": "weft-cni",
        "agentSocket": socket.to_str().unwrap(),
    })
}

/// `conf` with `prevResult`.
pub(crate) fn with_prev(mut conf: Value, prev: &Value) -> Value {
    conf["prevResult"] = prev.clone();
    conf
}

/// The output of `ip` with `args`.
pub(crate) fn ip(args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("ip (iproute2) runs");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The interface names in the named namespace `ns`.
pub(crate) fn links_in(ns: &str) -> Vec<String> {
    let out = ip(&["-n", ns, "-j", "link", "show"]);
    let links: Value = serde_json::from_str(&out).unwrap();
    links
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["ifname"].as_str().map(String::from))
        .collect()
}

/// The IPv4 addresses (`a.b.c.d/len`) of `dev` in the named namespace `ns`.
pub(crate) fn addresses_in(ns: &str, dev: &str) -> Vec<String> {
    let out = ip(&["-n", ns, "-4", "-j", "addr", "show", "dev", dev]);
    let links: Value = serde_json::from_str(&out).unwrap();
    links
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect()
}

/// Open fds of this process.
pub(crate) fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}
