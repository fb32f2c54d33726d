//! The egress MTU check: what a router does with a packet larger than the
//! next hop takes (RFC 1191, RFC 8201, as Linux's `ip_forward` /
//! `ip6_forward`), on the size each packet will have on the wire.
//!
//! Contract: pure functions of a parsed packet, its virtio-net header and
//! the egress MTU. For a TSO/USO super-packet the size that counts is its
//! largest segment (IP and transport headers plus `gso_size`, or the whole
//! payload if shorter), not its total length. weft never fragments: a
//! single IPv4 packet without DF is forwarded whatever its size (the
//! underlay fragments the tunnel's datagram), everything else that does
//! not fit is dropped, and answered with the MTU when the sender can act
//! on it (DF set, or IPv6).

use crate::offload::segment::path_limit;
use crate::wire::{proto, IpPacket, TcpPacket, VnetHdr, UDP_HEADER_LEN};

/// What the egress MTU says about a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fit {
    /// Forward it.
    Fits,
    /// Drop it; with `answer`, tell the sender the MTU (`mtu`).
    TooBig {
        /// The MTU to report: the largest packet the egress takes.
        mtu: u16,
        /// Whether the sender asked not to fragment (DF, or IPv6).
        answer: bool,
    },
}

/// The largest packet `ip` becomes on the wire: itself, or for a
/// super-packet (`hdr` GSO) its largest segment. A super-packet that is
/// not TCP or UDP counts whole (segmenting refuses it later anyway).
fn wire_size<T: AsRef<[u8]>>(ip: &IpPacket<T>, hdr: &VnetHdr) -> usize {
    let total = ip.total_len();
    if !hdr.is_gso() {
        return total;
    }
    let l4 = match ip.upper_layer() {
        Ok(Some((proto::TCP, l4))) => TcpPacket::new_checked(l4)
            .ok()
            .map(|t| (l4.len(), t.header_len())),
        Ok(Some((proto::UDP, l4))) if l4.len() >= UDP_HEADER_LEN => {
            Some((l4.len(), UDP_HEADER_LEN))
        }
        _ => None,
    };
    match l4 {
        // Everything before the payload, then at most one segment of it.
        Some((l4_len, l4_header)) => {
            let payload = l4_len - l4_header;
            total - payload + payload.min(usize::from(hdr.gso_size))
        }
        None => total,
    }
}

/// Checks `ip` (with its virtio-net header `hdr`) against an egress of
/// MTU `mtu`.
pub(crate) fn check<T: AsRef<[u8]>>(ip: &IpPacket<T>, hdr: &VnetHdr, mtu: u16) -> Fit {
    let limit = path_limit(usize::from(mtu), ip.is_v6());
    if wire_size(ip, hdr) <= limit {
        return Fit::Fits;
    }
    let answer = match ip {
        IpPacket::V4(p) => p.dont_frag(),
        IpPacket::V6(_) => true,
    };
    if !answer && !hdr.is_gso() {
        return Fit::Fits;
    }
    Fit::TooBig {
        mtu: u16::try_from(limit).unwrap_or(u16::MAX),
        answer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{as_partial, pkt, Fixture};
    use crate::wire::vnet::{GSO_TCPV4, GSO_UDP_L4};

    fn fit(p: &[u8], hdr: &VnetHdr, mtu: u16) -> Fit {
        check(&IpPacket::new_checked(p).unwrap(), hdr, mtu)
    }

    #[test]
    fn single_packets_by_their_length() {
        let none = VnetHdr::default();
        let df = pkt("10.0.0.1", "10.0.0.2")
            .dont_frag(true)
            .udp(1, 2)
            .payload(&[0; 1472])
            .build();
        assert_eq!(df.len(), 1500);
        assert_eq!(fit(&df, &none, 1500), Fit::Fits);
        assert_eq!(
            fit(&df, &none, 1499),
            Fit::TooBig {
                mtu: 1499,
                answer: true
            }
        );
        let no_df = pkt("10.0.0.1", "10.0.0.2")
            .udp(1, 2)
            .payload(&[0; 1472])
            .build();
        assert_eq!(
            fit(&no_df, &none, 1420),
            Fit::Fits,
            "weft does not fragment"
        );
        let v6 = pkt("fd00::1", "fd00::2")
            .udp(1, 2)
            .payload(&[0; 1452])
            .build();
        assert_eq!(
            fit(&v6, &none, 1420),
            Fit::TooBig {
                mtu: 1420,
                answer: true
            }
        );
        // IPv6 reports and allows at least its minimum MTU.
        assert_eq!(
            fit(&v6, &none, 1000),
            Fit::TooBig {
                mtu: 1280,
                answer: true
            }
        );
        let small6 = pkt("fd00::1", "fd00::2")
            .udp(1, 2)
            .payload(&[0; 1232])
            .build();
        assert_eq!(fit(&small6, &none, 1000), Fit::Fits);
    }

    #[test]
    fn super_packets_by_their_largest_segment() {
        let p = Fixture::tcp_stream(false, 1, 30_000, 12).build();
        let (ok, _) = as_partial(p.clone(), GSO_TCPV4, 1368);
        assert_eq!(fit(&p, &ok, 1420), Fit::Fits, "52 + 1368 = 1420");
        let (big, _) = as_partial(p.clone(), GSO_TCPV4, 1369);
        assert_eq!(
            fit(&p, &big, 1420),
            Fit::TooBig {
                mtu: 1420,
                answer: true
            }
        );
        // One short segment fits whatever gso_size claims.
        let short = Fixture::tcp_stream(false, 1, 800, 12).build();
        let (huge, _) = as_partial(short.clone(), GSO_TCPV4, 9000);
        assert_eq!(fit(&short, &huge, 1420), Fit::Fits);
        // USO without DF: dropped, not answered.
        let mut u = Fixture::udp_stream(false, 20_000);
        u.df = false;
        let u = u.build();
        let (uso, _) = as_partial(u.clone(), GSO_UDP_L4, 9000);
        assert_eq!(
            fit(&u, &uso, 1420),
            Fit::TooBig {
                mtu: 1420,
                answer: false
            }
        );
    }
}
