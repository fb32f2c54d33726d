//! `weftctl explain --from NS/POD --to NS/POD|IP --port 80/TCP`: whether
//! NetworkPolicy lets a new connection through, judged against the
//! cluster's objects as the agents judge it (egress on the source's node,
//! ingress on the destination's), and the policy and rule that decided.
//!
//! Contract: reads namespaces, pods and policies with `Admin.GetObjects`
//! (admin credentials, `--config` or `--lab`) and runs
//! `weft_objects::policy::PolicyView::explain`; prints the verdict and
//! exits 0 whether the connection is allowed or denied. Unknown pods or
//! namespaces exit 1 with one line; bad `--from`/`--to`/`--port` syntax is
//! a usage error (exit 2), as for every command.

use std::net::IpAddr;
use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::de::DeserializeOwned;
use weft_objects::policy::{parse_port, PolicyView, Protocol, Target};
use weft_objects::{Namespace, NetworkPolicy, Pod};
use weft_proto::v1::GetObjectsRequest;

use super::admin::{admin_client, status_error};
use crate::output::print_out;

/// `weftctl explain`.
#[derive(Debug, Args)]
pub(crate) struct ExplainArgs {
    #[command(flatten)]
    pub admin: super::admin::AdminConfig,
    /// The client pod: NAMESPACE/POD.
    #[arg(long, value_parser = parse_pod, value_name = "NS/POD")]
    from: (String, String),
    /// The server: NAMESPACE/POD, or an address (a pod's, or outside the
    /// cluster's pods).
    #[arg(long, value_parser = parse_target, value_name = "NS/POD|IP")]
    to: Target,
    /// The destination port after service translation: PORT/PROTOCOL
    /// (TCP or UDP; PORT alone is TCP).
    #[arg(long, value_parser = parse_port, value_name = "PORT/PROTO")]
    port: (u16, Protocol),
}

fn parse_pod(text: &str) -> Result<(String, String), String> {
    match text.split_once('/') {
        Some((ns, pod)) if !ns.is_empty() && !pod.is_empty() && !pod.contains('/') => {
            Ok((ns.to_string(), pod.to_string()))
        }
        _ => Err(format!("{text:?}: name the pod as NAMESPACE/POD")),
    }
}

fn parse_target(text: &str) -> Result<Target, String> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(Target::Address(ip));
    }
    let (namespace, name) =
        parse_pod(text).map_err(|_| format!("{text:?}: give NAMESPACE/POD or an IP address"))?;
    Ok(Target::Pod { namespace, name })
}

/// Every object of `kind`, decoded.
async fn fetch<T: DeserializeOwned>(
    admin: &mut weft_proto::v1::admin_client::AdminClient<tonic::transport::Channel>,
    kind: &str,
) -> Result<Vec<T>> {
    let objects = admin
        .get_objects(GetObjectsRequest {
            kind: kind.into(),
            namespace: String::new(),
            all_namespaces: true,
            name: String::new(),
            label_selector: String::new(),
        })
        .await
        .map_err(status_error)?
        .into_inner()
        .objects;
    objects
        .iter()
        .map(|o| {
            serde_json::from_slice(&o.json).with_context(|| {
                format!(
                    "the control plane sent an unreadable {kind} {}/{}",
                    o.namespace, o.name
                )
            })
        })
        .collect()
}

/// `weftctl explain ...`
pub(crate) async fn explain(config: &Path, args: ExplainArgs) -> Result<()> {
    let (mut admin, _) = admin_client(config).await?;
    let namespaces: Vec<Namespace> = fetch(&mut admin, "Namespace").await?;
    let pods: Vec<Pod> = fetch(&mut admin, "Pod").await?;
    let policies: Vec<NetworkPolicy> = fetch(&mut admin, "NetworkPolicy").await?;
    let view = PolicyView::new(&namespaces, &pods, &policies);
    let (port, protocol) = args.port;
    let from = (args.from.0.as_str(), args.from.1.as_str());
    let explanation = match view.explain(from, &args.to, port, protocol) {
        Ok(e) => e,
        Err(e) => bail!("{e}"),
    };
    print_out(&explanation.to_string());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_syntax() {
        assert_eq!(parse_pod("x/a"), Ok(("x".into(), "a".into())));
        for bad in ["a", "/a", "x/", "x/a/b"] {
            assert!(parse_pod(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_target("10.244.1.2"),
            Ok(Target::Address("10.244.1.2".parse().unwrap()))
        );
        assert_eq!(
            parse_target("fd00::2"),
            Ok(Target::Address("fd00::2".parse().unwrap()))
        );
        assert_eq!(
            parse_target("y/b"),
            Ok(Target::Pod {
                namespace: "y".into(),
                name: "b".into()
            })
        );
        assert!(parse_target("10.244.1.300").is_err());
    }
}
