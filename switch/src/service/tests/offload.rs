//! Super-packets (TSO, USO/UDP GSO, GRO output: partial checksums) are
//! translated with one lookup and come out right once segmented; and a
//! property: any TCP/UDP flow, either family, full or partial checksum,
//! translated there and back, is byte for byte what the client would
//! have received from the cluster IP itself.

use proptest::prelude::*;

use super::support::*;
use super::translate::{flow, tcp, Node, ACK, SYN};
use crate::conntrack::Dir;
use crate::offload::segment;
use crate::service::*;
use crate::testing::{as_partial, pattern, pkt, valid, Fixture};
use crate::wire::vnet::{GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4};
use crate::wire::{tcp_flags, L4Checksum};

fn segments(b: &mut [u8], hdr: &crate::wire::VnetHdr) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    segment(b, hdr, 1500, |s| out.push(s.to_vec())).unwrap();
    out
}

#[test]
fn a_tso_super_packet_is_translated_once_and_segments_correctly() {
    for (client, vip, endpoint, gso) in [
        ("10.244.1.5", "10.96.0.20", "10.244.2.7", GSO_TCPV4),
        ("fd00:244:1::5", "fd00:96::20", "fd00:244:2::7", GSO_TCPV6),
    ] {
        let mut n = Node::new(&[super::translate::web()]);
        n.send(&mut tcp(client, 40000, vip, 80, SYN), true);
        let mut f: Fixture = pkt(client, vip).tcp(40000, 80).payload(&pattern(14_000, 1));
        f.flags = ACK | tcp_flags::PSH;
        f.seq = 1001;
        let (hdr, mut b) = as_partial(f.build(), gso, 1400);
        let lookups = n.ct.stats().inserts;
        let (out, _) = n.send_as(&mut b, true, L4Checksum::Partial, 10);
        assert!(matches!(
            out,
            Outcome::Forward {
                dir: Dir::Original,
                new: false,
                ..
            }
        ));
        assert_eq!(n.ct.stats().inserts, lookups);
        let segs = segments(&mut b, &hdr);
        assert_eq!(segs.len(), 10);
        for s in &segs {
            assert!(valid(s), "{client}: segment checksums");
            assert_eq!(flow(s), (ip(client), 40000, ip(endpoint), 8080));
        }
        let (id, _) = n.ct.iter().next().unwrap();
        assert_eq!(n.ct.get(id).unwrap().packets(Dir::Original), 11);
        // A GRO-coalesced answer (partial too) is reverse-translated.
        let mut f: Fixture = pkt(endpoint, client)
            .tcp(8080, 40000)
            .payload(&pattern(5_600, 2));
        f.flags = ACK;
        let (hdr, mut b) = as_partial(f.build(), gso, 1400);
        n.send_as(&mut b, false, L4Checksum::Partial, 4);
        for s in segments(&mut b, &hdr) {
            assert!(valid(&s));
            assert_eq!(flow(&s), (ip(vip), 80, ip(client), 40000));
        }
    }
}

#[test]
fn a_udp_gso_super_packet_is_translated_once_and_segments_correctly() {
    let mut s = svc("ns", "q", "10.96.0.21", 443, Protocol::Udp);
    s.endpoints = vec![ep("10.244.2.8", "p", Protocol::Udp, 4433)];
    let mut n = Node::new(&[s]);
    let b = pkt("10.244.1.5", "10.96.0.21")
        .udp(50000, 443)
        .payload(&pattern(12_000, 3));
    let (hdr, mut b) = as_partial(b.build(), GSO_UDP_L4, 1200);
    let (out, _) = n.send_as(&mut b, true, L4Checksum::Partial, 10);
    assert!(matches!(out, Outcome::Forward { new: true, .. }));
    let segs = segments(&mut b, &hdr);
    assert_eq!(segs.len(), 10);
    for s in &segs {
        assert!(valid(s));
        assert_eq!(flow(s), (ip("10.244.1.5"), 50000, ip("10.244.2.8"), 4433));
    }
    assert_eq!(n.ct.len(), 1);
}

/// The service of the property: v4 and v6 cluster IPs, TCP and UDP.
fn both() -> Vec<ServiceSpec> {
    let mut out = Vec::new();
    for (name, proto) in [("t", Protocol::Tcp), ("u", Protocol::Udp)] {
        let mut s = svc("ns", name, "10.96.0.99", 80, proto);
        s.cluster_ips.push(ip("fd00:96::99"));
        s.endpoints = vec![
            ep("10.244.2.9", "p", proto, 8080),
            ep("fd00:244:2::9", "p", proto, 8080),
        ];
        out.push(s);
    }
    // Two Services cannot share a cluster IP; give UDP its own.
    out[1].cluster_ips = vec![ip("10.96.0.98"), ip("fd00:96::98")];
    out
}

/// `f` through the step with a full or partial checksum, completed
/// afterwards as the device (or the segmenter) would.
fn through(n: &mut Node, f: &Fixture, local: bool, partial: bool) -> Vec<u8> {
    let mut b = f.build();
    if !partial {
        n.send(&mut b, local);
        return b;
    }
    let (hdr, mut b) = as_partial(b, GSO_NONE, 0);
    n.send_as(&mut b, local, L4Checksum::Partial, 1);
    let segs = segments(&mut b, &hdr);
    assert_eq!(segs.len(), 1);
    segs.into_iter().next().unwrap()
}

proptest! {
    #[test]
    fn translation_round_trips_to_what_the_cluster_ip_would_send(
        v6 in any::<bool>(),
        udp in any::<bool>(),
        sport in 1024u16..65535,
        len in 0usize..1400,
        salt in 0usize..100_000,
        partial_out in any::<bool>(),
        partial_back in any::<bool>(),
    ) {
        let mut n = Node::new(&both());
        let (client, vip, endpoint) = match (v6, udp) {
            (false, false) => ("10.244.1.5", "10.96.0.99", "10.244.2.9"),
            (false, true) => ("10.244.1.5", "10.96.0.98", "10.244.2.9"),
            (true, false) => ("fd00:244:1::5", "fd00:96::99", "fd00:244:2::9"),
            (true, true) => ("fd00:244:1::5", "fd00:96::98", "fd00:244:2::9"),
        };
        let payload = pattern(len, salt);
        let build = |src: &str, sp: u16, dst: &str, dp: u16, flags: u8| {
            let f = pkt(src, dst);
            let mut f = if udp { f.udp(sp, dp) } else { f.tcp(sp, dp) };
            f.payload = if flags & tcp_flags::SYN != 0 { Vec::new() } else { payload.clone() };
            f.flags = flags;
            f.seq = salt as u32;
            f
        };
        // Out: what the endpoint receives is the client's packet, readdressed.
        let first = build(client, sport, vip, 80, SYN);
        let got = through(&mut n, &first, true, partial_out);
        let mut want = first.clone();
        (want.dst, want.dst_port) = (ip(endpoint), 8080);
        prop_assert_eq!(got, want.build());
        // Back: what the client receives is the cluster IP's packet.
        let answer = build(endpoint, 8080, client, sport, tcp_flags::SYN | tcp_flags::ACK);
        let got = through(&mut n, &answer, false, partial_back);
        let mut want = answer.clone();
        (want.src, want.src_port) = (ip(vip), 80);
        prop_assert_eq!(got, want.build());
        // Data, both ways.
        let data = build(client, sport, vip, 80, ACK);
        let got = through(&mut n, &data, true, partial_out);
        let mut want = data.clone();
        (want.dst, want.dst_port) = (ip(endpoint), 8080);
        prop_assert_eq!(got, want.build());
    }
}
