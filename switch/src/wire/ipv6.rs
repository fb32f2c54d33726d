//! A bounds-checked IPv6 packet view (RFC 8200).
//!
//! Contract: [`Ipv6Packet::new_checked`] verifies the version and that the
//! fixed header plus the payload length fit in the buffer;
//! [`Ipv6Packet::new_fitted`] verifies the version and sets the payload
//! length to fill the buffer. Accessors and setters index only within
//! that, so none can panic. Extension headers are walked (bounded) by
//! [`Ipv6Packet::upper_layer`], which reports a malformed chain as an
//! error. Jumbograms (payload length 0 with a Jumbo option) are not
//! supported: their transport parse fails and they count as malformed.

use std::net::Ipv6Addr;

use super::checksum;
use super::transport::{self, Transport};
use super::ParseError;

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = 40;

/// The minimum link MTU of IPv6 (RFC 8200 5).
pub const MIN_MTU: usize = 1280;

/// At most this many extension headers are walked before giving up.
const MAX_EXTENSION_HEADERS: usize = 8;

mod field {
    pub(super) const PAYLOAD_LEN: usize = 4;
    pub(super) const NEXT_HEADER: usize = 6;
    pub(super) const HOP_LIMIT: usize = 7;
    pub(super) const SRC: usize = 8;
    pub(super) const DST: usize = 24;
}

/// Next-header values of the extension headers this view walks.
mod next {
    pub(super) const HOP_BY_HOP: u8 = 0;
    pub(super) const ROUTING: u8 = 43;
    pub(super) const FRAGMENT: u8 = 44;
    pub(super) const AUTH: u8 = 51;
    pub(super) const DEST_OPTS: u8 = 60;
}

/// A checked view of an IPv6 packet in `T`.
#[derive(Debug, Clone)]
pub struct Ipv6Packet<T> {
    buffer: T,
}

/// Checks the fixed header at the start of `b`.
fn check_fixed(b: &[u8]) -> Result<(), ParseError> {
    let first = *b.first().ok_or(ParseError::Truncated)?;
    if b.len() < HEADER_LEN {
        return Err(ParseError::Truncated);
    }
    if first >> 4 != 6 {
        return Err(ParseError::BadVersion);
    }
    Ok(())
}

/// The destination address of the fixed header at the start of `b`,
/// without any other check: to tell where refused bytes were going.
pub(crate) fn peek_dst(b: &[u8]) -> Option<Ipv6Addr> {
    let a: [u8; 16] = b.get(field::DST..field::DST + 16)?.try_into().ok()?;
    Some(Ipv6Addr::from(a))
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Checks untrusted bytes and wraps them.
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let b = buffer.as_ref();
        check_fixed(b)?;
        let payload_len = usize::from(super::be16_at(b, field::PAYLOAD_LEN).unwrap_or(0));
        if HEADER_LEN + payload_len > b.len() {
            return Err(ParseError::BadTotalLength);
        }
        Ok(Self { buffer })
    }
}

// Every index below is within `HEADER_LEN + payload_len() <= buffer
// length`, which both constructors establish and no setter breaks.
#[allow(clippy::indexing_slicing)]
impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    fn addr(&self, at: usize) -> Ipv6Addr {
        let mut o = [0u8; 16];
        o.copy_from_slice(&self.bytes()[at..at + 16]);
        Ipv6Addr::from(o)
    }

    /// Payload length field.
    pub fn payload_len(&self) -> usize {
        let b = self.bytes();
        usize::from(u16::from_be_bytes([
            b[field::PAYLOAD_LEN],
            b[field::PAYLOAD_LEN + 1],
        ]))
    }

    /// The traffic class (DSCP and ECN).
    pub fn traffic_class(&self) -> u8 {
        let b = self.bytes();
        (b[0] << 4) | (b[1] >> 4)
    }

    /// The flow label.
    pub fn flow_label(&self) -> u32 {
        let b = self.bytes();
        u32::from_be_bytes([0, b[1] & 0x0f, b[2], b[3]])
    }

    /// Next header of the fixed header.
    pub fn next_header(&self) -> u8 {
        self.bytes()[field::NEXT_HEADER]
    }

    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.bytes()[field::HOP_LIMIT]
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv6Addr {
        self.addr(field::SRC)
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        self.addr(field::DST)
    }

    /// The source and destination address bytes, as the pseudo-header
    /// takes them.
    pub(crate) fn addr_bytes(&self) -> (&[u8], &[u8]) {
        let b = self.bytes();
        (
            &b[field::SRC..field::SRC + 16],
            &b[field::DST..field::DST + 16],
        )
    }

    /// The pseudo-header sum for `len` bytes of upper-layer protocol
    /// `proto` (RFC 8200 8.1).
    pub fn pseudo_header(&self, proto: u8, len: usize) -> u64 {
        let (src, dst) = self.addr_bytes();
        checksum::pseudo(src, dst, proto, len)
    }

    /// Everything after the fixed header (extension headers included), up
    /// to the payload length.
    pub fn payload(&self) -> &[u8] {
        &self.bytes()[HEADER_LEN..HEADER_LEN + self.payload_len()]
    }

    /// Header and payload, without link padding.
    pub fn packet_bytes(&self) -> &[u8] {
        &self.bytes()[..HEADER_LEN + self.payload_len()]
    }
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Header plus payload length.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + self.payload_len()
    }

    /// Walks the extension headers (hop-by-hop, routing, fragment,
    /// destination options, AH; at most 8) and returns the upper-layer
    /// protocol number and the offset of its header within
    /// [`Self::payload`], or `None` for a non-first fragment.
    pub fn upper_layer(&self) -> Result<Option<(u8, usize)>, ParseError> {
        let payload = self.payload();
        let mut proto = self.next_header();
        let mut offset = 0usize;
        for _ in 0..MAX_EXTENSION_HEADERS {
            let (next, len) = match proto {
                next::HOP_BY_HOP | next::ROUTING | next::DEST_OPTS => match payload.get(offset..) {
                    Some([next, len, ..]) => (*next, (usize::from(*len) + 1) * 8),
                    _ => return Err(ParseError::BadExtensionHeader),
                },
                next::AUTH => match payload.get(offset..) {
                    Some([next, len, ..]) => (*next, (usize::from(*len) + 2) * 4),
                    _ => return Err(ParseError::BadExtensionHeader),
                },
                next::FRAGMENT => match payload.get(offset..) {
                    Some([next, _, hi, lo, _, _, _, _, ..]) => {
                        if u16::from_be_bytes([*hi, *lo]) & 0xfff8 != 0 {
                            return Ok(None);
                        }
                        (*next, 8)
                    }
                    _ => return Err(ParseError::BadExtensionHeader),
                },
                _ => return Ok(Some((proto, offset))),
            };
            if offset + len > payload.len() {
                return Err(ParseError::BadExtensionHeader);
            }
            proto = next;
            offset += len;
        }
        Err(ParseError::BadExtensionHeader)
    }

    /// The transport summary; [`Transport::Fragment`] for a non-first
    /// fragment.
    pub fn transport(&self) -> Result<Transport, ParseError> {
        match self.upper_layer()? {
            None => Ok(Transport::Fragment),
            Some((proto, offset)) => {
                let l4 = self.payload().get(offset..).unwrap_or_default();
                transport::parse(proto, l4, true)
            }
        }
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Checks the fixed header at the start of `buffer` and sets the
    /// payload length so that the packet fills the buffer exactly: for a
    /// header copied in front of a payload (a segment, a merged packet).
    pub fn new_fitted(mut buffer: T) -> Result<Self, ParseError> {
        let b = buffer.as_mut();
        check_fixed(b)?;
        let len = b.len() - HEADER_LEN;
        let len = u16::try_from(len).map_err(|_| ParseError::BadTotalLength)?;
        let mut p = Self { buffer };
        p.write(field::PAYLOAD_LEN, &len.to_be_bytes());
        Ok(p)
    }
}

// As above: every index is within the fixed header, which the
// constructors checked lies within the buffer.
#[allow(clippy::indexing_slicing)]
impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    fn write(&mut self, at: usize, new: &[u8]) {
        self.buffer.as_mut()[at..at + new.len()].copy_from_slice(new);
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, addr: Ipv6Addr) {
        self.write(field::SRC, &addr.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, addr: Ipv6Addr) {
        self.write(field::DST, &addr.octets());
    }

    /// Sets the next header of the fixed header.
    pub fn set_next_header(&mut self, next_header: u8) {
        self.write(field::NEXT_HEADER, &[next_header]);
    }

    /// Sets the hop limit.
    pub fn set_hop_limit(&mut self, hop_limit: u8) {
        self.write(field::HOP_LIMIT, &[hop_limit]);
    }

    /// Decrements the hop limit (saturating at 0). Returns the new value.
    pub fn decrement_hop_limit(&mut self) -> u8 {
        let h = self.hop_limit().saturating_sub(1);
        self.set_hop_limit(h);
        h
    }

    /// Sets the payload length to `len`, which must fit the buffer (else
    /// nothing changes).
    pub fn set_payload_len(&mut self, len: u16) -> Result<(), ParseError> {
        if HEADER_LEN + usize::from(len) > self.bytes().len() {
            return Err(ParseError::BadTotalLength);
        }
        self.write(field::PAYLOAD_LEN, &len.to_be_bytes());
        Ok(())
    }

    /// Everything after the fixed header, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + self.payload_len();
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::pkt;

    #[test]
    fn parses_valid_tcp() {
        let b = pkt("fd00:244:1::2", "fd00:244:2::3")
            .ttl(17)
            .tcp(443, 50000)
            .payload(b"x")
            .build();
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.payload_len(), 20 + 1);
        assert_eq!(p.next_header(), 6);
        assert_eq!(p.hop_limit(), 17);
        assert_eq!(p.src_addr(), "fd00:244:1::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.dst_addr(), "fd00:244:2::3".parse::<Ipv6Addr>().unwrap());
        assert_eq!(
            p.transport().unwrap(),
            Transport::Tcp {
                src_port: 443,
                dst_port: 50000
            }
        );
    }

    #[test]
    fn truncated_and_wrong_version() {
        let b = pkt("fd00::1", "fd00::2").udp(1, 2).build();
        for len in 0..HEADER_LEN {
            assert_eq!(
                Ipv6Packet::new_checked(&b[..len]).unwrap_err(),
                ParseError::Truncated
            );
        }
        let mut b = b;
        b[0] = 0x40;
        assert_eq!(
            Ipv6Packet::new_checked(&b[..]).unwrap_err(),
            ParseError::BadVersion
        );
    }

    #[test]
    fn payload_length_vs_buffer() {
        let b = pkt("fd00::1", "fd00::2")
            .udp(1, 2)
            .payload(&[1, 2, 3])
            .build();
        assert_eq!(
            Ipv6Packet::new_checked(&b[..b.len() - 1]).unwrap_err(),
            ParseError::BadTotalLength
        );
        let mut padded = b.clone();
        padded.extend_from_slice(&[0; 4]);
        let p = Ipv6Packet::new_checked(&padded[..]).unwrap();
        assert_eq!(p.packet_bytes(), &b[..]);
    }

    #[test]
    fn walks_extension_headers() {
        // Hop-by-hop (8 bytes, PadN) then a first fragment, then UDP.
        let b = pkt("fd00::1", "fd00::2")
            .ext_hop_by_hop()
            .ext_fragment(0, true)
            .udp(7, 9)
            .build();
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.next_header(), 0);
        assert_eq!(p.upper_layer().unwrap(), Some((17, 16)));
        assert_eq!(
            p.transport().unwrap(),
            Transport::Udp {
                src_port: 7,
                dst_port: 9
            }
        );
        // A non-first fragment has no transport header.
        let b = pkt("fd00::1", "fd00::2")
            .ext_fragment(3, false)
            .udp(7, 9)
            .build();
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.transport().unwrap(), Transport::Fragment);
    }

    #[test]
    fn bad_extension_chains() {
        // Hop-by-hop claiming 16 bytes with only 8 present.
        let mut b = pkt("fd00::1", "fd00::2").ext_hop_by_hop().raw(59).build();
        b[41] = 1;
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.transport().unwrap_err(), ParseError::BadExtensionHeader);
        // Nine chained destination-options headers.
        let mut f = pkt("fd00::1", "fd00::2");
        for _ in 0..9 {
            f = f.ext_dest_opts();
        }
        let b = f.udp(1, 2).build();
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.transport().unwrap_err(), ParseError::BadExtensionHeader);
        // Next header says hop-by-hop but the payload is empty.
        let b = pkt("fd00::1", "fd00::2").raw(0).build();
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.transport().unwrap_err(), ParseError::BadExtensionHeader);
    }

    #[test]
    fn no_next_header_is_fine() {
        let b = pkt("fd00::1", "fd00::2").raw(59).build();
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.transport().unwrap(), Transport::Other(59));
    }

    #[test]
    fn decrement_hop_limit_saturates() {
        let mut b = pkt("fd00::1", "fd00::2").ttl(0).udp(1, 2).build();
        assert_eq!(
            Ipv6Packet::new_checked(&mut b[..])
                .unwrap()
                .decrement_hop_limit(),
            0
        );
    }
}
