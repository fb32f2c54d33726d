//! The cluster's Kubernetes objects as weft knows them: `Namespace`, `Pod`,
//! `Service` (v1), `NetworkPolicy` (networking.k8s.io/v1) and
//! `EndpointSlice` (discovery.k8s.io/v1).
//!
//! Contract:
//! - Pure: no IO, no clock, no randomness. Every function is deterministic
//!   and never panics on any input (manifest text, objects built by hand).
//! - Types are the Kubernetes v1 JSON shapes (camelCase, empty fields
//!   omitted as Kubernetes omits them), so a user's manifests apply
//!   unchanged and `-o json` output is what `kubectl` prints.
//! - [`parse_manifests`] reads YAML/JSON manifests strictly (unknown fields
//!   refused with their paths); [`defaults`] fills what the API server
//!   fills; [`validation`] refuses what the API server refuses, with its
//!   exact `field.Error` messages; [`endpoints`] derives the EndpointSlices
//!   the Kubernetes EndpointSlice controller would; [`selector`] matches
//!   labels and parses `-l` selectors.
//!
//! The order of use in a control plane, for a create:
//! `parse_manifests` -> [`defaults::apply`] -> [`validation::validate`] ->
//! allocate ClusterIPs/NodePorts (a store transaction, outside this crate)
//! -> store. For an update, [`defaults::prepare_update`] copies the old
//! object's system metadata and allocated values first, and
//! [`validation::validate_update`] checks immutable fields.
//!
//! YAML crate: `yaml_serde`, the continuation of `serde_yaml` maintained by
//! The YAML Organization (`serde_yaml` itself is archived). It keeps
//! serde_yaml's API and its libyaml-derived parser (with alias-expansion
//! and recursion limits), fits the workspace's rust-version (1.82 <= 1.85),
//! and needs no C toolchain. `serde_norway`/`serde_yaml_ng` are forks with
//! the same parser but smaller maintainership; `serde-saphyr` is a newer
//! pure-Rust parser whose rust-version (1.89) is above the workspace's.
//!
//! Files: `field.rs` (field paths and errors), `names.rs` / `ip.rs` (syntax
//! checks), `values.rs` (enumerations, IntOrString), `meta.rs`,
//! `types/` (the kinds), `object.rs` (`Object`, `Kind`), `selector/`, `policy/`,
//! `manifest/`, `defaults.rs`, `validation/`, `endpoints/`.

#![forbid(unsafe_code)]

pub mod defaults;
pub mod endpoints;
pub mod field;
pub mod ip;
pub mod manifest;
pub mod meta;
pub mod names;
pub mod object;
pub mod policy;
pub mod selector;
pub mod types;
pub mod validation;
pub mod values;

pub use field::{FieldError, FieldPath};
pub use manifest::{parse_manifests, ManifestError};
pub use meta::{ObjectMeta, TypeMeta};
pub use object::{Kind, Object};
pub use selector::{LabelSelector, LabelSelectorRequirement, Selector};
pub use types::endpoint_slice::EndpointSlice;
pub use types::namespace::Namespace;
pub use types::network_policy::NetworkPolicy;
pub use types::pod::Pod;
pub use types::service::Service;
pub use values::IntOrString;
