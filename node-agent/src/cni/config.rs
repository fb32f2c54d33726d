//! The network configuration on stdin: the fields weft-cni reads, each
//! checked with the code the spec gives its failure. Every other field is
//! tolerated. Pure: no IO.

use std::collections::HashSet;
use std::path::PathBuf;

use serde_json::{Map, Value};
use weft_agent_api::DEFAULT_SOCKET;

use super::env::{check_container_id, Attachment};
use super::error::{code, CniError};
use super::version::CniVersion;

/// The longest configuration read from stdin.
pub const MAX_CONFIG_BYTES: usize = 4 << 20;

/// The fields of the network configuration weft-cni uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConf {
    /// The negotiated version (the configuration's `cniVersion`).
    pub version: CniVersion,
    /// The network's name.
    pub name: String,
    /// `agentSocket`, or [`DEFAULT_SOCKET`].
    pub agent_socket: PathBuf,
}

pub(super) fn config_object(stdin: &[u8]) -> Result<Map<String, Value>, CniError> {
    if stdin.iter().all(u8::is_ascii_whitespace) {
        return Err(CniError::new(
            code::DECODE_FAILURE,
            "no network configuration on stdin",
        ));
    }
    match serde_json::from_slice::<Value>(stdin) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(other) => Err(CniError::new(
            code::DECODE_FAILURE,
            format!(
                "the network configuration must be a JSON object, not {}",
                kind(&other)
            ),
        )),
        Err(e) => Err(CniError::new(
            code::DECODE_FAILURE,
            format!("the network configuration on stdin is not valid JSON: {e}"),
        )),
    }
}

pub(super) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(super) fn network_name(v: Option<&Value>) -> Result<String, CniError> {
    let name = match v {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s.as_str(),
        Some(other) => {
            return Err(CniError::new(
                code::DECODE_FAILURE,
                format!("name must be a string, not {}", kind(other)),
            ))
        }
    };
    if name.is_empty() {
        return Err(CniError::new(
            code::INVALID_CONFIG,
            "the network configuration has no name",
        ));
    }
    check_container_id(name)
        .map_err(|why| CniError::new(code::INVALID_CONFIG, format!("network name {why}")))?;
    Ok(name.into())
}

pub(super) fn agent_socket(v: Option<&Value>) -> Result<PathBuf, CniError> {
    match v {
        None | Some(Value::Null) => Ok(PathBuf::from(DEFAULT_SOCKET)),
        Some(Value::String(s)) if s.starts_with('/') && !s.contains('\0') => Ok(PathBuf::from(s)),
        Some(Value::String(s)) => Err(CniError::new(
            code::INVALID_CONFIG,
            format!("agentSocket {s:?} is not an absolute path (e.g. {DEFAULT_SOCKET})"),
        )),
        Some(other) => Err(CniError::new(
            code::DECODE_FAILURE,
            format!("agentSocket must be a string, not {}", kind(other)),
        )),
    }
}

pub(super) fn valid_attachments(v: Option<&Value>) -> Result<HashSet<Attachment>, CniError> {
    let entries = match v {
        None | Some(Value::Null) => {
            return Err(CniError::new(
                code::INVALID_CONFIG,
                "GC needs cni.dev/valid-attachments (the attachments to keep); without it weft-cni deletes nothing",
            ))
        }
        Some(Value::Array(entries)) => entries,
        Some(other) => {
            return Err(CniError::new(
                code::DECODE_FAILURE,
                format!(
                    "cni.dev/valid-attachments must be an array, not {}",
                    kind(other)
                ),
            ))
        }
    };
    let mut valid = HashSet::new();
    for (i, entry) in entries.iter().enumerate() {
        let field = |name: &str| entry.get(name).and_then(Value::as_str);
        match (field("containerID"), field("ifname")) {
            (Some(container_id), Some(ifname)) => {
                valid.insert(Attachment {
                    container_id: container_id.into(),
                    ifname: ifname.into(),
                });
            }
            _ => {
                return Err(CniError::new(
                    code::DECODE_FAILURE,
                    format!(
                        "cni.dev/valid-attachments[{i}] must be an object with string fields containerID and ifname, not {entry}"
                    ),
                ))
            }
        }
    }
    Ok(valid)
}
