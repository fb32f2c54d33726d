//! `weftctl status`: this node as its agent sees it — the node, its link
//! to the control plane, its peers (like `wg show`) and its drop counters.

use std::time::Duration;

use anyhow::Result;
use clap::Args;
use weft_agent_api::{
    DataplaneInfo, DnsInfo, NamedCount, OffloadInfo, PolicyInfo, ServicesInfo, StatusResult,
};

use super::pod::{connect, AgentSocket};
use crate::duration;
use crate::output::Format;
use crate::render::table;

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    pub socket: AgentSocket,
    /// Output: `table` (text for people) or `json` (for scripts).
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// `weftctl status`
pub(crate) async fn run(args: StatusArgs) -> Result<()> {
    let mut agent = connect(&args.socket.path).await?;
    let status = agent.status().await?;
    match args.output {
        Format::Json => println!("{}", serde_json::to_string_pretty(&status)?),
        Format::Table => print!("{}", render(&status)),
    }
    Ok(())
}

/// The human form: a summary, then the peers, then non-zero drop counters.
fn render(s: &StatusResult) -> String {
    let n = &s.node;
    let or_dash = |v: &str| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.to_string()
        }
    };
    let link = if n.control_plane_connected {
        format!("connected, revision {}", n.watch_revision)
    } else {
        match &n.last_error {
            Some(e) => format!("DISCONNECTED: {e}; last revision {}", n.watch_revision),
            None => format!("DISCONNECTED; last revision {}", n.watch_revision),
        }
    };
    let dataplane = match (&s.dataplane, &s.dataplane_error) {
        (Some(d), _) => format!(
            "running; forwarded {} to pods, {} to host, {} to peers",
            d.forwarded_to_ports, d.forwarded_to_host, d.forwarded_to_peers
        ),
        (None, Some(e)) => format!("DOWN: {e}"),
        (None, None) => "unknown".into(),
    };
    let summary = [
        ("node", format!("{} (id {})", or_dash(&n.name), n.node_id)),
        ("pod CIDR", or_dash(&n.pod_cidr)),
        ("node address", or_dash(&n.node_address)),
        (
            "control plane",
            format!("{} ({link})", or_dash(&n.control_plane)),
        ),
        ("pods", s.pods.to_string()),
        ("data plane", dataplane),
    ];
    let offloads = s.dataplane.as_ref().map(|d| offloads(&d.offload));
    let services = s.dataplane.as_ref().and_then(|d| d.services.as_ref());
    let policy = s.dataplane.as_ref().and_then(|d| d.policy.as_ref());
    let dns = s.dataplane.as_ref().map(|d| dns(&d.dns));
    let registrations = s.registration.as_ref().map(|r| {
        format!(
            "{} registered, {} pending, {} failed",
            r.registered, r.pending, r.failed
        )
    });
    let objects = s.cluster_view.as_ref().map(|v| {
        format!(
            "{} namespaces, {} pods, {} services, {} endpoint slices, {} network policies (revision {})",
            v.namespaces, v.pods, v.services, v.endpoint_slices, v.network_policies, v.revision
        )
    });
    let mut out = String::new();
    let lines = summary
        .into_iter()
        .chain(offloads.map(|o| ("offloads", o)))
        .chain(services.map(|v| ("services", services_line(v))))
        .chain(services.map(|v| ("conntrack", conntrack_line(v))))
        .chain(policy.map(|p| ("policy", policy_line(p))))
        .chain(dns.map(|d| ("dns", d)))
        .chain(registrations.map(|r| ("registrations", r)))
        .chain(objects.map(|o| ("objects", o)));
    for (key, value) in lines {
        out.push_str(&format!("{:<15}{value}\n", format!("{key}:")));
    }
    if let Some(r) = s.registration.as_ref().filter(|r| !r.problems.is_empty()) {
        let rows: Vec<Vec<String>> = r
            .problems
            .iter()
            .map(|p| {
                let pod = if p.name.is_empty() {
                    "(all of this node's)".to_string()
                } else {
                    format!("{}/{}", p.namespace, p.name)
                };
                vec![
                    p.action.clone(),
                    pod,
                    p.failures.to_string(),
                    p.error.clone(),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&table(&["NOT YET", "POD", "FAILURES", "LAST ERROR"], &rows));
    }
    if let Some(p) = policy.filter(|p| !p.by_policy.is_empty()) {
        let rows: Vec<Vec<String>> = p
            .by_policy
            .iter()
            .map(|c| vec![c.name.clone(), c.allowed.to_string(), c.denied.to_string()])
            .collect();
        out.push('\n');
        out.push_str(&table(&["POLICY", "ALLOWED", "DENIED"], &rows));
    }
    if let Some(d) = &s.dataplane {
        out.push_str(&peers_and_drops(d));
    }
    out
}

/// "2 policies (3 rules) select this node's pods; 40 connections judged:
/// 30 not isolated, 2 denied (0 not logged); 1 of 1 untracked packets
/// denied".
fn policy_line(p: &PolicyInfo) -> String {
    format!(
        "{} policies ({} rules) select this node's pods; {} connections judged: {} not isolated, \
         {} denied ({} not logged); {} of {} untracked packets denied",
        p.policies,
        p.rules,
        p.judged,
        p.not_isolated,
        p.denied,
        p.denials_unlogged,
        p.untracked_denied,
        p.untracked_judged
    )
}

/// "2 services, 2 frontends, 3 endpoints; 10 translations (1 hairpin, 4
/// kept affinity), 2 refused for no endpoint, 0 for an unknown port".
fn services_line(v: &ServicesInfo) -> String {
    format!(
        "{} services, {} frontends, {} endpoints; {} translations ({} hairpin, {} kept affinity), \
         {} refused for no endpoint, {} for an unknown port, {} dropped (Local policy, no local endpoint), \
         {} invalid to a Service, {} UDP flows moved off a gone endpoint, {} source ports moved (tuple taken)",
        v.services,
        v.frontends,
        v.endpoints,
        v.translations,
        v.hairpins,
        v.affinity_hits,
        v.no_endpoint_rejects,
        v.unknown_port_rejects,
        v.no_local_endpoint_drops,
        v.invalid_to_service,
        v.stale_flows,
        v.source_ports_remapped
    )
}

/// "5 of 131072 entries; 9 inserts, 4 expired, 0 evicted, 0 refused (table
/// full), 0 refused (source limit)".
fn conntrack_line(v: &ServicesInfo) -> String {
    format!(
        "{} of {} entries; {} inserts, {} expired, {} evicted, {} refused (table full), {} refused (source limit)",
        v.conntrack_entries,
        v.conntrack_max,
        v.conntrack_inserts,
        v.conntrack_expired,
        v.conntrack_evictions,
        v.conntrack_table_full,
        v.conntrack_source_limited
    )
}

/// Which offloads are on, then what they did: "TUN TSO/USO on, UDP GSO
/// on, UDP GRO off; 10 super-packets read, ...".
fn offloads(o: &OffloadInfo) -> String {
    let on = |b: bool| if b { "on" } else { "off" };
    let mut out = format!(
        "TUN TSO/USO {}, UDP GSO {}, UDP GRO {}",
        on(o.tun),
        on(o.udp_gso),
        on(o.udp_gro)
    );
    if o.tun || o.udp_gso || o.udp_gro {
        out.push_str(&format!(
            "; {} super-packets read, {} written, {} segments coalesced, {} GSO sends, {} GRO receives",
            o.tun_super_packets_read,
            o.tun_super_packets_written,
            o.segments_coalesced,
            o.udp_gso_messages,
            o.udp_gro_messages
        ));
    }
    out
}

/// Cluster DNS in one line: "5 queries (3 from the zone, 2 forwarded:
/// 1 from cache, 1 sent upstream); upstream: 1 answered (mean 2.0 ms), 0
/// timeouts, 0 failures; 0 truncated; rcodes noerror 4, nxdomain 1".
fn dns(d: &DnsInfo) -> String {
    let total = |c: &[NamedCount]| c.iter().map(|c| c.count).sum::<u64>();
    let zone = total(&d.zone_answers);
    let mut out = format!(
        "{} queries ({zone} from the zone, {} forwarded: {} from cache, {} coalesced); \
         upstream: {} sent, {} answered",
        total(&d.queries),
        d.forwarded,
        d.cache_hits,
        d.coalesced,
        d.upstream_queries,
        d.upstream_answers,
    );
    if d.upstream_answers > 0 {
        let mean_ms = d.upstream_latency_us as f64 / d.upstream_answers as f64 / 1000.0;
        out.push_str(&format!(" (mean {mean_ms:.1} ms)"));
    }
    out.push_str(&format!(
        ", {} timeouts, {} failures; {} truncated",
        d.upstream_timeouts,
        d.upstream_failures,
        d.zone_truncated + d.forwarded_truncated
    ));
    let mut rcodes: Vec<(String, u64)> = Vec::new();
    for c in d.zone_answers.iter().chain(&d.forwarded_answers) {
        match rcodes.iter_mut().find(|(name, _)| *name == c.name) {
            Some((_, n)) => *n += c.count,
            None => rcodes.push((c.name.clone(), c.count)),
        }
    }
    let rcodes: Vec<String> = rcodes
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    if !rcodes.is_empty() {
        out.push_str(&format!("; rcodes {}", rcodes.join(", ")));
    }
    out
}

fn peers_and_drops(d: &DataplaneInfo) -> String {
    let mut out = String::new();
    if d.peers.is_empty() {
        out.push_str("\nno peers\n");
    } else {
        let rows: Vec<Vec<String>> = d
            .peers
            .iter()
            .map(|p| {
                vec![
                    p.name.clone(),
                    match p.ready {
                        Some(true) => "Ready".into(),
                        Some(false) => "NotReady".into(),
                        None => "-".into(),
                    },
                    p.endpoint.clone().unwrap_or_else(|| "(none)".into()),
                    if p.allowed.is_empty() {
                        "(none)".into()
                    } else {
                        p.allowed.join(",")
                    },
                    match p.last_handshake_ms {
                        Some(ms) => format!("{} ago", duration::human(Duration::from_millis(ms))),
                        None => "never".into(),
                    },
                    bytes(p.rx_bytes),
                    bytes(p.tx_bytes),
                    p.queued_packets.to_string(),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&table(
            &[
                "NAME",
                "STATE",
                "ENDPOINT",
                "ALLOWED",
                "LATEST HANDSHAKE",
                "RX",
                "TX",
                "NO SESSION",
            ],
            &rows,
        ));
    }
    let drops: Vec<Vec<String>> = d
        .drops
        .iter()
        .filter(|c| c.count > 0)
        .map(|c| vec![c.reason.clone(), c.count.to_string()])
        .collect();
    if !drops.is_empty() {
        out.push('\n');
        out.push_str(&table(&["DROP REASON", "PACKETS"], &drops));
    }
    out
}

/// Bytes like `wg show`: "300 B", "1.50 KiB", "12.00 MiB".
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use weft_agent_api::{
        ClusterViewInfo, DropCount, NodeInfo, PeerInfo, PolicyCount, RegistrationInfo,
        RegistrationProblem,
    };

    use super::*;

    #[test]
    fn offloads_off_say_so_without_counters() {
        assert_eq!(
            offloads(&OffloadInfo::default()),
            "TUN TSO/USO off, UDP GSO off, UDP GRO off"
        );
    }

    #[test]
    fn dns_sums_queries_and_merges_rcodes() {
        let named = |pairs: &[(&str, u64)]| -> Vec<NamedCount> {
            pairs
                .iter()
                .map(|(name, count)| NamedCount {
                    name: (*name).into(),
                    count: *count,
                })
                .collect()
        };
        let d = DnsInfo {
            queries: named(&[("a", 3), ("aaaa", 2), ("srv", 0)]),
            zone_answers: named(&[("noerror", 2), ("nxdomain", 1), ("servfail", 0)]),
            forwarded_answers: named(&[("noerror", 2), ("servfail", 0)]),
            forwarded: 2,
            cache_hits: 1,
            upstream_queries: 2,
            upstream_answers: 1,
            upstream_timeouts: 1,
            upstream_latency_us: 2_500,
            forwarded_truncated: 1,
            ..DnsInfo::default()
        };
        assert_eq!(
            dns(&d),
            "5 queries (3 from the zone, 2 forwarded: 1 from cache, 0 coalesced); \
             upstream: 2 sent, 1 answered (mean 2.5 ms), 1 timeouts, 0 failures; \
             1 truncated; rcodes noerror 4, nxdomain 1"
        );
    }

    #[test]
    fn byte_units() {
        assert_eq!(bytes(300), "300 B");
        assert_eq!(bytes(1536), "1.50 KiB");
        assert_eq!(bytes(12 * 1024 * 1024), "12.00 MiB");
    }

    #[test]
    fn renders_summary_peers_and_nonzero_drops() {
        let s = StatusResult {
            node: NodeInfo {
                name: "n1".into(),
                node_id: 3,
                pod_cidr: "10.244.3.0/24".into(),
                node_address: "10.244.3.1".into(),
                control_plane: "192.0.2.1:7443".into(),
                control_plane_connected: false,
                last_error: Some("connection refused".into()),
                watch_revision: 9,
                ..NodeInfo::default()
            },
            pods: 2,
            dataplane: Some(DataplaneInfo {
                peers: vec![
                    PeerInfo {
                        name: "n2".into(),
                        endpoint: Some("192.0.2.2:51820".into()),
                        allowed: vec!["10.244.2.0/24".into()],
                        last_handshake_ms: Some(12_000),
                        rx_bytes: 2048,
                        tx_bytes: 100,
                        ready: Some(true),
                        ..PeerInfo::default()
                    },
                    PeerInfo {
                        name: "n3".into(),
                        ready: Some(false),
                        queued_packets: 12,
                        ..PeerInfo::default()
                    },
                ],
                drops: vec![
                    DropCount {
                        reason: "no_route".into(),
                        count: 4,
                    },
                    DropCount {
                        reason: "ttl_exceeded".into(),
                        count: 0,
                    },
                ],
                offload: OffloadInfo {
                    tun: true,
                    udp_gso: true,
                    udp_gro: false,
                    tun_super_packets_read: 5,
                    tun_super_packets_written: 4,
                    segments_coalesced: 30,
                    udp_gso_messages: 7,
                    udp_gro_messages: 0,
                },
                services: Some(ServicesInfo {
                    services: 2,
                    frontends: 2,
                    endpoints: 3,
                    conntrack_entries: 5,
                    conntrack_max: 131_072,
                    conntrack_inserts: 9,
                    conntrack_expired: 4,
                    translations: 6,
                    hairpins: 1,
                    no_endpoint_rejects: 2,
                    ..ServicesInfo::default()
                }),
                policy: Some(PolicyInfo {
                    generation: 2,
                    policies: 1,
                    rules: 0,
                    judged: 40,
                    not_isolated: 30,
                    denied: 2,
                    untracked_judged: 1,
                    untracked_denied: 1,
                    denials_unlogged: 0,
                    by_policy: vec![PolicyCount {
                        name: "x/deny-ingress".into(),
                        allowed: 0,
                        denied: 2,
                    }],
                }),
                ..DataplaneInfo::default()
            }),
            dataplane_error: None,
            registration: Some(RegistrationInfo {
                registered: 1,
                pending: 0,
                failed: 2,
                problems: vec![
                    RegistrationProblem {
                        namespace: String::new(),
                        name: String::new(),
                        action: "sync".into(),
                        failures: 3,
                        error: "Unavailable: connection refused".into(),
                    },
                    RegistrationProblem {
                        namespace: "shop".into(),
                        name: "web".into(),
                        action: "register".into(),
                        failures: 1,
                        error: "InvalidArgument: bad".into(),
                    },
                ],
                last_sync_unix: None,
            }),
            cluster_view: Some(ClusterViewInfo {
                revision: 9,
                version: 4,
                namespaces: 3,
                pods: 5,
                services: 2,
                endpoint_slices: 2,
                network_policies: 1,
            }),
        };
        let text = render(&s);
        let expected = "\
node:          n1 (id 3)
pod CIDR:      10.244.3.0/24
node address:  10.244.3.1
control plane: 192.0.2.1:7443 (DISCONNECTED: connection refused; last revision 9)
pods:          2
data plane:    running; forwarded 0 to pods, 0 to host, 0 to peers
offloads:      TUN TSO/USO on, UDP GSO on, UDP GRO off; 5 super-packets read, 4 written, 30 segments coalesced, 7 GSO sends, 0 GRO receives
services:      2 services, 2 frontends, 3 endpoints; 6 translations (1 hairpin, 0 kept affinity), 2 refused for no endpoint, 0 for an unknown port, 0 dropped (Local policy, no local endpoint), 0 invalid to a Service, 0 UDP flows moved off a gone endpoint, 0 source ports moved (tuple taken)
conntrack:     5 of 131072 entries; 9 inserts, 4 expired, 0 evicted, 0 refused (table full), 0 refused (source limit)
policy:        1 policies (0 rules) select this node's pods; 40 connections judged: 30 not isolated, 2 denied (0 not logged); 1 of 1 untracked packets denied
dns:           0 queries (0 from the zone, 0 forwarded: 0 from cache, 0 coalesced); upstream: 0 sent, 0 answered, 0 timeouts, 0 failures; 0 truncated
registrations: 1 registered, 0 pending, 2 failed
objects:       3 namespaces, 5 pods, 2 services, 2 endpoint slices, 1 network policies (revision 9)

NOT YET   POD                   FAILURES  LAST ERROR
sync      (all of this node's)  3         Unavailable: connection refused
register  shop/web              1         InvalidArgument: bad

POLICY          ALLOWED  DENIED
x/deny-ingress  0        2

NAME  STATE     ENDPOINT         ALLOWED        LATEST HANDSHAKE  RX        TX     NO SESSION
n2    Ready     192.0.2.2:51820  10.244.2.0/24  12s ago           2.00 KiB  100 B  0
n3    NotReady  (none)           (none)         never             0 B       0 B    12

DROP REASON  PACKETS
no_route     4
";
        assert_eq!(text, expected);
    }
}
