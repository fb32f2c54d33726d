//! The transport-layer summary of a packet: TCP/UDP ports, ICMP type and code
//! (and the echo identifier), for conntrack and for the ICMP-error rules.
//!
//! Contract: the parse runs the TCP/UDP/ICMP views' checks on the slice it
//! is given and reports a header cut short as
//! [`ParseError::TruncatedTransport`]. L4 checksums are not verified: that
//! is the end host's job, not a router's.

use super::{IcmpPacket, ParseError, TcpPacket, UdpPacket};

/// IP protocol numbers.
pub mod proto {
    /// ICMP for IPv4.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
}

/// What the switch knows about a packet's transport header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TCP with its ports.
    Tcp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
    },
    /// UDP with its ports.
    Udp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
    },
    /// ICMP (IPv4).
    Icmpv4 {
        /// Message type.
        ty: u8,
        /// Message code.
        code: u8,
        /// Identifier of an echo request or reply.
        echo_id: Option<u16>,
    },
    /// ICMPv6.
    Icmpv6 {
        /// Message type.
        ty: u8,
        /// Message code.
        code: u8,
        /// Identifier of an echo request or reply.
        echo_id: Option<u16>,
    },
    /// A non-first fragment: no transport header in this packet.
    Fragment,
    /// Another protocol, by number.
    Other(u8),
}

impl Transport {
    /// The IP protocol number; `None` for a non-first fragment (its header
    /// is in the first fragment).
    pub fn protocol(&self) -> Option<u8> {
        match *self {
            Self::Tcp { .. } => Some(proto::TCP),
            Self::Udp { .. } => Some(proto::UDP),
            Self::Icmpv4 { .. } => Some(proto::ICMP),
            Self::Icmpv6 { .. } => Some(proto::ICMPV6),
            Self::Other(p) => Some(p),
            Self::Fragment => None,
        }
    }

    /// `(source, destination)` ports: TCP and UDP ports, for ICMP echo the
    /// identifier as the source "port" (the layout of conntrack's keys),
    /// zero for the rest.
    pub fn ports(&self) -> (u16, u16) {
        match *self {
            Self::Tcp { src_port, dst_port } | Self::Udp { src_port, dst_port } => {
                (src_port, dst_port)
            }
            Self::Icmpv4 { echo_id, .. } | Self::Icmpv6 { echo_id, .. } => {
                (echo_id.unwrap_or(0), 0)
            }
            Self::Fragment | Self::Other(_) => (0, 0),
        }
    }

    /// True for ICMP/ICMPv6 error messages, which must never be answered with
    /// an ICMP error (RFC 1122 3.2.2, RFC 4443 2.4 (e)).
    pub fn is_icmp_error(&self) -> bool {
        match *self {
            // Destination unreachable, source quench, redirect, time
            // exceeded, parameter problem.
            Self::Icmpv4 { ty, .. } => matches!(ty, 3 | 4 | 5 | 11 | 12),
            // Types 0..=127 are errors.
            Self::Icmpv6 { ty, .. } => ty < 128,
            _ => false,
        }
    }
}

/// Parses the transport header of protocol `protocol` at the start of `l4`;
/// `v6` selects ICMPv6 numbering.
pub(crate) fn parse(protocol: u8, l4: &[u8], v6: bool) -> Result<Transport, ParseError> {
    match protocol {
        proto::TCP => {
            let t = TcpPacket::new_checked(l4)?;
            Ok(Transport::Tcp {
                src_port: t.src_port(),
                dst_port: t.dst_port(),
            })
        }
        proto::UDP => {
            let u = UdpPacket::new_checked(l4)?;
            Ok(Transport::Udp {
                src_port: u.src_port(),
                dst_port: u.dst_port(),
            })
        }
        proto::ICMP if !v6 => {
            let i = IcmpPacket::new_checked(l4)?;
            let ty = i.msg_type();
            Ok(Transport::Icmpv4 {
                ty,
                code: i.code(),
                echo_id: matches!(ty, 0 | 8).then(|| i.echo_id()),
            })
        }
        proto::ICMPV6 if v6 => {
            let i = IcmpPacket::new_checked(l4)?;
            let ty = i.msg_type();
            Ok(Transport::Icmpv6 {
                ty,
                code: i.code(),
                echo_id: matches!(ty, 128 | 129).then(|| i.echo_id()),
            })
        }
        other => Ok(Transport::Other(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_ports_and_data_offset() {
        let mut tcp = [0u8; 20];
        tcp[..4].copy_from_slice(&[0x01, 0xbb, 0xc3, 0x50]);
        tcp[12] = 5 << 4;
        assert_eq!(
            parse(6, &tcp, false).unwrap(),
            Transport::Tcp {
                src_port: 443,
                dst_port: 50000
            }
        );
        assert_eq!(
            parse(6, &tcp[..19], false),
            Err(ParseError::TruncatedTransport)
        );
        tcp[12] = 4 << 4;
        assert_eq!(parse(6, &tcp, false), Err(ParseError::TruncatedTransport));
        tcp[12] = 6 << 4; // claims 24 bytes, 20 present
        assert_eq!(parse(6, &tcp, false), Err(ParseError::TruncatedTransport));
    }

    #[test]
    fn udp_ports() {
        let udp = [0, 53, 0x9c, 0x40, 0, 8, 0, 0];
        assert_eq!(
            parse(17, &udp, true).unwrap(),
            Transport::Udp {
                src_port: 53,
                dst_port: 40000
            }
        );
        assert_eq!(
            parse(17, &udp[..7], true),
            Err(ParseError::TruncatedTransport)
        );
        assert_eq!(parse(17, &[], true), Err(ParseError::TruncatedTransport));
    }

    #[test]
    fn icmp_types_by_family() {
        let echo = [8, 0, 0, 0, 0x12, 0x34, 0, 1];
        assert_eq!(
            parse(1, &echo, false).unwrap(),
            Transport::Icmpv4 {
                ty: 8,
                code: 0,
                echo_id: Some(0x1234)
            }
        );
        let unreach = [3, 1, 0, 0, 0, 0, 0, 0];
        let t = parse(1, &unreach, false).unwrap();
        assert_eq!(
            t,
            Transport::Icmpv4 {
                ty: 3,
                code: 1,
                echo_id: None
            }
        );
        assert!(t.is_icmp_error());
        let echo6 = [128, 0, 0, 0, 0xab, 0xcd, 0, 1];
        let t = parse(58, &echo6, true).unwrap();
        assert_eq!(
            t,
            Transport::Icmpv6 {
                ty: 128,
                code: 0,
                echo_id: Some(0xabcd)
            }
        );
        assert!(!t.is_icmp_error());
        assert!(parse(58, &[1, 3, 0, 0, 0, 0, 0, 0], true)
            .unwrap()
            .is_icmp_error());
        // ICMP numbers in the wrong family are just other protocols.
        assert_eq!(parse(58, &echo, false).unwrap(), Transport::Other(58));
        assert_eq!(parse(1, &echo, true).unwrap(), Transport::Other(1));
        assert_eq!(
            parse(1, &echo[..7], false),
            Err(ParseError::TruncatedTransport)
        );
    }

    #[test]
    fn other_protocols_need_nothing() {
        assert_eq!(parse(47, &[], false).unwrap(), Transport::Other(47));
        assert!(!Transport::Fragment.is_icmp_error());
    }
}
