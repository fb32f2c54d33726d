//! Where an IP packet's headers are: the bounds checks that segmenting and
//! coalescing share. Every accessor indexes within what [`Layout::parse`]
//! checked.

/// IP protocol numbers.
pub const TCP: u8 = 6;
pub const UDP: u8 = 17;

/// The smallest TCP and UDP headers.
pub const TCP_MIN: usize = 20;
pub const UDP_LEN: usize = 8;

/// TCP flags (byte 13 of the header).
pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;
pub const URG: u8 = 0x20;
pub const ECE: u8 = 0x40;
pub const CWR: u8 = 0x80;

/// The checked layout of an IPv4 or IPv6 packet carrying TCP or UDP
/// directly (no IPv6 extension headers, no IPv4 fragment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub v6: bool,
    /// The transport header's offset (the IP header length).
    pub l4: usize,
    pub proto: u8,
    /// The end of the transport header: where the payload starts.
    pub hlen: usize,
    /// The packet's length by its IP header (`<=` the buffer's).
    pub len: usize,
}

fn be16(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([b[i], b[i + 1]])
}

impl Layout {
    /// The layout of `pkt`, or `None` if it is not a well-formed IPv4/IPv6
    /// TCP or UDP packet (or an IPv4 fragment, or IPv6 with extension
    /// headers, or an IPv6 jumbogram).
    pub fn parse(pkt: &[u8]) -> Option<Self> {
        let first = *pkt.first()?;
        let (v6, l4, proto, len) = match first >> 4 {
            4 => {
                let ihl = usize::from(first & 0x0f) * 4;
                if ihl < 20 || pkt.len() < ihl {
                    return None;
                }
                let len = usize::from(be16(pkt, 2));
                // More fragments, or a fragment offset: not one whole packet.
                if be16(pkt, 6) & 0x3fff != 0 {
                    return None;
                }
                (false, ihl, pkt[9], len)
            }
            6 => {
                if pkt.len() < 40 {
                    return None;
                }
                let payload = usize::from(be16(pkt, 4));
                if payload == 0 {
                    return None;
                }
                (true, 40, pkt[6], 40 + payload)
            }
            _ => return None,
        };
        if len < l4 || len > pkt.len() {
            return None;
        }
        let hlen = match proto {
            TCP => {
                if len < l4 + TCP_MIN {
                    return None;
                }
                let doff = usize::from(pkt[l4 + 12] >> 4) * 4;
                if doff < TCP_MIN {
                    return None;
                }
                l4 + doff
            }
            UDP => l4 + UDP_LEN,
            _ => return None,
        };
        if hlen > len {
            return None;
        }
        Some(Self {
            v6,
            l4,
            proto,
            hlen,
            len,
        })
    }

    /// The source and destination address bytes, as the pseudo-header
    /// takes them.
    pub fn addrs<'a>(&self, pkt: &'a [u8]) -> &'a [u8] {
        if self.v6 {
            &pkt[8..40]
        } else {
            &pkt[12..20]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{tcp4, tcp6, udp4};
    use super::*;

    #[test]
    fn finds_the_headers() {
        let p = tcp4(100, 0, 12);
        let l = Layout::parse(&p).unwrap();
        assert_eq!(
            (l.v6, l.l4, l.proto, l.hlen, l.len),
            (false, 20, TCP, 52, 152)
        );
        let p = tcp6(7, 0, 0);
        let l = Layout::parse(&p).unwrap();
        assert_eq!((l.v6, l.l4, l.hlen, l.len), (true, 40, 60, 67));
        let p = udp4(9);
        let l = Layout::parse(&p).unwrap();
        assert_eq!((l.proto, l.hlen, l.len), (UDP, 28, 37));
    }

    #[test]
    fn refuses_what_it_cannot_vouch_for() {
        let good = tcp4(100, 0, 12);
        // Truncated anywhere.
        for n in 0..good.len() {
            assert_eq!(Layout::parse(&good[..n]), None, "{n}");
        }
        // A fragment.
        let mut p = good.clone();
        p[6] = 0x20;
        assert_eq!(Layout::parse(&p), None);
        // A TCP data offset below 5 words or past the end.
        let mut p = good.clone();
        p[32] = 0x40;
        assert_eq!(Layout::parse(&p), None);
        let mut p = good.clone();
        p[32] = 0xf0;
        p[2..4].copy_from_slice(&70u16.to_be_bytes());
        assert_eq!(Layout::parse(&p), None);
        // ICMP, version 5, an IPv6 jumbogram.
        let mut p = good.clone();
        p[9] = 1;
        assert_eq!(Layout::parse(&p), None);
        let mut p = good.clone();
        p[0] = 0x55;
        assert_eq!(Layout::parse(&p), None);
        let mut p = tcp6(7, 0, 0);
        p[4..6].fill(0);
        assert_eq!(Layout::parse(&p), None);
        // Trailing bytes past the IP length are tolerated.
        let mut p = good.clone();
        p.extend_from_slice(&[0; 6]);
        assert_eq!(Layout::parse(&p).unwrap().len, 152);
    }
}
