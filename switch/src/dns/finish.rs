//! Finishing the DNS VIP step where the scratch buffer is at hand:
//! answering a query from the zone into it, handing one over for the
//! upstream resolvers or for TCP, refusing other ports with ICMP port
//! unreachable from the VIP, and counting each in the switch's and the
//! DNS VIP's counters (see [`super::vip`] for the contract).

use std::net::IpAddr;
use std::time::Instant;

use super::answer::{answer_within, Answer, DnsDrop, Proto};
use super::counters::DnsDropReason;
use super::reply::reply_packet;
use super::vip::{DnsQuery, DnsVerdict};
use crate::counters::DropReason;
use crate::decide::{Action, Switch};
use crate::icmp_error::{self, IcmpError};
use crate::wire::IpPacket;

impl Switch {
    /// Answers, forwards or drops what [`Self::dns_step`] decided, counting
    /// it, with a reply written into `scratch`.
    pub(crate) fn finish_dns(
        &mut self,
        verdict: DnsVerdict,
        packet: &[u8],
        scratch: &mut [u8],
        now: Instant,
    ) -> Action {
        match verdict {
            DnsVerdict::Udp(query) => self.answer_query(query, packet, scratch),
            DnsVerdict::Tcp(client) => {
                self.dns.counters.count_tcp();
                self.counters.count_to_dns();
                Action::DnsTcp(client)
            }
            DnsVerdict::OtherPort { vip, may_answer } => {
                self.dns.counters.count_other_port();
                self.counters.count_drop(DropReason::DnsVipPort);
                let reply = may_answer
                    .then(|| self.port_unreachable(vip, packet, scratch, now))
                    .flatten();
                match reply {
                    Some(n) => {
                        self.counters.count_icmp_sent();
                        Action::Reply(n)
                    }
                    None => Action::Drop(DropReason::DnsVipPort),
                }
            }
            DnsVerdict::Drop(reason) => self.drop_query(reason),
        }
    }

    fn answer_query(&mut self, query: DnsQuery, packet: &[u8], scratch: &mut [u8]) -> Action {
        let mut client = query.client;
        let room = usize::from(client.max_message);
        match answer_within(&self.dns.zone, query.message(packet), Proto::Udp, room) {
            Answer::Reply { bytes, summary } => match reply_packet(&client, &bytes, scratch) {
                Ok(written) => {
                    let truncated = summary.truncated || written.truncated;
                    self.dns
                        .counters
                        .count_answer(summary.qtype, summary.rcode, truncated);
                    self.counters.count_to_dns();
                    Action::Reply(written.len)
                }
                Err(_) => self.drop_query(DnsDropReason::NoRoom),
            },
            Answer::Forward { qtype, udp_payload } => {
                client.max_message = client.max_message.min(udp_payload);
                self.dns.counters.count_forward(qtype);
                self.counters.count_to_dns();
                Action::DnsForward(DnsQuery { client, ..query })
            }
            Answer::Drop(DnsDrop::TooShort) => self.drop_query(DnsDropReason::TooShort),
            Answer::Drop(DnsDrop::NotAQuery) => self.drop_query(DnsDropReason::NotAQuery),
        }
    }

    fn drop_query(&mut self, reason: DnsDropReason) -> Action {
        self.dns.counters.count_drop(reason);
        self.counters.count_drop(DropReason::DnsQuery);
        Action::Drop(DropReason::DnsQuery)
    }

    /// ICMP port unreachable from `vip` about `packet`, if a token allows.
    fn port_unreachable(
        &mut self,
        vip: IpAddr,
        packet: &[u8],
        scratch: &mut [u8],
        now: Instant,
    ) -> Option<usize> {
        let invoking = IpPacket::new_checked(packet).ok()?;
        if !self.icmp_limit.try_take(now) {
            self.counters.count_icmp_rate_limited();
            return None;
        }
        let error = IcmpError::PortUnreachable;
        match (&invoking, vip) {
            (IpPacket::V4(p), IpAddr::V4(from)) => icmp_error::write_v4(scratch, from, p, error),
            (IpPacket::V6(p), IpAddr::V6(from)) => icmp_error::write_v6(scratch, from, p, error),
            _ => None,
        }
    }
}
