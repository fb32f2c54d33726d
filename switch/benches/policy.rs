//! NetworkPolicy's first-packet decision: `cargo bench -p weft-switch
//! --bench policy`.
//!
//! 1 000 policies, each selecting all 100 local pods for ingress and
//! egress, each with 3 rules per direction (10 pod peers, an ipBlock with
//! an except, a port range; the last policy's last rule is the only one
//! that allows the probed flow). Measured: `PolicyTable::evaluate` for a
//! connection allowed by that last rule (the worst case for the linear
//! walk the table used to do; with the merged table one prefix lookup and
//! a port-map search), one denied, and one on a pod no policy selects (one
//! hash lookup); and `PolicyTable::compile`
//! of the whole set (the control path, on every change). No timing is
//! asserted anywhere; figures go to bench/README.md.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{criterion_group, criterion_main, Criterion};
use weft_switch::policy::{
    Direction, PeerSpec, PolicySpec, PolicyTable, PortRange, PortsSpec, Protocol, RuleSpec,
};

const POLICIES: u32 = 1_000;
const LOCAL_PODS: u32 = 100;
const TCP: u8 = 6;

fn local(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 244, 1, (i % 250) as u8 + 2))
}

fn remote(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        10,
        244,
        2 + (i / 250) as u8 % 200,
        (i % 250) as u8 + 2,
    ))
}

fn host(ip: IpAddr) -> PeerSpec {
    PeerSpec {
        prefix: ip.into(),
        except: Vec::new(),
        ports: None,
    }
}

fn tcp(port: u16, end: u16) -> PortsSpec {
    PortsSpec::Ranges(vec![PortRange {
        protocol: Protocol::Tcp,
        port,
        end,
    }])
}

/// Rules that never match the probed flow (10.244.250.7 -> local 80/TCP),
/// except the last rule of the last policy.
fn rules(p: u32, last: bool) -> Vec<RuleSpec> {
    let pods = (0..10).map(|k| host(remote(p * 10 + k))).collect();
    let block = PeerSpec {
        prefix: format!("172.{}.0.0/16", p % 200).parse().unwrap(),
        except: vec![format!("172.{}.1.0/24", p % 200).parse().unwrap()],
        ports: None,
    };
    let mut out = vec![
        RuleSpec {
            peers: Some(pods),
            ports: tcp(80, 80),
        },
        RuleSpec {
            peers: Some(vec![block]),
            ports: PortsSpec::Any,
        },
        RuleSpec {
            peers: None,
            ports: tcp(9000, 9100),
        },
    ];
    if last {
        out.push(RuleSpec {
            peers: Some(vec![host(probe_peer())]),
            ports: tcp(80, 81),
        });
    }
    out
}

fn probe_peer() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 244, 250, 7))
}

fn specs() -> Vec<PolicySpec> {
    (0..POLICIES)
        .map(|p| {
            let r = rules(p, p == POLICIES - 1);
            PolicySpec {
                name: format!("ns{}/policy-{p}", p % 50),
                ingress: Some((0..LOCAL_PODS).map(|i| (local(i), r.clone())).collect()),
                egress: Some(((0..LOCAL_PODS).map(local).collect(), r)),
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let specs = specs();
    let table = PolicyTable::compile(&specs);
    let pod = local(42);
    assert!(table
        .evaluate(Direction::Ingress, pod, probe_peer(), TCP, 80)
        .allows());
    let mut g = c.benchmark_group("policy_first_packet");
    g.bench_function("ingress_allowed_by_last_rule", |b| {
        b.iter(|| {
            black_box(table.evaluate(
                Direction::Ingress,
                black_box(pod),
                black_box(probe_peer()),
                TCP,
                80,
            ))
        })
    });
    g.bench_function("egress_allowed_by_last_rule", |b| {
        b.iter(|| {
            black_box(table.evaluate(
                Direction::Egress,
                black_box(pod),
                black_box(probe_peer()),
                TCP,
                81,
            ))
        })
    });
    g.bench_function("ingress_denied", |b| {
        b.iter(|| {
            black_box(table.evaluate(
                Direction::Ingress,
                black_box(pod),
                black_box(probe_peer()),
                TCP,
                443,
            ))
        })
    });
    g.bench_function("not_isolated", |b| {
        let other = IpAddr::V4(Ipv4Addr::new(10, 244, 1, 254));
        b.iter(|| {
            black_box(table.evaluate(
                Direction::Ingress,
                black_box(other),
                black_box(probe_peer()),
                TCP,
                80,
            ))
        })
    });
    g.finish();
    let mut g = c.benchmark_group("policy_compile");
    g.sample_size(10);
    g.bench_function("1000_policies_x_100_pods", |b| {
        b.iter(|| black_box(PolicyTable::compile(black_box(&specs))))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
