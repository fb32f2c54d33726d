//! Connection tracking and service translation: `cargo bench -p
//! weft-switch --bench conntrack`.
//!
//! A table of 131 072 entries holding 100 000 TCP connections from 100
//! pods (1 000 each); then, per iteration: a lookup that hits (the
//! packet path's common case: one keyed hash, a probe or two), a lookup
//! that misses, a lookup plus `track` (what an established packet costs),
//! and a create plus remove (a new connection: two more hashes, the
//! lists). The keys are spread over the table so caches see a realistic
//! mix rather than one hot entry.
//!
//! `service_translate` runs the whole per-packet step on the same table
//! plus one ClusterIP Service of 10 endpoints: a data packet of an
//! established translated connection (lookup, track, DNAT with an
//! incremental checksum update), its reply (reverse translation), and a
//! SYN to the ClusterIP (endpoint choice, entry creation, DNAT; the entry
//! is removed again so the table stays the same size).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use weft_switch::conntrack::{
    Conntrack, ConntrackConfig, Dir, FlowKey, FlowState, HashSeed, Owner, TcpFlags,
};
use weft_switch::service::{
    EndpointPort, EndpointSpec, Outcome, PacketMeta, Protocol, ServicePort, ServiceSpec,
    ServiceTable, Translator, TranslatorConfig,
};
use weft_switch::testing::{epoch, pkt};
use weft_switch::wire::IpPacket;
use weft_switch::wire::{tcp_flags, L4Checksum};

const PODS: u32 = 100;
const PER_POD: u32 = 1_000;

fn key(pod: u32, i: u32) -> FlowKey {
    let src = IpAddr::V4(Ipv4Addr::new(10, 244, 1, pod as u8));
    let dst = IpAddr::V4(Ipv4Addr::new(10, 244, 2, (i % 200) as u8));
    FlowKey::new(6, src, 10_000 + i as u16, dst, 80).unwrap()
}

fn filled(now: Instant) -> Conntrack {
    let cfg = ConntrackConfig {
        per_source: 2 * PER_POD as usize,
        ..ConntrackConfig::default()
    };
    let mut t = Conntrack::new(cfg, HashSeed(0x5eed, 0xf00d), now);
    let syn = TcpFlags(TcpFlags::SYN);
    for pod in 0..PODS {
        for i in 0..PER_POD {
            let k = key(pod, i);
            let st = FlowState::open(6, syn, false).unwrap();
            let id = t.create(k, k.reverse(), Owner(pod), st, now).unwrap();
            t.track(id, Dir::Original, syn, 60, 1, now);
        }
    }
    t
}

fn bench(c: &mut Criterion) {
    let now = epoch();
    let mut t = filled(now);
    let later = now + Duration::from_secs(1);
    let mut g = c.benchmark_group("conntrack_100k");
    g.throughput(Throughput::Elements(1));
    let mut n = 0u32;
    g.bench_function("lookup_hit", |b| {
        b.iter(|| {
            n = n.wrapping_add(7919);
            let k = key(n % PODS, (n / PODS) % PER_POD);
            black_box(t.lookup(black_box(&k), later))
        })
    });
    g.bench_function("lookup_miss", |b| {
        b.iter(|| {
            n = n.wrapping_add(7919);
            let k = key(n % PODS, PER_POD + (n / PODS) % PER_POD);
            black_box(t.lookup(black_box(&k), later))
        })
    });
    g.bench_function("lookup_and_track", |b| {
        b.iter(|| {
            n = n.wrapping_add(7919);
            let k = key(n % PODS, (n / PODS) % PER_POD);
            if let Some((id, dir)) = t.lookup(&k, later) {
                black_box(t.track(id, dir, TcpFlags(TcpFlags::ACK), 1420, 1, later));
            }
        })
    });
    g.bench_function("create_and_remove", |b| {
        b.iter(|| {
            n = n.wrapping_add(7919);
            let k = key(n % PODS, PER_POD + (n / PODS) % PER_POD);
            let st = FlowState::open(6, TcpFlags(TcpFlags::SYN), false).unwrap();
            if let Ok(id) = t.create(k, k.reverse(), Owner(n % PODS), st, later) {
                t.remove(id);
            }
        })
    });
    g.finish();
}

fn service() -> ServiceSpec {
    ServiceSpec {
        namespace: "bench".into(),
        name: "web".into(),
        cluster_ips: vec!["10.96.0.20".parse().unwrap()],
        ports: vec![ServicePort {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port: 80,
            node_port: None,
        }],
        endpoints: (1..=10u8)
            .map(|i| EndpointSpec {
                address: IpAddr::V4(Ipv4Addr::new(10, 244, 3, i)),
                ports: vec![EndpointPort {
                    name: "http".into(),
                    protocol: Protocol::Tcp,
                    port: 8080,
                }],
                ..EndpointSpec::default()
            })
            .collect(),
        ..ServiceSpec::default()
    }
}

fn bench_translate(c: &mut Criterion) {
    let now = epoch();
    let mut ct = filled(now);
    let table = ServiceTable::compile(&[service()]).unwrap();
    let mut tr = Translator::new(TranslatorConfig::default(), [1; 32], HashSeed(5, 6), now);
    let meta = |local| PacketMeta {
        owner: Owner(PODS + 1),
        local,
        checksum: L4Checksum::Full,
        segments: 1,
    };
    let mut reply = vec![0u8; 1500];
    let mut f = pkt("10.244.1.250", "10.96.0.20").tcp(40_000, 80);
    f.flags = tcp_flags::SYN;
    let mut syn = f.build();
    let Outcome::Forward { .. } =
        tr.translate(&mut ct, &table, &mut syn, meta(true), &mut reply, now)
    else {
        panic!("the SYN is translated")
    };
    let endpoint = IpPacket::new_checked(&syn[..]).unwrap().dst_addr();
    f.flags = tcp_flags::ACK;
    f.payload = vec![0x5a; 1400];
    let data = f.build();
    let mut r = pkt(&endpoint.to_string(), "10.244.1.250").tcp(8080, 40_000);
    r.payload = vec![0xa5; 1400];
    let answer = r.build();
    let mut buf = data.clone();

    let mut g = c.benchmark_group("service_translate");
    g.throughput(Throughput::Elements(1));
    g.bench_function("established_dnat", |b| {
        b.iter(|| {
            buf.copy_from_slice(&data);
            black_box(tr.translate(&mut ct, &table, &mut buf, meta(true), &mut reply, now))
        })
    });
    let mut back = answer.clone();
    g.bench_function("reply_reverse", |b| {
        b.iter(|| {
            back.copy_from_slice(&answer);
            black_box(tr.translate(&mut ct, &table, &mut back, meta(false), &mut reply, now))
        })
    });
    // 1024 SYNs from distinct ports, built once; each is removed again
    // after its translation.
    let mut s = f.clone();
    s.flags = tcp_flags::SYN;
    s.payload.clear();
    let syns: Vec<Vec<u8>> = (0..1024u16)
        .map(|i| {
            s.src_port = 20_000 + i;
            s.build()
        })
        .collect();
    let mut syn = syns[0].clone();
    let mut i = 0usize;
    g.bench_function("new_connection", |b| {
        b.iter(|| {
            i = (i + 1) % syns.len();
            syn.copy_from_slice(&syns[i]);
            let out = tr.translate(&mut ct, &table, &mut syn, meta(true), &mut reply, now);
            if let Outcome::Forward {
                entry: Some(id), ..
            } = out
            {
                ct.remove(id);
            }
            black_box(out)
        })
    });
    g.finish();
}

criterion_group!(benches, bench, bench_translate);
criterion_main!(benches);
