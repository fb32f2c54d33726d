//! `Admin.GetObjects`: objects of one kind, by name, namespace and label
//! selector, read from the store (so a read after a write sees it).

use weft_objects::selector::{self, Selector};
use weft_objects::Kind;
use weft_proto::v1;

use super::{check_lookup_name, codec, invalid, keys, not_found, Objects, DEFAULT_NAMESPACE};
use crate::registry::RegistryError;
use crate::store::Revision;

/// Which objects of a kind to read.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// The namespace; `None`: every namespace. Ignored for Namespaces.
    pub namespace: Option<String>,
    /// One object by name.
    pub name: Option<String>,
    /// Only objects whose labels match.
    pub selector: Option<Selector>,
}

impl Selection {
    /// A selection from a request's fields (`namespace` empty: "default").
    pub fn from_request(
        namespace: &str,
        all_namespaces: bool,
        name: &str,
        label_selector: &str,
    ) -> Result<Selection, RegistryError> {
        let selector = if label_selector.trim().is_empty() {
            None
        } else {
            Some(
                selector::parse(label_selector)
                    .map_err(|e| invalid(format!("label_selector: {e}")))?,
            )
        };
        let namespace = if all_namespaces {
            None
        } else if namespace.is_empty() {
            Some(DEFAULT_NAMESPACE.to_string())
        } else {
            check_lookup_name("namespace", namespace)?;
            Some(namespace.to_string())
        };
        let name = if name.is_empty() {
            None
        } else {
            check_lookup_name("name", name)?;
            Some(name.to_string())
        };
        Ok(Selection {
            namespace,
            name,
            selector,
        })
    }
}

impl Objects {
    /// The selected objects of `kind`, sorted by namespace and name, and
    /// the revision they were read at. NOT_FOUND when a name is given and
    /// there is no such object (or it does not match the selector).
    pub async fn get(
        &self,
        kind: Kind,
        sel: &Selection,
    ) -> Result<(Vec<v1::Object>, Revision), RegistryError> {
        if kind == Kind::Node {
            return Err(invalid(
                "nodes are weft's own records, not objects: read them with ListNodes / GetNode",
            ));
        }
        let namespace = if kind.namespaced() {
            sel.namespace.as_deref()
        } else {
            None
        };
        let prefix = match (namespace, &sel.name) {
            (Some(ns), Some(name)) => keys::object_key(kind, ns, name),
            (None, Some(name)) if !kind.namespaced() => keys::object_key(kind, "", name),
            (Some(ns), None) => keys::namespace_prefix(kind, ns),
            _ => keys::kind_prefix(kind),
        };
        let (kvs, rev) = self.store.range(&prefix).await?;
        let mut out = Vec::new();
        for kv in kvs {
            let Some((_, ns, name)) = keys::parse(&kv.key) else {
                continue;
            };
            if sel.name.as_deref().is_some_and(|n| n != name)
                || namespace.is_some_and(|want| want != ns)
            {
                continue; // a longer name sharing the prefix
            }
            if let Some(s) = &sel.selector {
                let obj = codec::decode(&kv)?;
                if !s.matches(&obj.meta().labels) {
                    continue;
                }
            }
            out.push(codec::to_proto(&kv, kv.mod_revision)?);
        }
        if out.is_empty() {
            if let Some(name) = &sel.name {
                return Err(not_found(kind, name));
            }
        }
        Ok((out, rev))
    }
}
