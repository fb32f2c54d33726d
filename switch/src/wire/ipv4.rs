//! A bounds-checked IPv4 packet view (RFC 791), after smoltcp's `wire`
//! views.
//!
//! Contract: the constructors check everything the accessors rely on —
//! [`Ipv4Packet::new_checked`] the version, IHL, total length against the
//! buffer and the header checksum (untrusted input);
//! [`Ipv4Packet::new_fitted`] the version and IHL, then sets the total
//! length to the buffer's (building a packet from a copied header). After
//! that no accessor or setter can panic, and every setter keeps the header
//! checksum as valid as it was (RFC 1624 incremental update). Bytes after
//! the total length (link padding) are ignored.

use std::net::Ipv4Addr;

use super::checksum;
use super::transport::{self, Transport};
use super::ParseError;

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = 20;

/// Byte offsets of the fixed header's fields. Every multi-byte field and
/// the TTL sit at even offsets, which the incremental update needs.
mod field {
    use std::ops::Range;
    pub(super) const VER_IHL: usize = 0;
    pub(super) const TOS: usize = 1;
    pub(super) const LENGTH: usize = 2;
    pub(super) const IDENT: usize = 4;
    pub(super) const FLAGS_FRAG: Range<usize> = 6..8;
    pub(super) const TTL: usize = 8;
    pub(super) const PROTOCOL: usize = 9;
    pub(super) const CHECKSUM: Range<usize> = 10..12;
    pub(super) const SRC: usize = 12;
    pub(super) const DST: usize = 16;
}

/// The "don't fragment" flag in the flags/fragment-offset word.
const DF: u16 = 0x4000;
/// The "more fragments" flag.
const MF: u16 = 0x2000;

/// A checked view of an IPv4 packet in `T`.
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T> {
    buffer: T,
}

/// The header length an IPv4 header at the start of `b` claims, if the
/// version is 4 and the header fits in `b`.
fn checked_header_len(b: &[u8]) -> Result<usize, ParseError> {
    let first = *b.first().ok_or(ParseError::Truncated)?;
    if b.len() < HEADER_LEN {
        return Err(ParseError::Truncated);
    }
    if first >> 4 != 4 {
        return Err(ParseError::BadVersion);
    }
    let header_len = usize::from(first & 0x0f) * 4;
    if header_len < HEADER_LEN || header_len > b.len() {
        return Err(ParseError::BadHeaderLength);
    }
    Ok(header_len)
}

/// The destination address of the fixed header at the start of `b`,
/// without any other check: to tell where refused bytes were going.
pub(crate) fn peek_dst(b: &[u8]) -> Option<Ipv4Addr> {
    let a: [u8; 4] = b.get(field::DST..field::DST + 4)?.try_into().ok()?;
    Some(Ipv4Addr::from(a))
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Checks untrusted bytes and wraps them.
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let b = buffer.as_ref();
        let header_len = checked_header_len(b)?;
        let total_len = usize::from(super::be16_at(b, field::LENGTH).unwrap_or(0));
        if total_len < header_len || total_len > b.len() {
            return Err(ParseError::BadTotalLength);
        }
        let header = b.get(..header_len).ok_or(ParseError::BadHeaderLength)?;
        if !checksum::verify(header, 0) {
            return Err(ParseError::BadChecksum);
        }
        Ok(Self { buffer })
    }
}

// Every index below is within `header_len() <= total_len() <= buffer
// length`, which both constructors establish and no setter breaks.
#[allow(clippy::indexing_slicing)]
impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    fn be16(&self, at: usize) -> u16 {
        u16::from_be_bytes([self.bytes()[at], self.bytes()[at + 1]])
    }

    fn addr(&self, at: usize) -> Ipv4Addr {
        let b = self.bytes();
        Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
    }

    /// Header length in bytes (20..=60).
    pub fn header_len(&self) -> usize {
        usize::from(self.bytes()[field::VER_IHL] & 0x0f) * 4
    }

    /// Total length field: header plus payload, in bytes.
    pub fn total_len(&self) -> usize {
        usize::from(self.be16(field::LENGTH))
    }

    /// The type-of-service byte (DSCP and ECN).
    pub fn tos(&self) -> u8 {
        self.bytes()[field::TOS]
    }

    /// Identification field.
    pub fn ident(&self) -> u16 {
        self.be16(field::IDENT)
    }

    /// The three flag bits (reserved, DF, MF) in the low bits.
    pub fn flags(&self) -> u8 {
        (self.be16(field::FLAGS_FRAG.start) >> 13) as u8
    }

    /// The "don't fragment" flag.
    pub fn dont_frag(&self) -> bool {
        self.be16(field::FLAGS_FRAG.start) & DF != 0
    }

    /// The "more fragments" flag.
    pub fn more_frags(&self) -> bool {
        self.be16(field::FLAGS_FRAG.start) & MF != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> usize {
        usize::from(self.be16(field::FLAGS_FRAG.start) & 0x1fff) * 8
    }

    /// Whether this is a fragment (more to come, or not the first).
    pub fn is_fragment(&self) -> bool {
        self.be16(field::FLAGS_FRAG.start) & (MF | 0x1fff) != 0
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
        self.be16(field::CHECKSUM.start)
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        self.addr(field::SRC)
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        self.addr(field::DST)
    }

    /// The source and destination address bytes, as the pseudo-header
    /// takes them.
    pub(crate) fn addr_bytes(&self) -> (&[u8], &[u8]) {
        let b = self.bytes();
        (
            &b[field::SRC..field::SRC + 4],
            &b[field::DST..field::DST + 4],
        )
    }

    /// The pseudo-header sum for `len` bytes of protocol `proto` (RFC 768,
    /// RFC 9293 3.1).
    pub fn pseudo_header(&self, proto: u8, len: usize) -> u64 {
        let (src, dst) = self.addr_bytes();
        checksum::pseudo(src, dst, proto, len)
    }

    /// The header, options included.
    pub fn header(&self) -> &[u8] {
        &self.bytes()[..self.header_len()]
    }

    /// The options (empty without).
    pub fn options(&self) -> &[u8] {
        &self.bytes()[HEADER_LEN..self.header_len()]
    }

    /// The payload, up to the total length.
    pub fn payload(&self) -> &[u8] {
        &self.bytes()[self.header_len()..self.total_len()]
    }

    /// Header and payload, without link padding.
    pub fn packet_bytes(&self) -> &[u8] {
        &self.bytes()[..self.total_len()]
    }
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
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
    /// Checks the header at the start of `buffer` (version, IHL) and makes
    /// the packet exactly as long as the buffer: for a header copied in
    /// front of a payload (a segment, a merged packet). The header
    /// checksum is updated, so it is valid if it was.
    pub fn new_fitted(mut buffer: T) -> Result<Self, ParseError> {
        let b = buffer.as_mut();
        let header_len = checked_header_len(b)?;
        let len = u16::try_from(b.len()).map_err(|_| ParseError::BadTotalLength)?;
        // `header_len <= b.len() == len`: the invariant holds.
        let _ = header_len;
        let mut p = Self { buffer };
        p.replace(field::LENGTH, len.to_be_bytes());
        Ok(p)
    }
}

// As above: every index is within the header, which the constructors
// checked lies within the buffer.
#[allow(clippy::indexing_slicing)]
impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Writes `new` at `at` (an even offset in the fixed header) and
    /// updates the header checksum incrementally.
    fn replace<const N: usize>(&mut self, at: usize, new: [u8; N]) {
        let b = self.buffer.as_mut();
        let mut old = [0u8; N];
        old.copy_from_slice(&b[at..at + N]);
        b[at..at + N].copy_from_slice(&new);
        let c = u16::from_be_bytes([b[field::CHECKSUM.start], b[field::CHECKSUM.start + 1]]);
        let c = checksum::update(c, &old, &new);
        b[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        self.replace(field::SRC, addr.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        self.replace(field::DST, addr.octets());
    }

    /// Sets the identification field.
    pub fn set_ident(&mut self, ident: u16) {
        self.replace(field::IDENT, ident.to_be_bytes());
    }

    /// Sets the time to live.
    pub fn set_ttl(&mut self, ttl: u8) {
        let protocol = self.protocol();
        self.replace(field::TTL, [ttl, protocol]);
    }

    /// Decrements the TTL (saturating at 0). Returns the new TTL.
    pub fn decrement_ttl(&mut self) -> u8 {
        let ttl = self.ttl().saturating_sub(1);
        self.set_ttl(ttl);
        ttl
    }

    /// Sets the total length to `len`, which must cover the header and
    /// fit the buffer (else nothing changes).
    pub fn set_total_len(&mut self, len: u16) -> Result<(), ParseError> {
        let l = usize::from(len);
        if l < self.header_len() || l > self.bytes().len() {
            return Err(ParseError::BadTotalLength);
        }
        self.replace(field::LENGTH, len.to_be_bytes());
        Ok(())
    }

    /// Recomputes the header checksum from scratch.
    pub fn fill_checksum(&mut self) {
        let header_len = self.header_len();
        let b = self.buffer.as_mut();
        b[field::CHECKSUM].fill(0);
        let c = checksum::checksum(&b[..header_len]);
        b[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
    }

    /// The payload, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (start, end) = (self.header_len(), self.total_len());
        &mut self.buffer.as_mut()[start..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{pkt, refill_v4_checksum};

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
