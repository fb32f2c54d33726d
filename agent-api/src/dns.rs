//! Cluster DNS on the local API: the counters `status` carries
//! ([`DnsInfo`], in [`DataplaneInfo`](crate::DataplaneInfo)).
//!
//! Contract: every field defaults (an agent that predates one sends
//! nothing for it); label values (`name` of a [`NamedCount`]) are the
//! switch's stable metric labels: question types `a`, `aaaa`, ...;
//! response codes `noerror`, `nxdomain`, ...; drop reasons `too_short`, ...

use serde::{Deserialize, Serialize};

/// A counter with a stable name (a question type, a response code, a
/// reason).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedCount {
    /// The stable label.
    pub name: String,
    /// The count.
    pub count: u64,
}

/// One bucket of a latency histogram (not cumulative).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencyBucket {
    /// The bucket's upper bound in microseconds; `null` for the last
    /// bucket (slower than every bound).
    pub le_us: Option<u64>,
    /// Answers that took at most `le_us` and more than the bound before.
    pub count: u64,
}

/// Cluster DNS's counters (see docs/dns.md, "Counters").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DnsInfo {
    /// Queries to the DNS VIP answered from the zone or forwarded, by
    /// question type.
    pub queries: Vec<NamedCount>,
    /// Queries the switch answered from the cluster zone, by response code.
    pub zone_answers: Vec<NamedCount>,
    /// Answers from the forwarder (cache, upstream, or its own SERVFAIL)
    /// written back to pods, by response code.
    pub forwarded_answers: Vec<NamedCount>,
    /// Queries handed to the forwarder (names outside the cluster).
    pub forwarded: u64,
    /// Forwarded queries answered from the forwarder's cache.
    pub cache_hits: u64,
    /// Forwarded queries that joined an identical one in flight.
    pub coalesced: u64,
    /// Queries sent to upstream resolvers (retries included).
    pub upstream_queries: u64,
    /// Answers received from upstream resolvers.
    pub upstream_answers: u64,
    /// Upstream attempts that timed out (each then failed over).
    pub upstream_timeouts: u64,
    /// Questions that got SERVFAIL after every attempt timed out.
    pub upstream_failures: u64,
    /// Sends to an upstream that failed (or would have blocked).
    pub upstream_send_errors: u64,
    /// Forwarded queries refused at once (too many in flight).
    pub overloaded: u64,
    /// Upstream datagrams matching no question in flight.
    pub upstream_unmatched: u64,
    /// Unparsable messages at the forwarder (queries or upstream answers).
    pub malformed: u64,
    /// Sum of upstream latencies (first send to answer), microseconds.
    pub upstream_latency_us: u64,
    /// The same latencies as a histogram; the counts add up to
    /// `upstream_answers`.
    pub upstream_latency: Vec<LatencyBucket>,
    /// Zone answers sent truncated (TC set).
    pub zone_truncated: u64,
    /// Forwarded answers sent truncated (TC set).
    pub forwarded_truncated: u64,
    /// TCP segments to the VIP's port 53.
    pub tcp_segments: u64,
    /// Packets to the VIP on another port or protocol.
    pub other_port: u64,
    /// Packets to the VIP's port 53 dropped, by reason.
    pub drops: Vec<NamedCount>,
}
