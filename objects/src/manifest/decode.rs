//! Strict decoding of one JSON value into a typed object.
//!
//! Contract: like Kubernetes' strict decoding, every field the type does
//! not know is reported, all of them, each with its full path in
//! Kubernetes' form (`spec.ports[0].portz`); a value of the wrong type is
//! reported with its path (`spec.ports[0].port: invalid type: string "80",
//! expected i32`).

use serde::de::DeserializeOwned;
use serde_json::Value;

/// Why a value did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DecodeFailure {
    /// A value of the wrong type (or a missing required field).
    Type { path: String, message: String },
    /// Fields the type does not know.
    UnknownFields(Vec<String>),
}

/// Decodes `value` into `T`, refusing unknown fields.
pub(crate) fn decode_strict<T: DeserializeOwned>(value: Value) -> Result<T, DecodeFailure> {
    let mut unknown = Vec::new();
    let decoded = {
        let mut record = |path: serde_ignored::Path<'_>| unknown.push(ignored_path(&path));
        let de = serde_ignored::Deserializer::new(value, &mut record);
        serde_path_to_error::deserialize::<_, T>(de)
    };
    match decoded {
        Err(e) => Err(DecodeFailure::Type {
            path: error_path(e.path()),
            message: e.inner().to_string(),
        }),
        Ok(_) if !unknown.is_empty() => Err(DecodeFailure::UnknownFields(unknown)),
        Ok(v) => Ok(v),
    }
}

fn ignored_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        Path::Map { parent, key } => {
            let p = ignored_path(parent);
            if p.is_empty() {
                key.clone()
            } else {
                format!("{p}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_path(parent),
    }
}

fn error_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::service::Service;

    #[test]
    fn unknown_fields_all_reported_with_paths() {
        let v = serde_json::json!({
            "metadata": {"name": "a", "labelz": {}},
            "spec": {"portz": 1, "ports": [{"port": 80}, {"port": 81, "targetPortt": 1}]}
        });
        match decode_strict::<Service>(v) {
            Err(DecodeFailure::UnknownFields(f)) => {
                assert_eq!(
                    f,
                    vec!["metadata.labelz", "spec.ports[1].targetPortt", "spec.portz"]
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn type_errors_carry_paths() {
        let v = serde_json::json!({"spec": {"ports": [{"port": "80"}]}});
        match decode_strict::<Service>(v) {
            Err(DecodeFailure::Type { path, message }) => {
                assert_eq!(path, "spec.ports[0].port");
                assert!(message.contains("invalid type: string \"80\""), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refused_fields_are_not_unknown() {
        let v = serde_json::json!({"metadata": {"name": "a", "generateName": "a-", "ownerReferences": [{"x": 1}]}});
        let s: Service = decode_strict(v).unwrap();
        assert!(s.metadata.generate_name.is_some());
        assert!(s.metadata.owner_references.is_some());
    }
}
