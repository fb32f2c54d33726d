//! Root-only tests of what the data plane needs from TUN devices: the
//! virtio-net header (`IFF_VNET_HDR`, the ports' default) and the offloads
//! behind it, against the real kernel.
//!
//! - A port's TUN carries the header, yet `try_recv`/`try_send` still move
//!   plain IP packets (so every other user of a port sees no change), and
//!   the raw calls show the header.
//! - With TSO on (`TUNSETOFFLOAD`), a TCP stream from the namespace comes
//!   out as GSO super-packets, which the data plane's segmenter splits into
//!   packets with valid checksums that add up to the stream.
//!
//! They fail (never skip) without root, work in namespaces of their own,
//! removed in `Drop` guards, and bound every wait.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use weft_node_agent::kernel::netns;
use weft_node_agent::kernel::tun::{Tun, TunOptions};
use weft_switch::offload::{segment, VnetHdr, VNET_HDR_LEN};
use weft_switch::testing::{pkt, valid};
use weft_switch::wire::{tcp_flags, FlowPacket, L4Checksum};

mod support;
use support::{ip, TestNs};

/// Prefix of this binary's namespace names.
const NS_PREFIX: &str = "weft-dt";

/// A port-like TUN `wv0` (the ports' options, but not persistent) in a new
/// namespace, with 10.77.0.1/24, up.
fn port_tun(tag: &str) -> (TestNs, Tun) {
    let t = TestNs::new(NS_PREFIX, tag);
    let options = TunOptions {
        persist: false,
        ..TunOptions::persistent()
    };
    assert!(options.vnet_hdr, "ports carry the virtio-net header");
    let tun = netns::run_in(&t.ns, || Tun::create("wv0", &options))
        .expect("enter the namespace")
        .expect("create the TUN");
    ip(&["-n", &t.name, "addr", "add", "10.77.0.1/24", "dev", "wv0"]);
    ip(&["-n", &t.name, "link", "set", "wv0", "up"]);
    (t, tun)
}

/// An ICMP echo request 10.77.0.2 -> 10.77.0.1 (32 bytes).
fn echo_request() -> Vec<u8> {
    pkt("10.77.0.2", "10.77.0.1")
        .dont_frag(true)
        .icmp(8, 0)
        .payload(&[1, 2, 3, 4])
        .build()
}

/// Reads from `tun` until `f` takes a packet or 5 s pass.
fn read_until(tun: &Tun, raw: bool, mut f: impl FnMut(&[u8]) -> bool) {
    let mut buf = vec![0u8; 70_000];
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let got = if raw {
            tun.try_recv_raw(&mut buf)
        } else {
            tun.try_recv(&mut buf)
        };
        match got {
            Ok(n) => {
                if f(&buf[..n]) {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(2))
            }
            Err(e) => panic!("reading the TUN: {e}"),
        }
    }
    panic!("nothing matching came out of the TUN within 5 s");
}

#[test]
fn a_port_tun_hides_its_virtio_header_from_plain_reads_and_writes() {
    let (_t, tun) = port_tun("plain");
    assert!(tun.has_vnet_hdr());
    // Plain write in, plain read out: the kernel answers the echo.
    tun.try_send(&echo_request())
        .expect("write an echo request");
    read_until(&tun, false, |p| {
        p.len() == 32 && p[0] == 0x45 && p[9] == 1 && p[20] == 0 && valid(p)
    });
    // The raw read shows the (empty: no offloads) header before the packet.
    tun.try_send(&echo_request())
        .expect("write an echo request");
    read_until(&tun, true, |b| {
        b.len() == VNET_HDR_LEN + 32
            && VnetHdr::decode(b) == Some(VnetHdr::default())
            && b[VNET_HDR_LEN] == 0x45
            && b[VNET_HDR_LEN + 9] == 1
    });
    // A TUN without the header reports so.
    let t = TestNs::new(NS_PREFIX, "nohdr");
    let plain = netns::run_in(&t.ns, || Tun::create("wp0", &TunOptions::default()))
        .unwrap()
        .unwrap();
    assert!(!plain.has_vnet_hdr());
}

#[test]
fn with_tso_a_tcp_stream_comes_out_in_super_packets_that_split_cleanly() {
    let (t, tun) = port_tun("tso");
    let flags = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
    tun.set_offload(flags).expect("TUNSETOFFLOAD");
    // A client in the namespace connects to 10.77.0.2, out of the TUN; the
    // test plays the far side on the raw TUN: it answers the SYN, then
    // never acknowledges, so the first window goes out (as super-packets)
    // and the write blocks until its timeout.
    let server = SocketAddr::from((Ipv4Addr::new(10, 77, 0, 2), 7000));
    let ns = t.ns.clone();
    let client = std::thread::spawn(move || {
        netns::run_in(&ns, move || -> std::io::Result<()> {
            let mut s = TcpStream::connect_timeout(&server, Duration::from_secs(5))?;
            s.set_write_timeout(Some(Duration::from_secs(1)))?;
            let data: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
            let _ = s.write_all(&data);
            Ok(())
        })
    });
    // The SYN: answer with a SYN-ACK (MSS 1400, window 65535, no options
    // but MSS), from 10.77.0.2:7000.
    let mut syn = None;
    read_until(&tun, true, |b| {
        let p = &b[VNET_HDR_LEN..];
        if p.len() >= 40 && p[9] == 6 && p[33] & 0x02 != 0 {
            syn = Some(p.to_vec());
            return true;
        }
        false
    });
    let syn = syn.unwrap();
    let ihl = usize::from(syn[0] & 0x0f) * 4;
    let client_port = [syn[ihl], syn[ihl + 1]];
    let client_seq = u32::from_be_bytes([syn[ihl + 4], syn[ihl + 5], syn[ihl + 6], syn[ihl + 7]]);
    let mut synack = pkt("10.77.0.2", "10.77.0.1")
        .dont_frag(true)
        .tcp(7000, u16::from_be_bytes(client_port));
    synack.seq = 1000;
    synack.ack = client_seq.wrapping_add(1);
    synack.flags = tcp_flags::SYN | tcp_flags::ACK;
    synack.tcp_options = vec![2, 4, 0x05, 0x78];
    let synack = synack.build();
    tun.try_send(&synack).expect("write the SYN-ACK");

    // The data: at least one GSO super-packet; split, its segments are
    // valid TCP packets of at most 1400 bytes of payload whose bytes are
    // the stream's, in order.
    let mut next = client_seq.wrapping_add(1);
    let mut seen_gso = false;
    read_until(&tun, true, |b| {
        let hdr = VnetHdr::decode(b).unwrap();
        let mut pkt = b[VNET_HDR_LEN..].to_vec();
        if pkt.len() < 40 || pkt[9] != 6 || pkt.len() <= 52 && !hdr.is_gso() {
            return false;
        }
        seen_gso |= hdr.is_gso();
        // The TUN's MTU is 1500: every segment must fit it.
        segment(&mut pkt, &hdr, 1500, |seg| {
            assert!(valid(seg), "IP header and TCP checksums");
            let p = FlowPacket::new_checked(seg, L4Checksum::Full).expect("a TCP packet");
            let seq = p.tcp().expect("TCP").seq();
            let payload = p.payload();
            if payload.is_empty() {
                return;
            }
            assert!(payload.len() <= 1400, "{} > MSS", payload.len());
            assert_eq!(seq, next, "segments in order");
            let offset = seq.wrapping_sub(client_seq.wrapping_add(1));
            for (i, b) in payload.iter().enumerate() {
                assert_eq!(u32::from(*b), (offset + i as u32) % 253);
            }
            next = seq.wrapping_add(payload.len() as u32);
        })
        .expect("a super-packet from the kernel splits");
        seen_gso
    });
    assert!(seen_gso);
    drop(tun);
    let _ = client.join();
}
