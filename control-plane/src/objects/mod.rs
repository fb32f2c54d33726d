//! The cluster's Kubernetes objects in the store: applying, reading,
//! labelling and deleting them (admins), registering pods (agents), and
//! the ClusterIP / node-port allocation that goes with Services.
//!
//! Contract:
//! - Keys: see [`keys`]; values: see [`codec`] (the object's JSON, its
//!   revision being the key's `mod_revision`).
//! - Every call is validated with `weft_objects` before anything is
//!   written (Kubernetes' defaulting, validation and messages); nothing
//!   invalid is stored, and a refused call writes nothing.
//! - Every change is one compare-and-swap transaction that also holds what
//!   goes with it: allocation keys, the namespace a pod creates, the
//!   node's pod list. A lost race is retried against fresh data at most
//!   [`MAX_ATTEMPTS`] times. Only a change larger than the store allows in
//!   one transaction (etcd's `--max-txn-ops`) is split, and only for
//!   deletions and pod syncs; an `Apply` that large is refused.
//! - The `default` and `kube-system` namespaces always exist.
//!
//! Files: `keys.rs`, `codec.rs`, `system.rs` (uid, timestamps), `alloc/`,
//! `writes.rs` (transaction building), `apply.rs`, `read.rs`, `delete.rs`,
//! `label.rs`, `pods.rs` (agents' pods and node removal).

pub mod alloc;
mod apply;
pub mod codec;
mod delete;
pub mod keys;
mod label;
pub mod merge;
pub mod pods;
mod read;
pub mod system;
mod writes;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use weft_objects::validation::{NodePortRange, ValidationContext};
use weft_objects::{Kind, Namespace, Object};

pub use apply::{Action, Applied};
pub use delete::Target;
pub use read::Selection;
pub use writes::Writes;

use crate::config::Settings;
use crate::registry::RegistryError;
use crate::store::{KeyValue, Revision, Store};
use crate::untrusted::untrusted;

/// How many times a change is retried after losing a compare-and-swap race.
pub const MAX_ATTEMPTS: usize = 16;
/// Namespaces that always exist and may not be deleted.
pub const SYSTEM_NAMESPACES: [&str; 2] = ["default", "kube-system"];
/// The namespace of namespaced objects that name none.
pub const DEFAULT_NAMESPACE: &str = "default";
/// The longest error message sent back (validation may list many errors).
const MAX_MESSAGE: usize = 4096;

/// The objects in a store, with the cluster settings they are checked
/// against. Cheap to share.
pub struct Objects {
    store: Arc<dyn Store>,
    ranges: alloc::Ranges,
    validation: ValidationContext,
}

impl Objects {
    /// Objects in `store`, for a cluster with `settings`.
    pub fn new(store: Arc<dyn Store>, settings: &Settings) -> Self {
        let node_ports = NodePortRange {
            first: *settings.node_port_range.start(),
            last: *settings.node_port_range.end(),
        };
        let first = first_service_ip(&settings.service_cidr);
        let mut reserved = vec![settings.cluster_dns];
        reserved.extend(first);
        Objects {
            store,
            ranges: alloc::Ranges {
                service_cidr: settings.service_cidr,
                reserved,
                node_ports,
            },
            validation: ValidationContext {
                service_cidrs: vec![settings.service_cidr],
                node_ports,
            },
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The settings objects are validated against.
    pub fn validation(&self) -> &ValidationContext {
        &self.validation
    }

    /// Create the system namespaces that do not exist yet.
    pub async fn ensure_system_namespaces(&self) -> Result<(), RegistryError> {
        for name in SYSTEM_NAMESPACES {
            let mut w = Writes::default();
            let key = keys::namespace_key(name);
            let mut ns = Object::Namespace(Namespace::new(name));
            weft_objects::defaults::apply(&mut ns);
            system::stamp_new(&mut ns);
            w.create(&key, codec::encode(&ns)?);
            // Losing the race to another replica is fine: it exists then.
            self.store.txn(w.into_txn()).await?;
        }
        Ok(())
    }

    /// One stored object (typed), with its key/value.
    pub async fn get_typed(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<(Object, KeyValue)>, RegistryError> {
        match self
            .store
            .get(&keys::object_key(kind, namespace, name))
            .await?
        {
            Some(kv) => Ok(Some((codec::decode(&kv)?, kv))),
            None => Ok(None),
        }
    }

    /// Every object of `kind` under `prefix`, typed, and the revision read at.
    pub async fn list_typed(
        &self,
        prefix: &str,
    ) -> Result<(Vec<(Object, KeyValue)>, Revision), RegistryError> {
        let (kvs, rev) = self.store.range(prefix).await?;
        let objects = kvs
            .into_iter()
            .map(|kv| Ok((codec::decode(&kv)?, kv)))
            .collect::<Result<_, RegistryError>>()?;
        Ok((objects, rev))
    }
}

/// The first address of the service CIDR (Kubernetes' `kubernetes`
/// Service address).
pub fn first_service_ip(net: &ipnet::IpNet) -> Option<std::net::IpAddr> {
    net.hosts().next()
}

/// Kubernetes' `<plural> "<name>" not found`.
pub fn not_found(kind: Kind, name: &str) -> RegistryError {
    RegistryError::NotFound(format!("{} {} not found", kind.plural(), quote(name)))
}

/// A name quoted as Kubernetes quotes it, escaped and cut short.
pub fn quote(name: &str) -> String {
    format!("{}", untrusted(name))
}

/// An INVALID_ARGUMENT whose message is at most [`MAX_MESSAGE`] bytes.
pub fn invalid(message: impl Into<String>) -> RegistryError {
    let mut m = message.into();
    if m.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !m.is_char_boundary(cut) {
            cut -= 1;
        }
        m.truncate(cut);
        m.push_str("… (message cut)");
    }
    RegistryError::Invalid(m)
}

/// Check that a name given to a lookup could be a stored name (no `/`,
/// not empty, not absurdly long), so it cannot reach another key.
pub fn check_lookup_name(what: &str, name: &str) -> Result<(), RegistryError> {
    if name.is_empty() || name.len() > 253 || name.contains('/') {
        return Err(invalid(format!(
            "{what} {} is not a valid name (1-253 characters, no '/')",
            quote(name)
        )));
    }
    Ok(())
}

/// Whether a stored namespace is being deleted (its contents go in several
/// transactions; see `delete.rs`).
pub fn terminating(ns: &Object) -> bool {
    matches!(ns, Object::Namespace(n)
        if n.status.phase == Some(weft_objects::values::NamespacePhase::Terminating))
}

/// Kubernetes' refusal of new content in a namespace being deleted
/// (`namespace` is a stored namespace's name, so a valid DNS label).
pub fn terminating_refusal(kind: Kind, name: &str, namespace: &str) -> RegistryError {
    RegistryError::FailedPrecondition(format!(
        "{} {} is forbidden: unable to create new content in namespace {namespace} because it is being terminated",
        kind.plural(),
        quote(name),
    ))
}

/// Labels of an object, for selectors.
pub fn labels(obj: &Object) -> &BTreeMap<String, String> {
    &obj.meta().labels
}
