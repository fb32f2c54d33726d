//! The engine's own counters, on top of the switch's: drops that happen in
//! the IO shell (no endpoint, full queues, WireGuard refusals) and what was
//! actually written out.
//!
//! Contract: plain `u64`s indexed by small enums, bumped on the packet path
//! without allocation; the names returned by `as_str` are stable metric
//! label values, distinct from the switch's
//! [`DropReason`](weft_switch::DropReason) names.

use crate::wg::WgDrop;
use weft_switch::offload::SegmentError;

/// Why the engine (not the switch) dropped a packet or datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum EngineDrop {
    /// Routed to a peer that has no endpoint yet.
    PeerNoEndpoint,
    /// Routed to a peer without a session whose node is NotReady (no
    /// handshake is started toward it).
    PeerNotReady,
    /// A handshake initiation from a static key that is not a peer.
    UnknownPeerKey,
    /// A message whose receiver index belongs to no current peer.
    UnknownIndex,
    /// A datagram longer than the receive buffer.
    UdpTruncated,
    /// A datagram without a usable source address.
    UdpNoSource,
    /// The UDP socket's send buffer was full.
    UdpSendFull,
    /// `sendmmsg` refused the datagram (unreachable, too big, ...).
    UdpSendError,
    /// In a UDP GSO message the kernel refused as malformed (its datagrams
    /// over the path MTU: a pod's crafted super-packet).
    UdpGsoInvalid,
    /// A TUN's queue was full.
    TunQueueFull,
    /// Writing to a TUN failed (the device is down or gone).
    TunWriteError,
}

impl EngineDrop {
    /// Every reason, in counter order.
    pub(crate) const ALL: [EngineDrop; 11] = [
        Self::PeerNoEndpoint,
        Self::PeerNotReady,
        Self::UnknownPeerKey,
        Self::UnknownIndex,
        Self::UdpTruncated,
        Self::UdpNoSource,
        Self::UdpSendFull,
        Self::UdpSendError,
        Self::UdpGsoInvalid,
        Self::TunQueueFull,
        Self::TunWriteError,
    ];

    /// The stable metric label.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::PeerNoEndpoint => "peer_no_endpoint",
            Self::PeerNotReady => "peer_not_ready",
            Self::UnknownPeerKey => "wg_unknown_peer",
            Self::UnknownIndex => "wg_unknown_index",
            Self::UdpTruncated => "udp_truncated",
            Self::UdpNoSource => "udp_no_source",
            Self::UdpSendFull => "udp_send_full",
            Self::UdpSendError => "udp_send_error",
            Self::UdpGsoInvalid => "udp_gso_invalid",
            Self::TunQueueFull => "tun_queue_full",
            Self::TunWriteError => "tun_write_error",
        }
    }
}

/// The stable metric label of a packet from a TUN whose virtio-net header
/// segmenting refused, by cause (a pod's crafted offload metadata shows
/// here, one reason per cause).
pub(crate) const fn offload_drop_name(cause: SegmentError) -> &'static str {
    match cause {
        SegmentError::Malformed => "tun_bad_offload",
        SegmentError::Unsupported => "tun_gso_unsupported",
        SegmentError::GsoSizeTooSmall => "tun_gso_size_too_small",
        SegmentError::SegmentAboveMtu => "tun_gso_above_mtu",
        SegmentError::TooManySegments => "tun_gso_too_many_segments",
        SegmentError::BadChecksumOffsets => "tun_bad_csum_offsets",
    }
}

/// The engine's counters.
#[derive(Debug, Clone, Default)]
pub(crate) struct EngineCounters {
    drops: [u64; EngineDrop::ALL.len()],
    wg: [u64; WgDrop::ALL.len()],
    /// Indexed by `SegmentError as usize` (the order of `SegmentError::ALL`).
    offload: [u64; SegmentError::ALL.len()],
    /// Packets written to pod TUNs.
    pub(crate) to_ports: u64,
    /// Packets written to the host TUN.
    pub(crate) to_host: u64,
    /// Packets encrypted and handed to the UDP socket for a peer.
    pub(crate) to_peers: u64,
    /// Cookie replies sent while under load.
    pub(crate) cookies_sent: u64,
    /// TSO/USO super-packets read from TUNs.
    pub(crate) super_read: u64,
    /// Super-packets written to TUNs.
    pub(crate) super_written: u64,
    /// UDP GRO messages of more than one datagram.
    pub(crate) gro_messages: u64,
}

impl EngineCounters {
    pub(crate) fn drop(&mut self, reason: EngineDrop) {
        let c = &mut self.drops[reason as usize];
        *c = c.wrapping_add(1);
    }

    pub(crate) fn drop_n(&mut self, reason: EngineDrop, n: u64) {
        let c = &mut self.drops[reason as usize];
        *c = c.wrapping_add(n);
    }

    pub(crate) fn wg_drop(&mut self, reason: WgDrop) {
        let c = &mut self.wg[reason.index()];
        *c = c.wrapping_add(1);
    }

    /// A packet from a TUN refused by segmenting, for `cause`.
    pub(crate) fn offload_drop(&mut self, cause: SegmentError) {
        if let Some(c) = self.offload.get_mut(cause as usize) {
            *c = c.wrapping_add(1);
        }
    }

    pub(crate) fn dropped(&self, reason: EngineDrop) -> u64 {
        self.drops[reason as usize]
    }

    /// `(name, count)` for every engine and WireGuard reason, zeros included.
    pub(crate) fn named(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        EngineDrop::ALL
            .iter()
            .map(|r| (r.as_str(), self.dropped(*r)))
            .chain(WgDrop::ALL.iter().map(|r| (r.as_str(), self.wg[r.index()])))
            .chain(SegmentError::ALL.iter().map(|c| {
                (
                    offload_drop_name(*c),
                    self.offload.get(*c as usize).copied().unwrap_or(0),
                )
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_switch::DropReason;

    #[test]
    fn names_are_unique_across_engine_wireguard_and_switch() {
        let counters = EngineCounters::default();
        let mut names: Vec<&str> = counters.named().map(|(n, _)| n).collect();
        names.extend(DropReason::ALL.iter().map(|r| r.as_str()));
        let total = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), total);
        for (i, r) in EngineDrop::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        for (i, c) in SegmentError::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i, "offload counters are indexed by cause");
        }
    }

    #[test]
    fn every_name_is_documented_for_operators() {
        let docs = include_str!("../../../docs/agent.md");
        let section = docs
            .split("## Drop reasons")
            .nth(1)
            .expect("docs/agent.md has a \"Drop reasons\" section");
        let counters = EngineCounters::default();
        let names = counters
            .named()
            .map(|(n, _)| n)
            .chain(DropReason::ALL.iter().map(|r| r.as_str()));
        for name in names {
            assert!(
                section.contains(&format!("`{name}`")),
                "drop reason {name} is missing from docs/agent.md, \"Drop reasons\""
            );
        }
    }

    #[test]
    fn counts() {
        let mut c = EngineCounters::default();
        c.drop(EngineDrop::PeerNoEndpoint);
        c.drop_n(EngineDrop::UdpSendFull, 3);
        c.wg_drop(WgDrop::BadMac);
        c.offload_drop(SegmentError::GsoSizeTooSmall);
        c.offload_drop(SegmentError::GsoSizeTooSmall);
        c.offload_drop(SegmentError::SegmentAboveMtu);
        let named: Vec<_> = c.named().filter(|(_, n)| *n > 0).collect();
        assert_eq!(
            named,
            vec![
                ("peer_no_endpoint", 1),
                ("udp_send_full", 3),
                ("wg_bad_mac", 1),
                ("tun_gso_size_too_small", 2),
                ("tun_gso_above_mtu", 1),
            ]
        );
    }
}
