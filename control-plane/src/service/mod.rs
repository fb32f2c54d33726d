//! The gRPC services: thin adapters from `weft.v1` messages to the
//! [`Registry`](crate::registry::Registry), plus authorization. Every
//! refusal becomes a precise gRPC status through
//! [`RegistryError::into_status`](crate::registry::RegistryError::into_status).

mod admin;
mod cluster;
mod watch;

pub use admin::AdminService;
pub use cluster::ClusterService;
pub use watch::{LINGER, MAX_BATCH, SNAPSHOT_PART};
