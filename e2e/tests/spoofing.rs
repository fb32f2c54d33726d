//! Anti-spoofing end to end: a pod may only send from its own address, and
//! a peer only from its own pod CIDR.
//!
//! Root only (fails without it); a pid-named lab, torn down by its guard
//! even on panic.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use base64::Engine as _;
use weft_e2e::{
    binaries, drop_count, ipv4_udp, peer_names, raw_ipv4_socket, require_root, send_raw, spec, up,
    wait_until, E2eError, Result, RoguePeer, Stopwatch, UdpInbox,
};
use weft_lab::ClusterGuard;

/// How long a packet that should arrive gets to do so.
const ARRIVAL: Duration = Duration::from_secs(5);
/// How long an agent's counters get to show a drop.
const COUNTED: Duration = Duration::from_secs(5);

fn v4(ip: IpAddr) -> Result<Ipv4Addr> {
    match ip {
        IpAddr::V4(a) => Ok(a),
        IpAddr::V6(a) => Err(E2eError::failed(format!("{a} is not IPv4"))),
    }
}

fn pod_ip(cluster: &ClusterGuard, pod: &str) -> Result<Ipv4Addr> {
    let p = cluster
        .pod(pod)
        .ok_or_else(|| E2eError::failed(format!("no pod {pod}")))?;
    v4(p.ip)
}

fn node_ip(cluster: &ClusterGuard, node: &str) -> Result<Ipv4Addr> {
    v4(cluster
        .node_overlay(node)
        .ok_or_else(|| E2eError::failed(format!("no overlay address for {node}")))?)
}

/// Waits until node `node`'s drop counter `reason` reaches `at_least`;
/// returns its value then.
fn wait_count(cluster: &ClusterGuard, node: &str, reason: &str, at_least: u64) -> Result<u64> {
    wait_until(
        &format!("{node}'s {reason} counter to reach {at_least}"),
        COUNTED,
        || {
            let status = cluster.agent_status(node).map_err(|e| e.to_string())?;
            let n = drop_count(&status, reason);
            if n >= at_least {
                Ok(n)
            } else {
                Err(format!("{reason} = {n}"))
            }
        },
    )
}

/// 2 nodes x 2 pods, and a rogue node that joined for real.
///
/// (a) Pod n1-p1 sends UDP to n2-p1 over a raw socket with other sources:
/// its neighbour's address, a pod of the other node, its node's overlay
/// address, an address outside the cluster. n1 counts each as
/// `spoofed_pod_source` and n2-p1 receives none of them; the same packet
/// from n1-p1's own address, sent last, arrives.
///
/// (b) The rogue (its own namespace on the underlay, its own boringtun
/// tunnel to n1) sends n1-p1 encrypted packets whose inner source is outside
/// the rogue's pod CIDR: another node's pod, another node's address, a pod
/// of n1 itself, an address outside the cluster. n1 counts each as
/// `spoofed_peer_source` and n1-p1 receives none; a packet from an address
/// of the rogue's own CIDR, sent last, arrives.
#[test]
fn spoofed_sources_are_dropped() -> Result<()> {
    require_root()?;
    let mut t = Stopwatch::start("spoofing");
    binaries()?;
    t.lap("binaries built");
    let cluster = up(spec("e2esp", 2, 2)?)?;
    t.lap("cluster up (2 nodes x 2 pods)");
    let (p1, p2) = (pod_ip(&cluster, "n1-p1")?, pod_ip(&cluster, "n1-p2")?);
    let (q1, q2) = (pod_ip(&cluster, "n2-p1")?, pod_ip(&cluster, "n2-p2")?);
    let (n1, n2) = (node_ip(&cluster, "n1")?, node_ip(&cluster, "n2")?);
    let outside = Ipv4Addr::new(10, 99, 0, 1);
    let netns = |pod: &str| {
        cluster
            .pod(pod)
            .map(|p| p.netns.clone())
            .unwrap_or_default()
    };

    // (a) A pod sending from addresses that are not its own.
    let mut inbox = UdpInbox::bind(&netns("n2-p1"), SocketAddr::new(q1.into(), 6001))?;
    let raw = raw_ipv4_socket(&netns("n1-p1"))?;
    let spoofs = [p2, q2, n1, outside];
    let before = drop_count(&cluster.agent_status("n1")?, "spoofed_pod_source");
    for (i, src) in spoofs.iter().enumerate() {
        let payload = format!("pod-spoof-{i}-from-{src}");
        let packet = ipv4_udp(*src, 4000, q1, 6001, payload.as_bytes())
            .ok_or_else(|| E2eError::failed("building a packet"))?;
        send_raw(&raw, &packet, q1)?;
    }
    let legit = ipv4_udp(p1, 4000, q1, 6001, b"pod-legit")
        .ok_or_else(|| E2eError::failed("building a packet"))?;
    send_raw(&raw, &legit, q1)?;
    assert!(
        inbox.wait_for(b"pod-legit", ARRIVAL)?,
        "the packet from n1-p1's own address did not arrive: the test cannot see arrivals"
    );
    // They left in order on one path: anything spoofed that got through
    // would have arrived before the legitimate packet. Linger a little too.
    inbox.receive_for(Duration::from_millis(300))?;
    let leaked: Vec<String> = inbox
        .received
        .iter()
        .filter(|(_, p)| p.starts_with(b"pod-spoof"))
        .map(|(from, p)| format!("{} from {from}", String::from_utf8_lossy(p)))
        .collect();
    assert!(leaked.is_empty(), "spoofed packets arrived: {leaked:?}");
    let after = wait_count(
        &cluster,
        "n1",
        "spoofed_pod_source",
        before + spoofs.len() as u64,
    )?;
    assert_eq!(after - before, spoofs.len() as u64, "spoofed_pod_source");
    t.lap("(a) spoofing pod");

    // (b) A peer sending from addresses outside its pod CIDR.
    let mut rogue = RoguePeer::join(&cluster, "rogue", 9)?;
    let cidr = rogue.joined.pod_cidr;
    eprintln!(
        "rogue joined: id {}, pod CIDR {cidr}, endpoint {}",
        rogue.joined.node_id, rogue.joined.endpoint
    );
    let key = wait_until(
        "n1 to know the rogue, and n2 to know n1's key",
        ARRIVAL,
        || {
            let n1_status = cluster.agent_status("n1").map_err(|e| e.to_string())?;
            if !peer_names(&n1_status).contains("rogue") {
                return Err(format!("n1's peers: {:?}", peer_names(&n1_status)));
            }
            let n2_status = cluster.agent_status("n2").map_err(|e| e.to_string())?;
            let key = n2_status
                .dataplane
                .and_then(|dp| dp.peers.into_iter().find(|p| p.name == "n1"))
                .map(|p| p.public_key)
                .ok_or("n2 has no peer n1")?;
            base64::engine::general_purpose::STANDARD
                .decode(&key)
                .ok()
                .and_then(|k| <[u8; 32]>::try_from(k).ok())
                .ok_or_else(|| format!("n1's key {key:?} is not base64 of 32 bytes"))
        },
    )?;
    let n1_endpoint = cluster
        .node("n1")
        .map(|n| n.endpoint)
        .unwrap_or(([0; 4], 0).into());
    rogue.connect(key, n1_endpoint, Duration::from_secs(10))?;

    let mut inbox = UdpInbox::bind(&netns("n1-p1"), SocketAddr::new(p1.into(), 6002))?;
    let spoofs = [q1, n2, p2, outside];
    for src in spoofs {
        assert!(!cidr.contains(&IpAddr::V4(src)), "{src} is in {cidr}");
    }
    let own = match cidr.hosts().nth(1) {
        Some(IpAddr::V4(a)) => a,
        other => {
            return Err(E2eError::failed(format!(
                "no IPv4 host in {cidr}: {other:?}"
            )))
        }
    };
    let before = drop_count(&cluster.agent_status("n1")?, "spoofed_peer_source");
    for (i, src) in spoofs.iter().enumerate() {
        let payload = format!("peer-spoof-{i}-from-{src}");
        let packet = ipv4_udp(*src, 4000, p1, 6002, payload.as_bytes())
            .ok_or_else(|| E2eError::failed("building a packet"))?;
        rogue.send(&packet)?;
    }
    let legit = ipv4_udp(own, 4000, p1, 6002, b"peer-legit")
        .ok_or_else(|| E2eError::failed("building a packet"))?;
    rogue.send(&legit)?;
    assert!(
        inbox.wait_for(b"peer-legit", ARRIVAL)?,
        "the rogue's packet from its own CIDR ({own}) did not arrive: the test cannot see arrivals"
    );
    inbox.receive_for(Duration::from_millis(300))?;
    let leaked: Vec<String> = inbox
        .received
        .iter()
        .filter(|(_, p)| p.starts_with(b"peer-spoof"))
        .map(|(from, p)| format!("{} from {from}", String::from_utf8_lossy(p)))
        .collect();
    assert!(leaked.is_empty(), "spoofed packets arrived: {leaked:?}");
    let after = wait_count(
        &cluster,
        "n1",
        "spoofed_peer_source",
        before + spoofs.len() as u64,
    )?;
    assert_eq!(after - before, spoofs.len() as u64, "spoofed_peer_source");
    t.lap("(b) spoofing peer");

    cluster.down()?;
    t.lap("down");
    Ok(())
}
