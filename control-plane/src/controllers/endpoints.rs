//! The EndpointSlice controller: each Service with a selector gets the
//! slices `weft_objects` derives from it and its namespace's pods, written
//! only when they differ from the stored ones; a deleted Service's slices
//! are deleted.
//!
//! Contract: [`plan`] is pure (the view in, writes out). A stored slice
//! keeps its uid and creation time; a new one gets fresh ones. Every write
//! compares the revision of the Service it derives from and of each slice
//! it replaces or deletes, so a plan made on a stale view fails and is
//! made again once the view caught up.

use std::collections::BTreeMap;

use weft_objects::endpoints::derive_endpoint_slices;
use weft_objects::{defaults, EndpointSlice, Kind, Object};

use super::view::{Name, View};
use crate::objects::{codec, keys, system, Writes};
use crate::registry::RegistryError;

/// The writes that bring `service`'s derived slices to what they should be
/// (nothing when they already are).
pub fn plan(view: &View, service: &Name, w: &mut Writes) -> Result<(), RegistryError> {
    let (ns, name) = service;
    let existing: BTreeMap<String, (EndpointSlice, u64)> = view
        .slices
        .get(service)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), (v.object.clone(), v.revision)))
                .collect()
        })
        .unwrap_or_default();
    let desired = match view.services.get(service) {
        Some(svc) => {
            let pods = view.pods_maybe_selected(ns, &svc.object.spec.selector);
            let slices = derive_endpoint_slices(&svc.object, pods, |n| view.nodes.contains_key(n));
            if !slices.is_empty() || !existing.is_empty() {
                w.unchanged_since(&keys::object_key(Kind::Service, ns, name), svc.revision);
            }
            slices
        }
        None => Vec::new(),
    };
    let mut keep = std::collections::BTreeSet::new();
    for mut slice in desired {
        let slice_name = slice.metadata.name.clone();
        keep.insert(slice_name.clone());
        let key = keys::object_key(Kind::EndpointSlice, ns, &slice_name);
        match existing.get(&slice_name) {
            Some((old, rev)) => {
                if same_content(old, &slice) {
                    continue;
                }
                slice.metadata.uid = old.metadata.uid.clone();
                slice.metadata.creation_timestamp = old.metadata.creation_timestamp.clone();
                slice.metadata.generation = old.metadata.generation + 1;
                let mut obj = Object::EndpointSlice(slice);
                defaults::apply(&mut obj);
                w.unchanged_since(&key, *rev);
                w.put(&key, codec::encode(&obj)?);
            }
            None => {
                let mut obj = Object::EndpointSlice(slice);
                defaults::apply(&mut obj);
                system::stamp_new(&mut obj);
                w.create(&key, codec::encode(&obj)?);
            }
        }
    }
    for (slice_name, (_, rev)) in &existing {
        if !keep.contains(slice_name) {
            let key = keys::object_key(Kind::EndpointSlice, ns, slice_name);
            w.unchanged_since(&key, *rev);
            w.delete(&key);
        }
    }
    Ok(())
}

/// Whether two slices hold the same endpoints, ports, type and labels.
fn same_content(a: &EndpointSlice, b: &EndpointSlice) -> bool {
    let mut b = b.clone();
    defaults::endpoint_slice(&mut b);
    a.address_type == b.address_type
        && a.endpoints == b.endpoints
        && a.ports == b.ports
        && a.metadata.labels == b.metadata.labels
}
