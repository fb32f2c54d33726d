//! `Namespace` (v1).

use serde::{Deserialize, Serialize};

use crate::meta::ObjectMeta;
use crate::values::NamespacePhase;

/// The label Kubernetes (and weft) sets on every namespace to its name.
pub const LABEL_METADATA_NAME: &str = "kubernetes.io/metadata.name";

/// A namespace. weft keeps its name and labels (matched by NetworkPolicy
/// `namespaceSelector`s); `spec.finalizers` is kept as given and has no
/// effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Namespace {
    /// Always `v1`.
    #[serde(default)]
    pub api_version: String,
    /// Always `Namespace`.
    #[serde(default)]
    pub kind: String,
    /// Name (a DNS-1123 label) and labels.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Kept for compatibility; no effect in weft.
    #[serde(default)]
    pub spec: NamespaceSpec,
    /// `phase: Active`.
    #[serde(default)]
    pub status: NamespaceStatus,
}

/// `spec` of a Namespace.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSpec {
    /// Kept as given; weft does not wait for finalizers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
}

/// `status` of a Namespace.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceStatus {
    /// `Active` once created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<NamespacePhase>,
}

impl Namespace {
    /// `v1`.
    pub const API_VERSION: &'static str = "v1";
    /// `Namespace`.
    pub const KIND: &'static str = "Namespace";

    /// A namespace with this name.
    pub fn new(name: &str) -> Self {
        Namespace {
            metadata: ObjectMeta::named("", name),
            ..Default::default()
        }
    }
}

impl Default for Namespace {
    fn default() -> Self {
        Namespace {
            api_version: Self::API_VERSION.into(),
            kind: Self::KIND.into(),
            metadata: ObjectMeta::default(),
            spec: NamespaceSpec::default(),
            status: NamespaceStatus::default(),
        }
    }
}
