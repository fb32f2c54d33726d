//! The forward path as the engine will run it: a query to the DNS VIP for
//! a name outside the cluster -> [`Action::DnsForward`] -> the node's
//! [`Forwarder`] -> a fake upstream's response -> [`reply_packet`] -> the
//! packet to the pod, with the pod's own id and question spelling.

use std::net::SocketAddr;

use hickory_proto::op::{Edns, Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::A as ARecord;
use hickory_proto::rr::{RData, Record, RecordType};

use super::dns::{answer_in, udp_query, with_dns, VIP4, VIP6};
use super::*;
use crate::dns::tests::query_with;
use crate::dns::{
    reply_packet, DnsClient, DnsOrigin, DnsQuery, ForwardConfig, Forwarder, ReplyError, Step,
};

const UPSTREAM: &str = "192.0.2.53:53";

fn forwarder() -> Forwarder<DnsClient> {
    Forwarder::new(
        ForwardConfig {
            upstreams: vec![UPSTREAM.parse().unwrap()],
            ..ForwardConfig::default()
        },
        99,
    )
}

/// The upstream's answer to the query it was sent: `n` A records, owner
/// in lower case (resolvers need not echo the client's spelling), an OPT
/// record if the query had one.
fn upstream_answer(sent: &[u8], n: u8) -> Vec<u8> {
    let q = Message::from_vec(sent).unwrap();
    let mut m = Message::response(q.metadata.id, OpCode::Query);
    m.metadata.recursion_available = true;
    m.add_queries(q.queries.clone());
    if let Some(edns) = &q.edns {
        let mut ours = Edns::new();
        ours.set_max_payload(edns.max_payload());
        m.set_edns(ours);
    }
    let owner = q.queries[0].name().to_lowercase();
    for i in 0..n {
        let rdata = RData::A(ARecord::new(192, 0, 2, 80 + i));
        m.add_answer(Record::from_rdata(owner.clone(), 300, rdata));
    }
    m.to_vec().unwrap()
}

/// Runs `packet` from pod A through the switch, the forwarder and a fake
/// upstream answering with `n` records; returns the query the switch
/// handed over and the DNS bytes the forwarder returned for the pod.
fn round_trip(h: &mut Harness, packet: Vec<u8>, n: u8) -> (DnsQuery, Vec<u8>) {
    let a = h.pod(A, packet.clone());
    let Action::DnsForward(query) = a else {
        panic!("expected DnsForward, got {a:?}")
    };
    assert_eq!(h.last, packet, "the query packet is left as it was");
    let mut f = forwarder();
    let mut steps = Vec::new();
    f.query(h.now, query.client, query.message(&h.last), &mut steps);
    let [Step::Send { upstream, bytes }] = steps.as_slice() else {
        panic!("expected one send, got {steps:?}")
    };
    assert_eq!(*upstream, UPSTREAM.parse::<SocketAddr>().unwrap());
    let response = upstream_answer(bytes, n);
    let mut out = Vec::new();
    f.response(h.now, *upstream, &response, &mut out);
    let [Step::Reply { client, bytes }] = out.as_slice() else {
        panic!("expected one reply, got {out:?}")
    };
    assert_eq!(*client, query.client);
    (query, bytes.clone())
}

#[test]
fn forwarded_queries_come_back_to_the_pod_as_asked() {
    for (src, vip) in [(POD_A4, VIP4), (POD_A6, VIP6)] {
        let mut h = with_dns();
        let q = query_with("ExAmple.COM.", RecordType::A, |m| m.metadata.id = 0xbeef);
        let (query, dns) = round_trip(&mut h, udp_query(src, vip, &q), 1);
        assert_eq!(query.message(&h.last), &q[..]);
        assert_eq!(
            query.client,
            DnsClient {
                origin: DnsOrigin::Pod(A),
                client: SocketAddr::new(ip(src), 40000),
                server: SocketAddr::new(ip(vip), 53),
                max_message: 512,
            }
        );
        let mut buf = [0u8; 1500];
        let w = reply_packet(&query.client, &dns, &mut buf).unwrap();
        assert!(!w.truncated);
        let m = answer_in(&buf[..w.len], vip, src);
        assert_eq!(m.metadata.id, 0xbeef, "the pod's own id");
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(m.queries[0].name().to_ascii(), "ExAmple.COM.");
        assert_eq!(m.answers[0].data.to_string(), "192.0.2.80");
        let d = h.sw.dns_counters();
        assert_eq!((d.forwarded(), d.answered_total()), (1, 0));
        assert_eq!(h.sw.counters().delivered_to_dns(), 1);
    }
}

#[test]
fn an_upstream_answer_too_large_for_the_client_is_truncated() {
    // No EDNS: the pod takes 512 bytes; 40 records are more.
    let mut h = with_dns();
    let q = query_with("big.example.", RecordType::A, |m| m.metadata.id = 7);
    let (query, dns) = round_trip(&mut h, udp_query(POD_A4, VIP4, &q), 40);
    assert!(dns.len() > 512);
    let mut buf = [0u8; 1500];
    let w = reply_packet(&query.client, &dns, &mut buf).unwrap();
    assert!(w.truncated && w.len <= 20 + 8 + 512);
    let m = answer_in(&buf[..w.len], VIP4, POD_A4);
    assert!(m.metadata.truncation && m.answers.is_empty());
    assert_eq!((m.metadata.id, m.queries.len()), (7, 1));

    // EDNS 4096 from a pod behind a 576-byte MTU: the MTU bounds it.
    let mut h = with_dns();
    h.sw.set_route_mtu(Route::Port(A), Some(576)).unwrap();
    let q = query_with("big.example.", RecordType::A, |m| {
        let mut e = Edns::new();
        e.set_max_payload(4096);
        m.set_edns(e);
    });
    let (query, dns) = round_trip(&mut h, udp_query(POD_A6, VIP6, &q), 40);
    assert_eq!(query.client.max_message, 576 - 40 - 8);
    let w = reply_packet(&query.client, &dns, &mut buf).unwrap();
    assert!(w.truncated && w.len <= 576);
    let m = answer_in(&buf[..w.len], VIP6, POD_A6);
    assert!(m.metadata.truncation);
    assert!(m.edns.is_some(), "the OPT record stays");
}

#[test]
fn reply_packet_refuses_what_it_cannot_build() {
    let client = DnsClient {
        origin: DnsOrigin::Host,
        client: SocketAddr::new(ip(HOST4), 1000),
        server: SocketAddr::new(ip(VIP4), 53),
        max_message: 512,
    };
    let dns = query_with("x.example.", RecordType::A, |_| {});
    let mut buf = [0u8; 1500];
    assert_eq!(
        reply_packet(&client, &dns, &mut buf[..20 + 8 + dns.len() - 1]),
        Err(ReplyError::NoRoom)
    );
    assert!(reply_packet(&client, &dns, &mut buf[..20 + 8 + dns.len()]).is_ok());
    let mixed = DnsClient {
        server: SocketAddr::new(ip(VIP6), 53),
        ..client
    };
    assert_eq!(
        reply_packet(&mixed, &dns, &mut buf),
        Err(ReplyError::FamilyMismatch)
    );
    assert_eq!(
        reply_packet(&client, &[0xff; 600], &mut buf),
        Err(ReplyError::Unparsable)
    );
    let tiny = DnsClient {
        max_message: 12,
        ..client
    };
    assert_eq!(
        reply_packet(&tiny, &upstream_answer(&dns, 40), &mut buf),
        Err(ReplyError::NoRoom),
        "even truncated it does not fit"
    );
}
