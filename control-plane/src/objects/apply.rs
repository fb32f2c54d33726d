//! `Admin.Apply`: create or update objects from manifests, all or nothing.
//!
//! Contract:
//! - Each document is parsed strictly (`weft_objects::parse_manifests`; a
//!   `List` expands), put into the request's namespace when it names none,
//!   defaulted, and validated as a create or, when the object exists, as an
//!   update of it (immutable fields, the allocated values kept).
//! - Apply merges as `kubectl apply` does ([`super::merge`]): the manifest
//!   is recorded in the `kubectl.kubernetes.io/last-applied-configuration`
//!   annotation; on the next apply, fields the manifest sets are set,
//!   fields the last manifest set and this one leaves out are removed
//!   (they return to their defaults), and fields set by others (labels
//!   from `weftctl label`) stay. The control plane keeps what it owns:
//!   uid, creationTimestamp, generation (bumped when the spec changes),
//!   allocated ClusterIPs and node ports, and `status` (a Service's
//!   load-balancer ingress is the controller's).
//! - An object whose stored form would not change is `Unchanged` and not
//!   written.
//! - Refused before anything is read: Pods (agents register them),
//!   EndpointSlices labelled as the controller's, the same object twice.
//!   Refused after reading: an object in a namespace that neither exists
//!   nor is in the request (NOT_FOUND), invalid objects (every error of
//!   every object, each as `documents[i]: <Kubernetes' message>`, joined
//!   by `; `), taken or exhausted allocations.
//! - Everything, allocation keys included, is written in one transaction
//!   that compares every key it read, so a concurrent change makes it
//!   retry on fresh data; a request needing more operations than the store
//!   takes in one transaction is refused.

use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;
use weft_objects::types::endpoint_slice::{LABEL_MANAGED_BY, MANAGED_BY_WEFT};
use weft_objects::validation::{self, Invalid};
use weft_objects::{defaults, Kind, Object};

use super::alloc::{self, AllocError, Taken, Value};
use super::{
    codec, invalid, keys, merge, quote, system, Objects, Writes, DEFAULT_NAMESPACE, MAX_ATTEMPTS,
};
use crate::registry::RegistryError;
use crate::store::{KeyValue, Revision};

/// What an apply did to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Created,
    Configured,
    Unchanged,
}

/// One object's outcome: what was done, and the object as stored (its
/// resourceVersion set).
#[derive(Debug, Clone)]
pub struct Applied {
    pub action: Action,
    pub object: Object,
}

/// One parsed object of the request, with where it came from.
struct Requested {
    document: usize,
    key: String,
    /// The object as the manifest gives it, defaulted.
    object: Object,
    /// The manifest (namespace filled in, not defaulted), as JSON: what
    /// the merge applies and the annotation records.
    manifest: serde_json::Value,
}

impl Objects {
    /// Apply `documents` (see the module contract). Returns each object's
    /// outcome in request order and the store revision after the call.
    pub async fn apply(
        &self,
        documents: &[Bytes],
        namespace: &str,
        dry_run: bool,
    ) -> Result<(Vec<Applied>, Revision), RegistryError> {
        let requested = parse(documents, namespace)?;
        for _ in 0..MAX_ATTEMPTS {
            if let Some(done) = self.try_apply(&requested, dry_run).await? {
                return Ok(done);
            }
        }
        Err(RegistryError::Conflict(
            "the objects kept changing while they were being applied; retry".into(),
        ))
    }

    /// One attempt: `None` if a compare failed.
    async fn try_apply(
        &self,
        requested: &[Requested],
        dry_run: bool,
    ) -> Result<Option<(Vec<Applied>, Revision)>, RegistryError> {
        let mut w = Writes::default();
        let mut olds: Vec<Option<(Object, KeyValue)>> = Vec::with_capacity(requested.len());
        for r in requested {
            let old = match self.store.get(&r.key).await? {
                Some(kv) => Some((codec::decode(&kv)?, kv)),
                None => None,
            };
            w.unchanged_since(&r.key, old.as_ref().map_or(0, |(_, kv)| kv.mod_revision));
            olds.push(old);
        }
        let terminating = self.check_namespaces(requested, &mut w).await?;

        let mut taken = if requested.iter().any(|r| r.object.kind() == Kind::Service) {
            self.read_taken().await?
        } else {
            Taken::default()
        };
        // StdRng, not ThreadRng: the future must stay Send.
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_entropy();
        let mut failures: Vec<String> = Vec::new();
        let mut exhausted = None;
        let mut results = Vec::with_capacity(requested.len());
        for (r, old) in requested.iter().zip(&olds) {
            let mut obj = r.object.clone();
            let old_obj = old.as_ref().map(|(o, _)| o);
            if let (Some(o), Some((_, kv))) = (old_obj, old) {
                let given = &r.object.meta().resource_version;
                if !given.is_empty() && *given != kv.mod_revision.to_string() {
                    return Err(RegistryError::Conflict(format!(
                        "Operation cannot be fulfilled on {} {}: the object has been modified; please apply your changes to the latest version and try again",
                        o.kind().plural(),
                        quote(o.name())
                    )));
                }
                if let Err(e) = refuse_managed_slice(o) {
                    failures.push(format!("documents[{}]: {e}", r.document));
                    continue;
                }
                obj = match merged(o, &r.manifest) {
                    Ok(m) => m,
                    Err(e) => {
                        failures.push(format!("documents[{}]: {e}", r.document));
                        continue;
                    }
                };
                defaults::prepare_update(&mut obj, o);
                keep_status(&mut obj, o);
            }
            if old_obj.is_none() && terminating.contains(obj.namespace()) {
                return Err(super::terminating_refusal(
                    obj.kind(),
                    obj.name(),
                    obj.namespace(),
                ));
            }
            let checked = match old_obj {
                Some(o) => validation::validate_update(&obj, o, &self.validation),
                None => validation::validate(&obj, &self.validation),
            };
            if let Err(e) = checked {
                failures.push(format!("documents[{}]: {e}", r.document));
                continue;
            }
            if let Object::Service(svc) = &mut obj {
                let old_svc = match old_obj {
                    Some(Object::Service(s)) => Some(s),
                    _ => None,
                };
                match alloc::allocate(svc, old_svc, &self.ranges, &mut taken, &mut rng) {
                    Ok(plan) => {
                        let owner = format!("{}/{}", svc.metadata.namespace, svc.metadata.name);
                        for v in &plan.claim {
                            w.create(&v.key(), owner.clone().into_bytes());
                        }
                        for v in &plan.release {
                            w.delete(&v.key());
                        }
                    }
                    Err(AllocError::Taken(errors)) => {
                        let e = Invalid {
                            kind: Kind::Service,
                            name: svc.metadata.name.clone(),
                            errors,
                        };
                        failures.push(format!("documents[{}]: {e}", r.document));
                        continue;
                    }
                    Err(AllocError::Exhausted(e)) => {
                        exhausted = Some(e);
                        continue;
                    }
                }
            }
            let (action, obj) = finish(obj, old.as_ref())?;
            if action != Action::Unchanged {
                w.put(&r.key, codec::encode(&obj)?);
            }
            results.push(Applied {
                action,
                object: obj,
            });
        }
        if !failures.is_empty() {
            return Err(invalid(failures.join("; ")));
        }
        if let Some(e) = exhausted {
            return Err(RegistryError::Exhausted(e.to_string()));
        }
        let limit = self.store.max_txn_ops();
        if w.size() > limit {
            return Err(invalid(format!(
                "this apply needs {} store operations in one transaction and the store takes at most {limit}: apply the objects in smaller groups",
                w.size()
            )));
        }
        let revision = if dry_run || w.is_empty() {
            self.store.revision().await?
        } else {
            let out = self.store.txn(w.into_txn()).await?;
            if !out.succeeded {
                return Ok(None);
            }
            out.revision
        };
        for (r, old) in results.iter_mut().zip(&olds) {
            let rv = match (r.action, old) {
                (Action::Unchanged, Some((_, kv))) => kv.mod_revision,
                _ => revision,
            };
            r.object.meta_mut().resource_version = rv.to_string();
        }
        Ok(Some((results, revision)))
    }

    /// Every namespace the request's namespaced objects live in must exist
    /// or be created by the request; the transaction checks they still do
    /// (and are not marked for deletion meanwhile). Returns the ones being
    /// deleted.
    async fn check_namespaces(
        &self,
        requested: &[Requested],
        w: &mut Writes,
    ) -> Result<BTreeSet<String>, RegistryError> {
        let mut terminating = BTreeSet::new();
        let created: BTreeSet<&str> = requested
            .iter()
            .filter(|r| r.object.kind() == Kind::Namespace)
            .map(|r| r.object.name())
            .collect();
        let needed: BTreeSet<&str> = requested
            .iter()
            .filter(|r| r.object.kind().namespaced())
            .map(|r| r.object.namespace())
            .filter(|ns| !created.contains(ns))
            .collect();
        for ns in needed {
            let key = keys::namespace_key(ns);
            match self.store.get(&key).await? {
                Some(kv) => {
                    if super::terminating(&codec::decode(&kv)?) {
                        terminating.insert(ns.to_string());
                    }
                    w.unchanged_since(&key, kv.mod_revision);
                }
                None => {
                    return Err(RegistryError::NotFound(format!(
                        "namespaces {} not found",
                        quote(ns)
                    )))
                }
            }
        }
        Ok(terminating)
    }

    /// Every allocated ClusterIP and node port, and who holds it.
    pub(super) async fn read_taken(&self) -> Result<Taken, RegistryError> {
        let mut taken = Taken::default();
        for prefix in [alloc::CLUSTER_IP_PREFIX, alloc::NODE_PORT_PREFIX] {
            let (kvs, _) = self.store.range(prefix).await?;
            for kv in kvs {
                match Value::from_key(&kv.key) {
                    Some(v) => taken.insert(v, String::from_utf8_lossy(&kv.value).into_owned()),
                    None => tracing::warn!(key = %kv.key, "ignoring an unreadable allocation key"),
                }
            }
        }
        Ok(taken)
    }
}

/// Parse every document into objects ready for validation.
fn parse(documents: &[Bytes], namespace: &str) -> Result<Vec<Requested>, RegistryError> {
    let namespace = if namespace.is_empty() {
        DEFAULT_NAMESPACE
    } else {
        namespace
    };
    let mut out: Vec<Requested> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, doc) in documents.iter().enumerate() {
        let text = std::str::from_utf8(doc)
            .map_err(|e| invalid(format!("documents[{i}]: not UTF-8 text: {e}")))?;
        let objects = weft_objects::parse_manifests(text)
            .map_err(|e| invalid(format!("documents[{i}]: {e}")))?;
        for mut obj in objects {
            match &obj {
                Object::Pod(p) => {
                    return Err(invalid(format!(
                        "documents[{i}]: pod {}: pods cannot be applied: a pod is registered by the agent of the node that runs it (CNI, or `weftctl pod add` on that node); `weftctl label pod` changes its labels",
                        quote(&p.metadata.name)
                    )))
                }
                other => refuse_managed_slice(other)
                    .map_err(|e| invalid(format!("documents[{i}]: {e}")))?,
            }
            defaults::fill_namespace(&mut obj, namespace);
            if obj.name().is_empty() || obj.name().contains('/') || obj.namespace().contains('/') {
                // Validation words it; keys must not be built from it.
                let errs = validation::errors(&obj, &Default::default());
                return Err(invalid(format!(
                    "documents[{i}]: {}",
                    validation::invalid_message(obj.kind(), obj.name(), &errs)
                )));
            }
            let key = keys::object_key(obj.kind(), obj.namespace(), obj.name());
            let manifest = weft_objects::manifest::to_json_value(&obj)
                .map_err(|e| invalid(format!("documents[{i}]: {e}")))?;
            defaults::apply(&mut obj);
            obj.meta_mut()
                .annotations
                .insert(merge::LAST_APPLIED.into(), merge::recorded(&manifest));
            if let Some(first) = seen.insert(key.clone(), i) {
                return Err(invalid(format!(
                    "documents[{first}] and documents[{i}] both describe {} {}: give each object once",
                    obj.kind().resource(),
                    quote(format!("{}/{}", obj.namespace(), obj.name()).trim_start_matches('/'))
                )));
            }
            out.push(Requested {
                document: i,
                key,
                object: obj,
                manifest,
            });
        }
    }
    Ok(out)
}

/// Refuse an EndpointSlice managed by weft's controller.
fn refuse_managed_slice(obj: &Object) -> Result<(), String> {
    if let Object::EndpointSlice(es) = obj {
        if es.metadata.labels.get(LABEL_MANAGED_BY).map(String::as_str) == Some(MANAGED_BY_WEFT) {
            return Err(format!(
                "endpointslice {}: EndpointSlices labelled {LABEL_MANAGED_BY}={MANAGED_BY_WEFT} belong to the control plane's controller and cannot be applied or deleted; they follow their Service and its pods",
                quote(&es.metadata.name)
            ));
        }
    }
    Ok(())
}

/// The stored object `live` with `manifest` merged in (see [`merge`]),
/// defaulted, recording `manifest` as the last applied one.
fn merged(live: &Object, manifest: &serde_json::Value) -> Result<Object, String> {
    let live_json = weft_objects::manifest::to_json_value(live).map_err(|e| e.to_string())?;
    let last = merge::last_applied(&live_json);
    let mut value = merge::three_way(&live_json, last.as_ref(), manifest);
    if let Some(md) = value.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        // What the control plane sets is not the manifest's to give.
        md.remove("resourceVersion");
        md.remove("managedFields");
    }
    let mut objects =
        weft_objects::parse_manifests(&value.to_string()).map_err(|e| e.to_string())?;
    if objects.len() != 1 {
        return Err(format!("the merged object is {} objects", objects.len()));
    }
    let mut obj = objects.remove(0);
    defaults::apply(&mut obj);
    obj.meta_mut()
        .annotations
        .insert(merge::LAST_APPLIED.into(), merge::recorded(manifest));
    Ok(obj)
}

/// The status the control plane owns survives an apply.
fn keep_status(new: &mut Object, old: &Object) {
    match (new, old) {
        (Object::Service(n), Object::Service(o)) => n.status = o.status.clone(),
        (Object::Namespace(n), Object::Namespace(o)) => n.status = o.status.clone(),
        _ => {}
    }
}

/// Stamp a created object, or bump an updated one's generation when its
/// spec changed; and say whether anything changed.
fn finish(
    mut obj: Object,
    old: Option<&(Object, KeyValue)>,
) -> Result<(Action, Object), RegistryError> {
    let Some((old_obj, kv)) = old else {
        system::stamp_new(&mut obj);
        return Ok((Action::Created, obj));
    };
    obj.meta_mut().generation = old_obj.meta().generation;
    obj.meta_mut().resource_version.clear();
    let same = codec::encode(&obj)? == kv.value;
    if same {
        return Ok((Action::Unchanged, obj));
    }
    if spec_of(&obj)? != spec_of(old_obj)? {
        obj.meta_mut().generation = old_obj.meta().generation + 1;
    }
    Ok((Action::Configured, obj))
}

fn spec_of(obj: &Object) -> Result<serde_json::Value, RegistryError> {
    let v = weft_objects::manifest::to_json_value(obj)
        .map_err(|e| RegistryError::Corrupt(e.to_string()))?;
    Ok(v.get("spec").cloned().unwrap_or(serde_json::Value::Null))
}
