//! The switch's per-packet decision: `cargo bench -p weft-switch --bench switch`.
//!
//! A node with a pod port, the host port and 64 peers; IPv4 TCP packets of
//! 64 and 1420 bytes pod -> peer (egress) and peer -> pod (ingress, with
//! the anti-spoofing check). Each iteration restores the IP header the
//! decision changed (TTL and checksum), 20 bytes.

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ipnet::IpNet;
use weft_switch::testing::{epoch, pkt};
use weft_switch::wire::VnetHdr;
use weft_switch::{Action, PeerId, PortId, Switch};

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// An IPv4 TCP packet of `len` bytes (40 of headers) from `src` to `dst`,
/// from the one packet builder.
fn tcp4(src: &str, dst: &str, len: usize) -> Vec<u8> {
    let p = pkt(src, dst)
        .dont_frag(true)
        .tcp(40_000, 5201)
        .payload(&vec![0; len - 40])
        .build();
    assert_eq!(p.len(), len);
    p
}

fn switch() -> Switch {
    let mut s = Switch::new();
    s.set_node_cidrs(&[net("10.244.1.0/24")]).unwrap();
    s.set_host_addresses(&["10.244.1.1".parse::<IpAddr>().unwrap()])
        .unwrap();
    s.set_pod_port(PortId(0), &["10.244.1.2".parse::<IpAddr>().unwrap()])
        .unwrap();
    for i in 0..64u32 {
        s.set_peer(PeerId(i), &[net(&format!("10.244.{}.0/24", i + 2))])
            .unwrap();
    }
    s
}

fn decide(c: &mut Criterion) {
    let plain = VnetHdr::default();
    let mut g = c.benchmark_group("switch");
    let mut scratch = vec![0u8; 4096];
    for len in [64usize, 1420] {
        g.throughput(Throughput::Elements(1));
        let egress = tcp4("10.244.1.2", "10.244.40.7", len);
        let ingress = tcp4("10.244.40.7", "10.244.1.2", len);
        let mut sw = switch();
        let mut pkt = egress.clone();
        g.bench_with_input(BenchmarkId::new("pod_to_peer", len), &len, |b, _| {
            b.iter(|| {
                pkt[..20].copy_from_slice(&egress[..20]);
                let a = sw.from_pod(
                    PortId(0),
                    black_box(&mut pkt),
                    &plain,
                    &mut scratch,
                    epoch(),
                );
                debug_assert_eq!(a, Action::ToPeer(PeerId(38)));
                a
            })
        });
        let mut pkt = ingress.clone();
        g.bench_with_input(BenchmarkId::new("peer_to_pod", len), &len, |b, _| {
            b.iter(|| {
                pkt[..20].copy_from_slice(&ingress[..20]);
                let a = sw.from_peer(PeerId(38), black_box(&mut pkt), &mut scratch, epoch());
                debug_assert_eq!(a, Action::ToPort(PortId(0)));
                a
            })
        });
    }
    g.finish();
}

criterion_group!(benches, decide);
criterion_main!(benches);
