//! `pods.json`: the pod records of this node, written atomically (a temp
//! file, fsync, rename, fsync of the directory), so a crash leaves either
//! the old or the new file, never a torn one.
//!
//! Format: `{"version":1,"node_cidr":"10.244.3.0/24","pods":[PodRecord...]}`.
//! [`decode`] refuses what a correct agent never writes (an unknown version,
//! a duplicate id or address, an invalid id), naming the culprit.

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::record::{validate_id, PodRecord};

/// The file name under the state directory.
pub const FILE_NAME: &str = "pods.json";

/// The format version this agent reads and writes.
const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct StateFile {
    version: u32,
    #[serde(default)]
    node_cidr: Option<IpNet>,
    pods: Vec<PodRecord>,
}

/// The contents of a state file: the node CIDR it was written for, and the
/// records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodState {
    /// The node CIDR the pods were given addresses from.
    pub node_cidr: Option<IpNet>,
    /// The records, one per pod.
    pub pods: Vec<PodRecord>,
}

/// Encodes the state (pretty JSON with a trailing newline, pods by id).
pub fn encode(node_cidr: IpNet, pods: &[PodRecord]) -> Vec<u8> {
    let file = StateFile {
        version: VERSION,
        node_cidr: Some(node_cidr),
        pods: pods.to_vec(),
    };
    // Records hold strings, numbers and addresses only: they always encode.
    let mut bytes = serde_json::to_vec_pretty(&file).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// Decodes and checks a state file's contents.
pub fn decode(bytes: &[u8]) -> Result<PodState, String> {
    let file: StateFile =
        serde_json::from_slice(bytes).map_err(|e| format!("not valid pod state JSON: {e}"))?;
    if file.version != VERSION {
        return Err(format!(
            "format version {} is not supported (this agent reads version {VERSION})",
            file.version
        ));
    }
    let mut ids: BTreeMap<&str, ()> = BTreeMap::new();
    let mut addresses: BTreeMap<IpAddr, &str> = BTreeMap::new();
    for pod in &file.pods {
        validate_id(&pod.id)?;
        if ids.insert(&pod.id, ()).is_some() {
            return Err(format!("pod {} appears twice", pod.id));
        }
        if let Some(other) = addresses.insert(pod.address, &pod.id) {
            return Err(format!(
                "address {} is held by both pod {other} and pod {}",
                pod.address, pod.id
            ));
        }
    }
    Ok(PodState {
        node_cidr: file.node_cidr,
        pods: file.pods,
    })
}

/// Reads the state file; a missing file is an empty state.
pub(super) fn load(path: &Path) -> Result<PodState, String> {
    match std::fs::read(path) {
        Ok(bytes) => decode(&bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(PodState::default()),
        Err(e) => Err(format!("cannot read it: {e}")),
    }
}

/// Replaces the state file with `bytes`, atomically and durably. The file
/// is mode 0600.
pub(super) fn save(path: &Path, bytes: &[u8]) -> io::Result<()> {
    weft_files::write_atomic(path, bytes, 0o600)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn record(id: &str, addr: &str) -> PodRecord {
        PodRecord {
            id: id.into(),
            netns: format!("/run/netns/{id}").into(),
            ifname: "eth0".into(),
            address: addr.parse().unwrap(),
            created_netns: true,
            pod_namespace: Some("default".into()),
            pod_name: None,
            labels: Default::default(),
            ports: Vec::new(),
            created_unix: 1_700_000_000,
            attached: false,
        }
    }

    #[test]
    fn round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        assert_eq!(load(&path).unwrap(), PodState::default());
        let pods = vec![record("a", "10.1.0.2"), record("b/eth0", "10.1.0.3")];
        let cidr: IpNet = "10.1.0.0/24".parse().unwrap();
        save(&path, &encode(cidr, &pods)).unwrap();
        let back = load(&path).unwrap();
        assert_eq!(back.node_cidr, Some(cidr));
        assert_eq!(back.pods, pods);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // The temp file is gone; saving again replaces the content.
        assert!(!dir.path().join("pods.json.tmp").exists());
        save(&path, &encode(cidr, &pods[..1])).unwrap();
        assert_eq!(load(&path).unwrap().pods.len(), 1);
    }

    #[test]
    fn in_memory_state_is_not_persisted() {
        let mut r = record("a", "10.1.0.2");
        r.attached = true;
        let bytes = encode("10.1.0.0/24".parse().unwrap(), &[r]);
        assert!(!String::from_utf8_lossy(&bytes).contains("attached"));
        assert!(!decode(&bytes).unwrap().pods[0].attached);
    }

    #[test]
    fn corrupt_files_are_refused_precisely() {
        let err = decode(b"{\"version\":1,\"pods\":[").unwrap_err();
        assert!(
            err.starts_with("not valid pod state JSON: EOF while parsing"),
            "{err}"
        );
        let err = decode(b"").unwrap_err();
        assert!(err.starts_with("not valid pod state JSON"), "{err}");
        let err = decode(br#"{"version":7,"pods":[]}"#).unwrap_err();
        assert_eq!(
            err,
            "format version 7 is not supported (this agent reads version 1)"
        );
        let cidr = "10.1.0.0/24".parse().unwrap();
        let twice = encode(cidr, &[record("a", "10.1.0.2"), record("a", "10.1.0.3")]);
        assert_eq!(decode(&twice).unwrap_err(), "pod a appears twice");
        let shared = encode(cidr, &[record("a", "10.1.0.2"), record("b", "10.1.0.2")]);
        assert_eq!(
            decode(&shared).unwrap_err(),
            "address 10.1.0.2 is held by both pod a and pod b"
        );
        let bad_id = encode(cidr, &[record("a b", "10.1.0.2")]);
        assert!(decode(&bad_id).unwrap_err().starts_with("invalid pod id"));
        let bad_addr = br#"{"version":1,"pods":[{"id":"a","netns":"/x","ifname":"eth0","address":"nope","created_netns":false,"created_unix":0}]}"#;
        assert!(decode(bad_addr).unwrap_err().contains("invalid IP address"));
    }
}
