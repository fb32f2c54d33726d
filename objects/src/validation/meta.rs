//! Metadata, label and selector validation (Kubernetes' `ValidateObjectMeta`,
//! `ValidateLabels`, `ValidateLabelSelector`), and the port checks several
//! kinds share.

use std::collections::BTreeMap;

use crate::field::{FieldError, FieldPath};
use crate::meta::ObjectMeta;
use crate::names::{is_label_key, is_label_value, is_port_name, is_port_num};
use crate::selector::LabelSelector;
use crate::values::{IntOrString, Protocol, SelectorOperator};

/// The largest total size of an object's annotations (keys and values).
const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// How an object's name is checked.
pub(crate) type NameCheck = fn(&str) -> Vec<String>;

/// `ValidateObjectMeta` for a create: name (with `name_check`), namespace
/// (required when `namespaced`, forbidden otherwise), generation, labels,
/// annotations, and the metadata fields weft refuses.
pub(crate) fn object_meta(
    meta: &ObjectMeta,
    namespaced: bool,
    name_check: NameCheck,
) -> Vec<FieldError> {
    let path = FieldPath::new("metadata");
    let mut errs = Vec::new();
    if meta.name.is_empty() {
        errs.push(FieldError::required(
            &path.child("name"),
            "name or generateName is required",
        ));
    } else {
        for msg in name_check(&meta.name) {
            errs.push(FieldError::invalid(&path.child("name"), &meta.name, msg));
        }
    }
    errs.extend(common(meta, namespaced));
    errs
}

fn common(meta: &ObjectMeta, namespaced: bool) -> Vec<FieldError> {
    let path = FieldPath::new("metadata");
    let mut errs = Vec::new();
    if namespaced {
        if meta.namespace.is_empty() {
            errs.push(FieldError::required(&path.child("namespace"), ""));
        } else {
            for msg in crate::names::is_dns1123_label(&meta.namespace) {
                errs.push(FieldError::invalid(
                    &path.child("namespace"),
                    &meta.namespace,
                    msg,
                ));
            }
        }
    } else if !meta.namespace.is_empty() {
        errs.push(FieldError::forbidden(
            &path.child("namespace"),
            "not allowed on this type",
        ));
    }
    if meta.generation < 0 {
        errs.push(FieldError::invalid(
            &path.child("generation"),
            meta.generation,
            "must be greater than or equal to 0",
        ));
    }
    errs.extend(validate_labels(&meta.labels, &path.child("labels")));
    errs.extend(annotations(&meta.annotations, &path.child("annotations")));
    for (field, why) in meta.refused_fields() {
        errs.push(FieldError::forbidden(
            &path.child(field),
            format!("not supported by weft: {why}"),
        ));
    }
    errs
}

/// The update half of `ValidateObjectMetaUpdate`: the immutable fields
/// (name, namespace, uid, creationTimestamp), and generation may not go
/// down. Callers add the create checks of the new object.
pub(crate) fn object_meta_update(new: &ObjectMeta, old: &ObjectMeta) -> Vec<FieldError> {
    let path = FieldPath::new("metadata");
    let mut errs = Vec::new();
    if new.generation < old.generation {
        errs.push(FieldError::invalid(
            &path.child("generation"),
            new.generation,
            "must not be decremented",
        ));
    }
    let immutable = |field: &str, new_v: &str, old_v: &str| {
        (new_v != old_v)
            .then(|| FieldError::invalid(&path.child(field), new_v, "field is immutable"))
    };
    errs.extend(immutable("name", &new.name, &old.name));
    errs.extend(immutable("namespace", &new.namespace, &old.namespace));
    errs.extend(immutable("uid", &new.uid, &old.uid));
    if new.creation_timestamp != old.creation_timestamp {
        let value = new.creation_timestamp.clone().unwrap_or_default();
        errs.push(FieldError::invalid(
            &path.child("creationTimestamp"),
            value,
            "field is immutable",
        ));
    }
    errs
}

/// `ValidateLabels`: each key a label key, each value a label value; errors
/// at `path` itself (Kubernetes does not add the key to the path).
pub fn validate_labels(labels: &BTreeMap<String, String>, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (k, v) in labels {
        errs.extend(label_name(k, path));
        for msg in is_label_value(v) {
            errs.push(FieldError::invalid(path, v, msg));
        }
    }
    errs
}

fn label_name(key: &str, path: &FieldPath) -> Vec<FieldError> {
    is_label_key(key)
        .into_iter()
        .map(|msg| FieldError::invalid(path, key, msg))
        .collect()
}

fn annotations(annotations: &BTreeMap<String, String>, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut total = 0usize;
    for (k, v) in annotations {
        for msg in is_label_key(&k.to_lowercase()) {
            errs.push(FieldError::invalid(path, k, msg));
        }
        total = total.saturating_add(k.len()).saturating_add(v.len());
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(FieldError::with(
            path,
            crate::field::ErrorType::TooLong,
            crate::field::BadValue::None,
            format!("may not be more than {TOTAL_ANNOTATION_SIZE_LIMIT} bytes"),
        ));
    }
    errs
}

/// `ValidateLabelSelector`: `matchLabels` as labels; each expression's
/// operator, values (required for In/NotIn, forbidden for
/// Exists/DoesNotExist, each a label value) and key.
pub fn validate_label_selector(sel: &LabelSelector, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = validate_labels(&sel.match_labels, &path.child("matchLabels"));
    for (i, expr) in sel.match_expressions.iter().enumerate() {
        let p = path.child("matchExpressions").index(i);
        match &expr.operator {
            SelectorOperator::In | SelectorOperator::NotIn => {
                if expr.values.is_empty() {
                    errs.push(FieldError::required(
                        &p.child("values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            SelectorOperator::Exists | SelectorOperator::DoesNotExist => {
                if !expr.values.is_empty() {
                    errs.push(FieldError::forbidden(
                        &p.child("values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            SelectorOperator::Other(op) => {
                errs.push(FieldError::invalid(
                    &p.child("operator"),
                    op,
                    "not a valid selector operator",
                ));
            }
        }
        errs.extend(label_name(&expr.key, &p.child("key")));
        for (vi, v) in expr.values.iter().enumerate() {
            for msg in is_label_value(v) {
                errs.push(FieldError::invalid(&p.child("values").index(vi), v, msg));
            }
        }
    }
    errs
}

/// A port protocol: required; TCP or UDP. SCTP, which Kubernetes accepts, is
/// refused naming weft.
pub(crate) fn protocol(p: &Option<Protocol>, path: &FieldPath) -> Vec<FieldError> {
    match p {
        None => vec![FieldError::required(path, "")],
        Some(p) if p.is_empty() => vec![FieldError::required(path, "")],
        Some(Protocol::Tcp | Protocol::Udp) => Vec::new(),
        Some(Protocol::Sctp) => vec![FieldError::with(
            path,
            crate::field::ErrorType::NotSupported,
            "SCTP".into(),
            format!(
                "weft does not support SCTP: {}",
                crate::field::supported_values(&["TCP", "UDP"])
            ),
        )],
        Some(other) => vec![FieldError::not_supported(
            path,
            other.as_str(),
            &["TCP", "UDP"],
        )],
    }
}

/// A port number (1-65535), bad values reported as given.
pub(crate) fn port_number(port: i64, path: &FieldPath) -> Vec<FieldError> {
    is_port_num(port)
        .into_iter()
        .map(|msg| FieldError::invalid(path, port, msg))
        .collect()
}

/// Kubernetes' `ValidatePortNumOrName`.
pub(crate) fn port_num_or_name(port: &IntOrString, path: &FieldPath) -> Vec<FieldError> {
    match port {
        IntOrString::Int(n) => port_number(i64::from(*n), path),
        IntOrString::Str(name) => is_port_name(name)
            .into_iter()
            .map(|msg| FieldError::invalid(path, name, msg))
            .collect(),
    }
}

/// Each message of a name check as an `Invalid value` at `path`.
pub(crate) fn name_errors(value: &str, path: &FieldPath, check: NameCheck) -> Vec<FieldError> {
    check(value)
        .into_iter()
        .map(|msg| FieldError::invalid(path, value, msg))
        .collect()
}
