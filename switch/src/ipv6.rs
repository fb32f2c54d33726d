//! A bounds-checked IPv6 packet view (RFC 8200).
//!
//! Contract: [`Ipv6Packet::new_checked`] verifies the version and that the
//! fixed header plus the payload length fit in the buffer; accessors index only
//! within that. Extension headers are walked (bounded) by
//! [`Ipv6Packet::transport`], which reports a malformed chain as an error.
//! Jumbograms (payload length 0 with a Jumbo option) are not supported: their
//! transport parse fails and they count as malformed.

use std::net::Ipv6Addr;

use super::packet::ParseError;
use super::transport::{self, Transport};

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = 40;

/// At most this many extension headers are walked before giving up.
const MAX_EXTENSION_HEADERS: usize = 8;

mod field {
    use std::ops::Range;
    pub const PAYLOAD_LEN: Range<usize> = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: Range<usize> = 8..24;
    pub const DST: Range<usize> = 24..40;
}

/// Next-header values of the extension headers this view walks.
mod next {
    pub const HOP_BY_HOP: u8 = 0;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const AUTH: u8 = 51;
    pub const DEST_OPTS: u8 = 60;
}

/// A checked view of an IPv6 packet in `T`.
#[derive(Debug, Clone)]
pub struct Ipv6Packet<T> {
    buffer: T,
}

fn addr(b: &[u8]) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&b[..16]);
    Ipv6Addr::from(o)
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Checks untrusted bytes and wraps them.
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(ParseError::Truncated);
        }
        if b[0] >> 4 != 6 {
            return Err(ParseError::BadVersion);
        }
        let payload_len = usize::from(u16::from_be_bytes([b[4], b[5]]));
        if HEADER_LEN + payload_len > b.len() {
            return Err(ParseError::BadTotalLength);
        }
        Ok(Self { buffer })
    }

    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Payload length field.
    pub fn payload_len(&self) -> usize {
        let b = &self.bytes()[field::PAYLOAD_LEN];
        usize::from(u16::from_be_bytes([b[0], b[1]]))
    }

    /// Header plus payload length.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + self.payload_len()
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
        addr(&self.bytes()[field::SRC])
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        addr(&self.bytes()[field::DST])
    }

    /// Everything after the fixed header (extension headers included), up to
    /// the payload length.
    pub fn payload(&self) -> &[u8] {
        &self.bytes()[HEADER_LEN..self.total_len()]
    }

    /// Header and payload, without link padding.
    pub fn packet_bytes(&self) -> &[u8] {
        &self.bytes()[..self.total_len()]
    }

    /// Walks the extension headers (hop-by-hop, routing, fragment,
    /// destination options, AH; at most 8) and returns the upper-layer
    /// protocol number and the offset of its header within [`Self::payload`],
    /// or `None` for a non-first fragment.
    pub fn upper_layer(&self) -> Result<Option<(u8, usize)>, ParseError> {
        let payload = self.payload();
        let mut proto = self.next_header();
        let mut offset = 0usize;
        for _ in 0..MAX_EXTENSION_HEADERS {
            let len = match proto {
                next::HOP_BY_HOP | next::ROUTING | next::DEST_OPTS => {
                    let ext = payload
                        .get(offset..offset + 2)
                        .ok_or(ParseError::BadExtensionHeader)?;
                    (usize::from(ext[1]) + 1) * 8
                }
                next::AUTH => {
                    let ext = payload
                        .get(offset..offset + 2)
                        .ok_or(ParseError::BadExtensionHeader)?;
                    (usize::from(ext[1]) + 2) * 4
                }
                next::FRAGMENT => {
                    let ext = payload
                        .get(offset..offset + 8)
                        .ok_or(ParseError::BadExtensionHeader)?;
                    if u16::from_be_bytes([ext[2], ext[3]]) & 0xfff8 != 0 {
                        return Ok(None);
                    }
                    8
                }
                _ => return Ok(Some((proto, offset))),
            };
            if offset + len > payload.len() {
                return Err(ParseError::BadExtensionHeader);
            }
            proto = payload[offset];
            offset += len;
        }
        Err(ParseError::BadExtensionHeader)
    }

    /// The transport summary; [`Transport::Fragment`] for a non-first fragment.
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
    /// Decrements the hop limit (saturating at 0). Returns the new value.
    pub fn decrement_hop_limit(&mut self) -> u8 {
        let b = self.buffer.as_mut();
        b[field::HOP_LIMIT] = b[field::HOP_LIMIT].saturating_sub(1);
        b[field::HOP_LIMIT]
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::pkt;
    use super::*;

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
