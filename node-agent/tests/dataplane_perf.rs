//! A throughput and latency probe of the data plane, next to plain veth in
//! the same run (ignored by default; root only, like `dataplane_mesh`):
//!
//! ```sh
//! cargo test --release -p weft-node-agent --test dataplane_perf -- --ignored --nocapture
//! ```
//!
//! Two node namespaces joined by a veth underlay, each with a [`Dataplane`]
//! and a pod namespace on a TUN, exactly as the agent wires them; and, for
//! reference, two namespaces joined by a bare veth pair. `iperf3` (single
//! and 4-stream TCP, 64-byte UDP) and `ping` run in both, and the probe
//! prints each figure with its ratio to veth, plus the data plane threads'
//! CPU time. `WEFT_PERF_SECS` sets each run's length (default 5),
//! `WEFT_NO_OFFLOAD=1` runs the data plane without offloads, and
//! `WEFT_PERF_ONLY=tcp1,tcp4,udp,ping` picks the measurements.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use weft_node_agent::engine::{Dataplane, DataplaneConfig, PeerSpec, PodPort};
use weft_node_agent::kernel::netns;
use weft_node_agent::kernel::tun::{create_pod_tun, ensure_host_tun, PortSpec};
use weft_node_agent::wg;

mod support;
use support::{ip, net, require_root, TestNs};

/// Prefix of this binary's namespace names.
const NS_PREFIX: &str = "weft-perf";

const WG_PORT: u16 = 51820;
const MTU: u32 = 1420;

fn underlay(n: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 168, 78, n)), WG_PORT)
}

/// Namespaces `a` and `b` joined by a veth pair `name1`/`name2` with
/// `prefix.1/24` and `prefix.2/24`, both up.
fn veth_pair(a: &TestNs, b: &TestNs, name: &str, prefix: &str, mtu: u32) {
    let (d1, d2) = (format!("{name}1"), format!("{name}2"));
    ip(&[
        "link", "add", "name", &d1, "netns", &a.name, "type", "veth", "peer", "name", &d2, "netns",
        &b.name,
    ]);
    for (ns, dev, n) in [(a, &d1, 1), (b, &d2, 2)] {
        let addr = format!("{prefix}.{n}/24");
        ip(&["-n", &ns.name, "addr", "add", &addr, "dev", dev]);
        ip(&["-n", &ns.name, "link", "set", dev, "mtu", &mtu.to_string()]);
        ip(&["-n", &ns.name, "link", "set", dev, "up"]);
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
    }
}

struct Node {
    dp: Dataplane,
    public_key: [u8; 32],
    n: u8,
    pod: TestNs,
    _host: TestNs,
}

impl Node {
    fn as_peer(&self) -> PeerSpec {
        PeerSpec {
            name: format!("node-{}", self.n),
            public_key: self.public_key,
            endpoint: Some(underlay(self.n)),
            allowed: vec![net(&format!("10.244.{}.0/24", self.n))],
            ready: true,
        }
    }
}

async fn node(n: u8, host: TestNs) -> Node {
    let pod = TestNs::new(NS_PREFIX, &format!("p{n}"));
    ip(&["-n", &pod.name, "link", "set", "lo", "up"]);
    let host_v4 = IpAddr::V4(Ipv4Addr::new(10, 244, n, 1));
    let pod_v4 = IpAddr::V4(Ipv4Addr::new(10, 244, n, 2));
    let host_spec = PortSpec::host("weft0", IpNet::from(host_v4), MTU, &[net("10.244.0.0/16")]);
    let host_tun = ensure_host_tun(&host.ns, &host_spec)
        .await
        .expect("host TUN");
    let pod_tun = create_pod_tun(
        &pod.ns,
        &PortSpec::pod("eth0", vec![IpNet::from(pod_v4)], MTU),
    )
    .await
    .expect("pod TUN");
    let bind = underlay(n);
    let udp = netns::run_in_async(&host.ns, move || UdpSocket::bind(bind))
        .await
        .expect("enter node namespace")
        .expect("bind the UDP socket");
    let private_key = [n.wrapping_mul(29).wrapping_add(3); 32];
    let dp = Dataplane::start(
        DataplaneConfig {
            key: wg::NodeKey::from_bytes(private_key),
            node_cidrs: vec![net(&format!("10.244.{n}.0/24"))],
            host_addresses: vec![host_v4],
            persistent_keepalive: None,
            offload: std::env::var_os("WEFT_NO_OFFLOAD").is_none(),
            mtu: MTU,
            services: None,
        },
        host_tun,
        udp,
    )
    .expect("start the data plane");
    dp.attach_pod(PodPort {
        id: format!("pod-{n}"),
        tun: pod_tun,
        addresses: vec![pod_v4],
    })
    .await
    .expect("attach the pod");
    Node {
        dp,
        public_key: wg::public_key_of(private_key),
        n,
        pod,
        _host: host,
    }
}

/// CPU seconds (user + system) used so far by this process's data plane
/// threads.
fn dataplane_cpu() -> f64 {
    dataplane_threads_cpu().iter().sum()
}

/// CPU seconds used so far by each data plane thread, in thread id order.
fn dataplane_threads_cpu() -> Vec<f64> {
    let mut per_thread: Vec<(u64, u64)> = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("weft-dataplane") {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the parenthesised name: state is field 3; utime and
        // stime are fields 14 and 15.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let get = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<u64>().ok());
        let tid = task.file_name().to_string_lossy().parse().unwrap_or(0);
        per_thread.push((tid, get(14).unwrap_or(0) + get(15).unwrap_or(0)));
    }
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    per_thread.sort_unstable();
    per_thread.into_iter().map(|(_, t)| t as f64 / hz).collect()
}

/// (busy, total) jiffies of all CPUs so far, from `/proc/stat`.
fn cpu_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().next() else {
        return (0, 0);
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = v.iter().sum();
    // idle and iowait are fields 4 and 5.
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// The share of all CPUs busy between two [`cpu_jiffies`] readings.
fn busy_share(before: (u64, u64), after: (u64, u64)) -> f64 {
    let total = after.1.saturating_sub(before.1).max(1);
    after.0.saturating_sub(before.0) as f64 / total as f64
}

/// An `iperf3` server in `ns` for one test, killed on drop.
struct Server(Child);

impl Server {
    fn start(ns: &str, port: u16) -> Self {
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "iperf3", "-s", "-1", "-p"])
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start iperf3 -s");
        std::thread::sleep(Duration::from_millis(300));
        Self(child)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs an `iperf3` client in `ns` against `dst`, served from `server_ns`
/// (JSON output).
fn iperf(
    (ns, server_ns): (&str, &str),
    dst: Ipv4Addr,
    port: u16,
    extra: &[&str],
    secs: u64,
) -> serde_json::Value {
    let _server = Server::start(server_ns, port);
    let out = Command::new("timeout")
        .arg((secs + 20).to_string())
        .args(["ip", "netns", "exec", ns, "iperf3", "-J", "-c"])
        .arg(dst.to_string())
        .args(["-p", &port.to_string(), "-t", &secs.to_string()])
        .args(extra)
        .output()
        .expect("run iperf3 -c");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "iperf3 output: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Received Gbit/s of a TCP run.
fn tcp_gbps(v: &serde_json::Value) -> f64 {
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or_else(|| panic!("no sum_received in {v}"))
        / 1e9
}

/// Delivered 64-byte packets per second of a UDP run (the server's report).
fn udp_pps(v: &serde_json::Value, secs: u64) -> f64 {
    let bytes = v["end"]["sum_received"]["bytes"]
        .as_f64()
        .unwrap_or_else(|| panic!("no sum_received in {v}"));
    bytes / 64.0 / secs as f64
}

/// RTTs in ms of `count` pings from `ns` to `dst`, `interval` apart.
fn ping_rtts(ns: &str, dst: Ipv4Addr, count: u32) -> Vec<f64> {
    let out = Command::new("timeout")
        .arg("60")
        .args(["ip", "netns", "exec", ns, "ping", "-n", "-i", "0.01", "-c"])
        .arg(count.to_string())
        .arg(dst.to_string())
        .output()
        .expect("run ping");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut rtts: Vec<f64> = text
        .lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.split_whitespace().next())
        .filter_map(|t| t.parse().ok())
        .collect();
    rtts.sort_by(|a, b| a.partial_cmp(b).unwrap());
    rtts
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn wants(what: &str) -> bool {
    match std::env::var("WEFT_PERF_ONLY") {
        Ok(only) => only.split(',').any(|w| w.trim() == what),
        Err(_) => true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run with --ignored --nocapture, in release"]
async fn weft_versus_veth() {
    require_root();
    let secs: u64 = std::env::var("WEFT_PERF_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);

    // Reference: a bare veth pair between two namespaces.
    let va = TestNs::new(NS_PREFIX, "va");
    let vb = TestNs::new(NS_PREFIX, "vb");
    veth_pair(&va, &vb, "pv", "192.168.79", 1500);
    let veth_dst = Ipv4Addr::new(192, 168, 79, 2);

    // weft: two nodes over a veth underlay.
    let ha = TestNs::new(NS_PREFIX, "n1");
    let hb = TestNs::new(NS_PREFIX, "n2");
    veth_pair(&ha, &hb, "ul", "192.168.78", 1500);
    let a = node(1, ha).await;
    let b = node(2, hb).await;
    a.dp.set_peer(b.as_peer()).await.expect("A knows B");
    b.dp.set_peer(a.as_peer()).await.expect("B knows A");
    let weft_dst = Ipv4Addr::new(10, 244, 2, 2);
    let (pa, va_name) = (a.pod.name.clone(), va.name.clone());
    let (pb, vb_name) = (b.pod.name.clone(), vb.name.clone());
    // Handshake first.
    let warm = ping_rtts(&pa, weft_dst, 5);
    assert!(!warm.is_empty(), "no ping through weft");

    let mode = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!("\n== weft data plane vs veth ({mode} build, {secs} s runs) ==");
    let report = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        let mut machine = Vec::new();
        let mut run_both = |name: &str, extra: &[&str], metric: &dyn Fn(&serde_json::Value) -> f64| {
            let j0 = cpu_jiffies();
            let veth = metric(&iperf((&va_name, &vb_name), veth_dst, 5201, extra, secs));
            let j1 = cpu_jiffies();
            let cpu0 = dataplane_cpu();
            let threads0 = dataplane_threads_cpu();
            let t0 = Instant::now();
            let weft = metric(&iperf((&pa, &pb), weft_dst, 5202, extra, secs));
            let cpu = dataplane_cpu() - cpu0;
            let wall = t0.elapsed().as_secs_f64();
            let j2 = cpu_jiffies();
            let engines: Vec<String> = dataplane_threads_cpu()
                .iter()
                .zip(&threads0)
                .map(|(after, before)| format!("{:.0} %", 100.0 * (after - before) / wall))
                .collect();
            machine.push(format!(
                "{name:<14} machine busy: veth run {:.0} %, weft run {:.0} % (engines {})",
                100.0 * busy_share(j0, j1),
                100.0 * busy_share(j1, j2),
                engines.join(", ")
            ));
            (name.to_string(), veth, weft, cpu, wall)
        };
        if wants("tcp1") {
            let (name, veth, weft, cpu, wall) = run_both("tcp 1 stream", &[], &tcp_gbps);
            lines.push(format!(
                "{name:<14} veth {veth:7.2} Gbit/s  weft {weft:7.2} Gbit/s  {:5.1} %  \
                 dp cpu {cpu:.2} s / {wall:.1} s -> {:.2} Gbit per dp cpu-second",
                100.0 * weft / veth,
                weft * secs as f64 / cpu.max(0.01)
            ));
        }
        if wants("tcp4") {
            let (name, veth, weft, _, _) = run_both("tcp 4 streams", &["-P", "4"], &tcp_gbps);
            lines.push(format!(
                "{name:<14} veth {veth:7.2} Gbit/s  weft {weft:7.2} Gbit/s  {:5.1} %",
                100.0 * weft / veth
            ));
        }
        if wants("udp") {
            let metric = |v: &serde_json::Value| udp_pps(v, secs);
            let (name, veth, weft, _, _) =
                run_both("udp 64 B", &["-u", "-l", "64", "-b", "0"], &metric);
            lines.push(format!(
                "{name:<14} veth {:7.0} kpps    weft {:7.0} kpps    {:5.1} %",
                veth / 1e3,
                weft / 1e3,
                100.0 * weft / veth
            ));
        }
        lines.append(&mut machine);
        if wants("ping") {
            let veth = ping_rtts(&va_name, veth_dst, 300);
            let weft = ping_rtts(&pa, weft_dst, 300);
            lines.push(format!(
                "ping           veth p50 {:.3} p99 {:.3} ms   weft p50 {:.3} p99 {:.3} ms ({} replies)",
                percentile(&veth, 0.5),
                percentile(&veth, 0.99),
                percentile(&weft, 0.5),
                percentile(&weft, 0.99),
                weft.len()
            ));
        }
        lines
    })
    .await
    .expect("probe thread");
    for line in report {
        println!("{line}");
    }
    for (ns, what) in [(&a.pod.name, "pod A eth0"), (&b.pod.name, "pod B eth0")] {
        let out = Command::new("ip")
            .args(["-n", ns, "-s", "link", "show", "dev", "eth0"])
            .output()
            .expect("ip -s link");
        let text = String::from_utf8_lossy(&out.stdout);
        let stats: Vec<&str> = text.lines().skip(2).map(str::trim).collect();
        println!("{what}: {}", stats.join(" | "));
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "nstat",
                "-az",
                "UdpRcvbufErrors",
                "UdpInErrors",
            ])
            .output()
            .expect("nstat");
        let text = String::from_utf8_lossy(&out.stdout);
        let errors: Vec<&str> = text.lines().skip(1).collect();
        println!("{what} udp: {}", errors.join(" | "));
    }
    for (node, name) in [(&a, "A"), (&b, "B")] {
        let status = node.dp.status().await.expect("status");
        let nonzero: Vec<_> = status.drops.iter().filter(|(_, n)| *n > 0).collect();
        println!("node {name} drops: {nonzero:?}");
        println!("node {name} offloads: {:?}", status.offload);
    }
    drop((a, b, va, vb));
}
