//! [`Switch::trace`]: what the decision would do with one packet, step by
//! step, for `weftctl trace`.
//!
//! Contract: the packet goes through the real decision ([`Switch::process`])
//! of a CLONE of the switch, so the trace is exactly what the packet path
//! would do now (the same tables, the same conntrack state, the same
//! endpoint choice the next connection would get) and the switch itself is
//! untouched: no entry made, no counter moved, no random draw spent. The
//! clone copies the connection table (tens of MB at the default
//! `--conntrack-max`): meant for an operator's command, not for a packet
//! rate. Reads no clock (time passed in) and never panics.

use std::net::SocketAddr;
use std::time::Instant;

use crate::conntrack::{FlowKey, PolicySlot};
use crate::decide::{Action, Switch};
use crate::ports::Ingress;
use crate::wire::{IpPacket, VnetHdr};

/// One packet's way through the switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// The packet as it came in: source and destination (port 0 without
    /// ports), IP protocol number.
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub proto: u8,
    /// Whether the destination is a cluster DNS VIP (answered by the node).
    pub dns_vip: bool,
    /// Whether a tracked connection already had this tuple (the trace then
    /// shows that connection's fate, not a new one's).
    pub existing_connection: bool,
    /// The Service frontend it was sent to, if any: `namespace/name`, and
    /// every endpoint a new connection may use.
    pub service: Option<TracedService>,
    /// The packet as it would leave, when it leaves (after translation).
    pub out_src: Option<SocketAddr>,
    pub out_dst: Option<SocketAddr>,
    /// The policy verdicts of the connection (None: no table in force, or
    /// the packet was not tracked), with the policies' names.
    pub policy: Option<TracedPolicy>,
    /// What the switch would do.
    pub action: Action,
}

/// The Service step of a trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracedService {
    pub namespace: String,
    pub name: String,
    pub endpoints: Vec<SocketAddr>,
}

/// The policy step of a trace: each side judged on this node, with the
/// deciding policy's name (`None`: not isolated, or not judged here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracedPolicy {
    pub slot: PolicySlot,
    pub egress_policy: Option<String>,
    pub ingress_policy: Option<String>,
}

fn ends(ip: &IpPacket<&[u8]>) -> Option<(SocketAddr, SocketAddr, u8, Option<FlowKey>)> {
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let transport = ip.transport().ok()?;
    let (sp, dp) = transport.ports();
    let proto = transport.protocol().unwrap_or(0);
    let key = FlowKey::new(proto, src, sp, dst, dp);
    Some((
        SocketAddr::new(src, sp),
        SocketAddr::new(dst, dp),
        proto,
        key,
    ))
}

impl Switch {
    /// Traces `packet` coming in by `ingress` (see the module docs).
    /// `None` if it is not an IP packet the switch could read at all.
    pub fn trace(&self, ingress: Ingress, packet: &[u8], now: Instant) -> Option<Trace> {
        let (src, dst, proto, key) = ends(&IpPacket::new_checked(packet).ok()?)?;
        let mut sw = self.clone();
        let dns_vip = self.dns_vips().contains(&dst.ip());
        let existing_connection = key
            .and_then(|k| Some(sw.services.as_deref_mut()?.conntrack.lookup(&k, now)))
            .flatten()
            .is_some();
        let service = self.services.as_deref().and_then(|s| {
            let f = s.table.frontend(proto, dst)?;
            let (namespace, name) = s.table.service_name(f)?;
            let endpoints = match s.table.candidates(f, crate::service::Origin::Internal) {
                crate::service::Candidates::Endpoints(e) => e.to_vec(),
                _ => Vec::new(),
            };
            Some(TracedService {
                namespace: namespace.to_string(),
                name: name.to_string(),
                endpoints,
            })
        });
        let mut bytes = packet.to_vec();
        let mut scratch = vec![0u8; 65_536];
        let action = sw.process(ingress, &mut bytes, &VnetHdr::default(), &mut scratch, now);
        let leaves = matches!(
            action,
            Action::ToPort(_) | Action::ToHost | Action::ToPeer(_)
        );
        let out = leaves
            .then(|| {
                IpPacket::new_checked(&bytes[..])
                    .ok()
                    .and_then(|p| ends(&p))
            })
            .flatten();
        let policy = key.and_then(|k| {
            let step = sw.policy.as_deref()?;
            let ct = &mut sw.services.as_deref_mut()?.conntrack;
            let (id, _) = ct.lookup(&k, now)?;
            let slot = ct.get(id)?.policy;
            let name = |v: Option<crate::policy::Verdict>| {
                let index = match v? {
                    crate::policy::Verdict::NotIsolated => return None,
                    crate::policy::Verdict::Allowed(r) => r.policy,
                    crate::policy::Verdict::Denied { policy } => policy,
                };
                step.policy_name(index).map(str::to_string)
            };
            Some(TracedPolicy {
                egress_policy: name(slot.egress),
                ingress_policy: name(slot.ingress),
                slot,
            })
        });
        Some(Trace {
            src,
            dst,
            proto,
            dns_vip,
            existing_connection,
            service,
            out_src: out.map(|o| o.0),
            out_dst: out.map(|o| o.1),
            policy,
            action,
        })
    }
}

/// What [`probe_packet`] builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    /// A TCP SYN.
    TcpSyn,
    /// A UDP datagram with an empty payload.
    Udp,
    /// An ICMP (ICMPv6) echo request, identifier = the source "port".
    Echo,
}

/// The first packet of a connection from `src` to `dst` (ports ignored for
/// ICMP; the source port is the echo identifier), with valid checksums,
/// for [`Switch::trace`]. `None` for mixed address families.
pub fn probe_packet(src: SocketAddr, dst: SocketAddr, kind: ProbeKind) -> Option<Vec<u8>> {
    use crate::wire::checksum::{finish, pseudo_v4, pseudo_v6, sum};
    use crate::wire::proto;
    let (sp, dp) = (src.port().to_be_bytes(), dst.port().to_be_bytes());
    let (number, mut l4) = match (kind, src.is_ipv6()) {
        (ProbeKind::TcpSyn, _) => {
            let mut t = vec![0u8; 20];
            put(&mut t, 0, &sp);
            put(&mut t, 2, &dp);
            put(&mut t, 4, &1u32.to_be_bytes());
            put(&mut t, 12, &[5 << 4]);
            put(&mut t, 13, &[crate::wire::tcp_flags::SYN]);
            put(&mut t, 14, &u16::MAX.to_be_bytes());
            (proto::TCP, t)
        }
        (ProbeKind::Udp, _) => {
            let mut u = vec![0u8; 8];
            put(&mut u, 0, &sp);
            put(&mut u, 2, &dp);
            put(&mut u, 4, &8u16.to_be_bytes());
            (proto::UDP, u)
        }
        (ProbeKind::Echo, v6) => {
            let mut e = vec![0u8; 8];
            put(&mut e, 0, &[if v6 { 128 } else { 8 }]);
            put(&mut e, 4, &sp);
            put(&mut e, 6, &1u16.to_be_bytes());
            (if v6 { proto::ICMPV6 } else { proto::ICMP }, e)
        }
    };
    let at = match number {
        proto::TCP => 16,
        proto::UDP => 6,
        _ => 2,
    };
    let len = l4.len();
    match (src.ip(), dst.ip()) {
        (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) => {
            let pseudo = if number == proto::ICMP {
                0
            } else {
                pseudo_v4(s, d, number, len)
            };
            let c = finish(sum(&l4, pseudo));
            put(&mut l4, at, &c.to_be_bytes());
            let mut ip = vec![0u8; 20];
            put(&mut ip, 0, &[0x45]);
            put(&mut ip, 2, &u16::try_from(20 + len).ok()?.to_be_bytes());
            put(&mut ip, 6, &[0x40]); // don't fragment
            put(&mut ip, 8, &[64]);
            put(&mut ip, 9, &[number]);
            put(&mut ip, 12, &s.octets());
            put(&mut ip, 16, &d.octets());
            let c = finish(sum(&ip, 0));
            put(&mut ip, 10, &c.to_be_bytes());
            ip.extend_from_slice(&l4);
            Some(ip)
        }
        (std::net::IpAddr::V6(s), std::net::IpAddr::V6(d)) => {
            let c = finish(sum(&l4, pseudo_v6(s, d, number, len)));
            put(&mut l4, at, &c.to_be_bytes());
            let mut ip = vec![0u8; 40];
            put(&mut ip, 0, &[0x60]);
            put(&mut ip, 4, &u16::try_from(len).ok()?.to_be_bytes());
            put(&mut ip, 6, &[number]);
            put(&mut ip, 7, &[64]);
            put(&mut ip, 8, &s.octets());
            put(&mut ip, 24, &d.octets());
            ip.extend_from_slice(&l4);
            Some(ip)
        }
        _ => None,
    }
}

/// Writes `bytes` at `at` (within the buffers this file sizes itself).
fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = buf.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}
