//! Fixtures shared by the root-only kernel tests (`dataplane_mesh`,
//! `dataplane_perf`, `dataplane_tun`, `kernel_tun`, `pods_kernel`):
//!
//! - [`require_root`], which fails (never skips) a test run without root;
//! - [`TestNs`], a uniquely named network namespace deleted on drop (also
//!   on panic), and [`unique_name`] for guards of their own;
//! - `ip` helpers: [`ip`] (run it, fail on error), [`ip_json`] (`ip -n NS
//!   -j ...`, parsed) and [`link_exists`];
//! - [`net`] to parse a prefix; the ICMP bytes [`checksum`] (RFC 1071) and
//!   [`icmp_echo`] (both from `weft_switch::testing`, the one packet
//!   builder), and [`raw_icmp_socket`] to ping without a `ping` binary.

// Each test binary includes this module and uses only part of it.
#![allow(dead_code)]

use std::os::fd::OwnedFd;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use ipnet::IpNet;
use nix::sys::socket::{
    setsockopt, socket, sockopt, AddressFamily, SockFlag, SockProtocol, SockType,
};
use nix::sys::time::TimeVal;
use serde_json::Value;
use weft_node_agent::kernel::netns::NetNs;
use weft_switch::testing;

/// Fails the test unless it runs as root: these tests make namespaces,
/// TUN devices and links (CAP_NET_ADMIN + CAP_SYS_ADMIN).
pub(crate) fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the {} tests need root (CAP_NET_ADMIN + CAP_SYS_ADMIN); CI runs them as root",
        env!("CARGO_CRATE_NAME")
    );
}

/// A name no other test of this process (nor another process) uses:
/// `{prefix}{pid}-{n}-{tag}`, with `n` counting up.
pub(crate) fn unique_name(prefix: &str, tag: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}-{n}-{tag}", std::process::id())
}

/// A named namespace for one test, deleted on drop (also on panic).
pub(crate) struct TestNs {
    pub name: String,
    pub ns: NetNs,
}

impl TestNs {
    /// Creates the namespace [`unique_name`]`(prefix, tag)`; fails without
    /// root.
    pub(crate) fn new(prefix: &str, tag: &str) -> Self {
        require_root();
        let name = unique_name(prefix, tag);
        let ns = NetNs::create_named(&name).expect("create test namespace");
        Self { name, ns }
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        if let Err(e) = NetNs::delete_named(&self.name) {
            eprintln!("cleanup: {e}");
        }
    }
}

/// Runs `ip ARGS...` and returns its stdout; fails the test (with ip's
/// stderr) if it fails.
pub(crate) fn ip(args: &[&str]) -> Vec<u8> {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `ip -n NS -j ARGS...`, parsed.
pub(crate) fn ip_json(ns: &str, args: &[&str]) -> Value {
    let mut all = vec!["-n", ns, "-j"];
    all.extend_from_slice(args);
    serde_json::from_slice(&ip(&all)).expect("ip -j output is JSON")
}

/// Whether `ifname` exists in the namespace `ns`.
pub(crate) fn link_exists(ns: &str, ifname: &str) -> bool {
    Command::new("ip")
        .args(["-n", ns, "link", "show", "dev", ifname])
        .output()
        .expect("run ip")
        .status
        .success()
}

pub(crate) fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// RFC 1071 internet checksum (weft_switch's textbook test oracle): 0 over
/// bytes whose checksum field is right.
pub(crate) fn checksum(bytes: &[u8]) -> u16 {
    !testing::fold(testing::slow_sum(bytes))
}

/// An ICMPv4 echo message of type `kind` (8 request, 0 reply), checksummed:
/// the ICMP part of weft_switch's packet fixture.
pub(crate) fn icmp_echo(kind: u8, ident: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = testing::pkt("192.0.2.1", "192.0.2.2")
        .icmp(kind, 0)
        .payload(payload);
    (f.echo_id, f.echo_seq) = (ident, seq);
    f.transport().1
}

/// A raw ICMP socket (ICMPv6 for `AddressFamily::Inet6`) in the calling
/// thread's namespace, with `timeout` on receives.
pub(crate) fn raw_icmp_socket(family: AddressFamily, timeout: TimeVal) -> Result<OwnedFd, String> {
    let protocol = match family {
        AddressFamily::Inet6 => SockProtocol::IcmpV6,
        _ => SockProtocol::Icmp,
    };
    let sock = socket(family, SockType::Raw, SockFlag::SOCK_CLOEXEC, protocol)
        .map_err(|e| format!("raw socket: {e}"))?;
    setsockopt(&sock, sockopt::ReceiveTimeout, &timeout)
        .map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
    Ok(sock)
}
