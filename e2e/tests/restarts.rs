//! Restarts end to end: the control plane killed and restarted, an agent
//! killed and restarted, and what must survive each.
//!
//! Root only (fails without it); each test has its own pid-named lab, torn
//! down by its guard even on panic.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use weft_agent_api::NodeInfo;
use weft_e2e::{
    binaries, interface_addresses, peer_names, ping_until, require_root, spec, tcp_pair,
    tcp_retransmits, up, wait_until, E2eError, Pattern, PatternReader, PatternWriter, Result,
    Stopwatch,
};
use weft_lab::{ping, ClusterGuard, Signal};
use weft_proto::v1::ListNodesRequest;

/// How long the tests keep pinging while the control plane is dead.
const HEADLESS: Duration = Duration::from_secs(6);
/// The bound of every socket read and write of the TCP test.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(30);

/// The status of every agent in `nodes`.
fn node_infos(cluster: &ClusterGuard, nodes: &[&str]) -> Result<Vec<NodeInfo>> {
    nodes
        .iter()
        .map(|n| Ok(cluster.agent_status(n)?.node))
        .collect()
}

/// The control plane's nodes: `(name, id, pod CIDR, joined at)`, sorted.
fn listed_nodes(cluster: &ClusterGuard) -> Result<Vec<(String, u64, String, i64)>> {
    Ok(cluster.admin(|mut admin| async move {
        let r = admin.list_nodes(ListNodesRequest {}).await?.into_inner();
        let mut nodes: Vec<_> = r
            .nodes
            .into_iter()
            .map(|n| (n.name, n.id, n.pod_cidr, n.joined_unix_ms))
            .collect();
        nodes.sort();
        Ok(nodes)
    })?)
}

/// How many lines of the log at `path` contain `needle`.
fn log_lines(path: &Path, needle: &str) -> Result<usize> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| E2eError::io(format!("reading {}", path.display()), e))?;
    Ok(text.lines().filter(|l| l.contains(needle)).count())
}

/// 2 nodes x 1 pod. The control plane is killed (SIGKILL): pods keep
/// reaching each other across nodes for several seconds, and the agents
/// notice the link is down. It is started again on its state: the agents
/// resume their watch without re-joining (the same node ids, CIDRs and join
/// times at the control plane, the same count, no join in the agents' or
/// the control plane's logs), show the link up again at a revision at least the old one, and a
/// node that joins after the restart reaches them.
#[test]
fn control_plane_sigkill_keeps_traffic_and_a_restart_resumes_the_watch() -> Result<()> {
    require_root()?;
    let mut t = Stopwatch::start("control plane restart");
    binaries()?;
    t.lap("binaries built");
    let mut cluster = up(spec("e2ecp", 2, 1)?)?;
    t.lap("cluster up (2 nodes x 1 pod)");
    let nodes = ["n1", "n2"];
    let before = node_infos(&cluster, &nodes)?;
    assert!(
        before.iter().all(|n| n.control_plane_connected),
        "{before:?}"
    );
    let listed_before = listed_nodes(&cluster)?;
    assert_eq!(listed_before.len(), 2);
    let joins = |c: &ClusterGuard| -> Result<Vec<usize>> {
        nodes
            .iter()
            .map(|n| {
                let log = &c.node(n).ok_or_else(|| E2eError::failed("no node"))?.log;
                log_lines(log, "joined the cluster")
            })
            .collect()
    };
    let joins_before = joins(&cluster)?;
    assert_eq!(joins_before, [1, 1], "each agent logged its one join");
    let cp_joins_before = log_lines(&cluster.control_plane().log, "node joined")?;
    assert_eq!(cp_joins_before, 2, "the control plane logged two joins");

    cluster.stop_control_plane(Signal::SIGKILL)?;
    let killed = Instant::now();
    let pairs = [("n1-p1", "n2-p1"), ("n2-p1", "n1-p1")];
    let mut rounds = 0;
    while killed.elapsed() < HEADLESS {
        for (from, to) in pairs {
            let ns = cluster.pod(from).map(|p| p.ns.clone()).unwrap_or_default();
            let ip = cluster.pod(to).map(|p| p.ip).unwrap_or([0; 4].into());
            let rtt = ping(&ns, ip, 1, Duration::from_secs(2))?;
            assert!(
                rtt.is_some(),
                "{from} -> {to} failed {:.1?} after the control plane was killed",
                killed.elapsed()
            );
        }
        rounds += 1;
        std::thread::sleep(Duration::from_millis(250));
    }
    wait_until(
        "the agents to see the control plane down",
        Duration::from_secs(10),
        || {
            let infos = node_infos(&cluster, &nodes).map_err(|e| e.to_string())?;
            match infos.iter().find(|n| n.control_plane_connected) {
                Some(n) => Err(format!("{} still shows it connected", n.name)),
                None => Ok(()),
            }
        },
    )?;
    eprintln!("{rounds} rounds of pings in both directions with the control plane dead");
    t.lap("control plane dead, traffic flowing");

    cluster.start_control_plane()?;
    let restarted = Instant::now();
    let after = wait_until(
        "the agents to resume their watch",
        Duration::from_secs(30),
        || {
            let infos = node_infos(&cluster, &nodes).map_err(|e| e.to_string())?;
            for (a, b) in infos.iter().zip(&before) {
                if !a.control_plane_connected || a.watch_revision < b.watch_revision {
                    return Err(format!(
                        "{}: connected {}, revision {} (was {}), last error {:?}",
                        a.name,
                        a.control_plane_connected,
                        a.watch_revision,
                        b.watch_revision,
                        a.last_error
                    ));
                }
            }
            Ok(infos)
        },
    )?;
    eprintln!(
        "agents resumed {:.1?} after the restart",
        restarted.elapsed()
    );
    for (a, b) in after.iter().zip(&before) {
        assert_eq!(
            (a.node_id, &a.pod_cidr, &a.node_address),
            (b.node_id, &b.pod_cidr, &b.node_address),
            "{}",
            a.name
        );
    }
    assert_eq!(
        listed_nodes(&cluster)?,
        listed_before,
        "the control plane's nodes"
    );
    assert_eq!(joins(&cluster)?, joins_before, "agents joined again");
    assert_eq!(
        log_lines(&cluster.control_plane().log, "node joined")?,
        cp_joins_before,
        "the control plane saw a join after its restart"
    );
    t.lap("watch resumed");

    // A change made after the restart reaches them.
    let n3 = cluster.add_node()?;
    for info in node_infos(&cluster, &nodes)? {
        assert!(info.control_plane_connected, "{info:?}");
    }
    for node in nodes {
        assert!(peer_names(&cluster.agent_status(node)?).contains(&n3.name));
    }
    let ns = cluster
        .pod("n1-p1")
        .map(|p| p.ns.clone())
        .unwrap_or_default();
    let ip = cluster.pod("n3-p1").map(|p| p.ip).unwrap_or([0; 4].into());
    assert!(
        ping_until(&ns, ip, Instant::now() + Duration::from_secs(5))?.is_some(),
        "n1-p1 does not reach n3-p1"
    );
    assert_eq!(listed_nodes(&cluster)?.len(), 3);
    t.lap("n3 joined after the restart");

    cluster.down()?;
    t.lap("down");
    Ok(())
}

/// Both directions of one TCP connection: what `a` sent and `b` received,
/// and back.
struct Duplex {
    a: TcpStream,
    b: TcpStream,
    a_to_b: (PatternWriter, PatternReader),
    b_to_a: (PatternWriter, PatternReader),
}

impl Duplex {
    /// Sends `n` bytes each way at once and reads them at the other end,
    /// running `meanwhile` on this thread while the data is in flight.
    fn exchange<T>(&mut self, n: u64, meanwhile: impl FnOnce() -> T) -> Result<T> {
        let (a, b) = (&self.a, &self.b);
        let (wa, rb) = (&mut self.a_to_b.0, &mut self.a_to_b.1);
        let (wb, ra) = (&mut self.b_to_a.0, &mut self.b_to_a.1);
        let (value, results) = std::thread::scope(|scope| {
            let handles = [
                scope.spawn(move || wa.write_to(&mut &*a, n).map(|_| "a sending")),
                scope.spawn(move || wb.write_to(&mut &*b, n).map(|_| "b sending")),
                scope.spawn(move || rb.read_from(&mut &*b, Some(n)).map(|_| "b receiving")),
                scope.spawn(move || ra.read_from(&mut &*a, Some(n)).map(|_| "a receiving")),
            ];
            let value = meanwhile();
            let results: Vec<std::io::Result<&str>> = handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(std::io::Error::other("a thread panicked")))
                })
                .collect();
            (value, results)
        });
        for r in results {
            r.map_err(|e| E2eError::io("exchanging data over the TCP connection", e))?;
        }
        Ok(value)
    }

    /// Both directions: everything sent arrived, byte for byte.
    fn check(&self) {
        for (dir, (w, r)) in [("a -> b", &self.a_to_b), ("b -> a", &self.b_to_a)] {
            assert_eq!(w.written, r.received, "{dir}: bytes");
            assert_eq!(r.first_mismatch, None, "{dir}: damaged");
            assert_eq!(w.sha256(), r.sha256(), "{dir}: SHA-256");
        }
    }
}

/// 2 nodes x 1 pod. A TCP connection between n1-p1 and n2-p1 carries data
/// both ways; n1's agent is killed (SIGKILL); data is sent both ways while
/// it is dead (TCP retransmits across the gap) and it is started again
/// meanwhile. Every byte arrives intact on both sides, the connection goes
/// on working, and n1-p1 keeps its interface (same index) and address
/// through it all.
#[test]
fn agent_sigkill_keeps_pods_and_a_tcp_connection() -> Result<()> {
    require_root()?;
    let mut t = Stopwatch::start("agent restart");
    binaries()?;
    t.lap("binaries built");
    let mut cluster = up(spec("e2eag", 2, 1)?)?;
    t.lap("cluster up (2 nodes x 1 pod)");
    let (a, b) = match (cluster.pod("n1-p1"), cluster.pod("n2-p1")) {
        (Some(a), Some(b)) => (a.clone(), b.clone()),
        _ => return Err(E2eError::failed("pods n1-p1 and n2-p1 missing")),
    };
    let addrs_before = interface_addresses(&a.ns)?;
    assert!(
        addrs_before
            .iter()
            .any(|x| x.ifname == a.ifname && x.address == a.ip && x.prefix == 32),
        "{} has no {}/32 on {}: {addrs_before:?}",
        a.name,
        a.ip,
        a.ifname
    );

    let addr = SocketAddr::new(b.ip, 5005);
    let (a_sock, b_sock) = tcp_pair(&a.netns, &b.netns, addr, Duration::from_secs(10))?;
    for s in [&a_sock, &b_sock] {
        s.set_read_timeout(Some(SOCKET_TIMEOUT))
            .and_then(|()| s.set_write_timeout(Some(SOCKET_TIMEOUT)))
            .map_err(|e| E2eError::io("setting socket timeouts", e))?;
    }
    let pattern = |seed| Pattern::random(seed, 1024 * 1024 + 61);
    let mut duplex = Duplex {
        a: a_sock,
        b: b_sock,
        a_to_b: (
            PatternWriter::new(pattern(1)),
            PatternReader::new(pattern(1)),
        ),
        b_to_a: (
            PatternWriter::new(pattern(2)),
            PatternReader::new(pattern(2)),
        ),
    };
    duplex.exchange(1024 * 1024, || ())?;
    duplex.check();
    t.lap("1 MiB each way before");

    let retransmits = || -> Result<u64> { Ok(tcp_retransmits(&a.ns)? + tcp_retransmits(&b.ns)?) };
    let retransmitted_before = retransmits()?;
    cluster.stop_agent("n1", Signal::SIGKILL)?;
    let killed = Instant::now();
    assert_eq!(
        interface_addresses(&a.ns)?,
        addrs_before,
        "{}'s interface changed with its agent dead",
        a.name
    );
    let started = duplex.exchange(512 * 1024, || {
        // The data leaves while the agent is dead; TCP retransmits it.
        std::thread::sleep(Duration::from_secs(1));
        let started = cluster.start_agent("n1");
        (started, killed.elapsed())
    })?;
    let (started, restarted_after) = started;
    started?;
    duplex.check();
    let retransmitted = retransmits()? - retransmitted_before;
    assert!(
        retransmitted > 0,
        "no TCP retransmits: the data did not really cross the gap"
    );
    eprintln!(
        "agent n1 was dead for {restarted_after:.1?}; 512 KiB each way sent meanwhile arrived \
         {:.1?} after the kill, with {retransmitted} TCP retransmits",
        killed.elapsed()
    );
    t.lap("512 KiB each way across the restart");

    duplex.exchange(256 * 1024, || ())?;
    duplex.check();
    t.lap("256 KiB each way after");

    assert_eq!(
        interface_addresses(&a.ns)?,
        addrs_before,
        "{}'s interface or address changed across the agent restart",
        a.name
    );
    let status = cluster.agent_status("n1")?;
    assert_eq!(status.pods, 1);
    let ports = status.dataplane.map(|dp| dp.ports).unwrap_or_default();
    assert!(
        ports
            .iter()
            .any(|p| p.id == a.name && p.addresses.contains(&a.ip)),
        "n1's data plane has no port for {}: {ports:?}",
        a.name
    );

    cluster.down()?;
    t.lap("down");
    Ok(())
}

/// Traffic *toward* a node whose agent restarted must flow again at once,
/// as traffic from it does: the restarted agent starts a handshake with
/// every peer it adds, instead of waiting ~15 s for the peers to notice
/// their old sessions are dead.
#[test]
fn traffic_toward_a_restarted_agent_flows_at_once() -> Result<()> {
    require_root()?;
    let mut cluster = up(spec("e2ehl", 2, 1)?)?;
    let ns = cluster
        .pod("n2-p1")
        .map(|p| p.ns.clone())
        .unwrap_or_default();
    let ip = cluster.pod("n1-p1").map(|p| p.ip).unwrap_or([0; 4].into());
    // A session between n2 and n1 exists before the restart.
    let before = ping_until(&ns, ip, Instant::now() + Duration::from_secs(10))?;
    assert!(before.is_some(), "n2-p1 does not reach n1-p1 at all");

    cluster.stop_agent("n1", Signal::SIGKILL)?;
    cluster.start_agent("n1")?;
    let restarted = Instant::now();
    let reached = ping_until(&ns, ip, restarted + Duration::from_secs(3))?;
    let no_session = weft_e2e::drop_count(&cluster.agent_status("n1")?, "wg_no_session");
    assert!(
        reached.is_some(),
        "n2-p1 does not reach n1-p1 within 3 s of n1's agent restarting; \
         n1 counts wg_no_session = {no_session}"
    );
    cluster.down()?;
    Ok(())
}
