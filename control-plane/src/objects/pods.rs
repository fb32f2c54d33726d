//! Pods, as node agents register them (`Cluster.RegisterPod`,
//! `UnregisterPod`, `SyncPods`), and the removal of a node's pods with the
//! node.
//!
//! Contract:
//! - A node registers only pods whose `spec.nodeName` is itself (an empty
//!   one is filled in), and only under a name no other node's pod holds
//!   (PERMISSION_DENIED otherwise).
//! - A pod in a namespace that does not exist creates it, in the same
//!   transaction: the pod already runs, so its namespace must exist.
//! - Registering a pod that exists with the same spec updates it: its
//!   status, addresses and annotations come from the registration, its
//!   labels stay as stored (after creation an admin's `LabelObject` owns
//!   them). A different spec replaces the pod: a new uid and creation time.
//! - `podsets/<node>` lists each node's pods (`<ns>/<name>`, JSON). Every
//!   write that adds or removes a pod updates it in the same transaction,
//!   comparing its revision, so removing a node deletes exactly its pods in
//!   the transaction that deletes the node ([`Objects::node_removal`]).

use std::collections::BTreeSet;

use bytes::Bytes;
use weft_objects::validation;
use weft_objects::{defaults, Kind, Namespace, Object, Pod};

use super::{
    check_lookup_name, codec, invalid, keys, quote, system, Action, Applied, Objects, Writes,
    DEFAULT_NAMESPACE, MAX_ATTEMPTS,
};
use crate::model;
use crate::registry::RegistryError;
use crate::store::Revision;

/// A node's pods: `<ns>/<name>` entries, and the revision of its key.
#[derive(Debug, Clone, Default)]
pub struct PodSet {
    pub pods: BTreeSet<String>,
    pub revision: Revision,
}

fn member(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

impl PodSet {
    fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&self.pods).unwrap_or_default()
    }

    /// Write this set (or delete the key when empty) in `w`, comparing the
    /// revision it was read at.
    pub fn write(&self, node: &str, w: &mut Writes) {
        let key = keys::podset_key(node);
        w.unchanged_since(&key, self.revision);
        if self.pods.is_empty() {
            w.delete(&key);
        } else {
            w.put(&key, self.encode());
        }
    }
}

impl Objects {
    /// The pods of `node`.
    pub async fn podset(&self, node: &str) -> Result<PodSet, RegistryError> {
        let key = keys::podset_key(node);
        match self.store.get(&key).await? {
            None => Ok(PodSet::default()),
            Some(kv) => Ok(PodSet {
                pods: serde_json::from_slice(&kv.value).map_err(|e| {
                    RegistryError::Corrupt(format!("pod list {key} is unreadable: {e}"))
                })?,
                revision: kv.mod_revision,
            }),
        }
    }

    /// Register (or update) one pod of `node`.
    pub async fn register_pod(
        &self,
        node: &str,
        doc: &[u8],
    ) -> Result<(Applied, Revision), RegistryError> {
        let pod = parse_pod(node, doc, "pod")?;
        for _ in 0..MAX_ATTEMPTS {
            let mut w = Writes::default();
            self.node_must_exist(node, &mut w).await?;
            let mut set = self.podset(node).await?;
            let applied = self
                .plan_register(node, pod.clone(), &mut set, &mut w)
                .await?;
            set.write(node, &mut w);
            match self.commit(w).await? {
                Some(rev) => return Ok((stamp(applied, rev), rev)),
                None => continue,
            }
        }
        Err(conflict())
    }

    /// Unregister one pod of `node`. `false` if it was not registered.
    pub async fn unregister_pod(
        &self,
        node: &str,
        namespace: &str,
        name: &str,
    ) -> Result<(bool, Revision), RegistryError> {
        let namespace = if namespace.is_empty() {
            DEFAULT_NAMESPACE
        } else {
            namespace
        };
        check_lookup_name("namespace", namespace)?;
        check_lookup_name("name", name)?;
        for _ in 0..MAX_ATTEMPTS {
            let Some((obj, kv)) = self.get_typed(Kind::Pod, namespace, name).await? else {
                return Ok((false, self.store.revision().await?));
            };
            own_pod(node, &obj)?;
            let mut set = self.podset(node).await?;
            set.pods.remove(&member(namespace, name));
            let mut w = Writes::default();
            w.unchanged_since(&kv.key, kv.mod_revision);
            w.delete(&kv.key);
            set.write(node, &mut w);
            if let Some(rev) = self.commit(w).await? {
                return Ok((true, rev));
            }
        }
        Err(conflict())
    }

    /// Make `docs` the whole pod set of `node`: register each, remove the
    /// node's other pods. Returns each pod's outcome, the removed pods
    /// (`(ns, name)`), and the revision after the call.
    pub async fn sync_pods(
        &self,
        node: &str,
        docs: &[Bytes],
    ) -> Result<(Vec<Applied>, Vec<(String, String)>, Revision), RegistryError> {
        let mut pods = Vec::with_capacity(docs.len());
        let mut names = BTreeSet::new();
        for (i, doc) in docs.iter().enumerate() {
            let pod = parse_pod(node, doc, &format!("pods[{i}]"))?;
            if !names.insert(member(&pod.metadata.namespace, &pod.metadata.name)) {
                return Err(invalid(format!(
                    "pods[{i}]: pod {} is listed twice",
                    quote(&member(&pod.metadata.namespace, &pod.metadata.name))
                )));
            }
            pods.push(pod);
        }
        for _ in 0..MAX_ATTEMPTS {
            let mut w = Writes::default();
            self.node_must_exist(node, &mut w).await?;
            let mut set = self.podset(node).await?;
            let mut results = Vec::with_capacity(pods.len());
            for pod in &pods {
                results.push(
                    self.plan_register(node, pod.clone(), &mut set, &mut w)
                        .await?,
                );
            }
            let gone: Vec<String> = set.pods.difference(&names).cloned().collect();
            let mut removed = Vec::new();
            for m in gone {
                let Some((ns, name)) = m.split_once('/') else {
                    continue;
                };
                let key = keys::object_key(Kind::Pod, ns, name);
                if let Some(kv) = self.store.get(&key).await? {
                    w.unchanged_since(&key, kv.mod_revision);
                    w.delete(&key);
                }
                set.pods.remove(&m);
                removed.push((ns.to_string(), name.to_string()));
            }
            set.write(node, &mut w);
            if w.size() > self.store.max_txn_ops() {
                return Err(invalid(format!(
                    "this sync needs {} store operations in one transaction and the store takes at most {}: register the pods one by one with RegisterPod",
                    w.size(),
                    self.store.max_txn_ops()
                )));
            }
            if let Some(rev) = self.commit(w).await? {
                let results = results.into_iter().map(|a| stamp(a, rev)).collect();
                return Ok((results, removed, rev));
            }
        }
        Err(conflict())
    }

    /// The writes that delete every pod of `node` and its pod list, with
    /// compares that fail if the list changes meanwhile. For the
    /// transaction that removes the node.
    pub async fn node_removal(&self, node: &str) -> Result<Writes, RegistryError> {
        let set = self.podset(node).await?;
        let mut w = Writes::default();
        let key = keys::podset_key(node);
        w.unchanged_since(&key, set.revision);
        if set.revision != 0 {
            w.delete(&key);
        }
        for m in &set.pods {
            if let Some((ns, name)) = m.split_once('/') {
                w.delete(&keys::object_key(Kind::Pod, ns, name));
            }
        }
        Ok(w)
    }

    /// Delete up to `count` of `node`'s pods in a transaction of their own
    /// (before a removal of a node with more pods than one transaction
    /// takes). A lost race is left to the caller's retry.
    pub async fn shed_pods(&self, node: &str, count: usize) -> Result<(), RegistryError> {
        let mut set = self.podset(node).await?;
        let victims: Vec<String> = set.pods.iter().take(count).cloned().collect();
        let mut w = Writes::default();
        for m in &victims {
            if let Some((ns, name)) = m.split_once('/') {
                w.delete(&keys::object_key(Kind::Pod, ns, name));
            }
            set.pods.remove(m);
        }
        set.write(node, &mut w);
        self.commit(w).await?;
        Ok(())
    }

    /// The node record must exist (and still exist when the transaction runs).
    async fn node_must_exist(&self, node: &str, w: &mut Writes) -> Result<(), RegistryError> {
        let key = model::node_key(node);
        if self.store.get(&key).await?.is_none() {
            return Err(RegistryError::NotFound(format!(
                "node {} is not in the cluster (it left, was removed, or expired); join again",
                quote(node)
            )));
        }
        w.exists(&key);
        Ok(())
    }

    /// Plan one pod's registration into `w` and `set`.
    async fn plan_register(
        &self,
        node: &str,
        mut pod: Pod,
        set: &mut PodSet,
        w: &mut Writes,
    ) -> Result<Applied, RegistryError> {
        let ns = pod.metadata.namespace.clone();
        let name = pod.metadata.name.clone();
        let key = keys::object_key(Kind::Pod, &ns, &name);
        let old = self.get_typed(Kind::Pod, &ns, &name).await?;
        w.unchanged_since(&key, old.as_ref().map_or(0, |(_, kv)| kv.mod_revision));
        let ns_key = keys::namespace_key(&ns);
        if !w.writes(&ns_key) {
            match self.store.get(&ns_key).await? {
                Some(kv) => {
                    if old.is_none() && super::terminating(&codec::decode(&kv)?) {
                        return Err(super::terminating_refusal(Kind::Pod, &name, &ns));
                    }
                    w.unchanged_since(&ns_key, kv.mod_revision)
                }
                None => {
                    let mut obj = Object::Namespace(Namespace::new(&ns));
                    defaults::apply(&mut obj);
                    system::stamp_new(&mut obj);
                    w.create(&ns_key, codec::encode(&obj)?);
                    tracing::info!(namespace = %ns, node = %node, "namespace created for a registered pod");
                }
            }
        }
        let applied = match old {
            Some((Object::Pod(old_pod), kv)) => {
                own_pod(node, &Object::Pod(old_pod.clone()))?;
                if old_pod.spec == pod.spec {
                    pod.metadata.labels = old_pod.metadata.labels.clone();
                    let mut obj = Object::Pod(pod);
                    let old_obj = Object::Pod(old_pod);
                    defaults::prepare_update(&mut obj, &old_obj);
                    obj.meta_mut().resource_version.clear();
                    checked(validation::validate_update(
                        &obj,
                        &old_obj,
                        &self.validation,
                    ))?;
                    if codec::encode(&obj)? == kv.value {
                        obj.meta_mut().resource_version = kv.mod_revision.to_string();
                        Applied {
                            action: Action::Unchanged,
                            object: obj,
                        }
                    } else {
                        w.put(&key, codec::encode(&obj)?);
                        Applied {
                            action: Action::Configured,
                            object: obj,
                        }
                    }
                } else {
                    let mut obj = Object::Pod(pod);
                    checked(validation::validate(&obj, &self.validation))?;
                    system::stamp_new(&mut obj);
                    w.put(&key, codec::encode(&obj)?);
                    Applied {
                        action: Action::Configured,
                        object: obj,
                    }
                }
            }
            _ => {
                let mut obj = Object::Pod(pod);
                checked(validation::validate(&obj, &self.validation))?;
                system::stamp_new(&mut obj);
                w.put(&key, codec::encode(&obj)?);
                Applied {
                    action: Action::Created,
                    object: obj,
                }
            }
        };
        set.pods.insert(member(&ns, &name));
        Ok(applied)
    }

    /// Commit `w`; `None` if a compare failed.
    pub(super) async fn commit(&self, w: Writes) -> Result<Option<Revision>, RegistryError> {
        let out = self.store.txn(w.into_txn()).await?;
        Ok(out.succeeded.then_some(out.revision))
    }
}

/// Set the revision of a just-written object.
fn stamp(mut a: Applied, rev: Revision) -> Applied {
    if a.action != Action::Unchanged {
        a.object.meta_mut().resource_version = rev.to_string();
    }
    a
}

fn conflict() -> RegistryError {
    RegistryError::Conflict("the node's pods kept changing; retry".into())
}

fn checked(r: Result<(), validation::Invalid>) -> Result<(), RegistryError> {
    r.map_err(|e| invalid(e.to_string()))
}

/// The pod must be on `node`.
fn own_pod(node: &str, obj: &Object) -> Result<(), RegistryError> {
    if let Object::Pod(p) = obj {
        if p.spec.node_name != node {
            return Err(RegistryError::PermissionDenied(format!(
                "pod {} is registered by node {}; node {} may only register and remove its own pods",
                quote(&member(&p.metadata.namespace, &p.metadata.name)),
                quote(&p.spec.node_name),
                quote(node)
            )));
        }
    }
    Ok(())
}

/// Parse one pod document of `node`, defaulted, namespace filled in.
fn parse_pod(node: &str, doc: &[u8], what: &str) -> Result<Pod, RegistryError> {
    let text =
        std::str::from_utf8(doc).map_err(|e| invalid(format!("{what}: not UTF-8 text: {e}")))?;
    let mut objects =
        weft_objects::parse_manifests(text).map_err(|e| invalid(format!("{what}: {e}")))?;
    if objects.len() != 1 {
        return Err(invalid(format!(
            "{what}: expected one Pod, found {} objects",
            objects.len()
        )));
    }
    let mut obj = objects.remove(0);
    let Object::Pod(_) = &obj else {
        return Err(invalid(format!(
            "{what}: expected a Pod, found a {}",
            obj.kind().kind_name()
        )));
    };
    defaults::fill_namespace(&mut obj, DEFAULT_NAMESPACE);
    defaults::apply(&mut obj);
    let Object::Pod(mut pod) = obj else {
        return Err(invalid(format!("{what}: expected a Pod")));
    };
    if pod.spec.node_name.is_empty() {
        pod.spec.node_name = node.to_string();
    }
    if pod.spec.node_name != node {
        return Err(RegistryError::PermissionDenied(format!(
            "{what}: spec.nodeName is {}; node {} may only register its own pods",
            quote(&pod.spec.node_name),
            quote(node)
        )));
    }
    if pod.metadata.name.is_empty()
        || pod.metadata.name.contains('/')
        || pod.metadata.namespace.contains('/')
    {
        let errs = validation::errors(&Object::Pod(pod.clone()), &Default::default());
        return Err(invalid(format!(
            "{what}: {}",
            validation::invalid_message(Kind::Pod, &pod.metadata.name, &errs)
        )));
    }
    // A namespace the pod would create must be a valid name.
    let ns_errs = validation::validate_namespace(&Namespace::new(&pod.metadata.namespace));
    if !ns_errs.is_empty() {
        return Err(invalid(format!(
            "{what}: metadata.namespace: {}",
            validation::invalid_message(Kind::Namespace, &pod.metadata.namespace, &ns_errs)
        )));
    }
    Ok(pod)
}
