//! A bounds-checked ICMP (RFC 792) / ICMPv6 (RFC 4443) message view: the
//! two share the layout of their first 8 bytes (type, code, checksum, 4
//! bytes whose meaning depends on the type) and carry, for errors, the
//! invoking packet as a quote.
//!
//! Contract: [`IcmpPacket::new_checked`] verifies the 8-byte header is
//! there; no accessor or setter can panic afterwards. The checksum covers
//! the message only for ICMP and the message plus the IPv6 pseudo-header
//! for ICMPv6: the caller passes that sum (0 for ICMP).

use super::checksum;
use super::ParseError;

/// Length of the ICMP header (type, code, checksum, rest of header).
pub const HEADER_LEN: usize = 8;

/// A checked view of an ICMP or ICMPv6 message in `T`.
#[derive(Debug, Clone)]
pub struct IcmpPacket<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IcmpPacket<T> {
    /// Checks untrusted bytes and wraps them.
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(ParseError::TruncatedTransport);
        }
        Ok(Self { buffer })
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

// Every index below is below HEADER_LEN, which `new_checked` found within
// the buffer.
#[allow(clippy::indexing_slicing)]
impl<T: AsRef<[u8]>> IcmpPacket<T> {
    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    fn be16(&self, at: usize) -> u16 {
        u16::from_be_bytes([self.bytes()[at], self.bytes()[at + 1]])
    }

    /// Message type.
    pub fn msg_type(&self) -> u8 {
        self.bytes()[0]
    }

    /// Message code.
    pub fn code(&self) -> u8 {
        self.bytes()[1]
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        self.be16(2)
    }

    /// The identifier of an echo request or reply (bytes 4..6).
    pub fn echo_id(&self) -> u16 {
        self.be16(4)
    }

    /// The sequence number of an echo request or reply (bytes 6..8).
    pub fn echo_seq(&self) -> u16 {
        self.be16(6)
    }

    /// The 4 bytes after the checksum, as one number: the MTU of an
    /// ICMPv6 "packet too big"; the next-hop MTU of an ICMP
    /// "fragmentation needed" is its low 16 bits.
    pub fn rest_of_header(&self) -> u32 {
        let b = self.bytes();
        u32::from_be_bytes([b[4], b[5], b[6], b[7]])
    }

    /// What follows the header: for an error, the quote of the invoking
    /// packet (its IP header first, cut short); for an echo, its data.
    pub fn quote(&self) -> &[u8] {
        &self.bytes()[HEADER_LEN..]
    }

    /// Whether the checksum is right, given the pseudo-header sum (0 for
    /// ICMP over IPv4).
    pub fn verify_checksum(&self, pseudo: u64) -> bool {
        checksum::verify(self.bytes(), pseudo)
    }
}

// As above.
#[allow(clippy::indexing_slicing)]
impl<T: AsRef<[u8]> + AsMut<[u8]>> IcmpPacket<T> {
    /// Sets the type and code.
    pub fn set_type_code(&mut self, msg_type: u8, code: u8) {
        self.buffer.as_mut()[..2].copy_from_slice(&[msg_type, code]);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, sum: u16) {
        self.buffer.as_mut()[2..4].copy_from_slice(&sum.to_be_bytes());
    }

    /// Sets the 4 bytes after the checksum (see [`Self::rest_of_header`]).
    pub fn set_rest_of_header(&mut self, rest: u32) {
        self.buffer.as_mut()[4..8].copy_from_slice(&rest.to_be_bytes());
    }

    /// Sets an echo's identifier and updates the checksum incrementally
    /// (an ICMP checksum is always full; the identifier is not in the
    /// pseudo-header).
    pub fn rewrite_echo_id(&mut self, id: u16) {
        let old = self.echo_id();
        let sum = checksum::update_word(self.checksum(), old, id);
        self.buffer.as_mut()[4..6].copy_from_slice(&id.to_be_bytes());
        self.set_checksum(sum);
    }

    /// Computes the checksum over the message plus `pseudo` (0 for ICMP
    /// over IPv4) and stores it.
    pub fn fill_checksum(&mut self, pseudo: u64) {
        self.set_checksum(0);
        let sum = checksum::finish(checksum::sum(self.bytes(), pseudo));
        self.set_checksum(sum);
    }

    /// The quote (or echo data), mutable.
    pub fn quote_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Ipv4Packet;

    #[test]
    fn echo_fields_and_id_rewrite() {
        // Echo request, id 0x1234, seq 1, data "hi", checksum filled.
        let mut m = [8, 0, 0, 0, 0x12, 0x34, 0, 1, b'h', b'i'];
        let mut p = IcmpPacket::new_checked(&mut m[..]).unwrap();
        p.fill_checksum(0);
        assert!(p.verify_checksum(0));
        assert_eq!(
            (p.msg_type(), p.code(), p.echo_id(), p.echo_seq()),
            (8, 0, 0x1234, 1)
        );
        assert_eq!(p.quote(), b"hi");
        p.rewrite_echo_id(0xbeef);
        assert_eq!(p.echo_id(), 0xbeef);
        assert!(p.verify_checksum(0), "incremental update keeps it valid");
        for n in 0..HEADER_LEN {
            assert!(IcmpPacket::new_checked(&m[..n]).is_err());
        }
    }

    #[test]
    fn an_error_quotes_the_invoking_packet() {
        // Fragmentation needed, next-hop MTU 1400, quoting a 20-byte IPv4
        // header (10.0.0.1 -> 10.0.0.2, UDP) and 8 bytes of UDP.
        let mut m = vec![3, 4, 0, 0, 0, 0, 0x05, 0x78];
        let mut ip = vec![
            0x45, 0, 0x05, 0xdc, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let sum = checksum::checksum(&ip);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        m.extend_from_slice(&ip);
        m.extend_from_slice(&[0x9c, 0x40, 0, 53, 0x05, 0xc8, 0, 0]);
        let p = IcmpPacket::new_checked(&m[..]).unwrap();
        assert_eq!(p.rest_of_header() & 0xffff, 1400);
        let quoted = p.quote();
        assert_eq!(quoted.len(), 28);
        // The quote is cut short: only its header parses as a header.
        assert!(Ipv4Packet::new_checked(quoted).is_err());
        assert_eq!(&quoted[12..20], &[10, 0, 0, 1, 10, 0, 0, 2]);
    }
}
