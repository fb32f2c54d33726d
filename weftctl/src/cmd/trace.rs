//! `weftctl trace SRC DST`: what this node's packet path would do with the
//! first packet of a new connection from pod SRC to DST, step by step
//! (cluster DNS, conntrack, the Service translation and the endpoint it
//! picks, the NetworkPolicy verdicts and the policies that decided, the
//! route), asked of the node's agent (`trace` op; the agent runs the probe
//! through a copy of its switch, so nothing changes).
//!
//! Contract: SRC is a pod of the node whose agent answers (its id, or
//! `NAMESPACE/NAME`); with `--lab`, SRC names a lab pod and the trace runs
//! on that pod's node. DST is `ADDR:PORT/PROTO` (`PROTO` TCP or UDP,
//! default TCP; IPv6 as `[ADDR]:PORT/PROTO`) or `ADDR/ICMP`. Exit 0 when the
//! trace ran (whatever it found), 1 when it could not (bad input, unknown
//! pod, agent down).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use weft_agent_api::{TraceRequest, TraceResult};

use super::pod::{connect, AgentSocket};
use crate::output::Format;

#[derive(Debug, Args)]
pub(crate) struct TraceArgs {
    #[command(flatten)]
    pub socket: AgentSocket,
    /// The pod the probe comes from: its id on this node or NAMESPACE/NAME.
    pub from: String,
    /// The destination: ADDR:PORT/PROTO (TCP, UDP; TCP when omitted),
    /// [ADDR6]:PORT/PROTO, or ADDR/ICMP.
    pub to: String,
    /// Output: `table` (text for people) or `json` (for scripts).
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// `ADDR:PORT/PROTO` or `ADDR/ICMP` as (address, port, protocol).
pub(crate) fn parse_destination(text: &str) -> Result<(IpAddr, u16, String)> {
    let (rest, proto) = match text.rsplit_once('/') {
        Some((rest, p)) => (rest, p.to_ascii_uppercase()),
        None => (text, "TCP".to_string()),
    };
    let usage = || {
        format!("{text:?}: give ADDR:PORT/PROTO (e.g. 10.96.0.20:80/TCP, [fd00::1]:53/UDP) or ADDR/ICMP")
    };
    match proto.as_str() {
        "ICMP" => {
            let addr: IpAddr = rest
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .ok()
                .with_context(usage)?;
            Ok((addr, 0, proto))
        }
        "TCP" | "UDP" => {
            let sock: SocketAddr = rest.parse().ok().with_context(usage)?;
            if sock.port() == 0 {
                bail!("{}: port 0", usage());
            }
            Ok((sock.ip(), sock.port(), proto))
        }
        other => bail!("{}: unknown protocol {other:?} (TCP, UDP or ICMP)", usage()),
    }
}

/// `weftctl trace`
pub(crate) async fn run(args: TraceArgs) -> Result<()> {
    let (address, port, protocol) = parse_destination(&args.to)?;
    let mut agent = connect(&args.socket.path).await?;
    let result = agent
        .trace(TraceRequest {
            pod: args.from.clone(),
            address: address.to_string(),
            port,
            protocol,
        })
        .await?;
    match args.output {
        Format::Json => println!("{}", serde_json::to_string_pretty(&result)?),
        Format::Table => print!("{}", render(&args.from, &result)),
    }
    Ok(())
}

fn render(from: &str, r: &TraceResult) -> String {
    let mut out = format!("{:<16}{} (from {from})\n", "probe:", r.probe);
    for s in &r.steps {
        out.push_str(&format!("{:<16}{}\n", format!("{}:", s.step), s.detail));
    }
    out
}

/// With `--lab`: the agent socket of the node running lab pod `pod` (its
/// lab name `nK-pJ` or its cluster name `NAMESPACE/NAME`).
pub(crate) fn lab_socket(lab: &str, pod: &str) -> Result<PathBuf> {
    let cluster = super::on_lab::open(lab)?;
    let found = cluster
        .pods()
        .iter()
        .find(|p| p.name == pod || p.cluster_name().as_deref() == Some(pod))
        .with_context(|| {
            format!(
                "no pod {pod:?} in lab {} (`weftctl lab status`)",
                cluster.name()
            )
        })?;
    let node = cluster.node(&found.node).with_context(|| {
        format!(
            "lab pod {pod} is on node {} which the lab lacks",
            found.node
        )
    })?;
    Ok(node.api_socket.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_parse_or_say_what_is_wrong() {
        let ok = |t: &str| parse_destination(t).unwrap();
        assert_eq!(
            ok("10.96.0.20:80/TCP"),
            ("10.96.0.20".parse().unwrap(), 80, "TCP".into())
        );
        assert_eq!(
            ok("10.96.0.20:53/udp"),
            ("10.96.0.20".parse().unwrap(), 53, "UDP".into())
        );
        assert_eq!(
            ok("10.96.0.20:80"),
            ("10.96.0.20".parse().unwrap(), 80, "TCP".into())
        );
        assert_eq!(
            ok("[fd00::1]:53/UDP"),
            ("fd00::1".parse().unwrap(), 53, "UDP".into())
        );
        assert_eq!(
            ok("10.244.1.5/ICMP"),
            ("10.244.1.5".parse().unwrap(), 0, "ICMP".into())
        );
        for bad in [
            "10.96.0.20/TCP",
            "web:80/TCP",
            "10.96.0.20:0/TCP",
            "10.96.0.20:80/SCTP",
            "",
        ] {
            let e = parse_destination(bad).unwrap_err().to_string();
            assert!(e.contains("ADDR:PORT/PROTO"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_steps_print_one_per_line() {
        let r = TraceResult {
            probe: "10.244.1.5:61999 -> 10.96.0.20:80/TCP".into(),
            steps: vec![
                weft_agent_api::TraceStep {
                    step: "conntrack".into(),
                    detail: "a new connection".into(),
                },
                weft_agent_api::TraceStep {
                    step: "route".into(),
                    detail: "forwarded to node n2 (10.244.2.5:8080)".into(),
                },
            ],
            outcome: "forwarded to node n2 (10.244.2.5:8080)".into(),
            forwarded: true,
        };
        assert_eq!(
            render("x/a", &r),
            "probe:          10.244.1.5:61999 -> 10.96.0.20:80/TCP (from x/a)\n\
             conntrack:      a new connection\n\
             route:          forwarded to node n2 (10.244.2.5:8080)\n"
        );
    }
}
