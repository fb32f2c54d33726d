//! [`Object`], one of the kinds weft stores, and [`Kind`], the kinds
//! `weftctl get` names (with kubectl's plural, singular and short names).

use std::fmt;
use std::str::FromStr;

use crate::meta::ObjectMeta;
use crate::types::endpoint_slice::EndpointSlice;
use crate::types::namespace::Namespace;
use crate::types::network_policy::NetworkPolicy;
use crate::types::pod::Pod;
use crate::types::service::Service;

/// An object of one of the kinds weft stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    /// A `v1` Namespace.
    Namespace(Namespace),
    /// A `v1` Pod.
    Pod(Pod),
    /// A `v1` Service.
    Service(Service),
    /// A `networking.k8s.io/v1` NetworkPolicy.
    NetworkPolicy(NetworkPolicy),
    /// A `discovery.k8s.io/v1` EndpointSlice.
    EndpointSlice(EndpointSlice),
}

/// The kinds `weftctl get` knows. `Node` is weft's own node record, not a
/// Kubernetes object, and cannot be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `namespaces`, `namespace`, `ns`.
    Namespace,
    /// `pods`, `pod`, `po`.
    Pod,
    /// `services`, `service`, `svc`.
    Service,
    /// `endpointslices`, `endpointslice`.
    EndpointSlice,
    /// `networkpolicies`, `networkpolicy`, `netpol`.
    NetworkPolicy,
    /// `nodes`, `node`, `no`.
    Node,
}

impl Kind {
    /// Every kind, in `weftctl get`'s order.
    pub const ALL: [Kind; 6] = [
        Kind::Namespace,
        Kind::Pod,
        Kind::Service,
        Kind::EndpointSlice,
        Kind::NetworkPolicy,
        Kind::Node,
    ];

    /// The names kubectl accepts for this kind: plural, singular, short ones.
    pub fn names(self) -> &'static [&'static str] {
        match self {
            Kind::Namespace => &["namespaces", "namespace", "ns"],
            Kind::Pod => &["pods", "pod", "po"],
            Kind::Service => &["services", "service", "svc"],
            Kind::EndpointSlice => &["endpointslices", "endpointslice"],
            Kind::NetworkPolicy => &["networkpolicies", "networkpolicy", "netpol"],
            Kind::Node => &["nodes", "node", "no"],
        }
    }

    /// The plural name (`services`).
    pub fn plural(self) -> &'static str {
        self.names()[0]
    }

    /// The lower-case singular name kubectl prints in `service/web created`.
    pub fn resource(self) -> &'static str {
        self.names()[1]
    }

    /// The `kind` field's value (`Service`).
    pub fn kind_name(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::Pod => "Pod",
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::NetworkPolicy => "NetworkPolicy",
            Kind::Node => "Node",
        }
    }

    /// The `apiVersion` of this kind.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Namespace | Kind::Pod | Kind::Service | Kind::Node => "v1",
            Kind::EndpointSlice => "discovery.k8s.io/v1",
            Kind::NetworkPolicy => "networking.k8s.io/v1",
        }
    }

    /// Kubernetes' group-qualified kind, as in `Service "web" is invalid`
    /// and `NetworkPolicy.networking.k8s.io "deny" is invalid`.
    pub fn group_kind(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::Pod => "Pod",
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice.discovery.k8s.io",
            Kind::NetworkPolicy => "NetworkPolicy.networking.k8s.io",
            Kind::Node => "Node",
        }
    }

    /// Whether objects of this kind live in a namespace.
    pub fn namespaced(self) -> bool {
        !matches!(self, Kind::Namespace | Kind::Node)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.plural())
    }
}

/// A kind name `weftctl get` does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the server doesn't have a resource type {name:?} (weft knows: namespaces (ns), pods (po), services (svc), endpointslices, networkpolicies (netpol), nodes (no))")]
pub struct UnknownKind {
    /// The name given.
    pub name: String,
}

impl FromStr for Kind {
    type Err = UnknownKind;

    /// Case-insensitive, as kubectl: `svc`, `Services`, `service`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        Kind::ALL
            .into_iter()
            .find(|k| k.names().contains(&lower.as_str()))
            .ok_or_else(|| UnknownKind {
                name: s.to_string(),
            })
    }
}

impl Object {
    /// This object's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Object::Namespace(_) => Kind::Namespace,
            Object::Pod(_) => Kind::Pod,
            Object::Service(_) => Kind::Service,
            Object::NetworkPolicy(_) => Kind::NetworkPolicy,
            Object::EndpointSlice(_) => Kind::EndpointSlice,
        }
    }

    /// The metadata.
    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Object::Namespace(o) => &o.metadata,
            Object::Pod(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::NetworkPolicy(o) => &o.metadata,
            Object::EndpointSlice(o) => &o.metadata,
        }
    }

    /// The metadata, to change.
    pub fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Object::Namespace(o) => &mut o.metadata,
            Object::Pod(o) => &mut o.metadata,
            Object::Service(o) => &mut o.metadata,
            Object::NetworkPolicy(o) => &mut o.metadata,
            Object::EndpointSlice(o) => &mut o.metadata,
        }
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        &self.meta().name
    }

    /// `metadata.namespace` (empty for Namespaces).
    pub fn namespace(&self) -> &str {
        &self.meta().namespace
    }

    /// kubectl's `service/web` reference.
    pub fn reference(&self) -> String {
        format!("{}/{}", self.kind().resource(), self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names() {
        for (name, kind) in [
            ("ns", Kind::Namespace),
            ("namespaces", Kind::Namespace),
            ("po", Kind::Pod),
            ("Pods", Kind::Pod),
            ("svc", Kind::Service),
            ("service", Kind::Service),
            ("endpointslice", Kind::EndpointSlice),
            ("netpol", Kind::NetworkPolicy),
            ("networkpolicies", Kind::NetworkPolicy),
            ("no", Kind::Node),
        ] {
            assert_eq!(name.parse::<Kind>().unwrap(), kind, "{name}");
        }
        let err = "deployments".parse::<Kind>().unwrap_err();
        assert!(err.to_string().contains("\"deployments\""));
        assert_eq!(Kind::Service.resource(), "service");
        assert_eq!(
            Kind::NetworkPolicy.group_kind(),
            "NetworkPolicy.networking.k8s.io"
        );
    }
}
