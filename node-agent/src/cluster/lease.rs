//! The node's lease and its own record.
//!
//! Contract: [`lease_loop`] renews the lease (`RenewLease` on the node
//! credential) at once on start and then every third of the lease TTL the
//! control plane reports, sooner (with backoff) after a failure, and
//! whenever the watch saw this node's own record change. After each
//! successful renewal it makes sure the control plane has this node's
//! endpoint and public key (`UpdateNode` if not).
//!
//! If the control plane answers `NOT_FOUND` (the node was removed), it
//! re-joins with the token, if the agent has one; a re-join that yields
//! another pod CIDR ends the loop with [`ClusterError::PodCidrChanged`] (the
//! agent must restart). Without a token it logs what to do and keeps
//! trying to renew; the data plane keeps the last known peers meanwhile.
//!
//! Independence: the renewals run on a thread of their own (`weft-lease`,
//! with its own single-threaded runtime and its own gRPC channel to the
//! control plane), so nothing the rest of the agent does (a local-API
//! request stuck in a syscall, busy runtime workers) can delay them and
//! turn the node NotReady. The channel other tasks use after a re-join is
//! still made on the agent's main runtime.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::Code;
use weft_proto::v1::cluster_client::ClusterClient;
use weft_proto::v1::{NodeState, RenewLeaseRequest, UpdateNodeRequest};

use super::backoff::Backoff;
use super::error::ClusterError;
use super::join::{self, JoinFailure, JoinParams};
use super::state::Shared;

/// Renews the lease until `stop`; see the module docs. Returns when the
/// `weft-lease` thread does.
pub(super) async fn lease_loop(
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) -> Result<(), ClusterError> {
    let main = tokio::runtime::Handle::current();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("weft-lease".into())
        .spawn(move || {
            let result = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(renew_loop(shared, stop, main)),
                Err(e) => Err(ClusterError::Protocol(format!(
                    "starting the lease thread's runtime: {e}"
                ))),
            };
            let _ = done_tx.send(result);
        })
        .map_err(|e| ClusterError::Protocol(format!("starting the lease thread: {e}")))?;
    done_rx
        .await
        .map_err(|_| ClusterError::Protocol("the lease thread ended without a result".into()))?
}

/// The loop of the `weft-lease` thread; `main` is the agent's runtime.
async fn renew_loop(
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    main: tokio::runtime::Handle,
) -> Result<(), ClusterError> {
    let ttl_seconds = shared.with(|s| s.node.settings.lease_ttl_seconds.max(1));
    let mut lease = Lease {
        ttl: Duration::from_secs(u64::from(ttl_seconds)),
        backoff: shared.cfg.timing.backoff(),
        failures: 0,
        removed_reports: 0,
        due: Instant::now(),
        channel: None,
        main,
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(lease.due) => {}
            _ = shared.renew_now.notified() => {}
            _ = stop.changed() => return Ok(()),
        }
        // A step may wait on the control plane; stopping must not.
        tokio::select! {
            r = lease.step(&shared) => r?,
            _ = stop.changed() => return Ok(()),
        }
    }
}

/// The lease task's state between steps.
struct Lease {
    ttl: Duration,
    backoff: Backoff,
    failures: u64,
    removed_reports: u64,
    /// When to renew next.
    due: Instant,
    /// The lease thread's own channel, and the `channel_gen` it was made
    /// for (a re-join replaces the credential).
    channel: Option<(u64, Channel)>,
    /// The agent's main runtime, where shared channels are made.
    main: tokio::runtime::Handle,
}

impl Lease {
    /// One renewal, and what follows from its answer.
    async fn step(&mut self, shared: &Shared) -> Result<(), ClusterError> {
        let t = &shared.cfg.timing;
        let channel = self.channel(shared);
        let mut client = ClusterClient::new(channel.clone());
        let renewed =
            tokio::time::timeout(t.rpc_timeout, client.renew_lease(RenewLeaseRequest {})).await;
        let status = match renewed {
            Ok(Ok(r)) => {
                let r = r.into_inner();
                self.renewed(shared, r.lease_ttl_seconds, r.state);
                reconcile_self(shared, channel).await;
                return Ok(());
            }
            Ok(Err(s)) => s,
            Err(_) => tonic::Status::deadline_exceeded(format!(
                "RenewLease timed out after {:?}",
                t.rpc_timeout
            )),
        };
        if status.code() == Code::NotFound {
            if on_removed(shared, &mut self.removed_reports, &self.main).await? {
                // Re-joined: renew at once (and check our record).
                self.backoff.reset();
                self.due = Instant::now();
            } else {
                self.due = Instant::now() + renew_interval(self.ttl).max(self.backoff.next_delay());
            }
            return Ok(());
        }
        self.failures += 1;
        if self.failures.is_power_of_two() {
            tracing::warn!(code = ?status.code(), error = %status.message(), failures = self.failures, "lease renewal failed; retrying");
        }
        self.due = Instant::now() + renew_interval(self.ttl).min(self.backoff.next_delay());
        Ok(())
    }

    /// A channel made on this (the lease) thread's runtime, so that its
    /// connection never waits on the main runtime; the shared one if the
    /// credential cannot make one (it made the shared one already).
    fn channel(&mut self, shared: &Shared) -> Channel {
        let generation = *shared.channel_gen.borrow();
        if let Some((g, channel)) = &self.channel {
            if *g == generation {
                return channel.clone();
            }
        }
        let made = shared.with(|s| weft_client::connect_lazy(&s.creds));
        match made {
            Ok(channel) => {
                self.channel = Some((generation, channel.clone()));
                channel
            }
            Err(e) => {
                tracing::warn!(error = %e, "the lease thread cannot make its own channel; using the shared one");
                shared.channel()
            }
        }
    }

    fn renewed(&mut self, shared: &Shared, ttl_seconds: u32, state: i32) {
        if ttl_seconds > 0 {
            self.ttl = Duration::from_secs(u64::from(ttl_seconds));
        }
        if self.failures > 0 {
            tracing::info!(after_failures = self.failures, "lease renewed again");
        }
        self.failures = 0;
        self.removed_reports = 0;
        self.backoff.reset();
        shared.with(|s| {
            let link = &mut s.connection;
            link.lease_renewals += 1;
            if link.removed {
                link.removed = false;
                link.last_error = None;
            }
        });
        if state == NodeState::NotReady as i32 {
            tracing::info!("the control plane had marked this node NotReady; it is Ready again");
        }
        self.due = Instant::now() + renew_interval(self.ttl);
    }
}

/// A third of the TTL, within sane bounds.
fn renew_interval(ttl: Duration) -> Duration {
    (ttl / 3).clamp(Duration::from_millis(100), Duration::from_secs(3600))
}

/// The node is gone from the cluster. Re-joins if there is a token:
/// `Ok(true)` re-joined, `Ok(false)` not (yet), `Err` the agent must stop.
async fn on_removed(
    shared: &Shared,
    reports: &mut u64,
    main: &tokio::runtime::Handle,
) -> Result<bool, ClusterError> {
    shared.with(|s| s.connection.removed = true);
    let name = shared.cfg.name.clone();
    let Some(token) = shared.cfg.token.clone() else {
        let msg = format!(
            "the control plane has removed node {name} (RenewLease: NOT_FOUND); the data plane keeps the last known peers. \
             To re-join, create a token with `weftctl token create` and restart the agent with --token <token> (WEFT_TOKEN); \
             the node keeps its name and key, and gets a pod CIDR again"
        );
        if *reports == 0 {
            tracing::error!("{msg}");
        } else {
            tracing::debug!("{msg}");
        }
        *reports += 1;
        shared.set_error(msg);
        return Ok(false);
    };
    let ca_hash = match &shared.cfg.ca_hash {
        Some(h) => h.clone(),
        None => {
            let ca = shared.with(|s| s.creds.ca_pem.clone());
            weft_client::ca_pem_hash(&ca)?
        }
    };
    tracing::warn!(node = %name, "the control plane has removed this node; re-joining with the token");
    let params = JoinParams {
        control_plane: shared.cfg.control_plane.clone(),
        token,
        ca_hash,
        name,
        endpoint: shared.cfg.endpoint,
    };
    let joined = match join::join_once(&params, &shared.key, shared.cfg.timing.rpc_timeout).await {
        Ok(j) => j,
        Err(JoinFailure { error, transient }) => {
            if transient {
                tracing::warn!(error = %error, "re-join failed; retrying");
            } else {
                tracing::error!(error = %error, "re-join refused; the data plane keeps the last known peers");
            }
            shared.set_error(format!("re-joining: {error}"));
            return Ok(false);
        }
    };
    joined.credentials.save(shared.paths.credentials())?;
    joined.node.save(&shared.paths.node())?;
    // Made on the main runtime: the watch uses it there.
    let channel = {
        let _main = main.enter();
        weft_client::connect_lazy(&joined.credentials)?
    };
    let old_cidr = shared.with(|s| {
        let old_cidr = s.node.pod_cidr;
        s.creds = joined.credentials;
        s.channel = channel;
        s.node = joined.node.clone();
        s.joins += 1;
        s.connection.removed = false;
        s.connection.last_error = None;
        old_cidr
    });
    shared.channel_gen.send_modify(|g| *g += 1);
    tracing::info!(id = joined.node.id, pod_cidr = %joined.node.pod_cidr, "re-joined the cluster");
    if joined.node.pod_cidr != old_cidr {
        return Err(ClusterError::PodCidrChanged {
            old: old_cidr,
            new: joined.node.pod_cidr,
        });
    }
    Ok(true)
}

/// Makes the control plane's record of this node carry our endpoint and key.
async fn reconcile_self(shared: &Shared, channel: Channel) {
    let Some(me) = shared.with(|s| s.peers.me().cloned()) else {
        return;
    };
    let ours = shared.key.public_base64();
    let want_endpoint = shared.cfg.endpoint;
    let endpoint_drift = want_endpoint.is_some() && me.endpoint() != want_endpoint;
    let key_drift = me.public_key != ours;
    if !endpoint_drift && !key_drift {
        return;
    }
    tracing::info!(have_endpoints = ?me.endpoints, want_endpoint = ?want_endpoint, key_changed = key_drift, "updating this node's record");
    let request = UpdateNodeRequest {
        node_name: shared.cfg.name.clone(),
        endpoints: if endpoint_drift {
            want_endpoint.iter().map(ToString::to_string).collect()
        } else {
            vec![]
        },
        clear_endpoints: false,
        public_key: if key_drift { ours } else { String::new() },
        labels: Default::default(),
        replace_labels: false,
    };
    let mut client = ClusterClient::new(channel);
    match tokio::time::timeout(shared.cfg.timing.rpc_timeout, client.update_node(request)).await {
        Ok(Ok(_)) => tracing::info!("the control plane has this node's endpoint and key"),
        Ok(Err(s)) => {
            tracing::warn!(code = ?s.code(), error = %s.message(), "UpdateNode failed; will retry at the next renewal")
        }
        Err(_) => tracing::warn!("UpdateNode timed out; will retry at the next renewal"),
    }
}
