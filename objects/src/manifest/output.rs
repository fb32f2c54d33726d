//! Printing objects as kubectl prints them (`-o json`, `-o yaml`).
//!
//! Contract: the JSON value of an object carries its kind's `apiVersion`
//! and `kind` (whatever the struct held) and has every map's keys sorted,
//! as kubectl's printers do; JSON is indented by 4 spaces, YAML uses block
//! style with list items at their key's indentation. Printing what
//! [`parse_manifests`](super::parse_manifests) read and parsing it again
//! gives the same object.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::object::Object;

/// An object that could not be printed (not expected for weft's types).
#[derive(Debug, thiserror::Error)]
#[error("cannot print the object: {0}")]
pub struct OutputError(String);

fn sorted(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            let mut out = Map::new();
            for (k, v) in entries {
                out.insert(k, sorted(v));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

fn value_of<T: Serialize>(obj: &T, api_version: &str, kind: &str) -> Result<Value, OutputError> {
    let mut v = serde_json::to_value(obj).map_err(|e| OutputError(e.to_string()))?;
    if let Value::Object(m) = &mut v {
        m.insert("apiVersion".into(), Value::String(api_version.into()));
        m.insert("kind".into(), Value::String(kind.into()));
    }
    Ok(sorted(v))
}

/// The object's JSON value, as the Kubernetes API returns it.
pub fn to_json_value(obj: &Object) -> Result<Value, OutputError> {
    let k = obj.kind();
    let (v, kind) = (k.api_version(), k.kind_name());
    match obj {
        Object::Namespace(o) => value_of(o, v, kind),
        Object::Pod(o) => value_of(o, v, kind),
        Object::Service(o) => value_of(o, v, kind),
        Object::NetworkPolicy(o) => value_of(o, v, kind),
        Object::EndpointSlice(o) => value_of(o, v, kind),
    }
}

/// kubectl's `-o json` of several objects: a `v1` `List`.
pub fn list_value(objects: &[Object]) -> Result<Value, OutputError> {
    let items = objects
        .iter()
        .map(to_json_value)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(serde_json::json!({
        "apiVersion": "v1",
        "items": items,
        "kind": "List",
        "metadata": {"resourceVersion": ""},
    }))
}

/// Pretty JSON (4-space indentation), as `kubectl get -o json`.
pub fn to_json(value: &Value) -> Result<String, OutputError> {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    value
        .serialize(&mut ser)
        .map_err(|e| OutputError(e.to_string()))?;
    String::from_utf8(buf).map_err(|e| OutputError(e.to_string()))
}

/// YAML, as `kubectl get -o yaml`.
pub fn to_yaml(value: &Value) -> Result<String, OutputError> {
    yaml_serde::to_string(value).map_err(|e| OutputError(e.to_string()))
}
