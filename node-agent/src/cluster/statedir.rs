//! The agent's state dir: what it keeps between restarts.
//!
//! | file | mode | what |
//! |---|---|---|
//! | `private.key` | 0600 | the WireGuard private key ([`super::keys`]) |
//! | `credentials.json` | 0600 | the node credential ([`weft_client::Credentials`]) |
//! | `node.json` | 0600 | the node's identity: name, id, pod CIDR, cluster settings ([`NodeFile`]) |
//! | `peers.json` | 0600 | the last known peers and the watch revision ([`PeersFile`]) |
//! | `objects.json` | 0600 | the cluster's objects and the watch revision ([`crate::view`]) |
//!
//! Contract: every file is written atomically ([`super::files::write_atomic`]).
//! `node.json` is authoritative (a broken one is an error naming the file);
//! `peers.json` is a cache (a broken one is logged and ignored: the watch
//! then starts from a fresh snapshot).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::error::ClusterError;
use super::files;
use super::peers::PeerRecord;

/// Paths of the files in a state dir.
#[derive(Debug, Clone)]
pub struct StatePaths {
    /// The state dir itself.
    pub dir: PathBuf,
}

impl StatePaths {
    /// The files of `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// `private.key`.
    pub fn private_key(&self) -> PathBuf {
        self.dir.join("private.key")
    }

    /// `credentials.json`.
    pub fn credentials(&self) -> PathBuf {
        self.dir.join("credentials.json")
    }

    /// `node.json`.
    pub fn node(&self) -> PathBuf {
        self.dir.join("node.json")
    }

    /// `peers.json`.
    pub fn peers(&self) -> PathBuf {
        self.dir.join("peers.json")
    }

    /// `objects.json`.
    pub fn objects(&self) -> PathBuf {
        self.dir.join(crate::view::FILE_NAME)
    }
}

/// Settings every node of the cluster shares, as the control plane sent them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ClusterSettings {
    /// The cluster (pod) CIDR.
    pub cluster_cidr: IpNet,
    /// Prefix length of each node's pod CIDR.
    pub node_cidr_prefix: u8,
    /// The service (ClusterIP) CIDR.
    pub service_cidr: IpNet,
    /// The cluster DNS address.
    pub cluster_dns: IpAddr,
    /// The cluster DNS domain.
    pub cluster_domain: String,
    /// Seconds a node may go without renewing its lease.
    pub lease_ttl_seconds: u32,
    /// Seconds a NotReady node is kept before it is removed.
    pub removal_grace_seconds: u32,
    /// The default WireGuard port.
    pub wireguard_port: u16,
}

impl ClusterSettings {
    /// Checks and converts the control plane's settings message.
    pub fn from_proto(s: &weft_proto::v1::ClusterSettings) -> Result<Self, String> {
        let net = |what: &str, v: &str| -> Result<IpNet, String> {
            v.parse()
                .map_err(|_| format!("the control plane sent a bad {what} {v:?}"))
        };
        Ok(Self {
            cluster_cidr: net("cluster CIDR", &s.cluster_cidr)?,
            node_cidr_prefix: u8::try_from(s.node_cidr_prefix)
                .map_err(|_| format!("bad node CIDR prefix {}", s.node_cidr_prefix))?,
            service_cidr: net("service CIDR", &s.service_cidr)?,
            cluster_dns: s.cluster_dns.parse().map_err(|_| {
                format!(
                    "the control plane sent a bad cluster DNS {:?}",
                    s.cluster_dns
                )
            })?,
            cluster_domain: s.cluster_domain.clone(),
            lease_ttl_seconds: s.lease_ttl_seconds,
            removal_grace_seconds: s.removal_grace_seconds,
            wireguard_port: u16::try_from(s.wireguard_port).unwrap_or(51820),
        })
    }
}

/// `node.json`: who this node is in the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct NodeFile {
    /// The node name.
    pub name: String,
    /// The cluster-unique node id.
    pub id: u64,
    /// The pod CIDR leased to this node.
    pub pod_cidr: IpNet,
    /// The public key the node joined with (base64).
    pub public_key: String,
    /// The cluster's shared settings.
    pub settings: ClusterSettings,
}

impl NodeFile {
    /// The node's own overlay address: the first host address of its pod
    /// CIDR (`10.244.3.1` for `10.244.3.0/24`).
    pub fn host_address(&self) -> IpAddr {
        first_host(&self.pod_cidr)
    }

    /// Reads `node.json`; `Ok(None)` if it does not exist.
    pub fn load(path: &Path) -> Result<Option<Self>, ClusterError> {
        let Some(bytes) =
            files::read_optional(path).map_err(|e| ClusterError::io("reading", path, e))?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ClusterError::State {
                path: path.to_path_buf(),
                reason: format!(
                    "{e}; fix the file, or remove it to join again (with --token and --ca-hash)"
                ),
            })
    }

    /// Writes `node.json` atomically, mode 0600.
    pub fn save(&self, path: &Path) -> Result<(), ClusterError> {
        save_json(path, self)
    }
}

/// `peers.json`: the peers as of the last watch revision the agent saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PeersFile {
    /// The store revision the peer set is at; the watch resumes from it.
    pub revision: u64,
    /// Every other node, by name.
    pub peers: Vec<PeerRecord>,
}

impl PeersFile {
    /// Reads `peers.json`. A missing or broken file gives an empty set at
    /// revision 0 (the watch then starts from a snapshot); a broken one is
    /// logged.
    pub fn load_or_empty(path: &Path) -> Self {
        match files::read_optional(path) {
            Ok(None) => Self::default(),
            Ok(Some(bytes)) => match serde_json::from_slice(&bytes) {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring the unreadable peer cache; the watch starts from a fresh snapshot");
                    Self::default()
                }
            },
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the peer cache; the watch starts from a fresh snapshot");
                Self::default()
            }
        }
    }

    /// Writes `peers.json` atomically, mode 0600.
    pub fn save(&self, path: &Path) -> Result<(), ClusterError> {
        save_json(path, self)
    }
}

fn save_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ClusterError> {
    let mut json = serde_json::to_vec_pretty(value)
        .map_err(|e| ClusterError::io("encoding", path, std::io::Error::other(e)))?;
    json.push(b'\n');
    files::write_atomic(path, &json, 0o600).map_err(|e| ClusterError::io("writing", path, e))
}

/// The first host address of a prefix: network + 1 (the network address
/// itself for a /32 or /128, and network + 1 also for a /31).
pub fn first_host(net: &IpNet) -> IpAddr {
    match net {
        IpNet::V4(n) => {
            let base = u32::from(n.network());
            let next = base.checked_add(1).map(std::net::Ipv4Addr::from);
            match next {
                Some(a) if n.contains(&a) => IpAddr::V4(a),
                _ => IpAddr::V4(n.network()),
            }
        }
        IpNet::V6(n) => {
            let base = u128::from(n.network());
            let next = base.checked_add(1).map(std::net::Ipv6Addr::from);
            match next {
                Some(a) if n.contains(&a) => IpAddr::V6(a),
                _ => IpAddr::V6(n.network()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_host_addresses() {
        let f = |s: &str| first_host(&s.parse().unwrap()).to_string();
        assert_eq!(f("10.244.3.0/24"), "10.244.3.1");
        assert_eq!(f("10.244.3.7/32"), "10.244.3.7");
        assert_eq!(f("fd00:10::/64"), "fd00:10::1");
    }

    #[test]
    fn broken_peer_cache_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers.json");
        std::fs::write(&path, "{").unwrap();
        assert_eq!(PeersFile::load_or_empty(&path), PeersFile::default());
        let f = PeersFile {
            revision: 7,
            peers: vec![],
        };
        f.save(&path).unwrap();
        assert_eq!(PeersFile::load_or_empty(&path), f);
    }

    #[test]
    fn broken_node_file_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.json");
        assert!(NodeFile::load(&path).unwrap().is_none());
        std::fs::write(&path, "{}").unwrap();
        let msg = NodeFile::load(&path).unwrap_err().to_string();
        assert!(
            msg.contains("node.json") && msg.contains("missing field"),
            "{msg}"
        );
    }
}
