//! `TypeMeta` and `ObjectMeta` in their `meta/v1` JSON shapes.
//!
//! Contract: the fields weft supports are plain fields, serialized as
//! Kubernetes does (empty strings, zero and empty maps omitted). The
//! metadata fields Kubernetes defines but weft does not support
//! (`generateName`, `ownerReferences`, `finalizers`, `deletionTimestamp`,
//! `deletionGracePeriodSeconds`, `managedFields`, `selfLink`) decode into
//! [`Refused`] markers so validation refuses them by name; they are never
//! serialized. Any other field is unknown and refused by the manifest parser.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::values::Refused;

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// The `apiVersion` and `kind` every object starts with.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TypeMeta {
    /// `v1`, `networking.k8s.io/v1`, `discovery.k8s.io/v1`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    /// `Service`, `NetworkPolicy`, ...
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
}

/// An object's metadata (`metadata`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// The object's name, unique per kind and namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The namespace (empty for Namespaces).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Labels, matched by selectors.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations: free-form data kept with the object.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Set by the control plane on create.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// The store revision of this version of the object, set by the control
    /// plane.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
    /// Bumped by the control plane when the spec changes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: i64,
    /// RFC 3339 time of creation (UTC, seconds), set by the control plane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,

    /// Refused: weft needs explicit names.
    #[serde(default, skip_serializing)]
    pub generate_name: Option<Refused>,
    /// Refused: weft has no garbage collector.
    #[serde(default, skip_serializing)]
    pub owner_references: Option<Refused>,
    /// Refused: weft deletes at once.
    #[serde(default, skip_serializing)]
    pub finalizers: Option<Refused>,
    /// Refused: set by an API server only.
    #[serde(default, skip_serializing)]
    pub deletion_timestamp: Option<Refused>,
    /// Refused: set by an API server only.
    #[serde(default, skip_serializing)]
    pub deletion_grace_period_seconds: Option<Refused>,
    /// Refused: weft keeps no server-side-apply field owners.
    #[serde(default, skip_serializing)]
    pub managed_fields: Option<Refused>,
    /// Refused: removed from Kubernetes.
    #[serde(default, skip_serializing)]
    pub self_link: Option<Refused>,
}

impl ObjectMeta {
    /// Metadata with a name and namespace.
    pub fn named(namespace: &str, name: &str) -> Self {
        ObjectMeta {
            name: name.to_string(),
            namespace: namespace.to_string(),
            ..Default::default()
        }
    }

    /// The refused fields present, as `(json name, what to do instead)`.
    pub fn refused_fields(&self) -> Vec<(&'static str, &'static str)> {
        let mut out = Vec::new();
        let mut check = |present: bool, name: &'static str, why: &'static str| {
            if present {
                out.push((name, why));
            }
        };
        check(
            self.generate_name.is_some(),
            "generateName",
            "weft does not generate names: set metadata.name",
        );
        check(
            self.owner_references.is_some(),
            "ownerReferences",
            "weft has no garbage collector",
        );
        check(
            self.finalizers.is_some(),
            "finalizers",
            "weft deletes objects at once",
        );
        check(
            self.deletion_timestamp.is_some(),
            "deletionTimestamp",
            "set by the control plane only",
        );
        check(
            self.deletion_grace_period_seconds.is_some(),
            "deletionGracePeriodSeconds",
            "set by the control plane only",
        );
        check(
            self.managed_fields.is_some(),
            "managedFields",
            "weft keeps no field managers",
        );
        check(
            self.self_link.is_some(),
            "selfLink",
            "removed from Kubernetes",
        );
        out
    }
}
