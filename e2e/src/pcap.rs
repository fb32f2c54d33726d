//! Reading a pcap file back, and classifying what crossed the underlay.
//!
//! [`read_pcap`] reads tcpdump's files as [`Frame`]s (Ethernet, Linux cooked
//! v1 and v2 link types); [`UnderlayReport::analyze`] classifies every
//! frame; [`contains`] looks for plaintext in the raw bytes. Malformed input
//! is an error or a violation, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use crate::{E2eError, Result};

/// The network-layer protocol of a captured frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkProtocol {
    /// IPv4 (0x0800).
    Ipv4,
    /// IPv6 (0x86dd).
    Ipv6,
    /// ARP (0x0806).
    Arp,
    /// Anything else, by EtherType.
    Other(u16),
}

/// One captured frame: its protocol and its network-layer bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// What it carries.
    pub protocol: LinkProtocol,
    /// The bytes after the link-layer header (as captured).
    pub payload: Vec<u8>,
}

/// Reads the pcap file at `path` (tcpdump's format, either byte order,
/// micro- or nanosecond stamps; link type Ethernet, Linux cooked v1 or v2).
pub fn read_pcap(path: &Path) -> Result<Vec<Frame>> {
    let bytes =
        std::fs::read(path).map_err(|e| E2eError::io(format!("reading {}", path.display()), e))?;
    parse_pcap(&bytes).map_err(|e| E2eError::failed(format!("{}: {e}", path.display())))
}

fn parse_pcap(bytes: &[u8]) -> std::result::Result<Vec<Frame>, String> {
    let header = bytes.get(..24).ok_or("shorter than a pcap header")?;
    let le = match header[..4] {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => return Err("not a pcap file (bad magic)".into()),
    };
    let u32_at = |b: &[u8], at: usize| -> std::result::Result<u32, String> {
        let w: [u8; 4] = b
            .get(at..at + 4)
            .and_then(|s| s.try_into().ok())
            .ok_or("truncated")?;
        Ok(if le {
            u32::from_le_bytes(w)
        } else {
            u32::from_be_bytes(w)
        })
    };
    let link_type = u32_at(header, 20)?;
    let mut frames = Vec::new();
    let mut at = 24;
    while at < bytes.len() {
        let len = u32_at(bytes, at + 8).map_err(|_| format!("truncated record at {at}"))? as usize;
        let data = bytes
            .get(at + 16..at + 16 + len)
            .ok_or_else(|| format!("truncated record at {at}"))?;
        frames.push(frame(link_type, data).ok_or_else(|| {
            format!("record at {at}: too short for link type {link_type} ({len} bytes)")
        })?);
        at += 16 + len;
    }
    Ok(frames)
}

/// The protocol and payload of one captured frame of `link_type`.
fn frame(link_type: u32, data: &[u8]) -> Option<Frame> {
    let be16 = |at: usize| {
        data.get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    let (ethertype, offset) = match link_type {
        1 => (be16(12)?, 14),
        113 => (be16(14)?, 16),
        276 => (be16(0)?, 20),
        _ => return None,
    };
    let protocol = match ethertype {
        0x0800 => LinkProtocol::Ipv4,
        0x86dd => LinkProtocol::Ipv6,
        0x0806 => LinkProtocol::Arp,
        other => LinkProtocol::Other(other),
    };
    Some(Frame {
        protocol,
        payload: data.get(offset..)?.to_vec(),
    })
}

/// What crossed the underlay, frame by frame (see [`UnderlayReport::analyze`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnderlayReport {
    /// Frames seen (each frame between two hosts shows twice: on the bridge
    /// port it came in by and on the one it left by).
    pub frames: usize,
    /// ARP frames.
    pub arp: usize,
    /// WireGuard datagrams between node addresses (UDP, WireGuard port on
    /// both sides, a WireGuard message type).
    pub wireguard_packets: usize,
    /// Their UDP payload bytes.
    pub wireguard_bytes: usize,
    /// TCP segments between a node and the control plane's gRPC port.
    pub control_plane_packets: usize,
    /// Link housekeeping: IGMP to link-local multicast (224.0.0.0/24), and
    /// ICMPv6 from a link-local or unspecified source (neighbour discovery,
    /// MLD).
    pub link_local: usize,
    /// Everything else, described; must be empty.
    pub violations: Vec<String>,
}

/// The ports and hosts [`UnderlayReport::analyze`] expects.
const IPPROTO_IGMP: u8 = 2;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMPV6: u8 = 58;

impl UnderlayReport {
    /// Classifies `frames`: ARP; IPv4 UDP between two of `nodes` with
    /// `wg_port` on both sides carrying a WireGuard message; IPv4 TCP
    /// between a node and `control_plane` with `cp_port` on its side; IGMP
    /// and ICMPv6 link housekeeping. Anything else is a violation.
    pub fn analyze(
        frames: &[Frame],
        nodes: &[Ipv4Addr],
        control_plane: Ipv4Addr,
        wg_port: u16,
        cp_port: u16,
    ) -> Self {
        let mut r = UnderlayReport {
            frames: frames.len(),
            ..Default::default()
        };
        for (i, f) in frames.iter().enumerate() {
            let verdict = match f.protocol {
                LinkProtocol::Arp => {
                    r.arp += 1;
                    Ok(())
                }
                LinkProtocol::Ipv4 => r.ipv4(&f.payload, nodes, control_plane, wg_port, cp_port),
                LinkProtocol::Ipv6 => r.ipv6(&f.payload),
                LinkProtocol::Other(t) => Err(format!("EtherType {t:#06x}")),
            };
            if let Err(what) = verdict {
                r.violations.push(format!("frame {i}: {what}"));
            }
        }
        r
    }

    fn ipv4(
        &mut self,
        p: &[u8],
        nodes: &[Ipv4Addr],
        cp: Ipv4Addr,
        wg_port: u16,
        cp_port: u16,
    ) -> std::result::Result<(), String> {
        if p.len() < 20 || p[0] >> 4 != 4 {
            return Err(format!("a malformed IPv4 packet ({} bytes)", p.len()));
        }
        let ihl = usize::from(p[0] & 0x0f) * 4;
        let proto = p[9];
        let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
        let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
        let l4 = p.get(ihl..).unwrap_or_default();
        let ports = (l4.len() >= 4).then(|| {
            (
                u16::from_be_bytes([l4[0], l4[1]]),
                u16::from_be_bytes([l4[2], l4[3]]),
            )
        });
        let what = format!("IPv4 {src} -> {dst} protocol {proto} ports {ports:?}");
        let is_node = |a: Ipv4Addr| nodes.contains(&a);
        let host = |a: Ipv4Addr| a.is_unspecified() || a == cp || is_node(a);
        if proto == IPPROTO_IGMP && host(src) && dst.octets()[..3] == [224, 0, 0] {
            self.link_local += 1;
            return Ok(());
        }
        if is_node(src) && is_node(dst) {
            if proto != IPPROTO_UDP || ports != Some((wg_port, wg_port)) {
                return Err(format!("{what}: between nodes, but not WireGuard's UDP"));
            }
            let payload = l4.get(8..).unwrap_or_default();
            let wireguard = payload.len() >= 4 && (1..=4).contains(&payload[0]) && {
                payload[1..4] == [0, 0, 0]
            };
            if !wireguard {
                return Err(format!("{what}: not a WireGuard message"));
            }
            self.wireguard_packets += 1;
            self.wireguard_bytes += payload.len();
            return Ok(());
        }
        let to_cp = is_node(src) && dst == cp && ports.is_some_and(|(_, d)| d == cp_port);
        let from_cp = src == cp && is_node(dst) && ports.is_some_and(|(s, _)| s == cp_port);
        if proto == IPPROTO_TCP && (to_cp || from_cp) {
            self.control_plane_packets += 1;
            return Ok(());
        }
        Err(what)
    }

    fn ipv6(&mut self, p: &[u8]) -> std::result::Result<(), String> {
        if p.len() < 40 || p[0] >> 4 != 6 {
            return Err(format!("a malformed IPv6 packet ({} bytes)", p.len()));
        }
        let addr = |at: usize| {
            let b: [u8; 16] = p[at..at + 16].try_into().unwrap_or_default();
            Ipv6Addr::from(b)
        };
        let (src, dst, next) = (addr(8), addr(24), p[6]);
        let link_local = |a: Ipv6Addr| a.is_unspecified() || (a.segments()[0] & 0xffc0) == 0xfe80;
        // MLD reports carry a hop-by-hop header (0) before the ICMPv6 one.
        if link_local(src) && (next == IPPROTO_ICMPV6 || next == 0) {
            self.link_local += 1;
            return Ok(());
        }
        Err(format!(
            "IPv6 {} -> {} next header {next}",
            IpAddr::V6(src),
            IpAddr::V6(dst)
        ))
    }
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    let mut at = 0;
    while let Some(i) = haystack[at..].iter().position(|&b| b == first) {
        let start = at + i + 1;
        if haystack.get(start..start + rest.len()) == Some(rest) {
            return true;
        }
        at = start;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap(link_type: u32, records: &[&[u8]]) -> Vec<u8> {
        let mut f = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&65535u32.to_le_bytes());
        f.extend_from_slice(&link_type.to_le_bytes());
        for r in records {
            f.extend_from_slice(&[0; 8]);
            f.extend_from_slice(&(r.len() as u32).to_le_bytes());
            f.extend_from_slice(&(r.len() as u32).to_le_bytes());
            f.extend_from_slice(r);
        }
        f
    }

    fn udp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        crate::ipv4_udp(src.into(), sport, dst.into(), dport, payload).unwrap()
    }

    #[test]
    fn classifies_frames_of_every_link_type() {
        let wg = udp4(
            [192, 0, 2, 2],
            [192, 0, 2, 3],
            51820,
            51820,
            &[4, 0, 0, 0, 9],
        );
        let plain = udp4([192, 0, 2, 2], [192, 0, 2, 3], 5000, 51820, b"hi");
        let mut eth = vec![0u8; 12];
        eth.extend_from_slice(&[0x08, 0x00]);
        eth.extend_from_slice(&wg);
        let mut sll2 = vec![0x08, 0x00];
        sll2.extend_from_slice(&[0; 18]);
        sll2.extend_from_slice(&plain);
        let mut sll_arp = vec![0u8; 14];
        sll_arp.extend_from_slice(&[0x08, 0x06, 1, 2]);

        let nodes = [Ipv4Addr::new(192, 0, 2, 2), Ipv4Addr::new(192, 0, 2, 3)];
        let cp = Ipv4Addr::new(192, 0, 2, 1);
        let frames = parse_pcap(&pcap(1, &[&eth])).unwrap();
        let r = UnderlayReport::analyze(&frames, &nodes, cp, 51820, 7443);
        assert_eq!((r.wireguard_packets, r.wireguard_bytes), (1, 5));
        assert!(r.violations.is_empty(), "{:?}", r.violations);

        let frames = parse_pcap(&pcap(276, &[&sll2])).unwrap();
        let r = UnderlayReport::analyze(&frames, &nodes, cp, 51820, 7443);
        assert_eq!(r.violations.len(), 1, "{:?}", r.violations);

        let frames = parse_pcap(&pcap(113, &[&sll_arp])).unwrap();
        assert_eq!(frames[0].protocol, LinkProtocol::Arp);
    }

    #[test]
    fn bad_files_are_errors() {
        assert!(parse_pcap(b"nope").is_err());
        let mut truncated = pcap(1, &[&[0u8; 40]]);
        truncated.truncate(truncated.len() - 1);
        assert!(parse_pcap(&truncated).is_err());
        assert!(parse_pcap(&pcap(1, &[&[0u8; 3]])).is_err());
    }

    #[test]
    fn finds_needles() {
        assert!(contains(b"xxWEFTyy", b"WEFT"));
        assert!(!contains(b"xxWEFyy", b"WEFT"));
        assert!(contains(b"WEWEFT", b"WEFT"));
        assert!(!contains(b"", b"W"));
    }
}
