//! A real CNI runtime drives `weft-cni`, and two containers on different lab
//! nodes reach each other over weft.
//!
//! The runtime is `tests/cni_runtime/main.go`, a small cnitool-like program
//! on libcni, the library containerd and CRI-O run CNI plugins with. This
//! test builds it offline from Debian's packages (`golang-go`,
//! `golang-github-appc-cni-dev`) into a temporary directory, then, on a
//! two-node lab without pods:
//!
//! 1. writes each node's network list from `cni/10-weft.conflist`
//!    (weft-cni → portmap → bandwidth, `agentSocket` = that node's agent);
//!    `CNI_PATH` holds `weft-cni` of this build and Debian's reference
//!    plugins (`containernetworking-plugins`, `/usr/lib/cni`);
//! 2. runs the runtime's `add` inside each node's namespace, as a kubelet's
//!    runtime on that node would, for one container namespace per node, and
//!    checks the results (interface in the sandbox, address in the node's
//!    pod CIDR, gateway, route, DNS) against the namespaces and the agents;
//! 3. pings between the two containers both ways, across the nodes;
//! 4. runs `check`, `status`, `gc` (which removes a leaked attachment and
//!    leaves a `weftctl pod add` pod alone) and `del` (twice, and once more
//!    after the container's namespace is gone), and checks that the TUNs
//!    and the agents' pods are gone.
//!
//! # Versions
//!
//! Debian 12 has libcni 1.1.2 and reference plugins 1.1.1: both stop at CNI
//! 1.0.0 (libcni cannot read a 1.1.0 result, the plugins refuse a 1.1.0
//! configuration). So the lists get `"cniVersion": "1.0.0"`, as
//! docs/cni.md says for those plugins. STATUS and GC exist from 1.1.0 on:
//! the runtime sends them (as libcni 1.2 would) with a 1.1.0 list holding
//! weft-cni alone, the same network name and socket.
//!
//! The reference `bandwidth` plugin's CHECK always fails on a weft pod (it
//! looks for the host end of a veth; docs/cni.md). The test runs CHECK on
//! the whole chain and expects exactly that failure, which comes after
//! weft-cni's and portmap's CHECK passed (libcni runs them in order), then
//! on the list without `bandwidth`, where it must succeed.
//!
//! Needs root and fails, rather than skips, without it or without Go and
//! libcni. Every wait and every command is bounded in time.

use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use serde_json::{json, Value};
use weft_agent_api::{AgentClient, Pod, PodAddRequest};
use weft_lab::{
    build_binaries_once, ping_stats, Binaries, ClusterGuard, ClusterSpec, LabName, NamespaceRole,
    NodeRecord,
};

const WEFTCTL: &str = env!("CARGO_BIN_EXE_weftctl");
/// Where Debian's `golang-github-appc-cni-dev` puts libcni (GOPATH layout).
const GOPATH: &str = "/usr/share/gocode";
const LIBCNI: &str = "/usr/share/gocode/src/github.com/containernetworking/cni/libcni";
/// Debian's reference plugins (`containernetworking-plugins`).
const REFERENCE_PLUGINS: &str = "/usr/lib/cni";
const PACKAGES: &str = "golang-go golang-github-appc-cni-dev containernetworking-plugins";
/// The bound of `go build` (a cold build on a busy machine).
const GO_BUILD_TIMEOUT: Duration = Duration::from_secs(300);
/// The bound of one runtime invocation (it bounds itself at 30 s).
const RUNTIME_TIMEOUT: Duration = Duration::from_secs(60);
/// The bound of any other command (`ip`).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);
const API_TIMEOUT: Duration = Duration::from_secs(10);
const IFNAME: &str = "eth0";

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the CNI runtime test needs root (network namespaces, TUN devices); run it as root"
    );
}

/// The cargo profile directory that holds this build's binaries.
fn profile_dir() -> &'static Path {
    Path::new(WEFTCTL)
        .parent()
        .expect("CARGO_BIN_EXE_weftctl has a directory")
}

/// `weft-control-plane`, `weft-agent` and `weft-cni`, built (once per test
/// process) next to this package's `weftctl`: `cargo build --bins -p
/// weft-control-plane -p weft-node-agent`, as in `lab_cluster.rs`.
fn binaries() -> Binaries {
    let binaries = build_binaries_once(profile_dir())
        .unwrap_or_else(|e| panic!("cannot build the lab's binaries: {e}"));
    let cni = profile_dir().join("weft-cni");
    assert!(cni.is_file(), "{} was not built", cni.display());
    binaries
}

/// Runs `command` to its end within `timeout` (killed after it), with
/// stdout and stderr captured.
fn run(mut command: Command, timeout: Duration) -> Output {
    let line = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {line}: {e}"));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{line} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Builds the runtime (`tests/cni_runtime/main.go`) into `dir` with Debian's
/// Go and libcni, offline, the Go build cache under the target directory.
fn build_runtime(dir: &Path) -> PathBuf {
    let go = Command::new("go").arg("version").output();
    assert!(
        go.as_ref().is_ok_and(|o| o.status.success()),
        "the CNI runtime test needs Go: apt-get install -y {PACKAGES} ({go:?})"
    );
    assert!(
        Path::new(LIBCNI).join("api.go").is_file(),
        "the CNI runtime test needs libcni in {LIBCNI}: apt-get install -y {PACKAGES}"
    );
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cni_runtime");
    let gocache = profile_dir()
        .parent()
        .expect("the profile directory is in a target directory")
        .join("cni-runtime-gocache");
    let out = dir.join("cni-runtime");
    let mut command = Command::new("go");
    command
        .args(["build", "-o"])
        .arg(&out)
        .arg(".")
        .current_dir(&source)
        .env("GO111MODULE", "off")
        .env("GOPATH", GOPATH)
        .env("GOCACHE", &gocache)
        .env("GOENV", "off")
        .env("GOFLAGS", "")
        .env("GOPROXY", "off")
        .env("CGO_ENABLED", "0");
    let built = run(command, GO_BUILD_TIMEOUT);
    assert!(
        built.status.success(),
        "building the CNI runtime failed: {}",
        text(&built)
    );
    out
}

/// A network namespace made for a container; deleted on drop. Its name is
/// one of the lab's pod names, so the lab's teardown would delete it too.
struct Netns {
    name: String,
    path: PathBuf,
}

impl Netns {
    fn add(lab: &LabName, node: usize, pod: usize) -> Netns {
        let name = lab.namespace(NamespaceRole::Pod { node, pod });
        ip(&["netns", "add", &name]);
        let path = Path::new("/run/netns").join(&name);
        Netns { name, path }
    }

    fn path(&self) -> &str {
        self.path.to_str().unwrap()
    }

    fn delete(&self) {
        ip(&["netns", "del", &self.name]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if self.path.exists() {
            let mut command = Command::new("ip");
            command.args(["netns", "del", &self.name]);
            let _ = command.output();
        }
    }
}

fn ip(args: &[&str]) -> String {
    let mut command = Command::new("ip");
    command.args(args);
    let out = run(command, COMMAND_TIMEOUT);
    assert!(out.status.success(), "ip {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The links of namespace `ns`, except `lo`: (name, addresses other than
/// link-local ones).
fn links(ns: &str) -> Vec<(String, Vec<String>)> {
    let doc: Value = serde_json::from_str(&ip(&["-n", ns, "-j", "addr", "show"])).unwrap();
    doc.as_array()
        .unwrap()
        .iter()
        .filter(|l| l["ifname"] != "lo")
        .map(|l| {
            let addrs = l["addr_info"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|x| x["scope"] != "link")
                        .map(|x| format!("{}/{}", x["local"].as_str().unwrap(), x["prefixlen"]))
                        .collect()
                })
                .unwrap_or_default();
            (l["ifname"].as_str().unwrap().to_string(), addrs)
        })
        .collect()
}

/// The CNI side of one lab node: its network lists and the runtime that runs
/// inside its namespace.
struct NodeCni {
    node: NodeRecord,
    /// The template chain (cniVersion 1.0.0): add, check, del.
    chain: PathBuf,
    /// The chain without `bandwidth` (same network): check.
    chain_no_bandwidth: PathBuf,
    /// weft-cni alone, cniVersion 1.1.0 (same network): status, gc.
    weft_only: PathBuf,
}

/// The runtime: the program, `CNI_PATH`, libcni's cache.
struct Runtime {
    program: PathBuf,
    cni_path: PathBuf,
    cache: PathBuf,
}

/// A container's attachment: its id, namespace and Kubernetes pod name.
struct Container<'a> {
    id: String,
    pod_name: &'a str,
    netns: &'a Netns,
}

impl Container<'_> {
    fn attachment(&self) -> String {
        format!("{}/{IFNAME}", self.id)
    }
}

impl Runtime {
    /// Runs `cni-runtime <args>` inside node `cni.node`'s namespace, with the
    /// environment a runtime gives plugins for pod `pod_name` (in Kubernetes
    /// namespace `default`), if any.
    fn invoke(&self, cni: &NodeCni, pod_name: Option<&str>, args: &[&str]) -> Output {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &cni.node.ns])
            .arg(&self.program)
            .args(args)
            .env("CNI_PATH", &self.cni_path)
            .env("CNI_CACHE_DIR", &self.cache)
            .env("CNI_TIMEOUT", "30")
            .env_remove("CNI_ARGS")
            .env_remove("CAP_ARGS");
        if let Some(name) = pod_name {
            command.env(
                "CNI_ARGS",
                format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={name}"),
            );
        }
        run(command, RUNTIME_TIMEOUT)
    }

    fn attachment_cmd(&self, cni: &NodeCni, cmd: &str, list: &Path, c: &Container) -> Output {
        self.invoke(
            cni,
            Some(c.pod_name),
            &[cmd, list.to_str().unwrap(), &c.id, c.netns.path(), IFNAME],
        )
    }

    fn add(&self, cni: &NodeCni, c: &Container) -> Value {
        let out = self.attachment_cmd(cni, "add", &cni.chain, c);
        assert!(out.status.success(), "add {}: {}", c.id, text(&out));
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("add {}: result is not JSON ({e}): {}", c.id, text(&out)))
    }

    fn ok(&self, cni: &NodeCni, cmd: &str, list: &Path, c: &Container) {
        let out = self.attachment_cmd(cni, cmd, list, c);
        assert!(out.status.success(), "{cmd} {}: {}", c.id, text(&out));
    }

    fn status(&self, cni: &NodeCni) -> Output {
        self.invoke(cni, None, &["status", cni.weft_only.to_str().unwrap()])
    }

    fn gc(&self, cni: &NodeCni, valid: &[String]) {
        let mut args = vec!["gc", cni.weft_only.to_str().unwrap()];
        args.extend(valid.iter().map(String::as_str));
        let out = self.invoke(cni, None, &args);
        assert!(
            out.status.success(),
            "gc on {}: {}",
            cni.node.name,
            text(&out)
        );
    }
}

/// Writes node `node`'s network lists into `dir` from the repository's
/// template.
fn write_lists(dir: &Path, node: &NodeRecord) -> NodeCni {
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cni/10-weft.conflist");
    let mut list: Value = serde_json::from_slice(&std::fs::read(&template).unwrap()).unwrap();
    let types: Vec<&str> = list["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["weft-cni", "portmap", "bandwidth"], "{template:?}");
    list["plugins"][0]["agentSocket"] = json!(node.api_socket);
    // Debian 12's libcni and reference plugins stop at 1.0.0 (module docs).
    list["cniVersion"] = json!("1.0.0");
    let write = |file: &str, list: &Value| {
        let path = dir.join(format!("{}-{file}", node.name));
        std::fs::write(&path, serde_json::to_vec_pretty(list).unwrap()).unwrap();
        path
    };
    let chain = write("10-weft.conflist", &list);
    let mut no_bandwidth = list.clone();
    no_bandwidth["plugins"].as_array_mut().unwrap().pop();
    let chain_no_bandwidth = write("weft-no-bandwidth.conflist", &no_bandwidth);
    let mut weft_only = list.clone();
    weft_only["cniVersion"] = json!("1.1.0");
    weft_only["plugins"].as_array_mut().unwrap().truncate(1);
    let weft_only = write("weft-1.1.conflist", &weft_only);
    NodeCni {
        node: node.clone(),
        chain,
        chain_no_bandwidth,
        weft_only,
    }
}

/// `CNI_PATH`: weft-cni of this build and the reference plugins.
fn plugin_dir(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(profile_dir().join("weft-cni"), bin.join("weft-cni")).unwrap();
    for plugin in ["portmap", "bandwidth", "loopback"] {
        let path = Path::new(REFERENCE_PLUGINS).join(plugin);
        assert!(
            path.is_file(),
            "the CNI runtime test needs {}: apt-get install -y {PACKAGES}",
            path.display()
        );
        std::os::unix::fs::symlink(&path, bin.join(plugin)).unwrap();
    }
    bin
}

fn agent(node: &NodeRecord) -> AgentClient {
    let mut client = AgentClient::connect(&node.api_socket).unwrap();
    client.set_timeout(API_TIMEOUT).unwrap();
    client
}

fn agent_pods(node: &NodeRecord) -> Vec<Pod> {
    agent(node).pod_list().unwrap()
}

/// Checks `add`'s result for container `c` on `node` and returns its address.
fn check_result(result: &Value, node: &NodeRecord, c: &Container) -> IpAddr {
    let cidr: IpNet = node.pod_cidr.expect("the node has a pod CIDR");
    let gateway = node.overlay.expect("the node has an overlay address");
    assert_eq!(result["cniVersion"], "1.0.0", "{result:#}");
    let interfaces = result["interfaces"].as_array().unwrap();
    assert_eq!(interfaces.len(), 1, "{result:#}");
    assert_eq!(interfaces[0]["name"], IFNAME, "{result:#}");
    assert_eq!(interfaces[0]["sandbox"], c.netns.path(), "{result:#}");
    let ips = result["ips"].as_array().unwrap();
    assert_eq!(ips.len(), 1, "{result:#}");
    let address: IpNet = ips[0]["address"].as_str().unwrap().parse().unwrap();
    assert_eq!(address.prefix_len(), 32, "{result:#}");
    assert!(cidr.contains(&address.addr()), "{address} not in {cidr}");
    assert_ne!(address.addr(), gateway, "{result:#}");
    assert_eq!(ips[0]["gateway"], gateway.to_string(), "{result:#}");
    assert_eq!(ips[0]["interface"], 0, "{result:#}");
    let routes = result["routes"].as_array().unwrap();
    assert!(routes.iter().any(|r| r["dst"] == "0.0.0.0/0"), "{result:#}");
    assert_eq!(
        result["dns"]["nameservers"],
        json!(["10.96.0.10"]),
        "{result:#}"
    );
    assert_eq!(
        result["dns"]["search"][0], "default.svc.cluster.local",
        "{result:#}"
    );

    // The sandbox has it: one interface, the address.
    let links = links(&c.netns.name);
    assert_eq!(
        links,
        [(IFNAME.to_string(), vec![address.to_string()])],
        "in {}",
        c.netns.name
    );
    // The agent has it, with the pod's Kubernetes name.
    let pods = agent_pods(node);
    let pod = pods
        .iter()
        .find(|p| p.id == c.attachment())
        .unwrap_or_else(|| panic!("{} not in {}'s pods: {pods:?}", c.attachment(), node.name));
    assert_eq!(pod.address, address.addr());
    assert_eq!(pod.netns, c.netns.path());
    assert_eq!(pod.pod_namespace.as_deref(), Some("default"));
    assert_eq!(pod.pod_name.as_deref(), Some(c.pod_name));
    assert!(pod.attached, "{pod:?}");
    address.addr()
}

/// Five echo requests from namespace `from` to `to`, every one answered.
fn assert_pings(from: &Netns, to: IpAddr) {
    let stats = ping_stats(&from.name, to, 5, Duration::from_secs(10)).unwrap();
    assert_eq!(
        stats.received, stats.sent,
        "{} -> {to}: {stats:?}",
        from.name
    );
    eprintln!(
        "{} -> {to}: {}/{} replies, mean {:?}",
        from.name,
        stats.received,
        stats.sent,
        stats.average().unwrap()
    );
}

fn container_id(tag: &str) -> String {
    // 64 hex digits, like containerd's sandbox ids.
    let seed = format!("{tag}{}", std::process::id());
    let hex: String = seed.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{hex:0>64}")
}

#[test]
fn libcni_runtime_drives_weft_cni_between_two_nodes() {
    require_root();
    let started = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let runtime = Runtime {
        program: build_runtime(work.path()),
        cni_path: plugin_dir(work.path()),
        cache: work.path().join("cache"),
    };
    let conf_dir = work.path().join("net.d");
    std::fs::create_dir(&conf_dir).unwrap();

    // 1. Two nodes, no pods.
    let mut spec = ClusterSpec::new(&format!("cni{}", std::process::id()), 2, 0).unwrap();
    spec.binaries = Some(binaries());
    let built = started.elapsed();
    let cluster = ClusterGuard::up(spec).unwrap();
    let lab = cluster.name().clone();
    let up = started.elapsed() - built;

    // 2. Each node's lists.
    let n1 = write_lists(&conf_dir, cluster.node("n1").unwrap());
    let n2 = write_lists(&conf_dir, cluster.node("n2").unwrap());
    assert_ne!(n1.node.pod_cidr, n2.node.pod_cidr);

    // 3. A container on each node.
    let ns_a = Netns::add(&lab, 1, 1);
    let ns_b = Netns::add(&lab, 2, 1);
    let a = Container {
        id: container_id("a"),
        pod_name: "a",
        netns: &ns_a,
    };
    let b = Container {
        id: container_id("b"),
        pod_name: "b",
        netns: &ns_b,
    };
    let t = Instant::now();
    let result_a = runtime.add(&n1, &a);
    let add_time = t.elapsed();
    let result_b = runtime.add(&n2, &b);
    let ip_a = check_result(&result_a, &n1.node, &a);
    let ip_b = check_result(&result_b, &n2.node, &b);

    // 4. Across the nodes, over weft, both ways.
    assert_pings(&ns_a, ip_b);
    assert_pings(&ns_b, ip_a);

    // 5. CHECK: the whole chain fails in bandwidth only (after weft-cni's and
    // portmap's CHECK passed); without bandwidth it succeeds.
    for (cni, c) in [(&n1, &a), (&n2, &b)] {
        let out = runtime.attachment_cmd(cni, "check", &cni.chain, c);
        assert!(
            !out.status.success(),
            "check with bandwidth: {}",
            text(&out)
        );
        let error: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("check: no CNI error ({e}): {}", text(&out)));
        assert!(
            error["msg"].as_str().unwrap().contains("no veth peer"),
            "check with bandwidth: {}",
            text(&out)
        );
        runtime.ok(cni, "check", &cni.chain_no_bandwidth, c);
    }

    // STATUS on both nodes.
    for cni in [&n1, &n2] {
        let out = runtime.status(cni);
        assert!(
            out.status.success(),
            "status on {}: {}",
            cni.node.name,
            text(&out)
        );
    }

    // GC frees an attachment the runtime no longer knows (container C, whose
    // DEL never came) and keeps the valid ones.
    let ns_c = Netns::add(&lab, 1, 2);
    let c = Container {
        id: container_id("c"),
        pod_name: "c",
        netns: &ns_c,
    };
    let ip_c = check_result(&runtime.add(&n1, &c), &n1.node, &c);
    assert_ne!(ip_c, ip_a);
    runtime.gc(&n1, &[a.attachment()]);
    let ids: Vec<String> = agent_pods(&n1.node).into_iter().map(|p| p.id).collect();
    assert_eq!(ids, [a.attachment()], "n1's pods after gc");
    assert!(links(&ns_c.name).is_empty(), "C's TUN is left");

    // DEL, twice; and once more after the container's namespace is gone.
    for (cni, c) in [(&n1, &a), (&n2, &b)] {
        runtime.ok(cni, "del", &cni.chain, c);
        assert!(links(&c.netns.name).is_empty(), "{}'s TUN is left", c.id);
        runtime.ok(cni, "del", &cni.chain, c);
    }
    ns_a.delete();
    runtime.ok(&n1, "del", &n1.chain, &a);
    for cni in [&n1, &n2] {
        let pods = agent_pods(&cni.node);
        assert!(pods.is_empty(), "{}'s pods: {pods:?}", cni.node.name);
    }
    assert!(links(&ns_b.name).is_empty());

    // GC with no valid attachment leaves pods of `weftctl pod add` alone.
    let ns_k = Netns::add(&lab, 1, 3);
    let kept = agent(&n1.node)
        .pod_add(PodAddRequest {
            id: "kept".to_string(),
            netns: Some(ns_k.path().to_string()),
            ..PodAddRequest::default()
        })
        .unwrap();
    runtime.gc(&n1, &[]);
    runtime.gc(&n2, &[]);
    let pods = agent_pods(&n1.node);
    assert_eq!(pods.len(), 1, "{pods:?}");
    assert_eq!(pods[0].id, "kept");
    assert_eq!(pods[0].address, kept.address);
    assert_eq!(links(&ns_k.name).len(), 1);

    drop((ns_b, ns_c, ns_k));
    cluster.down().unwrap();
    eprintln!(
        "cni_runtime: builds {built:.1?}, lab up {up:.1?}, first add {add_time:.1?}, \
         total {:.1?}",
        started.elapsed()
    );
}
