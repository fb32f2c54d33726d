//! Cluster DNS answered from the packet: `cargo bench -p weft-switch --bench dns`.
//!
//! A node with one pod port and the DNS VIP answering from a zone of 2 000
//! ClusterIP Services (each with a named port). Per iteration: one UDP
//! query packet from the pod to 10.96.0.10:53 through `Switch::from_pod`,
//! which parses it, answers from the zone and writes the reply packet
//! (IP + UDP + DNS, checksums filled) into the scratch buffer — ns/query.
//! Also: the same over IPv6, an SRV query, a name that is forwarded (the
//! decision only), and `dns::reply_packet` for a forwarded answer.

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use ipnet::IpNet;
use weft_switch::dns::{
    reply_packet, DnsClient, DnsConfig, DnsOrigin, DnsZone, PortSpec, ServiceKind, ServiceSpec,
    ZoneSpec,
};
use weft_switch::testing::{epoch, pkt};
use weft_switch::wire::VnetHdr;
use weft_switch::{Action, PortId, Switch};

const SERVICES: u16 = 2000;

fn zone() -> DnsZone {
    let services = (0..SERVICES)
        .map(|i| ServiceSpec {
            namespace: format!("ns{}", i % 20),
            name: format!("svc{i}"),
            kind: ServiceKind::ClusterIp(vec![IpAddr::from([10, 96, (i >> 8) as u8 + 1, i as u8])]),
            ports: vec![PortSpec {
                name: Some("http".into()),
                protocol: "tcp".into(),
                port: 80,
            }],
        })
        .collect();
    DnsZone::build(&ZoneSpec {
        domain: "cluster.local".into(),
        ttl: 5,
        services,
    })
}

fn switch() -> Switch {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let mut s = Switch::new();
    s.set_node_cidrs(&[
        "10.244.1.0/24".parse::<IpNet>().unwrap(),
        "fd00:244:1::/64".parse().unwrap(),
    ])
    .unwrap();
    s.set_pod_port(PortId(0), &[ip("10.244.1.2"), ip("fd00:244:1::2")])
        .unwrap();
    s.set_mtu(1420).unwrap();
    s.set_dns(DnsConfig {
        vips: vec![ip("10.96.0.10"), ip("fd00:96::a")],
        zone: Arc::new(zone()),
    })
    .unwrap();
    s
}

fn query(name: &str, qtype: RecordType) -> Vec<u8> {
    let mut m = Message::new(0x4242, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m.to_vec().unwrap()
}

fn packet(v6: bool, name: &str, qtype: RecordType) -> Vec<u8> {
    let (src, dst) = if v6 {
        ("fd00:244:1::2", "fd00:96::a")
    } else {
        ("10.244.1.2", "10.96.0.10")
    };
    pkt(src, dst)
        .udp(40_000, 53)
        .payload(&query(name, qtype))
        .build()
}

fn answer_from_packet(c: &mut Criterion) {
    let plain = VnetHdr::default();
    let mut sw = switch();
    let mut scratch = vec![0u8; 4096];
    let mut g = c.benchmark_group("dns");
    g.throughput(Throughput::Elements(1));
    for (label, v6, name, qtype) in [
        (
            "a_v4",
            false,
            "svc1234.ns14.svc.cluster.local.",
            RecordType::A,
        ),
        (
            "a_v6",
            true,
            "svc1234.ns14.svc.cluster.local.",
            RecordType::A,
        ),
        (
            "srv_v4",
            false,
            "_http._tcp.svc77.ns17.svc.cluster.local.",
            RecordType::SRV,
        ),
        (
            "nxdomain_v4",
            false,
            "nope.ns3.svc.cluster.local.",
            RecordType::A,
        ),
        ("forward_v4", false, "www.example.com.", RecordType::A),
    ] {
        let mut p = packet(v6, name, qtype);
        g.bench_function(label, |b| {
            b.iter(|| {
                let a = sw.from_pod(PortId(0), black_box(&mut p), &plain, &mut scratch, epoch());
                debug_assert!(
                    matches!(a, Action::Reply(_) | Action::DnsForward(_)),
                    "{a:?}"
                );
                a
            })
        });
    }
    // The reply to the pod of a forwarded query (the engine's half).
    let client = DnsClient {
        origin: DnsOrigin::Pod(PortId(0)),
        client: "10.244.1.2:40000".parse().unwrap(),
        server: "10.96.0.10:53".parse().unwrap(),
        max_message: 1232,
    };
    let mut answer = query("www.example.com.", RecordType::A);
    answer[2] |= 0x80;
    g.bench_function("reply_packet_v4", |b| {
        b.iter(|| reply_packet(&client, black_box(&answer), &mut scratch).unwrap())
    });
    g.finish();
}

criterion_group!(benches, answer_from_packet);
criterion_main!(benches);
