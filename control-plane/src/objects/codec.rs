//! Objects as stored and as sent.
//!
//! Contract:
//! - The stored value of an object is its Kubernetes JSON (as
//!   `weft_objects` prints it: apiVersion, kind, sorted keys) without
//!   `metadata.resourceVersion`: the revision is the key's `mod_revision`,
//!   known only once the write committed.
//! - [`to_proto`] and [`decode`] put the revision back as
//!   `metadata.resourceVersion`, so every object a client sees carries the
//!   store revision it was written at.

use bytes::Bytes;
use serde_json::Value;
use weft_objects::{Kind, Object};
use weft_proto::v1;

use crate::registry::RegistryError;
use crate::store::KeyValue;

use super::keys;

/// The stored bytes of `obj`.
pub fn encode(obj: &Object) -> Result<Vec<u8>, RegistryError> {
    let mut value = weft_objects::manifest::to_json_value(obj)
        .map_err(|e| RegistryError::Corrupt(e.to_string()))?;
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    serde_json::to_vec(&value).map_err(|e| RegistryError::Corrupt(e.to_string()))
}

fn corrupt(key: &str, e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Corrupt(format!("stored object {key} is unreadable: {e}"))
}

/// The typed object of a stored key/value, with its resourceVersion.
pub fn decode(kv: &KeyValue) -> Result<Object, RegistryError> {
    let (kind, _, _) = keys::parse(&kv.key).ok_or_else(|| corrupt(&kv.key, "not an object key"))?;
    let mut obj = decode_kind(kind, &kv.value).map_err(|e| corrupt(&kv.key, e))?;
    obj.meta_mut().resource_version = kv.mod_revision.to_string();
    Ok(obj)
}

fn decode_kind(kind: Kind, bytes: &[u8]) -> Result<Object, serde_json::Error> {
    Ok(match kind {
        Kind::Namespace => Object::Namespace(serde_json::from_slice(bytes)?),
        Kind::Pod => Object::Pod(serde_json::from_slice(bytes)?),
        Kind::Service => Object::Service(serde_json::from_slice(bytes)?),
        Kind::NetworkPolicy => Object::NetworkPolicy(serde_json::from_slice(bytes)?),
        // Node is not an object kind; keys::parse never yields it.
        Kind::EndpointSlice | Kind::Node => Object::EndpointSlice(serde_json::from_slice(bytes)?),
    })
}

/// The `weft.v1.Object` of a stored key/value (a Put's new value, or a
/// Delete's last one), with `revision` and `metadata.resourceVersion` set
/// to `revision`.
pub fn to_proto(kv: &KeyValue, revision: u64) -> Result<v1::Object, RegistryError> {
    let (kind, ns, name) =
        keys::parse(&kv.key).ok_or_else(|| corrupt(&kv.key, "not an object key"))?;
    let mut value: Value = serde_json::from_slice(&kv.value).map_err(|e| corrupt(&kv.key, e))?;
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert(
            "resourceVersion".into(),
            Value::String(revision.to_string()),
        );
    }
    let json = serde_json::to_vec(&value).map_err(|e| corrupt(&kv.key, e))?;
    Ok(v1::Object {
        kind: kind.kind_name().to_string(),
        namespace: ns.to_string(),
        name: name.to_string(),
        revision,
        json: Bytes::from(json),
    })
}

/// The `weft.v1.Object` of a typed object (whose resourceVersion is set).
pub fn typed_to_proto(obj: &Object) -> Result<v1::Object, RegistryError> {
    let value = weft_objects::manifest::to_json_value(obj)
        .map_err(|e| RegistryError::Corrupt(e.to_string()))?;
    let json = serde_json::to_vec(&value).map_err(|e| RegistryError::Corrupt(e.to_string()))?;
    Ok(v1::Object {
        kind: obj.kind().kind_name().to_string(),
        namespace: obj.namespace().to_string(),
        name: obj.name().to_string(),
        revision: obj.meta().resource_version.parse().unwrap_or(0),
        json: Bytes::from(json),
    })
}
