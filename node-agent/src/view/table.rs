//! [`ClusterView`]: watch events in, the objects out (sans-IO). See the
//! module contract in `view/mod.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use weft_objects::{EndpointSlice, Namespace, NetworkPolicy, Pod, Service};
use weft_proto::v1::{change, watch_event, ChangeType, Object, WatchEvent};

use super::file::ViewFile;
use super::snapshot::{ObjectKey, ViewSnapshot};

/// One object read from the watch.
enum Parsed {
    Namespace(Namespace),
    Pod(Pod),
    Service(Service),
    EndpointSlice(EndpointSlice),
    NetworkPolicy(NetworkPolicy),
}

/// The kinds the view holds, by their `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ViewKind {
    Namespace,
    Pod,
    Service,
    EndpointSlice,
    NetworkPolicy,
}

impl ViewKind {
    fn of(kind: &str) -> Option<Self> {
        Some(match kind {
            "Namespace" => Self::Namespace,
            "Pod" => Self::Pod,
            "Service" => Self::Service,
            "EndpointSlice" => Self::EndpointSlice,
            "NetworkPolicy" => Self::NetworkPolicy,
            _ => return None,
        })
    }
}

/// The cluster's objects and the watch revision they are at.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    /// The working copy; published by [`ClusterView::snapshot`].
    state: ViewSnapshot,
    /// The last revision applied (also keepalives and node changes).
    revision: u64,
    /// Parts of a snapshot still coming: its revision and the objects so far.
    partial: Option<(u64, Vec<Object>)>,
    /// Objects left out because their JSON did not read, since start.
    unreadable: u64,
}

fn read<T: DeserializeOwned>(json: &[u8]) -> Result<T, String> {
    serde_json::from_slice(json).map_err(|e| e.to_string())
}

fn parse(kind: ViewKind, json: &[u8]) -> Result<Parsed, String> {
    Ok(match kind {
        ViewKind::Namespace => Parsed::Namespace(read(json)?),
        ViewKind::Pod => Parsed::Pod(read(json)?),
        ViewKind::Service => Parsed::Service(read(json)?),
        ViewKind::EndpointSlice => Parsed::EndpointSlice(read(json)?),
        ViewKind::NetworkPolicy => Parsed::NetworkPolicy(read(json)?),
    })
}

impl ClusterView {
    /// An empty view at revision 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// The view a persisted file describes.
    pub fn from_file(file: ViewFile) -> Self {
        let key = |m: &weft_objects::ObjectMeta| ObjectKey::new(&m.namespace, &m.name);
        let state = ViewSnapshot {
            version: u64::from(!file.is_empty()),
            revision: file.revision,
            namespaces: Arc::new(
                file.namespaces
                    .into_iter()
                    .map(|o| (o.metadata.name.clone(), Arc::new(o)))
                    .collect(),
            ),
            pods: Arc::new(
                file.pods
                    .into_iter()
                    .map(|o| (key(&o.metadata), Arc::new(o)))
                    .collect(),
            ),
            services: Arc::new(
                file.services
                    .into_iter()
                    .map(|o| (key(&o.metadata), Arc::new(o)))
                    .collect(),
            ),
            endpoint_slices: Arc::new(
                file.endpoint_slices
                    .into_iter()
                    .map(|o| (key(&o.metadata), Arc::new(o)))
                    .collect(),
            ),
            network_policies: Arc::new(
                file.network_policies
                    .into_iter()
                    .map(|o| (key(&o.metadata), Arc::new(o)))
                    .collect(),
            ),
        };
        Self {
            revision: file.revision,
            state,
            ..Self::default()
        }
    }

    /// The last revision applied (0: none; watch from a snapshot).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Forget the revision, so the next watch starts with a snapshot.
    pub fn reset_revision(&mut self) {
        self.revision = 0;
        self.partial = None;
    }

    /// Drop a snapshot whose parts stopped coming (the stream broke).
    pub fn abandon_partial(&mut self) {
        self.partial = None;
    }

    /// Objects left out because their JSON did not read, since start.
    pub fn unreadable(&self) -> u64 {
        self.unreadable
    }

    /// The objects now, as an immutable snapshot (cheap: the maps are
    /// shared until the next change copies the one it touches).
    pub fn snapshot(&self) -> Arc<ViewSnapshot> {
        let mut s = self.state.clone();
        s.revision = self.revision.max(s.revision);
        Arc::new(s)
    }

    /// Applies one watch event; true if the objects changed.
    pub fn apply(&mut self, event: &WatchEvent) -> bool {
        match &event.event {
            Some(watch_event::Event::Snapshot(s)) => {
                let mut objects = match self.partial.take() {
                    Some((rev, objects)) if rev == event.revision => objects,
                    _ => Vec::new(),
                };
                objects.extend(s.objects.iter().cloned());
                if s.more {
                    self.partial = Some((event.revision, objects));
                    return false;
                }
                self.replace(event.revision, &objects);
                true
            }
            Some(watch_event::Event::Change(c)) => {
                if event.revision < self.revision {
                    return false;
                }
                self.revision = event.revision;
                let Some(change::Object::ClusterObject(obj)) = &c.object else {
                    return false;
                };
                let changed = if c.r#type == ChangeType::Put as i32 {
                    self.put(obj)
                } else if c.r#type == ChangeType::Delete as i32 {
                    self.delete(obj)
                } else {
                    false
                };
                if changed {
                    self.state.version += 1;
                    self.state.revision = event.revision;
                }
                changed
            }
            Some(watch_event::Event::Keepalive(_)) => {
                self.revision = self.revision.max(event.revision);
                false
            }
            None => false,
        }
    }

    /// Replaces every object with a snapshot's.
    fn replace(&mut self, revision: u64, objects: &[Object]) {
        let version = self.state.version + 1;
        self.state = ViewSnapshot {
            version,
            revision,
            ..ViewSnapshot::default()
        };
        self.revision = revision;
        for obj in objects {
            self.put(obj);
        }
        tracing::info!(
            revision,
            namespaces = self.state.namespaces.len(),
            pods = self.state.pods.len(),
            services = self.state.services.len(),
            endpoint_slices = self.state.endpoint_slices.len(),
            network_policies = self.state.network_policies.len(),
            "cluster objects snapshot applied"
        );
    }

    /// Stores one object; false if nothing changed (it was left out).
    fn put(&mut self, obj: &Object) -> bool {
        let Some(kind) = ViewKind::of(&obj.kind) else {
            tracing::debug!(kind = %obj.kind, name = %obj.name, "ignoring an object of a kind this agent does not hold");
            return false;
        };
        let parsed = match parse(kind, &obj.json) {
            Ok(p) => p,
            Err(e) => {
                self.unreadable += 1;
                tracing::warn!(kind = %obj.kind, namespace = %obj.namespace, name = %obj.name,
                    revision = obj.revision, error = %e, "leaving out an object whose JSON does not read");
                // Its older version goes too: better no object than a stale one.
                return self.delete(obj);
            }
        };
        let key = ObjectKey::new(&obj.namespace, &obj.name);
        let s = &mut self.state;
        match parsed {
            Parsed::Namespace(o) => insert(&mut s.namespaces, obj.name.clone(), o),
            Parsed::Pod(o) => insert(&mut s.pods, key, o),
            Parsed::Service(o) => insert(&mut s.services, key, o),
            Parsed::EndpointSlice(o) => insert(&mut s.endpoint_slices, key, o),
            Parsed::NetworkPolicy(o) => insert(&mut s.network_policies, key, o),
        }
        true
    }

    /// Removes one object by kind, namespace and name; false if absent.
    fn delete(&mut self, obj: &Object) -> bool {
        let Some(kind) = ViewKind::of(&obj.kind) else {
            return false;
        };
        let key = ObjectKey::new(&obj.namespace, &obj.name);
        let s = &mut self.state;
        match kind {
            ViewKind::Namespace => remove(&mut s.namespaces, &obj.name),
            ViewKind::Pod => remove(&mut s.pods, &key),
            ViewKind::Service => remove(&mut s.services, &key),
            ViewKind::EndpointSlice => remove(&mut s.endpoint_slices, &key),
            ViewKind::NetworkPolicy => remove(&mut s.network_policies, &key),
        }
    }
}

fn insert<K: Ord + Clone, T>(map: &mut Arc<BTreeMap<K, Arc<T>>>, key: K, value: T) {
    Arc::make_mut(map).insert(key, Arc::new(value));
}

fn remove<K: Ord + Clone, T>(map: &mut Arc<BTreeMap<K, Arc<T>>>, key: &K) -> bool {
    if !map.contains_key(key) {
        return false;
    }
    Arc::make_mut(map).remove(key).is_some()
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
