//! The weft.v1 protobuf API: messages and tonic clients/servers generated
//! from `proto/weft/v1/*.proto`. This crate holds generated code only,
//! except `WatchResponse` (`watch_response.rs`: the same wire message,
//! written by hand so that a server can send events it encoded once);
//! conversions to domain types live in the crates that use them.
//!
//! The `.proto` files are the contract; docs/api.md explains every call.

#![forbid(unsafe_code)]
#![allow(clippy::all, missing_docs)]

/// `weft.v1`: the `Cluster` and `Admin` services and their messages.
pub mod v1 {
    tonic::include_proto!("weft.v1");
    pub use crate::watch_response::WatchResponse;
}

mod watch_response;

/// The encoded `FileDescriptorSet` of `weft.v1`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("weft_v1_descriptor");
