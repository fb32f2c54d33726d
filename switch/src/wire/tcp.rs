//! A bounds-checked TCP segment view (RFC 9293): the bytes after the IP
//! header(s), TCP header first.
//!
//! Contract: [`TcpPacket::new_checked`] verifies that the fixed header is
//! there and that the data offset covers it and fits the buffer; no
//! accessor or setter can panic afterwards (the data offset has no
//! setter). Setters do not touch the checksum: whether a field is covered
//! depends on whether the checksum is full or partial, which the caller
//! knows ([`FlowPacket`](super::FlowPacket) does it for both).

use super::checksum;
use super::ParseError;

/// Length of a TCP header without options.
pub const HEADER_LEN: usize = 20;

/// Offset of the checksum field within the header.
pub(crate) const CHECKSUM_OFFSET: usize = 16;

/// TCP flags (the header's byte 13).
pub mod flags {
    /// No more data from the sender.
    pub const FIN: u8 = 0x01;
    /// Synchronise sequence numbers.
    pub const SYN: u8 = 0x02;
    /// Reset the connection.
    pub const RST: u8 = 0x04;
    /// Push.
    pub const PSH: u8 = 0x08;
    /// The acknowledgment number is valid.
    pub const ACK: u8 = 0x10;
    /// The urgent pointer is valid.
    pub const URG: u8 = 0x20;
    /// ECN echo.
    pub const ECE: u8 = 0x40;
    /// Congestion window reduced.
    pub const CWR: u8 = 0x80;
}

mod field {
    pub(super) const SRC_PORT: usize = 0;
    pub(super) const DST_PORT: usize = 2;
    pub(super) const SEQ: usize = 4;
    pub(super) const ACK: usize = 8;
    pub(super) const OFFSET: usize = 12;
    pub(super) const FLAGS: usize = 13;
    pub(super) const WINDOW: usize = 14;
    pub(super) const CHECKSUM: usize = super::CHECKSUM_OFFSET;
    pub(super) const URGENT: usize = 18;
}

/// A checked view of a TCP segment in `T`.
#[derive(Debug, Clone)]
pub struct TcpPacket<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Checks untrusted bytes and wraps them.
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let b = buffer.as_ref();
        let offset = match b.get(field::OFFSET) {
            Some(o) if b.len() >= HEADER_LEN => usize::from(o >> 4) * 4,
            _ => return Err(ParseError::TruncatedTransport),
        };
        if offset < HEADER_LEN || offset > b.len() {
            return Err(ParseError::TruncatedTransport);
        }
        Ok(Self { buffer })
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

// Every index below is within `header_len()`, which `new_checked` found
// to be at least 20 and within the buffer.
#[allow(clippy::indexing_slicing)]
impl<T: AsRef<[u8]>> TcpPacket<T> {
    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    fn be16(&self, at: usize) -> u16 {
        u16::from_be_bytes([self.bytes()[at], self.bytes()[at + 1]])
    }

    fn be32(&self, at: usize) -> u32 {
        let b = self.bytes();
        u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        self.be16(field::SRC_PORT)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        self.be16(field::DST_PORT)
    }

    /// Sequence number.
    pub fn seq(&self) -> u32 {
        self.be32(field::SEQ)
    }

    /// Acknowledgment number.
    pub fn ack(&self) -> u32 {
        self.be32(field::ACK)
    }

    /// Header length (the data offset) in bytes, 20..=60.
    pub fn header_len(&self) -> usize {
        usize::from(self.bytes()[field::OFFSET] >> 4) * 4
    }

    /// The four bits after the data offset (reserved, and AccECN's AE).
    pub fn reserved(&self) -> u8 {
        self.bytes()[field::OFFSET] & 0x0f
    }

    /// The flags byte (see [`flags`]).
    pub fn flags(&self) -> u8 {
        self.bytes()[field::FLAGS]
    }

    /// Window.
    pub fn window(&self) -> u16 {
        self.be16(field::WINDOW)
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        self.be16(field::CHECKSUM)
    }

    /// Urgent pointer.
    pub fn urgent(&self) -> u16 {
        self.be16(field::URGENT)
    }

    /// The options (empty without).
    pub fn options(&self) -> &[u8] {
        &self.bytes()[HEADER_LEN..self.header_len()]
    }

    /// The header, options included.
    pub fn header(&self) -> &[u8] {
        &self.bytes()[..self.header_len()]
    }

    /// The data after the header.
    pub fn payload(&self) -> &[u8] {
        &self.bytes()[self.header_len()..]
    }

    /// Whether the checksum is right, given the pseudo-header sum.
    pub fn verify_checksum(&self, pseudo: u64) -> bool {
        checksum::verify(self.bytes(), pseudo)
    }
}

// As above.
#[allow(clippy::indexing_slicing)]
impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    fn write(&mut self, at: usize, new: &[u8]) {
        self.buffer.as_mut()[at..at + new.len()].copy_from_slice(new);
    }

    /// Sets the source port.
    pub fn set_src_port(&mut self, port: u16) {
        self.write(field::SRC_PORT, &port.to_be_bytes());
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, port: u16) {
        self.write(field::DST_PORT, &port.to_be_bytes());
    }

    /// Sets the sequence number.
    pub fn set_seq(&mut self, seq: u32) {
        self.write(field::SEQ, &seq.to_be_bytes());
    }

    /// Sets the acknowledgment number.
    pub fn set_ack(&mut self, ack: u32) {
        self.write(field::ACK, &ack.to_be_bytes());
    }

    /// Sets the flags byte.
    pub fn set_flags(&mut self, flags: u8) {
        self.write(field::FLAGS, &[flags]);
    }

    /// Sets the window.
    pub fn set_window(&mut self, window: u16) {
        self.write(field::WINDOW, &window.to_be_bytes());
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, sum: u16) {
        self.write(field::CHECKSUM, &sum.to_be_bytes());
    }

    /// Computes the full checksum over the whole segment plus the
    /// pseudo-header sum `pseudo`, and stores it.
    pub fn fill_checksum(&mut self, pseudo: u64) {
        self.set_checksum(0);
        let sum = checksum::finish(checksum::sum(self.bytes(), pseudo));
        self.set_checksum(sum);
    }

    /// The data after the header, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 443 -> 50000, seq 1, ack 2, data offset 6 (one MSS option), ACK|PSH,
    /// window 512, checksum 0xbeef, urgent 0, then 3 bytes of data.
    const SEGMENT: [u8; 27] = [
        0x01, 0xbb, 0xc3, 0x50, 0, 0, 0, 1, 0, 0, 0, 2, 0x60, 0x18, 0x02, 0x00, 0xbe, 0xef, 0, 0,
        2, 4, 0x05, 0xb4, b'a', b'b', b'c',
    ];

    #[test]
    fn reads_every_field() {
        let t = TcpPacket::new_checked(&SEGMENT[..]).unwrap();
        assert_eq!((t.src_port(), t.dst_port()), (443, 50000));
        assert_eq!((t.seq(), t.ack()), (1, 2));
        assert_eq!(t.header_len(), 24);
        assert_eq!(t.flags(), flags::ACK | flags::PSH);
        assert_eq!((t.window(), t.checksum(), t.urgent()), (512, 0xbeef, 0));
        assert_eq!(t.options(), &[2, 4, 0x05, 0xb4]);
        assert_eq!(t.payload(), b"abc");
    }

    #[test]
    fn refuses_short_headers_and_bad_offsets() {
        for n in 0..HEADER_LEN {
            assert!(TcpPacket::new_checked(&SEGMENT[..n]).is_err(), "{n}");
        }
        // Options claimed but cut: offset 6 words on 22 bytes.
        assert!(TcpPacket::new_checked(&SEGMENT[..22]).is_err());
        let mut s = SEGMENT;
        s[12] = 0x40;
        assert_eq!(
            TcpPacket::new_checked(&s[..]).unwrap_err(),
            ParseError::TruncatedTransport
        );
        s[12] = 0xf0;
        assert!(TcpPacket::new_checked(&s[..]).is_err());
    }

    #[test]
    fn setters_write_in_place_and_the_checksum_fills() {
        let mut s = SEGMENT;
        let mut t = TcpPacket::new_checked(&mut s[..]).unwrap();
        t.set_src_port(1);
        t.set_dst_port(2);
        t.set_seq(0xdead_beef);
        t.set_ack(7);
        t.set_flags(flags::SYN);
        t.set_window(9);
        t.fill_checksum(0x1234);
        assert!(t.verify_checksum(0x1234));
        assert!(!t.verify_checksum(0x1235));
        t.payload_mut()[0] = b'z';
        assert_eq!(
            &s[..14],
            &[0, 1, 0, 2, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 7, 0x60, 2]
        );
        assert_eq!(&s[14..16], &[0, 9]);
        assert_eq!(s[24], b'z');
    }
}
