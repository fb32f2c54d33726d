//! Cluster DNS on the local API: the counters `status` carries.
//!
//! Contract: a pure conversion of the engine's [`DnsStatus`] into the
//! wire's [`DnsInfo`]; every label is the switch's stable `as_str`.

use weft_agent_api::{DnsInfo, LatencyBucket, NamedCount};
use weft_switch::dns::{DnsRcode, LATENCY_BOUNDS};

use crate::engine::DnsStatus;

/// Cluster DNS's counters, as the API sends them.
pub(super) fn dns_info(d: &DnsStatus) -> DnsInfo {
    let named = |name: &str, count: u64| NamedCount {
        name: name.to_owned(),
        count,
    };
    let f = &d.forwarder;
    let micros = |t: std::time::Duration| u64::try_from(t.as_micros()).unwrap_or(u64::MAX);
    let bounds = LATENCY_BOUNDS.iter().map(|b| Some(micros(*b)));
    DnsInfo {
        queries: d
            .vip
            .queries_by_type()
            .map(|(t, n)| named(t.as_str(), n))
            .collect(),
        zone_answers: d.vip.answers().map(|(r, n)| named(r.as_str(), n)).collect(),
        forwarded_answers: DnsRcode::ALL
            .iter()
            .map(|r| named(r.as_str(), d.engine.replies_with(*r)))
            .collect(),
        forwarded: d.vip.forwarded(),
        cache_hits: f.cache_hits,
        coalesced: f.coalesced,
        upstream_queries: f.sent,
        upstream_answers: f.answered,
        upstream_timeouts: f.timeouts,
        upstream_failures: f.failures,
        upstream_send_errors: d.engine.send_errors,
        overloaded: f.overloaded,
        upstream_unmatched: f.unmatched,
        malformed: f.malformed,
        upstream_latency_us: micros(f.latency_total),
        upstream_latency: bounds
            .chain([None])
            .zip(f.latency_buckets)
            .map(|(le_us, count)| LatencyBucket { le_us, count })
            .collect(),
        zone_truncated: d.vip.truncated(),
        forwarded_truncated: d.engine.truncated,
        tcp_segments: d.vip.tcp(),
        other_port: d.vip.other_port(),
        drops: d.vip.drops().map(|(r, n)| named(r.as_str(), n)).collect(),
    }
}
