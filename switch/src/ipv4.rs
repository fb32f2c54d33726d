//! A bounds-checked IPv4 packet view (RFC 791), after smoltcp's `wire` views.
//!
//! Contract: the only constructor, [`Ipv4Packet::new_checked`], verifies the
//! version, IHL, total length against the buffer and the header checksum; every
//! accessor indexes only within what it checked, so none can panic afterwards.
//! Bytes after the total length (link padding) are ignored.

use std::net::Ipv4Addr;

use super::checksum;
use super::packet::ParseError;
use super::transport::{self, Transport};

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = 20;

mod field {
    use std::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLAGS_FRAG: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
}

/// A checked view of an IPv4 packet in `T`.
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T> {
    buffer: T,
}

fn be16(b: &[u8], r: std::ops::Range<usize>) -> u16 {
    u16::from_be_bytes([b[r.start], b[r.start + 1]])
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Checks untrusted bytes and wraps them.
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(ParseError::Truncated);
        }
        if b[field::VER_IHL] >> 4 != 4 {
            return Err(ParseError::BadVersion);
        }
        let header_len = usize::from(b[field::VER_IHL] & 0x0f) * 4;
        if header_len < HEADER_LEN || header_len > b.len() {
            return Err(ParseError::BadHeaderLength);
        }
        let total_len = usize::from(be16(b, field::LENGTH));
        if total_len < header_len || total_len > b.len() {
            return Err(ParseError::BadTotalLength);
        }
        if !checksum::verify(&b[..header_len]) {
            return Err(ParseError::BadChecksum);
        }
        Ok(Self { buffer })
    }

    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Header length in bytes (20..=60).
    pub fn header_len(&self) -> usize {
        usize::from(self.bytes()[field::VER_IHL] & 0x0f) * 4
    }

    /// Total length field: header plus payload, in bytes.
    pub fn total_len(&self) -> usize {
        usize::from(be16(self.bytes(), field::LENGTH))
    }

    /// Identification field.
    pub fn ident(&self) -> u16 {
        be16(self.bytes(), field::IDENT)
    }

    /// The "don't fragment" flag.
    pub fn dont_frag(&self) -> bool {
        be16(self.bytes(), field::FLAGS_FRAG) & 0x4000 != 0
    }

    /// The "more fragments" flag.
    pub fn more_frags(&self) -> bool {
        be16(self.bytes(), field::FLAGS_FRAG) & 0x2000 != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> usize {
        usize::from(be16(self.bytes(), field::FLAGS_FRAG) & 0x1fff) * 8
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.bytes()[field::TTL]
    }

    /// Protocol number of the payload.
    pub fn protocol(&self) -> u8 {
        self.bytes()[field::PROTOCOL]
    }

    /// Header checksum field.
    pub fn checksum(&self) -> u16 {
        be16(self.bytes(), field::CHECKSUM)
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        let b = &self.bytes()[field::SRC];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        let b = &self.bytes()[field::DST];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// The header, options included.
    pub fn header(&self) -> &[u8] {
        &self.bytes()[..self.header_len()]
    }

    /// The payload, up to the total length.
    pub fn payload(&self) -> &[u8] {
        &self.bytes()[self.header_len()..self.total_len()]
    }

    /// Header and payload, without link padding.
    pub fn packet_bytes(&self) -> &[u8] {
        &self.bytes()[..self.total_len()]
    }

    /// The transport summary: [`Transport::Fragment`] for a non-first
    /// fragment, else the parsed TCP/UDP/ICMP header of the payload.
    pub fn transport(&self) -> Result<Transport, ParseError> {
        if self.frag_offset() != 0 {
            return Ok(Transport::Fragment);
        }
        transport::parse(self.protocol(), self.payload(), false)
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Decrements the TTL (saturating at 0) and updates the header checksum
    /// incrementally (RFC 1624). Returns the new TTL.
    pub fn decrement_ttl(&mut self) -> u8 {
        let b = self.buffer.as_mut();
        let old_word = u16::from_be_bytes([b[field::TTL], b[field::PROTOCOL]]);
        let ttl = b[field::TTL].saturating_sub(1);
        b[field::TTL] = ttl;
        let new_word = u16::from_be_bytes([ttl, b[field::PROTOCOL]]);
        let sum = checksum::update_word(be16(b, field::CHECKSUM), old_word, new_word);
        b[field::CHECKSUM].copy_from_slice(&sum.to_be_bytes());
        ttl
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{pkt, refill_v4_checksum};
    use super::*;

    #[test]
    fn parses_valid_udp() {
        let b = pkt("10.244.1.2", "10.244.2.3")
            .ttl(63)
            .udp(40000, 53)
            .payload(b"hello")
            .build();
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 20 + 8 + 5);
        assert_eq!(p.ttl(), 63);
        assert_eq!(p.protocol(), 17);
        assert_eq!(p.src_addr(), Ipv4Addr::new(10, 244, 1, 2));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(10, 244, 2, 3));
        assert!(!p.more_frags());
        assert_eq!(p.frag_offset(), 0);
        assert_eq!(p.payload().len(), 13);
        assert_eq!(
            p.transport().unwrap(),
            Transport::Udp {
                src_port: 40000,
                dst_port: 53
            }
        );
    }

    #[test]
    fn parses_options_and_ignores_padding() {
        let mut b = pkt("10.0.0.1", "10.0.0.2")
            .options(&[1, 1, 1, 0])
            .tcp(1, 2)
            .build();
        assert_eq!(b[0], 0x46);
        let total = b.len();
        b.extend_from_slice(&[0xee; 6]); // link padding
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.packet_bytes().len(), total);
        assert_eq!(p.payload().len(), total - 24);
        assert_eq!(
            p.transport().unwrap(),
            Transport::Tcp {
                src_port: 1,
                dst_port: 2
            }
        );
    }

    #[test]
    fn truncated_header() {
        let b = pkt("10.0.0.1", "10.0.0.2").udp(1, 2).build();
        for len in 0..HEADER_LEN {
            assert_eq!(
                Ipv4Packet::new_checked(&b[..len]).unwrap_err(),
                ParseError::Truncated
            );
        }
    }

    #[test]
    fn wrong_version() {
        let mut b = pkt("10.0.0.1", "10.0.0.2").udp(1, 2).build();
        b[0] = 0x65;
        refill_v4_checksum(&mut b);
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            ParseError::BadVersion
        );
    }

    #[test]
    fn bad_ihl() {
        for ihl in [0u8, 1, 4] {
            let mut b = pkt("10.0.0.1", "10.0.0.2").udp(1, 2).build();
            b[0] = 0x40 | ihl;
            assert_eq!(
                Ipv4Packet::new_checked(&b[..]).unwrap_err(),
                ParseError::BadHeaderLength
            );
        }
        // IHL 15 (60 bytes) on a 28-byte packet: the header runs past the buffer.
        let mut b = pkt("10.0.0.1", "10.0.0.2").udp(1, 2).build();
        b[0] = 0x4f;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            ParseError::BadHeaderLength
        );
    }

    #[test]
    fn total_length_vs_buffer() {
        let mut b = pkt("10.0.0.1", "10.0.0.2").udp(1, 2).build();
        let len = b.len() as u16;
        b[2..4].copy_from_slice(&(len + 1).to_be_bytes());
        refill_v4_checksum(&mut b);
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            ParseError::BadTotalLength
        );
        b[2..4].copy_from_slice(&19u16.to_be_bytes());
        refill_v4_checksum(&mut b);
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            ParseError::BadTotalLength
        );
        // Truncating the buffer below the stated total length is caught too.
        let b = pkt("10.0.0.1", "10.0.0.2")
            .udp(1, 2)
            .payload(&[0; 10])
            .build();
        let cut = &b[..b.len() - 1];
        assert_eq!(
            Ipv4Packet::new_checked(cut).unwrap_err(),
            ParseError::BadTotalLength
        );
    }

    #[test]
    fn bad_checksum() {
        let mut b = pkt("10.0.0.1", "10.0.0.2").udp(1, 2).build();
        b[11] ^= 0x01;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            ParseError::BadChecksum
        );
        let mut b = pkt("10.0.0.1", "10.0.0.2").udp(1, 2).build();
        b[15] ^= 0x80; // source address flipped, checksum left alone
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            ParseError::BadChecksum
        );
    }

    #[test]
    fn decrement_ttl_keeps_checksum_valid_for_every_ttl() {
        for ttl in 0..=255u8 {
            for proto in [1u8, 6, 17, 255] {
                let mut b = pkt("10.244.1.2", "10.244.2.3").ttl(ttl).raw(proto).build();
                let new = Ipv4Packet::new_checked(&mut b[..]).unwrap().decrement_ttl();
                assert_eq!(new, ttl.saturating_sub(1));
                let p = Ipv4Packet::new_checked(&b[..]).expect("checksum valid after decrement");
                assert_eq!(p.ttl(), new);
                assert_eq!(p.protocol(), proto);
            }
        }
    }

    #[test]
    fn fragments() {
        let b = pkt("10.0.0.1", "10.0.0.2").frag(8, true).udp(1, 2).build();
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert!(p.more_frags());
        assert_eq!(p.frag_offset(), 64);
        assert_eq!(p.transport().unwrap(), Transport::Fragment);
        // A first fragment too short to hold the UDP header is malformed.
        let b = pkt("10.0.0.1", "10.0.0.2")
            .frag(0, true)
            .raw(17)
            .payload(&[0; 4])
            .build();
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.transport().unwrap_err(), ParseError::TruncatedTransport);
    }
}
