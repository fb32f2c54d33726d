//! ICMP (RFC 792) and ICMPv6 (RFC 4443) error messages the switch
//! originates, written into a caller-provided buffer, addressed back to
//! the invoking packet's source.
//!
//! Contract: the writers never allocate or panic; they return the length
//! written, or `None` if the buffer cannot hold a useful message. Whether an
//! error may be sent at all (not for ICMP errors, non-first fragments, rate
//! limit) is the caller's decision. Quotes: IPv4 quotes the invoking header
//! plus the first 8 payload bytes (RFC 792); IPv6 quotes as much of the
//! invoking packet as fits in the IPv6 minimum MTU (RFC 4443 2.4 (c)), less
//! if the buffer is smaller, but never less than its header plus 8 bytes.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::wire::{
    proto, IcmpPacket, Ipv4Packet, Ipv6Packet, ICMP_HEADER_LEN, IPV4_HEADER_LEN, IPV6_HEADER_LEN,
    IPV6_MIN_MTU,
};

/// TTL / hop limit of the errors the switch originates.
const REPLY_HOP_LIMIT: u8 = 64;
/// IPv4 precedence "internetwork control" in the TOS byte, as Linux sends.
const TOS_INTERNETWORK_CONTROL: u8 = 0xc0;

/// The IPv4 header of an error: no options, ID 0, not fragmented; its
/// length, addresses and checksum are filled in.
#[rustfmt::skip]
const V4_HEADER: [u8; IPV4_HEADER_LEN] = [
    0x45, TOS_INTERNETWORK_CONTROL, 0, 0,
    0, 0, 0, 0,
    REPLY_HOP_LIMIT, proto::ICMP, 0, 0,
    0, 0, 0, 0,
    0, 0, 0, 0,
];

/// The ICMP errors the switch can answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpError {
    /// No route: ICMP 3/0 (network unreachable), ICMPv6 1/0 (no route).
    NetUnreachable,
    /// Local address without a pod: ICMP 3/1 (host unreachable), ICMPv6
    /// 1/3 (address unreachable).
    HostUnreachable,
    /// Refused by policy: ICMP 3/13, ICMPv6 1/1 (administratively prohibited).
    AdminProhibited,
    /// TTL / hop limit exceeded in transit: ICMP 11/0, ICMPv6 3/0.
    TimeExceeded,
    /// Nothing listens there (a Service without endpoints, kube-proxy's
    /// REJECT): ICMP 3/3, ICMPv6 1/4 (port unreachable).
    PortUnreachable,
    /// Larger than the next hop's MTU, which it carries (path MTU
    /// discovery): ICMP 3/4 "fragmentation needed" (RFC 1191), ICMPv6 2/0
    /// "packet too big" (RFC 8201).
    PacketTooBig {
        /// The next-hop MTU.
        mtu: u16,
    },
}

impl IcmpError {
    /// ICMP (IPv4) type and code.
    pub const fn v4(self) -> (u8, u8) {
        match self {
            Self::NetUnreachable => (3, 0),
            Self::HostUnreachable => (3, 1),
            Self::AdminProhibited => (3, 13),
            Self::TimeExceeded => (11, 0),
            Self::PortUnreachable => (3, 3),
            Self::PacketTooBig { .. } => (3, 4),
        }
    }

    /// ICMPv6 type and code.
    pub const fn v6(self) -> (u8, u8) {
        match self {
            Self::NetUnreachable => (1, 0),
            Self::HostUnreachable => (1, 3),
            Self::AdminProhibited => (1, 1),
            Self::TimeExceeded => (3, 0),
            Self::PortUnreachable => (1, 4),
            Self::PacketTooBig { .. } => (2, 0),
        }
    }

    /// The 4 bytes after the checksum: the MTU for "too big" (the low 16
    /// bits in ICMP, RFC 1191; all 32 in ICMPv6), else unused (zero).
    pub const fn rest_of_header(self) -> u32 {
        match self {
            Self::PacketTooBig { mtu } => mtu as u32,
            _ => 0,
        }
    }
}

/// Writes an IPv4 ICMP `error` from `from` to the source of `invoking` into
/// `out`; returns its length.
pub(crate) fn write_v4<T: AsRef<[u8]>>(
    out: &mut [u8],
    from: Ipv4Addr,
    invoking: &Ipv4Packet<T>,
    error: IcmpError,
) -> Option<usize> {
    let original = invoking.packet_bytes();
    let quote = original
        .get(..invoking.header_len() + 8)
        .unwrap_or(original);
    let icmp_len = ICMP_HEADER_LEN + quote.len();
    let total = IPV4_HEADER_LEN + icmp_len;
    let out = out.get_mut(..total)?;
    out.get_mut(..IPV4_HEADER_LEN)?.copy_from_slice(&V4_HEADER);
    let mut ip = Ipv4Packet::new_fitted(out).ok()?;
    ip.set_src_addr(from);
    ip.set_dst_addr(invoking.src_addr());
    ip.fill_checksum();

    let mut icmp = IcmpPacket::new_checked(ip.payload_mut()).ok()?;
    let (ty, code) = error.v4();
    icmp.set_type_code(ty, code);
    icmp.set_rest_of_header(error.rest_of_header());
    icmp.quote_mut().copy_from_slice(quote);
    icmp.fill_checksum(0);
    Some(total)
}

/// Writes an ICMPv6 `error` from `from` to the source of `invoking` into
/// `out`; returns its length.
pub(crate) fn write_v6<T: AsRef<[u8]>>(
    out: &mut [u8],
    from: Ipv6Addr,
    invoking: &Ipv6Packet<T>,
    error: IcmpError,
) -> Option<usize> {
    const OVERHEAD: usize = IPV6_HEADER_LEN + ICMP_HEADER_LEN;
    let original = invoking.packet_bytes();
    let room = out
        .len()
        .checked_sub(OVERHEAD)?
        .min(IPV6_MIN_MTU - OVERHEAD);
    let quote_len = original.len().min(room);
    if quote_len < original.len().min(IPV6_HEADER_LEN + 8) {
        return None;
    }
    let quote = original.get(..quote_len)?;
    let icmp_len = ICMP_HEADER_LEN + quote_len;
    let total = IPV6_HEADER_LEN + icmp_len;
    let out = out.get_mut(..total)?;
    out.fill(0);
    if let Some(first) = out.first_mut() {
        *first = 0x60;
    }
    let mut ip = Ipv6Packet::new_fitted(out).ok()?;
    ip.set_hop_limit(REPLY_HOP_LIMIT);
    ip.set_next_header(proto::ICMPV6);
    ip.set_src_addr(from);
    ip.set_dst_addr(invoking.src_addr());
    let pseudo = ip.pseudo_header(proto::ICMPV6, icmp_len);

    let mut icmp = IcmpPacket::new_checked(ip.payload_mut()).ok()?;
    let (ty, code) = error.v6();
    icmp.set_type_code(ty, code);
    icmp.set_rest_of_header(error.rest_of_header());
    icmp.quote_mut().copy_from_slice(quote);
    icmp.fill_checksum(pseudo);
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{pkt, valid};
    use crate::wire::checksum;
    use crate::wire::Transport;

    fn verify_icmpv6_checksum(p: &Ipv6Packet<&[u8]>) -> bool {
        valid(p.packet_bytes())
    }

    #[test]
    fn v4_unreachable_bytes() {
        let orig = pkt("10.244.1.2", "10.99.0.1")
            .udp(40000, 53)
            .payload(&[0xaa; 100])
            .build();
        let invoking = Ipv4Packet::new_checked(&orig[..]).unwrap();
        let mut out = [0u8; 1500];
        let from = Ipv4Addr::new(10, 244, 1, 1);
        let n = write_v4(&mut out, from, &invoking, IcmpError::NetUnreachable).unwrap();
        assert_eq!(n, 20 + 8 + 20 + 8);
        let reply = Ipv4Packet::new_checked(&out[..n]).expect("valid header checksum");
        assert_eq!(reply.src_addr(), from);
        assert_eq!(reply.dst_addr(), Ipv4Addr::new(10, 244, 1, 2));
        assert_eq!(reply.protocol(), 1);
        assert_eq!(reply.ttl(), 64);
        assert_eq!(reply.total_len(), n);
        let icmp = reply.payload();
        assert!(checksum::verify(icmp, 0), "ICMP checksum");
        assert_eq!(&icmp[..2], &[3, 0]);
        assert_eq!(&icmp[4..8], &[0; 4]);
        // The original header and the first 8 payload bytes (the UDP header).
        assert_eq!(&icmp[8..], &orig[..28]);
        assert!(reply.transport().unwrap().is_icmp_error());
    }

    #[test]
    fn v4_quotes_options_and_short_payloads() {
        let orig = pkt("10.0.0.1", "10.0.0.2")
            .options(&[1, 1, 1, 1, 1, 1, 1, 0])
            .raw(99)
            .payload(&[7; 3])
            .build();
        let invoking = Ipv4Packet::new_checked(&orig[..]).unwrap();
        let mut out = [0u8; 100];
        let n = write_v4(
            &mut out,
            Ipv4Addr::new(10, 0, 0, 9),
            &invoking,
            IcmpError::TimeExceeded,
        )
        .unwrap();
        assert_eq!(n, 20 + 8 + 28 + 3);
        assert_eq!(&out[20..22], &[11, 0]);
        assert_eq!(&out[28..n], &orig[..]);
        assert!(checksum::verify(&out[20..n], 0));
    }

    #[test]
    fn v4_buffer_too_small() {
        let orig = pkt("10.0.0.1", "10.0.0.2").udp(1, 2).build();
        let invoking = Ipv4Packet::new_checked(&orig[..]).unwrap();
        let mut out = [0u8; 55];
        assert_eq!(
            write_v4(
                &mut out,
                Ipv4Addr::LOCALHOST,
                &invoking,
                IcmpError::HostUnreachable
            ),
            None
        );
        let mut out = [0u8; 56];
        assert_eq!(
            write_v4(
                &mut out,
                Ipv4Addr::LOCALHOST,
                &invoking,
                IcmpError::HostUnreachable
            ),
            Some(56)
        );
    }

    #[test]
    fn v6_unreachable_bytes() {
        let orig = pkt("fd00:244:1::2", "fd00:99::1")
            .tcp(40000, 80)
            .payload(&[0x55; 64])
            .build();
        let invoking = Ipv6Packet::new_checked(&orig[..]).unwrap();
        let mut out = [0u8; 2000];
        let from: Ipv6Addr = "fd00:244:1::1".parse().unwrap();
        let n = write_v6(&mut out, from, &invoking, IcmpError::HostUnreachable).unwrap();
        assert_eq!(n, 40 + 8 + orig.len());
        let reply = Ipv6Packet::new_checked(&out[..n]).unwrap();
        assert_eq!(reply.src_addr(), from);
        assert_eq!(reply.dst_addr(), invoking.src_addr());
        assert_eq!(reply.next_header(), 58);
        assert_eq!(reply.hop_limit(), 64);
        assert_eq!(
            reply.transport().unwrap(),
            Transport::Icmpv6 {
                ty: 1,
                code: 3,
                echo_id: None
            }
        );
        assert!(verify_icmpv6_checksum(&reply));
        assert_eq!(&reply.payload()[8..], &orig[..], "whole packet quoted");
    }

    #[test]
    fn v6_quote_is_bounded_by_min_mtu_and_buffer() {
        let orig = pkt("fd00::1", "fd00::2")
            .udp(1, 2)
            .payload(&[1; 1400])
            .build();
        let invoking = Ipv6Packet::new_checked(&orig[..]).unwrap();
        let from: Ipv6Addr = "fd00::9".parse().unwrap();
        let mut out = [0u8; 2000];
        let n = write_v6(&mut out, from, &invoking, IcmpError::TimeExceeded).unwrap();
        assert_eq!(n, 1280);
        assert_eq!(&out[48..n], &orig[..1232]);
        assert!(verify_icmpv6_checksum(
            &Ipv6Packet::new_checked(&out[..n]).unwrap()
        ));
        let mut small = [0u8; 200];
        let n = write_v6(&mut small, from, &invoking, IcmpError::TimeExceeded).unwrap();
        assert_eq!(n, 200);
        assert!(verify_icmpv6_checksum(
            &Ipv6Packet::new_checked(&small[..n]).unwrap()
        ));
        // Not even the invoking header plus 8 bytes fits: no message.
        let mut tiny = [0u8; 95];
        assert_eq!(
            write_v6(&mut tiny, from, &invoking, IcmpError::TimeExceeded),
            None
        );
        let mut none = [0u8; 0];
        assert_eq!(
            write_v6(&mut none, from, &invoking, IcmpError::TimeExceeded),
            None
        );
    }

    #[test]
    fn v4_fragmentation_needed_carries_the_next_hop_mtu() {
        let orig = pkt("10.244.1.2", "10.244.2.3")
            .dont_frag(true)
            .tcp(40000, 443)
            .payload(&[0x11; 1480])
            .build();
        let invoking = Ipv4Packet::new_checked(&orig[..]).unwrap();
        let mut out = [0u8; 1500];
        let error = IcmpError::PacketTooBig { mtu: 1420 };
        let n = write_v4(&mut out, Ipv4Addr::new(10, 244, 1, 1), &invoking, error).unwrap();
        // RFC 1191: type 3 code 4, checksum, unused 16 bits, next-hop MTU.
        assert_eq!(&out[20..22], &[3, 4]);
        assert_eq!(&out[24..28], &[0, 0, 0x05, 0x8c]);
        assert!(checksum::verify(&out[20..n], 0));
        assert_eq!(&out[28..n], &orig[..28], "header and 8 bytes quoted");
    }

    #[test]
    fn v6_packet_too_big_carries_the_mtu() {
        let orig = pkt("fd00:244:1::2", "fd00:244:2::3")
            .udp(1, 2)
            .payload(&[0x22; 1452])
            .build();
        let invoking = Ipv6Packet::new_checked(&orig[..]).unwrap();
        let mut out = [0u8; 2000];
        let from: Ipv6Addr = "fd00:244:1::1".parse().unwrap();
        let error = IcmpError::PacketTooBig { mtu: 1420 };
        let n = write_v6(&mut out, from, &invoking, error).unwrap();
        assert_eq!(n, 1280, "RFC 4443: as much as fits in the minimum MTU");
        let reply = Ipv6Packet::new_checked(&out[..n]).unwrap();
        assert!(verify_icmpv6_checksum(&reply));
        // RFC 8201 / 4443 3.2: type 2 code 0, then the 32-bit MTU.
        assert_eq!(&reply.payload()[..2], &[2, 0]);
        assert_eq!(&reply.payload()[4..8], &1420u32.to_be_bytes());
        assert_eq!(&reply.payload()[8..], &orig[..1232]);
    }
}
