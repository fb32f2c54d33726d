//! The virtio-net header (`struct virtio_net_hdr`, 10 bytes) that a TUN
//! with `IFF_VNET_HDR` puts before every packet, both ways.
//!
//! The kernel writes it in the host's byte order for a TUN (virtio's
//! "legacy" little-endian on the little-endian hosts weft runs on).

use super::L4Checksum;

/// Length of `struct virtio_net_hdr` (without `num_buffers`).
pub const VNET_HDR_LEN: usize = 10;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start +
/// csum_offset` holds only the pseudo-header sum; the rest is to be done.
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the checksums were verified.
pub const F_DATA_VALID: u8 = 2;

/// `VIRTIO_NET_HDR_GSO_NONE`: one packet.
pub const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`: a TCP/IPv4 super-packet (TSO).
pub const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_TCPV6`: a TCP/IPv6 super-packet (TSO).
pub const GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_UDP_L4`: a UDP super-packet (USO), either family.
pub const GSO_UDP_L4: u8 = 5;
/// `VIRTIO_NET_HDR_GSO_ECN`: or'ed into the type when the TCP flow uses ECN.
pub const GSO_ECN: u8 = 0x80;

/// A decoded virtio-net header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHdr {
    /// `F_*` bits.
    pub flags: u8,
    /// `GSO_*`, maybe with [`GSO_ECN`].
    pub gso_type: u8,
    /// Length of the headers (a hint; not trusted).
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Where the checksummed part starts (the transport header).
    pub csum_start: u16,
    /// Where, from `csum_start`, the checksum field is.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Decodes the first [`VNET_HDR_LEN`] bytes of `b`; `None` if shorter.
    pub fn decode(b: &[u8]) -> Option<Self> {
        let b: [u8; VNET_HDR_LEN] = b.get(..VNET_HDR_LEN)?.try_into().ok()?;
        let [flags, gso_type, h0, h1, g0, g1, s0, s1, o0, o1] = b;
        Some(Self {
            flags,
            gso_type,
            hdr_len: u16::from_le_bytes([h0, h1]),
            gso_size: u16::from_le_bytes([g0, g1]),
            csum_start: u16::from_le_bytes([s0, s1]),
            csum_offset: u16::from_le_bytes([o0, o1]),
        })
    }

    /// Writes the header into the first [`VNET_HDR_LEN`] bytes of `out`
    /// (nothing if it is shorter).
    pub fn encode(&self, out: &mut [u8]) {
        let Some(b) = out.get_mut(..VNET_HDR_LEN) else {
            return;
        };
        let [h0, h1] = self.hdr_len.to_le_bytes();
        let [g0, g1] = self.gso_size.to_le_bytes();
        let [s0, s1] = self.csum_start.to_le_bytes();
        let [o0, o1] = self.csum_offset.to_le_bytes();
        b.copy_from_slice(&[self.flags, self.gso_type, h0, h1, g0, g1, s0, s1, o0, o1]);
    }

    /// The GSO type without the ECN bit.
    pub fn gso(&self) -> u8 {
        self.gso_type & !GSO_ECN
    }

    /// Whether this is a super-packet to be segmented.
    pub fn is_gso(&self) -> bool {
        self.gso() != GSO_NONE
    }

    /// Whether a checksum is left to complete.
    pub fn needs_csum(&self) -> bool {
        self.flags & F_NEEDS_CSUM != 0
    }

    /// What the packet's transport checksum field holds, by this header.
    pub fn checksum_state(&self) -> L4Checksum {
        if self.needs_csum() {
            L4Checksum::Partial
        } else {
            L4Checksum::Full
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_little_endian() {
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4 | GSO_ECN,
            hdr_len: 66,
            gso_size: 1368,
            csum_start: 20,
            csum_offset: 16,
        };
        let mut b = [0u8; VNET_HDR_LEN];
        h.encode(&mut b);
        assert_eq!(b, [1, 0x81, 66, 0, 0x58, 0x05, 20, 0, 16, 0]);
        assert_eq!(VnetHdr::decode(&b), Some(h));
        assert_eq!(h.gso(), GSO_TCPV4);
        assert!(h.is_gso() && h.needs_csum());
        assert_eq!(VnetHdr::decode(&b[..9]), None);
        h.encode(&mut [0u8; 3]);
    }
}
