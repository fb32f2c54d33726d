//! ICMP (RFC 792) and ICMPv6 (RFC 4443) error messages written into a
//! caller-provided buffer, addressed back to the invoking packet's source.
//!
//! Contract: the writers never allocate or panic; they return the length
//! written, or `None` if the buffer cannot hold a useful message. Whether an
//! error may be sent at all (not for ICMP errors, non-first fragments, rate
//! limit) is the caller's decision. Quotes: IPv4 quotes the invoking header
//! plus the first 8 payload bytes (RFC 792); IPv6 quotes as much of the
//! invoking packet as fits in the IPv6 minimum MTU (RFC 4443 2.4 (c)), less
//! if the buffer is smaller, but never less than its header plus 8 bytes.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::checksum;
use super::ipv4::{self, Ipv4Packet};
use super::ipv6::{self, Ipv6Packet};
use super::transport::proto;

/// TTL / hop limit of the errors the switch originates.
const REPLY_HOP_LIMIT: u8 = 64;
/// ICMP and ICMPv6 error header: type, code, checksum, 4 unused bytes.
const ICMP_HEADER_LEN: usize = 8;
/// The IPv6 minimum MTU, which bounds an ICMPv6 error (RFC 4443 2.4 (c)).
const IPV6_MIN_MTU: usize = 1280;
/// IPv4 precedence "internetwork control" in the TOS byte, as Linux sends.
const TOS_INTERNETWORK_CONTROL: u8 = 0xc0;

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
}

impl IcmpError {
    /// ICMP (IPv4) type and code.
    pub const fn v4(self) -> (u8, u8) {
        match self {
            Self::NetUnreachable => (3, 0),
            Self::HostUnreachable => (3, 1),
            Self::AdminProhibited => (3, 13),
            Self::TimeExceeded => (11, 0),
        }
    }

    /// ICMPv6 type and code.
    pub const fn v6(self) -> (u8, u8) {
        match self {
            Self::NetUnreachable => (1, 0),
            Self::HostUnreachable => (1, 3),
            Self::AdminProhibited => (1, 1),
            Self::TimeExceeded => (3, 0),
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
    let total = ipv4::HEADER_LEN + icmp_len;
    let out = out.get_mut(..total)?;
    let (ip, icmp) = out.split_at_mut(ipv4::HEADER_LEN);

    // IPv4 header: no options, id 0, not fragmented.
    ip.fill(0);
    ip[0] = 0x45;
    ip[1] = TOS_INTERNETWORK_CONTROL;
    // `total` is at most 20 + 8 + 60 + 8 bytes, so it fits a u16.
    ip[2..4].copy_from_slice(&u16::try_from(total).ok()?.to_be_bytes());
    ip[8] = REPLY_HOP_LIMIT;
    ip[9] = proto::ICMP;
    ip[12..16].copy_from_slice(&from.octets());
    ip[16..20].copy_from_slice(&invoking.src_addr().octets());
    let sum = checksum::checksum(ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());

    let (ty, code) = error.v4();
    icmp[..ICMP_HEADER_LEN].copy_from_slice(&[ty, code, 0, 0, 0, 0, 0, 0]);
    icmp[ICMP_HEADER_LEN..].copy_from_slice(quote);
    let sum = checksum::checksum(icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
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
    const OVERHEAD: usize = ipv6::HEADER_LEN + ICMP_HEADER_LEN;
    let original = invoking.packet_bytes();
    let room = out
        .len()
        .checked_sub(OVERHEAD)?
        .min(IPV6_MIN_MTU - OVERHEAD);
    let quote_len = original.len().min(room);
    if quote_len < original.len().min(ipv6::HEADER_LEN + 8) {
        return None;
    }
    let quote = original.get(..quote_len)?;
    let icmp_len = ICMP_HEADER_LEN + quote_len;
    let total = ipv6::HEADER_LEN + icmp_len;
    let out = out.get_mut(..total)?;
    let (ip, icmp) = out.split_at_mut(ipv6::HEADER_LEN);

    let to = invoking.src_addr();
    ip[..4].copy_from_slice(&[0x60, 0, 0, 0]);
    // `icmp_len` is at most 1240, so it fits a u16.
    let payload_len = u16::try_from(icmp_len).ok()?;
    ip[4..6].copy_from_slice(&payload_len.to_be_bytes());
    ip[6] = proto::ICMPV6;
    ip[7] = REPLY_HOP_LIMIT;
    ip[8..24].copy_from_slice(&from.octets());
    ip[24..40].copy_from_slice(&to.octets());

    let (ty, code) = error.v6();
    icmp[..ICMP_HEADER_LEN].copy_from_slice(&[ty, code, 0, 0, 0, 0, 0, 0]);
    icmp[ICMP_HEADER_LEN..].copy_from_slice(quote);
    let pseudo = checksum::pseudo_header_v6(from, to, proto::ICMPV6, u32::from(payload_len));
    let sum = checksum::finish(checksum::sum(icmp, pseudo));
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{pkt, verify_icmpv6_checksum};
    use super::super::transport::Transport;
    use super::*;

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
        assert!(checksum::verify(icmp), "ICMP checksum");
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
        assert!(checksum::verify(&out[20..n]));
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
}
