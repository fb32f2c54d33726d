//! The allocator's refusals, for the control plane's store transactions,
//! in Kubernetes' wording.
//!
//! Contract: validation ([`super::validate`]) already refuses values
//! outside the cluster's ranges; these are the refusals only the store can
//! decide: a requested ClusterIP or node port already in use, or a range
//! with nothing left.

use crate::field::{BadValue, FieldError, FieldPath};

/// A requested ClusterIP is taken: `spec.clusterIPs: Invalid value:
/// ["10.96.0.5"]: failed to allocate IP 10.96.0.5: provided IP is already
/// allocated`.
pub fn cluster_ip_in_use(cluster_ips: &[String], ip: &str) -> FieldError {
    FieldError::invalid(
        &FieldPath::new("spec").child("clusterIPs"),
        BadValue::from(cluster_ips),
        format!("failed to allocate IP {ip}: provided IP is already allocated"),
    )
}

/// A requested node port is taken: `spec.ports[0].nodePort: Invalid value:
/// 30080: provided port is already allocated`.
pub fn node_port_in_use(port_index: usize, node_port: i32) -> FieldError {
    FieldError::invalid(
        &FieldPath::new("spec")
            .child("ports")
            .index(port_index)
            .child("nodePort"),
        node_port,
        "provided port is already allocated",
    )
}

/// A requested health-check node port is taken.
pub fn health_check_node_port_in_use(port: i32) -> FieldError {
    FieldError::invalid(
        &FieldPath::new("spec").child("healthCheckNodePort"),
        port,
        format!("failed to allocate requested HealthCheck NodePort {port}: provided port is already allocated"),
    )
}

/// A range with nothing left to allocate (Kubernetes answers these as
/// internal errors, HTTP 500; the control plane maps them to
/// `ResourceExhausted`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Exhausted {
    /// Every ClusterIP of the service CIDR is in use.
    #[error("Internal error occurred: failed to allocate a serviceIP: range is full")]
    ClusterIps,
    /// Every node port of the range is in use.
    #[error("Internal error occurred: failed to allocate a nodePort: range is full")]
    NodePorts,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wording() {
        assert_eq!(
            cluster_ip_in_use(&["10.96.0.5".into()], "10.96.0.5").to_string(),
            r#"spec.clusterIPs: Invalid value: ["10.96.0.5"]: failed to allocate IP 10.96.0.5: provided IP is already allocated"#
        );
        assert_eq!(
            node_port_in_use(1, 30080).to_string(),
            "spec.ports[1].nodePort: Invalid value: 30080: provided port is already allocated"
        );
        assert_eq!(
            Exhausted::NodePorts.to_string(),
            "Internal error occurred: failed to allocate a nodePort: range is full"
        );
    }
}
