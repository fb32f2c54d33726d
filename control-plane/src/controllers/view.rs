//! The controllers' decoded view of the cluster, kept from the feed:
//! nodes, and the pods, Services and EndpointSlices of each namespace.
//!
//! Contract: [`View::apply`] applies one feed batch and returns what it
//! makes dirty: the Services whose EndpointSlices may change (the Service
//! itself; the Services selecting a changed pod, by its old or new labels;
//! the Services selecting a pod on a node that came or went; a Service
//! whose derived slice was changed by anyone),
//! and whether the load-balancer ingress list may change (a node changed,
//! a LoadBalancer Service changed). Pods are indexed by label and Services
//! by selector term ([`LabelIndex`]), so a pod change looks only at the
//! Services that could select it, and a Service's slices only at the pods
//! that could match it.

use std::collections::{BTreeMap, BTreeSet};

use weft_objects::types::endpoint_slice::{LABEL_MANAGED_BY, LABEL_SERVICE_NAME, MANAGED_BY_WEFT};
use weft_objects::values::ServiceType;
use weft_objects::{EndpointSlice, Kind, Pod, Service};
use weft_proto::v1;

use super::index::LabelIndex;
use crate::feed::{Batch, Payload};
use crate::store::Revision;

/// `(namespace, name)`.
pub type Name = (String, String);

/// A node as the controllers need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub ready: bool,
    /// The IP of the node's most preferred endpoint, if it has one.
    pub address: Option<std::net::IpAddr>,
}

/// A stored object and the revision it was read at.
#[derive(Debug, Clone)]
pub struct At<T> {
    pub object: T,
    pub revision: Revision,
}

/// What the controllers know.
#[derive(Debug, Default)]
pub struct View {
    pub nodes: BTreeMap<String, NodeInfo>,
    pub pods: BTreeMap<String, BTreeMap<String, Pod>>,
    pub services: BTreeMap<Name, At<Service>>,
    /// Derived slices only (labelled as weft's controller's), by
    /// (namespace, service) then slice name.
    pub slices: BTreeMap<Name, BTreeMap<String, At<EndpointSlice>>>,
    /// Pods by label.
    pod_labels: LabelIndex,
    /// Services by selector term.
    selectors: LabelIndex,
}

/// What a batch made dirty.
#[derive(Debug, Default)]
pub struct Dirty {
    pub services: BTreeSet<Name>,
    pub ingress: bool,
}

fn decode<T: serde::de::DeserializeOwned>(o: &v1::Object) -> Option<T> {
    match serde_json::from_slice(&o.json) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(kind = %o.kind, namespace = %o.namespace, name = %o.name, error = %e, "controllers skip an unreadable object");
            None
        }
    }
}

fn node_info(n: &v1::Node) -> NodeInfo {
    NodeInfo {
        ready: n.state == v1::NodeState::Ready as i32,
        address: n
            .endpoints
            .first()
            .and_then(|e| e.parse::<std::net::SocketAddr>().ok())
            .map(|a| a.ip()),
    }
}

fn managed_service(es: &EndpointSlice) -> Option<&str> {
    (es.metadata.labels.get(LABEL_MANAGED_BY).map(String::as_str) == Some(MANAGED_BY_WEFT))
        .then(|| {
            es.metadata
                .labels
                .get(LABEL_SERVICE_NAME)
                .map(String::as_str)
        })
        .flatten()
}

impl View {
    /// A view of a feed snapshot; everything is dirty.
    pub fn load(items: &[std::sync::Arc<Payload>]) -> (View, Dirty) {
        let mut view = View::default();
        for p in items {
            view.put(p);
        }
        let dirty = Dirty {
            services: view
                .services
                .keys()
                .chain(view.slices.keys())
                .cloned()
                .collect(),
            ingress: true,
        };
        (view, dirty)
    }

    /// Apply a batch; return what it made dirty.
    pub fn apply(&mut self, batch: &Batch, dirty: &mut Dirty) {
        for e in &batch.events {
            match &e.payload {
                Payload::Node(n) => {
                    let known = self.nodes.contains_key(&n.name);
                    let changed = if e.deleted {
                        self.nodes.remove(&n.name).is_some()
                    } else {
                        let info = node_info(n);
                        self.nodes.insert(n.name.clone(), info.clone()) != Some(info)
                    };
                    if changed {
                        dirty.ingress = true;
                    }
                    let came_or_went = if e.deleted { known } else { !known };
                    if came_or_went {
                        // A node came or went: pods on it gain or lose
                        // endpoints (pods on an unknown node are not
                        // endpoints).
                        dirty
                            .services
                            .extend(self.services_selecting_pods_on(&n.name));
                    }
                }
                Payload::Object(o) => {
                    let ns = o.namespace.clone();
                    match o.kind.parse::<Kind>() {
                        Ok(Kind::Pod) => {
                            let old = self
                                .pods
                                .get(&ns)
                                .and_then(|p| p.get(&o.name))
                                .map(|p| p.metadata.labels.clone());
                            let new = (!e.deleted)
                                .then(|| decode::<Pod>(o))
                                .flatten()
                                .map(|p| p.metadata.labels);
                            for labels in [&old, &new].into_iter().flatten() {
                                dirty.services.extend(self.services_selecting(&ns, labels));
                            }
                        }
                        Ok(Kind::Service) => {
                            let key = (ns.clone(), o.name.clone());
                            let was_lb = self.services.get(&key).is_some_and(|s| {
                                s.object.service_type() == ServiceType::LoadBalancer
                            });
                            dirty.services.insert(key);
                            let is_lb = !e.deleted
                                && decode::<Service>(o)
                                    .is_some_and(|s| s.service_type() == ServiceType::LoadBalancer);
                            if was_lb || is_lb {
                                dirty.ingress = true;
                            }
                        }
                        Ok(Kind::EndpointSlice) => {
                            if let Some(es) = decode::<EndpointSlice>(o) {
                                if let Some(svc) = managed_service(&es) {
                                    dirty.services.insert((ns.clone(), svc.to_string()));
                                }
                            }
                        }
                        _ => {}
                    }
                    if e.deleted {
                        self.remove(o);
                    } else {
                        self.put(&e.payload);
                    }
                }
            }
        }
    }

    fn put(&mut self, p: &Payload) {
        match p {
            Payload::Node(n) => {
                self.nodes.insert(n.name.clone(), node_info(n));
            }
            Payload::Object(o) => match o.kind.parse::<Kind>() {
                Ok(Kind::Pod) => {
                    if let Some(pod) = decode::<Pod>(o) {
                        self.remove_pod(&o.namespace, &o.name);
                        self.pod_labels
                            .insert(&o.namespace, &o.name, &pod.metadata.labels);
                        self.pods
                            .entry(o.namespace.clone())
                            .or_default()
                            .insert(o.name.clone(), pod);
                    }
                }
                Ok(Kind::Service) => {
                    if let Some(svc) = decode::<Service>(o) {
                        self.remove_service(&o.namespace, &o.name);
                        if svc.has_selector() {
                            self.selectors
                                .insert(&o.namespace, &o.name, &svc.spec.selector);
                        }
                        self.services.insert(
                            (o.namespace.clone(), o.name.clone()),
                            At {
                                object: svc,
                                revision: o.revision,
                            },
                        );
                    }
                }
                Ok(Kind::EndpointSlice) => {
                    if let Some(es) = decode::<EndpointSlice>(o) {
                        if let Some(svc) = managed_service(&es).map(str::to_string) {
                            self.slices
                                .entry((o.namespace.clone(), svc))
                                .or_default()
                                .insert(
                                    o.name.clone(),
                                    At {
                                        object: es,
                                        revision: o.revision,
                                    },
                                );
                        }
                    }
                }
                _ => {}
            },
        }
    }

    fn remove(&mut self, o: &v1::Object) {
        match o.kind.parse::<Kind>() {
            Ok(Kind::Pod) => self.remove_pod(&o.namespace, &o.name),
            Ok(Kind::Service) => self.remove_service(&o.namespace, &o.name),
            Ok(Kind::EndpointSlice) => {
                for slices in self
                    .slices
                    .range_mut((o.namespace.clone(), String::new())..)
                    .take_while(|((ns, _), _)| *ns == o.namespace)
                    .map(|(_, v)| v)
                {
                    slices.remove(&o.name);
                }
                self.slices.retain(|_, v| !v.is_empty());
            }
            _ => {}
        }
    }

    fn remove_pod(&mut self, ns: &str, name: &str) {
        if let Some(pods) = self.pods.get_mut(ns) {
            if let Some(old) = pods.remove(name) {
                self.pod_labels.remove(ns, name, &old.metadata.labels);
            }
            if pods.is_empty() {
                self.pods.remove(ns);
            }
        }
    }

    fn remove_service(&mut self, ns: &str, name: &str) {
        if let Some(old) = self.services.remove(&(ns.to_string(), name.to_string())) {
            self.selectors.remove(ns, name, &old.object.spec.selector);
        }
    }

    /// The Services of `ns` that select a pod labelled `labels`.
    fn services_selecting(&self, ns: &str, labels: &BTreeMap<String, String>) -> Vec<Name> {
        self.selectors
            .any_of(ns, labels)
            .into_iter()
            .map(|name| (ns.to_string(), name))
            .filter(|key| {
                self.services.get(key).is_some_and(|s| {
                    s.object.has_selector()
                        && weft_objects::selector::map_matches(&s.object.spec.selector, labels)
                })
            })
            .collect()
    }

    /// The pods of `ns` that `selector` may select (a superset: callers
    /// match the selector); none for an empty selector.
    pub fn pods_maybe_selected<'a>(
        &'a self,
        ns: &str,
        selector: &BTreeMap<String, String>,
    ) -> impl Iterator<Item = &'a Pod> + 'a {
        let pods = self.pods.get(ns);
        self.pod_labels
            .candidates(ns, selector)
            .into_iter()
            .flatten()
            .filter_map(move |name| pods.and_then(|m| m.get(name)))
    }

    /// The Services that select a pod on `node`.
    fn services_selecting_pods_on(&self, node: &str) -> BTreeSet<Name> {
        let mut out = BTreeSet::new();
        for (ns, pods) in &self.pods {
            for pod in pods.values().filter(|p| p.spec.node_name == node) {
                out.extend(self.services_selecting(ns, &pod.metadata.labels));
            }
        }
        out
    }

    /// The addresses a LoadBalancer Service answers on: every Ready node's
    /// most preferred endpoint address, sorted, once each.
    pub fn ingress_addresses(&self) -> Vec<std::net::IpAddr> {
        let set: BTreeSet<std::net::IpAddr> = self
            .nodes
            .values()
            .filter(|n| n.ready)
            .filter_map(|n| n.address)
            .collect();
        set.into_iter().collect()
    }
}
