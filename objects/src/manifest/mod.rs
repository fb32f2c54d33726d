//! Manifests: YAML or JSON text in, [`Object`]s out, and back.
//!
//! Contract:
//! - [`parse_manifests`] reads YAML (multi-document, `---`) or a JSON stream,
//!   skips empty documents, expands `kind: List` (and typed lists such as
//!   `ServiceList`, whose items may omit `apiVersion`/`kind`), and decodes
//!   each object strictly: an unsupported `apiVersion`/`kind` is refused
//!   naming the supported ones, unknown fields are refused with their paths
//!   (`strict decoding error: unknown field "spec.portz"`). Every error names
//!   the document (0-based, counting empty ones) and, inside a list, the item.
//! - Parsing is all-or-nothing: the first error is returned and no object.
//! - It never panics, whatever the input.
//! - Output (`output.rs`) prints objects as kubectl does: keys sorted, JSON
//!   indented by 4 spaces, YAML in kubectl's block style.
//!
//! Files: `documents.rs` (text to JSON values), `decode.rs` (strict typed
//! decoding), `output.rs` (JSON/YAML printing).

mod decode;
mod documents;
mod output;

use std::fmt;

use serde_json::Value;

pub use output::{list_value, to_json, to_json_value, to_yaml, OutputError};

use crate::object::Object;
use decode::{decode_strict, DecodeFailure};

/// The `(apiVersion, kind)` pairs weft accepts.
pub const SUPPORTED: [(&str, &str); 5] = [
    ("v1", "Namespace"),
    ("v1", "Pod"),
    ("v1", "Service"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("discovery.k8s.io/v1", "EndpointSlice"),
];

/// Where in the input an error is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The document's index in the stream (0-based, empty documents counted).
    pub document: usize,
    /// The item's index inside a `List` document.
    pub item: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "document {}", self.document)?;
        if let Some(i) = self.item {
            write!(f, ", item {i}")?;
        }
        Ok(())
    }
}

/// What went wrong in a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestProblem {
    /// Not valid YAML/JSON.
    Syntax(String),
    /// A document that is not an object (a list, a string...).
    NotAnObject(&'static str),
    /// No `apiVersion`.
    MissingApiVersion,
    /// No `kind`.
    MissingKind,
    /// An `apiVersion`/`kind` weft does not serve.
    Unsupported {
        /// The apiVersion given.
        api_version: String,
        /// The kind given.
        kind: String,
    },
    /// Fields the kind does not have, by path.
    UnknownFields(Vec<String>),
    /// A value of the wrong type (or a missing required field), at a path.
    Decode {
        /// The field path (`spec.ports[0].port`).
        path: String,
        /// The decoder's message.
        message: String,
    },
}

/// A manifest that cannot be read, with where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {problem}")]
pub struct ManifestError {
    /// Which document (and list item).
    pub location: Location,
    /// What is wrong.
    pub problem: ManifestProblem,
}

impl fmt::Display for ManifestProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManifestProblem::Syntax(m) => f.write_str(m),
            ManifestProblem::NotAnObject(found) => write!(f, "expected an object, found {found}"),
            ManifestProblem::MissingApiVersion => f.write_str("apiVersion not set"),
            ManifestProblem::MissingKind => f.write_str("kind not set"),
            ManifestProblem::Unsupported { api_version, kind } => {
                let supported: Vec<String> = SUPPORTED
                    .iter()
                    .map(|(v, k)| format!("{k} ({v})"))
                    .collect();
                write!(
                    f,
                    "no matches for kind {kind:?} in version {api_version:?}: weft serves {} and List",
                    supported.join(", ")
                )
            }
            ManifestProblem::UnknownFields(fields) => {
                let each: Vec<String> = fields
                    .iter()
                    .map(|p| format!("unknown field {p:?}"))
                    .collect();
                write!(f, "strict decoding error: {}", each.join(", "))
            }
            ManifestProblem::Decode { path, message } if path.is_empty() => f.write_str(message),
            ManifestProblem::Decode { path, message } => write!(f, "{path}: {message}"),
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Parses YAML or JSON manifests into objects (see the module contract).
pub fn parse_manifests(text: &str) -> Result<Vec<Object>, ManifestError> {
    let mut objects = Vec::new();
    for (document, value) in documents::documents(text) {
        let at = |item| Location { document, item };
        let value = value.map_err(|m| ManifestError {
            location: at(None),
            problem: ManifestProblem::Syntax(m),
        })?;
        if value.is_null() {
            continue;
        }
        expand(value, document, &mut objects)?;
    }
    Ok(objects)
}

/// Adds the object (or the items of the list) in `value` to `out`.
fn expand(value: Value, document: usize, out: &mut Vec<Object>) -> Result<(), ManifestError> {
    let fail = |item, problem| ManifestError {
        location: Location { document, item },
        problem,
    };
    let (api_version, kind) = type_meta(&value).map_err(|p| fail(None, p))?;
    let list_of = match (api_version.as_str(), kind.as_str()) {
        ("v1", "List") => Some(None),
        (v, k) => k.strip_suffix("List").and_then(|element| {
            SUPPORTED
                .iter()
                .find(|(sv, sk)| *sv == v && *sk == element)
                .map(|(sv, sk)| Some((*sv, *sk)))
        }),
    };
    let Some(element) = list_of else {
        out.push(decode_object(value, &api_version, &kind).map_err(|p| fail(None, p))?);
        return Ok(());
    };
    let Value::Object(mut list) = value else {
        return Err(fail(None, ManifestProblem::NotAnObject("a non-object")));
    };
    let items = match list.remove("items") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => {
            let message = format!("invalid type: {}, expected a list", type_name(&other));
            return Err(fail(
                None,
                ManifestProblem::Decode {
                    path: "items".into(),
                    message,
                },
            ));
        }
    };
    for (i, mut item) in items.into_iter().enumerate() {
        if let (Some((v, k)), Value::Object(fields)) = (element, &mut item) {
            fields
                .entry("apiVersion")
                .or_insert_with(|| Value::String(v.to_string()));
            fields
                .entry("kind")
                .or_insert_with(|| Value::String(k.to_string()));
        }
        let (iv, ik) = type_meta(&item).map_err(|p| fail(Some(i), p))?;
        if ik.ends_with("List") {
            return Err(fail(
                Some(i),
                ManifestProblem::Unsupported {
                    api_version: iv,
                    kind: ik,
                },
            ));
        }
        out.push(decode_object(item, &iv, &ik).map_err(|p| fail(Some(i), p))?);
    }
    Ok(())
}

/// The `apiVersion` and `kind` of a document.
fn type_meta(value: &Value) -> Result<(String, String), ManifestProblem> {
    let Value::Object(fields) = value else {
        return Err(ManifestProblem::NotAnObject(type_name(value)));
    };
    let text = |name: &str| -> Result<Option<String>, ManifestProblem> {
        match fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(ManifestProblem::Decode {
                path: name.to_string(),
                message: format!("invalid type: {}, expected a string", type_name(other)),
            }),
        }
    };
    let api_version = text("apiVersion")?;
    let kind = text("kind")?;
    match (api_version, kind) {
        (_, None) => Err(ManifestProblem::MissingKind),
        (None, Some(_)) => Err(ManifestProblem::MissingApiVersion),
        (Some(v), Some(k)) => Ok((v, k)),
    }
}

fn decode_object(value: Value, api_version: &str, kind: &str) -> Result<Object, ManifestProblem> {
    fn typed<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, ManifestProblem> {
        decode_strict(value).map_err(|f| match f {
            DecodeFailure::Type { path, message } => ManifestProblem::Decode { path, message },
            DecodeFailure::UnknownFields(fields) => ManifestProblem::UnknownFields(fields),
        })
    }
    Ok(match (api_version, kind) {
        ("v1", "Namespace") => Object::Namespace(typed(value)?),
        ("v1", "Pod") => Object::Pod(typed(value)?),
        ("v1", "Service") => Object::Service(typed(value)?),
        ("networking.k8s.io/v1", "NetworkPolicy") => Object::NetworkPolicy(typed(value)?),
        ("discovery.k8s.io/v1", "EndpointSlice") => Object::EndpointSlice(typed(value)?),
        _ => {
            return Err(ManifestProblem::Unsupported {
                api_version: api_version.into(),
                kind: kind.into(),
            });
        }
    })
}
