//! The DNS VIP step of the decision: a query from a local pod (or the
//! host port) to the node's cluster DNS address is answered by the switch
//! itself, before service translation and routing.
//!
//! Contract:
//! - Configuration is data: [`Switch::set_dns`] takes the VIPs and the
//!   compiled zone, [`Switch::set_dns_zone`] swaps the zone alone (an
//!   `Arc` pointer swap, between packets, on the engine's thread); the
//!   per-packet step reads them without a lock. Until `set_dns` is called
//!   the step is off and the VIP is routed like any other address.
//! - Only the pod ports and the host port are served: the VIP is
//!   node-local, so a packet to it from a peer falls through to routing
//!   (which drops it: the service CIDR is routed nowhere).
//! - UDP to port 53: answered from the zone into the caller's scratch
//!   buffer ([`Action::Reply`], a packet built by [`reply_packet`] that
//!   fits the client's MTU), or handed to the engine for the upstream
//!   resolvers ([`Action::DnsForward`]), or dropped, counted by
//!   [`DnsDropReason`]. TCP to port 53: [`Action::DnsTcp`], the engine's
//!   own TCP endpoint takes it. Anything else: ICMP port unreachable from
//!   the VIP (never for an ICMP error), rate-limited with the switch's
//!   other errors.
//! - Answering allocates (hickory-proto); nothing outlives the call.
//!
//! [`reply_packet`]: super::reply_packet
//! [`Action::Reply`]: crate::Action::Reply
//! [`Action::DnsForward`]: crate::Action::DnsForward
//! [`Action::DnsTcp`]: crate::Action::DnsTcp

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use super::counters::{DnsCounters, DnsDropReason};
use super::zone::DnsZone;
use crate::config::ConfigError;
use crate::decide::Switch;
use crate::martian::is_martian;
use crate::ports::{Ingress, PortId, Route};
use crate::wire::{
    proto, IpPacket, Transport, UdpPacket, VnetHdr, IPV4_HEADER_LEN, IPV6_HEADER_LEN,
    UDP_HEADER_LEN,
};

/// The cluster DNS address by default (the 10th of the service CIDR
/// `10.96.0.0/12`, as kubeadm picks).
pub const DEFAULT_DNS_VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 96, 0, 10));
/// The cluster domain by default.
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";
/// The DNS port.
pub const DNS_PORT: u16 = 53;

/// What the switch's DNS step is configured with.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// The node-local DNS addresses (one per family, typically); empty
    /// turns the step off.
    pub vips: Vec<IpAddr>,
    /// The compiled cluster zone; its domain is the cluster domain.
    pub zone: Arc<DnsZone>,
}

impl Default for DnsConfig {
    /// [`DEFAULT_DNS_VIP`], and a zone for [`DEFAULT_CLUSTER_DOMAIN`]
    /// that answers SERVFAIL until built from the objects.
    fn default() -> Self {
        Self {
            vips: vec![DEFAULT_DNS_VIP],
            zone: Arc::new(DnsZone::not_ready(DEFAULT_CLUSTER_DOMAIN)),
        }
    }
}

/// Where a query came in, and so where its answer goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DnsOrigin {
    /// A pod port.
    Pod(PortId),
    /// The host port `weft0` (the node itself asking).
    Host,
}

/// Who asked the DNS VIP: everything [`reply_packet`](super::reply_packet)
/// needs to address an answer back. The engine keeps it with a forwarded
/// query (it is the `C` of [`Forwarder<C>`](super::Forwarder)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DnsClient {
    /// The port the query came in on and the answer goes out on.
    pub origin: DnsOrigin,
    /// The asker's address and port: the answer's destination.
    pub client: SocketAddr,
    /// The VIP and port it asked: the answer's source.
    pub server: SocketAddr,
    /// The largest DNS message the answer may be: the client's UDP
    /// payload size (512, or its EDNS(0) size) and its port's MTU less the
    /// IP and UDP headers, whichever is smaller (65 535 over TCP).
    pub max_message: u16,
}

/// A UDP query to the DNS VIP that the engine must forward upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsQuery {
    /// Who asked.
    pub client: DnsClient,
    /// Where the DNS message lies in the packet handed to the switch.
    pub(super) start: usize,
    pub(super) end: usize,
}

impl DnsQuery {
    /// The DNS message: the UDP payload of `packet`, the packet the
    /// decision was made on (empty for any other buffer too short).
    pub fn message<'a>(&self, packet: &'a [u8]) -> &'a [u8] {
        packet.get(self.start..self.end).unwrap_or_default()
    }
}

/// The switch's DNS state: off (no VIPs) until configured.
#[derive(Debug, Clone)]
pub(crate) struct DnsVip {
    vips: Vec<IpAddr>,
    pub(super) zone: Arc<DnsZone>,
    pub(super) counters: DnsCounters,
}

impl Default for DnsVip {
    fn default() -> Self {
        Self {
            vips: Vec::new(),
            zone: DnsConfig::default().zone,
            counters: DnsCounters::default(),
        }
    }
}

/// What the DNS step decided, finished (answered, counted) by
/// `Switch::finish_dns` (`finish.rs`) where the scratch buffer is at hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DnsVerdict {
    /// A UDP query: answer or forward it.
    Udp(DnsQuery),
    /// TCP to port 53: the engine's.
    Tcp(DnsClient),
    /// Another port or protocol; answer port unreachable from `vip` if
    /// `may_answer` (not an ICMP error).
    OtherPort { vip: IpAddr, may_answer: bool },
    /// Dropped without an answer.
    Drop(DnsDropReason),
}

impl Switch {
    /// Turns the DNS step on with `config` (or off, with no VIPs). A VIP
    /// is answered by the node itself whatever the route table says of it.
    /// Refuses addresses that can never be used on the overlay.
    pub fn set_dns(&mut self, config: DnsConfig) -> Result<(), ConfigError> {
        if let Some(bad) = config.vips.iter().find(|a| is_martian(**a)) {
            return Err(ConfigError::UnusableAddress(*bad));
        }
        self.dns.vips = config.vips;
        self.dns.zone = config.zone;
        Ok(())
    }

    /// Swaps in a newly compiled zone (the VIPs stay): a pointer swap.
    pub fn set_dns_zone(&mut self, zone: Arc<DnsZone>) {
        self.dns.zone = zone;
    }

    /// The zone answered from (the engine answers DNS over TCP from it).
    pub fn dns_zone(&self) -> &Arc<DnsZone> {
        &self.dns.zone
    }

    /// The DNS VIPs (empty: the step is off).
    pub fn dns_vips(&self) -> &[IpAddr] {
        &self.dns.vips
    }

    /// The DNS VIP's counters.
    pub fn dns_counters(&self) -> &DnsCounters {
        &self.dns.counters
    }

    /// The DNS step of the decision: `None` if the packet is not for a
    /// DNS VIP from a local port (or the step is off).
    pub(crate) fn dns_step<T: AsRef<[u8]>>(
        &self,
        ingress: Ingress,
        ip: &IpPacket<T>,
        transport: Transport,
        hdr: &VnetHdr,
    ) -> Option<DnsVerdict> {
        let (origin, route) = match ingress {
            Ingress::Port(p) => (DnsOrigin::Pod(p), Route::Port(p)),
            Ingress::Host => (DnsOrigin::Host, Route::Host),
            Ingress::Peer(_) => return None,
        };
        let vip = ip.dst_addr();
        if !self.dns.vips.contains(&vip) {
            return None;
        }
        // A first IPv4 fragment still has its ports (a later fragment is
        // `Transport::Fragment`; a first IPv6 one fails the UDP length).
        let fragment = matches!(ip, IpPacket::V4(p) if p.is_fragment());
        let (src_port, tcp) = match transport {
            Transport::Udp {
                src_port,
                dst_port: DNS_PORT,
            } => (src_port, false),
            Transport::Tcp {
                src_port,
                dst_port: DNS_PORT,
            } => (src_port, true),
            Transport::Fragment => return Some(DnsVerdict::Drop(DnsDropReason::Fragment)),
            _ => {
                return Some(DnsVerdict::OtherPort {
                    vip,
                    may_answer: !transport.is_icmp_error(),
                })
            }
        };
        if fragment {
            return Some(DnsVerdict::Drop(DnsDropReason::Fragment));
        }
        let mut client = DnsClient {
            origin,
            client: SocketAddr::new(ip.src_addr(), src_port),
            server: SocketAddr::new(vip, DNS_PORT),
            max_message: u16::MAX,
        };
        if tcp {
            return Some(DnsVerdict::Tcp(client));
        }
        if hdr.is_gso() {
            return Some(DnsVerdict::Drop(DnsDropReason::SuperPacket));
        }
        let ip_header = if ip.is_v6() {
            IPV6_HEADER_LEN
        } else {
            IPV4_HEADER_LEN
        };
        client.max_message = self
            .config
            .egress_mtu(route)
            .saturating_sub((ip_header + UDP_HEADER_LEN) as u16);
        Some(udp_query(ip, client, !hdr.needs_csum()))
    }
}

/// The DNS message of a UDP packet to the VIP, with its length and (unless
/// the device completes it) checksum checked as a host checks them.
fn udp_query<T: AsRef<[u8]>>(ip: &IpPacket<T>, client: DnsClient, check: bool) -> DnsVerdict {
    let at = match ip {
        IpPacket::V4(p) => Some(p.header_len()),
        IpPacket::V6(p) => p
            .upper_layer()
            .ok()
            .flatten()
            .map(|(_, at)| IPV6_HEADER_LEN + at),
    };
    let l4 = at.and_then(|at| ip.packet_bytes().get(at..));
    let (Some(at), Some(l4)) = (at, l4) else {
        return DnsVerdict::Drop(DnsDropReason::BadLength);
    };
    let len = UdpPacket::new_checked(l4).map_or(0, |u| usize::from(u.len_field()));
    let Some(datagram) = l4.get(..len).filter(|_| len >= UDP_HEADER_LEN) else {
        return DnsVerdict::Drop(DnsDropReason::BadLength);
    };
    if check {
        let pseudo = ip.pseudo_header(proto::UDP, len);
        let ok =
            UdpPacket::new_checked(datagram).is_ok_and(|u| u.verify_checksum(pseudo, !ip.is_v6()));
        if !ok {
            return DnsVerdict::Drop(DnsDropReason::BadChecksum);
        }
    }
    DnsVerdict::Udp(DnsQuery {
        client,
        start: at + UDP_HEADER_LEN,
        end: at + len,
    })
}
