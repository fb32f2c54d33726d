//! Churn end to end: a node joins, one leaves, one dies and expires, and
//! every agent's peer list follows.
//!
//! Root only (fails without it); a pid-named lab, torn down by its guard
//! even on panic.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use weft_e2e::{
    binaries, peer_names, ping_until, require_root, spec, up, wait_until, E2eError, Result,
    Stopwatch,
};
use weft_lab::{exec_in, ClusterGuard, Signal};
use weft_proto::v1::{GetNodeRequest, ListNodesRequest};

/// The control plane's lease TTL for this cluster, in seconds: agents renew
/// every third of it.
const LEASE_TTL: u64 = 3;
/// Its removal grace: a node is removed this long after turning NotReady.
const REMOVAL_GRACE: u64 = 3;
/// How soon after a node joined every existing pod must reach it.
const JOIN_REACH: Duration = Duration::from_secs(5);

/// The `Instant` of a Unix time in milliseconds (from the control plane).
fn instant_of_unix_ms(ms: i64) -> Instant {
    let then = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    let (now, now_sys) = (Instant::now(), SystemTime::now());
    match now_sys.duration_since(then) {
        Ok(ago) => now.checked_sub(ago).unwrap_or(now),
        Err(ahead) => now + ahead.duration(),
    }
}

/// The node names the control plane has.
fn cluster_nodes(cluster: &ClusterGuard) -> Result<BTreeSet<String>> {
    Ok(cluster.admin(|mut admin| async move {
        let nodes = admin.list_nodes(ListNodesRequest {}).await?.into_inner();
        Ok(nodes.nodes.into_iter().map(|n| n.name).collect())
    })?)
}

/// Waits until none of `agents` has `gone` as a peer.
fn wait_dropped(
    cluster: &ClusterGuard,
    agents: &[&str],
    gone: &str,
    timeout: Duration,
) -> Result<Duration> {
    let start = Instant::now();
    wait_until(
        &format!("agents {agents:?} to drop peer {gone}"),
        timeout,
        || {
            for agent in agents {
                let status = cluster.agent_status(agent).map_err(|e| e.to_string())?;
                let peers = peer_names(&status);
                if peers.contains(gone) {
                    return Err(format!("{agent} still has peers {peers:?}"));
                }
            }
            Ok(start.elapsed())
        },
    )
}

/// 3 nodes x 1 pod, lease TTL 3 s and removal grace 3 s.
///
/// - n4 joins (with a pod): every existing pod reaches n4's pod and n4's
///   overlay address within 5 s of the join (the control plane's join time).
/// - n2 leaves (agent stopped, `weft-agent leave`): the control plane and
///   every other agent drop it.
/// - n3's agent is killed (SIGKILL): once its lease and the grace period run
///   out, the control plane and every other agent drop it.
/// - n1 and n4, the survivors, still reach each other.
#[test]
fn nodes_join_leave_and_expire() -> Result<()> {
    require_root()?;
    let mut t = Stopwatch::start("churn");
    binaries()?;
    t.lap("binaries built");
    let mut s = spec("e2ech", 3, 1)?;
    s.control_plane_args = vec![
        "--lease-ttl".into(),
        LEASE_TTL.to_string(),
        "--removal-grace".into(),
        REMOVAL_GRACE.to_string(),
    ];
    let mut cluster = up(s)?;
    t.lap("cluster up (3 nodes x 1 pod)");

    // A node joins.
    let existing: Vec<(String, String)> = cluster
        .pods()
        .iter()
        .map(|p| (p.name.clone(), p.ns.clone()))
        .collect();
    cluster.add_node()?;
    let joined_ms = cluster.admin(|mut admin| async move {
        let node = admin
            .get_node(GetNodeRequest { name: "n4".into() })
            .await?
            .into_inner()
            .node;
        Ok(node.map(|n| n.joined_unix_ms))
    })?;
    let joined = instant_of_unix_ms(
        joined_ms.ok_or_else(|| E2eError::failed("the control plane has no node n4"))?,
    );
    let targets: Vec<(&str, IpAddr)> = vec![
        (
            "n4-p1",
            cluster.pod("n4-p1").map(|p| p.ip).unwrap_or([0; 4].into()),
        ),
        ("n4", cluster.node_overlay("n4").unwrap_or([0; 4].into())),
    ];
    let deadline = joined + JOIN_REACH;
    let results: Vec<(String, &str, Result<Option<Instant>>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = existing
            .iter()
            .flat_map(|(pod, ns)| targets.iter().map(move |(to, ip)| (pod, ns, *to, *ip)))
            .map(|(pod, ns, to, ip)| {
                scope.spawn(move || (pod.clone(), to, ping_until(ns, ip, deadline)))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    (
                        "?".into(),
                        "?",
                        Err(E2eError::failed("a ping thread panicked")),
                    )
                })
            })
            .collect()
    });
    let mut slowest = Duration::ZERO;
    for (from, to, result) in results {
        match result? {
            Some(at) => slowest = slowest.max(at.saturating_duration_since(joined)),
            None => panic!("{from} did not reach {to} within {JOIN_REACH:?} of n4 joining"),
        }
    }
    eprintln!("every existing pod reached n4 and n4-p1 within {slowest:.1?} of the join");
    t.lap("n4 joined and reached");

    // A node leaves: its agent stops, `weft-agent leave` removes it.
    cluster.stop_agent("n2", Signal::SIGTERM)?;
    let n2 = cluster
        .node("n2")
        .cloned()
        .ok_or_else(|| E2eError::failed("no node n2"))?;
    let agent = cluster.record().binaries.agent.display().to_string();
    let state_dir = n2.state_dir.display().to_string();
    let out = exec_in(
        &n2.ns,
        &agent,
        &["leave", "--state-dir", &state_dir],
        Duration::from_secs(30),
    )?;
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "weft-agent leave failed: {said}");
    assert!(said.contains("left the cluster"), "{said}");
    let took = wait_dropped(&cluster, &["n1", "n3", "n4"], "n2", Duration::from_secs(10))?;
    assert!(!cluster_nodes(&cluster)?.contains("n2"));
    eprintln!("n2 left; every agent dropped it within {took:.1?}");
    t.lap("n2 left");

    // A node dies and expires.
    cluster.stop_agent("n3", Signal::SIGKILL)?;
    let bound = Duration::from_secs(LEASE_TTL + REMOVAL_GRACE + 20);
    let took = wait_dropped(&cluster, &["n1", "n4"], "n3", bound)?;
    assert!(
        took > Duration::from_secs(REMOVAL_GRACE),
        "n3 was dropped after {took:?}, before its lease could have run out"
    );
    assert_eq!(
        cluster_nodes(&cluster)?,
        BTreeSet::from(["n1".to_string(), "n4".to_string()])
    );
    for agent in ["n1", "n4"] {
        let peers = peer_names(&cluster.agent_status(agent)?);
        let other = if agent == "n1" { "n4" } else { "n1" };
        assert_eq!(
            peers,
            BTreeSet::from([other.to_string()]),
            "{agent}'s peers"
        );
    }
    eprintln!("n3 was killed; every agent dropped it {took:.1?} later");
    t.lap("n3 killed and expired");

    // The survivors still reach each other.
    for (from, to) in [("n1-p1", "n4-p1"), ("n4-p1", "n1-p1")] {
        let ns = cluster.pod(from).map(|p| p.ns.clone()).unwrap_or_default();
        let ip = cluster.pod(to).map(|p| p.ip).unwrap_or([0; 4].into());
        let reached = ping_until(&ns, ip, Instant::now() + Duration::from_secs(5))?;
        assert!(reached.is_some(), "{from} does not reach {to}");
    }
    t.lap("survivors reach each other");

    cluster.down()?;
    t.lap("down");
    Ok(())
}
