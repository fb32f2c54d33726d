//! A bounds-checked view of an IP packet of either family.
//!
//! Contract: [`IpPacket::new_checked`] dispatches on the version nibble and
//! runs the family's full check; after it succeeds, no accessor can panic
//! (as long as the buffer's `AsRef` keeps returning the same bytes).

use std::net::IpAddr;

use super::ipv4::Ipv4Packet;
use super::ipv6::{self, Ipv6Packet};
use super::transport::Transport;
use super::ParseError;

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

    /// The destination address of bytes that may not pass
    /// [`Self::new_checked`], read from the fixed header of the family
    /// the version nibble names (to count refused packets by where they
    /// were going); `None` if even that is not there.
    pub fn peek_dst_addr(b: &[u8]) -> Option<IpAddr> {
        match b.first()? >> 4 {
            4 => super::ipv4::peek_dst(b).map(IpAddr::V4),
            6 => ipv6::peek_dst(b).map(IpAddr::V6),
            _ => None,
        }
    }

    /// Whether this is IPv6.
    pub fn is_v6(&self) -> bool {
        matches!(self, Self::V6(_))
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

    /// The IP header length: IPv4's with options, IPv6's fixed 40 bytes
    /// (extension headers count as payload).
    pub fn header_len(&self) -> usize {
        match self {
            Self::V4(p) => p.header_len(),
            Self::V6(_) => ipv6::HEADER_LEN,
        }
    }

    /// The packet's length by its IP header.
    pub fn total_len(&self) -> usize {
        match self {
            Self::V4(p) => p.total_len(),
            Self::V6(p) => p.total_len(),
        }
    }

    /// The bytes after the IP header, up to the IP length.
    pub fn payload(&self) -> &[u8] {
        match self {
            Self::V4(p) => p.payload(),
            Self::V6(p) => p.payload(),
        }
    }

    /// The packet's bytes up to its IP total length (no link padding).
    pub fn packet_bytes(&self) -> &[u8] {
        match self {
            Self::V4(p) => p.packet_bytes(),
            Self::V6(p) => p.packet_bytes(),
        }
    }

    /// The source and destination address bytes (4 or 16 each).
    pub(crate) fn addr_bytes(&self) -> (&[u8], &[u8]) {
        match self {
            Self::V4(p) => p.addr_bytes(),
            Self::V6(p) => p.addr_bytes(),
        }
    }

    /// The pseudo-header sum for `len` bytes of upper-layer protocol
    /// `proto`.
    pub fn pseudo_header(&self, proto: u8, len: usize) -> u64 {
        match self {
            Self::V4(p) => p.pseudo_header(proto, len),
            Self::V6(p) => p.pseudo_header(proto, len),
        }
    }

    /// The upper-layer protocol and its bytes (after any IPv6 extension
    /// headers, up to the IP length); `None` for a non-first fragment.
    pub fn upper_layer(&self) -> Result<Option<(u8, &[u8])>, ParseError> {
        match self {
            Self::V4(p) if p.frag_offset() != 0 => Ok(None),
            Self::V4(p) => Ok(Some((p.protocol(), p.payload()))),
            Self::V6(p) => Ok(p
                .upper_layer()?
                .map(|(proto, at)| (proto, p.payload().get(at..).unwrap_or_default()))),
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

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        match self {
            Self::V4(p) => p.into_inner(),
            Self::V6(p) => p.into_inner(),
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IpPacket<T> {
    /// [`Ipv4Packet::new_fitted`] or [`Ipv6Packet::new_fitted`], by the
    /// version nibble.
    pub fn new_fitted(buffer: T) -> Result<Self, ParseError> {
        match buffer.as_ref().first().map(|b| b >> 4) {
            None => Err(ParseError::Truncated),
            Some(4) => Ipv4Packet::new_fitted(buffer).map(Self::V4),
            Some(6) => Ipv6Packet::new_fitted(buffer).map(Self::V6),
            Some(_) => Err(ParseError::BadVersion),
        }
    }

    /// Decrements the TTL / hop limit (saturating at 0), keeping the IPv4
    /// header checksum valid. Returns the new value.
    pub fn decrement_hop_limit(&mut self) -> u8 {
        match self {
            Self::V4(p) => p.decrement_ttl(),
            Self::V6(p) => p.decrement_hop_limit(),
        }
    }

    /// Sets the source address (IPv4: header checksum updated); an address
    /// of the other family is refused and nothing changes.
    pub fn set_src_addr(&mut self, addr: IpAddr) -> Result<(), FamilyMismatch> {
        match (self, addr) {
            (Self::V4(p), IpAddr::V4(a)) => p.set_src_addr(a),
            (Self::V6(p), IpAddr::V6(a)) => p.set_src_addr(a),
            _ => return Err(FamilyMismatch),
        }
        Ok(())
    }

    /// Sets the destination address, as [`Self::set_src_addr`].
    pub fn set_dst_addr(&mut self, addr: IpAddr) -> Result<(), FamilyMismatch> {
        match (self, addr) {
            (Self::V4(p), IpAddr::V4(a)) => p.set_dst_addr(a),
            (Self::V6(p), IpAddr::V6(a)) => p.set_dst_addr(a),
            _ => return Err(FamilyMismatch),
        }
        Ok(())
    }

    /// The bytes after the IP header, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        match self {
            Self::V4(p) => p.payload_mut(),
            Self::V6(p) => p.payload_mut(),
        }
    }
}

/// An address of one family given to a packet of the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the address is not of the packet's IP family")]
pub struct FamilyMismatch;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::pkt;

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
