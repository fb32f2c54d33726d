//! Lease renewals shared between replicas on one etcd.
//!
//! Any replica takes a node's renewal; only the leader sweeps. So with a
//! shared store each renewal is also written, as `leases/<node>` = the
//! renewing replica's wall clock in Unix milliseconds, and the leader
//! follows those keys ([`Registry::follow_renewals`], a leader task).
//!
//! Contract:
//! - A renewal is written only while the node's record exists (one
//!   transaction), so a removed node leaves no lease key behind; removal
//!   deletes the key with the node.
//! - The leader times a renewal by its own clock when it sees the write, so
//!   replicas' clocks need not agree. Only when a term starts does it read
//!   the stored times, to age nodes from their last renewal rather than from
//!   the takeover (a node that stopped renewing under the old leader is
//!   still removed about on time), counting at most half a TTL: after an
//!   etcd outage, when no renewal could be written, nodes get half a TTL to
//!   renew before they turn NotReady.

use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;

use super::{unix_ms, Registry, RegistryError};
use crate::leader::Term;
use crate::model::{self, LEASES_PREFIX};
use crate::store::{Compare, EventKind, Op, Txn};

/// The pause before following renewals again after the store failed.
const RETRY: Duration = Duration::from_millis(500);

impl Registry {
    /// Write `name`'s renewal for the leader. `false` if the node is gone.
    pub(super) async fn publish_renewal(&self, name: &str) -> Result<bool, RegistryError> {
        let out = self
            .store
            .txn(Txn {
                compares: vec![Compare::Exists {
                    key: model::node_key(name),
                }],
                ops: vec![Op::Put {
                    key: model::lease_key(name),
                    value: unix_ms().to_string().into_bytes(),
                }],
            })
            .await?;
        Ok(out.succeeded)
    }

    /// Follow renewals written by every replica until the term ends (a
    /// leader task; a no-op without a shared store).
    pub async fn follow_renewals(&self, mut term: Term) {
        if !self.shared_leases {
            return term.ended().await;
        }
        while !term.is_over() {
            match self.follow_once(&mut term).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "following lease renewals failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(RETRY) => {}
                        _ = term.ended() => return,
                    }
                }
            }
        }
    }

    async fn follow_once(&self, term: &mut Term) -> Result<(), RegistryError> {
        let (kvs, rev) = self.store.range(LEASES_PREFIX).await?;
        let (now, now_ms) = (Instant::now(), unix_ms());
        for kv in kvs {
            let name = &kv.key[LEASES_PREFIX.len()..];
            let Some(ms) = std::str::from_utf8(&kv.value)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
            else {
                tracing::warn!(key = %kv.key, "ignoring an unreadable lease renewal");
                continue;
            };
            let age = Duration::from_millis(u64::try_from(now_ms - ms).unwrap_or(0))
                .min(self.settings.lease_ttl / 2);
            let at = now.checked_sub(age).unwrap_or(now);
            let mut leases = self.leases();
            let entry = leases.entry(name.to_string()).or_insert(at);
            *entry = (*entry).max(at);
        }
        let mut events = self.store.watch(LEASES_PREFIX, rev).await?;
        loop {
            tokio::select! {
                ev = events.next() => match ev {
                    Some(Ok(e)) if e.kind == EventKind::Put => {
                        let name = e.kv.key[LEASES_PREFIX.len()..].to_string();
                        self.leases().insert(name, Instant::now());
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e.into()),
                    None => return Err(RegistryError::Store(crate::store::StoreError::Backend(
                        "the lease renewal watch ended".into(),
                    ))),
                },
                _ = term.ended() => return Ok(()),
            }
        }
    }
}
