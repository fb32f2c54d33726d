//! The gRPC services: thin adapters from `weft.v1` messages to the
//! [`Registry`](crate::registry::Registry), plus authorization. Every
//! refusal is a domain error that [`crate::status`] turns into a precise
//! gRPC status.

mod admin;
mod cluster;
mod objects;
mod watch;

pub use admin::AdminService;
pub use cluster::ClusterService;
pub use watch::{WatchError, LINGER, MAX_BATCH, PART_BYTES, SNAPSHOT_PART};
