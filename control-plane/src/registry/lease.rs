//! Node leases and a node's changes to its own record.
//!
//! A node renews its lease well within the lease TTL. [`Registry::sweep`],
//! run periodically with the current time, turns a node NotReady once its
//! lease is older than the TTL, and removes it (freeing its CIDR) once it is
//! older than TTL + removal grace. Renewing a NotReady node makes it Ready.

use std::collections::BTreeMap;

use tokio::time::Instant;
use weft_proto::v1::{Node, NodeState};

use super::claims::{self, IndexView};
use super::{is_ready, Registry, RegistryError, MAX_ATTEMPTS};
use crate::model;
use crate::store::{Compare, Op, Txn};

/// A node's change to its own record (`Cluster.UpdateNode`).
#[derive(Debug, Clone, Default)]
pub struct NodeUpdate {
    pub endpoints: Option<Vec<String>>,
    pub public_key: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
}

impl Registry {
    pub(super) fn not_found(name: &str) -> RegistryError {
        RegistryError::NotFound(format!(
            "node {name} is not in the cluster (it left, was removed by an admin, or expired); join again with a token"
        ))
    }

    /// Write `node` back if its record is still at `revision`, with
    /// `claims` (index writes) in the same transaction.
    async fn put_node_if(
        &self,
        node: &Node,
        revision: u64,
        claims: claims::ClaimWrites,
    ) -> Result<Option<u64>, RegistryError> {
        let mut stored = node.clone();
        stored.revision = 0;
        stored.last_renewal_unix_ms = 0;
        let key = model::node_key(&node.name);
        let mut compares = vec![Compare::ModRevision {
            key: key.clone(),
            revision,
        }];
        compares.extend(claims.compares);
        let mut ops = claims.ops;
        ops.push(Op::Put {
            key,
            value: model::encode_node(&stored),
        });
        let out = self.store.txn(Txn { compares, ops }).await?;
        Ok(out.succeeded.then_some(out.revision))
    }

    /// Renew `name`'s lease. Returns the node's state after the renewal.
    pub async fn renew_lease(&self, name: &str) -> Result<NodeState, RegistryError> {
        for _ in 0..MAX_ATTEMPTS {
            let Some((mut node, kv)) = self.get_node(name).await? else {
                self.leases().remove(name);
                return Err(Self::not_found(name));
            };
            self.leases().insert(name.to_string(), Instant::now());
            if self.shared_leases && !self.publish_renewal(name).await? {
                self.leases().remove(name);
                return Err(Self::not_found(name));
            }
            if is_ready(&node) {
                return Ok(NodeState::Ready);
            }
            node.state = NodeState::Ready as i32;
            if self
                .put_node_if(&node, kv.mod_revision, Default::default())
                .await?
                .is_some()
            {
                tracing::info!(node = %name, "node Ready again");
                return Ok(NodeState::Ready);
            }
        }
        Err(RegistryError::Conflict(format!(
            "node {name} kept changing; retry"
        )))
    }

    /// Apply a node's change to its own record. A new key or endpoint that
    /// another node holds is refused (see `claims`).
    pub async fn update_node(&self, name: &str, update: NodeUpdate) -> Result<Node, RegistryError> {
        let rules = self.endpoint_rules();
        let endpoints = update
            .endpoints
            .as_deref()
            .map(|e| model::validate_endpoints(e, &rules))
            .transpose()?;
        let public_key = update
            .public_key
            .as_deref()
            .map(|k| model::parse_public_key(k).map(|b| model::encode_public_key(&b)))
            .transpose()?;
        if let Some(l) = &update.labels {
            model::validate_labels(l)?;
        }
        for _ in 0..MAX_ATTEMPTS {
            let Some((mut node, kv)) = self.get_node(name).await? else {
                return Err(Self::not_found(name));
            };
            let old = claims::claims_of_node(&node);
            if let Some(e) = &endpoints {
                node.endpoints = e.clone();
            }
            if let Some(k) = &public_key {
                node.public_key = k.clone();
            }
            if let Some(l) = &update.labels {
                node.labels = l.clone();
            }
            let new = claims::claims_of_node(&node);
            let mut index = IndexView::default();
            index
                .read(
                    self.store.as_ref(),
                    old.iter().chain(&new).cloned().collect(),
                )
                .await?;
            let writes = claims::plan(name, &old, &new, &index, &Default::default())?;
            if let Some(rev) = self.put_node_if(&node, kv.mod_revision, writes).await? {
                node.revision = rev;
                tracing::info!(node = %name, "node record updated");
                return Ok(node);
            }
        }
        Err(RegistryError::Conflict(format!(
            "node {name} kept changing; retry"
        )))
    }

    /// Apply lease expiry at `now`: Ready nodes whose lease is older than
    /// the TTL turn NotReady; nodes older than TTL + grace are removed.
    /// Nodes with no lease yet (after a restart) get one starting now.
    /// Returns (turned NotReady, removed).
    pub async fn sweep(&self, now: Instant) -> Result<(usize, usize), RegistryError> {
        let (nodes, _) = self.list_nodes().await?;
        let ttl = self.settings.lease_ttl;
        let gone = ttl + self.settings.removal_grace;
        let (mut not_ready, mut removed) = (0, 0);
        for node in nodes {
            let last = *self.leases().entry(node.name.clone()).or_insert(now);
            let age = now.saturating_duration_since(last);
            if age > gone {
                if self
                    .remove_node(&node.name, "lease expired past the removal grace")
                    .await?
                    .is_some()
                {
                    removed += 1;
                }
            } else if age > ttl && is_ready(&node) {
                let mut n = node.clone();
                n.state = NodeState::NotReady as i32;
                if self
                    .put_node_if(&n, node.revision, Default::default())
                    .await?
                    .is_some()
                {
                    tracing::warn!(node = %node.name, age_s = age.as_secs(), "lease expired: node NotReady");
                    not_ready += 1;
                }
            }
        }
        Ok((not_ready, removed))
    }
}
