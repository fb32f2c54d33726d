//! The data plane end to end: pods reach pods (same node and across nodes),
//! nodes reach pods and pods reach nodes, a bulk TCP stream arrives intact,
//! and the underlay carries nothing but WireGuard.
//!
//! Root only (fails without it); each test has its own pid-named lab, torn
//! down by its guard even on panic.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use weft_e2e::{
    binaries, contains, read_pcap, require_root, spec, tcp_pair, transfer, up, Capture, E2eError,
    Pattern, Result, Stopwatch, UnderlayReport,
};
use weft_lab::{CheckKind, CONTROL_PLANE_PORT, WIREGUARD_PORT};

/// The bulk stream's size: 50 MiB.
const BULK_BYTES: u64 = 50 * 1024 * 1024;
/// The marker the underlay test sends in clear inside the overlay.
const MARKER: &[u8] = b"WEFT-PLAINTEXT-MARKER-";

fn ipv4(ip: IpAddr) -> Result<Ipv4Addr> {
    match ip {
        IpAddr::V4(v4) => Ok(v4),
        IpAddr::V6(v6) => Err(E2eError::failed(format!("{v6} is not IPv4"))),
    }
}

/// 3 nodes x 2 pods: the full ping matrix (pod to pod on the same node and
/// across nodes, pod to every node's overlay address, node to every pod and
/// to every other node),
/// then 50 MiB over TCP from a pod on n1 to a pod on n3, compared byte for
/// byte and by SHA-256.
#[test]
fn pods_and_nodes_reach_each_other_and_bulk_tcp_arrives_intact() -> Result<()> {
    require_root()?;
    let mut t = Stopwatch::start("dataplane");
    binaries()?;
    t.lap("binaries built");
    let cluster = up(spec("e2edp", 3, 2)?)?;
    t.lap("cluster up (3 nodes x 2 pods)");

    let c = cluster.check_connectivity()?;
    let failed: Vec<String> = c
        .failures()
        .map(|f| format!("{} -> {} ({})", f.from, f.to, f.to_ip))
        .collect();
    assert!(failed.is_empty(), "failed pings: {failed:?}");
    let count = |kind| c.checks.iter().filter(|x| x.kind == kind).count();
    assert_eq!(count(CheckKind::PodToPod), 6 * 5);
    assert_eq!(count(CheckKind::PodToNode), 6 * 3);
    assert_eq!(count(CheckKind::NodeToPod), 3 * 6);
    assert_eq!(count(CheckKind::NodeToNode), 3 * 2);
    // Same node and across nodes are both in the matrix.
    for (from, to) in [("n1-p1", "n1-p2"), ("n1-p1", "n3-p2"), ("n2-p2", "n2-p1")] {
        assert!(c.get(from, to).is_some_and(|x| x.ok()), "{from} -> {to}");
    }
    for (from, to) in [("n2", "n1-p1"), ("n1-p1", "n2"), ("n3-p2", "n3")] {
        assert!(c.get(from, to).is_some_and(|x| x.ok()), "{from} -> {to}");
    }
    t.lap(&format!("ping matrix ({} checks)", c.checks.len()));

    let (a, b) = (cluster.pod("n1-p1").unwrap(), cluster.pod("n3-p2").unwrap());
    let addr = SocketAddr::new(b.ip, 5001);
    let (client, server) = tcp_pair(&a.netns, &b.netns, addr, Duration::from_secs(10))?;
    let pattern = Pattern::random(0x5eed, 1024 * 1024 + 61);
    let report = transfer(
        &client,
        &server,
        &pattern,
        BULK_BYTES,
        Duration::from_secs(60),
    )?;
    eprintln!(
        "bulk TCP {} -> {}: {} bytes in {:?} ({:.1} MB/s), sha256 {}",
        a.name,
        b.name,
        report.received,
        report.elapsed,
        report.mb_per_s(),
        report.received_sha256
    );
    assert!(report.intact(), "the stream arrived damaged: {report:?}");
    assert_eq!(report.received, BULK_BYTES);
    t.lap("50 MiB TCP");

    // The bulk transfer took the offload paths, and `status` shows it: the
    // sender's agent split TSO super-packets and sent UDP GSO runs; the
    // receiver's merged decrypted segments back into super-packets.
    let (sender, receiver) = (cluster.agent_status("n1")?, cluster.agent_status("n3")?);
    let offload = |s: &weft_agent_api::StatusResult| {
        s.dataplane
            .as_ref()
            .map(|d| d.offload.clone())
            .unwrap_or_default()
    };
    let (tx, rx) = (offload(&sender), offload(&receiver));
    eprintln!("offloads: sender {tx:?}, receiver {rx:?}");
    assert!(
        tx.tun && tx.udp_gso && rx.tun && rx.udp_gro,
        "offloads off: {tx:?} {rx:?}"
    );
    assert!(
        tx.tun_super_packets_read > 0 && tx.udp_gso_messages > 0,
        "{tx:?}"
    );
    assert!(
        rx.segments_coalesced > 0 && rx.tun_super_packets_written > 0,
        "{rx:?}"
    );

    cluster.down()?;
    t.lap("down");
    Ok(())
}

/// While 1 MiB of a plaintext marker crosses nodes inside the overlay (TCP
/// pod to pod, in both directions), `tcpdump -i any` in the underlay
/// namespace sees every frame on the bridge ports: the marker never shows,
/// and every IP packet between node addresses is WireGuard (UDP 51820 on
/// both sides, a WireGuard message); the only other traffic is ARP, the
/// agents' TLS to the control plane and link housekeeping (IGMP, ICMPv6
/// neighbour discovery and MLD).
#[test]
fn underlay_carries_only_wireguard() -> Result<()> {
    require_root()?;
    let mut t = Stopwatch::start("underlay");
    binaries()?;
    t.lap("binaries built");
    let cluster = up(spec("e2eul", 3, 1)?)?;
    t.lap("cluster up (3 nodes x 1 pod)");
    let file = cluster.lab().state_dir().join("underlay.pcap");
    let capture = Capture::start(&cluster.lab().state().underlay_ns, &file)?;

    let marker = Pattern::repeating(MARKER);
    let pairs = [("n1-p1", "n2-p1", 5002), ("n3-p1", "n1-p1", 5003)];
    let mut moved = 0;
    for (from, to, port) in pairs {
        let (a, b) = (cluster.pod(from).unwrap(), cluster.pod(to).unwrap());
        let addr = SocketAddr::new(b.ip, port);
        let (client, server) = tcp_pair(&a.netns, &b.netns, addr, Duration::from_secs(10))?;
        let report = transfer(
            &client,
            &server,
            &marker,
            1024 * 1024,
            Duration::from_secs(30),
        )?;
        assert!(report.intact(), "{from} -> {to}: {report:?}");
        moved += report.received;
    }
    // Let the last ACKs cross before stopping.
    std::thread::sleep(Duration::from_millis(200));
    let summary = capture.stop()?;
    t.lap("capture of 2 MiB of marker");
    eprintln!("tcpdump: {}", summary.stderr.replace('\n', " | "));
    assert_eq!(
        summary.dropped_by_kernel,
        Some(0),
        "the capture is incomplete: {}",
        summary.stderr
    );

    let bytes = std::fs::read(&file).map_err(|e| E2eError::io("reading the capture", e))?;
    assert!(
        !contains(&bytes, MARKER),
        "the plaintext marker is on the underlay ({})",
        file.display()
    );
    let frames = read_pcap(&file)?;
    let nodes: Vec<Ipv4Addr> = cluster.nodes().iter().map(|n| n.underlay).collect();
    let cp = ipv4(cluster.control_plane().address.ip())?;
    let report = UnderlayReport::analyze(&frames, &nodes, cp, WIREGUARD_PORT, CONTROL_PLANE_PORT);
    eprintln!(
        "underlay: {} frames, {} WireGuard ({} bytes), {} control plane, {} ARP, {} link-local",
        report.frames,
        report.wireguard_packets,
        report.wireguard_bytes,
        report.control_plane_packets,
        report.arp,
        report.link_local
    );
    assert!(
        report.violations.is_empty(),
        "{} frames that are not WireGuard, ARP or control-plane TLS, e.g. {:?}",
        report.violations.len(),
        &report.violations[..report.violations.len().min(10)]
    );
    // The capture saw the transfers (each frame twice: in and out of the
    // bridge), so the checks above are not vacuous.
    assert!(
        report.wireguard_bytes as u64 >= 2 * moved,
        "only {} WireGuard bytes captured for {moved} bytes moved",
        report.wireguard_bytes
    );
    t.lap("analysis");

    cluster.down()?;
    t.lap("down");
    Ok(())
}
