//! Ten thousand new connections to one cluster IP, interleaved: the
//! first packets of all of them, then a second packet of each (a
//! retransmitted SYN, glibc's AAAA after its A), then every endpoint's
//! answer, each phase in its own shuffled order. Every connection must
//! get exactly one endpoint, both of its packets the same, and every
//! answer must come back from the cluster IP to the right client port:
//! no loss, no second entry, no answer left untranslated.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::support::*;
use super::translate::{flow, tcp, Node, SYN, SYNACK};
use crate::conntrack::{Conntrack, ConntrackConfig, Dir, HashSeed};
use crate::service::*;
use crate::testing::{pkt, valid};

const FLOWS: usize = 10_000;

fn shuffled(n: usize, seed: u8) -> Vec<usize> {
    let mut rng = ChaCha8Rng::from_seed([seed; 32]);
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}

/// Client `i`: one of 100 pods, one of 100 source ports each.
fn client(i: usize) -> (String, u16) {
    (
        format!("10.244.1.{}", 2 + i % 100),
        30_000 + (i / 100) as u16,
    )
}

fn service(proto: Protocol, port: u16) -> ServiceSpec {
    let mut s = svc("ns", "busy", "10.96.0.77", port, proto);
    s.endpoints = (1..=10)
        .map(|i| ep(&format!("10.244.{}.{i}", 2 + i % 3), "p", proto, 9000))
        .collect();
    s
}

fn node(s: ServiceSpec) -> Node {
    let mut n = Node::new(&[s]);
    let cfg = ConntrackConfig {
        capacity: 2 * FLOWS,
        ..ConntrackConfig::default()
    };
    n.ct = Conntrack::new(cfg, HashSeed(17, 19), n.now);
    n
}

fn check_answers(
    n: &mut Node,
    chosen: &[SocketAddr],
    make: impl Fn(&str, u16, &str, u16) -> Vec<u8>,
) {
    for i in shuffled(FLOWS, 3) {
        let (c, port) = client(i);
        let ep = chosen[i];
        let mut r = make(&ep.ip().to_string(), ep.port(), &c, port);
        match n.send(&mut r, false).0 {
            Outcome::Forward {
                entry: Some(_),
                dir: Dir::Reply,
                ..
            } => {}
            other => panic!("answer to flow {i} from {ep}: {other:?}"),
        }
        assert!(valid(&r), "answer {i} checksums");
        let (src, sport, dst, dport) = flow(&r);
        assert_eq!((src, sport), ("10.96.0.77".parse::<IpAddr>().unwrap(), 80));
        assert_eq!((dst, dport), (c.parse::<IpAddr>().unwrap(), port));
    }
}

#[test]
fn ten_thousand_concurrent_tcp_connections_each_get_one_endpoint() {
    let mut n = node(service(Protocol::Tcp, 80));
    let mut chosen = vec![None; FLOWS];
    for phase in 0..2u8 {
        for i in shuffled(FLOWS, 1 + phase) {
            let (c, port) = client(i);
            let mut b = tcp(&c, port, "10.96.0.77", 80, SYN);
            let out = n.send(&mut b, true).0;
            assert!(
                matches!(out, Outcome::Forward { entry: Some(_), dir: Dir::Original, new } if new == (phase == 0)),
                "flow {i} phase {phase}: {out:?}"
            );
            assert!(valid(&b));
            let (src, sport, dst, dport) = flow(&b);
            assert_eq!(
                (src.to_string(), sport),
                (c, port),
                "the client address is kept"
            );
            let ep = SocketAddr::new(dst, dport);
            match chosen[i] {
                None => chosen[i] = Some(ep),
                Some(first) => assert_eq!(first, ep, "flow {i}: both packets, one endpoint"),
            }
        }
    }
    let chosen: Vec<SocketAddr> = chosen.into_iter().map(Option::unwrap).collect();
    assert_eq!(n.ct.len(), FLOWS);
    assert_eq!(n.tr.stats().translations, FLOWS as u64);
    let used: HashSet<_> = chosen.iter().collect();
    assert_eq!(used.len(), 10, "every endpoint used");
    check_answers(&mut n, &chosen, |s, sp, d, dp| tcp(s, sp, d, dp, SYNACK));
    let st = *n.ct.stats();
    assert_eq!((st.evicted, st.table_full, st.key_taken), (0, 0, 0));
}

#[test]
fn ten_thousand_dns_like_exchanges_lose_nothing() {
    let mut n = node(service(Protocol::Udp, 80));
    let mut chosen: HashMap<usize, SocketAddr> = HashMap::new();
    // A and AAAA of each flow back to back, the flows in shuffled order.
    for i in shuffled(FLOWS, 5) {
        let (c, port) = client(i);
        for query in [&b"A"[..], b"AAAA"] {
            let mut b = pkt(&c, "10.96.0.77").udp(port, 80).payload(query).build();
            let out = n.send(&mut b, true).0;
            assert!(
                matches!(out, Outcome::Forward { entry: Some(_), .. }),
                "{out:?}"
            );
            assert!(valid(&b));
            let (_, _, dst, dport) = flow(&b);
            let ep = SocketAddr::new(dst, dport);
            assert_eq!(*chosen.entry(i).or_insert(ep), ep, "flow {i}");
        }
    }
    let chosen: Vec<SocketAddr> = (0..FLOWS).map(|i| chosen[&i]).collect();
    assert_eq!(n.ct.len(), FLOWS);
    check_answers(&mut n, &chosen, |s, sp, d, dp| {
        pkt(s, d).udp(sp, dp).payload(b"answer").build()
    });
}
