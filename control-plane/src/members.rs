//! Which control-plane replicas are alive now, for the join commands
//! `weftctl token create` prints (every live replica, so agents fail over).
//!
//! Contract:
//! - On an etcd store each replica holds `<prefix>members/<advertise>`
//!   (value: the advertise address) under an etcd lease of [`MEMBER_TTL`]
//!   of its own, written by [`Presence::register`] once it has opened everything and
//!   kept alive by [`Presence::run`]. A replica that stops revokes its
//!   lease (its key goes at once); one that dies or loses etcd stops
//!   renewing and etcd drops its key within [`MEMBER_TTL`]. A replica whose
//!   lease was lost (etcd partition) registers again with a new one.
//! - [`live`] lists the advertise addresses under `members/`, the asking
//!   replica's own first (it is serving the request, so it is alive even if
//!   its key is briefly missing), the others sorted. On the embedded store
//!   nothing is registered and the list is the replica itself.
//! - Unlike `replicas/` (see [`crate::shared_pki`]: every replica ever
//!   registered, for the serving certificate's names), `members/` only
//!   holds live replicas.

use std::time::Duration;

use etcd_client::{Client, PutOptions};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::store::etcd::{error as etcd_error, EtcdOptions, EtcdStore};
use crate::store::{Store, StoreError};

/// The store prefix of the live replicas' keys.
pub const MEMBERS_PREFIX: &str = "members/";
/// How long a replica's key outlives its last renewal.
pub const MEMBER_TTL: Duration = Duration::from_secs(6);
/// The pause before registering again after losing etcd.
const RETRY: Duration = Duration::from_secs(1);

/// Every live replica's advertise address, `own` first.
pub async fn live(store: &dyn Store, own: &str) -> Result<Vec<String>, StoreError> {
    let (kvs, _) = store.range(MEMBERS_PREFIX).await?;
    let mut others: Vec<String> = kvs
        .iter()
        .map(|kv| kv.key[MEMBERS_PREFIX.len()..].to_string())
        .filter(|a| a != own && !a.is_empty())
        .collect();
    others.sort();
    others.dedup();
    let mut all = vec![own.to_string()];
    all.extend(others);
    Ok(all)
}

/// This replica's key under `members/`, kept alive on an etcd lease.
pub struct Presence {
    client: Client,
    key: String,
    advertise: String,
    options: EtcdOptions,
    lease: Option<i64>,
}

impl std::fmt::Debug for Presence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presence")
            .field("key", &self.key)
            .field("lease", &self.lease)
            .finish()
    }
}

impl Presence {
    /// This replica's presence on `store`'s etcd, not yet registered.
    pub fn new(store: &EtcdStore, advertise: &str) -> Presence {
        Presence {
            client: store.client().clone(),
            key: store.full_key(&format!("{MEMBERS_PREFIX}{advertise}")),
            advertise: advertise.to_string(),
            options: store.options().clone(),
            lease: None,
        }
    }

    /// Register this replica as live (call it once it is about to serve).
    pub async fn register(&mut self) -> Result<(), StoreError> {
        let lease = self
            .put()
            .await
            .map_err(|e| etcd_error(&self.options, "registering this replica as live", e))?;
        self.lease = Some(lease);
        Ok(())
    }

    /// Write the key under a new lease; returns the lease.
    async fn put(&self) -> Result<i64, etcd_client::Error> {
        let ttl = i64::try_from(MEMBER_TTL.as_secs()).unwrap_or(6);
        let lease = self.client.lease_client().grant(ttl, None).await?.id();
        let put = self
            .client
            .kv_client()
            .put(
                self.key.clone(),
                self.advertise.clone(),
                Some(PutOptions::new().with_lease(lease)),
            )
            .await;
        if let Err(e) = put {
            let _ = self.client.lease_client().revoke(lease).await;
            return Err(e);
        }
        Ok(lease)
    }

    /// Keep the key alive until `stop` turns true, then revoke the lease.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        loop {
            let lease = match self.lease.take() {
                Some(l) => l,
                None => match self.put().await {
                    Ok(l) => {
                        tracing::info!(key = %self.key, "registered this replica as live again");
                        l
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "registering this replica as live failed; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(RETRY) => continue,
                            _ = stop.wait_for(|s| *s) => return,
                        }
                    }
                },
            };
            if self.hold(lease, &mut stop).await {
                let _ = self.client.lease_client().revoke(lease).await;
                return;
            }
            tracing::warn!(key = %self.key, "this replica's live record expired (etcd unreachable?); registering again");
        }
    }

    /// Renew `lease` every TTL/3; `true` when stopped, `false` once the
    /// lease is gone or has not been renewed for a TTL.
    async fn hold(&self, lease: i64, stop: &mut watch::Receiver<bool>) -> bool {
        let every = MEMBER_TTL / 3;
        let mut last_ok = Instant::now();
        let mut stream = None;
        loop {
            if last_ok.elapsed() > MEMBER_TTL {
                return false;
            }
            if stream.is_none() {
                stream = self.client.lease_client().keep_alive(lease).await.ok();
            }
            if let Some((keeper, responses)) = stream.as_mut() {
                let sent = keeper.keep_alive().await.is_ok();
                match tokio::time::timeout(every, responses.message()).await {
                    Ok(Ok(Some(r))) if sent && r.ttl() > 0 => last_ok = Instant::now(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::redb::RedbStore;
    use crate::store::{Op, Txn};

    #[tokio::test]
    async fn own_address_first_then_the_others_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&dir.path().join("s.redb")).unwrap();
        assert_eq!(live(&store, "a:1").await.unwrap(), ["a:1"]);
        let ops = ["c:1", "a:1", "b:1"]
            .iter()
            .map(|a| Op::Put {
                key: format!("{MEMBERS_PREFIX}{a}"),
                value: a.as_bytes().to_vec(),
            })
            .collect();
        store
            .txn(Txn {
                compares: vec![],
                ops,
            })
            .await
            .unwrap();
        assert_eq!(live(&store, "b:1").await.unwrap(), ["b:1", "a:1", "c:1"]);
    }
}
