//! Joining the cluster: token check, name/key rules, node id and pod CIDR
//! allocation, committed in one store transaction.
//!
//! Joins are batched: a join that arrives while another batch is being
//! committed waits in a queue, and the next batch takes every queued join at
//! once: one read of the state, one transaction, one fsync for all of them.
//! Each join is decided against the state as the batch leaves it, so the
//! rules are the same as one by one; the transaction's compares still guard
//! against anything that changed meanwhile (another replica, an admin
//! revoking the token). If the batch transaction loses such a race, the
//! batch is retried against fresh state (a few times, after a random pause:
//! replicas on one etcd race on the id counter), then its joins one by one.
//! A batch is cut where its compares or ops would pass the store's
//! transaction limit (`Store::max_txn_ops`, counting each join's key and
//! endpoint claims); the joins after the cut go first in the next batch.
//!
//! The node's public key and endpoints are claimed in the same transaction
//! (see `claims`): a key or endpoint another node holds is refused, and of
//! two concurrent joins with one key exactly one commits.

mod plan;

use std::collections::{BTreeMap, HashSet};

use tokio::sync::oneshot;
use tokio::time::Instant;
use weft_proto::v1::Node;

use super::{Registry, RegistryError, MAX_ATTEMPTS};
use crate::model::{self, NEXT_NODE_ID_KEY};
use crate::store::{Compare, Op, Txn};
use plan::Plan;

/// Most joins in one transaction. Every watcher receives a transaction's
/// events in one message, so this bounds watch message sizes (and with them
/// the encode buffer each watch stream keeps) as well as the transaction.
pub(super) const MAX_JOIN_BATCH: usize = 64;

/// Lost races after which a batch's joins are retried one by one.
const BATCH_RETRIES: usize = 8;

/// A join request, as received.
#[derive(Debug, Clone, Default)]
pub struct JoinInput {
    pub token: String,
    pub node_name: String,
    pub public_key: String,
    pub endpoints: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub csr_pem: String,
}

/// A successful join.
#[derive(Debug, Clone)]
pub struct Joined {
    pub node: Node,
    /// The node credential (PEM certificate).
    pub certificate_pem: String,
    /// True if this was a new node (or a takeover of a NotReady one), false
    /// for an idempotent re-join.
    pub created: bool,
}

/// A checked join waiting for its batch.
pub(super) struct Pending {
    token: weft_client::JoinToken,
    name: String,
    /// Canonical base64.
    public_key: String,
    endpoints: Vec<String>,
    labels: BTreeMap<String, String>,
    certificate_pem: String,
    reply: oneshot::Sender<Result<Joined, RegistryError>>,
}

/// The queue of joins and the lock its batch leader holds.
#[derive(Default)]
pub(super) struct JoinQueue {
    waiting: std::sync::Mutex<Vec<Pending>>,
    leader: tokio::sync::Mutex<()>,
}

impl Registry {
    /// Join (or re-join) the cluster. See `Cluster.Join` in the proto for
    /// the rules.
    pub async fn join(&self, input: JoinInput) -> Result<Joined, RegistryError> {
        let token: weft_client::JoinToken =
            input.token.trim().parse().map_err(|e| {
                RegistryError::Unauthenticated(format!("malformed join token: {e}"))
            })?;
        model::validate_node_name(&input.node_name)?;
        let public_key = model::encode_public_key(&model::parse_public_key(&input.public_key)?);
        let endpoints = model::validate_endpoints(&input.endpoints, &self.endpoint_rules())?;
        model::validate_labels(&input.labels)?;
        if input.csr_pem.trim().is_empty() {
            return Err(RegistryError::Invalid(
                "csr_pem is empty: the join request must carry a certificate signing request for the node credential".into(),
            ));
        }
        // Signing first, outside any queue: a bad CSR must change nothing,
        // and signing is the CPU-heavy part.
        let certificate_pem = self
            .pki
            .sign_node_csr(&input.node_name, &input.csr_pem)
            .map_err(|e| RegistryError::Invalid(format!("bad certificate signing request: {e}")))?;

        let (reply, mut rx) = oneshot::channel();
        self.joins
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Pending {
                token,
                name: input.node_name,
                public_key,
                endpoints,
                labels: input.labels,
                certificate_pem,
                reply,
            });
        loop {
            // Whoever holds the leader lock commits every queued join; when
            // we get it, ours may already be done.
            let _leader = self.joins.leader.lock().await;
            if let Ok(result) = rx.try_recv() {
                return result;
            }
            let batch =
                std::mem::take(&mut *self.joins.waiting.lock().unwrap_or_else(|e| e.into_inner()));
            if !batch.is_empty() {
                self.run_batches(batch).await;
            }
            if let Ok(result) = rx.try_recv() {
                return result;
            }
        }
    }

    /// Commit `batch` (and joins deferred from it) until every join has an
    /// answer.
    async fn run_batches(&self, mut queued: Vec<Pending>) {
        // A new node's join adds at least three compares and three ops (its
        // node and CIDR keys, its token), plus one of each for the id
        // counter: keep batches within the store's transaction limit.
        // (`commit_batch` defers joins whose key and endpoint claims would
        // go over it.)
        let per_batch = MAX_JOIN_BATCH.min((self.store.max_txn_ops().saturating_sub(1) / 3).max(1));
        let mut lost = 0;
        while !queued.is_empty() {
            let rest = queued.split_off(queued.len().min(per_batch));
            let mut batch = std::mem::replace(&mut queued, rest);
            let (deferred, failed) = match self.commit_batch(batch).await {
                Ok(deferred) => (deferred, Vec::new()),
                Err(failed) => (Vec::new(), failed),
            };
            if !failed.is_empty() && lost < BATCH_RETRIES {
                // A lost race, most likely with another replica's batch (they
                // all update the id counter): the whole batch again, against
                // fresh allocations, after a random pause.
                lost += 1;
                let pause = rand::random::<u64>() % (5 * lost as u64 + 1);
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                if let Err(e) = self.reload_allocations().await {
                    tracing::warn!(error = %e, "reloading allocations after a lost race");
                }
                let mut again = failed;
                again.append(&mut queued);
                queued = again;
                continue;
            }
            // Still losing: every join of the failed batch again, alone.
            for pending in failed {
                self.commit_alone(pending).await;
            }
            batch = deferred;
            // Joins deferred from this batch go first in the next one.
            batch.append(&mut queued);
            queued = batch;
        }
    }

    /// One join in batches of one, retried against fresh state.
    async fn commit_alone(&self, mut pending: Pending) {
        for _ in 0..MAX_ATTEMPTS {
            if let Err(e) = self.reload_allocations().await {
                let _ = pending.reply.send(Err(e));
                return;
            }
            match self.commit_batch(vec![pending]).await {
                Ok(_) => return,
                Err(mut failed) => match failed.pop() {
                    Some(p) => pending = p,
                    None => return,
                },
            }
        }
        let name = pending.name.clone();
        let _ = pending.reply.send(Err(RegistryError::Conflict(format!(
            "join of {name:?} lost {MAX_ATTEMPTS} races with concurrent changes; retry"
        ))));
    }

    /// Decide and commit a batch. Joins refused by the rules are answered
    /// here. Returns the joins deferred to the next batch (a second join of
    /// a name already in this batch), or, if the transaction lost a race,
    /// the joins it carried, unanswered.
    async fn commit_batch(&self, batch: Vec<Pending>) -> Result<Vec<Pending>, Vec<Pending>> {
        let mut view = match self.read_view(&batch).await {
            Ok(v) => v,
            Err(e) => {
                let msg = e.to_string();
                for p in batch {
                    let _ = p.reply.send(Err(RegistryError::Store(
                        crate::store::StoreError::Backend(msg.clone()),
                    )));
                }
                return Ok(Vec::new());
            }
        };
        let mut deferred = Vec::new();
        let mut planned: Vec<(Pending, Plan)> = Vec::new();
        // Compares (and, separately, ops) the transaction may still take;
        // one of each is kept for the id counter.
        let budget = self.store.max_txn_ops().saturating_sub(1);
        let mut used = 0usize;
        for p in batch {
            if view.claimed_names.contains(&p.name) {
                deferred.push(p);
                continue;
            }
            let cost = view.worst_cost(&p);
            if !planned.is_empty() && used.saturating_add(cost) > budget {
                deferred.push(p);
                continue;
            }
            match self.plan(&mut view, &p) {
                Ok(plan) => {
                    used += cost;
                    view.claimed_names.insert(p.name.clone());
                    planned.push((p, plan));
                }
                Err(e) => {
                    let _ = p.reply.send(Err(e));
                }
            }
        }
        if planned.is_empty() {
            return Ok(deferred);
        }
        let mut compares = Vec::new();
        let mut ops = Vec::new();
        let mut seen_tokens = HashSet::new();
        for (p, plan) in &mut planned {
            if seen_tokens.insert(p.token.id().to_string()) {
                if let Some(Ok(t)) = view.tokens.get(p.token.id()) {
                    compares.push(Compare::ModRevision {
                        key: t.kv.key.clone(),
                        revision: t.kv.mod_revision,
                    });
                }
            }
            compares.append(&mut plan.compares);
            ops.append(&mut plan.ops);
        }
        for (id, record) in &view.token_updates {
            match serde_json::to_vec(record) {
                Ok(value) => ops.push(Op::Put {
                    key: model::token_key(id),
                    value,
                }),
                Err(e) => {
                    for (p, _) in planned {
                        let _ = p.reply.send(Err(RegistryError::Corrupt(e.to_string())));
                    }
                    return Ok(deferred);
                }
            }
        }
        if view.ids_used {
            compares.push(Compare::ModRevision {
                key: NEXT_NODE_ID_KEY.into(),
                revision: view.next_id_rev,
            });
            ops.push(Op::Put {
                key: NEXT_NODE_ID_KEY.into(),
                value: view.next_id.to_string().into_bytes(),
            });
        }
        let outcome = match self.store.txn(Txn { compares, ops }).await {
            Ok(o) => o,
            Err(e) => {
                let msg = e.to_string();
                for (p, _) in planned {
                    let _ = p.reply.send(Err(RegistryError::Store(
                        crate::store::StoreError::Backend(msg.clone()),
                    )));
                }
                return Ok(deferred);
            }
        };
        if !outcome.succeeded {
            tracing::debug!(
                joins = planned.len(),
                "join batch lost a race; retrying one by one"
            );
            let mut failed: Vec<Pending> = planned.into_iter().map(|(p, _)| p).collect();
            failed.extend(deferred);
            return Err(failed);
        }
        for (p, plan) in planned {
            if let Some(cidr) = plan.cidr {
                self.allocations().record(&p.name, cidr);
            }
            self.leases().insert(p.name.clone(), Instant::now());
            let mut node = plan.node;
            node.revision = outcome.revision;
            node.last_renewal_unix_ms = view.now_ms;
            tracing::info!(node = %p.name, id = node.id, cidr = %node.pod_cidr, created = plan.created, "node joined");
            let _ = p.reply.send(Ok(Joined {
                node,
                certificate_pem: p.certificate_pem,
                created: plan.created,
            }));
        }
        Ok(deferred)
    }
}
