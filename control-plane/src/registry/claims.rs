//! Claims: which node holds which WireGuard public key and which underlay
//! endpoint, so that no key and no endpoint ever belongs to two nodes.
//!
//! Contract:
//! - The index lives in the store (`keys/<hex>` and `endpoints/<ip:port>`,
//!   each holding the owner's name; see [`crate::model`]). Every write that
//!   gives a node a key or an endpoint (join, re-join, takeover, UpdateNode)
//!   carries, in its own transaction, an `Absent` compare and a put for each
//!   claim it adds, a `ModRevision` compare for each claim it keeps, and a
//!   compare-and-delete for each claim it gives up; removing a node deletes
//!   its entries with it. So two concurrent claimants of one key cannot both
//!   commit, on one control plane or several sharing a store, and a restart
//!   changes nothing.
//! - [`plan`] is pure: it decides against an [`IndexView`] read beforehand
//!   and a batch's own claims, and refuses a key held by another node with
//!   `AlreadyExists`, an endpoint with `InvalidArgument`; neither message
//!   names the other node.
//! - [`Registry::reconcile_claims`] (run when the registry opens) indexes
//!   nodes stored before the index existed and drops stale entries; where
//!   old data already has two nodes sharing a key or endpoint, the node that
//!   joined first keeps it and the conflict is logged.

use std::collections::HashMap;

use base64::Engine;
use weft_proto::v1::Node;

use super::{Registry, RegistryError, MAX_ATTEMPTS};
use crate::model::{self, ENDPOINTS_PREFIX, KEYS_PREFIX, NODES_PREFIX};
use crate::store::{Compare, KeyValue, Op, Store, Txn};
use crate::untrusted::untrusted;

/// The index keys a node record claims: its public key's, then one per
/// endpoint. A stored key that does not decode claims nothing.
pub(super) fn claims_of(key: &str, endpoints: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(1 + endpoints.len());
    if let Some(bytes) = key_bytes(key) {
        out.push(model::key_index_key(&bytes));
    }
    out.extend(endpoints.iter().map(|e| model::endpoint_index_key(e)));
    out
}

/// The claims of a stored node.
pub(super) fn claims_of_node(node: &Node) -> Vec<String> {
    claims_of(&node.public_key, &node.endpoints)
}

/// Whether two key texts are the same key (stored records may predate the
/// canonical encoding).
pub(super) fn same_key(a: &str, b: &str) -> bool {
    a == b || matches!((key_bytes(a), key_bytes(b)), (Some(x), Some(y)) if x == y)
}

/// Decode a stored key leniently (records written before keys were
/// validated as strictly as now still index).
fn key_bytes(key: &str) -> Option<[u8; 32]> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(key.trim())
        .ok()?;
    <[u8; 32]>::try_from(bytes.as_slice()).ok()
}

/// Index entries as read from the store: index key -> (owner, mod revision),
/// `None` if absent.
#[derive(Default)]
pub(super) struct IndexView {
    entries: HashMap<String, Option<(String, u64)>>,
}

impl IndexView {
    /// Read the entries for `keys` that are not read yet.
    pub(super) async fn read(
        &mut self,
        store: &dyn Store,
        keys: Vec<String>,
    ) -> Result<(), RegistryError> {
        for k in keys {
            if self.entries.contains_key(&k) {
                continue;
            }
            let entry = store.get(&k).await?.map(|kv| owner_of(&kv));
            self.entries.insert(k, entry);
        }
        Ok(())
    }

    fn get(&self, key: &str) -> Result<Option<&(String, u64)>, RegistryError> {
        match self.entries.get(key) {
            Some(e) => Ok(e.as_ref()),
            None => Err(RegistryError::Corrupt(format!(
                "internal error: index entry {key} was not read before planning"
            ))),
        }
    }
}

fn owner_of(kv: &KeyValue) -> (String, u64) {
    (
        String::from_utf8_lossy(&kv.value).into_owned(),
        kv.mod_revision,
    )
}

/// The writes that move node `name`'s claims from `old` to `new`.
#[derive(Debug, Default)]
pub(super) struct ClaimWrites {
    pub compares: Vec<Compare>,
    pub ops: Vec<Op>,
}

/// Decide the index writes for node `name` going from claims `old` to
/// `new`, against `index` and the claims `batch` already made (index key ->
/// claimant) for the same transaction. Refuses a claim another node holds.
/// Changes nothing: once the caller commits to the plan, it [`record`]s it.
pub(super) fn plan(
    name: &str,
    old: &[String],
    new: &[String],
    index: &IndexView,
    batch: &HashMap<String, String>,
) -> Result<ClaimWrites, RegistryError> {
    let mut w = ClaimWrites::default();
    for k in new {
        if batch.get(k).is_some_and(|owner| owner != name) {
            return Err(taken(k));
        }
        match index.get(k)? {
            Some((owner, _)) if owner != name => return Err(taken(k)),
            Some((_, rev)) => w.compares.push(Compare::ModRevision {
                key: k.clone(),
                revision: *rev,
            }),
            None => {
                w.compares.push(Compare::Absent { key: k.clone() });
                w.ops.push(Op::Put {
                    key: k.clone(),
                    value: name.as_bytes().to_vec(),
                });
            }
        }
    }
    for k in old.iter().filter(|k| !new.contains(k)) {
        if let Some((owner, rev)) = index.get(k)? {
            if owner == name {
                w.compares.push(Compare::ModRevision {
                    key: k.clone(),
                    revision: *rev,
                });
                w.ops.push(Op::Delete { key: k.clone() });
            }
        }
    }
    Ok(w)
}

/// Note in `batch` that `name` claims `new` (for later joins of the batch).
pub(super) fn record(batch: &mut HashMap<String, String>, name: &str, new: &[String]) {
    for k in new {
        batch.insert(k.clone(), name.to_string());
    }
}

/// The refusal for a claim held by another node. Names neither the other
/// node nor anything about it.
fn taken(index_key: &str) -> RegistryError {
    if index_key.starts_with(KEYS_PREFIX) {
        RegistryError::AlreadyExists(
            "this public key is already the key of another node: every node needs its own key pair \
             (was a node's state dir or image copied?); generate a new key, or remove the other node first"
                .into(),
        )
    } else {
        let endpoint = index_key
            .strip_prefix(ENDPOINTS_PREFIX)
            .unwrap_or(index_key);
        RegistryError::Invalid(format!(
            "invalid endpoint {}: it is already the endpoint of another node; \
             give this node's own address, or remove the other node first",
            untrusted(endpoint)
        ))
    }
}

impl Registry {
    /// Bring the index in line with the stored nodes: index every claim of
    /// a node that is missing (stores written before the index existed),
    /// and delete entries whose owner no longer holds them. Returns how
    /// many entries it wrote or deleted.
    pub(super) async fn reconcile_claims(&self) -> Result<usize, RegistryError> {
        for _ in 0..MAX_ATTEMPTS {
            match self.reconcile_once().await? {
                Some(changed) => return Ok(changed),
                None => continue,
            }
        }
        Err(RegistryError::Conflict(
            "the key and endpoint index kept changing while it was being checked; restart to retry"
                .into(),
        ))
    }

    /// One pass; `None` if a write lost a race (run again).
    async fn reconcile_once(&self) -> Result<Option<usize>, RegistryError> {
        // The index first, then the nodes: every writer changes a node and
        // its entries in one transaction, so an entry read here belongs to
        // a node state no older than the nodes read next, and each write
        // below compares what it read (a change in between fails it, and
        // the pass runs again).
        let mut index: HashMap<String, (String, u64)> = HashMap::new();
        for prefix in [KEYS_PREFIX, ENDPOINTS_PREFIX] {
            for kv in self.store.range(prefix).await?.0 {
                let entry = owner_of(&kv);
                index.insert(kv.key, entry);
            }
        }
        let (node_kvs, _) = self.store.range(NODES_PREFIX).await?;
        let mut nodes: Vec<(Node, KeyValue)> = Vec::with_capacity(node_kvs.len());
        for kv in node_kvs {
            nodes.push((super::decode_node_kv(&kv)?, kv));
        }
        nodes.sort_by_key(|(n, _)| (n.joined_unix_ms, n.id));
        let claims: HashMap<&str, Vec<String>> = nodes
            .iter()
            .map(|(n, _)| (n.name.as_str(), claims_of_node(n)))
            .collect();
        // An existing entry stays with its owner if the owner still holds
        // the claim; the rest go to nodes in the order they joined.
        let mut wanted: HashMap<String, String> = HashMap::new();
        for (k, (owner, _)) in &index {
            if claims.get(owner.as_str()).is_some_and(|c| c.contains(k)) {
                wanted.insert(k.clone(), owner.clone());
            }
        }
        for (node, _) in &nodes {
            for k in claims.get(node.name.as_str()).into_iter().flatten() {
                match wanted.get(k) {
                    None => {
                        wanted.insert(k.clone(), node.name.clone());
                    }
                    Some(owner) if owner != &node.name => tracing::warn!(
                        node = %untrusted(&node.name),
                        holder = %untrusted(owner),
                        claim = %untrusted(k),
                        "two nodes claim one public key or endpoint (stored before weft refused that); \
                         the holder keeps it: remove one of them"
                    ),
                    Some(_) => {}
                }
            }
        }
        let node_rev: HashMap<&str, u64> = nodes
            .iter()
            .map(|(n, kv)| (n.name.as_str(), kv.mod_revision))
            .collect();
        let mut changed = 0;
        for (k, owner) in &wanted {
            let current = index.get(k);
            if current.is_some_and(|(o, _)| o == owner) {
                continue;
            }
            let mut compares = vec![Compare::ModRevision {
                key: model::node_key(owner),
                revision: node_rev.get(owner.as_str()).copied().unwrap_or(0),
            }];
            compares.push(match current {
                Some((_, rev)) => Compare::ModRevision {
                    key: k.clone(),
                    revision: *rev,
                },
                None => Compare::Absent { key: k.clone() },
            });
            let ops = vec![Op::Put {
                key: k.clone(),
                value: owner.as_bytes().to_vec(),
            }];
            if !self.store.txn(Txn { compares, ops }).await?.succeeded {
                return Ok(None);
            }
            changed += 1;
        }
        for (k, (_, rev)) in &index {
            if wanted.contains_key(k) {
                continue;
            }
            let txn = Txn {
                compares: vec![Compare::ModRevision {
                    key: k.clone(),
                    revision: *rev,
                }],
                ops: vec![Op::Delete { key: k.clone() }],
            };
            if !self.store.txn(txn).await?.succeeded {
                return Ok(None);
            }
            changed += 1;
        }
        if changed > 0 {
            tracing::info!(
                entries = changed,
                "brought the public-key and endpoint index in line with the stored nodes"
            );
        }
        Ok(Some(changed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(entries: &[(&str, Option<(&str, u64)>)]) -> IndexView {
        IndexView {
            entries: entries
                .iter()
                .map(|(k, e)| (k.to_string(), e.map(|(o, r)| (o.to_string(), r))))
                .collect(),
        }
    }

    #[test]
    fn a_new_claim_is_put_with_an_absent_compare() {
        let idx = view(&[("keys/aa", None), ("endpoints/192.0.2.1:1", None)]);
        let new = vec!["keys/aa".to_string(), "endpoints/192.0.2.1:1".to_string()];
        let mut batch = HashMap::new();
        let w = plan("n1", &[], &new, &idx, &batch).unwrap();
        record(&mut batch, "n1", &new);
        assert_eq!(
            w.compares,
            vec![
                Compare::Absent {
                    key: "keys/aa".into()
                },
                Compare::Absent {
                    key: "endpoints/192.0.2.1:1".into()
                }
            ]
        );
        assert_eq!(w.ops.len(), 2);
        assert_eq!(batch.get("keys/aa").map(String::as_str), Some("n1"));
    }

    #[test]
    fn a_kept_claim_is_compared_and_a_dropped_one_deleted() {
        let idx = view(&[
            ("keys/aa", Some(("n1", 5))),
            ("endpoints/e1", Some(("n1", 6))),
        ]);
        let w = plan(
            "n1",
            &["keys/aa".into(), "endpoints/e1".into()],
            &["keys/aa".into()],
            &idx,
            &HashMap::new(),
        )
        .unwrap();
        assert_eq!(
            w.compares,
            vec![
                Compare::ModRevision {
                    key: "keys/aa".into(),
                    revision: 5
                },
                Compare::ModRevision {
                    key: "endpoints/e1".into(),
                    revision: 6
                }
            ]
        );
        assert_eq!(
            w.ops,
            vec![Op::Delete {
                key: "endpoints/e1".into()
            }]
        );
    }

    #[test]
    fn a_claim_held_by_another_node_is_refused_without_naming_it() {
        let idx = view(&[
            ("keys/aa", Some(("victim", 5))),
            ("endpoints/e1", Some(("victim", 6))),
        ]);
        let e = plan("n2", &[], &["keys/aa".into()], &idx, &HashMap::new()).unwrap_err();
        assert!(matches!(e, RegistryError::AlreadyExists(_)), "{e:?}");
        assert!(!e.to_string().contains("victim"), "{e}");
        let e = plan("n2", &[], &["endpoints/e1".into()], &idx, &HashMap::new()).unwrap_err();
        assert!(matches!(e, RegistryError::Invalid(_)), "{e:?}");
        assert!(e.to_string().contains("\"e1\""), "{e}");
        assert!(!e.to_string().contains("victim"), "{e}");
    }

    #[test]
    fn two_claimants_in_one_batch_get_one_winner() {
        let idx = view(&[("keys/aa", None)]);
        let mut batch = HashMap::new();
        plan("n1", &[], &["keys/aa".into()], &idx, &batch).unwrap();
        record(&mut batch, "n1", &["keys/aa".into()]);
        let e = plan("n2", &[], &["keys/aa".into()], &idx, &batch).unwrap_err();
        assert!(matches!(e, RegistryError::AlreadyExists(_)), "{e:?}");
    }

    #[test]
    fn an_entry_owned_by_someone_else_is_never_deleted() {
        let idx = view(&[("endpoints/e1", Some(("other", 3)))]);
        let w = plan("n1", &["endpoints/e1".into()], &[], &idx, &HashMap::new()).unwrap();
        assert!(w.ops.is_empty() && w.compares.is_empty(), "{w:?}");
    }

    #[test]
    fn an_unread_entry_is_an_error_not_a_guess() {
        let e = plan(
            "n1",
            &[],
            &["keys/zz".into()],
            &IndexView::default(),
            &HashMap::new(),
        )
        .unwrap_err();
        assert!(matches!(e, RegistryError::Corrupt(_)), "{e:?}");
    }
}
