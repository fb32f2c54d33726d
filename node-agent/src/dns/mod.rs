//! Cluster DNS, the agent's side: the cluster zone compiled from the
//! objects the agent holds, and the settings the engine answers with.
//!
//! Contract:
//! - [`zone_spec`] (pure) turns a [`ViewSnapshot`] into the zone's
//!   description; [`run`] compiles it (`DnsZone::build`, on a blocking
//!   thread, never on the engine's) on every new snapshot, at most one
//!   build at a time (snapshots that arrive meanwhile are folded into the
//!   next), and hands the engine [`DnsSettings`] by its control command.
//!   The engine swaps the zone in between packet batches.
//! - Until the view holds a first complete copy of the objects (a watch
//!   snapshot applied, or objects loaded from the state dir: version > 0)
//!   the zone is `DnsZone::not_ready`: cluster names answer SERVFAIL, never
//!   a false NXDOMAIN; names outside the cluster are forwarded already.
//! - Upstreams ([`upstream`]): `--dns-upstream`, else the node's
//!   `/etc/resolv.conf` without the cluster DNS address.
//!
//! Files: `compile.rs` (objects -> zone description), `upstream.rs`
//! (resolver lists).

mod compile;
pub mod upstream;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;
use weft_switch::dns::DnsZone;

pub use compile::zone_spec;

use crate::engine::{Dataplane, DnsSettings};
use crate::view::{follow, ViewSnapshot};

/// The TTL of cluster records (CoreDNS's default).
pub const CLUSTER_TTL: u32 = 5;

/// What the agent's cluster DNS is set up with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsPlan {
    /// The cluster DNS address(es) pods are given.
    pub vips: Vec<IpAddr>,
    /// The cluster domain, e.g. `cluster.local`.
    pub domain: String,
    /// Where names outside the cluster go.
    pub upstreams: Vec<SocketAddr>,
}

/// The zone for `snapshot`: built if the view is complete, else not ready.
pub fn zone_for(snapshot: &ViewSnapshot, domain: &str) -> DnsZone {
    if snapshot.version == 0 {
        return DnsZone::not_ready(domain);
    }
    DnsZone::build(&zone_spec(snapshot, domain, CLUSTER_TTL))
}

/// Keeps the engine's zone up to date with `view` until `stop` turns true
/// (or the view's sender goes away). Errors from the engine are logged:
/// the next snapshot tries again.
pub async fn run(
    plan: DnsPlan,
    view: watch::Receiver<Arc<ViewSnapshot>>,
    dataplane: Arc<Dataplane>,
    stop: watch::Receiver<bool>,
) {
    tracing::info!(vips = ?plan.vips, domain = %plan.domain, upstreams = ?plan.upstreams, "cluster DNS");
    if plan.upstreams.is_empty() {
        tracing::warn!("no upstream resolvers: names outside the cluster answer SERVFAIL");
    }
    let domain = plan.domain.clone();
    let compile = move |snapshot: &ViewSnapshot| {
        let started = Instant::now();
        let zone = zone_for(snapshot, &domain);
        tracing::debug!(ready = zone.is_ready(), names = zone.len(), skipped = zone.skipped(),
            took = ?started.elapsed(), "cluster DNS zone compiled");
        zone
    };
    follow(view, stop, "the cluster DNS zone", compile, |zone, _| {
        let settings = DnsSettings {
            vips: plan.vips.clone(),
            zone: Arc::new(zone),
            upstreams: plan.upstreams.clone(),
        };
        let dataplane = dataplane.clone();
        async move {
            if let Err(e) = dataplane.set_dns(settings).await {
                tracing::warn!(error = %e, "the data plane refused the cluster DNS settings");
            }
        }
    })
    .await;
}
