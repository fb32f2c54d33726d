//! Answering one DNS query from the cluster zone.
//!
//! Contract: [`answer`] takes the bytes of one DNS message (a UDP payload,
//! or a TCP message without its length prefix), as untrusted input, and
//! returns what to do: a response to send back, the decision to forward it
//! to the node's upstream resolvers (a name outside the cluster), or a drop.
//! It never panics on any bytes and reads no clock.
//!
//! - Names in the cluster domain: the records of the Kubernetes DNS
//!   specification ([`super::zone`]), authoritative (AA), NXDOMAIN for a
//!   name that does not exist and NODATA (NOERROR, empty answer) for one
//!   that exists without the asked type, both with the zone's SOA in the
//!   authority section (its minimum is the negative TTL); SERVFAIL until
//!   the zone was built from a first complete copy of the objects.
//! - PTR names of addresses the zone knows (ClusterIPs, headless
//!   endpoints) are answered; other reverse names are forwarded (CoreDNS's
//!   `fallthrough in-addr.arpa ip6.arpa`).
//! - The question is echoed as sent (case kept); answers to it use its
//!   spelling as the owner name.
//! - Not a query (QR set): dropped. Opcode other than QUERY: NOTIMP.
//!   QDCOUNT other than 1 or an unparsable message: FORMERR. Class other
//!   than IN/ANY in the zone: REFUSED. EDNS version above 0: BADVERS.
//! - Size: over UDP at most 512 bytes, or the client's EDNS(0) payload size
//!   (clamped to 512..=4096), and never more than the room the caller
//!   gives [`answer_within`] (the client's MTU less the headers); a larger
//!   answer goes out truncated (TC set, question only) so the client
//!   retries over TCP (65 535 bytes there).
//!
//! Cost: hickory-proto parses and writes the messages, a handful of small
//! allocations per query; nothing is kept per query, so a flood of random
//! names leaves no state behind.

use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::name::{is_reverse, undash};
use super::zone::{Data, DnsZone};

/// The largest UDP payload size weft offers or accepts in EDNS(0).
pub const MAX_UDP_PAYLOAD: u16 = 4096;
/// The UDP payload size weft advertises in its responses' OPT record
/// (the DNS flag day 2020 value).
pub const ADVERTISED_UDP_PAYLOAD: u16 = 1232;
/// How many CNAMEs inside the zone are followed for one answer.
const MAX_CHASE: usize = 8;

/// How the query arrived: it bounds the response size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Udp,
    Tcp,
}

/// What a response said, for counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// The question's type (0 when there was no readable question).
    pub qtype: u16,
    /// The response code (extended codes included).
    pub rcode: u16,
    /// Whether the response was truncated to fit UDP.
    pub truncated: bool,
}

/// Why a message got no response at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsDrop {
    /// Shorter than a DNS header.
    TooShort,
    /// A response (QR set) sent to the resolver.
    NotAQuery,
}

/// What to do with a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Send `bytes` back to the client.
    Reply { bytes: Vec<u8>, summary: Summary },
    /// Not a cluster name: forward the query to the upstream resolvers.
    Forward {
        /// The question's type.
        qtype: u16,
        /// The largest UDP response the client takes: 512, or its EDNS(0)
        /// payload size clamped to 512..=4096 (an upstream answer larger
        /// than this, or than the room, goes to it truncated).
        udp_payload: u16,
    },
    /// Send nothing.
    Drop(DnsDrop),
}

/// Answers `query` from `zone`. See the module docs.
pub fn answer(zone: &DnsZone, query: &[u8], proto: Proto) -> Answer {
    answer_within(zone, query, proto, usize::MAX)
}

/// [`answer`], with a UDP response of at most `room` bytes whatever the
/// client's payload size (the packet path passes the client's MTU less
/// the IP and UDP headers). A `room` under 512 is the caller's to judge:
/// even a truncated response may not fit it.
pub fn answer_within(zone: &DnsZone, query: &[u8], proto: Proto, room: usize) -> Answer {
    let [id0, id1, flags0, ..] = *query else {
        return Answer::Drop(DnsDrop::TooShort);
    };
    if query.len() < 12 {
        return Answer::Drop(DnsDrop::TooShort);
    }
    if flags0 & 0x80 != 0 {
        return Answer::Drop(DnsDrop::NotAQuery);
    }
    let Ok(request) = Message::from_vec(query) else {
        // Echo what the header says; nothing else of it can be trusted.
        let id = u16::from_be_bytes([id0, id1]);
        let opcode = OpCode::from_u8((flags0 >> 3) & 0x0f);
        let mut m = Message::error_msg(id, opcode, ResponseCode::FormErr);
        m.metadata.recursion_desired = flags0 & 0x01 != 0;
        m.metadata.recursion_available = true;
        return reply(m, room.min(512), 0);
    };
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.checking_disabled = request.metadata.checking_disabled;
    response.metadata.recursion_available = true;
    let udp_payload = request
        .edns
        .as_ref()
        .map_or(512, |e| e.max_payload().clamp(512, MAX_UDP_PAYLOAD));
    let limit = match proto {
        Proto::Tcp => usize::from(u16::MAX),
        Proto::Udp => usize::from(udp_payload).min(room),
    };
    if let Some(edns) = &request.edns {
        let mut ours = Edns::new();
        ours.set_max_payload(ADVERTISED_UDP_PAYLOAD);
        ours.set_dnssec_ok(false);
        response.set_edns(ours);
        if edns.version() > 0 {
            response.metadata.response_code = ResponseCode::BADVERS;
            return reply(response, limit, 0);
        }
    }
    response.add_queries(request.queries.iter().cloned());
    if request.metadata.op_code != OpCode::Query {
        response.metadata.response_code = ResponseCode::NotImp;
        return reply(response, limit, 0);
    }
    let [question] = request.queries.as_slice() else {
        response.metadata.response_code = ResponseCode::FormErr;
        return reply(response, limit, 0);
    };
    let qtype = question.query_type();
    let qtype_code = u16::from(qtype);
    let qname = question.name();
    let lower = lower_name(qname);

    let in_zone = lower == zone.domain || lower.ends_with(&format!(".{}", zone.domain));
    if !in_zone {
        if is_reverse(&lower) {
            if let Some(targets) = zone.reverse.get(&lower) {
                if matches!(qtype, RecordType::PTR | RecordType::ANY) {
                    response.metadata.authoritative = true;
                    for t in targets {
                        if let Some(target) = fqdn(t) {
                            response.add_answer(Record::from_rdata(
                                qname.clone(),
                                zone.ttl,
                                RData::PTR(PTR(target)),
                            ));
                        }
                    }
                    return reply(response, limit, qtype_code);
                }
            }
        }
        return Answer::Forward {
            qtype: qtype_code,
            udp_payload,
        };
    }
    if !matches!(question.query_class(), DNSClass::IN | DNSClass::ANY) {
        response.metadata.response_code = ResponseCode::Refused;
        return reply(response, limit, qtype_code);
    }
    if !zone.ready {
        response.metadata.response_code = ResponseCode::ServFail;
        return reply(response, limit, qtype_code);
    }
    response.metadata.authoritative = true;
    resolve(zone, qname, &lower, qtype, &mut response);
    reply(response, limit, qtype_code)
}

/// Fills the answer of an in-zone question (and the authority section for
/// negative answers).
fn resolve(zone: &DnsZone, qname: &Name, lower: &str, qtype: RecordType, out: &mut Message) {
    if lower == zone.domain {
        match qtype {
            RecordType::SOA => {
                out.add_answer(soa(zone, qname.clone()));
            }
            RecordType::NS => {
                if let Some(ns) = fqdn(&format!("ns.dns.{}", zone.domain)) {
                    out.add_answer(Record::from_rdata(
                        qname.clone(),
                        zone.ttl,
                        RData::NS(NS(ns)),
                    ));
                }
            }
            _ => negative(zone, out, ResponseCode::NoError),
        }
        return;
    }
    if let Some(records) = zone.records.get(lower) {
        let before = out.answers.len();
        add_matching(zone, qname.clone(), records, qtype, out);
        if out.answers.len() > before {
            add_srv_glue(zone, out);
            return;
        }
        // An alias answers every type (but CNAME itself, matched above).
        if let Some(Data::Cname(target)) = records.iter().find(|d| matches!(d, Data::Cname(_))) {
            chase(zone, qname.clone(), target, qtype, out);
            return;
        }
        negative(zone, out, ResponseCode::NoError);
        return;
    }
    if let Some(ip) = pod_record(zone, lower) {
        let rdata = match (ip, qtype) {
            (IpAddr::V4(v4), RecordType::A | RecordType::ANY) => Some(RData::A(A(v4))),
            (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => Some(RData::AAAA(AAAA(v6))),
            _ => None,
        };
        match rdata {
            Some(r) => {
                out.add_answer(Record::from_rdata(qname.clone(), zone.ttl, r));
            }
            None => negative(zone, out, ResponseCode::NoError),
        }
        return;
    }
    let code = if zone.names.contains(lower) {
        ResponseCode::NoError
    } else {
        ResponseCode::NXDomain
    };
    negative(zone, out, code);
}

/// Adds the records of `records` that answer `qtype`, owned by `owner`.
fn add_matching(
    zone: &DnsZone,
    owner: Name,
    records: &[Data],
    qtype: RecordType,
    out: &mut Message,
) {
    for data in records {
        let rdata = match (data, qtype) {
            (Data::Addr(IpAddr::V4(v4)), RecordType::A | RecordType::ANY) => RData::A(A(*v4)),
            (Data::Addr(IpAddr::V6(v6)), RecordType::AAAA | RecordType::ANY) => {
                RData::AAAA(AAAA(*v6))
            }
            (Data::Srv(prio, weight, port, target), RecordType::SRV | RecordType::ANY) => {
                let Some(target) = fqdn(target) else { continue };
                RData::SRV(SRV::new(*prio, *weight, *port, target))
            }
            (Data::Cname(target), RecordType::CNAME | RecordType::ANY) => {
                let Some(target) = fqdn(target) else { continue };
                RData::CNAME(CNAME(target))
            }
            (Data::Txt(text), RecordType::TXT | RecordType::ANY) => {
                RData::TXT(TXT::new(vec![text.clone()]))
            }
            _ => continue,
        };
        out.add_answer(Record::from_rdata(owner.clone(), zone.ttl, rdata));
    }
}

/// Answers with the CNAME, then follows it while it stays in the zone.
fn chase(zone: &DnsZone, owner: Name, target: &str, qtype: RecordType, out: &mut Message) {
    let mut owner = owner;
    let mut target = target.to_owned();
    for _ in 0..MAX_CHASE {
        let Some(target_name) = fqdn(&target) else {
            return;
        };
        out.add_answer(Record::from_rdata(
            owner,
            zone.ttl,
            RData::CNAME(CNAME(target_name.clone())),
        ));
        let Some(records) = zone.records.get(&target) else {
            // Outside the zone (or absent): following it is the resolver's job.
            return;
        };
        let before = out.answers.len();
        add_matching(zone, target_name.clone(), records, qtype, out);
        if out.answers.len() > before {
            return;
        }
        match records.iter().find_map(|d| match d {
            Data::Cname(next) => Some(next.clone()),
            _ => None,
        }) {
            Some(next) => {
                owner = target_name;
                target = next;
            }
            None => return,
        }
    }
}

/// The A/AAAA records of every SRV target in the answer, as additionals.
fn add_srv_glue(zone: &DnsZone, out: &mut Message) {
    let targets: Vec<Name> = out
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(srv) => Some(srv.target.clone()),
            _ => None,
        })
        .collect();
    let mut seen: Vec<String> = Vec::new();
    for target in targets {
        let lower = lower_name(&target);
        if seen.contains(&lower) {
            continue;
        }
        if let Some(records) = zone.records.get(&lower) {
            for data in records {
                let rdata = match data {
                    Data::Addr(IpAddr::V4(v4)) => RData::A(A(*v4)),
                    Data::Addr(IpAddr::V6(v6)) => RData::AAAA(AAAA(*v6)),
                    _ => continue,
                };
                out.add_additional(Record::from_rdata(target.clone(), zone.ttl, rdata));
            }
        }
        seen.push(lower);
    }
}

/// A pod record's address: `<dashed-ip>.<namespace>.pod.<zone>`, for any
/// address and any namespace label, as the specification's section 2.6
/// says (CoreDNS's `pods insecure`).
fn pod_record(zone: &DnsZone, lower: &str) -> Option<IpAddr> {
    let rest = lower.strip_suffix(&zone.domain)?.strip_suffix(".pod.")?;
    let (first, ns) = rest.split_once('.')?;
    if ns.is_empty() || ns.contains('.') {
        return None;
    }
    undash(first)
}

/// An empty answer with the SOA in the authority section.
fn negative(zone: &DnsZone, out: &mut Message, code: ResponseCode) {
    out.metadata.response_code = code;
    if let Some(apex) = fqdn(&zone.domain) {
        out.add_authority(soa(zone, apex));
    }
}

/// The zone's SOA record, owned by `owner`.
fn soa(zone: &DnsZone, owner: Name) -> Record {
    let mname = fqdn(&format!("ns.dns.{}", zone.domain)).unwrap_or_default();
    let rname = fqdn(&format!("hostmaster.{}", zone.domain)).unwrap_or_default();
    // Serial, refresh, retry, expire as CoreDNS's kubernetes plugin;
    // minimum = the negative TTL (RFC 2308).
    let soa = SOA::new(mname, rname, 1, 7200, 1800, 86400, zone.ttl);
    Record::from_rdata(owner, zone.ttl, RData::SOA(soa))
}

/// Encodes `message`, truncating it to `limit` bytes if needed.
fn reply(message: Message, limit: usize, qtype: u16) -> Answer {
    let rcode = u16::from(message.metadata.response_code);
    let Ok(bytes) = message.to_vec() else {
        // Every name here came from the query or the zone; an encoding
        // failure would be a bug, not input: answer SERVFAIL.
        let mut m = Message::error_msg(
            message.metadata.id,
            message.metadata.op_code,
            ResponseCode::ServFail,
        );
        m.add_queries(message.queries.iter().cloned());
        let bytes = m.to_vec().unwrap_or_default();
        return Answer::Reply {
            bytes,
            summary: Summary {
                qtype,
                rcode: u16::from(ResponseCode::ServFail),
                truncated: false,
            },
        };
    };
    if bytes.len() <= limit {
        return Answer::Reply {
            bytes,
            summary: Summary {
                qtype,
                rcode,
                truncated: false,
            },
        };
    }
    let mut truncated = message.truncate();
    truncated.metadata.message_type = MessageType::Response;
    let bytes = truncated.to_vec().unwrap_or_default();
    Answer::Reply {
        bytes,
        summary: Summary {
            qtype,
            rcode,
            truncated: true,
        },
    }
}

/// A name in lower case, without the trailing dot.
fn lower_name(name: &Name) -> String {
    let mut s = name.to_lowercase().to_ascii();
    if s.ends_with('.') {
        s.pop();
    }
    s
}

/// A fully qualified [`Name`] from a zone name (no trailing dot).
fn fqdn(name: &str) -> Option<Name> {
    let mut n = Name::from_ascii(name).ok()?;
    n.set_fqdn(true);
    Some(n)
}
