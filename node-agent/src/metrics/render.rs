//! A [`StatusResult`] as OpenMetrics text: a fresh `prometheus-client`
//! registry per scrape, filled from the status and encoded.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use weft_agent_api::{DataplaneInfo, OffloadInfo, PolicyInfo, ServicesInfo, StatusResult};

/// The Content-Type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One label: `(name, value)`.
type Labels = [(&'static str, String); 1];

/// The metrics of `status` as OpenMetrics text (ends with `# EOF`). Fails
/// only if the encoder does (it does not, writing to a `String`).
pub fn render(status: &StatusResult) -> Result<String, std::fmt::Error> {
    let mut reg = Registry::with_prefix("weft");
    gauge(
        &mut reg,
        "dataplane_up",
        "Whether the data plane answered this scrape (1) or not (0)",
        u64::from(status.dataplane.is_some()),
    );
    gauge(
        &mut reg,
        "control_plane_connected",
        "Whether the agent's watch stream to the control plane is up (1) or not (0)",
        u64::from(status.node.control_plane_connected),
    );
    gauge(
        &mut reg,
        "watch_revision",
        "The last control-plane revision this agent has applied",
        status.node.watch_revision,
    );
    gauge(
        &mut reg,
        "pods",
        "Pods on this node",
        u64::try_from(status.pods).unwrap_or(u64::MAX),
    );
    if let Some(dp) = &status.dataplane {
        peers(&mut reg, dp);
        packets(&mut reg, dp);
        offloads(&mut reg, &dp.offload);
        if let Some(v) = &dp.services {
            services(&mut reg, v);
        }
        if let Some(p) = &dp.policy {
            policy(&mut reg, p);
        }
        super::dns::register(&mut reg, &dp.dns);
    }
    let mut out = String::new();
    encode(&mut out, &reg)?;
    Ok(out)
}

/// Per peer: traffic and handshake age.
fn peers(reg: &mut Registry, dp: &DataplaneInfo) {
    gauge(
        reg,
        "peers",
        "WireGuard peers (other nodes) in the data plane",
        u64::try_from(dp.peers.len()).unwrap_or(u64::MAX),
    );
    let per_peer = |f: fn(&weft_agent_api::PeerInfo) -> u64| {
        dp.peers.iter().map(move |p| (p.name.clone(), f(p)))
    };
    let traffic = [
        (
            "peer_receive",
            "WireGuard datagram bytes received from the peer (authenticated ones only)",
            Some(Unit::Bytes),
            per_peer(|p| p.rx_bytes),
        ),
        (
            "peer_transmit",
            "WireGuard datagram bytes sent to the peer (as on the wire)",
            Some(Unit::Bytes),
            per_peer(|p| p.tx_bytes),
        ),
        (
            "peer_receive_packets",
            "WireGuard datagrams received from the peer (authenticated ones only)",
            None,
            per_peer(|p| p.rx_packets),
        ),
        (
            "peer_transmit_packets",
            "WireGuard datagrams sent to the peer",
            None,
            per_peer(|p| p.tx_packets),
        ),
        (
            "peer_no_session_packets",
            "Packets for the peer that found no WireGuard session (held for a handshake, lost if it never completes)",
            None,
            per_peer(|p| p.queued_packets),
        ),
    ];
    for (name, help, unit, samples) in traffic {
        counters(reg, name, help, unit, "peer", samples);
    }
    let handshake = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    for p in &dp.peers {
        if let Some(ms) = p.last_handshake_ms {
            // Milliseconds to seconds; f64 is exact far beyond any uptime.
            let secs = ms as f64 / 1000.0;
            handshake
                .get_or_create(&[("peer", p.name.clone())])
                .set(secs);
        }
    }
    let ready = Family::<Labels, Gauge>::default();
    for p in &dp.peers {
        if let Some(r) = p.ready {
            ready
                .get_or_create(&[("peer", p.name.clone())])
                .set(i64::from(r));
        }
    }
    reg.register(
        "peer_ready",
        "1 if the control plane reports the peer's node Ready, 0 if NotReady",
        ready,
    );
    reg.register_with_unit(
        "peer_last_handshake",
        "Time since the last completed WireGuard handshake with the peer (absent if none yet)",
        Unit::Seconds,
        handshake,
    );
}

/// Drops by reason, and forwarded packets by where they went.
fn packets(reg: &mut Registry, dp: &DataplaneInfo) {
    counters(
        reg,
        "dropped_packets",
        "Packets the data plane did not deliver, by reason (see docs/agent.md, Drop reasons)",
        None,
        "reason",
        dp.drops.iter().map(|d| (d.reason.clone(), d.count)),
    );
    counters(
        reg,
        "forwarded_packets",
        "Packets the data plane forwarded, by where to: a pod, the host (weft0), a peer",
        None,
        "to",
        [
            ("pod", dp.forwarded_to_ports),
            ("host", dp.forwarded_to_host),
            ("peer", dp.forwarded_to_peers),
        ]
        .map(|(to, n)| (to.to_string(), n)),
    );
}

/// Which offloads are on, and what they have done.
fn offloads(reg: &mut Registry, o: &OffloadInfo) {
    let enabled = Family::<Labels, Gauge<u64, AtomicU64>>::default();
    for (kind, on) in [
        ("tun", o.tun),
        ("udp_gso", o.udp_gso),
        ("udp_gro", o.udp_gro),
    ] {
        enabled
            .get_or_create(&[("kind", kind.to_string())])
            .set(u64::from(on));
    }
    reg.register(
        "offload_enabled",
        "Whether an offload is on (1) or off (0): TUN TSO/USO, UDP GSO, UDP GRO",
        enabled,
    );
    let done = [
        (
            "offload_tun_super_packets_read",
            "Super-packets read from TUNs (split into MTU-sized packets)",
            o.tun_super_packets_read,
        ),
        (
            "offload_tun_super_packets_written",
            "Super-packets written to TUNs (coalesced segments)",
            o.tun_super_packets_written,
        ),
        (
            "offload_segments_coalesced",
            "Segments merged into super-packets written to TUNs",
            o.segments_coalesced,
        ),
        (
            "offload_udp_gso_messages",
            "UDP GSO sends (each a run of datagrams to one peer)",
            o.udp_gso_messages,
        ),
        (
            "offload_udp_gro_messages",
            "UDP GRO receives (each a run of datagrams from one peer)",
            o.udp_gro_messages,
        ),
    ];
    for (name, help, value) in done {
        counter(reg, name, help, value);
    }
}

/// Services, connection tracking and translation (docs/services.md).
fn services(reg: &mut Registry, v: &ServicesInfo) {
    for (name, help, value) in [
        (
            "services",
            "Services in the service table in force",
            v.services,
        ),
        (
            "service_frontends",
            "Service frontends (ip:port/proto, node ports included)",
            v.frontends,
        ),
        (
            "service_endpoints",
            "Service endpoint slots (an endpoint counts once per Service port)",
            v.endpoints,
        ),
        (
            "conntrack_entries",
            "Connections tracked now",
            v.conntrack_entries,
        ),
        (
            "conntrack_max",
            "Connections the conntrack table holds at most",
            v.conntrack_max,
        ),
    ] {
        gauge(reg, name, help, value);
    }
    for (name, help, value) in [
        (
            "conntrack_inserts",
            "Conntrack entries created",
            v.conntrack_inserts,
        ),
        (
            "conntrack_expired",
            "Conntrack entries removed at their timeout",
            v.conntrack_expired,
        ),
        (
            "conntrack_evictions",
            "Conntrack entries not yet established evicted to make room",
            v.conntrack_evictions,
        ),
        (
            "conntrack_table_full",
            "New connections refused: the conntrack table full of established ones",
            v.conntrack_table_full,
        ),
        (
            "conntrack_source_limited",
            "New connections refused: their source at its conntrack limit",
            v.conntrack_source_limited,
        ),
        (
            "service_translations",
            "New connections translated to a Service endpoint",
            v.translations,
        ),
        (
            "service_hairpins",
            "Translated connections of a pod to itself (source rewritten)",
            v.hairpins,
        ),
        (
            "service_affinity_hits",
            "New connections that kept their ClientIP affinity",
            v.affinity_hits,
        ),
        (
            "service_no_endpoint_rejects",
            "Connections to a Service without endpoints, refused (RST / ICMP)",
            v.no_endpoint_rejects,
        ),
        (
            "service_unknown_port_rejects",
            "Connections to a Service address on a port it lacks, refused",
            v.unknown_port_rejects,
        ),
        (
            "service_stale_flows",
            "UDP flows moved off an endpoint that went away",
            v.stale_flows,
        ),
        (
            "service_source_ports_remapped",
            "New connections whose source port was moved because their reply tuple was taken",
            v.source_ports_remapped,
        ),
    ] {
        counter(reg, name, help, value);
    }
}

/// NetworkPolicy (docs/network-policy.md, "Seeing it").
fn policy(reg: &mut Registry, p: &PolicyInfo) {
    gauge(
        reg,
        "policies",
        "NetworkPolicies selecting a pod of this node",
        p.policies,
    );
    gauge(
        reg,
        "policy_rules",
        "Their ingress and egress rules",
        p.rules,
    );
    for (name, help, value) in [
        (
            "policy_connections_judged",
            "Connections judged by NetworkPolicy (new, or again after a policy change)",
            p.judged,
        ),
        (
            "policy_connections_not_isolated",
            "Judged connections no policy isolates (allowed by default)",
            p.not_isolated,
        ),
        (
            "policy_connections_denied",
            "Judged connections denied (their packets dropped)",
            p.denied,
        ),
        (
            "policy_untracked_packets_denied",
            "Untracked packets (ICMP other than echo, stray TCP) denied",
            p.untracked_denied,
        ),
        (
            "policy_denials_unlogged",
            "Denied connections not logged (the log's rate limit)",
            p.denials_unlogged,
        ),
    ] {
        counter(reg, name, help, value);
    }
    let verdicts = Family::<[(&'static str, String); 2], Counter>::default();
    for c in &p.by_policy {
        for (verdict, n) in [("allowed", c.allowed), ("denied", c.denied)] {
            verdicts
                .get_or_create(&[("policy", c.name.clone()), ("verdict", verdict.to_string())])
                .inc_by(n);
        }
    }
    reg.register(
        "policy_verdicts",
        "Connections each NetworkPolicy decided on this node: allowed by one of its rules, or denied by the isolation it sets",
        verdicts,
    );
}

/// Registers a counter with one sample.
pub(super) fn counter(reg: &mut Registry, name: &str, help: &str, value: u64) {
    let c = Counter::<u64>::default();
    c.inc_by(value);
    reg.register(name, help, c);
}

/// Registers a gauge with one sample.
fn gauge(reg: &mut Registry, name: &str, help: &str, value: u64) {
    let g = Gauge::<u64, AtomicU64>::default();
    g.set(value);
    reg.register(name, help, g);
}

/// Registers a counter family with one label `key`, a sample per item.
fn counters(
    reg: &mut Registry,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    key: &'static str,
    samples: impl IntoIterator<Item = (String, u64)>,
) {
    let family = Family::<Labels, Counter>::default();
    for (value, n) in samples {
        family.get_or_create(&[(key, value)]).inc_by(n);
    }
    match unit {
        Some(unit) => reg.register_with_unit(name, help, unit, family),
        None => reg.register(name, help, family),
    }
}

#[cfg(test)]
mod tests;
