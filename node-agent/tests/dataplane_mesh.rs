//! Root-only tests of the data plane engine: two nodes, each a network
//! namespace with a host TUN `weft0`, a pod namespace with a pod TUN, and a
//! `Dataplane` on a UDP socket bound to its end of a veth pair (the
//! underlay). Pods ping each other (raw ICMP sockets: no `ping` binary
//! needed) and move TCP streams across; the tests then check status,
//! counters, peer changes, garbage on the port, and shutdown; and what a
//! pod cannot do (issue 10): a packet too big for the tunnel with DF set is
//! answered with ICMP "fragmentation needed" that the pod's kernel learns
//! the MTU from, and crafted virtio-net offload metadata (written with
//! python3 through AF_PACKET + PACKET_VNET_HDR) is refused by cause, never
//! amplified into thousands of datagrams.
//!
//! They fail (never skip) without root. Every test makes its own namespaces
//! under unique names and deletes them in `Drop` guards, so they run in
//! parallel and leave nothing behind when an assertion fails; every wait is
//! bounded.

use std::io::{Read, Write};
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, TcpListener, TcpStream,
    UdpSocket,
};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use nix::sys::socket::{recv, sendto, AddressFamily, MsgFlags, SockaddrIn, SockaddrIn6};
use nix::sys::time::{TimeVal, TimeValLike};
use weft_node_agent::engine::{
    Dataplane, DataplaneConfig, DataplaneError, DataplaneStatus, OffloadStatus, PeerSpec, PodPort,
};
use weft_node_agent::kernel::netlink::Route;
use weft_node_agent::kernel::netns::{self, NetNs};
use weft_node_agent::kernel::tun::{create_pod_tun, ensure_host_tun, PortSpec, Tun, TunOptions};
use weft_node_agent::wg::{self, NodeKey, Tunnel};
use weft_switch::offload::{vnet::GSO_TCPV4, VNET_HDR_LEN};
use weft_switch::testing;

mod support;
use support::{checksum, icmp_echo, ip, net, raw_icmp_socket, TestNs};

// ---------------------------------------------------------------- harness

/// Prefix of this binary's namespace names.
const NS_PREFIX: &str = "weft-dp";

const WG_PORT: u16 = 51820;
const MTU: u32 = 1420;

/// One node: its data plane and its namespaces. Fields drop in order: the
/// engine stops (closing every fd) before the namespaces go.
struct Node {
    dp: Dataplane,
    n: u8,
    /// Whether the overlay is dual-stack (pods also have an IPv6 address).
    dual: bool,
    public_key: [u8; 32],
    pod: TestNs,
    host: TestNs,
}

impl Node {
    fn underlay(&self) -> SocketAddr {
        underlay(self.n)
    }

    fn pod_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 244, self.n, 2)
    }

    fn host_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 244, self.n, 1)
    }

    fn pod6_addr(&self) -> Ipv6Addr {
        pod6(self.n)
    }

    fn name(&self) -> String {
        format!("node-{}", self.n)
    }

    /// How `self` is configured as a peer of another node.
    fn as_peer(&self) -> PeerSpec {
        PeerSpec {
            name: self.name(),
            public_key: self.public_key,
            endpoint: Some(self.underlay()),
            allowed: cidrs(self.n, self.dual),
            ready: true,
        }
    }

    async fn status(&self) -> DataplaneStatus {
        tokio::time::timeout(Duration::from_secs(5), self.dp.status())
            .await
            .expect("status within 5s")
            .expect("status")
    }
}

fn underlay(n: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 168, 77, n)), WG_PORT)
}

/// Node `n`'s pod CIDRs.
fn cidrs(n: u8, dual: bool) -> Vec<IpNet> {
    let mut cidrs = vec![net(&format!("10.244.{n}.0/24"))];
    if dual {
        cidrs.push(net(&format!("fd00:244:{n}::/64")));
    }
    cidrs
}

fn pod6(n: u8) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0x244, u16::from(n), 0, 0, 0, 0, 2)
}

fn private_key(n: u8) -> [u8; 32] {
    [n.wrapping_mul(17).wrapping_add(5); 32]
}

/// Node namespaces `a` and `b` joined by a veth pair.
fn underlay_pair(test: &str) -> (TestNs, TestNs) {
    let a = TestNs::new(NS_PREFIX, &format!("{test}-n1"));
    let b = TestNs::new(NS_PREFIX, &format!("{test}-n2"));
    ip(&[
        "link", "add", "name", "ul1", "netns", &a.name, "type", "veth", "peer", "name", "ul2",
        "netns", &b.name,
    ]);
    for (ns, n) in [(&a, 1), (&b, 2)] {
        let dev = format!("ul{n}");
        ip(&[
            "-n",
            &ns.name,
            "addr",
            "add",
            &format!("192.168.77.{n}/24"),
            "dev",
            &dev,
        ]);
        ip(&["-n", &ns.name, "link", "set", &dev, "up"]);
    }
    (a, b)
}

/// Builds node `n` in the node namespace `host`: weft0, a pod namespace
/// with its TUN, the UDP socket, the engine, and the pod attached.
async fn node(test: &str, n: u8, host: TestNs, offload: bool) -> Node {
    node_with(test, n, host, underlay(n), false, offload).await
}

/// [`node`] with the UDP socket bound to `bind`, and optionally a
/// dual-stack overlay (`fd00:244:N::/64` next to `10.244.N.0/24`).
async fn node_with(
    test: &str,
    n: u8,
    host: TestNs,
    bind: SocketAddr,
    dual: bool,
    offload: bool,
) -> Node {
    let pod = TestNs::new(NS_PREFIX, &format!("{test}-p{n}"));
    let host_v4 = IpAddr::V4(Ipv4Addr::new(10, 244, n, 1));
    let host_v6 = IpAddr::V6(Ipv6Addr::new(0xfd00, 0x244, u16::from(n), 0, 0, 0, 0, 1));
    let pod_v4 = IpAddr::V4(Ipv4Addr::new(10, 244, n, 2));
    let pod_v6 = IpAddr::V6(pod6(n));
    let mut host_spec = PortSpec::host("weft0", IpNet::from(host_v4), MTU, &[net("10.244.0.0/16")]);
    let mut pod_addrs = vec![pod_v4];
    let mut host_addrs = vec![host_v4];
    if dual {
        host_spec.addresses.push(IpNet::from(host_v6));
        host_spec.routes.push(Route::dev(net("fd00:244::/48")));
        pod_addrs.push(pod_v6);
        host_addrs.push(host_v6);
    }
    let host_tun = ensure_host_tun(&host.ns, &host_spec)
        .await
        .expect("host TUN");
    let pod_tun = create_pod_tun(
        &pod.ns,
        &PortSpec::pod(
            "eth0",
            pod_addrs.iter().map(|a| IpNet::from(*a)).collect(),
            MTU,
        ),
    )
    .await
    .expect("pod TUN");
    let udp = netns::run_in_async(&host.ns, move || UdpSocket::bind(bind))
        .await
        .expect("enter node namespace")
        .expect("bind the UDP socket");
    let private_key = private_key(n);
    let dp = Dataplane::start(
        DataplaneConfig {
            key: NodeKey::from_bytes(private_key),
            node_cidrs: cidrs(n, dual),
            host_addresses: host_addrs,
            persistent_keepalive: None,
            offload,
            mtu: MTU,
            services: None,
        },
        host_tun,
        udp,
    )
    .expect("start the data plane");
    assert_eq!(dp.public_key(), wg::public_key_of(private_key));
    assert_eq!(dp.local_addr(), Some(bind));
    dp.attach_pod(PodPort {
        id: format!("pod-{n}"),
        tun: pod_tun,
        addresses: pod_addrs,
    })
    .await
    .expect("attach the pod");
    Node {
        dp,
        n,
        dual,
        public_key: wg::public_key_of(private_key),
        pod,
        host,
    }
}

/// Two nodes that know each other as peers.
async fn mesh(test: &str, offload: bool) -> (Node, Node) {
    let (ha, hb) = underlay_pair(test);
    let a = node(test, 1, ha, offload).await;
    let b = node(test, 2, hb, offload).await;
    a.dp.set_peer(b.as_peer()).await.expect("A knows B");
    b.dp.set_peer(a.as_peer()).await.expect("B knows A");
    (a, b)
}

// ---------------------------------------------------------------- pings

static NEXT_IDENT: AtomicUsize = AtomicUsize::new(1);

/// Pings `dst` from a raw ICMP socket in the calling thread's namespace:
/// one echo request a second until a matching reply or `within` runs out.
fn ping_here(dst: Ipv4Addr, within: Duration) -> Result<Duration, String> {
    let ident = (NEXT_IDENT.fetch_add(1, Ordering::Relaxed) as u16) ^ (std::process::id() as u16);
    let sock = raw_icmp_socket(AddressFamily::Inet, TimeVal::milliseconds(200))?;
    let to = SockaddrIn::from(SocketAddrV4::new(dst, 0));
    let payload = b"weft data plane test";
    let start = Instant::now();
    let deadline = start + within;
    let mut seq = 0u16;
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        seq += 1;
        let sent = Instant::now();
        sendto(
            sock.as_raw_fd(),
            &icmp_echo(8, ident, seq, payload),
            &to,
            MsgFlags::empty(),
        )
        .map_err(|e| format!("sendto: {e}"))?;
        while sent.elapsed() < Duration::from_secs(1) && Instant::now() < deadline {
            let Ok(n) = recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty()) else {
                continue;
            };
            let ihl = usize::from(buf[0] & 0x0f) * 4;
            let Some(icmp) = buf.get(ihl..n) else {
                continue;
            };
            if icmp.len() >= 8
                && icmp[0] == 0
                && icmp[4..6] == ident.to_be_bytes()
                && &icmp[8..] == payload
            {
                if checksum(icmp) != 0 {
                    return Err("echo reply with a bad checksum".into());
                }
                return Ok(start.elapsed());
            }
        }
    }
    Err(format!("no echo reply from {dst} within {within:?}"))
}

/// [`ping_here`] for IPv6: a raw ICMPv6 socket (the kernel fills in the
/// checksum and strips the IPv6 header).
fn ping6_here(dst: Ipv6Addr, within: Duration) -> Result<Duration, String> {
    let ident = (NEXT_IDENT.fetch_add(1, Ordering::Relaxed) as u16) ^ (std::process::id() as u16);
    let sock = raw_icmp_socket(AddressFamily::Inet6, TimeVal::milliseconds(200))?;
    let to = SockaddrIn6::from(SocketAddrV6::new(dst, 0, 0, 0));
    let payload = b"weft data plane test v6";
    let start = Instant::now();
    let deadline = start + within;
    let mut seq = 0u16;
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        seq += 1;
        let sent = Instant::now();
        // The kernel fills in an ICMPv6 raw socket's checksum over the
        // pseudo-header, whatever the message carries.
        let request = icmp_echo(128, ident, seq, payload);
        sendto(sock.as_raw_fd(), &request, &to, MsgFlags::empty())
            .map_err(|e| format!("sendto: {e}"))?;
        while sent.elapsed() < Duration::from_secs(1) && Instant::now() < deadline {
            let Ok(n) = recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty()) else {
                continue;
            };
            let icmp = &buf[..n];
            if icmp.len() >= 8
                && icmp[0] == 129
                && icmp[4..6] == ident.to_be_bytes()
                && &icmp[8..] == payload
            {
                return Ok(start.elapsed());
            }
        }
    }
    Err(format!("no echo reply from {dst} within {within:?}"))
}

/// [`ping6_here`] from inside `ns`, off the async runtime.
async fn ping6(ns: &NetNs, dst: Ipv6Addr, within: Duration) -> Result<Duration, String> {
    let ns = ns.clone();
    let task = tokio::task::spawn_blocking(move || netns::run_in(&ns, || ping6_here(dst, within)));
    match tokio::time::timeout(within + Duration::from_secs(5), task).await {
        Ok(Ok(Ok(result))) => result,
        Ok(Ok(Err(e))) => Err(format!("entering the namespace: {e}")),
        Ok(Err(e)) => Err(format!("ping thread: {e}")),
        Err(_) => Err("ping thread hung".into()),
    }
}

/// [`ping_here`] from inside `ns`, off the async runtime.
async fn ping(ns: &NetNs, dst: Ipv4Addr, within: Duration) -> Result<Duration, String> {
    let ns = ns.clone();
    let task = tokio::task::spawn_blocking(move || netns::run_in(&ns, || ping_here(dst, within)));
    match tokio::time::timeout(within + Duration::from_secs(5), task).await {
        Ok(Ok(Ok(result))) => result,
        Ok(Ok(Err(e))) => Err(format!("entering the namespace: {e}")),
        Ok(Err(e)) => Err(format!("ping thread: {e}")),
        Err(_) => Err("ping thread hung".into()),
    }
}

fn drops(status: &DataplaneStatus, name: &str) -> u64 {
    status
        .drops
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, c)| *c)
        .unwrap_or_else(|| panic!("no drop counter named {name}"))
}

/// Polls `node`'s status until `check` holds, for at most `within`.
async fn wait_status(
    node: &Node,
    within: Duration,
    what: &str,
    check: impl Fn(&DataplaneStatus) -> bool,
) -> DataplaneStatus {
    let deadline = Instant::now() + within;
    loop {
        let status = node.status().await;
        if check(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {within:?}; status: {status:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const PING: Duration = Duration::from_secs(8);
const NO_PING: Duration = Duration::from_millis(1500);

// ------------------------------------------------------------------ tests

async fn pods_ping_each_other_and_status_shows_the_session(offload: bool) {
    let (a, b) = mesh("ping", offload).await;

    ping(&a.pod.ns, b.pod_addr(), PING)
        .await
        .expect("pod A -> pod B");
    ping(&b.pod.ns, a.pod_addr(), PING)
        .await
        .expect("pod B -> pod A");
    // Node to remote pod, and pod to its own node's host port.
    ping(&a.host.ns, b.pod_addr(), PING)
        .await
        .expect("node A -> pod B");
    ping(&b.pod.ns, b.host_addr(), PING)
        .await
        .expect("pod B -> node B");
    ping(&a.pod.ns, b.host_addr(), PING)
        .await
        .expect("pod A -> node B");

    for (node, other) in [(&a, &b), (&b, &a)] {
        let status = node.status().await;
        assert_eq!(status.peers.len(), 1, "{status:#?}");
        let peer = &status.peers[0];
        assert_eq!(peer.name, other.name());
        assert_eq!(peer.public_key, other.public_key);
        assert_eq!(peer.endpoint, Some(other.underlay()));
        assert!(peer.last_handshake.is_some(), "{status:#?}");
        assert!(peer.last_handshake.unwrap() < Duration::from_secs(60));
        assert!(peer.rx_bytes > 0 && peer.tx_bytes > 0, "{status:#?}");
        assert!(peer.rx_packets >= 3 && peer.tx_packets >= 3, "{status:#?}");
        assert_eq!(
            status.ports,
            vec![(format!("pod-{}", node.n), vec![IpAddr::V4(node.pod_addr())])]
        );
        assert!(status.forwarded_to_ports >= 2, "{status:#?}");
        assert!(status.forwarded_to_peers >= 2, "{status:#?}");
        assert_eq!(drops(&status, "spoofed_peer_source"), 0);
        assert_eq!(drops(&status, "peer_no_endpoint"), 0);
    }
    assert!(b.status().await.forwarded_to_host >= 1);
    assert!(a.status().await.forwarded_to_host >= 1);
}

/// Moves `bytes` from a client in `client_ns` to a server on `server_addr`
/// in `server_ns`, checks they arrived intact (the server acks the count),
/// and returns how long it took.
async fn tcp_transfer(
    client_ns: &NetNs,
    server_ns: &NetNs,
    server_addr: SocketAddr,
    bytes: usize,
) -> Duration {
    let (bound_tx, bound_rx) = std::sync::mpsc::channel();
    let server_ns = server_ns.clone();
    let server = std::thread::spawn(move || {
        netns::run_in(&server_ns, move || -> Result<Vec<u8>, String> {
            let listener = TcpListener::bind(server_addr).map_err(|e| format!("bind: {e}"))?;
            listener.set_nonblocking(true).map_err(|e| e.to_string())?;
            let _ = bound_tx.send(());
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut stream = loop {
                match listener.accept() {
                    Ok((s, _)) => break s,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if Instant::now() > deadline {
                            return Err("no connection within 20s".into());
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => return Err(format!("accept: {e}")),
                }
            };
            stream.set_nonblocking(false).map_err(|e| e.to_string())?;
            stream
                .set_read_timeout(Some(Duration::from_secs(20)))
                .map_err(|e| e.to_string())?;
            let mut got = Vec::with_capacity(bytes);
            stream
                .read_to_end(&mut got)
                .map_err(|e| format!("read after {} bytes: {e}", got.len()))?;
            stream
                .write_all(&(got.len() as u64).to_be_bytes())
                .map_err(|e| format!("ack: {e}"))?;
            Ok(got)
        })
    });
    bound_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("server bound");

    let data: Vec<u8> = (0..bytes)
        .map(|i| (i % 251) as u8 ^ (i >> 16) as u8)
        .collect();
    let sent = data.clone();
    let client_ns = client_ns.clone();
    let started = Instant::now();
    let client = tokio::task::spawn_blocking(move || {
        netns::run_in(&client_ns, move || -> Result<u64, String> {
            let mut stream = TcpStream::connect_timeout(&server_addr, Duration::from_secs(10))
                .map_err(|e| format!("connect: {e}"))?;
            stream
                .set_write_timeout(Some(Duration::from_secs(20)))
                .map_err(|e| e.to_string())?;
            stream
                .set_read_timeout(Some(Duration::from_secs(20)))
                .map_err(|e| e.to_string())?;
            stream.write_all(&sent).map_err(|e| format!("write: {e}"))?;
            stream
                .shutdown(std::net::Shutdown::Write)
                .map_err(|e| e.to_string())?;
            let mut ack = [0u8; 8];
            stream
                .read_exact(&mut ack)
                .map_err(|e| format!("ack: {e}"))?;
            Ok(u64::from_be_bytes(ack))
        })
    });
    let acked = tokio::time::timeout(Duration::from_secs(60), client)
        .await
        .expect("client within 60s")
        .expect("client thread")
        .expect("enter the client's namespace")
        .expect("client");
    let elapsed = started.elapsed();
    let received = tokio::task::spawn_blocking(move || server.join())
        .await
        .expect("join")
        .expect("server thread")
        .expect("enter the server's namespace")
        .expect("server");
    assert_eq!(acked, bytes as u64);
    assert_eq!(received.len(), bytes);
    assert!(received == data, "the stream arrived corrupted");
    elapsed
}

async fn tcp_transfer_arrives_intact(offload: bool) {
    // WEFT_DP_TCP_MIB=256 makes this a rough throughput probe.
    let mib: usize = std::env::var("WEFT_DP_TCP_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let bytes = mib << 20;
    let (a, b) = mesh("tcp", offload).await;
    ping(&a.pod.ns, b.pod_addr(), PING).await.expect("warm up");

    let server_addr = SocketAddr::new(IpAddr::V4(b.pod_addr()), 5001);
    let elapsed = tcp_transfer(&a.pod.ns, &b.pod.ns, server_addr, bytes).await;
    eprintln!(
        "tcp: {} MiB in {:.2?} = {:.1} Mbit/s ({} build, offload {offload})",
        bytes >> 20,
        elapsed,
        bytes as f64 * 8.0 / elapsed.as_secs_f64() / 1e6,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );

    let sa = a.status().await;
    let sb = b.status().await;
    assert!(sa.peers[0].tx_bytes > bytes as u64, "{sa:#?}");
    assert!(sb.peers[0].rx_bytes > bytes as u64, "{sb:#?}");
    check_offloads(offload, &sa, &sb);
    // Node to remote pod, through the host TUNs.
    let server_addr = SocketAddr::new(IpAddr::V4(b.pod_addr()), 5002);
    tcp_transfer(&a.host.ns, &b.pod.ns, server_addr, 1 << 20).await;
    // Back the other way: pod B to node A's host TUN.
    let server_addr = SocketAddr::new(IpAddr::V4(a.host_addr()), 5003);
    tcp_transfer(&b.pod.ns, &a.host.ns, server_addr, 1 << 20).await;
    // Within node A, host TUN to pod TUN and back: super-packets pass from
    // one TUN to the other whole.
    let server_addr = SocketAddr::new(IpAddr::V4(a.pod_addr()), 5006);
    tcp_transfer(&a.host.ns, &a.pod.ns, server_addr, 2 << 20).await;
    let server_addr = SocketAddr::new(IpAddr::V4(a.host_addr()), 5007);
    tcp_transfer(&a.pod.ns, &a.host.ns, server_addr, 2 << 20).await;
    for (s, what) in [(a.status().await, "A"), (b.status().await, "B")] {
        only_setup_drops(&s, what);
    }
}

async fn udp_datagrams_arrive_intact(offload: bool) {
    const COUNT: usize = 600;
    const SIZE: usize = 1000;
    let (a, b) = mesh("udp", offload).await;
    ping(&a.pod.ns, b.pod_addr(), PING).await.expect("warm up");
    let server_addr = SocketAddr::new(IpAddr::V4(b.pod_addr()), 6000);
    let datagram = |i: usize| -> Vec<u8> {
        let mut d: Vec<u8> = (0..SIZE).map(|j| (i * 7 + j) as u8).collect();
        d[..4].copy_from_slice(&(i as u32).to_be_bytes());
        d
    };
    let server = netns::run_in_async(&b.pod.ns, move || UdpSocket::bind(server_addr))
        .await
        .expect("enter pod B")
        .expect("bind the server");
    server
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    // Room for every datagram while the reading thread waits for a CPU (CI
    // runs other tests beside this one: 275/600 arrived once with the
    // default buffer and no weft drop counted). FORCE: above rmem_max.
    nix::sys::socket::setsockopt(&server, nix::sys::socket::sockopt::RcvBufForce, &(4 << 20))
        .expect("SO_RCVBUFFORCE on the server");
    let client_ns = a.pod.ns.clone();
    let sent = tokio::task::spawn_blocking(move || {
        netns::run_in(&client_ns, move || -> std::io::Result<()> {
            let sock = UdpSocket::bind("0.0.0.0:0")?;
            // Bursts, so that runs of datagrams meet in the batches.
            for burst in 0..COUNT / 60 {
                for i in burst * 60..(burst + 1) * 60 {
                    sock.send_to(&datagram(i), server_addr)?;
                }
                std::thread::sleep(Duration::from_millis(3));
            }
            Ok(())
        })
    });
    let received = tokio::task::spawn_blocking(move || {
        let mut seen = vec![false; COUNT];
        let mut buf = [0u8; 2048];
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && !seen.iter().all(|s| *s) {
            let Ok(n) = server.recv(&mut buf) else {
                continue;
            };
            assert_eq!(n, SIZE, "a datagram arrived resized");
            let i = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            assert!(i < COUNT, "datagram number {i}");
            assert_eq!(
                &buf[..n],
                &datagram(i)[..],
                "datagram {i} arrived corrupted"
            );
            seen[i] = true;
        }
        seen.iter().filter(|s| **s).count()
    });
    sent.await
        .expect("client thread")
        .expect("enter pod A")
        .expect("send");
    let received = received.await.expect("server thread");
    let sb = b.status().await;
    eprintln!(
        "udp: {received}/{COUNT} datagrams (offload {offload}); B: {:?}",
        sb.offload
    );
    // UDP may lose datagrams in the kernel's socket buffers when the
    // machine is busy (CI runs other tests beside this one; 532/600 was seen
    // on a loaded 2-core machine with no weft drop counted): what this test
    // holds is that whatever arrives is intact, that most of it arrives,
    // and that weft itself drops nothing on the way.
    assert!(received >= COUNT / 2, "{received}/{COUNT} arrived: {sb:#?}");
    assert_eq!(drops(&sb, "tun_write_error"), 0, "{sb:#?}");
    // Bursts of 60 meet in B's receive batches: some went out coalesced
    // (GSO_UDP_L4), and the kernel took them.
    assert_eq!(sb.offload.segments_coalesced > 0, offload, "{sb:#?}");
}

async fn a_pod_tun_without_a_virtio_header_still_works(offload: bool) {
    let (a, b) = mesh("plainport", offload).await;
    // B's pod gets a TUN without IFF_VNET_HDR (as an older agent made
    // them): no offloads for it, whatever the engine's setting.
    let old = b.dp.detach_pod("pod-2").await.unwrap().expect("attached");
    drop(old);
    ip(&["-n", &b.pod.name, "link", "del", "eth0"]);
    let options = TunOptions {
        persist: true,
        ..TunOptions::default()
    };
    let tun = netns::run_in_async(&b.pod.ns, move || Tun::create("eth0", &options))
        .await
        .expect("enter pod B")
        .expect("a plain TUN");
    assert!(!tun.has_vnet_hdr());
    ip(&[
        "-n",
        &b.pod.name,
        "link",
        "set",
        "eth0",
        "mtu",
        &MTU.to_string(),
    ]);
    ip(&[
        "-n",
        &b.pod.name,
        "addr",
        "add",
        "10.244.2.2/32",
        "dev",
        "eth0",
    ]);
    ip(&["-n", &b.pod.name, "link", "set", "eth0", "up"]);
    ip(&["-n", &b.pod.name, "route", "add", "default", "dev", "eth0"]);
    b.dp.attach_pod(PodPort {
        id: "pod-2".into(),
        tun,
        addresses: vec![IpAddr::V4(b.pod_addr())],
    })
    .await
    .unwrap();
    ping(&a.pod.ns, b.pod_addr(), PING).await.expect("A -> B");
    // Both ways: A's pod sends super-packets (if offloading) that B writes
    // to its plain TUN packet by packet; B's pod sends plain packets.
    let server = SocketAddr::new(IpAddr::V4(b.pod_addr()), 5008);
    tcp_transfer(&a.pod.ns, &b.pod.ns, server, 2 << 20).await;
    let server = SocketAddr::new(IpAddr::V4(a.pod_addr()), 5009);
    tcp_transfer(&b.pod.ns, &a.pod.ns, server, 2 << 20).await;
    let sb = b.status().await;
    assert_eq!(
        sb.offload.segments_coalesced, 0,
        "nothing coalesced for a plain TUN: {sb:#?}"
    );
    for (s, what) in [(a.status().await, "A"), (sb, "B")] {
        only_setup_drops(&s, what);
    }
    ip(&["-n", &b.pod.name, "link", "del", "eth0"]);
}

/// That node `what` dropped nothing but what setting up a mesh drops:
/// link-scoped packets (IPv6 router solicitations, MLD) from the TUNs'
/// own kernels, and at most one each of the handshake races. Each node
/// initiates as soon as it adds the other, so the first initiation can
/// reach a node that does not know the sender yet (`wg_unknown_peer`),
/// and two crossed initiations leave one answer stale
/// (`wg_stale_handshake`).
fn only_setup_drops(s: &DataplaneStatus, what: &str) {
    let sum: u64 = s.drops.iter().map(|(_, n)| n).sum();
    let races = ["wg_unknown_peer", "wg_stale_handshake"];
    for race in races {
        assert!(drops(s, race) <= 1, "node {what}: {race}: {s:#?}");
    }
    let benign = drops(s, "link_local");
    let raced: u64 = races.iter().map(|r| drops(s, r)).sum();
    assert_eq!(
        sum,
        benign + raced,
        "node {what} dropped more than link-scoped packets and handshake races: {s:#?}"
    );
}

/// That a TCP stream from A to B went through the offloads, or not at all.
fn check_offloads(offload: bool, sa: &DataplaneStatus, sb: &DataplaneStatus) {
    let (oa, ob) = (&sa.offload, &sb.offload);
    if offload {
        assert!(oa.tun && oa.udp_gso && ob.udp_gro, "{sa:#?} {sb:#?}");
        assert!(oa.tun_super_packets_read > 0, "TSO from the pod: {sa:#?}");
        assert!(oa.udp_gso_messages > 0, "UDP GSO: {sa:#?}");
        assert!(ob.udp_gro_messages > 0, "UDP GRO: {sb:#?}");
        assert!(ob.segments_coalesced > 0, "coalescing: {sb:#?}");
        assert!(ob.tun_super_packets_written > 0, "GRO to the pod: {sb:#?}");
    } else {
        assert_eq!(oa, &OffloadStatus::default(), "{sa:#?}");
        assert_eq!(ob, &OffloadStatus::default(), "{sb:#?}");
    }
}

async fn remove_peer_stops_traffic_and_adding_it_back_restores_it(offload: bool) {
    let (a, b) = mesh("remove", offload).await;
    ping(&a.pod.ns, b.pod_addr(), PING).await.expect("before");

    assert!(a.dp.remove_peer(&b.name()).await.unwrap());
    assert!(!a.dp.remove_peer(&b.name()).await.unwrap(), "already gone");
    assert!(a.status().await.peers.is_empty());
    ping(&a.pod.ns, b.pod_addr(), NO_PING)
        .await
        .expect_err("no route to B's pods without the peer");
    ping(&b.pod.ns, a.pod_addr(), NO_PING)
        .await
        .expect_err("A drops B's datagrams without the peer");
    let status = a.status().await;
    assert!(drops(&status, "no_route") >= 1, "{status:#?}");
    assert!(drops(&status, "wg_unknown_index") >= 1, "{status:#?}");

    a.dp.set_peer(b.as_peer()).await.unwrap();
    ping(&a.pod.ns, b.pod_addr(), PING)
        .await
        .expect("A -> B after re-adding");
    ping(&b.pod.ns, a.pod_addr(), PING)
        .await
        .expect("B -> A after re-adding");

    // set_peers replaces the set: an empty set removes B again.
    a.dp.set_peers(vec![]).await.unwrap();
    assert!(a.status().await.peers.is_empty());
    a.dp.set_peers(vec![b.as_peer()]).await.unwrap();
    ping(&a.pod.ns, b.pod_addr(), PING)
        .await
        .expect("after set_peers");
}

async fn a_changed_endpoint_is_used_and_an_unknown_one_is_learned(offload: bool) {
    let (ha, hb) = underlay_pair("endpoint");
    let a = node("endpoint", 1, ha, offload).await;
    let b = node("endpoint", 2, hb, offload).await;
    // A has a wrong endpoint for B; B has none for A and must learn it.
    let wrong = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 168, 77, 2)), 9);
    a.dp.set_peer(PeerSpec {
        endpoint: Some(wrong),
        ..b.as_peer()
    })
    .await
    .unwrap();
    b.dp.set_peer(PeerSpec {
        endpoint: None,
        ..a.as_peer()
    })
    .await
    .unwrap();

    // B cannot reach A: no endpoint yet.
    ping(&b.pod.ns, a.pod_addr(), NO_PING)
        .await
        .expect_err("B has no endpoint for A");
    let status = b.status().await;
    assert!(drops(&status, "peer_no_endpoint") >= 1, "{status:#?}");
    ping(&a.pod.ns, b.pod_addr(), NO_PING)
        .await
        .expect_err("A sends to the wrong endpoint");
    let status = a.status().await;
    assert_eq!(status.peers[0].endpoint, Some(wrong));
    assert_eq!(status.peers[0].last_handshake, None);

    a.dp.set_peer(b.as_peer()).await.unwrap();
    ping(&a.pod.ns, b.pod_addr(), PING)
        .await
        .expect("A -> B at the corrected endpoint");
    let status = a.status().await;
    assert_eq!(status.peers[0].endpoint, Some(b.underlay()));
    assert!(status.peers[0].last_handshake.is_some());
    // B learned A's endpoint from A's authenticated datagrams (roaming).
    let status = b.status().await;
    assert_eq!(status.peers[0].endpoint, Some(a.underlay()), "{status:#?}");
    ping(&b.pod.ns, a.pod_addr(), PING)
        .await
        .expect("B -> A at the learned endpoint");
    // Re-sending B's unchanged spec (endpoint None) keeps what B learned.
    b.dp.set_peer(PeerSpec {
        endpoint: None,
        ..a.as_peer()
    })
    .await
    .unwrap();
    assert_eq!(b.status().await.peers[0].endpoint, Some(a.underlay()));
}

async fn a_peer_sending_from_outside_its_allowed_prefixes_is_dropped(offload: bool) {
    let (ha, hb) = underlay_pair("spoof");
    let a = node("spoof", 1, ha, offload).await;
    let b = node("spoof", 2, hb, offload).await;
    // A believes B owns 10.244.3.0/24, not B's real 10.244.2.0/24.
    a.dp.set_peer(PeerSpec {
        allowed: vec![net("10.244.3.0/24")],
        ..b.as_peer()
    })
    .await
    .unwrap();
    b.dp.set_peer(a.as_peer()).await.unwrap();

    ping(&b.pod.ns, a.pod_addr(), NO_PING)
        .await
        .expect_err("A must drop packets from 10.244.2.2 out of B's tunnel");
    let status = wait_status(&a, Duration::from_secs(5), "spoofed drops", |s| {
        drops(s, "spoofed_peer_source") >= 1
    })
    .await;
    // The tunnel itself works: the handshake completed and data arrived.
    assert!(status.peers[0].last_handshake.is_some(), "{status:#?}");
    assert!(status.peers[0].rx_packets >= 2, "{status:#?}");
    assert_eq!(status.forwarded_to_ports, 0, "{status:#?}");
}

async fn garbage_datagrams_are_counted_and_the_engine_keeps_working(offload: bool) {
    let (a, b) = mesh("garbage", offload).await;
    let target = a.underlay();
    let sent = netns::run_in_async(&b.host.ns, move || -> std::io::Result<usize> {
        let sock = UdpSocket::bind("192.168.77.2:0")?;
        let mut n = 0;
        let mut send = |bytes: &[u8]| -> std::io::Result<()> {
            sock.send_to(bytes, target)?;
            n += 1;
            Ok(())
        };
        send(b"")?;
        send(b"hello, is this wireguard?")?;
        send(&[0xff; 1400])?;
        // Type 1 of the right length, but a MAC made of noise.
        let mut init = [0x5a_u8; 148];
        init[..4].copy_from_slice(&[1, 0, 0, 0]);
        send(&init)?;
        // Data for a receiver index no peer has.
        let mut data = [0x33_u8; 96];
        data[..4].copy_from_slice(&[4, 0, 0, 0]);
        data[4..8].copy_from_slice(&0xabcd_ef00_u32.to_le_bytes());
        send(&data)?;
        // A well-formed handshake initiation from a key A does not know.
        let stranger = NodeKey::from_bytes([0x42; 32]);
        let mut tunnel =
            Tunnel::new(&stranger, wg::public_key_of(private_key(1)), None, 77).expect("tunnel");
        let mut out = [0u8; 256];
        if let wg::Encap::Send(len) = tunnel.encapsulate(&[], &mut out) {
            send(&out[..len])?;
        }
        Ok(n)
    })
    .await
    .expect("enter node B")
    .expect("send garbage");
    assert_eq!(sent, 6);

    wait_status(&a, Duration::from_secs(5), "garbage counted", |s| {
        drops(s, "wg_invalid") >= 3
            && drops(s, "wg_bad_mac") >= 1
            && drops(s, "wg_unknown_index") >= 1
            && drops(s, "wg_unknown_peer") >= 1
    })
    .await;
    // (A handshake may have completed: peers handshake as soon as they are
    // added. The garbage itself never counts as the peer's traffic.)
    assert!(a.dp.is_running());

    ping(&a.pod.ns, b.pod_addr(), PING)
        .await
        .expect("A -> B after garbage");
    ping(&b.pod.ns, a.pod_addr(), PING)
        .await
        .expect("B -> A after garbage");
}

async fn detach_hands_the_tun_back_and_shutdown_joins_the_thread(offload: bool) {
    let (a, b) = mesh("shutdown", offload).await;
    ping(&a.pod.ns, b.pod_addr(), PING).await.expect("before");

    let tun = b.dp.detach_pod("pod-2").await.unwrap().expect("attached");
    assert_eq!(tun.name(), "eth0");
    assert!(b.dp.detach_pod("pod-2").await.unwrap().is_none());
    assert!(b.status().await.ports.is_empty());
    ping(&a.pod.ns, b.pod_addr(), NO_PING)
        .await
        .expect_err("B's pod is detached");
    let status = b.status().await;
    assert!(drops(&status, "no_pod") >= 1, "{status:#?}");
    b.dp.attach_pod(PodPort {
        id: "pod-2".into(),
        tun,
        addresses: vec![IpAddr::V4(b.pod_addr())],
    })
    .await
    .unwrap();
    ping(&a.pod.ns, b.pod_addr(), PING)
        .await
        .expect("re-attached");

    let Node { dp, pod, host, .. } = b;
    let stopped = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::task::spawn_blocking(move || dp.shutdown()),
    )
    .await
    .expect("shutdown within 5s")
    .expect("join");
    stopped.expect("clean shutdown");
    // The pod's TUN is persistent: it outlives the engine.
    let out = Command::new("ip")
        .args(["-n", &pod.name, "link", "show", "dev", "eth0"])
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "eth0 is gone from the pod after shutdown"
    );
    drop((pod, host));

    // A handle in an Arc stops through &self; then calls say NotRunning.
    let dp = std::sync::Arc::new(a.dp);
    dp.stop().expect("stop");
    assert!(!dp.is_running());
    assert!(matches!(dp.status().await, Err(DataplaneError::NotRunning)));
    dp.stop().expect("stopping twice is fine");
}

async fn bad_configuration_is_rejected_with_reasons(offload: bool) {
    let (a, b) = mesh("reject", offload).await;
    // B's prefixes overlap A's own pod CIDR.
    let err =
        a.dp.set_peer(PeerSpec {
            name: "intruder".into(),
            public_key: wg::public_key_of([0x99; 32]),
            endpoint: None,
            allowed: vec![net("10.244.1.0/24")],
            ready: true,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, DataplaneError::Rejected(_)), "{err}");
    // A second name for B's key.
    let err =
        a.dp.set_peer(PeerSpec {
            name: "alias".into(),
            allowed: vec![net("10.244.9.0/24")],
            ..b.as_peer()
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already the key"), "{err}");
    // Our own key.
    let err =
        a.dp.set_peer(PeerSpec {
            public_key: a.public_key,
            ..b.as_peer()
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("own public key"), "{err}");
    // A duplicate in a set.
    let err =
        a.dp.set_peers(vec![b.as_peer(), b.as_peer()])
            .await
            .unwrap_err();
    assert!(err.to_string().contains("twice"), "{err}");
    // A second port under an attached id, or with an attached pod's
    // address (a plain, non-persistent TUN: it goes when dropped).
    for (id, addr) in [("pod-1", "10.244.1.3"), ("pod-x", "10.244.1.2")] {
        let tun = netns::run_in_async(&a.pod.ns, || Tun::create("eth1", &TunOptions::default()))
            .await
            .expect("enter pod A")
            .expect("second TUN");
        let err =
            a.dp.attach_pod(PodPort {
                id: id.into(),
                tun,
                addresses: vec![addr.parse().unwrap()],
            })
            .await
            .unwrap_err();
        assert!(matches!(err, DataplaneError::Rejected(_)), "{id}: {err}");
    }
    let status = a.status().await;
    assert_eq!(status.ports.len(), 1, "{status:#?}");
    assert_eq!(
        status.peers.len(),
        1,
        "refusals changed nothing: {status:#?}"
    );
    assert_eq!(status.peers[0].allowed, vec![net("10.244.2.0/24")]);
    ping(&a.pod.ns, b.pod_addr(), PING)
        .await
        .expect("still works");
}

async fn dual_stack_pods_through_a_dual_stack_socket(offload: bool) {
    let (ha, hb) = underlay_pair("dual");
    // A's socket is IPv6 on [::] (dual-stack: its IPv4 peers appear as
    // mapped addresses); B's is plain IPv4.
    let any6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), WG_PORT);
    let a = node_with("dual", 1, ha, any6, true, offload).await;
    let b = node_with("dual", 2, hb, underlay(2), true, offload).await;
    a.dp.set_peer(b.as_peer()).await.unwrap();
    b.dp.set_peer(a.as_peer()).await.unwrap();

    ping6(&a.pod.ns, b.pod6_addr(), PING)
        .await
        .expect("pod A -> pod B over IPv6");
    ping6(&b.pod.ns, a.pod6_addr(), PING)
        .await
        .expect("pod B -> pod A over IPv6");
    ping(&a.pod.ns, b.pod_addr(), PING)
        .await
        .expect("pod A -> pod B over IPv4");
    ping(&b.pod.ns, a.pod_addr(), PING)
        .await
        .expect("pod B -> pod A over IPv4");

    // TCP over IPv6 (TSO6 and coalescing for IPv6 with offloads), both ways.
    let server = SocketAddr::new(IpAddr::V6(b.pod6_addr()), 5004);
    tcp_transfer(&a.pod.ns, &b.pod.ns, server, 2 << 20).await;
    let server = SocketAddr::new(IpAddr::V6(a.pod6_addr()), 5005);
    tcp_transfer(&b.pod.ns, &a.pod.ns, server, 2 << 20).await;
    check_offloads(offload, &a.status().await, &b.status().await);

    // Endpoints are reported as plain IPv4, whichever socket saw them.
    let sa = a.status().await;
    assert_eq!(sa.peers[0].endpoint, Some(b.underlay()), "{sa:#?}");
    let sb = b.status().await;
    assert_eq!(sb.peers[0].endpoint, Some(a.underlay()), "{sb:#?}");
    assert_eq!(sa.peers[0].allowed, cidrs(2, true));
    assert_eq!(
        sa.ports,
        vec![(
            "pod-1".to_string(),
            vec![IpAddr::V4(a.pod_addr()), IpAddr::V6(a.pod6_addr())]
        )]
    );
}

// ------------------------------------------------- path MTU and offloads

/// Sends one ICMP echo request with `len` payload bytes to `dst` from the
/// calling thread's namespace (a raw socket: the kernel sets DF while the
/// packet fits the route's MTU, as path MTU discovery wants).
fn echo_here(dst: Ipv4Addr, len: usize) -> Result<(), String> {
    let sock = raw_icmp_socket(AddressFamily::Inet, TimeVal::milliseconds(200))?;
    let to = SockaddrIn::from(SocketAddrV4::new(dst, 0));
    sendto(
        sock.as_raw_fd(),
        &icmp_echo(8, 0x7e57, 1, &vec![0x5a; len]),
        &to,
        MsgFlags::empty(),
    )
    .map(|_| ())
    .map_err(|e| format!("sendto: {e}"))
}

/// The MTU a namespace's kernel has learnt for `dst` (an ICMP
/// "fragmentation needed" makes a route exception), if any.
fn learnt_mtu(ns: &str, dst: Ipv4Addr) -> Option<u32> {
    let out = ip(&["-n", ns, "route", "get", &dst.to_string()]);
    let text = String::from_utf8_lossy(&out);
    let mut words = text.split_whitespace();
    words.find(|w| *w == "mtu")?;
    words.next()?.parse().ok()
}

async fn a_pods_oversized_df_packet_is_answered_with_the_tunnel_mtu(offload: bool) {
    let (a, b) = mesh("pmtu", offload).await;
    ping(&a.pod.ns, b.pod_addr(), PING).await.expect("A -> B");
    assert_eq!(learnt_mtu(&a.pod.name, b.pod_addr()), None);
    // The pod believes its link takes 9000 bytes; the tunnel takes MTU.
    ip(&["-n", &a.pod.name, "link", "set", "eth0", "mtu", "9000"]);
    let dst = b.pod_addr();
    let deadline = Instant::now() + Duration::from_secs(8);
    let learnt = loop {
        let ns = a.pod.ns.clone();
        netns::run_in_async(&ns, move || echo_here(dst, 3000))
            .await
            .expect("enter pod A")
            .expect("send a 3028-byte echo request");
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Some(mtu) = learnt_mtu(&a.pod.name, dst) {
            break mtu;
        }
        assert!(
            Instant::now() < deadline,
            "pod A never learnt the path MTU; status: {:#?}",
            a.status().await
        );
    };
    assert_eq!(
        learnt, MTU,
        "ICMP fragmentation needed carried the tunnel MTU"
    );
    let status = a.status().await;
    assert!(drops(&status, "packet_too_big") >= 1, "{status:#?}");
    // Nothing too big reached B: its pod saw only the first ping's echoes.
    let sb = b.status().await;
    assert!(sb.forwarded_to_ports <= 10, "{sb:#?}");
    // The engine serves the pod as before.
    ping(&a.pod.ns, b.pod_addr(), PING)
        .await
        .expect("A -> B after the MTU was learnt");
}

/// Writes `frame` (a 10-byte virtio-net header, then an IP packet) `count`
/// times into the network through `ifname` of namespace `ns`, as a pod
/// with CAP_NET_RAW can: an AF_PACKET socket with PACKET_VNET_HDR, so the
/// kernel hands the agent's TUN whatever offload metadata the header says.
/// Returns how many writes the pod's kernel took.
fn send_with_vnet_header(ns: &str, ifname: &str, frame: &[u8], count: u32) -> u32 {
    const SCRIPT: &str = r#"
import socket, sys
ifname, count = sys.argv[1], int(sys.argv[2])
frame = sys.stdin.buffer.read()
SOL_PACKET, PACKET_VNET_HDR, ETH_P_IP = 263, 15, 0x0800
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
s.bind((ifname, ETH_P_IP))
sent = 0
for _ in range(count):
    try:
        s.send(frame)
        sent += 1
    except OSError as e:
        print(e, file=sys.stderr)
print(sent)
"#;
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", SCRIPT, ifname])
        .arg(count.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run python3 in the pod (scripts/test-all installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(frame)
        .expect("write the frame");
    // `count` sends on a local socket, then exit: 20 s is plenty. (Its
    // output is a few lines: the pipes cannot fill while it runs.)
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("python3").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("python3 did not finish within 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("python3");
    assert!(
        out.status.success(),
        "python3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("python3 prints how many it sent")
}

/// A pod's TCP/IPv4 super-packet to B's pod (30 000 payload bytes, DF)
/// with a virtio-net header saying `gso_size`.
fn crafted_super_packet(gso_size: u16) -> Vec<u8> {
    let p = testing::Fixture::tcp_stream(false, 1, 30_000, 0).build();
    let (hdr, p) = testing::as_partial(p, GSO_TCPV4, gso_size);
    let mut frame = vec![0u8; VNET_HDR_LEN];
    hdr.encode(&mut frame);
    frame.extend_from_slice(&p);
    frame
}

async fn a_pods_crafted_offload_metadata_is_refused_by_cause_and_not_amplified() {
    let (a, b) = mesh("vnethdr", true).await;
    ping(&a.pod.ns, b.pod_addr(), PING).await.expect("A -> B");
    let before = b.status().await.peers[0].rx_packets;

    // gso_size 1: one write would be 30 000 one-byte segments, each a
    // WireGuard datagram. Refused whole, by cause.
    let sent = send_with_vnet_header(&a.pod.name, "eth0", &crafted_super_packet(1), 20);
    assert!(sent > 0, "the pod's kernel took none of the writes");
    let sa = wait_status(&a, Duration::from_secs(5), "gso_size 1 refused", |s| {
        drops(s, "tun_gso_size_too_small") >= u64::from(sent)
    })
    .await;
    assert_eq!(
        drops(&sa, "tun_gso_size_too_small"),
        u64::from(sent),
        "{sa:#?}"
    );
    assert!(
        sa.offload.tun_super_packets_read >= u64::from(sent),
        "{sa:#?}"
    );

    // gso_size 9000 (segments over the tunnel MTU, DF): refused before
    // segmenting, answered with the MTU; UDP GSO stays on for the node.
    let sent = send_with_vnet_header(&a.pod.name, "eth0", &crafted_super_packet(9000), 5);
    assert!(sent > 0, "the pod's kernel took none of the writes");
    let sa = wait_status(&a, Duration::from_secs(5), "gso_size 9000 refused", |s| {
        drops(s, "packet_too_big") >= u64::from(sent)
    })
    .await;
    assert!(sa.offload.udp_gso, "UDP GSO stays on: {sa:#?}");
    assert_eq!(
        drops(&sa, "tun_gso_above_mtu"),
        0,
        "the switch refused first"
    );

    // B got no flood: a handful of datagrams (keepalives, pings) at most.
    let after = b.status().await.peers[0].rx_packets;
    assert!(
        after - before < 50,
        "B received {} datagrams",
        after - before
    );
    // And the engine serves the pod as before.
    ping(&a.pod.ns, b.pod_addr(), PING)
        .await
        .expect("A -> B after the crafted writes");
    let server = SocketAddr::new(IpAddr::V4(b.pod_addr()), 5010);
    tcp_transfer(&a.pod.ns, &b.pod.ns, server, 1 << 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_offload_metadata_from_a_pod() {
    a_pods_crafted_offload_metadata_is_refused_by_cause_and_not_amplified().await
}

// ------------------------------------------------------ both data paths

/// Runs each test twice: with offloads (TSO/GRO super-packets on the TUNs,
/// UDP GSO/GRO) and without (one plain packet per read and datagram).
macro_rules! in_both_modes {
    ($($name:ident),* $(,)?) => {
        mod offload {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(true).await
                }
            )*
        }
        mod plain {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(false).await
                }
            )*
        }
    };
}

in_both_modes!(
    pods_ping_each_other_and_status_shows_the_session,
    tcp_transfer_arrives_intact,
    udp_datagrams_arrive_intact,
    a_pod_tun_without_a_virtio_header_still_works,
    remove_peer_stops_traffic_and_adding_it_back_restores_it,
    a_changed_endpoint_is_used_and_an_unknown_one_is_learned,
    a_peer_sending_from_outside_its_allowed_prefixes_is_dropped,
    garbage_datagrams_are_counted_and_the_engine_keeps_working,
    detach_hands_the_tun_back_and_shutdown_joins_the_thread,
    bad_configuration_is_rejected_with_reasons,
    dual_stack_pods_through_a_dual_stack_socket,
    a_pods_oversized_df_packet_is_answered_with_the_tunnel_mtu,
);
