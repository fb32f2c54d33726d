//! `Admin.DeleteObjects`: delete objects, with what goes with them.
//!
//! Contract:
//! - Deleting a Service deletes its allocation keys (its ClusterIPs and
//!   node ports are free again) and the EndpointSlices weft derived for it.
//! - Deleting a Namespace deletes every object in it (Kubernetes does it
//!   asynchronously; weft at once), pods included: their nodes' pod lists
//!   are updated, and the agents see the pods' DELETE events.
//! - Refused: Pods (their node's agent removes them), EndpointSlices the
//!   controller manages, and the `default` and `kube-system` namespaces
//!   (FAILED_PRECONDITION); objects that do not exist (NOT_FOUND) unless
//!   `ignore_not_found`.
//! - All of it is one transaction when the store takes that many
//!   operations in one (always with the embedded store). Otherwise (etcd's
//!   `--max-txn-ops`) the deleted namespaces are first marked
//!   `Terminating` (nothing new may be created in them, as in Kubernetes),
//!   then their contents go in several transactions, and the named objects
//!   last, in one. An interrupted deletion leaves the namespace
//!   Terminating; deleting it again finishes it.

use std::collections::{BTreeMap, BTreeSet};

use weft_objects::types::endpoint_slice::{LABEL_MANAGED_BY, LABEL_SERVICE_NAME, MANAGED_BY_WEFT};
use weft_objects::{Kind, Object};
use weft_proto::v1;

use super::{
    alloc, check_lookup_name, codec, keys, not_found, quote, Objects, Writes, DEFAULT_NAMESPACE,
    MAX_ATTEMPTS, SYSTEM_NAMESPACES,
};
use crate::registry::RegistryError;
use crate::store::{KeyValue, Revision};

/// One object to delete.
#[derive(Debug, Clone)]
pub struct Target {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl Target {
    /// A target from a request's fields (`namespace` empty: "default").
    pub fn new(kind: Kind, namespace: &str, name: &str) -> Result<Target, RegistryError> {
        let namespace = if !kind.namespaced() {
            String::new()
        } else if namespace.is_empty() {
            DEFAULT_NAMESPACE.to_string()
        } else {
            check_lookup_name("namespace", namespace)?;
            namespace.to_string()
        };
        check_lookup_name("name", name)?;
        Ok(Target {
            kind,
            namespace,
            name: name.to_string(),
        })
    }
}

impl Objects {
    /// Delete `targets` (see the module contract). Returns the deleted
    /// targets' last states and the revision after the call.
    pub async fn delete(
        &self,
        targets: &[Target],
        ignore_not_found: bool,
        dry_run: bool,
    ) -> Result<(Vec<v1::Object>, Revision), RegistryError> {
        for t in targets {
            refuse(t)?;
        }
        for _ in 0..MAX_ATTEMPTS {
            if let Some(done) = self.try_delete(targets, ignore_not_found, dry_run).await? {
                return Ok(done);
            }
        }
        Err(RegistryError::Conflict(
            "the objects kept changing while they were being deleted; retry".into(),
        ))
    }

    async fn try_delete(
        &self,
        targets: &[Target],
        ignore_not_found: bool,
        dry_run: bool,
    ) -> Result<Option<(Vec<v1::Object>, Revision)>, RegistryError> {
        let mut main = Writes::default();
        let mut deleted = Vec::new();
        let mut namespaces = Vec::new();
        let mut seen = BTreeSet::new();
        // Namespaces first: what they hold goes with them, so a named
        // object inside one is checked and reported but not deleted twice.
        let ordered = targets
            .iter()
            .filter(|t| t.kind == Kind::Namespace)
            .chain(targets.iter().filter(|t| t.kind != Kind::Namespace));
        for t in ordered {
            let key = keys::object_key(t.kind, &t.namespace, &t.name);
            if !seen.insert(key.clone()) {
                continue;
            }
            let Some(kv) = self.store.get(&key).await? else {
                if ignore_not_found {
                    continue;
                }
                return Err(not_found(t.kind, &t.name));
            };
            let obj = codec::decode(&kv)?;
            if let Object::EndpointSlice(es) = &obj {
                if es.metadata.labels.get(LABEL_MANAGED_BY).map(String::as_str)
                    == Some(MANAGED_BY_WEFT)
                {
                    return Err(RegistryError::FailedPrecondition(format!(
                        "endpointslice {} belongs to the control plane's controller: delete its Service instead",
                        quote(&t.name)
                    )));
                }
            }
            let cascaded = t.kind.namespaced() && namespaces.contains(&t.namespace);
            if !cascaded {
                main.unchanged_since(&key, kv.mod_revision);
                main.delete(&key);
                if let Object::Service(svc) = &obj {
                    self.service_leftovers(svc, &mut main).await?;
                }
            }
            if t.kind == Kind::Namespace {
                namespaces.push(t.name.clone());
            }
            deleted.push(codec::to_proto(&kv, kv.mod_revision)?);
        }
        let mut groups = Vec::new();
        for ns in &namespaces {
            groups.extend(self.namespace_contents(ns).await?);
        }
        let limit = self.store.max_txn_ops();
        let total = groups.iter().map(Writes::size).sum::<usize>() + main.size();
        if dry_run {
            return Ok(Some((deleted, self.store.revision().await?)));
        }
        if total <= limit {
            for g in groups {
                main.extend(g);
            }
            return Ok(self.commit(main).await?.map(|rev| (deleted, rev)));
        }
        // Too large for one transaction. First mark the namespaces
        // Terminating, so nothing new is created in them (Apply and
        // RegisterPod compare the namespace's revision), then plan again;
        // then delete their contents in batches, and the named objects last.
        let mut mark = Writes::default();
        for ns in &namespaces {
            let Some((mut obj, kv)) = self.get_typed(Kind::Namespace, "", ns).await? else {
                return Ok(None);
            };
            if !super::terminating(&obj) {
                if let Object::Namespace(n) = &mut obj {
                    n.status.phase = Some(weft_objects::values::NamespacePhase::Terminating);
                }
                mark.unchanged_since(&kv.key, kv.mod_revision);
                mark.put(&kv.key, codec::encode(&obj)?);
            }
        }
        if !mark.is_empty() {
            self.commit(mark).await?;
            return Ok(None);
        }
        let mut batch = Writes::default();
        for g in groups {
            if batch.size() + g.size() > limit
                && !batch.is_empty()
                && self.commit(std::mem::take(&mut batch)).await?.is_none()
            {
                return Ok(None);
            }
            batch.extend(g);
        }
        if !batch.is_empty() && self.commit(batch).await?.is_none() {
            return Ok(None);
        }
        Ok(self.commit(main).await?.map(|rev| (deleted, rev)))
    }

    /// A deleted Service's allocation keys and derived EndpointSlices.
    async fn service_leftovers(
        &self,
        svc: &weft_objects::Service,
        w: &mut Writes,
    ) -> Result<(), RegistryError> {
        for v in alloc::held(svc) {
            w.delete(&v.key());
        }
        let ns = &svc.metadata.namespace;
        let (slices, _) = self
            .list_typed(&keys::namespace_prefix(Kind::EndpointSlice, ns))
            .await?;
        for (obj, kv) in slices {
            let labels = &obj.meta().labels;
            if labels.get(LABEL_SERVICE_NAME) == Some(&svc.metadata.name)
                && labels.get(LABEL_MANAGED_BY).map(String::as_str) == Some(MANAGED_BY_WEFT)
            {
                w.delete(&kv.key);
            }
        }
        Ok(())
    }

    /// Everything in namespace `ns`, as groups that must commit together
    /// (an object with its allocation keys; a node's pods with its pod list).
    async fn namespace_contents(&self, ns: &str) -> Result<Vec<Writes>, RegistryError> {
        let mut groups = Vec::new();
        let mut pods_by_node: BTreeMap<String, Vec<KeyValue>> = BTreeMap::new();
        for kind in [
            Kind::Service,
            Kind::EndpointSlice,
            Kind::NetworkPolicy,
            Kind::Pod,
        ] {
            let (objects, _) = self.list_typed(&keys::namespace_prefix(kind, ns)).await?;
            for (obj, kv) in objects {
                match &obj {
                    Object::Pod(p) => pods_by_node
                        .entry(p.spec.node_name.clone())
                        .or_default()
                        .push(kv),
                    Object::Service(svc) => {
                        let mut w = Writes::default();
                        w.unchanged_since(&kv.key, kv.mod_revision);
                        w.delete(&kv.key);
                        for v in alloc::held(svc) {
                            w.delete(&v.key());
                        }
                        groups.push(w);
                    }
                    _ => {
                        let mut w = Writes::default();
                        w.unchanged_since(&kv.key, kv.mod_revision);
                        w.delete(&kv.key);
                        groups.push(w);
                    }
                }
            }
        }
        for (node, pods) in pods_by_node {
            let mut set = self.podset(&node).await?;
            let mut w = Writes::default();
            for kv in pods {
                if let Some((_, pns, name)) = keys::parse(&kv.key) {
                    set.pods.remove(&format!("{pns}/{name}"));
                }
                w.unchanged_since(&kv.key, kv.mod_revision);
                w.delete(&kv.key);
            }
            set.write(&node, &mut w);
            groups.push(w);
        }
        Ok(groups)
    }
}

/// Refusals that need no read.
fn refuse(t: &Target) -> Result<(), RegistryError> {
    match t.kind {
        Kind::Pod => Err(RegistryError::FailedPrecondition(format!(
            "pod {} cannot be deleted here: the agent of the node that runs it removes it (CNI DEL, or `weftctl pod del` on that node); removing the node removes its pods",
            quote(&t.name)
        ))),
        Kind::Node => Err(super::invalid(
            "nodes are weft's own records, not objects: remove a node with RemoveNode",
        )),
        Kind::Namespace if SYSTEM_NAMESPACES.contains(&t.name.as_str()) => {
            Err(RegistryError::FailedPrecondition(format!(
                "namespaces {} is forbidden: this namespace may not be deleted",
                quote(&t.name)
            )))
        }
        _ => Ok(()),
    }
}
