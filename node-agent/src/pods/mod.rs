//! Pods on this node: addresses from the node's pod CIDR (persisted, so a
//! restarted agent keeps every pod's address), a persistent TUN in each
//! pod's network namespace, attached to the data plane.
//!
//! STATUS: interface stub; being written.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use ipnet::IpNet;

use crate::dataplane::Dataplane;

/// Errors of pod management.
#[derive(Debug, thiserror::Error)]
pub enum PodError {
    /// Not implemented yet.
    #[error("pod management is not available yet")]
    Unavailable,
}

/// Manages this node's pods.
#[derive(Debug)]
pub struct PodManager {
    _private: (),
}

impl PodManager {
    /// Load the pod records from `state_dir`, re-attach every pod whose
    /// namespace and TUN still exist, and drop the records of the others.
    pub async fn open(
        _state_dir: &Path,
        _node_cidr: IpNet,
        _host_address: IpAddr,
        _mtu: u32,
        _dataplane: Arc<Dataplane>,
    ) -> Result<PodManager, PodError> {
        Err(PodError::Unavailable)
    }
}
