//! WireGuard and the offloads on the packet path:
//! `cargo bench -p weft-node-agent --bench tunnel`.
//!
//! - `encapsulate/N`, `decapsulate/N`: one packet of N bytes through a
//!   [`Tunnel`] with a session (two tunnels wired in memory).
//! - `tso_64k`: what the engine does with a 64 KiB TCP super-packet from a
//!   TUN: split it into 1368-byte segments (headers and checksums fixed)
//!   and encrypt each into a send arena.
//! - `gro_64k`: the way back: decrypt those 48 datagrams and coalesce them
//!   into one super-packet.
//! - `checksum/N`: the Internet checksum over N bytes.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use weft_node_agent::wg::{Decap, Encap, NodeKey, Tunnel};
use weft_switch::offload::{segment, Coalescer, VnetHdr, VNET_HDR_LEN};
use weft_switch::testing::{as_partial, Fixture};
use weft_switch::wire::checksum;
use weft_switch::wire::vnet::GSO_TCPV4;

const SRC: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
const MSS: usize = 1368;
/// The overlay MTU the segments must fit: 52 bytes of headers + the MSS.
const PATH_MTU: usize = 1420;

/// Two tunnels with a session: A -> B.
fn pair() -> (Tunnel, Tunnel) {
    let a = NodeKey::from_bytes([1; 32]);
    let b = NodeKey::from_bytes([2; 32]);
    let mut ta = Tunnel::new(&a, b.public_bytes(), None, 1).unwrap();
    let mut tb = Tunnel::new(&b, a.public_bytes(), None, 2).unwrap();
    let (mut oa, mut ob) = (vec![0u8; 2048], vec![0u8; 2048]);
    // Without a session, encapsulating starts the handshake.
    let Encap::Send(n) = ta.encapsulate(&[], &mut oa) else {
        panic!("no initiation")
    };
    let Decap::Reply(m) = tb.decapsulate(SRC, &oa[..n], &mut ob) else {
        panic!("no response")
    };
    let Decap::Reply(k) = ta.decapsulate(SRC, &ob[..m], &mut oa) else {
        panic!("no keepalive")
    };
    // B's session is confirmed by A's first message.
    assert!(matches!(
        tb.decapsulate(SRC, &oa[..k], &mut ob),
        Decap::Done
    ));
    (ta, tb)
}

/// An IPv4 TCP packet with `payload` bytes and 12 bytes of options (52
/// bytes of headers), checksums right.
fn tcp4(seq: u32, payload: usize) -> Vec<u8> {
    Fixture::tcp_stream(false, seq, payload, 12).build()
}

/// A 64 KiB super-packet as a TUN with TSO hands it out: the checksum
/// field holds the pseudo-header sum.
fn super_packet() -> (VnetHdr, Vec<u8>) {
    let payload = (65_535 - 52) / MSS * MSS;
    as_partial(tcp4(1, payload), GSO_TCPV4, MSS as u16)
}

fn crypto(c: &mut Criterion) {
    let mut g = c.benchmark_group("wg");
    for len in [64usize, 512, 1420] {
        g.throughput(Throughput::Bytes(len as u64));
        let (mut ta, mut tb) = pair();
        let pkt = tcp4(1, len.saturating_sub(52));
        let mut out = vec![0u8; 2048];
        g.bench_with_input(BenchmarkId::new("encapsulate", len), &len, |b, _| {
            b.iter(|| ta.encapsulate(black_box(&pkt), &mut out))
        });
        // Fresh datagrams in chunks (a replay would be dropped), only the
        // decryption timed.
        g.bench_with_input(BenchmarkId::new("decapsulate", len), &len, |b, _| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut chunk: Vec<Vec<u8>> = Vec::with_capacity(1024);
                let mut left = iters;
                while left > 0 {
                    let n = left.min(1024);
                    chunk.clear();
                    for _ in 0..n {
                        if let Encap::Send(m) = ta.encapsulate(&pkt, &mut out) {
                            chunk.push(out[..m].to_vec());
                        }
                    }
                    let start = Instant::now();
                    for d in &chunk {
                        black_box(tb.decapsulate(SRC, d, &mut out));
                    }
                    total += start.elapsed();
                    left -= n;
                }
                total
            })
        });
    }
    g.finish();
}

fn offloads(c: &mut Criterion) {
    let mut g = c.benchmark_group("offload");
    let (hdr, template) = super_packet();
    g.throughput(Throughput::Bytes(template.len() as u64));
    let (mut ta, mut tb) = pair();
    let mut arena = vec![0u8; 48 * 1500];
    g.bench_function("tso_64k", |b| {
        b.iter_batched_ref(
            || template.clone(),
            |pkt| {
                let mut at = 0;
                let n = segment(pkt, &hdr, PATH_MTU, |seg| {
                    if let Encap::Send(m) = ta.encapsulate(seg, &mut arena[at..]) {
                        at += m;
                    }
                })
                .unwrap();
                debug_assert_eq!(n, 47);
                at
            },
            BatchSize::LargeInput,
        )
    });
    // The same 47 segments, encrypted, back through decryption and the
    // coalescer (one super-packet out).
    let mut dec = vec![0u8; 2048];
    let mut coalescer: Coalescer<u8> = Coalescer::new(4);
    g.bench_function("gro_64k", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut pkt = template.clone();
                let mut datagrams = Vec::with_capacity(47);
                segment(&mut pkt, &hdr, PATH_MTU, |seg| {
                    if let Encap::Send(m) = ta.encapsulate(seg, &mut arena) {
                        datagrams.push(arena[..m].to_vec());
                    }
                })
                .unwrap();
                let start = Instant::now();
                let mut written = 0;
                let mut out = |_: u8, b: &[u8], _: usize| written += b.len();
                for d in &datagrams {
                    if let Decap::Packet(n) = tb.decapsulate(SRC, d, &mut dec) {
                        coalescer.push(0, &dec[..n], false, &mut out);
                    }
                }
                coalescer.flush(&mut out);
                total += start.elapsed();
                debug_assert_eq!(written, VNET_HDR_LEN + template.len());
            }
            total
        })
    });
    g.finish();

    let mut g = c.benchmark_group("checksum");
    for len in [64usize, 1420, 65_535] {
        let data = vec![0xa5u8; len];
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_with_input(BenchmarkId::from_parameter(len), &data, |b, d| {
            b.iter(|| checksum::sum(black_box(d), 0))
        });
    }
    g.finish();
}

criterion_group!(benches, crypto, offloads);
criterion_main!(benches);
