//! Pods on this node: addresses from the node's pod CIDR (persisted, so a
//! restarted agent keeps every pod's address), a persistent TUN in each
//! pod's network namespace, attached to the data plane.
//!
//! Contract:
//! - Addresses ([`AddressPool`], pure): the CIDR's first host address is the
//!   node's (`weft0`); pods get the lowest free address from `.2` up, never
//!   the network or (IPv4) broadcast address, never two pods the same.
//! - Every allocation is written to `<state-dir>/pods.json` (atomically)
//!   *before* the pod's TUN is created, so a crash never hands an address
//!   out twice. A restarted agent ([`PodManager::open`]) re-attaches every
//!   pod whose namespace and interface still exist, keeping its address,
//!   and drops (logging why) the records of the others.
//! - [`PodManager::add`] validates everything first, then allocates,
//!   creates the namespace if asked, creates and configures the TUN
//!   (address /32 or /128, default route, MTU) and attaches it to the data
//!   plane. Any failure rolls back what this call made: no record, no
//!   address, no interface or namespace is left behind.
//! - Adding an id that exists: if the request is identical (same namespace,
//!   interface, creation mode and metadata) it is Ok and returns the
//!   existing pod, so a retried CNI ADD is harmless; otherwise it is
//!   [`PodError::AlreadyExists`].
//! - [`PodManager::del`] is idempotent: an unknown id is `Ok(None)`; a
//!   namespace that is gone already is fine. It detaches, deletes the TUN,
//!   deletes the namespace if the agent created it, and frees the address.
//!   If a kernel step fails, the record stays, so a retry finishes the job.
//! - A pod in a namespace the agent creates gets `/etc/netns/<id>/resolv.conf`
//!   (cluster DNS and the search list, [`PodDns`]) when the agent is given
//!   one ([`PodManager::with_dns`]), removed with the pod (`resolv.rs`).
//! - Pod operations are serialised (one at a time per node); each takes
//!   milliseconds.
//! - The data plane is reached through [`PortSink`] (implemented by
//!   [`crate::engine::Dataplane`]; [`MemoryPortSink`] for tests).

mod alloc;
mod manager;
mod record;
mod resolv;
mod sink;
mod store;

use std::path::PathBuf;

use ipnet::IpNet;

pub use alloc::{AddressPool, Unassignable};
pub use manager::PodManager;
pub use record::{validate_id, AddPod, PodRecord, MAX_ID_LEN};
pub use resolv::PodDns;
pub use sink::{MemoryPortSink, PortSink, SinkEvent};
pub use store::{decode as decode_state, encode as encode_state, PodState, FILE_NAME};

use crate::engine::DataplaneError;
use crate::kernel::netns::NetNsError;
use crate::kernel::tun::KernelError;

/// Errors of pod management.
#[derive(Debug, thiserror::Error)]
pub enum PodError {
    /// The request is malformed: a bad id, interface name, path or field.
    #[error("{0}")]
    Invalid(String),
    /// A different pod of that id exists, or the interface belongs to another pod.
    #[error("{0}")]
    AlreadyExists(String),
    /// Every address of the node CIDR is in use.
    #[error("no free address in node CIDR {cidr}: all {capacity} pod addresses are in use")]
    Exhausted {
        /// The node CIDR.
        cidr: IpNet,
        /// How many pod addresses it holds.
        capacity: u128,
    },
    /// The pod's network namespace could not be opened, created or deleted.
    #[error(transparent)]
    NetNs(#[from] NetNsError),
    /// Creating, configuring or deleting the pod's TUN failed.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// The data plane refused the pod's port, or is not running.
    #[error("attaching pod {id} to the data plane: {cause}")]
    Dataplane {
        /// The pod id.
        id: String,
        /// The data plane's error.
        cause: DataplaneError,
    },
    /// The state file cannot be read, written, or is corrupt.
    #[error("pod state {}: {reason}", path.display())]
    State {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The manager's configuration is impossible (CIDR, node address, MTU).
    #[error("pod manager configuration: {0}")]
    Config(String),
}
