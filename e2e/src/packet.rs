//! Building IPv4/UDP packets by hand, for the spoofing tests: a raw socket
//! or a WireGuard tunnel carries them with whatever source they say. The
//! bytes come from `weft_switch::testing`, the workspace's one packet
//! builder.

use std::net::Ipv4Addr;

use weft_switch::testing;

/// An IPv4 packet carrying one UDP datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ipv4Udp {
    /// The IPv4 source address (the one the test spoofs).
    pub src: Ipv4Addr,
    /// The destination address.
    pub dst: Ipv4Addr,
    /// The UDP source port.
    pub src_port: u16,
    /// The UDP destination port.
    pub dst_port: u16,
    /// The UDP payload.
    pub payload: Vec<u8>,
}

/// The IPv4 header length (no options).
const IPV4_HEADER: usize = 20;
/// The UDP header length.
const UDP_HEADER: usize = 8;

impl Ipv4Udp {
    /// The packet's bytes: a 20-byte IPv4 header (TTL 64, DF, identification
    /// 0, a correct header checksum), the UDP header with a correct checksum,
    /// the payload. `None` if the payload does not fit in one packet.
    pub fn to_bytes(&self) -> Option<Vec<u8>> {
        let udp_len = u16::try_from(UDP_HEADER + self.payload.len()).ok()?;
        u16::try_from(IPV4_HEADER + usize::from(udp_len)).ok()?;
        let mut f = testing::pkt_between(self.src.into(), self.dst.into())
            .dont_frag(true)
            .udp(self.src_port, self.dst_port)
            .payload(&self.payload);
        f.id = 0;
        Some(f.build())
    }
}

/// [`Ipv4Udp::to_bytes`] of a packet from `src:src_port` to
/// `dst:dst_port` carrying `payload`.
pub fn ipv4_udp(
    src: Ipv4Addr,
    src_port: u16,
    dst: Ipv4Addr,
    dst_port: u16,
    payload: &[u8],
) -> Option<Vec<u8>> {
    Ipv4Udp {
        src,
        dst,
        src_port,
        dst_port,
        payload: payload.to_vec(),
    }
    .to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_udp_checksums_verify() {
        let p = ipv4_udp(
            Ipv4Addr::new(10, 244, 1, 2),
            4000,
            Ipv4Addr::new(10, 244, 2, 3),
            5000,
            b"hello",
        )
        .unwrap();
        assert_eq!(p.len(), 20 + 8 + 5);
        assert!(testing::valid(&p), "lengths and both checksums");
        // Version/IHL, TOS, length 33, ID 0, DF, TTL 64, UDP.
        assert_eq!(&p[..10], &[0x45, 0, 0, 33, 0, 0, 0x40, 0, 64, 17]);
        assert_eq!(&p[12..20], &[10, 244, 1, 2, 10, 244, 2, 3]);
        assert_eq!(&p[20..24], &[0x0f, 0xa0, 0x13, 0x88]);
        assert_eq!(&p[28..], b"hello");
    }

    #[test]
    fn oversized_payloads_are_refused() {
        let big = vec![0u8; 70_000];
        assert!(ipv4_udp(Ipv4Addr::LOCALHOST, 1, Ipv4Addr::LOCALHOST, 2, &big).is_none());
    }
}
