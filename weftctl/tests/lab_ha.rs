//! A lab cluster on a highly available control plane (issue 17): three
//! `weft-control-plane` replicas (`cp`, `cp2`, `cp3`) on one etcd, all in
//! the lab's control-plane namespace, and two nodes of real agents with a
//! pod each, every agent given all three replicas.
//!
//! - A Service applied through `cp3` reaches the agents, which watch `cp`
//!   (the first of their list, and up): the delay is printed, and bounded
//!   only by a generous [`ARRIVES_WITHIN`] (no timing assertion).
//! - `cp` then `cp2` are SIGKILLed by pid, one by one, down to `cp3` alone;
//!   after each, a new Service applied through `cp3` still reaches both
//!   agents (their watches moved to a live replica), while a pod on n1
//!   pings a pod on n2 the whole time, and the nodes stay connected.
//!
//! Needs root (network namespaces, TUN devices) and etcd, and fails
//! without them. The lab's name carries this process's pid; a guard tears
//! it down (replicas, etcd, agents, namespaces) even when the test fails.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

mod lab_support;

use lab_support::{require_root, WEFTCTL};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use weft_lab::{build_binaries_once, ClusterGuard, ClusterSpec, PingStats};

/// The bound on a Service reaching the agents (a failure, not a measure:
/// the delays seen are printed).
const ARRIVES_WITHIN: Duration = Duration::from_secs(10);
/// After a replica is killed, the agents first notice their watch broke
/// and resume it on another replica.
const ARRIVES_AFTER_FAILOVER_WITHIN: Duration = Duration::from_secs(30);

/// How long the cluster runs on after each kill (pods pinging).
const RUN_ON_FOR: Duration = Duration::from_secs(2);

/// `weftctl apply` of `manifest` inside the control plane's namespace with
/// `admin_conf` (a replica's own credential: its address first).
fn apply_via(ns: &str, admin_conf: &Path, manifest: &str) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), manifest).unwrap();
    let out = Command::new("ip")
        .args(["netns", "exec", ns, WEFTCTL, "apply", "-f"])
        .arg(file.path())
        .arg("--config")
        .arg(admin_conf)
        .env_remove("WEFT_LAB")
        .env_remove("WEFT_CONFIG")
        .output()
        .expect("weftctl runs");
    assert!(
        out.status.success(),
        "weftctl apply through {} failed:\n{}{}",
        admin_conf.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn service(i: usize) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web-{i}\n  namespace: default\n\
         spec:\n  selector:\n    app: web\n  ports:\n  - port: 80\n"
    )
}

/// How many Services node `node`'s agent holds.
fn services_on(cluster: &ClusterGuard, node: &str) -> usize {
    cluster
        .agent_status(node)
        .ok()
        .and_then(|s| s.cluster_view)
        .map(|v| v.services)
        .unwrap_or(0)
}

/// Wait until every node's agent holds `want` Services; the time taken.
fn until_services(cluster: &ClusterGuard, want: usize, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let seen: Vec<usize> = ["n1", "n2"]
            .iter()
            .map(|n| services_on(cluster, n))
            .collect();
        if seen.iter().all(|s| *s >= want) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "the agents hold {seen:?} Services, not {want}, after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Pings from one namespace to an address until dropped or stopped, in
/// rounds; the totals come back from [`Pinger::finish`].
struct Pinger {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<PingStats, String>>>,
}

impl Pinger {
    fn start(ns: String, to: std::net::IpAddr) -> Pinger {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut total = PingStats::default();
            while !flag.load(Ordering::SeqCst) {
                let round = weft_lab::ping_stats(&ns, to, 10, Duration::from_secs(5))
                    .map_err(|e| e.to_string())?;
                total.sent += round.sent;
                total.received += round.received;
                total.rtts.extend(round.rtts);
            }
            Ok(total)
        });
        Pinger {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> PingStats {
        self.stop.store(true, Ordering::SeqCst);
        let thread = self.thread.take().expect("finished once");
        thread
            .join()
            .expect("the ping thread")
            .unwrap_or_else(|e| panic!("pinging failed: {e}"))
    }
}

impl Drop for Pinger {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// SIGKILL the replica `label` by pid and wait (bounded) until it is gone.
fn kill_replica(cluster: &ClusterGuard, label: &str) {
    let pid = cluster
        .running_pid(label)
        .unwrap_or_else(|| panic!("replica {label} is not running"));
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster.running_pid(label).is_some() {
        assert!(Instant::now() < deadline, "{label} (pid {pid}) still runs");
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("killed {label} (pid {pid})");
}

#[test]
fn pods_keep_talking_and_services_arrive_while_replicas_die() {
    require_root();
    let dir = Path::new(WEFTCTL).parent().expect("a directory");
    let binaries =
        build_binaries_once(dir).unwrap_or_else(|e| panic!("cannot build the lab's binaries: {e}"));
    let mut spec = ClusterSpec::new(&format!("ha{}", std::process::id()), 2, 1).unwrap();
    spec.binaries = Some(binaries);
    spec.replicas = 3;
    spec.external = false;
    let cluster = ClusterGuard::up(spec).unwrap();
    assert_eq!(cluster.control_plane_labels(), ["cp", "cp2", "cp3"]);
    let cp = cluster.control_plane().clone();
    let servers = cp.servers();
    assert_eq!(servers.split(',').count(), 3, "{servers}");
    for n in ["n1", "n2"] {
        let status = cluster.agent_status(n).unwrap();
        assert_eq!(
            status.node.control_plane, servers,
            "{n} lists every replica"
        );
    }
    let via = cluster.replica_admin_conf("cp3").unwrap().to_path_buf();

    let (from, to) = (
        cluster.pod("n1-p1").unwrap().clone(),
        cluster.pod("n2-p1").unwrap().clone(),
    );
    let pinger = Pinger::start(from.ns.clone(), to.ip);

    // All three up: the agents watch cp, the Service goes in through cp3.
    let base = services_on(&cluster, "n1");
    apply_via(&cp.ns, &via, &service(0));
    let took = until_services(&cluster, base + 1, ARRIVES_WITHIN);
    eprintln!("a Service applied through cp3 reached the agents watching cp after {took:?}");

    // Down to one replica, one by one.
    for (i, victim) in ["cp", "cp2"].iter().enumerate() {
        kill_replica(&cluster, victim);
        apply_via(&cp.ns, &via, &service(i + 1));
        let took = until_services(&cluster, base + i + 2, ARRIVES_AFTER_FAILOVER_WITHIN);
        eprintln!("with {victim} killed, a Service applied through cp3 reached both agents after {took:?}");
        // The cluster runs on what is left for a while, pods pinging.
        std::thread::sleep(RUN_ON_FOR);
    }
    assert!(cluster.running_pid("cp3").is_some(), "cp3 still serves");

    let stats = pinger.finish();
    eprintln!(
        "n1-p1 -> n2-p1 while the replicas died: {} of {} echo requests answered",
        stats.received, stats.sent
    );
    assert!(stats.sent >= 20, "the pinger ran: {} sent", stats.sent);
    // The data plane does not depend on the control plane: a lost echo is
    // a loss in the data plane (a few allowed for a loaded machine).
    assert!(
        stats.received * 100 >= stats.sent * 95,
        "pods stopped talking: {} of {} answered",
        stats.received,
        stats.sent
    );
    for n in ["n1", "n2"] {
        let status = cluster.agent_status(n).unwrap();
        assert!(
            status.node.control_plane_connected,
            "{n} is connected to the last replica: {:?}",
            status.node.last_error
        );
    }
    let report = cluster.check_connectivity().unwrap();
    assert!(report.all_ok(), "{report:?}");
    cluster.down().unwrap();
}
