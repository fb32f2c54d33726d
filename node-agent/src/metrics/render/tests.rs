use weft_agent_api::{
    DataplaneInfo, DnsInfo, DropCount, LatencyBucket, NamedCount, NodeInfo, OffloadInfo, PeerInfo,
    PolicyCount,
};

use super::*;

fn peer(name: &str, handshake_ms: Option<u64>) -> PeerInfo {
    PeerInfo {
        name: name.into(),
        last_handshake_ms: handshake_ms,
        rx_bytes: 1000,
        tx_bytes: 2000,
        rx_packets: 10,
        tx_packets: 20,
        ready: Some(true),
        ..PeerInfo::default()
    }
}

fn status(dataplane: Option<DataplaneInfo>) -> StatusResult {
    StatusResult {
        node: NodeInfo {
            control_plane_connected: true,
            watch_revision: 42,
            ..NodeInfo::default()
        },
        pods: 3,
        dataplane_error: dataplane.is_none().then(|| "not running".into()),
        dataplane,
        registration: None,
        cluster_view: None,
    }
}

fn dataplane() -> DataplaneInfo {
    DataplaneInfo {
        peers: vec![peer("n2", Some(1500)), peer("n3", None)],
        drops: ["malformed", "link_local", "wg_replay"]
            .iter()
            .zip([0, 5, 0])
            .map(|(r, count)| DropCount {
                reason: (*r).into(),
                count,
            })
            .collect(),
        forwarded_to_ports: 7,
        forwarded_to_host: 0,
        forwarded_to_peers: 9,
        offload: OffloadInfo {
            tun: true,
            udp_gso: true,
            udp_gro: false,
            segments_coalesced: 11,
            ..OffloadInfo::default()
        },
        policy: Some(PolicyInfo {
            policies: 1,
            rules: 2,
            judged: 5,
            denied: 2,
            by_policy: vec![PolicyCount {
                name: "x/deny".into(),
                allowed: 3,
                denied: 2,
            }],
            ..PolicyInfo::default()
        }),
        ..DataplaneInfo::default()
    }
}

/// The sample lines (no comments).
fn samples(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.starts_with('#')).collect()
}

fn has(text: &str, line: &str) -> bool {
    samples(text).contains(&line)
}

fn assert_has(text: &str, lines: &[&str]) {
    for line in lines {
        assert!(has(text, line), "{line:?} missing from:\n{text}");
    }
}

#[test]
fn every_metric_is_rendered_with_help() {
    let text = render(&status(Some(dataplane()))).unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert_has(
        &text,
        &[
            "weft_dataplane_up 1",
            "weft_control_plane_connected 1",
            "weft_watch_revision 42",
            "weft_pods 3",
            "weft_peers 2",
            "weft_peer_receive_bytes_total{peer=\"n2\"} 1000",
            "weft_peer_transmit_bytes_total{peer=\"n2\"} 2000",
            "weft_peer_receive_packets_total{peer=\"n3\"} 10",
            "weft_peer_transmit_packets_total{peer=\"n3\"} 20",
            "weft_peer_last_handshake_seconds{peer=\"n2\"} 1.5",
            "weft_peer_ready{peer=\"n2\"} 1",
            "weft_peer_no_session_packets_total{peer=\"n3\"} 0",
            "weft_dropped_packets_total{reason=\"link_local\"} 5",
            "weft_forwarded_packets_total{to=\"pod\"} 7",
            "weft_forwarded_packets_total{to=\"peer\"} 9",
            "weft_offload_enabled{kind=\"tun\"} 1",
            "weft_offload_enabled{kind=\"udp_gro\"} 0",
            "weft_offload_segments_coalesced_total 11",
            "weft_offload_udp_gso_messages_total 0",
            "weft_policies 1",
            "weft_policy_rules 2",
            "weft_policy_connections_judged_total 5",
            "weft_policy_connections_denied_total 2",
            "weft_policy_verdicts_total{policy=\"x/deny\",verdict=\"allowed\"} 3",
            "weft_policy_verdicts_total{policy=\"x/deny\",verdict=\"denied\"} 2",
        ],
    );
    // One HELP per metric family, one TYPE each.
    let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
    let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
    // 20 of the node and data plane, 8 of policy, 15 of DNS (its 3
    // labelled families have no sample, and so no HELP, while the status
    // lists no label).
    assert_eq!(helps, 43, "{text}");
    assert_eq!(helps, types);
    // The encoder ends each HELP with a period itself.
    assert!(
        text.lines()
            .filter(|l| l.starts_with("# HELP "))
            .all(|l| l.ends_with('.') && !l.ends_with("..")),
        "{text}"
    );
    assert!(text.contains("# UNIT weft_peer_last_handshake_seconds seconds"));
}

#[test]
fn zero_counters_are_present() {
    let text = render(&status(Some(dataplane()))).unwrap();
    assert_has(
        &text,
        &[
            "weft_dropped_packets_total{reason=\"malformed\"} 0",
            "weft_dropped_packets_total{reason=\"wg_replay\"} 0",
            "weft_forwarded_packets_total{to=\"host\"} 0",
            "weft_offload_tun_super_packets_read_total 0",
        ],
    );
}

#[test]
fn a_peer_that_never_handshook_has_no_handshake_sample() {
    let text = render(&status(Some(dataplane()))).unwrap();
    let handshakes: Vec<_> = samples(&text)
        .into_iter()
        .filter(|l| l.starts_with("weft_peer_last_handshake_seconds"))
        .collect();
    assert_eq!(
        handshakes,
        ["weft_peer_last_handshake_seconds{peer=\"n2\"} 1.5"]
    );
    // Its traffic is still there.
    assert!(has(
        &text,
        "weft_peer_receive_bytes_total{peer=\"n3\"} 1000"
    ));
}

#[test]
fn label_values_are_escaped() {
    let mut dp = dataplane();
    dp.peers = vec![peer("a\"b\\c\nd", Some(0))];
    let text = render(&status(Some(dp))).unwrap();
    assert!(
        has(
            &text,
            "weft_peer_receive_bytes_total{peer=\"a\\\"b\\\\c\\nd\"} 1000"
        ),
        "{text}"
    );
    // Every sample stays on its own line.
    assert!(samples(&text)
        .iter()
        .all(|l| l.starts_with("weft_") && l.contains(' ')));
}

#[test]
fn a_silent_data_plane_leaves_the_node_metrics() {
    let text = render(&status(None)).unwrap();
    assert_has(
        &text,
        &[
            "weft_dataplane_up 0",
            "weft_control_plane_connected 1",
            "weft_watch_revision 42",
            "weft_pods 3",
        ],
    );
    assert!(!text.contains("weft_peers"), "{text}");
    assert!(!text.contains("weft_dropped_packets"), "{text}");
    assert!(!text.contains("weft_offload"), "{text}");
    assert!(text.ends_with("# EOF\n"));
}

#[test]
fn a_disconnected_control_plane_reads_zero() {
    let mut s = status(Some(DataplaneInfo::default()));
    s.node.control_plane_connected = false;
    let text = render(&s).unwrap();
    assert!(has(&text, "weft_control_plane_connected 0"), "{text}");
    assert!(has(&text, "weft_peers 0"), "{text}");
}

fn named(pairs: &[(&str, u64)]) -> Vec<NamedCount> {
    pairs
        .iter()
        .map(|(name, count)| NamedCount {
            name: (*name).into(),
            count: *count,
        })
        .collect()
}

#[test]
fn dns_counters_and_latency_histogram() {
    let mut dp = dataplane();
    dp.dns = DnsInfo {
        queries: named(&[("a", 4), ("aaaa", 1)]),
        zone_answers: named(&[("noerror", 2), ("nxdomain", 1)]),
        forwarded_answers: named(&[("noerror", 2), ("servfail", 0)]),
        forwarded: 2,
        cache_hits: 1,
        upstream_queries: 3,
        upstream_answers: 3,
        upstream_timeouts: 1,
        upstream_latency_us: 7_500,
        upstream_latency: vec![
            LatencyBucket {
                le_us: Some(1_000),
                count: 1,
            },
            LatencyBucket {
                le_us: Some(5_000),
                count: 2,
            },
            LatencyBucket {
                le_us: None,
                count: 0,
            },
        ],
        zone_truncated: 1,
        drops: named(&[("not_a_query", 6)]),
        ..DnsInfo::default()
    };
    let text = render(&status(Some(dp))).unwrap();
    assert_has(
        &text,
        &[
            "weft_dns_queries_total{type=\"a\"} 4",
            "weft_dns_queries_total{type=\"aaaa\"} 1",
            "weft_dns_responses_total{source=\"zone\",rcode=\"nxdomain\"} 1",
            "weft_dns_responses_total{source=\"forwarder\",rcode=\"noerror\"} 2",
            "weft_dns_responses_total{source=\"forwarder\",rcode=\"servfail\"} 0",
            "weft_dns_truncated_total{source=\"zone\"} 1",
            "weft_dns_truncated_total{source=\"forwarder\"} 0",
            "weft_dns_dropped_total{reason=\"not_a_query\"} 6",
            "weft_dns_forwarded_total 2",
            "weft_dns_cache_hits_total 1",
            "weft_dns_upstream_queries_total 3",
            "weft_dns_upstream_timeouts_total 1",
            "weft_dns_upstream_failures_total 0",
            // The histogram: cumulative buckets, +Inf = count = answers.
            "weft_dns_upstream_latency_seconds_sum 0.0075",
            "weft_dns_upstream_latency_seconds_count 3",
            "weft_dns_upstream_latency_seconds_bucket{le=\"0.001\"} 1",
            "weft_dns_upstream_latency_seconds_bucket{le=\"0.005\"} 3",
            "weft_dns_upstream_latency_seconds_bucket{le=\"+Inf\"} 3",
        ],
    );
    assert!(text.contains("# TYPE weft_dns_upstream_latency_seconds histogram"));
}

#[test]
fn dns_latency_without_buckets_still_has_inf() {
    let text = render(&status(Some(dataplane()))).unwrap();
    assert_has(
        &text,
        &[
            "weft_dns_upstream_latency_seconds_count 0",
            "weft_dns_upstream_latency_seconds_bucket{le=\"+Inf\"} 0",
        ],
    );
}
