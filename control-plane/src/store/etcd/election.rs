//! Leader election on an etcd lease, for [`crate::leader`].
//!
//! Contract:
//! - The leader is whoever holds the key `<prefix>leader`, written with a
//!   lease of [`LEADER_TTL`] in a transaction that only succeeds while the
//!   key does not exist: at most one replica holds it at a time.
//! - The leader keeps its lease alive every TTL/4 and reports `false` (stops
//!   its leader tasks) once no keep-alive has succeeded for TTL/2: before
//!   etcd can expire the lease and let another replica in.
//! - Followers look for a free key every [`POLL`]; a dead leader's key
//!   disappears with its lease, so a new leader takes over within about
//!   TTL + POLL (3.25 s). A replica that stops revokes its lease: the next
//!   one takes over within POLL.
//! - The key's value is the replica's id (its advertise address), for
//!   operators (`etcdctl get <prefix>leader`).

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp};
use tokio::sync::watch;
use tokio::time::Instant;

use super::EtcdStore;
use crate::leader::Election;

/// The leader's lease TTL.
pub const LEADER_TTL: Duration = Duration::from_secs(3);
/// How often a follower checks whether the leadership is free.
pub const POLL: Duration = Duration::from_millis(250);
/// The store key (under the prefix) the leader holds.
pub const LEADER_KEY: &str = "leader";

/// An election among the replicas sharing one etcd prefix.
pub struct EtcdElection {
    client: Client,
    key: String,
    id: String,
    at: String,
}

impl std::fmt::Debug for EtcdElection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdElection")
            .field("key", &self.key)
            .field("id", &self.id)
            .finish()
    }
}

impl EtcdElection {
    /// An election on `store`'s etcd, as replica `id`.
    pub fn new(store: &EtcdStore, id: &str) -> EtcdElection {
        EtcdElection {
            client: store.client().clone(),
            key: store.full_key(LEADER_KEY),
            id: id.to_string(),
            at: store.options().endpoints.join(","),
        }
    }

    /// Try once to become leader; `Some(lease)` if this replica now leads.
    async fn campaign(&self) -> Result<Option<i64>, etcd_client::Error> {
        let held = self.client.kv_client().get(self.key.clone(), None).await?;
        if !held.kvs().is_empty() {
            return Ok(None);
        }
        let ttl = i64::try_from(LEADER_TTL.as_secs()).unwrap_or(3);
        let lease = self.client.lease_client().grant(ttl, None).await?.id();
        let txn = Txn::new()
            .when([Compare::create_revision(
                self.key.clone(),
                CompareOp::Equal,
                0,
            )])
            .and_then([TxnOp::put(
                self.key.clone(),
                self.id.clone(),
                Some(PutOptions::new().with_lease(lease)),
            )]);
        let won = match self.client.kv_client().txn(txn).await {
            Ok(r) => r.succeeded(),
            Err(e) => {
                let _ = self.client.lease_client().revoke(lease).await;
                return Err(e);
            }
        };
        if won {
            Ok(Some(lease))
        } else {
            let _ = self.client.lease_client().revoke(lease).await;
            Ok(None)
        }
    }

    /// Keep `lease` alive until it is lost (`false`) or `stop` (`true`).
    async fn hold(&self, lease: i64, stop: &mut watch::Receiver<bool>) -> bool {
        let every = LEADER_TTL / 4;
        let mut last_ok = Instant::now();
        let mut stream = None;
        loop {
            if last_ok.elapsed() > LEADER_TTL / 2 {
                return false;
            }
            if stream.is_none() {
                stream = self.client.lease_client().keep_alive(lease).await.ok();
            }
            if let Some((keeper, responses)) = stream.as_mut() {
                let sent = keeper.keep_alive().await.is_ok();
                let answer = tokio::time::timeout(every, responses.message()).await;
                match answer {
                    Ok(Ok(Some(r))) if sent && r.ttl() > 0 => last_ok = Instant::now(),
                    // etcd says the lease is gone.
                    Ok(Ok(Some(_))) if sent => return false,
                    _ => stream = None,
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.wait_for(|s| *s) => return true,
            }
        }
    }
}

#[async_trait::async_trait]
impl Election for EtcdElection {
    async fn run(self: Arc<Self>, leading: watch::Sender<bool>, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            let lease = match self.campaign().await {
                Ok(Some(lease)) => lease,
                Ok(None) => {
                    tokio::select! {
                        _ = tokio::time::sleep(POLL) => {}
                        _ = stop.wait_for(|s| *s) => break,
                    }
                    continue;
                }
                Err(e) => {
                    tracing::debug!(error = %e, at = %self.at, "leader campaign failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(POLL) => {}
                        _ = stop.wait_for(|s| *s) => break,
                    }
                    continue;
                }
            };
            tracing::info!(id = %self.id, lease, "elected leader on etcd");
            let _ = leading.send(true);
            let stopped = self.hold(lease, &mut stop).await;
            let _ = leading.send(false);
            if stopped {
                // Hand over at once instead of after the TTL.
                let _ = self.client.lease_client().revoke(lease).await;
                break;
            }
            tracing::warn!(id = %self.id, at = %self.at, "lost the leader lease (etcd unreachable or without quorum?)");
        }
        let _ = leading.send(false);
    }

    fn describe(&self) -> String {
        format!("etcd lease on {} as {}", self.key, self.id)
    }
}
