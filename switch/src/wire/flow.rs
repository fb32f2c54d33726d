//! A TCP or UDP packet as the offloads and (later) service NAT handle it:
//! the IP header and the transport header right after it, with the state
//! of the transport checksum.
//!
//! Contract: [`FlowPacket::new_checked`] runs the IP view's full check,
//! refuses IPv4 fragments and anything but TCP or UDP directly after the
//! IP header (IPv6 extension headers included), and runs the TCP/UDP
//! view's check; [`FlowPacket::new_fitted`] does the same on a header
//! copied in front of a payload after setting the IP (and UDP) lengths to
//! the buffer's. Nothing after either can panic, and nothing but them
//! changes a length, so the views handed out stay valid.
//!
//! The checksum state says what the transport checksum field holds:
//! [`L4Checksum::Full`], the checksum; [`L4Checksum::Partial`], only the
//! pseudo-header sum (virtio `NEEDS_CSUM`: TSO/USO super-packets, GRO
//! output), which the device completes. [`FlowPacket::rewrite_src`] and
//! [`FlowPacket::rewrite_dst`] update the field incrementally for either:
//! address and port for a full checksum, the address alone for a partial
//! one (ports are not in the pseudo-header).

use std::net::{IpAddr, SocketAddr};

use super::checksum;
use super::ip::{FamilyMismatch, IpPacket};
use super::tcp::{self, TcpPacket};
use super::transport::proto;
use super::udp::{self, UdpPacket};
use super::ParseError;

/// The transport protocol of a [`FlowPacket`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl L4Proto {
    /// The IP protocol number.
    pub const fn number(self) -> u8 {
        match self {
            Self::Tcp => proto::TCP,
            Self::Udp => proto::UDP,
        }
    }

    /// Offset of the checksum field within the transport header.
    pub const fn checksum_offset(self) -> usize {
        match self {
            Self::Tcp => tcp::CHECKSUM_OFFSET,
            Self::Udp => udp::CHECKSUM_OFFSET,
        }
    }
}

/// What a packet's transport checksum field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4Checksum {
    /// The checksum (or, UDP over IPv4, 0 for none).
    Full,
    /// Only the pseudo-header sum, to be completed over the transport
    /// header and payload by whoever sends it (virtio `NEEDS_CSUM`).
    Partial,
}

/// A checked IP + TCP/UDP packet in `T`.
#[derive(Debug, Clone)]
pub struct FlowPacket<T> {
    ip: IpPacket<T>,
    proto: L4Proto,
    csum: L4Checksum,
}

/// The transport protocol of `ip`, if it is TCP or UDP right after the IP
/// header and its header is there.
fn check_l4<T: AsRef<[u8]>>(ip: &IpPacket<T>) -> Result<L4Proto, ParseError> {
    let number = match ip {
        IpPacket::V4(p) if p.is_fragment() => return Err(ParseError::Fragmented),
        IpPacket::V4(p) => p.protocol(),
        IpPacket::V6(p) => p.next_header(),
    };
    match number {
        proto::TCP => TcpPacket::new_checked(ip.payload()).map(|_| L4Proto::Tcp),
        proto::UDP => UdpPacket::new_checked(ip.payload()).map(|_| L4Proto::Udp),
        _ => Err(ParseError::NotTcpOrUdp),
    }
}

fn octets(addr: &IpAddr) -> ([u8; 16], usize) {
    match addr {
        IpAddr::V4(a) => {
            let mut o = [0u8; 16];
            o[..4].copy_from_slice(&a.octets());
            (o, 4)
        }
        IpAddr::V6(a) => (a.octets(), 16),
    }
}

impl<T: AsRef<[u8]>> FlowPacket<T> {
    /// Checks untrusted bytes whose transport checksum is in state `csum`.
    pub fn new_checked(buffer: T, csum: L4Checksum) -> Result<Self, ParseError> {
        let ip = IpPacket::new_checked(buffer)?;
        let proto = check_l4(&ip)?;
        Ok(Self { ip, proto, csum })
    }

    /// The IP view (read-only: lengths change only through the
    /// constructors).
    pub fn ip(&self) -> &IpPacket<T> {
        &self.ip
    }

    /// TCP or UDP.
    pub fn proto(&self) -> L4Proto {
        self.proto
    }

    /// Whether this is IPv6.
    pub fn is_v6(&self) -> bool {
        self.ip.is_v6()
    }

    /// What the transport checksum field holds.
    pub fn checksum_state(&self) -> L4Checksum {
        self.csum
    }

    /// The TCP view, if TCP.
    pub fn tcp(&self) -> Option<TcpPacket<&[u8]>> {
        match self.proto {
            // Checked by the constructors over these very bytes.
            L4Proto::Tcp => TcpPacket::new_checked(self.ip.payload()).ok(),
            L4Proto::Udp => None,
        }
    }

    /// The UDP view, if UDP.
    pub fn udp(&self) -> Option<UdpPacket<&[u8]>> {
        match self.proto {
            L4Proto::Udp => UdpPacket::new_checked(self.ip.payload()).ok(),
            L4Proto::Tcp => None,
        }
    }

    /// Where the transport header starts: the IP header length.
    pub fn ip_header_len(&self) -> usize {
        self.ip.header_len()
    }

    /// The IP and transport headers' length: where the payload starts.
    pub fn header_len(&self) -> usize {
        self.ip.header_len()
            + match self.tcp() {
                Some(t) => t.header_len(),
                None => udp::HEADER_LEN,
            }
    }

    /// The packet's length by its IP header.
    pub fn total_len(&self) -> usize {
        self.ip.total_len()
    }

    /// The IP and transport headers.
    pub fn headers(&self) -> &[u8] {
        self.ip
            .packet_bytes()
            .get(..self.header_len())
            .unwrap_or_default()
    }

    /// The transport payload.
    pub fn payload(&self) -> &[u8] {
        self.ip
            .packet_bytes()
            .get(self.header_len()..)
            .unwrap_or_default()
    }

    /// The IPv4 identification; 0 for IPv6 (see [`Self::set_ident`]).
    pub fn ident(&self) -> u16 {
        match &self.ip {
            IpPacket::V4(p) => p.ident(),
            IpPacket::V6(_) => 0,
        }
    }

    /// Whether the packet may not be fragmented: IPv4 DF, always for IPv6
    /// (routers never fragment it).
    pub fn dont_frag(&self) -> bool {
        match &self.ip {
            IpPacket::V4(p) => p.dont_frag(),
            IpPacket::V6(_) => true,
        }
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        if let Some(t) = self.tcp() {
            t.src_port()
        } else {
            self.udp().map_or(0, |u| u.src_port())
        }
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        if let Some(t) = self.tcp() {
            t.dst_port()
        } else {
            self.udp().map_or(0, |u| u.dst_port())
        }
    }

    /// Source address and port.
    pub fn src(&self) -> SocketAddr {
        SocketAddr::new(self.ip.src_addr(), self.src_port())
    }

    /// Destination address and port.
    pub fn dst(&self) -> SocketAddr {
        SocketAddr::new(self.ip.dst_addr(), self.dst_port())
    }

    /// The pseudo-header sum of the transport part.
    pub fn pseudo_header(&self) -> u64 {
        let l4_len = self.ip.payload().len();
        self.ip.pseudo_header(self.proto.number(), l4_len)
    }

    /// Whether the transport checksum field is right for its state: the
    /// checksum of the whole transport part (an absent UDP checksum over
    /// IPv4 passes), or the pseudo-header sum.
    pub fn checksum_ok(&self) -> bool {
        let pseudo = self.pseudo_header();
        if self.csum == L4Checksum::Partial {
            return self.l4_checksum_field() == checksum::fold(pseudo);
        }
        if let Some(t) = self.tcp() {
            t.verify_checksum(pseudo)
        } else {
            self.udp()
                .is_some_and(|u| u.verify_checksum(pseudo, !self.is_v6()))
        }
    }

    fn l4_checksum_field(&self) -> u16 {
        if let Some(t) = self.tcp() {
            t.checksum()
        } else {
            self.udp().map_or(0, |u| u.checksum())
        }
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.ip.into_inner()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> FlowPacket<T> {
    /// Checks the headers at the start of `buffer` (as
    /// [`Self::new_checked`], but for the lengths) and makes the packet
    /// exactly as long as the buffer: the IP length fields, and the UDP
    /// length. The IPv4 header checksum is updated (valid if it was); the
    /// transport checksum is left for the caller to fill.
    pub fn new_fitted(buffer: T, csum: L4Checksum) -> Result<Self, ParseError> {
        let ip = IpPacket::new_fitted(buffer)?;
        let proto = check_l4(&ip)?;
        let mut p = Self { ip, proto, csum };
        let l4_len = u16::try_from(p.ip.payload().len()).unwrap_or(u16::MAX);
        if let Some(mut u) = p.udp_mut() {
            u.set_len_field(l4_len);
        }
        Ok(p)
    }

    /// The TCP view, mutable, if TCP. Its setters leave the checksum alone.
    pub fn tcp_mut(&mut self) -> Option<TcpPacket<&mut [u8]>> {
        match self.proto {
            L4Proto::Tcp => TcpPacket::new_checked(self.ip.payload_mut()).ok(),
            L4Proto::Udp => None,
        }
    }

    /// The UDP view, mutable, if UDP. Its setters leave the checksum alone.
    pub fn udp_mut(&mut self) -> Option<UdpPacket<&mut [u8]>> {
        match self.proto {
            L4Proto::Udp => UdpPacket::new_checked(self.ip.payload_mut()).ok(),
            L4Proto::Tcp => None,
        }
    }

    /// Sets the IPv4 identification (header checksum updated); nothing for
    /// IPv6, which has none outside a fragment header.
    pub fn set_ident(&mut self, ident: u16) {
        if let IpPacket::V4(p) = &mut self.ip {
            p.set_ident(ident);
        }
    }

    /// Computes the full transport checksum and stores it; the state
    /// becomes [`L4Checksum::Full`].
    pub fn fill_checksum(&mut self) {
        let pseudo = self.pseudo_header();
        if let Some(mut t) = self.tcp_mut() {
            t.fill_checksum(pseudo);
        } else if let Some(mut u) = self.udp_mut() {
            u.fill_checksum(pseudo);
        }
        self.csum = L4Checksum::Full;
    }

    /// Stores the pseudo-header sum in the transport checksum field, as a
    /// device completing it expects; the state becomes
    /// [`L4Checksum::Partial`].
    pub fn fill_partial_checksum(&mut self) {
        let partial = checksum::fold(self.pseudo_header());
        self.set_l4_checksum(partial);
        self.csum = L4Checksum::Partial;
    }

    fn set_l4_checksum(&mut self, sum: u16) {
        if let Some(mut t) = self.tcp_mut() {
            t.set_checksum(sum);
        } else if let Some(mut u) = self.udp_mut() {
            u.set_checksum(sum);
        }
    }

    /// Updates the transport checksum field for an address (and port)
    /// change, for the checksum state.
    fn adjust_l4_checksum(&mut self, old: IpAddr, new: IpAddr, ports: (u16, u16)) {
        let field = self.l4_checksum_field();
        let ((old_o, n), (new_o, _)) = (octets(&old), octets(&new));
        let (old_a, new_a) = (
            old_o.get(..n).unwrap_or_default(),
            new_o.get(..n).unwrap_or_default(),
        );
        let udp = self.proto == L4Proto::Udp;
        let sum = match self.csum {
            // UDP over IPv4 without a checksum stays without one.
            L4Checksum::Full if udp && field == 0 && !self.is_v6() => return,
            L4Checksum::Full => {
                let s = checksum::update(field, old_a, new_a);
                let s = checksum::update_word(s, ports.0, ports.1);
                if udp && s == 0 {
                    0xffff
                } else {
                    s
                }
            }
            L4Checksum::Partial => checksum::update_sum(field, old_a, new_a),
        };
        self.set_l4_checksum(sum);
    }

    /// Rewrites the source address and port (source NAT), keeping the
    /// IPv4 header checksum and the transport checksum field right for its
    /// state. An address of the other family is refused; nothing changes.
    pub fn rewrite_src(&mut self, addr: IpAddr, port: u16) -> Result<(), FamilyMismatch> {
        let old = self.ip.src_addr();
        if old.is_ipv4() != addr.is_ipv4() {
            return Err(FamilyMismatch);
        }
        self.adjust_l4_checksum(old, addr, (self.src_port(), port));
        self.ip.set_src_addr(addr)?;
        if let Some(mut t) = self.tcp_mut() {
            t.set_src_port(port);
        } else if let Some(mut u) = self.udp_mut() {
            u.set_src_port(port);
        }
        Ok(())
    }

    /// Rewrites the destination address and port (destination NAT), as
    /// [`Self::rewrite_src`].
    pub fn rewrite_dst(&mut self, addr: IpAddr, port: u16) -> Result<(), FamilyMismatch> {
        let old = self.ip.dst_addr();
        if old.is_ipv4() != addr.is_ipv4() {
            return Err(FamilyMismatch);
        }
        self.adjust_l4_checksum(old, addr, (self.dst_port(), port));
        self.ip.set_dst_addr(addr)?;
        if let Some(mut t) = self.tcp_mut() {
            t.set_dst_port(port);
        } else if let Some(mut u) = self.udp_mut() {
            u.set_dst_port(port);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload::segment;
    use crate::testing::{as_partial, pkt, valid, Fixture};
    use crate::wire::vnet::{GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// `f` with a new source or destination.
    fn moved(f: &Fixture, src: bool, addr: &str, port: u16) -> Fixture {
        let mut g = f.clone();
        if src {
            (g.src, g.src_port) = (ip(addr), port);
        } else {
            (g.dst, g.dst_port) = (ip(addr), port);
        }
        g
    }

    fn cases() -> Vec<(Fixture, &'static str)> {
        vec![
            (Fixture::tcp_stream(false, 7, 1000, 12), "10.96.0.1"),
            (Fixture::udp_stream(false, 333), "10.96.0.2"),
            (Fixture::tcp_stream(true, 7, 999, 0), "fd00:96::1"),
            (Fixture::udp_stream(true, 1), "fd00:96::2"),
        ]
    }

    #[test]
    fn rewrites_with_full_checksums_match_a_fresh_build() {
        for (f, to) in cases() {
            for src in [false, true] {
                let mut b = f.build();
                let mut p = FlowPacket::new_checked(&mut b[..], L4Checksum::Full).unwrap();
                if src {
                    p.rewrite_src(ip(to), 8080).unwrap();
                } else {
                    p.rewrite_dst(ip(to), 8080).unwrap();
                }
                assert!(p.checksum_ok());
                let want = moved(&f, src, to, 8080).build();
                assert_eq!(b, want, "{f:?} src {src}");
                assert!(valid(&b));
            }
        }
    }

    #[test]
    fn rewrites_of_super_packets_keep_the_partial_sum_right() {
        for (f, to) in cases() {
            let gso_type = match (f.l4, f.src.is_ipv6()) {
                (crate::testing::L4::Tcp, false) => GSO_TCPV4,
                (crate::testing::L4::Tcp, true) => GSO_TCPV6,
                _ => GSO_UDP_L4,
            };
            let big = Fixture {
                payload: crate::testing::pattern(5000, 1),
                ..f.clone()
            };
            let (hdr, mut b) = as_partial(big.build(), gso_type, 1000);
            let mut p = FlowPacket::new_checked(&mut b[..], L4Checksum::Partial).unwrap();
            assert!(p.checksum_ok(), "the field holds the pseudo-header sum");
            p.rewrite_dst(ip(to), 53).unwrap();
            assert!(p.checksum_ok());
            let (_, want) = as_partial(moved(&big, false, to, 53).build(), gso_type, 1000);
            assert_eq!(b, want, "{f:?}");
            // And the segments the device (or `segment`) makes are right.
            let mut segs = 0;
            segment::segment(&mut b, &hdr, 65_535, |s| {
                assert!(valid(s));
                let seg = FlowPacket::new_checked(s, L4Checksum::Full).unwrap();
                assert_eq!(seg.dst(), SocketAddr::new(ip(to), 53));
                segs += 1;
            })
            .unwrap();
            assert_eq!(segs, 5);
        }
    }

    #[test]
    fn udp_over_ipv4_without_a_checksum_stays_without() {
        let mut b = pkt("10.0.0.1", "10.0.0.2").udp(1, 2).payload(b"x").build();
        b[26..28].fill(0);
        let mut p = FlowPacket::new_checked(&mut b[..], L4Checksum::Full).unwrap();
        assert!(p.checksum_ok());
        p.rewrite_src(ip("10.0.0.9"), 9).unwrap();
        assert_eq!(&b[26..28], &[0, 0]);
        assert_eq!(&b[12..16], &[10, 0, 0, 9]);
        assert!(valid(&b));
    }

    #[test]
    fn the_other_family_is_refused_and_nothing_changes() {
        let mut b = Fixture::tcp_stream(false, 1, 10, 0).build();
        let before = b.clone();
        let mut p = FlowPacket::new_checked(&mut b[..], L4Checksum::Full).unwrap();
        assert_eq!(p.rewrite_dst(ip("fd00::1"), 1), Err(FamilyMismatch));
        assert_eq!(p.rewrite_src(ip("fd00::1"), 1), Err(FamilyMismatch));
        assert_eq!(b, before);
    }

    #[test]
    fn only_whole_tcp_and_udp_packets_are_flow_packets() {
        let check = |b: &[u8]| FlowPacket::new_checked(b, L4Checksum::Full).map(|p| p.proto());
        assert_eq!(
            check(&pkt("10.0.0.1", "10.0.0.2").tcp(1, 2).build()),
            Ok(L4Proto::Tcp)
        );
        assert_eq!(
            check(&pkt("fd00::1", "fd00::2").udp(1, 2).build()),
            Ok(L4Proto::Udp)
        );
        assert_eq!(
            check(&pkt("10.0.0.1", "10.0.0.2").icmp(8, 0).build()),
            Err(ParseError::NotTcpOrUdp)
        );
        assert_eq!(
            check(&pkt("fd00::1", "fd00::2").ext_hop_by_hop().udp(1, 2).build()),
            Err(ParseError::NotTcpOrUdp)
        );
        assert_eq!(
            check(&pkt("10.0.0.1", "10.0.0.2").frag(0, true).udp(1, 2).build()),
            Err(ParseError::Fragmented)
        );
        assert_eq!(
            check(&pkt("10.0.0.1", "10.0.0.2").raw(6).payload(&[0; 19]).build()),
            Err(ParseError::TruncatedTransport)
        );
        let f = Fixture::tcp_stream(false, 3, 100, 12).build();
        let p = FlowPacket::new_checked(&f[..], L4Checksum::Full).unwrap();
        assert_eq!(
            (p.ip_header_len(), p.header_len(), p.total_len()),
            (20, 52, 152)
        );
        assert_eq!(p.headers(), &f[..52]);
        assert_eq!(p.payload(), &f[52..]);
        assert_eq!(p.src(), "10.244.1.2:40000".parse().unwrap());
    }

    #[test]
    fn fitting_sets_the_lengths_from_the_buffer() {
        let f = Fixture::udp_stream(false, 100).build();
        let mut cut = f[..28 + 40].to_vec();
        let mut p = FlowPacket::new_fitted(&mut cut[..], L4Checksum::Full).unwrap();
        p.fill_checksum();
        assert!(
            valid(&cut),
            "IPv4 total length, header checksum, UDP length"
        );
        let f6 = Fixture::tcp_stream(true, 1, 100, 0).build();
        let mut cut = f6[..60 + 10].to_vec();
        let mut p = FlowPacket::new_fitted(&mut cut[..], L4Checksum::Full).unwrap();
        p.fill_checksum();
        assert!(valid(&cut));
        // A header that does not fit is refused as by `new_checked`.
        assert!(FlowPacket::new_fitted(&mut f6[..50].to_vec()[..], L4Checksum::Full).is_err());
    }
}
