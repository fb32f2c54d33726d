//! Joining the cluster: token check, name/key rules, node id and pod CIDR
//! allocation, all in one store transaction.

use std::collections::BTreeMap;

use tokio::time::Instant;
use weft_proto::v1::{Node, NodeState};

use super::tokens::check_token;
use super::{unix_ms, Registry, RegistryError, MAX_ATTEMPTS};
use crate::ipam::AllocError;
use crate::model::{self, NEXT_NODE_ID_KEY};
use crate::store::{Compare, Op, Txn};

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

impl Registry {
    /// Join (or re-join) the cluster. See `Cluster.Join` in the proto for
    /// the rules.
    pub async fn join(&self, input: JoinInput) -> Result<Joined, RegistryError> {
        let token: weft_client::JoinToken =
            input.token.trim().parse().map_err(|e| {
                RegistryError::Unauthenticated(format!("malformed join token: {e}"))
            })?;
        model::validate_node_name(&input.node_name)?;
        model::parse_public_key(&input.public_key)?;
        let endpoints = model::validate_endpoints(&input.endpoints)?;
        model::validate_labels(&input.labels)?;
        if input.csr_pem.trim().is_empty() {
            return Err(RegistryError::Invalid(
                "csr_pem is empty: the join request must carry a certificate signing request for the node credential".into(),
            ));
        }
        let name = input.node_name.as_str();
        // Signing first: a bad CSR must change nothing.
        let certificate_pem = self
            .pki
            .sign_node_csr(name, &input.csr_pem)
            .map_err(|e| RegistryError::Invalid(format!("bad certificate signing request: {e}")))?;

        let _serial = self.join_lock.lock().await;
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                self.reload_allocations().await?;
            }
            let now_ms = unix_ms();
            let tok = check_token(self.store.as_ref(), &token, now_ms).await?;
            let existing = self.get_node(name).await?;
            let mut compares = vec![Compare::ModRevision {
                key: tok.kv.key.clone(),
                revision: tok.kv.mod_revision,
            }];
            let mut ops = Vec::new();
            let (node, created) = match existing {
                Some((mut node, kv)) if node.public_key == input.public_key => {
                    // Idempotent re-join: same id and CIDR; no token usage.
                    node.endpoints = endpoints.clone();
                    node.labels = input.labels.clone();
                    node.state = NodeState::Ready as i32;
                    compares.push(Compare::ModRevision {
                        key: kv.key.clone(),
                        revision: kv.mod_revision,
                    });
                    (node, false)
                }
                Some((node, _)) if super::is_ready(&node) => {
                    return Err(RegistryError::AlreadyExists(format!(
                        "node name {name:?} is held by a live node with a different key ({}...); \
                         choose another name, or remove it first with `weftctl node remove {name}`",
                        model::key_fingerprint(&node.public_key)
                    )));
                }
                Some((mut node, kv)) => {
                    // Takeover of a NotReady node's name: a new key, the
                    // same id and CIDR.
                    tok.use_one(&mut ops)?;
                    node.public_key = input.public_key.clone();
                    node.endpoints = endpoints.clone();
                    node.labels = input.labels.clone();
                    node.state = NodeState::Ready as i32;
                    compares.push(Compare::ModRevision {
                        key: kv.key.clone(),
                        revision: kv.mod_revision,
                    });
                    (node, true)
                }
                None => {
                    tok.use_one(&mut ops)?;
                    let cidr = self.allocations().candidate(name).map_err(|e| match e {
                        AllocError::Exhausted { .. } => RegistryError::Exhausted(e.to_string()),
                    })?;
                    let (id, id_rev) = match self.store.get(NEXT_NODE_ID_KEY).await? {
                        Some(kv) => {
                            let id = std::str::from_utf8(&kv.value)
                                .ok()
                                .and_then(|s| s.parse::<u64>().ok())
                                .ok_or_else(|| {
                                    RegistryError::Corrupt(
                                        "meta/next-node-id is not a number".into(),
                                    )
                                })?;
                            (id, kv.mod_revision)
                        }
                        None => (1, 0),
                    };
                    compares.push(Compare::ModRevision {
                        key: NEXT_NODE_ID_KEY.into(),
                        revision: id_rev,
                    });
                    compares.push(Compare::Absent {
                        key: model::node_key(name),
                    });
                    compares.push(Compare::Absent {
                        key: model::ipam_key(&cidr),
                    });
                    ops.push(Op::Put {
                        key: NEXT_NODE_ID_KEY.into(),
                        value: (id + 1).to_string().into_bytes(),
                    });
                    ops.push(Op::Put {
                        key: model::ipam_key(&cidr),
                        value: name.as_bytes().to_vec(),
                    });
                    let node = Node {
                        id,
                        name: name.to_string(),
                        public_key: input.public_key.clone(),
                        endpoints: endpoints.clone(),
                        pod_cidr: cidr.to_string(),
                        labels: input.labels.clone(),
                        state: NodeState::Ready as i32,
                        last_renewal_unix_ms: 0,
                        joined_unix_ms: now_ms,
                        revision: 0,
                    };
                    (node, true)
                }
            };
            let mut stored = node.clone();
            stored.revision = 0;
            stored.last_renewal_unix_ms = 0;
            ops.push(Op::Put {
                key: model::node_key(name),
                value: model::encode_node(&stored),
            });
            let out = self.store.txn(Txn { compares, ops }).await?;
            if !out.succeeded {
                tracing::debug!(node = %name, attempt, "join lost a race; retrying");
                continue;
            }
            if let Ok(cidr) = node.pod_cidr.parse() {
                self.allocations().record(name, cidr);
            }
            self.leases().insert(name.to_string(), Instant::now());
            let mut node = node;
            node.revision = out.revision;
            node.last_renewal_unix_ms = now_ms;
            tracing::info!(node = %name, id = node.id, cidr = %node.pod_cidr, created, "node joined");
            return Ok(Joined {
                node,
                certificate_pem,
                created,
            });
        }
        Err(RegistryError::Conflict(format!(
            "join of {name:?} lost {MAX_ATTEMPTS} races with concurrent changes; retry"
        )))
    }
}
