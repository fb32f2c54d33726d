//! Root-only tests of the node agent's kernel edge: TUN devices, network
//! namespaces and netlink, against the real kernel.
//!
//! They fail (never skip) without root; CI runs them as root. Every test
//! works in network namespaces it creates under unique names and removes
//! them in a `Drop` guard, so they run in parallel and leave nothing behind
//! even when an assertion fails. `ip -j` is the independent witness.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::Duration;

use nix::sys::socket::{recv, sendto, AddressFamily, MsgFlags, SockaddrIn};
use nix::sys::time::{TimeVal, TimeValLike};
use serde_json::Value;
use weft_node_agent::kernel::netlink::{Netlink, NetlinkError, Route};
use weft_node_agent::kernel::netns::{self, NetNs, NetNsError};
use weft_node_agent::kernel::tun::{
    attach_existing_pod_tun, create_pod_tun, delete_pod_tun, ensure_host_tun, port_state, AsyncTun,
    KernelError, PortSpec, Tun, TunError, TunOptions,
};

use weft_switch::wire::{IcmpPacket, Ipv4Packet};

mod support;
use support::{
    checksum, icmp_echo, ip_json, link_exists, net, raw_icmp_socket, require_root, TestNs,
};

// ---------------------------------------------------------------- harness

/// Prefix of this binary's namespace names.
const NS_PREFIX: &str = "weft-t";

fn pod_spec() -> PortSpec {
    PortSpec::pod("eth0", vec![net("10.99.0.2/32")], 1400)
}

// ----------------------------------------------------------- ICMP bytes

/// An IPv4 ICMP echo request as read from the TUN.
struct EchoRequest<'a> {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ident: u16,
    payload: &'a [u8],
}

/// Parses an IPv4 ICMP echo request, checking both checksums; `None` for
/// any other packet (IPv6 router solicitations and the like).
fn parse_echo_request(packet: &[u8]) -> Option<EchoRequest<'_>> {
    if packet.len() < 20 || packet[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(packet[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    if packet[9] != 1 || total != packet.len() || packet.len() < ihl + 8 {
        return None;
    }
    assert_eq!(checksum(&packet[..ihl]), 0, "IPv4 header checksum");
    let icmp = &packet[ihl..];
    if icmp[0] != 8 || icmp[1] != 0 {
        return None;
    }
    assert_eq!(checksum(icmp), 0, "ICMP checksum");
    Some(EchoRequest {
        src: Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]),
        dst: Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]),
        ident: u16::from_be_bytes([icmp[4], icmp[5]]),
        payload: &icmp[8..],
    })
}

/// The reply a host at the request's destination would send: addresses
/// swapped, TTL 64, type 0, both checksums right (through weft-switch's
/// views, which keep the IPv4 header checksum as they write).
fn echo_reply(request: &[u8]) -> Vec<u8> {
    let mut reply = request.to_vec();
    let mut ip = Ipv4Packet::new_checked(&mut reply[..]).expect("an IPv4 packet");
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    ip.set_src_addr(dst);
    ip.set_dst_addr(src);
    ip.set_ttl(64);
    let mut icmp = IcmpPacket::new_checked(ip.payload_mut()).expect("an ICMP message");
    icmp.set_type_code(0, 0);
    icmp.fill_checksum(0);
    reply
}

/// The pod side: sends one echo request to `dst` from a raw ICMP socket in
/// the calling thread's namespace and waits for the matching reply's
/// payload (what `ping -c1` does).
fn ping_once(dst: Ipv4Addr, ident: u16, payload: &[u8]) -> Result<Vec<u8>, String> {
    let sock = raw_icmp_socket(AddressFamily::Inet, TimeVal::seconds(5))?;
    let request = icmp_echo(8, ident, 1, payload);
    let to = SockaddrIn::from(SocketAddrV4::new(dst, 0));
    sendto(sock.as_raw_fd(), &request, &to, MsgFlags::empty())
        .map_err(|e| format!("sendto: {e}"))?;
    let mut buf = [0u8; 2048];
    loop {
        // Raw IPv4 sockets receive the IP header too.
        let n = recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty())
            .map_err(|e| format!("no echo reply: {e}"))?;
        let ihl = usize::from(buf[0] & 0x0f) * 4;
        let icmp = &buf[ihl..n];
        if icmp.len() >= 8 && icmp[0] == 0 && icmp[4..6] == ident.to_be_bytes() {
            if checksum(icmp) != 0 {
                return Err("echo reply with a bad checksum".into());
            }
            return Ok(icmp[8..].to_vec());
        }
    }
}

/// Pings 10.99.0.1 from inside `ns` and plays the far end on `tun`: reads
/// the echo request from the TUN fd, checks it, writes the reply back, and
/// returns once the pod side has received it.
async fn echo_through_tun(ns: &NetNs, tun: &AsyncTun, ident: u16) {
    let payload = format!("weft echo {ident}").into_bytes();
    let pod = {
        let (ns, payload) = (ns.clone(), payload.clone());
        std::thread::spawn(move || {
            netns::run_in(&ns, || {
                ping_once(Ipv4Addr::new(10, 99, 0, 1), ident, &payload)
            })
        })
    };

    let mut buf = vec![0u8; 65536];
    let request = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let n = tun.recv(&mut buf).await.expect("read from TUN");
            if let Some(echo) = parse_echo_request(&buf[..n]) {
                if echo.ident == ident {
                    return buf[..n].to_vec();
                }
            }
        }
    })
    .await
    .expect("an echo request on the TUN within 5s");
    let echo = parse_echo_request(&request).expect("still an echo request");
    assert_eq!(
        echo.src,
        Ipv4Addr::new(10, 99, 0, 2),
        "source is the pod address"
    );
    assert_eq!(echo.dst, Ipv4Addr::new(10, 99, 0, 1));
    assert_eq!(echo.payload, payload.as_slice());

    let reply = echo_reply(&request);
    let written = tun.send(&reply).await.expect("write reply into TUN");
    assert_eq!(written, reply.len());

    let got = tokio::task::spawn_blocking(move || pod.join())
        .await
        .expect("join")
        .expect("pod thread")
        .expect("enter namespace");
    assert_eq!(got, Ok(payload), "the pod got our echo reply");
}

// ------------------------------------------------------------------ tests

#[tokio::test]
async fn pod_tun_gets_address_mtu_and_default_route() {
    let t = TestNs::new(NS_PREFIX, "cfg");
    let spec = pod_spec();
    let _tun = create_pod_tun(&t.ns, &spec).await.expect("create pod TUN");

    let link = &ip_json(&t.name, &["link", "show", "dev", "eth0"])[0];
    assert_eq!(link["mtu"], 1400, "{link}");
    assert_eq!(link["link_type"], "none", "a TUN has no link layer: {link}");
    let flags: Vec<&str> = link["flags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(flags.contains(&"UP"), "{link}");

    let addrs = &ip_json(&t.name, &["addr", "show", "dev", "eth0"])[0]["addr_info"];
    let v4: Vec<&Value> = addrs
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["family"] == "inet")
        .collect();
    assert_eq!(v4.len(), 1, "{addrs}");
    assert_eq!(v4[0]["local"], "10.99.0.2");
    assert_eq!(v4[0]["prefixlen"], 32);
    assert!(
        v4[0].get("broadcast").is_none(),
        "no broadcast on a TUN: {addrs}"
    );

    let routes = ip_json(&t.name, &["route", "show"]);
    let default = routes
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["dst"] == "default")
        .unwrap_or_else(|| panic!("no default route: {routes}"));
    assert_eq!(default["dev"], "eth0");
    assert!(default.get("gateway").is_none(), "{default}");

    // Our own reading agrees (what CNI CHECK will use).
    let state = port_state(&t.ns, "eth0").await.unwrap();
    assert!(state.satisfies(&spec), "{state:?}");
    assert!(state.routes.contains(&Route::dev(net("0.0.0.0/0"))));

    // The host's own eth0 is untouched: the pod's lives in the pod's netns.
    let host_eth0 = NetNs::current().unwrap();
    assert_ne!(host_eth0, t.ns);
}

#[tokio::test]
async fn icmp_echo_crosses_the_tun_both_ways() {
    let t = TestNs::new(NS_PREFIX, "echo");
    let tun = create_pod_tun(&t.ns, &pod_spec())
        .await
        .expect("create pod TUN")
        .into_async()
        .expect("register with tokio");
    echo_through_tun(&t.ns, &tun, 0x5701).await;
}

#[tokio::test]
async fn persistent_tun_survives_its_fd_and_reattaches() {
    let t = TestNs::new(NS_PREFIX, "persist");
    let tun = create_pod_tun(&t.ns, &pod_spec()).await.unwrap();
    drop(tun);

    // The device and its configuration outlive the fd (and the agent).
    assert!(link_exists(&t.name, "eth0"));
    let state = port_state(&t.ns, "eth0").await.unwrap();
    assert!(state.satisfies(&pod_spec()), "{state:?}");

    let tun = attach_existing_pod_tun(&t.ns, "eth0", &TunOptions::persistent())
        .await
        .expect("re-attach by name");
    // A single-queue TUN takes one fd: a second agent is refused.
    let busy = attach_existing_pod_tun(&t.ns, "eth0", &TunOptions::persistent()).await;
    assert!(
        matches!(busy, Err(KernelError::Tun(TunError::Busy { .. }))),
        "{busy:?}"
    );
    // And traffic flows through the re-attached fd.
    let tun = tun.into_async().unwrap();
    echo_through_tun(&t.ns, &tun, 0x5702).await;

    // Delete works while the fd is held, and is idempotent.
    assert!(delete_pod_tun(&t.ns, "eth0").await.unwrap());
    assert!(!link_exists(&t.name, "eth0"));
    assert!(!delete_pod_tun(&t.ns, "eth0").await.unwrap());
    drop(tun);
    let gone = attach_existing_pod_tun(&t.ns, "eth0", &TunOptions::persistent()).await;
    assert!(
        matches!(gone, Err(KernelError::Tun(TunError::NotFound { .. }))),
        "{gone:?}"
    );
}

#[tokio::test]
async fn tun_ioctls_in_a_namespace() {
    let t = TestNs::new(NS_PREFIX, "ioctl");
    let ns_name = t.name.clone();
    netns::run_in(&t.ns, move || {
        // Persistent single-queue: delete by ioctl (attach, unpersist, close).
        let tun = Tun::create("wt0", &TunOptions::persistent()).unwrap();
        assert_eq!(tun.name(), "wt0");
        drop(tun);
        assert!(link_exists(&ns_name, "wt0"));
        Tun::delete("wt0").expect("delete persistent TUN");
        assert!(!link_exists(&ns_name, "wt0"));
        assert!(matches!(Tun::delete("wt0"), Err(TunError::NotFound { .. })));

        // Non-persistent: gone with its fd.
        drop(Tun::create("wt1", &TunOptions::default()).unwrap());
        assert!(!link_exists(&ns_name, "wt1"));

        // Multi-queue: each attach is one more queue; the flag must match.
        let mq = TunOptions {
            multi_queue: true,
            persist: true,
            ..TunOptions::default()
        };
        let q0 = Tun::create("wq0", &mq).unwrap();
        let q1 = Tun::attach("wq0", &mq).expect("second queue");
        assert_ne!(q0.as_raw_fd(), q1.as_raw_fd());
        let single = Tun::attach("wq0", &TunOptions::default());
        assert!(
            matches!(single, Err(TunError::NotATun { .. })),
            "{single:?}"
        );
        drop((q0, q1));
        Tun::delete("wq0").expect("delete multi-queue TUN");
        assert!(!link_exists(&ns_name, "wq0"));

        // vnet_hdr hooks.
        let vnet = TunOptions {
            vnet_hdr: true,
            ..TunOptions::default()
        };
        let v = Tun::create("wv0", &vnet).unwrap();
        v.set_vnet_hdr_size(12).expect("TUNSETVNETHDRSZ");
        v.set_offload(libc::TUN_F_CSUM).expect("TUNSETOFFLOAD");

        // Names taken by other interfaces.
        let taken = Tun::create("lo", &TunOptions::default());
        assert!(
            matches!(taken, Err(TunError::AlreadyExists { .. })),
            "{taken:?}"
        );
        let not_tun = Tun::attach("lo", &TunOptions::default());
        assert!(
            matches!(not_tun, Err(TunError::NotATun { .. })),
            "{not_tun:?}"
        );
    })
    .expect("enter test namespace");
}

#[tokio::test]
async fn host_port_is_idempotent_and_dual_stack() {
    let t = TestNs::new(NS_PREFIX, "host");
    let mut spec = PortSpec::host(
        "weft0",
        net("10.244.3.1/32"),
        1420,
        &[net("10.244.0.0/16"), net("10.96.0.0/12")],
    );
    spec.addresses.push(net("fd00:244:3::1/128"));
    spec.routes.push(Route::dev(net("fd00:244::/48")));

    let tun = ensure_host_tun(&t.ns, &spec).await.expect("first start");
    drop(tun);
    // Agent restart: the port exists, is re-attached and re-converged.
    let _tun = ensure_host_tun(&t.ns, &spec).await.expect("restart");

    let routes = ip_json(&t.name, &["route", "show", "dev", "weft0"]);
    let dsts: Vec<&str> = routes
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["dst"].as_str())
        .collect();
    assert!(dsts.contains(&"10.244.0.0/16"), "{routes}");
    assert!(dsts.contains(&"10.96.0.0/12"), "{routes}");
    let routes6 = ip_json(&t.name, &["-6", "route", "show", "dev", "weft0"]);
    assert!(
        routes6
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["dst"] == "fd00:244::/48"),
        "{routes6}"
    );
    let state = port_state(&t.ns, "weft0").await.unwrap();
    assert!(state.satisfies(&spec), "{state:?}");
    assert_eq!(
        state
            .addresses
            .iter()
            .filter(|a| **a == net("10.244.3.1/32"))
            .count(),
        1,
        "no duplicate address after restart: {state:?}"
    );
}

#[tokio::test]
async fn netlink_edits_and_precise_errors() {
    let t = TestNs::new(NS_PREFIX, "nl");
    let nl = Netlink::connect_in(&t.ns).unwrap();

    // Bring lo up, as a CNI runtime would.
    nl.set_up("lo").await.unwrap();
    assert!(nl.link("lo").await.unwrap().up);

    let _tun = create_pod_tun(&t.ns, &pod_spec()).await.unwrap();
    // Adding what is there is Ok; a route with a gateway goes on-link.
    nl.add_address("eth0", net("10.99.0.2/32")).await.unwrap();
    let via = Route::via(net("192.0.2.0/24"), "10.99.0.1".parse().unwrap());
    nl.add_route("eth0", &via).await.unwrap();
    nl.add_route("eth0", &via).await.unwrap();
    assert!(nl.routes("eth0").await.unwrap().contains(&via));

    let missing = nl.set_mtu("nope0", 1400).await.unwrap_err();
    assert!(matches!(missing, NetlinkError::LinkNotFound { .. }));
    assert_eq!(
        missing.to_string(),
        format!(
            "no network interface named nope0 in network namespace /run/netns/{}",
            t.name
        )
    );
    let tiny = nl.set_mtu("eth0", 10).await.unwrap_err();
    assert!(
        tiny.to_string()
            .starts_with("setting MTU 10 on eth0 in network namespace"),
        "{tiny}"
    );
    let mixed = Route::via(net("10.0.0.0/8"), "fd00::1".parse().unwrap());
    let mixed = nl.add_route("eth0", &mixed).await.unwrap_err();
    assert!(
        matches!(mixed, NetlinkError::InvalidRoute { .. }),
        "{mixed}"
    );
    let bad = nl.link("way-too-long-name0").await.unwrap_err();
    assert!(matches!(bad, NetlinkError::InvalidName(_)), "{bad}");

    // The same name twice in one namespace.
    let twice = create_pod_tun(&t.ns, &pod_spec()).await.unwrap_err();
    assert!(
        matches!(twice, KernelError::Tun(TunError::AlreadyExists { .. })),
        "{twice}"
    );
    assert_eq!(twice.to_string(), "network interface eth0 already exists");
    // ... which left the first one alone.
    assert!(port_state(&t.ns, "eth0")
        .await
        .unwrap()
        .satisfies(&pod_spec()));

    // A half-configured port is removed again (MTU below IPv4's minimum).
    let mut bad_mtu = pod_spec();
    bad_mtu.ifname = "eth1".into();
    bad_mtu.mtu = 10;
    let err = create_pod_tun(&t.ns, &bad_mtu).await.unwrap_err();
    assert!(
        matches!(err, KernelError::Netlink(NetlinkError::Kernel { .. })),
        "{err}"
    );
    assert!(!link_exists(&t.name, "eth1"));

    delete_pod_tun(&t.ns, "eth0").await.unwrap();
}

#[test]
fn bad_inputs_give_precise_errors() {
    require_root();
    let pid = std::process::id();

    let path = format!("/var/run/netns/weft-missing-{pid}");
    let err = NetNs::open(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("network namespace {path} does not exist")
    );
    let err = NetNs::open("/proc/2147483647/ns/net").unwrap_err();
    assert!(matches!(err, NetNsError::NotFound { .. }), "{err}");
    let err = NetNs::open("/etc/hostname").unwrap_err();
    assert!(matches!(err, NetNsError::NotANetNs { .. }), "{err}");
    let err = NetNs::delete_named(&format!("weft-missing-{pid}")).unwrap_err();
    assert!(matches!(err, NetNsError::NotFound { .. }), "{err}");
    let err = NetNs::create_named("a/b").unwrap_err();
    assert!(matches!(err, NetNsError::InvalidName { .. }), "{err}");

    let err = Tun::create("sixteen-bytes-xx", &TunOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid interface name \"sixteen-bytes-xx\": longer than 15 bytes (IFNAMSIZ - 1)"
    );
    for name in ["", "a b", "a/b", "a:b", "tun%d", ".."] {
        let err = Tun::create(name, &TunOptions::default()).unwrap_err();
        assert!(matches!(err, TunError::InvalidName(_)), "{name:?}: {err}");
    }
    let err = Tun::attach("weft-nosuch0", &TunOptions::default()).unwrap_err();
    assert!(matches!(err, TunError::NotFound { .. }), "{err}");
}

#[tokio::test]
async fn named_namespaces_and_threads() {
    let t = TestNs::new(NS_PREFIX, "ns");
    let listed = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&t.name));

    let again = NetNs::create_named(&t.name).unwrap_err();
    assert!(matches!(again, NetNsError::AlreadyExists { .. }), "{again}");

    // Same namespace by name, by /run path and by /var/run path.
    assert_eq!(NetNs::open_named(&t.name).unwrap(), t.ns);
    assert_eq!(
        NetNs::open(format!("/var/run/netns/{}", t.name)).unwrap(),
        t.ns
    );

    // run_in runs on a thread inside; the caller's thread stays put.
    let before = NetNs::current().unwrap();
    let inside = netns::run_in(&t.ns, || NetNs::current().unwrap()).unwrap();
    assert_eq!(inside, t.ns);
    assert_eq!(NetNs::current().unwrap(), before);
    assert_ne!(before, t.ns);
    let inside = netns::run_in_async(&t.ns, || NetNs::current().unwrap())
        .await
        .unwrap();
    assert_eq!(inside, t.ns);

    // A namespace of a process, by /proc/PID/ns/net.
    let mut sleeper = Command::new("ip")
        .args(["netns", "exec", &t.name, "sleep", "5"])
        .spawn()
        .unwrap();
    let by_pid = {
        let mut found = None;
        for _ in 0..100 {
            let path = format!("/proc/{}/ns/net", sleeper.id());
            if let Ok(ns) = NetNs::open(&path) {
                if ns == t.ns {
                    found = Some(ns);
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        found
    };
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert!(
        by_pid.is_some(),
        "/proc/PID/ns/net of a process in the namespace"
    );

    // Deleting the name removes it from `ip netns list`.
    let name = t.name.clone();
    drop(t);
    let listed = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&listed.stdout).contains(&name));
    assert!(matches!(
        NetNs::open_named(&name),
        Err(NetNsError::NotFound { .. })
    ));
}
