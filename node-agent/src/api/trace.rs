//! The `trace` op: one probe packet from a pod of this node through the
//! packet path (`weftctl trace`), described step by step.
//!
//! Contract: the probe is the first packet of a new connection (a TCP SYN,
//! a UDP datagram or an ICMP echo request) from the pod's address, built
//! by `weft_switch::probe_packet` and run through a clone of the switch
//! ([`crate::engine::Dataplane::trace`]): the steps are what the packet
//! path would do now, and nothing changes (no connection, no counter). The
//! answer names Services, policies, pods and nodes; errors say which input
//! was wrong (`invalid`) or which pod is missing (`not_found`).

use std::net::{IpAddr, SocketAddr};

use weft_agent_api::{ErrorBody, ErrorCode, TraceRequest, TraceResult, TraceStep};
use weft_switch::policy::Verdict;
use weft_switch::{probe_packet, Action, ProbeKind};

use super::Services;
use crate::engine::TraceOutcome;

/// The probe's source port (an ephemeral one; the ICMP identifier too).
const PROBE_PORT: u16 = 61_999;

fn invalid(message: String) -> ErrorBody {
    ErrorBody::new(ErrorCode::Invalid, message)
}

/// Carries out a `trace` request.
pub(super) async fn trace(
    services: &Services,
    req: TraceRequest,
) -> Result<TraceResult, ErrorBody> {
    let (kind, proto) = match req.protocol.to_ascii_uppercase().as_str() {
        "TCP" => (ProbeKind::TcpSyn, "TCP"),
        "UDP" => (ProbeKind::Udp, "UDP"),
        "ICMP" => (ProbeKind::Echo, "ICMP"),
        other => {
            return Err(invalid(format!(
                "protocol {other:?}: give TCP, UDP or ICMP"
            )))
        }
    };
    let address: IpAddr = req
        .address
        .parse()
        .map_err(|_| invalid(format!("{:?} is not an IP address", req.address)))?;
    if kind != ProbeKind::Echo && req.port == 0 {
        return Err(invalid(format!("{proto} needs a destination port")));
    }
    let pods = services.pods.list().await;
    let pod = pods
        .iter()
        .find(|p| {
            p.id == req.pod
                || p.cluster_name()
                    .is_some_and(|(ns, name)| format!("{ns}/{name}") == req.pod)
        })
        .ok_or_else(|| {
            ErrorBody::new(
                ErrorCode::NotFound,
                format!(
                    "no pod {:?} on this node (give its id or NAMESPACE/NAME; `weftctl pod list`)",
                    req.pod
                ),
            )
        })?;
    let src = SocketAddr::new(pod.address, PROBE_PORT);
    let dst = SocketAddr::new(address, if kind == ProbeKind::Echo { 0 } else { req.port });
    let packet = probe_packet(src, dst, kind).ok_or_else(|| {
        invalid(format!(
            "{address} is not of the pod's address family ({})",
            pod.address
        ))
    })?;
    let outcome = services
        .dataplane
        .trace(&pod.id, packet)
        .await
        .map_err(|e| ErrorBody::new(ErrorCode::Unavailable, e.to_string()))?;
    let probe = match kind {
        ProbeKind::Echo => format!("{} -> {address} ICMP echo", pod.address),
        _ => format!("{src} -> {dst}/{proto}"),
    };
    Ok(describe(probe, &outcome))
}

fn step(step: &str, detail: String) -> TraceStep {
    TraceStep {
        step: step.into(),
        detail,
    }
}

/// A verdict in words: `side` is "egress" or "ingress".
fn verdict(side: &str, v: Option<Verdict>, policy: Option<&str>, here: &str) -> String {
    let policy = policy.unwrap_or("?");
    match v {
        None | Some(Verdict::NotIsolated) => here.to_string(),
        Some(Verdict::Allowed(r)) => {
            format!("allowed by {policy}, spec.{side}[{}]", r.rule)
        }
        Some(Verdict::Denied { .. }) => format!(
            "denied: {policy} isolates the pod for {side} and no rule of any policy allows it"
        ),
    }
}

/// The steps of `outcome`, in the packet path's order.
pub(super) fn describe(probe: String, outcome: &TraceOutcome) -> TraceResult {
    let t = &outcome.trace;
    let mut steps = Vec::new();
    if t.dns_vip {
        steps.push(step(
            "dns",
            "a cluster DNS address: queries to port 53 are answered by this node, before Services and policy".into(),
        ));
    }
    steps.push(step(
        "conntrack",
        if t.existing_connection {
            "a tracked connection already has this tuple: the trace shows ITS path".into()
        } else {
            "a new connection".into()
        },
    ));
    steps.push(step(
        "service",
        match &t.service {
            Some(s) => {
                let eps: Vec<String> = s.endpoints.iter().map(ToString::to_string).collect();
                let chosen = t
                    .out_dst
                    .map(|d| format!("; this connection: {d}"))
                    .unwrap_or_default();
                format!(
                    "Service {}/{}: {} -> one of [{}]{chosen}",
                    s.namespace,
                    s.name,
                    t.dst,
                    if eps.is_empty() {
                        "no ready endpoint".to_string()
                    } else {
                        eps.join(", ")
                    }
                )
            }
            None => "not a Service address: no translation".into(),
        },
    ));
    match &t.policy {
        Some(p) => {
            steps.push(step(
                "policy egress",
                verdict(
                    "egress",
                    p.slot.egress,
                    p.egress_policy.as_deref(),
                    "no policy isolates the source pod for egress: allowed",
                ),
            ));
            steps.push(step(
                "policy ingress",
                verdict(
                    "ingress",
                    p.slot.ingress,
                    p.ingress_policy.as_deref(),
                    "not isolated here: the destination is not a pod of this node (its own node judges ingress: `weftctl explain`), or no policy isolates it",
                ),
            ));
        }
        None => steps.push(step(
            "policy",
            "no NetworkPolicy table in force on this node (none yet, or --no-services)".into(),
        )),
    }
    let (outcome_text, forwarded) = match (&outcome.destination, t.action) {
        (Some(to), _) => (
            match t.out_dst {
                Some(d) => format!("forwarded to {to} ({d})"),
                None => format!("forwarded to {to}"),
            },
            true,
        ),
        (None, Action::Drop(reason)) => (format!("dropped: {reason}"), false),
        (None, Action::Reply(_)) => (
            "answered by this node (an ICMP error, a DNS answer or a Service's reject)".into(),
            false,
        ),
        (None, Action::DnsForward(_)) => (
            "a DNS query for a name outside the cluster: forwarded to the node's resolvers".into(),
            false,
        ),
        (None, Action::DnsTcp(_)) => ("DNS over TCP to the cluster DNS address".into(), false),
        (None, _) => ("forwarded".into(), true),
    };
    steps.push(step("route", outcome_text.clone()));
    TraceResult {
        probe,
        steps,
        outcome: outcome_text,
        forwarded,
    }
}
