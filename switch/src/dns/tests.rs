//! Wire-level table tests of cluster DNS against a fixed object set.

use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn port(name: Option<&str>, protocol: &str, port: u16) -> PortSpec {
    PortSpec {
        name: name.map(str::to_owned),
        protocol: protocol.into(),
        port,
    }
}

/// shop/web (ClusterIP, named + unnamed ports), shop/db (headless, one
/// endpoint with a hostname, one without), shop/ext (ExternalName outside),
/// shop/alias (ExternalName inside the zone), shop/empty (headless, no
/// ready endpoint), shop/many (headless, 60 endpoints).
pub(crate) fn zone() -> DnsZone {
    let svc = |name: &str, kind, ports| ServiceSpec {
        namespace: "shop".into(),
        name: name.into(),
        kind,
        ports,
    };
    let db_ports = vec![port(Some("pg"), "tcp", 5432)];
    DnsZone::build(&ZoneSpec {
        domain: "cluster.local".into(),
        ttl: 5,
        services: vec![
            svc(
                "web",
                ServiceKind::ClusterIp(vec![ip("10.96.0.20"), ip("fd00:96::20")]),
                vec![port(Some("http"), "tcp", 80), port(None, "udp", 9000)],
            ),
            svc(
                "db",
                ServiceKind::Headless(vec![
                    EndpointSpec {
                        addresses: vec![ip("10.244.1.5")],
                        hostname: Some("db-0".into()),
                        ports: db_ports.clone(),
                    },
                    EndpointSpec {
                        addresses: vec![ip("10.244.2.6")],
                        hostname: None,
                        ports: db_ports,
                    },
                ]),
                vec![],
            ),
            svc(
                "ext",
                ServiceKind::ExternalName("www.example.com.".into()),
                vec![],
            ),
            svc(
                "alias",
                ServiceKind::ExternalName("web.shop.svc.cluster.local".into()),
                vec![],
            ),
            svc("empty", ServiceKind::Headless(vec![]), vec![]),
            svc(
                "many",
                ServiceKind::Headless(
                    (0..60)
                        .map(|i| EndpointSpec {
                            addresses: vec![IpAddr::from([10, 244, 3, i as u8])],
                            hostname: None,
                            ports: vec![],
                        })
                        .collect(),
                ),
                vec![],
            ),
        ],
    })
}

pub(crate) fn query_with(
    name: &str,
    qtype: RecordType,
    edit: impl FnOnce(&mut Message),
) -> Vec<u8> {
    let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    edit(&mut m);
    m.to_vec().unwrap()
}

fn query(name: &str, qtype: RecordType) -> Vec<u8> {
    query_with(name, qtype, |_| {})
}

fn ask(zone: &DnsZone, bytes: &[u8], proto: Proto) -> (Message, Summary) {
    match answer(zone, bytes, proto) {
        Answer::Reply { bytes, summary } => (Message::from_vec(&bytes).unwrap(), summary),
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn udp(name: &str, qtype: RecordType) -> Message {
    ask(&zone(), &query(name, qtype), Proto::Udp).0
}

fn rdata(m: &Message) -> Vec<String> {
    m.answers.iter().map(|r| r.data.to_string()).collect()
}

#[test]
fn clusterip_service_a_aaaa_srv_ptr() {
    let m = udp("web.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative && m.metadata.recursion_available);
    assert_eq!(m.metadata.id, 0x1234);
    assert_eq!(rdata(&m), ["10.96.0.20"]);
    assert_eq!(m.answers[0].ttl, 5);

    let m = udp("web.shop.svc.cluster.local.", RecordType::AAAA);
    assert_eq!(rdata(&m), ["fd00:96::20"]);

    let m = udp("_http._tcp.web.shop.svc.cluster.local.", RecordType::SRV);
    assert_eq!(rdata(&m), ["0 100 80 web.shop.svc.cluster.local."]);
    let glue: Vec<String> = m.additionals.iter().map(|r| r.data.to_string()).collect();
    assert_eq!(glue, ["10.96.0.20", "fd00:96::20"]);

    // Unnamed ports have no SRV record; the name does not exist.
    let m = udp("_9000._udp.web.shop.svc.cluster.local.", RecordType::SRV);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);

    let m = udp("20.0.96.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(rdata(&m), ["web.shop.svc.cluster.local."]);
}

#[test]
fn headless_service_records() {
    let m = udp("db.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(rdata(&m), ["10.244.1.5", "10.244.2.6"]);
    let m = udp("db-0.db.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(rdata(&m), ["10.244.1.5"]);
    // Without a hostname the dashed address stands in.
    let m = udp("10-244-2-6.db.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(rdata(&m), ["10.244.2.6"]);
    let m = udp("_pg._tcp.db.shop.svc.cluster.local.", RecordType::SRV);
    assert_eq!(
        rdata(&m),
        [
            "0 100 5432 db-0.db.shop.svc.cluster.local.",
            "0 100 5432 10-244-2-6.db.shop.svc.cluster.local."
        ]
    );
    assert_eq!(m.additionals.len(), 2);
    let m = udp("5.1.244.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(rdata(&m), ["db-0.db.shop.svc.cluster.local."]);
    // No ready endpoint: NXDOMAIN, as the specification says.
    let m = udp("empty.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn external_name_is_a_cname_followed_inside_the_zone() {
    let m = udp("ext.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(rdata(&m), ["www.example.com."]);
    assert_eq!(m.answers[0].record_type(), RecordType::CNAME);

    let m = udp("alias.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(rdata(&m), ["web.shop.svc.cluster.local.", "10.96.0.20"]);
}

#[test]
fn schema_version_and_pod_records() {
    let m = udp("dns-version.cluster.local.", RecordType::TXT);
    assert_eq!(rdata(&m), ["1.1.0"]);
    let m = udp("10-244-7-9.anyns.pod.cluster.local.", RecordType::A);
    assert_eq!(rdata(&m), ["10.244.7.9"]);
    let m = udp("10-244-7-9.anyns.pod.cluster.local.", RecordType::AAAA);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    let m = udp("fd00--9.anyns.pod.cluster.local.", RecordType::AAAA);
    assert_eq!(rdata(&m), ["fd00::9"]);
    let m = udp("not-an-ip.anyns.pod.cluster.local.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn nxdomain_and_nodata_carry_the_soa() {
    for (name, qtype, code) in [
        (
            "nope.shop.svc.cluster.local.",
            RecordType::A,
            ResponseCode::NXDomain,
        ),
        (
            "web.nons.svc.cluster.local.",
            RecordType::A,
            ResponseCode::NXDomain,
        ),
        (
            "web.shop.svc.cluster.local.",
            RecordType::MX,
            ResponseCode::NoError,
        ),
        // Empty non-terminals exist.
        (
            "shop.svc.cluster.local.",
            RecordType::A,
            ResponseCode::NoError,
        ),
        ("svc.cluster.local.", RecordType::A, ResponseCode::NoError),
        ("cluster.local.", RecordType::A, ResponseCode::NoError),
    ] {
        let m = udp(name, qtype);
        assert_eq!(m.metadata.response_code, code, "{name}");
        assert!(m.answers.is_empty(), "{name}");
        assert_eq!(m.authorities.len(), 1, "{name}");
        let RData::SOA(soa) = &m.authorities[0].data else {
            panic!("{name}: not an SOA")
        };
        assert_eq!(soa.minimum, 5);
        assert_eq!(m.authorities[0].name.to_ascii(), "cluster.local.");
    }
    let m = udp("cluster.local.", RecordType::SOA);
    assert_eq!(m.answers.len(), 1);
}

#[test]
fn case_is_matched_insensitively_and_echoed() {
    let m = udp("WeB.ShOp.SvC.Cluster.LOCAL.", RecordType::A);
    assert_eq!(rdata(&m), ["10.96.0.20"]);
    assert_eq!(
        m.queries[0].name().to_ascii(),
        "WeB.ShOp.SvC.Cluster.LOCAL."
    );
    assert_eq!(m.answers[0].name.to_ascii(), "WeB.ShOp.SvC.Cluster.LOCAL.");
}

#[test]
fn other_names_are_forwarded() {
    let z = zone();
    for (name, qtype) in [
        ("example.com.", RecordType::A),
        ("cluster.local.example.com.", RecordType::A),
        ("xcluster.local.", RecordType::A),
        ("9.9.9.9.in-addr.arpa.", RecordType::PTR),
    ] {
        assert_eq!(
            answer(&z, &query(name, qtype), Proto::Udp),
            Answer::Forward {
                qtype: u16::from(qtype),
                udp_payload: 512,
            },
            "{name}"
        );
    }
}

#[test]
fn servfail_until_the_first_complete_copy() {
    let z = DnsZone::not_ready("cluster.local");
    let (m, s) = ask(
        &z,
        &query("web.shop.svc.cluster.local.", RecordType::A),
        Proto::Udp,
    );
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(s.rcode, 2);
    // Names elsewhere are still forwarded.
    assert!(matches!(
        answer(&z, &query("example.com.", RecordType::A), Proto::Udp),
        Answer::Forward { .. }
    ));
}

#[test]
fn large_answers_truncate_over_udp_and_fit_over_tcp() {
    let z = zone();
    let q = query("many.shop.svc.cluster.local.", RecordType::A);
    let (m, s) = ask(&z, &q, Proto::Udp);
    assert!(s.truncated && m.metadata.truncation);
    assert!(m.answers.is_empty());
    assert_eq!(m.queries.len(), 1);
    let (m, s) = ask(&z, &q, Proto::Tcp);
    assert!(!s.truncated && !m.metadata.truncation);
    assert_eq!(m.answers.len(), 60);
    // EDNS(0) raises the UDP limit; the response carries an OPT record.
    let q = query_with("many.shop.svc.cluster.local.", RecordType::A, |m| {
        let mut e = Edns::new();
        e.set_max_payload(4096);
        m.set_edns(e);
    });
    let (m, s) = ask(&z, &q, Proto::Udp);
    assert!(!s.truncated);
    assert_eq!(m.answers.len(), 60);
    assert_eq!(m.edns.as_ref().map(|e| e.max_payload()), Some(1232));
}

#[test]
fn the_room_bounds_udp_answers_and_forwards_carry_the_client_size() {
    let z = zone();
    let edns = |size: u16| {
        move |m: &mut Message| {
            let mut e = Edns::new();
            e.set_max_payload(size);
            m.set_edns(e);
        }
    };
    let q = query_with("many.shop.svc.cluster.local.", RecordType::A, edns(4096));
    let Answer::Reply { bytes, summary } = answer_within(&z, &q, Proto::Udp, 600) else {
        panic!("no reply")
    };
    assert!(summary.truncated && bytes.len() <= 600);
    let Answer::Reply { summary, .. } = answer_within(&z, &q, Proto::Udp, 1500) else {
        panic!("no reply")
    };
    assert!(!summary.truncated);
    // Over TCP the room is not the limit.
    let Answer::Reply { summary, .. } = answer_within(&z, &q, Proto::Tcp, 600) else {
        panic!("no reply")
    };
    assert!(!summary.truncated);
    for (size, want) in [(1232, 1232), (100, 512), (65_000, 4096)] {
        let q = query_with("example.com.", RecordType::AAAA, edns(size));
        assert_eq!(
            answer(&z, &q, Proto::Udp),
            Answer::Forward {
                qtype: 28,
                udp_payload: want
            },
            "{size}"
        );
    }
}

#[test]
fn protocol_errors_get_the_right_codes() {
    let z = zone();
    let code = |bytes: &[u8]| match answer(&z, bytes, Proto::Udp) {
        Answer::Reply { bytes, summary } => {
            let m = Message::from_vec(&bytes).unwrap();
            assert_eq!(m.metadata.id, 0x1234);
            assert_eq!(u16::from(m.metadata.response_code), summary.rcode);
            m.metadata.response_code
        }
        other => panic!("{other:?}"),
    };
    // Opcode STATUS.
    let q = query_with("web.shop.svc.cluster.local.", RecordType::A, |m| {
        m.metadata.op_code = OpCode::Status;
    });
    assert_eq!(code(&q), ResponseCode::NotImp);
    // No question, two questions.
    let q = query_with("web.shop.svc.cluster.local.", RecordType::A, |m| {
        m.queries.clear()
    });
    assert_eq!(code(&q), ResponseCode::FormErr);
    let q = query_with("web.shop.svc.cluster.local.", RecordType::A, |m| {
        m.add_query(Query::query(
            Name::from_ascii("a.b.").unwrap(),
            RecordType::A,
        ));
    });
    assert_eq!(code(&q), ResponseCode::FormErr);
    // Chaos class in the zone.
    let q = query_with("web.shop.svc.cluster.local.", RecordType::A, |m| {
        let mut q = m.queries[0].clone();
        q.set_query_class(DNSClass::CH);
        m.queries = vec![q];
    });
    assert_eq!(code(&q), ResponseCode::Refused);
    // EDNS version 1.
    let q = query_with("web.shop.svc.cluster.local.", RecordType::A, |m| {
        let mut e = Edns::new();
        e.set_version(1);
        m.set_edns(e);
    });
    // BADVERS (16): hickory decodes 16 as BADSIG, its TSIG twin.
    assert_eq!(u16::from(code(&q)), 16);
    // Garbage after a header: FORMERR with the header's id.
    let mut garbage = query("web.shop.svc.cluster.local.", RecordType::A);
    garbage.truncate(15);
    assert_eq!(code(&garbage), ResponseCode::FormErr);
}

#[test]
fn malformed_names_and_non_queries() {
    let z = zone();
    assert_eq!(answer(&z, &[], Proto::Udp), Answer::Drop(DnsDrop::TooShort));
    assert_eq!(
        answer(&z, &[0; 11], Proto::Udp),
        Answer::Drop(DnsDrop::TooShort)
    );
    // A response sent to the resolver.
    let mut r = query("web.shop.svc.cluster.local.", RecordType::A);
    r[2] |= 0x80;
    assert_eq!(answer(&z, &r, Proto::Udp), Answer::Drop(DnsDrop::NotAQuery));

    let header = [0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    let with_question = |qname: &[u8]| {
        let mut b = header.to_vec();
        b.extend_from_slice(qname);
        b.extend_from_slice(&[0, 1, 0, 1]);
        b
    };
    // A compression pointer to itself, a label over 63 bytes, a name over
    // 255 bytes: each a FORMERR, none a panic or a hang.
    let looped = with_question(&[0xc0, 12]);
    let long_label = with_question(&[&[64u8][..], &[b'a'; 64], &[0]].concat());
    let mut long_name = Vec::new();
    for _ in 0..5 {
        long_name.push(60);
        long_name.extend_from_slice(&[b'a'; 60]);
    }
    long_name.push(0);
    let long_name = with_question(&long_name);
    for bytes in [looped, long_label, long_name] {
        let Answer::Reply { bytes, .. } = answer(&z, &bytes, Proto::Udp) else {
            panic!("no reply")
        };
        let m = Message::from_vec(&bytes).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    }
}

proptest::proptest! {
    #[test]
    fn no_input_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
        let _ = answer(&zone(), &bytes, Proto::Udp);
        let _ = answer(&zone(), &bytes, Proto::Tcp);
    }

    #[test]
    fn random_names_get_an_answer_and_leave_nothing(label in "[a-z0-9][a-z0-9-]{0,29}") {
        let z = zone();
        let name = format!("{label}.shop.svc.cluster.local.");
        let (m, _) = ask(&z, &query(&name, RecordType::A), Proto::Udp);
        proptest::prop_assert!(matches!(
            m.metadata.response_code,
            ResponseCode::NoError | ResponseCode::NXDomain
        ));
    }
}
