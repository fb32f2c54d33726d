//! Deciding a batch of joins: read what the batch needs (tokens, nodes,
//! key and endpoint claims, the id counter), then decide each join against
//! that view as the joins before it in the batch leave it, producing the
//! compares and writes of one transaction.
//!
//! Contract: [`Registry::plan`] changes the view only once a join is
//! accepted; everything that can refuse a join (token, name, claims, a free
//! CIDR, token usages) is checked before anything is spent from it.

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
    pub(super) next_id: u64,
    pub(super) next_id_rev: u64,
    pub(super) ids_used: bool,
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
}

impl Registry {
    /// Read what a batch needs: its tokens, its nodes, the id counter.
    pub(super) async fn read_view(&self, batch: &[Pending]) -> Result<BatchView, RegistryError> {
        let now_ms = unix_ms();
        let mut tokens = HashMap::new();
        let mut nodes = HashMap::new();
        let mut index = IndexView::default();
        for p in batch {
            if !tokens.contains_key(p.token.id()) {
                let checked = match check_token(self.store.as_ref(), &p.token, now_ms).await {
                    Ok(t) => Ok(t),
                    Err(RegistryError::Unauthenticated(m)) => Err(m),
                    Err(e) => return Err(e),
                };
                tokens.insert(p.token.id().to_string(), checked);
            }
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
        let (next_id, next_id_rev) = match self.store.get(NEXT_NODE_ID_KEY).await? {
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
            next_id,
            next_id_rev,
            ids_used: false,
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
                let allocations = self.allocations();
                let cidr = allocations
                    .pool()
                    .first_free(|n| view.reserved_cidrs.contains(n) || allocations.is_taken(n))
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
                let id = view.next_id;
                view.next_id += 1;
                view.ids_used = true;
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
