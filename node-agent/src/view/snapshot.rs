//! [`ViewSnapshot`]: the cluster's objects at one moment, immutable, for
//! the data plane (Services, DNS, NetworkPolicy) to compile.

use std::collections::BTreeMap;
use std::sync::Arc;

use weft_agent_api::ClusterViewInfo;
use weft_objects::types::endpoint_slice::LABEL_SERVICE_NAME;
use weft_objects::{EndpointSlice, Namespace, NetworkPolicy, Pod, Service};

/// A namespaced object's key: namespace, then name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

impl ObjectKey {
    /// The key of `namespace`/`name`.
    pub fn new(namespace: &str, name: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One kind's objects, shared between snapshots until one changes.
pub(super) type Objects<K, T> = Arc<BTreeMap<K, Arc<T>>>;

/// The cluster's objects at one moment. Never changes once published:
/// a change makes a new snapshot with a higher `version`.
#[derive(Debug, Clone, Default)]
pub struct ViewSnapshot {
    /// Grows with every change of content (0: nothing received or loaded).
    pub version: u64,
    /// The watch revision the content is at (at least).
    pub revision: u64,
    /// Namespaces, by name.
    pub namespaces: Objects<String, Namespace>,
    /// Pods of every node.
    pub pods: Objects<ObjectKey, Pod>,
    /// Services.
    pub services: Objects<ObjectKey, Service>,
    /// EndpointSlices.
    pub endpoint_slices: Objects<ObjectKey, EndpointSlice>,
    /// NetworkPolicies.
    pub network_policies: Objects<ObjectKey, NetworkPolicy>,
}

impl ViewSnapshot {
    /// The Service `namespace`/`name`.
    pub fn service(&self, namespace: &str, name: &str) -> Option<&Arc<Service>> {
        self.services.get(&ObjectKey::new(namespace, name))
    }

    /// The EndpointSlices of the Service `namespace`/`name` (by their
    /// `kubernetes.io/service-name` label).
    pub fn slices_of<'a>(
        &'a self,
        namespace: &'a str,
        service: &'a str,
    ) -> impl Iterator<Item = &'a Arc<EndpointSlice>> + 'a {
        self.endpoint_slices
            .iter()
            .filter(move |(k, s)| {
                k.namespace == namespace
                    && s.metadata
                        .labels
                        .get(LABEL_SERVICE_NAME)
                        .map(String::as_str)
                        == Some(service)
            })
            .map(|(_, s)| s)
    }

    /// The pods `spec.nodeName` puts on `node`.
    pub fn pods_on<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a Arc<Pod>> + 'a {
        self.pods.values().filter(move |p| p.spec.node_name == node)
    }

    /// How many objects of each kind, for `status`.
    pub fn info(&self) -> ClusterViewInfo {
        ClusterViewInfo {
            revision: self.revision,
            version: self.version,
            namespaces: self.namespaces.len(),
            pods: self.pods.len(),
            services: self.services.len(),
            endpoint_slices: self.endpoint_slices.len(),
            network_policies: self.network_policies.len(),
        }
    }

    /// Every object, counted.
    pub fn len(&self) -> usize {
        self.namespaces.len()
            + self.pods.len()
            + self.services.len()
            + self.endpoint_slices.len()
            + self.network_policies.len()
    }

    /// Whether there is no object at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
