//! Deciding a batch of joins: read what the batch needs (nodes, key and
//! endpoint claims, then tokens and the id counter), then decide each join
//! against that view as the joins before it in the batch leave it,
//! producing the compares and writes of one transaction.
//!
//! Node ids come from a block this replica reserved from the shared counter
//! (`meta/next-node-id`): a batch that runs out reserves the next
//! [`ID_BLOCK`] ids in its own transaction (compare and advance the
//! counter), so batches of different replicas only meet on the counter once
//! every `ID_BLOCK` joins. A new node's CIDR is searched from its id's place
//! in the pool, so replicas rarely pick the same one. The tokens and the
//! counter are read last, to keep the window in which another replica's
//! commit can change them short.
//!
//! Contract: [`Registry::plan`] changes the view only once a join is
//! accepted; everything that can refuse a join (token, name, claims, a free
//! CIDR, token usages) is checked before anything is spent from it. Ids are
//! unique across replicas: each id comes from one reservation, and a
//! reservation commits only if the counter was unchanged since it was read.

use std::collections::{HashMap, HashSet};

use ipnet::IpNet;
use weft_proto::v1::{Node, NodeState};

use super::super::claims::{self, IndexView};
use super::super::tokens::{check_token, CheckedToken};
use super::super::{unix_ms, Registry, RegistryError};
use super::Pending;
use crate::ipam::AllocError;
use crate::model::{self, NEXT_NODE_ID_KEY};
use crate::store::{Compare, KeyValue, Op};

/// What one join does to the store, decided against the batch's view.
pub(super) struct Plan {
    pub(super) node: Node,
    pub(super) created: bool,
    pub(super) compares: Vec<Compare>,
    pub(super) ops: Vec<Op>,
    pub(super) cidr: Option<IpNet>,
}

/// The state a batch decides against, updated as each join is planned.
pub(super) struct BatchView {
    pub(super) now_ms: i64,
    pub(super) tokens: HashMap<String, Result<CheckedToken, String>>,
    /// Token records changed by this batch (id -> record), written once.
    pub(super) token_updates: HashMap<String, crate::model::TokenRecord>,
    pub(super) nodes: HashMap<String, Option<(Node, KeyValue)>>,
    /// The key and endpoint index entries the batch's joins touch.
    pub(super) index: IndexView,
    /// Key and endpoint claims made by joins planned so far.
    pub(super) claimed: HashMap<String, String>,
    pub(super) claimed_names: HashSet<String>,
    pub(super) reserved_cidrs: HashSet<IpNet>,
    /// This replica's reserved ids, as the batch leaves them.
    pub(super) ids: IdBlock,
    /// The stored id counter and its revision.
    pub(super) counter: u64,
    pub(super) counter_rev: u64,
    /// The counter's new value if the batch reserves ids.
    pub(super) counter_put: Option<u64>,
}

/// Ids a batch reserves from the shared counter when its replica has none
/// left.
pub(super) const ID_BLOCK: u64 = 64;

/// Node ids this replica reserved and has not handed out yet: `next..end`.
/// Only the join batch leader touches it (it lives under the leader lock).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct IdBlock {
    pub(super) next: u64,
    pub(super) end: u64,
}

/// The next id, and the block and counter once it is taken.
struct NextId {
    id: u64,
    ids: IdBlock,
    counter_put: Option<u64>,
}

impl BatchView {
    /// The most compares (and the most ops) planning `p` can add: its node,
    /// its CIDR, its token, its new claims and the claims of the record it
    /// replaces.
    pub(super) fn worst_cost(&self, p: &Pending) -> usize {
        let new = claims::claims_of(&p.public_key, &p.endpoints).len();
        let old = match self.nodes.get(&p.name) {
            Some(Some((n, _))) => claims::claims_of_node(n).len(),
            _ => 0,
        };
        3 + new + old
    }

    /// The next node id, from the replica's block or, once that is empty,
    /// from a new reservation continuing the batch's (or the stored
    /// counter). Changes nothing: see [`BatchView::take_id`].
    fn next_id(&self) -> Result<NextId, RegistryError> {
        let (ids, counter_put) = if self.ids.next < self.ids.end {
            (self.ids, self.counter_put)
        } else {
            let start = self.counter_put.unwrap_or(self.counter);
            let end = start
                .checked_add(ID_BLOCK)
                .ok_or_else(|| RegistryError::Exhausted("node ids are used up".into()))?;
            (IdBlock { next: start, end }, Some(end))
        };
        Ok(NextId {
            id: ids.next,
            ids: IdBlock {
                next: ids.next + 1,
                end: ids.end,
            },
            counter_put,
        })
    }

    fn take_id(&mut self, next: NextId) -> u64 {
        self.ids = next.ids;
        self.counter_put = next.counter_put;
        next.id
    }
}

impl Registry {
    /// Read what a batch needs: its nodes and claims, then its tokens and
    /// the id counter (the keys every replica's batches write, read last).
    /// `ids` is the replica's reserved block.
    pub(super) async fn read_view(
        &self,
        batch: &[Pending],
        ids: IdBlock,
    ) -> Result<BatchView, RegistryError> {
        let now_ms = unix_ms();
        let mut tokens = HashMap::new();
        let mut nodes = HashMap::new();
        let mut index = IndexView::default();
        for p in batch {
            if !nodes.contains_key(&p.name) {
                let node = self.get_node(&p.name).await?;
                if let Some((n, _)) = &node {
                    index
                        .read(self.store.as_ref(), claims::claims_of_node(n))
                        .await?;
                }
                nodes.insert(p.name.clone(), node);
            }
            index
                .read(
                    self.store.as_ref(),
                    claims::claims_of(&p.public_key, &p.endpoints),
                )
                .await?;
        }
        for p in batch {
            if !tokens.contains_key(p.token.id()) {
                let checked = match check_token(self.store.as_ref(), &p.token, now_ms).await {
                    Ok(t) => Ok(t),
                    Err(RegistryError::Unauthenticated(m)) => Err(m),
                    Err(e) => return Err(e),
                };
                tokens.insert(p.token.id().to_string(), checked);
            }
        }
        let (counter, counter_rev) = match self.store.get(NEXT_NODE_ID_KEY).await? {
            Some(kv) => {
                let id = std::str::from_utf8(&kv.value)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| {
                        RegistryError::Corrupt("meta/next-node-id is not a number".into())
                    })?;
                (id, kv.mod_revision)
            }
            None => (1, 0),
        };
        Ok(BatchView {
            now_ms,
            tokens,
            token_updates: HashMap::new(),
            nodes,
            index,
            claimed: HashMap::new(),
            claimed_names: HashSet::new(),
            reserved_cidrs: HashSet::new(),
            ids,
            counter,
            counter_rev,
            counter_put: None,
        })
    }

    /// Decide one join against the batch's view, updating the view.
    pub(super) fn plan(&self, view: &mut BatchView, p: &Pending) -> Result<Plan, RegistryError> {
        let token = match view.tokens.get(p.token.id()) {
            Some(Ok(t)) => t,
            Some(Err(msg)) => return Err(RegistryError::Unauthenticated(msg.clone())),
            None => {
                return Err(RegistryError::Corrupt(
                    "token missing from the batch view".into(),
                ))
            }
        };
        // The secret was checked per token id; a second join with the same
        // id but another secret must be checked too.
        super::super::tokens::verify_secret(&token.record, &p.token)?;
        let name = p.name.as_str();
        let mut compares = Vec::new();
        let mut ops = Vec::new();
        let existing = view.nodes.get(name).cloned().flatten();
        let same_key = existing
            .as_ref()
            .is_some_and(|(n, _)| claims::same_key(&n.public_key, &p.public_key));
        if let Some((node, _)) = &existing {
            if !same_key && super::super::is_ready(node) {
                return Err(RegistryError::AlreadyExists(format!(
                    "node name {name:?} is held by a live node with a different key ({}...); \
                     choose another name, or remove it first with `weftctl node remove {name}`",
                    model::key_fingerprint(&node.public_key)
                )));
            }
        }
        // Claims are checked before anything is spent from the view (token
        // usage, CIDR, id), so a refused join leaves the batch as it was.
        let old_claims = existing
            .as_ref()
            .map(|(n, _)| claims::claims_of_node(n))
            .unwrap_or_default();
        let new_claims = claims::claims_of(&p.public_key, &p.endpoints);
        let mut w = claims::plan(name, &old_claims, &new_claims, &view.index, &view.claimed)?;
        let (node, created, cidr) = match existing {
            Some((mut node, kv)) if same_key => {
                // Idempotent re-join: same id and CIDR; no token usage.
                node.public_key = p.public_key.clone();
                node.endpoints = p.endpoints.clone();
                node.labels = p.labels.clone();
                node.state = NodeState::Ready as i32;
                compares.push(Compare::ModRevision {
                    key: kv.key.clone(),
                    revision: kv.mod_revision,
                });
                (node, false, None)
            }
            Some((mut node, kv)) => {
                // Takeover of a NotReady node's name: a new key, the same id
                // and CIDR.
                use_token(view, token.record.clone())?;
                node.public_key = p.public_key.clone();
                node.endpoints = p.endpoints.clone();
                node.labels = p.labels.clone();
                node.state = NodeState::Ready as i32;
                compares.push(Compare::ModRevision {
                    key: kv.key.clone(),
                    revision: kv.mod_revision,
                });
                (node, true, None)
            }
            None => {
                let next = view.next_id()?;
                let allocations = self.allocations();
                let cidr = allocations
                    .pool()
                    .first_free_from(next.id.saturating_sub(1), |n| {
                        view.reserved_cidrs.contains(n) || allocations.is_taken(n)
                    })
                    .ok_or_else(|| {
                        let pool = allocations.pool();
                        RegistryError::Exhausted(
                            AllocError::Exhausted {
                                cluster: pool.cluster(),
                                prefix: pool.node_prefix(),
                                total: pool.len(),
                            }
                            .to_string(),
                        )
                    })?;
                drop(allocations);
                use_token(view, token.record.clone())?;
                view.reserved_cidrs.insert(cidr);
                let id = view.take_id(next);
                compares.push(Compare::Absent {
                    key: model::node_key(name),
                });
                compares.push(Compare::Absent {
                    key: model::ipam_key(&cidr),
                });
                ops.push(Op::Put {
                    key: model::ipam_key(&cidr),
                    value: name.as_bytes().to_vec(),
                });
                let node = Node {
                    id,
                    name: name.to_string(),
                    public_key: p.public_key.clone(),
                    endpoints: p.endpoints.clone(),
                    pod_cidr: cidr.to_string(),
                    labels: p.labels.clone(),
                    state: NodeState::Ready as i32,
                    last_renewal_unix_ms: 0,
                    joined_unix_ms: view.now_ms,
                    revision: 0,
                };
                (node, true, Some(cidr))
            }
        };
        claims::record(&mut view.claimed, name, &new_claims);
        compares.append(&mut w.compares);
        ops.append(&mut w.ops);
        let mut stored = node.clone();
        stored.revision = 0;
        stored.last_renewal_unix_ms = 0;
        ops.push(Op::Put {
            key: model::node_key(name),
            value: model::encode_node(&stored),
        });
        Ok(Plan {
            node,
            created,
            compares,
            ops,
            cidr,
        })
    }
}

/// Spend one usage of a token in the batch's view.
fn use_token(view: &mut BatchView, stored: crate::model::TokenRecord) -> Result<(), RegistryError> {
    let record = view
        .token_updates
        .entry(stored.id.clone())
        .or_insert(stored);
    match record.usages_left {
        Some(0) => {
            return Err(RegistryError::Unauthenticated(format!(
                "join token {} is used up ({} joins); create another with `weftctl token create`",
                record.id, record.used
            )))
        }
        Some(n) => record.usages_left = Some(n - 1),
        None => {}
    }
    record.used = record.used.saturating_add(1);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(ids: IdBlock, counter: u64) -> BatchView {
        BatchView {
            now_ms: 0,
            tokens: HashMap::new(),
            token_updates: HashMap::new(),
            nodes: HashMap::new(),
            index: IndexView::default(),
            claimed: HashMap::new(),
            claimed_names: HashSet::new(),
            reserved_cidrs: HashSet::new(),
            ids,
            counter,
            counter_rev: 7,
            counter_put: None,
        }
    }

    fn take(v: &mut BatchView) -> u64 {
        let next = v.next_id().unwrap();
        v.take_id(next)
    }

    #[test]
    fn ids_come_from_the_block_then_from_reservations_continuing_the_counter() {
        // Ids left in the block: no reservation, the counter untouched.
        let mut v = view(IdBlock { next: 10, end: 12 }, 500);
        assert_eq!((take(&mut v), take(&mut v)), (10, 11));
        assert_eq!(v.counter_put, None);
        // The block is empty: reserve 500..564 from the counter.
        assert_eq!(take(&mut v), 500);
        assert_eq!(v.counter_put, Some(500 + ID_BLOCK));
        for want in 501..500 + ID_BLOCK {
            assert_eq!(take(&mut v), want);
        }
        // A second reservation in one batch continues the first.
        assert_eq!(take(&mut v), 500 + ID_BLOCK);
        assert_eq!(v.counter_put, Some(500 + 2 * ID_BLOCK));
        assert_eq!(
            v.ids,
            IdBlock {
                next: 501 + ID_BLOCK,
                end: 500 + 2 * ID_BLOCK
            }
        );
    }

    #[test]
    fn peeking_at_the_next_id_changes_nothing_and_overflow_is_refused() {
        let v = view(IdBlock::default(), 1);
        let _ = v.next_id().unwrap();
        assert_eq!((v.ids, v.counter_put), (IdBlock::default(), None));
        let full = view(IdBlock::default(), u64::MAX - 1);
        assert!(matches!(full.next_id(), Err(RegistryError::Exhausted(_))));
    }
}
