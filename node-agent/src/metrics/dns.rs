//! Cluster DNS's metrics (`weft_dns_*`), from the [`DnsInfo`] of a status.
//!
//! Contract: every counter the status lists is a sample, zeros included
//! (label values are the switch's stable names); the upstream latency is
//! an OpenMetrics histogram in seconds, built from the forwarder's
//! buckets (cumulated here), its `_count` equal to the upstream answers.

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};
use weft_agent_api::{DnsInfo, LatencyBucket, NamedCount};

/// Registers the `dns_*` metrics of `d`.
pub(super) fn register(reg: &mut Registry, d: &DnsInfo) {
    by_label(
        reg,
        "dns_queries",
        "DNS queries to the cluster DNS address answered from the zone or forwarded, by question type",
        "type",
        &d.queries,
    );
    let responses = Family::<[(&'static str, String); 2], Counter>::default();
    for (source, counts) in [
        ("zone", &d.zone_answers),
        ("forwarder", &d.forwarded_answers),
    ] {
        for c in counts {
            responses
                .get_or_create(&[("source", source.to_owned()), ("rcode", c.name.clone())])
                .inc_by(c.count);
        }
    }
    reg.register(
        "dns_responses",
        "DNS responses sent to pods, by source (zone: the cluster zone; forwarder: cache or upstream) and response code",
        responses,
    );
    let truncated = Family::<[(&'static str, String); 1], Counter>::default();
    for (source, n) in [
        ("zone", d.zone_truncated),
        ("forwarder", d.forwarded_truncated),
    ] {
        truncated
            .get_or_create(&[("source", source.to_owned())])
            .inc_by(n);
    }
    reg.register(
        "dns_truncated",
        "DNS responses sent truncated (TC set) to fit the client's UDP size or MTU, by source",
        truncated,
    );
    by_label(
        reg,
        "dns_dropped",
        "Packets to the cluster DNS address's port 53 dropped unanswered, by reason",
        "reason",
        &d.drops,
    );
    let plain = [
        (
            "dns_forwarded",
            "DNS queries handed to the forwarder (names outside the cluster zone)",
            d.forwarded,
        ),
        (
            "dns_cache_hits",
            "Forwarded DNS queries answered from the forwarder's cache",
            d.cache_hits,
        ),
        (
            "dns_coalesced",
            "Forwarded DNS queries that joined the same question already in flight",
            d.coalesced,
        ),
        (
            "dns_upstream_queries",
            "DNS queries sent to upstream resolvers (retries included)",
            d.upstream_queries,
        ),
        (
            "dns_upstream_answers",
            "DNS answers received from upstream resolvers",
            d.upstream_answers,
        ),
        (
            "dns_upstream_timeouts",
            "Upstream DNS attempts that timed out (each fails over to the next upstream)",
            d.upstream_timeouts,
        ),
        (
            "dns_upstream_failures",
            "Forwarded DNS questions answered SERVFAIL after every attempt timed out",
            d.upstream_failures,
        ),
        (
            "dns_upstream_send_errors",
            "Sends to an upstream resolver that failed or would have blocked",
            d.upstream_send_errors,
        ),
        (
            "dns_overloaded",
            "Forwarded DNS queries refused at once with SERVFAIL: too many questions in flight",
            d.overloaded,
        ),
        (
            "dns_upstream_unmatched",
            "Datagrams from upstream resolvers matching no question in flight",
            d.upstream_unmatched,
        ),
        (
            "dns_malformed",
            "Unparsable DNS messages at the forwarder (queries or upstream answers)",
            d.malformed,
        ),
        (
            "dns_tcp_segments",
            "TCP segments to the cluster DNS address's port 53",
            d.tcp_segments,
        ),
        (
            "dns_other_port_packets",
            "Packets to the cluster DNS address on another port or protocol",
            d.other_port,
        ),
    ];
    for (name, help, n) in plain {
        super::render::counter(reg, name, help, n);
    }
    reg.register_with_unit(
        "dns_upstream_latency",
        "Time from sending a forwarded DNS question upstream to its answer (failovers included)",
        Unit::Seconds,
        Latency::new(d.upstream_latency_us, &d.upstream_latency),
    );
}

/// A counter family with one label.
fn by_label(reg: &mut Registry, name: &str, help: &str, key: &'static str, counts: &[NamedCount]) {
    let family = Family::<[(&'static str, String); 1], Counter>::default();
    for c in counts {
        family
            .get_or_create(&[(key, c.name.clone())])
            .inc_by(c.count);
    }
    reg.register(name, help, family);
}

/// A histogram already counted elsewhere: sum in seconds, count, and
/// `(upper bound in seconds, count in that bucket)` (not cumulative; the
/// encoder cumulates). The last bound is `+Inf`.
#[derive(Debug)]
struct Latency {
    sum: f64,
    count: u64,
    buckets: Vec<(f64, u64)>,
}

impl Latency {
    fn new(sum_us: u64, buckets: &[LatencyBucket]) -> Self {
        let mut out: Vec<(f64, u64)> = buckets
            .iter()
            .map(|b| {
                let le = b.le_us.map_or(f64::INFINITY, |us| us as f64 / 1e6);
                (le, b.count)
            })
            .collect();
        // OpenMetrics requires the +Inf bucket (an agent that sent no
        // buckets gets only it, with every answer counted there).
        if out.last().is_none_or(|(le, _)| le.is_finite()) {
            out.push((f64::INFINITY, 0));
        }
        let count = out.iter().map(|(_, n)| *n).fold(0u64, u64::saturating_add);
        Self {
            sum: sum_us as f64 / 1e6,
            count,
            buckets: out,
        }
    }
}

impl TypedMetric for Latency {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Latency {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<NoLabelSet>(self.sum, self.count, &self.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}
