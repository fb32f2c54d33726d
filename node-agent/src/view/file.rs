//! `objects.json`: the cluster's objects as of a watch revision, so a
//! restarted agent serves them before (or without) its control plane.
//!
//! Format: `{"format":1,"revision":R,"namespaces":[...],"pods":[...],
//! "services":[...],"endpointSlices":[...],"networkPolicies":[...]}`, each
//! object in its Kubernetes JSON shape. Written compact and atomically
//! (mode 0600); a cache: a missing, unreadable or foreign-format file
//! reads as empty at revision 0 (logged), and the watch starts from a
//! snapshot.

use std::path::Path;

use serde::{Deserialize, Serialize};
use weft_objects::{EndpointSlice, Namespace, NetworkPolicy, Pod, Service};

use super::snapshot::ViewSnapshot;

/// The file name in the agent's state dir.
pub const FILE_NAME: &str = "objects.json";

/// The format this agent writes and reads.
pub(super) const FORMAT: u32 = 1;

/// The contents of `objects.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ViewFile {
    /// The format version ([`FORMAT`]).
    pub format: u32,
    /// The watch revision the objects are at.
    pub revision: u64,
    /// Namespaces.
    #[serde(default)]
    pub namespaces: Vec<Namespace>,
    /// Pods.
    #[serde(default)]
    pub pods: Vec<Pod>,
    /// Services.
    #[serde(default)]
    pub services: Vec<Service>,
    /// EndpointSlices.
    #[serde(default)]
    pub endpoint_slices: Vec<EndpointSlice>,
    /// NetworkPolicies.
    #[serde(default)]
    pub network_policies: Vec<NetworkPolicy>,
}

/// The same shape, borrowing a snapshot's objects (no copy to write).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FileRef<'a> {
    format: u32,
    revision: u64,
    namespaces: Vec<&'a Namespace>,
    pods: Vec<&'a Pod>,
    services: Vec<&'a Service>,
    endpoint_slices: Vec<&'a EndpointSlice>,
    network_policies: Vec<&'a NetworkPolicy>,
}

impl ViewFile {
    /// Whether it holds no object.
    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty()
            && self.pods.is_empty()
            && self.services.is_empty()
            && self.endpoint_slices.is_empty()
            && self.network_policies.is_empty()
    }

    /// Decodes a file's bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let file: ViewFile = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if file.format != FORMAT {
            return Err(format!(
                "format {} (this agent reads format {FORMAT})",
                file.format
            ));
        }
        Ok(file)
    }

    /// Reads `path`; an empty view at revision 0 if it is missing or
    /// cannot be read (logged).
    pub fn load_or_empty(path: &Path) -> Self {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Self::default(),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the cluster objects; the watch starts from a fresh snapshot");
                return Self::default();
            }
        };
        match Self::decode(&bytes) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring the unreadable cluster objects; the watch starts from a fresh snapshot");
                Self::default()
            }
        }
    }
}

/// Encodes `snapshot` as of `revision` (compact JSON, a trailing newline).
pub(super) fn encode(snapshot: &ViewSnapshot, revision: u64) -> serde_json::Result<Vec<u8>> {
    let file = FileRef {
        format: FORMAT,
        revision,
        namespaces: snapshot.namespaces.values().map(|o| &**o).collect(),
        pods: snapshot.pods.values().map(|o| &**o).collect(),
        services: snapshot.services.values().map(|o| &**o).collect(),
        endpoint_slices: snapshot.endpoint_slices.values().map(|o| &**o).collect(),
        network_policies: snapshot.network_policies.values().map(|o| &**o).collect(),
    };
    let mut bytes = serde_json::to_vec(&file)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Writes `snapshot` to `path` atomically, mode 0600.
pub(super) fn save(path: &Path, snapshot: &ViewSnapshot, revision: u64) -> std::io::Result<()> {
    let bytes = encode(snapshot, revision).map_err(std::io::Error::other)?;
    weft_files::write_atomic(path, &bytes, 0o600)
}
