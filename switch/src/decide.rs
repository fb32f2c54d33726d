//! The per-packet decision: [`Switch::from_pod`], [`Switch::from_peer`] and
//! [`Switch::from_host`].
//!
//! Contract: each call takes one IP packet (exactly the bytes a TUN read or
//! boringtun's decapsulation produced; trailing link padding is tolerated;
//! from a TUN, a TSO/USO super-packet with its virtio-net header), may
//! rewrite it in place (TTL / hop limit), may write an ICMP error or a
//! DNS answer or a Service's reject into `scratch`, may translate a
//! Service flow in place, and returns an [`Action`]. One decision (and one
//! conntrack lookup) per super-packet. It never locks, reads a clock or
//! panics, hashes only the flow key (the conntrack lookup, once services
//! are enabled), and never allocates but to answer a DNS query. Every packet is counted
//! exactly once: as forwarded to a port, the host or a peer, as taken by
//! the DNS VIP, or as dropped for one [`DropReason`] (an ICMP error sent
//! for it is counted on top, in `icmp_sent`).
//!
//! Steps (the crate docs list them with the slots still to fill): ingress
//! known? -> parse -> martians -> anti-spoofing (strict reverse path: the
//! route back to the source must be the ingress) -> cluster DNS
//! (`dns/vip.rs`) -> conntrack and service translation (`services.rs`,
//! once enabled) -> policy (`policing.rs`, once a table is set) -> route (longest prefix match) -> TTL ->
//! egress MTU -> forward.

use std::time::Instant;

use crate::config::Config;
use crate::counters::{Counters, DropReason};
use crate::dns::vip::{DnsVerdict, DnsVip};
use crate::dns::{DnsClient, DnsQuery};
use crate::icmp_error::{self, IcmpError};
use crate::martian::{is_link_scoped, is_martian};
use crate::mtu::{self, Fit};
use crate::policing::PolicyStep;
use crate::ports::{Ingress, PeerId, PortId, Route};
use crate::prefix::PrefixTable;
use crate::ratelimit::TokenBucket;
use crate::services::{ServiceStep, StepOutcome};
use crate::wire::{IpPacket, Transport, VnetHdr};

/// ICMP errors allowed per second, on average, across the whole switch.
pub const DEFAULT_ICMP_PER_SECOND: u32 = 100;
/// ICMP errors allowed in one burst.
pub const DEFAULT_ICMP_BURST: u32 = 50;

/// What the IO shell must do with a packet it handed to the switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Write the (modified) packet to this pod port.
    ToPort(PortId),
    /// Write the (modified) packet to the host port `weft0`.
    ToHost,
    /// Encapsulate the (modified) packet to this peer.
    ToPeer(PeerId),
    /// Drop the packet and send `scratch[..n]`, addressed to its sender,
    /// back out the way the packet came in (the same pod port, the host
    /// port, or the same peer): an ICMP error, or the DNS VIP's answer to
    /// a query (see [`crate::dns::vip`]).
    Reply(usize),
    /// Drop the packet.
    Drop(DropReason),
    /// A UDP query to the DNS VIP for a name outside the cluster: give
    /// `query.message(packet)` and `query.client` to the node's
    /// [`Forwarder`](crate::dns::Forwarder); each reply it returns for
    /// that client goes out `client.origin` as the packet
    /// [`dns::reply_packet`](crate::dns::reply_packet) builds.
    DnsForward(DnsQuery),
    /// A TCP segment to the DNS VIP's port 53, from this client: for the
    /// engine's own TCP endpoint of the VIP (answers from
    /// [`Switch::dns_zone`] with [`dns::Proto::Tcp`](crate::dns::Proto)).
    DnsTcp(DnsClient),
}

/// The outcome of the decision, before ICMP errors are written and counted.
enum Verdict {
    Forward(Action),
    Drop(DropReason),
    /// Drop, and answer with this ICMP error if the rate limit allows.
    Reject(DropReason, IcmpError),
    /// For the DNS VIP: answered, forwarded or dropped by `dns/vip.rs`.
    Dns(DnsVerdict),
    /// Drop, counted for this reason, and send `scratch[..n]` back (a
    /// Service's reject, written by the translator; not rate-limited).
    Answer(DropReason, usize),
}

/// The node's L3 packet switch. See the [crate docs](crate).
#[derive(Debug, Clone)]
pub struct Switch {
    pub(crate) config: Config,
    /// Built from `config` on every change; read on every packet.
    pub(crate) routes: PrefixTable<Route>,
    pub(crate) icmp_limit: TokenBucket,
    pub(crate) counters: Counters,
    /// The DNS VIP step's configuration, zone and counters.
    pub(crate) dns: DnsVip,
    /// Connection tracking and service translation (`services.rs`);
    /// `None` until [`Switch::enable_services`].
    pub(crate) services: Option<Box<ServiceStep>>,
    /// NetworkPolicy (`policing.rs`); `None` until
    /// [`Switch::set_policy_table`].
    pub(crate) policy: Option<Box<PolicyStep>>,
}

impl Default for Switch {
    fn default() -> Self {
        Self::new()
    }
}

impl Switch {
    /// A switch with no ports, peers or addresses: it drops everything until
    /// configured.
    pub fn new() -> Self {
        Self {
            config: Config::default(),
            routes: PrefixTable::new(),
            icmp_limit: TokenBucket::new(DEFAULT_ICMP_PER_SECOND, DEFAULT_ICMP_BURST),
            counters: Counters::default(),
            dns: DnsVip::default(),
            services: None,
            policy: None,
        }
    }

    /// A packet read from pod port `port`, with the virtio-net header the
    /// TUN gave it (`VnetHdr::default()` for a plain packet).
    pub fn from_pod(
        &mut self,
        port: PortId,
        packet: &mut [u8],
        hdr: &VnetHdr,
        scratch: &mut [u8],
        now: Instant,
    ) -> Action {
        self.process(Ingress::Port(port), packet, hdr, scratch, now)
    }

    /// A packet decrypted from peer `peer` (always a plain packet).
    pub fn from_peer(
        &mut self,
        peer: PeerId,
        packet: &mut [u8],
        scratch: &mut [u8],
        now: Instant,
    ) -> Action {
        self.process(
            Ingress::Peer(peer),
            packet,
            &VnetHdr::default(),
            scratch,
            now,
        )
    }

    /// A packet read from the host port `weft0`, with its virtio-net
    /// header, as [`Self::from_pod`].
    pub fn from_host(
        &mut self,
        packet: &mut [u8],
        hdr: &VnetHdr,
        scratch: &mut [u8],
        now: Instant,
    ) -> Action {
        self.process(Ingress::Host, packet, hdr, scratch, now)
    }

    /// The counters so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// A packet that came in on `ingress`: [`Self::from_pod`],
    /// [`Self::from_host`] and [`Self::from_peer`] in one call, for an IO
    /// shell that keeps the ingress as a value. A packet from a peer is
    /// always plain (`VnetHdr::default()`).
    pub fn process(
        &mut self,
        ingress: Ingress,
        packet: &mut [u8],
        hdr: &VnetHdr,
        scratch: &mut [u8],
        now: Instant,
    ) -> Action {
        match self.decide(ingress, packet, hdr, scratch, now) {
            Verdict::Forward(action) => {
                match action {
                    Action::ToPort(_) => self.counters.count_to_port(),
                    Action::ToHost => self.counters.count_to_host(),
                    Action::ToPeer(_) => self.counters.count_to_peer(),
                    Action::Reply(_)
                    | Action::Drop(_)
                    | Action::DnsForward(_)
                    | Action::DnsTcp(_) => {}
                }
                action
            }
            Verdict::Drop(reason) => {
                self.counters.count_drop(reason);
                Action::Drop(reason)
            }
            Verdict::Reject(reason, error) => {
                self.counters.count_drop(reason);
                match self.write_error(error, packet, scratch, now) {
                    Some(n) => {
                        self.counters.count_icmp_sent();
                        Action::Reply(n)
                    }
                    None => Action::Drop(reason),
                }
            }
            Verdict::Dns(verdict) => self.finish_dns(verdict, packet, scratch, now),
            Verdict::Answer(reason, n) => {
                self.counters.count_drop(reason);
                Action::Reply(n)
            }
        }
    }

    fn decide(
        &mut self,
        ingress: Ingress,
        packet: &mut [u8],
        hdr: &VnetHdr,
        scratch: &mut [u8],
        now: Instant,
    ) -> Verdict {
        let spoofed = match ingress {
            Ingress::Port(p) if !self.config.has_port(p) => {
                return Verdict::Drop(DropReason::UnknownPort)
            }
            Ingress::Peer(p) if !self.config.has_peer(p) => {
                return Verdict::Drop(DropReason::UnknownPeer)
            }
            Ingress::Port(_) => DropReason::SpoofedPodSource,
            Ingress::Peer(_) => DropReason::SpoofedPeerSource,
            Ingress::Host => DropReason::SpoofedHostSource,
        };

        // 1. Parse.
        let Ok(ip) = IpPacket::new_checked(&mut *packet) else {
            return Verdict::Drop(DropReason::Malformed);
        };
        let Ok(transport) = ip.transport() else {
            return Verdict::Drop(DropReason::Malformed);
        };
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        if is_link_scoped(dst) {
            return Verdict::Drop(DropReason::LinkLocal);
        }
        if is_martian(src) || is_martian(dst) {
            return Verdict::Drop(DropReason::Martian);
        }

        // 2. Anti-spoofing, as a strict reverse-path check: a pod's /32 (/128)
        // routes to its port, a peer's allowed prefixes to the peer, the host
        // addresses to the host port, and a source whose longest match is
        // anything else (another pod, our own CIDR, another peer) is spoofed.
        if self.routes.lookup(src) != Some(ingress.expected_source_route()) {
            return Verdict::Drop(spoofed);
        }

        // 4. Cluster DNS: the node-local DNS VIP (`dns/vip.rs`), answered
        //    in place (stateless, so no conntrack entry), before
        //    translation: the VIP has no endpoints.
        if let Some(dns) = self.dns_step(ingress, &ip, transport, hdr) {
            return Verdict::Dns(dns);
        }
        // 3 and 5. Connection tracking and service translation
        //    (`services.rs`): one lookup; a Service flow is rewritten in
        //    place (replies reverse-translated), so the route below is
        //    taken on the packet as it now is.
        let tracked = match self.service_step(ingress, packet, hdr, scratch, now) {
            None => None,
            Some(StepOutcome::Continue(tracked)) => Some(tracked),
            Some(StepOutcome::Answer(reason, n)) => return Verdict::Answer(reason, n),
            Some(StepOutcome::Drop(reason)) => return Verdict::Drop(reason),
        };
        let Ok(mut ip) = IpPacket::new_checked(&mut *packet) else {
            return Verdict::Drop(DropReason::Malformed);
        };
        // 6. Network policy (`policing.rs`), on the translated addresses:
        //    judged once per connection, the verdict kept in its entry.
        if let Some(reason) = self.policy_step(tracked, &ip, now) {
            return Verdict::Drop(reason);
        }
        let dst = ip.dst_addr();

        // 7. Route. Never answer an ICMP error or a non-first fragment with
        // an ICMP error (RFC 1122 3.2.2, RFC 1812 4.3.2.7).
        let may_answer = !transport.is_icmp_error() && transport != Transport::Fragment;
        let reject = |reason, error| {
            if may_answer {
                Verdict::Reject(reason, error)
            } else {
                Verdict::Drop(reason)
            }
        };
        let (action, egress) = match (ingress, self.routes.lookup(dst)) {
            // A peer sent us something we cannot route: its routing is wrong,
            // so do not bounce errors across the mesh.
            (Ingress::Peer(_), None) => return Verdict::Drop(DropReason::NoRoute),
            (_, None) => return reject(DropReason::NoRoute, IcmpError::NetUnreachable),
            (_, Some(Route::Unassigned)) => {
                return reject(DropReason::NoPod, IcmpError::HostUnreachable)
            }
            // No transit routing through a node.
            (Ingress::Peer(_), Some(Route::Peer(_))) => {
                return Verdict::Drop(DropReason::PeerToPeer)
            }
            (_, Some(r @ Route::Port(p))) => (Action::ToPort(p), r),
            (_, Some(r @ Route::Host)) => (Action::ToHost, r),
            (_, Some(r @ Route::Peer(p))) => (Action::ToPeer(p), r),
        };

        // The switch is a router hop between links: decrement the TTL / hop
        // limit on every forward, and answer "time exceeded" at zero.
        if ip.hop_limit() <= 1 {
            return reject(DropReason::TtlExceeded, IcmpError::TimeExceeded);
        }
        // Then the egress MTU, per segment for a super-packet: too big
        // for the next hop and not to be fragmented is answered with the
        // MTU (path MTU discovery), as Linux's forwarding does.
        if let Fit::TooBig { mtu, answer } = mtu::check(&ip, hdr, self.config.egress_mtu(egress)) {
            return if answer {
                reject(DropReason::PacketTooBig, IcmpError::PacketTooBig { mtu })
            } else {
                Verdict::Drop(DropReason::PacketTooBig)
            };
        }
        ip.decrement_hop_limit();
        Verdict::Forward(action)
    }

    /// Writes `error` about `packet` into `scratch`, if there is a host
    /// address of the packet's family to send it from and a token to spend.
    fn write_error(
        &mut self,
        error: IcmpError,
        packet: &[u8],
        scratch: &mut [u8],
        now: Instant,
    ) -> Option<usize> {
        let invoking = IpPacket::new_checked(packet).ok()?;
        let have_source = match &invoking {
            IpPacket::V4(_) => self.config.host_v4().is_some(),
            IpPacket::V6(_) => self.config.host_v6().is_some(),
        };
        if !have_source {
            return None;
        }
        if !self.icmp_limit.try_take(now) {
            self.counters.count_icmp_rate_limited();
            return None;
        }
        match &invoking {
            IpPacket::V4(p) => icmp_error::write_v4(scratch, self.config.host_v4()?, p, error),
            IpPacket::V6(p) => icmp_error::write_v6(scratch, self.config.host_v6()?, p, error),
        }
    }
}
