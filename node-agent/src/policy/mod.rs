//! NetworkPolicy on this node: the cluster's namespaces, pods and policies
//! ([`ViewSnapshot`]) resolved with Kubernetes' semantics
//! (`weft_objects::policy`), compiled for this node's pods into the
//! switch's [`PolicyTable`] and handed to the data-plane engine, which
//! judges every new connection in its packet path (`weft_switch`'s
//! `policing.rs`, docs/network-policy.md).
//!
//! Contract:
//! - [`compile_table`] is a pure function (snapshot, node name) ->
//!   table: the same per-node compile `weftctl explain` and the pure
//!   conformance suite use.
//! - [`run`] follows the view ([`follow`]: on a blocking thread, coalesced,
//!   the first table from the persisted objects at start) and hands each
//!   table to the engine ([`PolicySink::set_policy`]): a change reaches
//!   new and established connections as soon as the engine swaps the
//!   table in. A hand-over that fails is logged; the table in force stays.
//! - Once a second, it also takes the denied new connections the switch
//!   recorded (rate-limited there) and logs one line for each, with both
//!   pods' `namespace/name` when the view knows the address
//!   ([`denial_line`]).

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::watch;
use weft_objects::policy::PolicyView;
use weft_switch::policy::{Direction, PolicyTable};
use weft_switch::Denial;

use crate::view::{follow, ViewSnapshot};

/// How often denied connections are taken for the log.
pub const DENIAL_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Where compiled policy tables go (the engine, or a test's recorder).
pub trait PolicySink: Send + Sync {
    /// Puts `table` in force; `Err` with a message if it could not.
    fn set_policy(&self, table: Arc<PolicyTable>) -> BoxFuture<'_, Result<(), String>>;
    /// The denied new connections recorded since the last call.
    fn take_denials(&self) -> BoxFuture<'_, Result<Vec<Denial>, String>>;
}

impl PolicySink for crate::engine::Dataplane {
    fn set_policy(&self, table: Arc<PolicyTable>) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            crate::engine::Dataplane::set_policy(self, table)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn take_denials(&self) -> BoxFuture<'_, Result<Vec<Denial>, String>> {
        Box::pin(async move {
            crate::engine::Dataplane::take_denials(self)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// The policies of `view` compiled for the pods of node `node`.
pub fn compile_table(view: &ViewSnapshot, node: &str) -> PolicyTable {
    let resolved = PolicyView::new(
        view.namespaces.values().map(AsRef::as_ref),
        view.pods.values().map(AsRef::as_ref),
        view.network_policies.values().map(AsRef::as_ref),
    );
    PolicyTable::compile(&resolved.specs_for_node(node))
}

/// Follows `views` until `stop`: tables to `sink`, denials to the log
/// (see the module docs).
pub async fn run(
    views: watch::Receiver<Arc<ViewSnapshot>>,
    node: String,
    sink: Arc<dyn PolicySink>,
    stop: watch::Receiver<bool>,
) {
    let compile = move |view: &ViewSnapshot| compile_table(view, &node);
    let tables = follow(
        views.clone(),
        stop.clone(),
        "the NetworkPolicies",
        compile,
        {
            let sink = sink.clone();
            move |table, version| {
                let sink = sink.clone();
                async move {
                    let (policies, rules) = table.sizes();
                    match sink.set_policy(Arc::new(table)).await {
                        Ok(()) => {
                            tracing::debug!(version, policies, rules, "policy table in force")
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "the data plane refused the policy table")
                        }
                    }
                }
            }
        },
    );
    tokio::join!(tables, log_denials(views, sink, stop));
}

/// Logs the switch's denial records once a second until `stop`.
async fn log_denials(
    views: watch::Receiver<Arc<ViewSnapshot>>,
    sink: Arc<dyn PolicySink>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(DENIAL_LOG_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let denials = match sink.take_denials().await {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(error = %e, "cannot take the policy denials");
                continue;
            }
        };
        if denials.is_empty() {
            continue;
        }
        let names = pod_names(&views.borrow());
        for d in &denials {
            tracing::info!(
                direction = direction(d.direction),
                policy = %d.policy,
                "{}",
                denial_line(d, &names)
            );
        }
    }
}

/// Every pod address of `view` to `namespace/name`.
fn pod_names(view: &ViewSnapshot) -> HashMap<IpAddr, String> {
    view.pods
        .values()
        .flat_map(|p| {
            let name = format!("{}/{}", p.metadata.namespace, p.metadata.name);
            p.ips().into_iter().map(move |ip| (ip, name.clone()))
        })
        .collect()
}

fn direction(d: Direction) -> &'static str {
    match d {
        Direction::Ingress => "ingress",
        Direction::Egress => "egress",
    }
}

/// `NetworkPolicy denied x/a (10.244.1.5) -> y/b (10.244.2.6) 80/TCP:
/// ingress of y/b isolated by y/deny-all`.
pub fn denial_line(d: &Denial, names: &HashMap<IpAddr, String>) -> String {
    let who = |ip: &IpAddr| match names.get(ip) {
        Some(name) => format!("{name} ({ip})"),
        None => ip.to_string(),
    };
    let port = match d.proto {
        6 => format!("{}/TCP", d.port),
        17 => format!("{}/UDP", d.port),
        1 | 58 => "ICMP".to_string(),
        p => format!("protocol {p}"),
    };
    let side = match d.direction {
        Direction::Ingress => &d.dst,
        Direction::Egress => &d.src,
    };
    let side = names.get(side).cloned().unwrap_or_else(|| side.to_string());
    format!(
        "NetworkPolicy denied {} -> {} {port}: {} of {side} isolated by {}, no rule allows it",
        who(&d.src),
        who(&d.dst),
        direction(d.direction),
        d.policy
    )
}
