//! The one wire layer: bounds-checked views of the headers weft's packet
//! path reads and writes, after smoltcp's `wire` module, and the one
//! Internet checksum they all use.
//!
//! Contract: a view wraps a buffer (`T: AsRef<[u8]>`, plus `AsMut` to
//! write) and is made only by a checked constructor (`new_checked` for
//! untrusted bytes; `new_fitted` where a copied header is being made into
//! a packet of the buffer's length). Whatever the constructor checked is
//! what every accessor and setter relies on, and no setter can undo it, so
//! none of them can panic on any input. Views never allocate, read a clock
//! or do IO. A view's setters keep its own header checksum (IPv4) valid;
//! transport checksums are updated by whoever knows whether they are full
//! or partial ([`FlowPacket`]) or filled from scratch.
//!
//! Files: `checksum` (RFC 1071 sum, RFC 1624 update, pseudo-headers),
//! `ipv4`, `ipv6`, `ip` (either family), `tcp`, `udp`, `icmp` (ICMP and
//! ICMPv6), `quote` (the packet an ICMP error quotes), `transport` (the
//! summary the switch decides on), `flow` (IP + TCP/UDP with its checksum
//! state: the offloads' and NAT's view) and `vnet` (the virtio-net header
//! of a TUN with offloads).

pub mod checksum;
mod flow;
mod icmp;
mod ip;
mod ipv4;
mod ipv6;
mod quote;
mod tcp;
mod transport;
mod udp;
pub mod vnet;

pub use flow::{FlowPacket, L4Checksum, L4Proto};
pub use icmp::{IcmpPacket, HEADER_LEN as ICMP_HEADER_LEN};
pub use ip::{FamilyMismatch, IpPacket};
pub use ipv4::{Ipv4Packet, HEADER_LEN as IPV4_HEADER_LEN};
pub use ipv6::{Ipv6Packet, HEADER_LEN as IPV6_HEADER_LEN, MIN_MTU as IPV6_MIN_MTU};
pub use quote::Quoted;
pub use tcp::{flags as tcp_flags, TcpPacket, HEADER_LEN as TCP_HEADER_LEN};
pub use transport::{proto, Transport};
pub use udp::{UdpPacket, HEADER_LEN as UDP_HEADER_LEN};
pub use vnet::{VnetHdr, VNET_HDR_LEN};

/// Why bytes are not an acceptable packet (or not the kind a view takes).
/// The switch counts all of them as
/// [`DropReason::Malformed`](crate::DropReason::Malformed).
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
    /// An IPv4 fragment where a whole transport packet was needed.
    #[error("an IPv4 fragment")]
    Fragmented,
    /// Neither TCP nor UDP right after the IP header (another protocol, or
    /// IPv6 extension headers) where a [`FlowPacket`] was needed.
    #[error("not TCP or UDP right after the IP header")]
    NotTcpOrUdp,
}

/// The big-endian 16-bit word at `at`, if it is within `b`.
pub(crate) fn be16_at(b: &[u8], at: usize) -> Option<u16> {
    let w: [u8; 2] = b.get(at..at.checked_add(2)?)?.try_into().ok()?;
    Some(u16::from_be_bytes(w))
}
