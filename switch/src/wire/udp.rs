//! A bounds-checked UDP datagram view (RFC 768): the bytes after the IP
//! header(s), UDP header first.
//!
//! Contract: [`UdpPacket::new_checked`] verifies that the 8-byte header is
//! there; no accessor or setter can panic afterwards. The length field is
//! read and written as it is (the IP layer's length is authoritative).
//! Setters do not touch the checksum (see [`TcpPacket`](super::TcpPacket)).

use super::checksum;
use super::ParseError;

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

/// Offset of the checksum field within the header.
pub(crate) const CHECKSUM_OFFSET: usize = 6;

/// A checked view of a UDP datagram in `T`.
#[derive(Debug, Clone)]
pub struct UdpPacket<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
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
impl<T: AsRef<[u8]>> UdpPacket<T> {
    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    fn be16(&self, at: usize) -> u16 {
        u16::from_be_bytes([self.bytes()[at], self.bytes()[at + 1]])
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        self.be16(0)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        self.be16(2)
    }

    /// Length field: header plus data, in bytes.
    pub fn len_field(&self) -> u16 {
        self.be16(4)
    }

    /// Checksum field (0: none, allowed over IPv4 only).
    pub fn checksum(&self) -> u16 {
        self.be16(CHECKSUM_OFFSET)
    }

    /// The data after the header.
    pub fn payload(&self) -> &[u8] {
        &self.bytes()[HEADER_LEN..]
    }

    /// Whether the checksum is right, given the pseudo-header sum. An
    /// absent checksum (0) is right only where `optional` (IPv4).
    pub fn verify_checksum(&self, pseudo: u64, optional: bool) -> bool {
        (optional && self.checksum() == 0) || checksum::verify(self.bytes(), pseudo)
    }
}

// As above.
#[allow(clippy::indexing_slicing)]
impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    fn write(&mut self, at: usize, value: u16) {
        self.buffer.as_mut()[at..at + 2].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the source port.
    pub fn set_src_port(&mut self, port: u16) {
        self.write(0, port);
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, port: u16) {
        self.write(2, port);
    }

    /// Sets the length field.
    pub fn set_len_field(&mut self, len: u16) {
        self.write(4, len);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, sum: u16) {
        self.write(CHECKSUM_OFFSET, sum);
    }

    /// Computes the full checksum over the datagram plus the pseudo-header
    /// sum `pseudo`, and stores it (a computed 0 is sent as all ones,
    /// RFC 768).
    pub fn fill_checksum(&mut self, pseudo: u64) {
        self.set_checksum(0);
        let sum = match checksum::finish(checksum::sum(self.bytes(), pseudo)) {
            0 => 0xffff,
            s => s,
        };
        self.set_checksum(sum);
    }

    /// The data after the header, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 53 -> 40000, length 11, checksum 0x1234, "abc".
    const DATAGRAM: [u8; 11] = [0, 53, 0x9c, 0x40, 0, 11, 0x12, 0x34, b'a', b'b', b'c'];

    #[test]
    fn reads_every_field() {
        let u = UdpPacket::new_checked(&DATAGRAM[..]).unwrap();
        assert_eq!((u.src_port(), u.dst_port()), (53, 40000));
        assert_eq!((u.len_field(), u.checksum()), (11, 0x1234));
        assert_eq!(u.payload(), b"abc");
        for n in 0..HEADER_LEN {
            assert!(UdpPacket::new_checked(&DATAGRAM[..n]).is_err());
        }
        assert!(UdpPacket::new_checked(&DATAGRAM[..8]).is_ok());
    }

    #[test]
    fn checksum_fill_never_writes_zero_and_zero_is_optional() {
        let mut d = DATAGRAM;
        let mut u = UdpPacket::new_checked(&mut d[..]).unwrap();
        u.set_src_port(1);
        u.set_dst_port(2);
        u.set_len_field(11);
        u.fill_checksum(0);
        assert!(u.verify_checksum(0, false));
        // Find a pseudo-header sum that makes the computed checksum 0.
        u.set_checksum(0);
        let pseudo = u64::from(!checksum::fold(checksum::sum(&d, 0)));
        let mut u = UdpPacket::new_checked(&mut d[..]).unwrap();
        u.fill_checksum(pseudo);
        assert_eq!(u.checksum(), 0xffff);
        assert!(u.verify_checksum(pseudo, false));
        u.set_checksum(0);
        assert!(u.verify_checksum(7, true));
        assert!(!u.verify_checksum(7, false));
    }
}
