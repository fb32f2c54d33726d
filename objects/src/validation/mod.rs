//! Validation as the Kubernetes API server does it, with its messages.
//!
//! Contract:
//! - Each `validate_*` function returns every error of the object (not just
//!   the first), each a [`FieldError`] whose `Display` is byte for byte
//!   Kubernetes' `field.Error` (`spec.ports[0].port: Invalid value: 70000:
//!   must be between 1 and 65535, inclusive`).
//! - Objects are validated after [`crate::defaults::apply`] (and, for an
//!   update, [`crate::defaults::prepare_update`]), as Kubernetes validates
//!   defaulted objects.
//! - Values the control plane allocates may be absent: an empty
//!   `clusterIP`, a 0 `nodePort` or `healthCheckNodePort` are valid here
//!   (Kubernetes validates after allocating). Values given are checked
//!   against the cluster's settings in [`ValidationContext`]: ClusterIPs
//!   inside the service CIDR of their family, node ports inside the range,
//!   with the allocator's wording. Whether a value is already taken is the
//!   control plane's store transaction; [`allocation`] builds those errors.
//! - Where weft supports less than Kubernetes (SCTP, a few Service and
//!   metadata fields), the refusal says "weft" and why.
//! - [`Invalid`] aggregates an object's errors as the API server's
//!   `StatusError` message: `Service "web" is invalid: [a, b]`.
//!
//! Files: `meta.rs` (metadata, labels, selectors, shared port checks),
//! `service.rs`, `network_policy.rs`, `workloads.rs` (Namespace, Pod,
//! EndpointSlice), `allocation.rs`.

pub mod allocation;
mod meta;
mod network_policy;
mod service;
mod workloads;

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

pub use meta::{validate_label_selector, validate_labels};
pub use network_policy::{validate_network_policy, validate_network_policy_update};
pub use service::{validate_service, validate_service_update};
pub use workloads::{
    validate_endpoint_slice, validate_endpoint_slice_update, validate_namespace,
    validate_namespace_update, validate_pod, validate_pod_update,
};

use crate::field::{aggregate, go_quote, FieldError, FieldPath};
use crate::object::{Kind, Object};

/// The cluster settings validation checks values against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationContext {
    /// The service CIDR(s), at most one per family (default `10.96.0.0/12`).
    pub service_cidrs: Vec<IpNet>,
    /// The NodePort range (default 30000-32767).
    pub node_ports: NodePortRange,
}

/// An inclusive range of node ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodePortRange {
    /// The first port.
    pub first: u16,
    /// The last port.
    pub last: u16,
}

impl NodePortRange {
    /// Whether `port` is in the range.
    pub fn contains(&self, port: i64) -> bool {
        (i64::from(self.first)..=i64::from(self.last)).contains(&port)
    }
}

impl fmt::Display for NodePortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl Default for ValidationContext {
    fn default() -> Self {
        ValidationContext {
            service_cidrs: vec![IpNet::V4(
                ipnet::Ipv4Net::new(std::net::Ipv4Addr::new(10, 96, 0, 0), 12).unwrap_or_default(),
            )],
            node_ports: NodePortRange {
                first: 30000,
                last: 32767,
            },
        }
    }
}

impl ValidationContext {
    /// The service CIDR of `ip`'s family.
    pub fn service_cidr_for(&self, ip: &IpAddr) -> Option<&IpNet> {
        self.service_cidrs
            .iter()
            .find(|n| n.addr().is_ipv4() == ip.is_ipv4())
    }

    /// Whether `ip` can be a ClusterIP: inside its family's service CIDR,
    /// not the network address, not the IPv4 broadcast address.
    pub fn cluster_ip_allocatable(&self, ip: &IpAddr) -> bool {
        self.service_cidr_for(ip).is_some_and(|net| {
            net.contains(ip)
                && *ip != net.network()
                && (ip.is_ipv6() || *ip != net.broadcast() || net.prefix_len() == 32)
        })
    }

    /// Whether the cluster serves both families.
    pub fn dual_stack(&self) -> bool {
        self.service_cidrs.iter().any(|n| n.addr().is_ipv4())
            && self.service_cidrs.iter().any(|n| n.addr().is_ipv6())
    }
}

/// An object refused by validation: its kind, name and every error.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    /// The object's kind.
    pub kind: Kind,
    /// The object's name.
    pub name: String,
    /// Every error.
    pub errors: Vec<FieldError>,
}

impl fmt::Display for Invalid {
    /// `Service "web" is invalid: <errors>` (Kubernetes' `NewInvalid`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} is invalid: {}",
            self.kind.group_kind(),
            go_quote(&self.name),
            aggregate(&self.errors)
        )
    }
}

impl std::error::Error for Invalid {}

/// Kubernetes' one-line message for an object's errors (`Service "web" is
/// invalid: [spec.ports[0].port: ..., ...]`).
pub fn invalid_message(kind: Kind, name: &str, errors: &[FieldError]) -> String {
    Invalid {
        kind,
        name: name.to_string(),
        errors: errors.to_vec(),
    }
    .to_string()
}

fn result(obj: &Object, errors: Vec<FieldError>) -> Result<(), Invalid> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Invalid {
            kind: obj.kind(),
            name: obj.name().to_string(),
            errors,
        })
    }
}

/// Every error of an object about to be created.
pub fn errors(obj: &Object, ctx: &ValidationContext) -> Vec<FieldError> {
    match obj {
        Object::Namespace(o) => validate_namespace(o),
        Object::Pod(o) => validate_pod(o),
        Object::Service(o) => validate_service(o, ctx),
        Object::NetworkPolicy(o) => validate_network_policy(o),
        Object::EndpointSlice(o) => validate_endpoint_slice(o),
    }
}

/// Every error of an update of `old` to `new` (including `new`'s own).
pub fn update_errors(new: &Object, old: &Object, ctx: &ValidationContext) -> Vec<FieldError> {
    match (new, old) {
        (Object::Namespace(n), Object::Namespace(o)) => validate_namespace_update(n, o),
        (Object::Pod(n), Object::Pod(o)) => validate_pod_update(n, o),
        (Object::Service(n), Object::Service(o)) => validate_service_update(n, o, ctx),
        (Object::NetworkPolicy(n), Object::NetworkPolicy(o)) => {
            validate_network_policy_update(n, o)
        }
        (Object::EndpointSlice(n), Object::EndpointSlice(o)) => {
            validate_endpoint_slice_update(n, o)
        }
        _ => vec![FieldError::invalid(
            &FieldPath::new("kind"),
            new.kind().kind_name(),
            format!("field is immutable (was {})", old.kind().kind_name()),
        )],
    }
}

/// Validates an object about to be created.
pub fn validate(obj: &Object, ctx: &ValidationContext) -> Result<(), Invalid> {
    result(obj, errors(obj, ctx))
}

/// Validates an update of `old` to `new`.
pub fn validate_update(new: &Object, old: &Object, ctx: &ValidationContext) -> Result<(), Invalid> {
    result(new, update_errors(new, old, ctx))
}
