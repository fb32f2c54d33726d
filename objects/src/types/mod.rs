//! The object types, in their Kubernetes JSON shapes.
//!
//! Contract: field names, nesting and omission follow the Kubernetes
//! types' JSON tags: Go `omitempty` fields are omitted when empty, fields
//! Kubernetes always prints are always printed (`port`, `containerPort`,
//! `podSelector`, `status.loadBalancer`, an EndpointSlice's `endpoints` and
//! `ports` as `null` when empty). Each top-level type's `Default` carries its
//! `apiVersion` and `kind`.

pub mod endpoint_slice;
pub mod namespace;
pub mod network_policy;
pub mod pod;
pub mod service;
