//! Services end to end in a lab cluster of real agents (issue 14): a
//! ClusterIP Service with endpoints on n1 and n2, reached over TCP from a
//! pod on n3 and from n3's own namespace (through `weft0`), every endpoint
//! used, the server seeing the client's real address; a Service without
//! endpoints refusing at once (TCP RST, ICMP port unreachable for UDP);
//! the counters in `weftctl status`. Then ClientIP affinity, a pod
//! reaching itself through its Service (hairpin), and an endpoint removed
//! while UDP flows use it: nothing reaches it a second after the change,
//! and its flows go on to the endpoint left.
//!
//! The servers and clients are threads of this test inside the lab's
//! namespaces (`lab_support/net.rs`). Needs root, and fails without it.
//! The lab's name carries this process's pid; a guard tears it down even
//! when the test fails.

mod lab_support;

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use lab_support::net::{fetch, fetch_n, run_in, until_served, Got, Server};
use lab_support::{ok, require_root, Lab};

/// How long a new Service may take to be served from a node (control
/// plane -> watch -> agent -> compiled table), at most.
const SERVED_WITHIN: Duration = Duration::from_secs(20);

/// Connections the client makes through the Service.
const CONNECTIONS: usize = 40;

const SERVICES: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: echo
  namespace: shop
spec:
  selector:
    app: echo
  ports:
  - name: http
    port: 80
    targetPort: http
---
apiVersion: v1
kind: Service
metadata:
  name: empty
  namespace: shop
spec:
  selector:
    app: nothing
  ports:
  - name: http
    port: 80
    targetPort: 8080
  - name: dns
    port: 53
    protocol: UDP
";

/// The cluster IP of `shop/NAME`.
fn cluster_ip(lab: &Lab, name: &str) -> IpAddr {
    lab.cluster_ip_in("shop", name)
}

/// `name -> count` of the lines, checking each saw `client` as the peer.
fn tally(got: &[Got], client: IpAddr) -> BTreeMap<String, usize> {
    let mut by = BTreeMap::new();
    for g in got {
        let Got::Line(line) = g else {
            panic!("a connection through the Service failed: {g:?} (all: {got:?})")
        };
        let (name, peer) = line.split_once(' ').expect("name and peer");
        let peer: SocketAddr = peer.parse().expect("the peer address");
        assert_eq!(
            peer.ip(),
            client,
            "the server must see the client's own address: {line}"
        );
        *by.entry(name.to_string()).or_default() += 1;
    }
    by
}

#[test]
fn a_cluster_ip_reaches_endpoints_on_two_nodes_and_refuses_without_one() {
    require_root();
    let mut lab = Lab::up("sa", 3);
    lab.pod("shop/echo-1", "n1", &["app=echo"], &["http=8080/TCP"]);
    lab.pod("shop/echo-2", "n2", &["app=echo"], &["http=8080/TCP"]);
    lab.pod("shop/client", "n3", &["app=client"], &[]);
    let _s1 = Server::tcp(lab.netns("shop/echo-1"), 8080, "echo-1");
    let _s2 = Server::tcp(lab.netns("shop/echo-2"), 8080, "echo-2");
    lab.apply(SERVICES);
    let vip = SocketAddr::new(cluster_ip(&lab, "echo"), 80);
    let client = lab.netns("shop/client").to_path_buf();

    // Served once the Service and its endpoints reached n3's agent.
    let first = until_served(&client, vip, SERVED_WITHIN);
    assert!(
        matches!(first, Got::Line(_)),
        "{vip} not served from the client pod: {first:?}"
    );

    // From the pod on n3: both endpoints (on n1 and n2) used, each seeing
    // the pod's own address (no SNAT).
    let got = fetch_n(&client, vip, CONNECTIONS);
    let by = tally(&got, lab.ip("shop/client"));
    assert_eq!(
        by.keys().map(String::as_str).collect::<Vec<_>>(),
        ["echo-1", "echo-2"],
        "every endpoint used over {CONNECTIONS} connections: {by:?}"
    );

    // From n3's own namespace, through weft0: the server sees n3's
    // overlay address.
    let n3_overlay = lab.cluster.node("n3").unwrap().overlay.expect("n3 joined");
    let got = fetch_n(&lab.node_netns("n3"), vip, CONNECTIONS);
    let by = tally(&got, n3_overlay);
    assert_eq!(by.len(), 2, "every endpoint used from the node: {by:?}");

    // (until_served may have been refused while the Service had no
    // endpoints yet: counted from here.)
    let before = lab
        .status("n3")
        .dataplane
        .and_then(|d| d.services)
        .expect("services are on");
    // A Service without endpoints: a refusal (RST), not a timeout; UDP
    // gets ICMP port unreachable (a connected socket reports it).
    let empty = cluster_ip(&lab, "empty");
    let got = run_in(&client, move || {
        fetch(SocketAddr::new(empty, 80), Duration::from_secs(5))
    });
    assert!(
        matches!(got, Got::Refused),
        "TCP to a Service without endpoints: {got:?}"
    );
    let udp = run_in(&client, move || {
        let u = UdpSocket::bind("0.0.0.0:0").unwrap();
        u.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        u.connect(SocketAddr::new(empty, 53)).unwrap();
        u.send(b"anyone?").unwrap();
        u.recv(&mut [0u8; 64]).map_err(|e| e.kind())
    });
    assert_eq!(
        udp,
        Err(ErrorKind::ConnectionRefused),
        "UDP to a Service without endpoints"
    );
    // A port the Service lacks: refused the same way.
    let got = run_in(&client, move || {
        fetch(SocketAddr::new(empty, 81), Duration::from_secs(5))
    });
    assert!(
        matches!(got, Got::Refused),
        "TCP to a port the Service lacks: {got:?}"
    );

    // The counters, from the agent and through weftctl status.
    let status = lab.status("n3");
    let dp = status.dataplane.expect("the data plane answers");
    let svc = dp.services.expect("services are on");
    assert!(svc.services >= 2, "{svc:?}");
    assert!(svc.translations >= 2 * CONNECTIONS as u64, "{svc:?}");
    assert_eq!(
        svc.no_endpoint_rejects - before.no_endpoint_rejects,
        2,
        "{svc:?}"
    );
    assert_eq!(
        svc.unknown_port_rejects - before.unknown_port_rejects,
        1,
        "{svc:?}"
    );
    assert!(svc.conntrack_inserts >= svc.translations, "{svc:?}");
    let drops: BTreeMap<_, _> = dp
        .drops
        .iter()
        .map(|d| (d.reason.as_str(), d.count))
        .collect();
    assert_eq!(drops["service_no_endpoints"], svc.no_endpoint_rejects);
    let socket = lab.cluster.node("n3").unwrap().api_socket.clone();
    let text = ok(&["status", "--agent-socket", socket.to_str().unwrap()]);
    assert!(
        text.contains("services:") && text.contains("conntrack:"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{} refused for no endpoint",
            svc.no_endpoint_rejects
        )),
        "{text}"
    );

    let Lab { cluster, .. } = lab;
    cluster.down().unwrap();
}

const MORE_SERVICES: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: sticky
  namespace: shop
spec:
  selector:
    app: echo
  sessionAffinity: ClientIP
  sessionAffinityConfig:
    clientIP:
      timeoutSeconds: 600
  ports:
  - name: http
    port: 80
    targetPort: http
---
apiVersion: v1
kind: Service
metadata:
  name: itself
  namespace: shop
spec:
  selector:
    id: echo-1
  ports:
  - name: http
    port: 80
    targetPort: http
";

/// The UDP Service, selecting `selector` (`app: echo`, then `id: echo-1`).
fn dgram(selector: &str) -> String {
    format!(
        "\
apiVersion: v1
kind: Service
metadata:
  name: dgram
  namespace: shop
spec:
  selector:
    {selector}
  ports:
  - name: dns
    port: 53
    protocol: UDP
    targetPort: dns
"
    )
}

/// UDP flows spread over both endpoints while the client sends.
const UDP_FLOWS: usize = 16;
/// After an endpoint is removed, nothing may reach it later than this.
const REMOVED_WITHIN: Duration = Duration::from_secs(1);

#[test]
fn affinity_sticks_hairpin_works_and_a_removed_endpoint_gets_no_more_udp() {
    require_root();
    let mut lab = Lab::up("sb", 2);
    let ports = ["http=8080/TCP", "dns=5353/UDP"];
    lab.pod("shop/echo-1", "n1", &["app=echo", "id=echo-1"], &ports);
    lab.pod("shop/echo-2", "n2", &["app=echo", "id=echo-2"], &ports);
    lab.pod("shop/client", "n1", &["app=client"], &[]);
    let _t1 = Server::tcp(lab.netns("shop/echo-1"), 8080, "echo-1");
    let _t2 = Server::tcp(lab.netns("shop/echo-2"), 8080, "echo-2");
    let u1 = Server::udp(lab.netns("shop/echo-1"), 5353, "echo-1");
    let u2 = Server::udp(lab.netns("shop/echo-2"), 5353, "echo-2");
    lab.apply(MORE_SERVICES);
    lab.apply(&dgram("app: echo"));
    let client = lab.netns("shop/client").to_path_buf();

    // ClientIP affinity: every connection of the client to the same
    // endpoint.
    let sticky = SocketAddr::new(cluster_ip(&lab, "sticky"), 80);
    let first = until_served(&client, sticky, SERVED_WITHIN);
    assert!(matches!(first, Got::Line(_)), "{sticky}: {first:?}");
    let by = tally(
        &fetch_n(&client, sticky, CONNECTIONS),
        lab.ip("shop/client"),
    );
    assert_eq!(by.len(), 1, "ClientIP affinity: one endpoint, got {by:?}");
    let svc = lab.status("n1").dataplane.and_then(|d| d.services).unwrap();
    assert!(svc.affinity_hits >= CONNECTIONS as u64, "{svc:?}");

    // Hairpin: echo-1 reaches itself through its Service; it sees the
    // connection come from its node's address (the one SNAT weft does).
    let itself = SocketAddr::new(cluster_ip(&lab, "itself"), 80);
    let got = until_served(lab.netns("shop/echo-1"), itself, SERVED_WITHIN);
    let n1_overlay = lab.cluster.node("n1").unwrap().overlay.expect("n1 joined");
    let by = tally(&[got], n1_overlay);
    assert_eq!(by.keys().collect::<Vec<_>>(), ["echo-1"]);
    assert!(
        lab.status("n1")
            .dataplane
            .and_then(|d| d.services)
            .unwrap()
            .hairpins
            >= 1
    );

    // UDP flows over both endpoints; then echo-2 leaves the Service while
    // the client sends. Nothing reaches it a second after the change, and
    // its flows go on to echo-1.
    let vip = SocketAddr::new(cluster_ip(&lab, "dgram"), 53);
    let senders =
        lab_support::net::UdpSenders::start(&client, vip, UDP_FLOWS, Duration::from_millis(20));
    let mut flows = senders.ports.clone();
    flows.sort_unstable();
    let deadline = std::time::Instant::now() + SERVED_WITHIN;
    while u2.seen().is_empty() || u1.seen().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "{UDP_FLOWS} UDP flows did not reach both endpoints: echo-1 {}, echo-2 {}",
            u1.seen().len(),
            u2.seen().len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    lab.apply(&dgram("id: echo-1"));
    let changed = std::time::Instant::now();
    std::thread::sleep(REMOVED_WITHIN + Duration::from_secs(2));
    drop(senders);
    let late: Vec<_> = u2
        .seen()
        .into_iter()
        .filter(|s| s.at > changed + REMOVED_WITHIN)
        .collect();
    assert!(
        late.is_empty(),
        "{} datagrams reached the removed endpoint more than {REMOVED_WITHIN:?} after the change: {:?}",
        late.len(),
        late.first()
    );
    let mut moved: Vec<u16> = u1
        .seen()
        .into_iter()
        .filter(|s| s.at > changed + REMOVED_WITHIN)
        .map(|s| {
            assert_eq!(s.peer.ip(), lab.ip("shop/client"));
            s.peer.port()
        })
        .collect();
    moved.sort_unstable();
    moved.dedup();
    assert_eq!(moved, flows, "every flow goes on to echo-1");

    let Lab { cluster, .. } = lab;
    cluster.down().unwrap();
}
