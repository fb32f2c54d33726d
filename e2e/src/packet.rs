//! Building IPv4/UDP packets by hand, for the spoofing tests: a raw socket
//! or a WireGuard tunnel carries them with whatever source they say.

use std::net::Ipv4Addr;

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
        let total = u16::try_from(IPV4_HEADER + usize::from(udp_len)).ok()?;
        let mut p = Vec::with_capacity(usize::from(total));
        p.extend_from_slice(&[0x45, 0]);
        p.extend_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
        p.extend_from_slice(&self.src.octets());
        p.extend_from_slice(&self.dst.octets());
        let header_sum = checksum(&[&p[..IPV4_HEADER]]);
        p[10..12].copy_from_slice(&header_sum.to_be_bytes());

        let mut udp = Vec::with_capacity(usize::from(udp_len));
        udp.extend_from_slice(&self.src_port.to_be_bytes());
        udp.extend_from_slice(&self.dst_port.to_be_bytes());
        udp.extend_from_slice(&udp_len.to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.extend_from_slice(&self.payload);
        let mut pseudo = Vec::with_capacity(12);
        pseudo.extend_from_slice(&self.src.octets());
        pseudo.extend_from_slice(&self.dst.octets());
        pseudo.extend_from_slice(&[0, 17]);
        pseudo.extend_from_slice(&udp_len.to_be_bytes());
        let udp_sum = match checksum(&[&pseudo, &udp]) {
            // 0 means "no checksum" in UDP over IPv4; all ones is the same sum.
            0 => 0xffff,
            s => s,
        };
        udp[6..8].copy_from_slice(&udp_sum.to_be_bytes());
        p.extend_from_slice(&udp);
        Some(p)
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

/// The Internet checksum (RFC 1071) of the concatenation of `parts`, each
/// of even length but the last.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        let mut chunks = part.chunks_exact(2);
        for c in &mut chunks {
            sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [last] = chunks.remainder() {
            sum += u32::from(*last) << 8;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
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
        // A correct checksum sums to zero over the covered bytes.
        assert_eq!(checksum(&[&p[..20]]), 0);
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&p[12..20]);
        pseudo.extend_from_slice(&[0, 17, 0, 13]);
        assert_eq!(checksum(&[&pseudo, &p[20..]]), 0);
        assert_eq!(&p[28..], b"hello");
    }

    #[test]
    fn oversized_payloads_are_refused() {
        let big = vec![0u8; 70_000];
        assert!(ipv4_udp(Ipv4Addr::LOCALHOST, 1, Ipv4Addr::LOCALHOST, 2, &big).is_none());
    }
}
