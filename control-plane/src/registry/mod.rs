//! The registry: what the control plane knows about nodes and join tokens,
//! and every change to it, independent of gRPC.
//!
//! Contract:
//! - Every change is one compare-and-swap transaction on the store, so two
//!   callers (or two control-plane replicas on one etcd) can never hand out
//!   the same node CIDR, node id or token usage; a lost race is retried
//!   against fresh data a bounded number of times.
//! - Validation happens before any write: a refused request changes nothing.
//! - Leases live in memory (a renewal is not a write). After a restart every
//!   known node gets a fresh lease TTL; only Ready <-> NotReady transitions
//!   and removals are written, so watchers see them. Replicas sharing an etcd
//!   also write each renewal, so the leader sees renewals made through any
//!   replica (see `renewals.rs`).
//! - Stored node records carry `revision = 0`; readers fill in the key's
//!   `mod_revision`.
//! - Removing a node removes its pods in the same transaction (see
//!   [`crate::objects::pods`]).
//! - A WireGuard public key or an underlay endpoint belongs to at most one
//!   node, by an index written in the same transactions (`claims`).

mod claims;
mod error;
mod join;
mod lease;
mod renewals;
mod tokens;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ipnet::IpNet;
use tokio::time::Instant;
use weft_proto::v1::{ClusterSettings, Node, NodeState};

pub use error::RegistryError;
pub use join::{JoinInput, Joined};
pub use lease::NodeUpdate;

use crate::config::Settings;
use crate::ipam::Allocations;
use crate::model::{self, ClusterRecord, CLUSTER_KEY, IPAM_PREFIX, NODES_PREFIX};
use crate::objects::Objects;
use crate::pki::Pki;
use crate::store::{Compare, KeyValue, Op, Revision, Store, Txn};

/// How many times a change is retried after losing a compare-and-swap race.
const MAX_ATTEMPTS: usize = 16;

/// The registry. Cheap to share behind an `Arc`.
pub struct Registry {
    store: Arc<dyn Store>,
    pki: Arc<Pki>,
    settings: Settings,
    /// Which node holds which CIDR, mirrored from `ipam/` keys.
    allocations: Mutex<Allocations>,
    /// Last lease renewal per node name.
    leases: Mutex<HashMap<String, Instant>>,
    /// Joins waiting to be committed in a batch (see `join.rs`).
    joins: join::JoinQueue,
    /// Whether renewals are written for other replicas (etcd store).
    shared_leases: bool,
    /// The cluster's Kubernetes objects.
    objects: Objects,
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Registry {
    /// Open the registry on a store: check (or record, on first start) the
    /// cluster's CIDRs, and load the allocations. A store created with other
    /// cluster CIDRs is refused with a message naming both.
    pub async fn open(
        store: Arc<dyn Store>,
        pki: Arc<Pki>,
        settings: Settings,
    ) -> Result<Registry, RegistryError> {
        let wanted = ClusterRecord {
            cluster_cidr: settings.pool.cluster(),
            node_cidr_prefix: settings.pool.node_prefix(),
            service_cidr: settings.service_cidr,
        };
        match store.get(CLUSTER_KEY).await? {
            Some(kv) => {
                let have: ClusterRecord = serde_json::from_slice(&kv.value).map_err(|e| {
                    RegistryError::Corrupt(format!("stored cluster settings are unreadable: {e}"))
                })?;
                if have != wanted {
                    return Err(RegistryError::Invalid(format!(
                        "this state dir holds a cluster created with --cluster-cidr {} --node-cidr-prefix {} --service-cidr {}; \
                         refusing to start with --cluster-cidr {} --node-cidr-prefix {} --service-cidr {} (nodes hold CIDRs from the old ones)",
                        have.cluster_cidr, have.node_cidr_prefix, have.service_cidr,
                        wanted.cluster_cidr, wanted.node_cidr_prefix, wanted.service_cidr
                    )));
                }
            }
            None => {
                let value = serde_json::to_vec(&wanted)
                    .map_err(|e| RegistryError::Corrupt(e.to_string()))?;
                store
                    .txn(Txn {
                        compares: vec![Compare::Absent {
                            key: CLUSTER_KEY.into(),
                        }],
                        ops: vec![Op::Put {
                            key: CLUSTER_KEY.into(),
                            value,
                        }],
                    })
                    .await?;
            }
        }
        let shared_leases = matches!(settings.store, crate::config::StoreChoice::Etcd(_));
        let registry = Registry {
            objects: Objects::new(store.clone(), &settings),
            allocations: Mutex::new(Allocations::new(settings.pool)),
            store,
            pki,
            settings,
            leases: Mutex::new(HashMap::new()),
            joins: join::JoinQueue::default(),
            shared_leases,
        };
        registry.reload_allocations().await?;
        registry.reconcile_claims().await?;
        registry.objects.ensure_system_namespaces().await?;
        Ok(registry)
    }

    /// The cluster's objects.
    pub fn objects(&self) -> &Objects {
        &self.objects
    }

    /// The store the registry writes to.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The PKI that signs node credentials.
    pub fn pki(&self) -> &Arc<Pki> {
        &self.pki
    }

    /// The checked settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// What node endpoints may not be: loopback unless allowed, and the
    /// control plane's own listen and advertise addresses.
    pub fn endpoint_rules(&self) -> model::EndpointRules {
        let s = &self.settings;
        let mut own = Vec::new();
        if !s.listen.ip().is_unspecified() {
            own.push(s.listen);
        }
        if let Ok(a) = s.advertise.parse::<std::net::SocketAddr>() {
            own.push(a);
        }
        for a in &mut own {
            *a = std::net::SocketAddr::new(a.ip().to_canonical(), a.port());
        }
        model::EndpointRules {
            allow_loopback: s.allow_loopback_endpoints,
            control_plane: own,
        }
    }

    /// The settings every node shares, as sent to nodes.
    pub fn cluster_settings(&self) -> ClusterSettings {
        let s = &self.settings;
        ClusterSettings {
            cluster_cidr: s.pool.cluster().to_string(),
            node_cidr_prefix: u32::from(s.pool.node_prefix()),
            service_cidr: s.service_cidr.to_string(),
            cluster_dns: s.cluster_dns.to_string(),
            cluster_domain: s.cluster_domain.clone(),
            lease_ttl_seconds: s.lease_ttl.as_secs() as u32,
            removal_grace_seconds: s.removal_grace.as_secs() as u32,
            wireguard_port: u32::from(s.wireguard_port),
        }
    }

    /// Rebuild the in-memory allocations from the store's `ipam/` keys.
    async fn reload_allocations(&self) -> Result<(), RegistryError> {
        let (kvs, _) = self.store.range(IPAM_PREFIX).await?;
        let mut fresh = Allocations::new(self.settings.pool);
        for kv in kvs {
            let cidr = kv.key[IPAM_PREFIX.len()..].parse::<IpNet>();
            let owner = String::from_utf8(kv.value.clone());
            match (cidr, owner) {
                (Ok(cidr), Ok(owner)) if fresh.record(&owner, cidr) => {}
                _ => tracing::warn!(key = %kv.key, "ignoring unusable CIDR allocation record"),
            }
        }
        *self.allocations.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }

    fn allocations(&self) -> std::sync::MutexGuard<'_, Allocations> {
        self.allocations.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn leases(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.leases.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One node by name, with its revision and lease age filled in.
    pub async fn get_node(&self, name: &str) -> Result<Option<(Node, KeyValue)>, RegistryError> {
        match self.store.get(&model::node_key(name)).await? {
            Some(kv) => Ok(Some((self.node_from_kv(&kv)?, kv))),
            None => Ok(None),
        }
    }

    /// Every node, sorted by name, and the revision they were read at.
    pub async fn list_nodes(&self) -> Result<(Vec<Node>, Revision), RegistryError> {
        let (kvs, rev) = self.store.range(NODES_PREFIX).await?;
        let nodes = kvs
            .iter()
            .map(|kv| self.node_from_kv(kv))
            .collect::<Result<_, _>>()?;
        Ok((nodes, rev))
    }

    /// Decode a stored node, filling in its revision and last renewal.
    pub fn node_from_kv(&self, kv: &KeyValue) -> Result<Node, RegistryError> {
        let mut node = decode_node_kv(kv)?;
        if let Some(at) = self.leases().get(&node.name) {
            let age = Instant::now().saturating_duration_since(*at);
            node.last_renewal_unix_ms = unix_ms() - age.as_millis() as i64;
        }
        Ok(node)
    }

    /// Remove a node now (admin or `Leave`): delete its record, its CIDR
    /// allocation and its key and endpoint claims in one transaction.
    /// `Ok(None)` if there is no such node.
    pub async fn remove_node(&self, name: &str, why: &str) -> Result<Option<Node>, RegistryError> {
        for _ in 0..MAX_ATTEMPTS {
            let Some((node, kv)) = self.get_node(name).await? else {
                return Ok(None);
            };
            let old = claims::claims_of_node(&node);
            let mut index = claims::IndexView::default();
            index.read(self.store.as_ref(), old.clone()).await?;
            let w = claims::plan(name, &old, &[], &index, &Default::default())?;
            let mut compares = vec![Compare::ModRevision {
                key: kv.key.clone(),
                revision: kv.mod_revision,
            }];
            compares.extend(w.compares);
            let mut ops = vec![
                Op::Delete {
                    key: kv.key.clone(),
                },
                Op::Delete {
                    key: model::lease_key(name),
                },
            ];
            ops.extend(w.ops);
            if let Ok(cidr) = node.pod_cidr.parse::<IpNet>() {
                ops.push(Op::Delete {
                    key: model::ipam_key(&cidr),
                });
            }
            // The node's pods go in the same transaction; when they are too
            // many for one, the surplus goes first in their own.
            let pods = self.objects.node_removal(name).await?.into_txn();
            let room = self
                .store
                .max_txn_ops()
                .saturating_sub(ops.len().max(compares.len()));
            if pods.ops.len() > room {
                self.objects
                    .shed_pods(name, pods.ops.len() - room + 1)
                    .await?;
                continue;
            }
            compares.extend(pods.compares);
            ops.extend(pods.ops);
            let out = self.store.txn(Txn { compares, ops }).await?;
            if out.succeeded {
                self.allocations().release(name);
                self.leases().remove(name);
                tracing::info!(node = %name, cidr = %node.pod_cidr, reason = why, "node removed");
                return Ok(Some(node));
            }
        }
        Err(RegistryError::Conflict(format!(
            "node {name} kept changing while it was being removed; retry"
        )))
    }

    /// Counts for cluster info: (total CIDRs, free CIDRs).
    pub fn cidr_counts(&self) -> (u64, u64) {
        let a = self.allocations();
        (a.pool().len(), a.free())
    }
}

/// Decode a stored node record and fill in its revision.
pub fn decode_node_kv(kv: &KeyValue) -> Result<Node, RegistryError> {
    let mut node = model::decode_node(&kv.value).map_err(|e| {
        RegistryError::Corrupt(format!("node record {} is unreadable: {e}", kv.key))
    })?;
    node.revision = kv.mod_revision;
    Ok(node)
}

/// Whether a node is Ready.
pub fn is_ready(node: &Node) -> bool {
    node.state == NodeState::Ready as i32
}
