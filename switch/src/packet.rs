//! A bounds-checked view of an IP packet of either family, and the parse
//! errors shared by all views.
//!
//! Contract: [`IpPacket::new_checked`] dispatches on the version nibble and
//! runs the family's full check; after it succeeds, no accessor can panic (as
//! long as the buffer's `AsRef` keeps returning the same bytes).

use std::net::IpAddr;

use super::ipv4::Ipv4Packet;
use super::ipv6::Ipv6Packet;
use super::transport::Transport;

/// Why bytes are not an acceptable IP packet. All of them count as
/// [`DropReason::Malformed`](super::DropReason::Malformed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The buffer ends before a fixed-size header does.
    #[error("truncated header")]
    Truncated,
    /// The version nibble is not the one expected (4 or 6).
    #[error("wrong IP version")]
    BadVersion,
    /// The IPv4 IHL is below 5 or points past the buffer.
    #[error("bad IPv4 header length")]
    BadHeaderLength,
    /// The IPv4 total length / IPv6 payload length disagrees with the buffer.
    #[error("bad total length")]
    BadTotalLength,
    /// The IPv4 header checksum is wrong.
    #[error("bad IPv4 header checksum")]
    BadChecksum,
    /// An IPv6 extension header runs past the packet or there are too many.
    #[error("bad IPv6 extension header chain")]
    BadExtensionHeader,
    /// The TCP/UDP/ICMP header of a first (or only) fragment is cut short.
    #[error("truncated transport header")]
    TruncatedTransport,
}

/// An IPv4 or IPv6 packet view.
#[derive(Debug, Clone)]
pub enum IpPacket<T> {
    /// An IPv4 packet.
    V4(Ipv4Packet<T>),
    /// An IPv6 packet.
    V6(Ipv6Packet<T>),
}

impl<T: AsRef<[u8]>> IpPacket<T> {
    /// Checks `buffer` (version nibble, header and total lengths, IPv4 header
    /// checksum) and wraps it. Bytes past the IP total length are allowed
    /// (link padding) and ignored by every accessor.
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        match buffer.as_ref().first().map(|b| b >> 4) {
            None => Err(ParseError::Truncated),
            Some(4) => Ipv4Packet::new_checked(buffer).map(Self::V4),
            Some(6) => Ipv6Packet::new_checked(buffer).map(Self::V6),
            Some(_) => Err(ParseError::BadVersion),
        }
    }

    /// Source address.
    pub fn src_addr(&self) -> IpAddr {
        match self {
            Self::V4(p) => p.src_addr().into(),
            Self::V6(p) => p.src_addr().into(),
        }
    }

    /// Destination address.
    pub fn dst_addr(&self) -> IpAddr {
        match self {
            Self::V4(p) => p.dst_addr().into(),
            Self::V6(p) => p.dst_addr().into(),
        }
    }

    /// IPv4 TTL or IPv6 hop limit.
    pub fn hop_limit(&self) -> u8 {
        match self {
            Self::V4(p) => p.ttl(),
            Self::V6(p) => p.hop_limit(),
        }
    }

    /// The packet's bytes up to its IP total length (no link padding).
    pub fn packet_bytes(&self) -> &[u8] {
        match self {
            Self::V4(p) => p.packet_bytes(),
            Self::V6(p) => p.packet_bytes(),
        }
    }

    /// The transport summary (ports, ICMP type) for conntrack and for the
    /// "never answer an ICMP error with an ICMP error" rule.
    pub fn transport(&self) -> Result<Transport, ParseError> {
        match self {
            Self::V4(p) => p.transport(),
            Self::V6(p) => p.transport(),
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IpPacket<T> {
    /// Decrements the TTL / hop limit (saturating at 0), keeping the IPv4
    /// header checksum valid. Returns the new value.
    pub fn decrement_hop_limit(&mut self) -> u8 {
        match self {
            Self::V4(p) => p.decrement_ttl(),
            Self::V6(p) => p.decrement_hop_limit(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::pkt;
    use super::*;

    #[test]
    fn dispatches_on_version() {
        let v4 = pkt("10.0.0.1", "10.0.0.2").udp(1, 2).build();
        let v6 = pkt("fd00::1", "fd00::2").udp(1, 2).build();
        assert!(matches!(
            IpPacket::new_checked(&v4[..]),
            Ok(IpPacket::V4(_))
        ));
        assert!(matches!(
            IpPacket::new_checked(&v6[..]),
            Ok(IpPacket::V6(_))
        ));
        let p = IpPacket::new_checked(&v6[..]).unwrap();
        assert_eq!(p.src_addr(), "fd00::1".parse::<IpAddr>().unwrap());
        assert_eq!(p.dst_addr(), "fd00::2".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn rejects_empty_and_other_versions() {
        assert_eq!(
            IpPacket::new_checked(&[][..]).unwrap_err(),
            ParseError::Truncated
        );
        for version in [0u8, 1, 5, 7, 15] {
            let mut b = pkt("10.0.0.1", "10.0.0.2").udp(1, 2).build();
            b[0] = (version << 4) | (b[0] & 0x0f);
            assert_eq!(
                IpPacket::new_checked(&b[..]).unwrap_err(),
                ParseError::BadVersion
            );
        }
    }

    #[test]
    fn decrement_hop_limit_both_families() {
        for (s, d) in [("10.0.0.1", "10.0.0.2"), ("fd00::1", "fd00::2")] {
            let mut b = pkt(s, d).ttl(9).tcp(1, 2).build();
            let mut p = IpPacket::new_checked(&mut b[..]).unwrap();
            assert_eq!(p.decrement_hop_limit(), 8);
            assert_eq!(IpPacket::new_checked(&b[..]).unwrap().hop_limit(), 8);
        }
    }
}
