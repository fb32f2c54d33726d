//! Per-switch packet counters: one plain `u64` per drop reason, per forward
//! destination kind, and for ICMP errors sent or suppressed.
//!
//! Contract: counting never allocates or panics (counters wrap on overflow,
//! which at 2^64 packets does not happen). [`DropReason::as_str`] names are
//! stable: they are metric label values.

use std::fmt;

/// Why the switch dropped a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// Not a well-formed IPv4/IPv6 packet (lengths, version, checksum,
    /// extension headers, truncated transport header).
    Malformed,
    /// Source or destination can never be forwarded (unspecified, loopback,
    /// a link-local source, multicast beyond the link, reserved,
    /// IPv4-mapped).
    Martian,
    /// For the link only (link-local unicast, link-scope multicast, the
    /// limited broadcast): every TUN's own kernel sends some (IPv6 router
    /// and neighbour solicitations, MLD reports); a router never forwards
    /// them, and they are no sign of trouble.
    LinkLocal,
    /// From a pod port the switch does not know.
    UnknownPort,
    /// From a peer the switch does not know.
    UnknownPeer,
    /// A pod sent from an address that is not its own.
    SpoofedPodSource,
    /// A peer sent from outside its allowed prefixes.
    SpoofedPeerSource,
    /// The host port sent from an address that is not a host address.
    SpoofedHostSource,
    /// No route to the destination.
    NoRoute,
    /// Inside this node's pod CIDR, but no pod has the address.
    NoPod,
    /// From a peer to another peer: nodes do not route transit traffic.
    PeerToPeer,
    /// TTL / hop limit would reach zero.
    TtlExceeded,
    /// Larger than the egress MTU (per segment for a super-packet) and not
    /// to be fragmented: IPv4 with DF, any IPv6 packet, any super-packet.
    PacketTooBig,
    /// A packet to the DNS VIP's UDP port 53 that gets no answer (not a
    /// query, fragmented, a bad length or checksum, ...:
    /// [`DnsCounters::dropped`](crate::dns::DnsCounters::dropped) says
    /// which).
    DnsQuery,
    /// To the DNS VIP on another port or protocol: answered ICMP port
    /// unreachable (unless an ICMP error, or rate-limited).
    DnsVipPort,
    /// To a Service without a ready endpoint (none anywhere): answered
    /// with a TCP RST or ICMP port unreachable (docs/services.md).
    ServiceNoEndpoints,
    /// To a Service address on a port or protocol it does not serve:
    /// answered as [`Self::ServiceNoEndpoints`].
    ServiceUnknownPort,
    /// Aimed at a Service but unable to start a connection there (TCP
    /// without SYN, a fragment, an ICMP error or echo, from a peer): never
    /// forwarded untranslated.
    ServiceInvalid,
    /// `internalTrafficPolicy: Local` and no endpoint on this node.
    ServiceNoLocalEndpoints,
    /// A reply from an endpoint its UDP flow was moved away from.
    ServiceStaleEndpoint,
    /// A hairpin connection without a hairpin address or a free port.
    ServiceHairpin,
    /// A packet of a translated flow that cannot be rewritten (IPv6
    /// extension headers before the transport header).
    ServiceUnrewritable,
    /// A new connection the conntrack table refused: full of established
    /// connections, or its source at its limit (the conntrack counters
    /// `table_full` and `source_limited` say which).
    ConntrackFull,
    /// A new connection whose reply tuple a live connection holds.
    ConntrackKeyTaken,
    /// A packet of a connection NetworkPolicy denies (egress of its
    /// source pod or ingress of its destination pod on this node).
    PolicyDenied,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 25] = [
        Self::Malformed,
        Self::Martian,
        Self::LinkLocal,
        Self::UnknownPort,
        Self::UnknownPeer,
        Self::SpoofedPodSource,
        Self::SpoofedPeerSource,
        Self::SpoofedHostSource,
        Self::NoRoute,
        Self::NoPod,
        Self::PeerToPeer,
        Self::TtlExceeded,
        Self::PacketTooBig,
        Self::DnsQuery,
        Self::DnsVipPort,
        Self::ServiceNoEndpoints,
        Self::ServiceUnknownPort,
        Self::ServiceInvalid,
        Self::ServiceNoLocalEndpoints,
        Self::ServiceStaleEndpoint,
        Self::ServiceHairpin,
        Self::ServiceUnrewritable,
        Self::ConntrackFull,
        Self::ConntrackKeyTaken,
        Self::PolicyDenied,
    ];

    /// The stable metric label for this reason.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Martian => "martian",
            Self::LinkLocal => "link_local",
            Self::UnknownPort => "unknown_port",
            Self::UnknownPeer => "unknown_peer",
            Self::SpoofedPodSource => "spoofed_pod_source",
            Self::SpoofedPeerSource => "spoofed_peer_source",
            Self::SpoofedHostSource => "spoofed_host_source",
            Self::NoRoute => "no_route",
            Self::NoPod => "no_pod",
            Self::PeerToPeer => "peer_to_peer",
            Self::TtlExceeded => "ttl_exceeded",
            Self::PacketTooBig => "packet_too_big",
            Self::DnsQuery => "dns_query",
            Self::DnsVipPort => "dns_vip_port",
            Self::ServiceNoEndpoints => "service_no_endpoints",
            Self::ServiceUnknownPort => "service_unknown_port",
            Self::ServiceInvalid => "service_invalid",
            Self::ServiceNoLocalEndpoints => "service_no_local_endpoints",
            Self::ServiceStaleEndpoint => "service_stale_endpoint",
            Self::ServiceHairpin => "service_hairpin",
            Self::ServiceUnrewritable => "service_unrewritable",
            Self::ConntrackFull => "conntrack_full",
            Self::ConntrackKeyTaken => "conntrack_key_taken",
            Self::PolicyDenied => "policy_denied",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The switch's counters. Read them with [`Switch::counters`](super::Switch::counters).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    drops: [u64; DropReason::ALL.len()],
    to_port: u64,
    to_host: u64,
    to_peer: u64,
    to_dns: u64,
    icmp_sent: u64,
    icmp_rate_limited: u64,
}

impl Counters {
    /// Packets dropped for `reason` (whether or not an ICMP error was sent).
    pub fn dropped(&self, reason: DropReason) -> u64 {
        // `index()` < `ALL.len()`, the array's length, for every reason.
        self.drops.get(reason.index()).copied().unwrap_or(0)
    }

    /// `(reason, count)` for every reason, zeros included.
    pub fn drops(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.iter().map(|r| (*r, self.dropped(*r)))
    }

    /// All drops, whatever the reason.
    pub fn total_dropped(&self) -> u64 {
        self.drops.iter().fold(0u64, |a, b| a.wrapping_add(*b))
    }

    /// Packets forwarded to pod ports.
    pub fn forwarded_to_port(&self) -> u64 {
        self.to_port
    }

    /// Packets forwarded to the host port.
    pub fn forwarded_to_host(&self) -> u64 {
        self.to_host
    }

    /// Packets forwarded to peers.
    pub fn forwarded_to_peer(&self) -> u64 {
        self.to_peer
    }

    /// Packets the DNS VIP took: queries answered, forwarded upstream or
    /// handed over for TCP ([`DnsCounters`](crate::dns::DnsCounters) has
    /// the detail).
    pub fn delivered_to_dns(&self) -> u64 {
        self.to_dns
    }

    /// ICMP errors handed back as [`Action::Reply`](super::Action::Reply).
    pub fn icmp_sent(&self) -> u64 {
        self.icmp_sent
    }

    /// ICMP errors not sent because the rate limit was reached.
    pub fn icmp_rate_limited(&self) -> u64 {
        self.icmp_rate_limited
    }

    pub(crate) fn count_drop(&mut self, reason: DropReason) {
        if let Some(c) = self.drops.get_mut(reason.index()) {
            *c = c.wrapping_add(1);
        }
    }

    pub(crate) fn count_to_port(&mut self) {
        self.to_port = self.to_port.wrapping_add(1);
    }

    pub(crate) fn count_to_host(&mut self) {
        self.to_host = self.to_host.wrapping_add(1);
    }

    pub(crate) fn count_to_peer(&mut self) {
        self.to_peer = self.to_peer.wrapping_add(1);
    }

    pub(crate) fn count_to_dns(&mut self) {
        self.to_dns = self.to_dns.wrapping_add(1);
    }

    pub(crate) fn count_icmp_sent(&mut self) {
        self.icmp_sent = self.icmp_sent.wrapping_add(1);
    }

    pub(crate) fn count_icmp_rate_limited(&mut self) {
        self.icmp_rate_limited = self.icmp_rate_limited.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_index_order_and_names_are_unique_snake_case() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert!(r
                .as_str()
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_'));
        }
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::ALL.len());
    }

    #[test]
    fn stable_names() {
        // These are metric labels: changing one breaks dashboards.
        assert_eq!(DropReason::Malformed.as_str(), "malformed");
        assert_eq!(DropReason::SpoofedPodSource.as_str(), "spoofed_pod_source");
        assert_eq!(
            DropReason::SpoofedPeerSource.as_str(),
            "spoofed_peer_source"
        );
        assert_eq!(DropReason::NoRoute.as_str(), "no_route");
        assert_eq!(DropReason::PeerToPeer.as_str(), "peer_to_peer");
        assert_eq!(DropReason::TtlExceeded.as_str(), "ttl_exceeded");
        assert_eq!(DropReason::PacketTooBig.as_str(), "packet_too_big");
        assert_eq!(DropReason::DnsQuery.as_str(), "dns_query");
        assert_eq!(DropReason::DnsVipPort.as_str(), "dns_vip_port");
    }

    #[test]
    fn counts() {
        let mut c = Counters::default();
        c.count_drop(DropReason::NoRoute);
        c.count_drop(DropReason::NoRoute);
        c.count_drop(DropReason::Martian);
        c.count_to_peer();
        assert_eq!(c.dropped(DropReason::NoRoute), 2);
        assert_eq!(c.total_dropped(), 3);
        assert_eq!(c.forwarded_to_peer(), 1);
        assert_eq!(c.drops().filter(|(_, n)| *n > 0).count(), 2);
    }
}
