//! Switch-level tests: the per-packet decision end to end on byte fixtures,
//! the configuration API, and property tests that no input panics. This
//! file holds the node every test starts from and the harness that drives
//! it; each concern has its own file.

use std::net::IpAddr;
use std::time::Instant;

use ipnet::IpNet;

use crate::testing::valid;
use crate::wire::VnetHdr;
use crate::*;

mod config;
mod dns;
mod dns_forward;
mod dns_props;
mod forwarding;
mod icmp;
mod malformed;
mod mtu;
mod policing;
mod props;
mod routing;
mod services;
mod spoofing;

/// The start of every test's clock: tests pass time in, as the engine does.
use crate::testing::epoch as t0;

/// True if an ICMPv6 message (no extension headers) has a valid checksum.
fn verify_icmpv6_checksum(p: &Ipv6Packet<&[u8]>) -> bool {
    valid(p.packet_bytes())
}

// Node 1 owns 10.244.1.0/24 and fd00:244:1::/64; peers 1 and 2 own the next two.
const HOST4: &str = "10.244.1.1";
const HOST6: &str = "fd00:244:1::1";
const POD_A4: &str = "10.244.1.2";
const POD_A6: &str = "fd00:244:1::2";
const POD_B4: &str = "10.244.1.3";
const POD_B6: &str = "fd00:244:1::3";
const UNASSIGNED4: &str = "10.244.1.77";
const UNASSIGNED6: &str = "fd00:244:1::77";
const PEER1_POD4: &str = "10.244.2.5";
const PEER1_POD6: &str = "fd00:244:2::5";
const PEER2_POD4: &str = "10.244.3.5";
const PEER2_POD6: &str = "fd00:244:3::5";
const NOWHERE4: &str = "192.0.2.1";
const NOWHERE6: &str = "2001:db8::1";

const A: PortId = PortId(1);
const B: PortId = PortId(2);
const P1: PeerId = PeerId(1);
const P2: PeerId = PeerId(2);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn configured() -> Switch {
    let mut sw = Switch::new();
    sw.set_node_cidrs(&[net("10.244.1.0/24"), net("fd00:244:1::/64")])
        .unwrap();
    sw.set_host_addresses(&[ip(HOST4), ip(HOST6)]).unwrap();
    sw.set_pod_port(A, &[ip(POD_A4), ip(POD_A6)]).unwrap();
    sw.set_pod_port(B, &[ip(POD_B4), ip(POD_B6)]).unwrap();
    sw.set_peer(P1, &[net("10.244.2.0/24"), net("fd00:244:2::/64")])
        .unwrap();
    sw.set_peer(P2, &[net("10.244.3.0/24"), net("fd00:244:3::/64")])
        .unwrap();
    sw
}

/// A switch, a clock and a scratch buffer; keeps the last packet and reply.
struct Harness {
    sw: Switch,
    now: Instant,
    scratch: Vec<u8>,
    last: Vec<u8>,
}

impl Harness {
    fn new() -> Self {
        Self::with(configured())
    }

    fn with(sw: Switch) -> Self {
        Self {
            sw,
            now: t0(),
            scratch: vec![0; 1500],
            last: Vec::new(),
        }
    }

    fn pod(&mut self, port: PortId, mut packet: Vec<u8>) -> Action {
        let a = self.sw.from_pod(
            port,
            &mut packet,
            &VnetHdr::default(),
            &mut self.scratch,
            self.now,
        );
        self.last = packet;
        a
    }

    /// A super-packet (or any packet with a virtio-net header) from `port`.
    fn pod_gso(&mut self, port: PortId, mut packet: Vec<u8>, hdr: &VnetHdr) -> Action {
        let a = self
            .sw
            .from_pod(port, &mut packet, hdr, &mut self.scratch, self.now);
        self.last = packet;
        a
    }

    fn peer(&mut self, peer: PeerId, mut packet: Vec<u8>) -> Action {
        let a = self
            .sw
            .from_peer(peer, &mut packet, &mut self.scratch, self.now);
        self.last = packet;
        a
    }

    fn host(&mut self, mut packet: Vec<u8>) -> Action {
        let a = self.sw.from_host(
            &mut packet,
            &VnetHdr::default(),
            &mut self.scratch,
            self.now,
        );
        self.last = packet;
        a
    }

    /// The reply of an `Action::Reply`, parsed.
    fn reply(&self, action: Action) -> IpPacket<&[u8]> {
        let Action::Reply(n) = action else {
            panic!("expected a reply, got {action:?}")
        };
        IpPacket::new_checked(&self.scratch[..n]).expect("reply parses (IPv4 checksum valid)")
    }

    fn dropped(&self, reason: DropReason) -> u64 {
        self.sw.counters().dropped(reason)
    }
}
