//! The cluster's records as the store holds them, the store keys, and the
//! validation of everything a caller sends in.
//!
//! Keys:
//! - `nodes/<name>`: a `weft.v1.Node`, protobuf-encoded (so a watch event
//!   turns into a gRPC message with one decode).
//! - `ipam/<cidr>`: the name of the node holding that pod CIDR. A join
//!   writes it in the same transaction as the node, with an "absent"
//!   compare, so no CIDR is ever handed out twice.
//! - `tokens/<id>`: a [`TokenRecord`], JSON.
//! - `meta/next-node-id`: the next node id, decimal.
//! - `meta/cluster`: the [`ClusterRecord`] the cluster was created with.
//!
//! Validation functions return [`InvalidInput`], whose message says what is
//! wrong and what would be right.

use std::net::SocketAddr;

use base64::Engine;
use ipnet::IpNet;
use prost::Message;
use serde::{Deserialize, Serialize};
use weft_proto::v1::Node;

/// Prefix of node records.
pub const NODES_PREFIX: &str = "nodes/";
/// Prefix of CIDR allocations.
pub const IPAM_PREFIX: &str = "ipam/";
/// Prefix of join tokens.
pub const TOKENS_PREFIX: &str = "tokens/";
/// The node id counter.
pub const NEXT_NODE_ID_KEY: &str = "meta/next-node-id";
/// The settings the cluster was created with.
pub const CLUSTER_KEY: &str = "meta/cluster";
/// Prefix of node lease renewals, written only when replicas share a store
/// (see `registry/renewals.rs`).
pub const LEASES_PREFIX: &str = "leases/";

/// The store key of a node.
pub fn node_key(name: &str) -> String {
    format!("{NODES_PREFIX}{name}")
}

/// The store key of a node's last lease renewal.
pub fn lease_key(name: &str) -> String {
    format!("{LEASES_PREFIX}{name}")
}

/// The store key of a CIDR allocation.
pub fn ipam_key(cidr: &IpNet) -> String {
    format!("{IPAM_PREFIX}{cidr}")
}

/// The store key of a token.
pub fn token_key(id: &str) -> String {
    format!("{TOKENS_PREFIX}{id}")
}

/// Bad input from a caller; the message is meant for a person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);

/// Check a node name against the DNS-1123 label rules Kubernetes uses.
pub fn validate_node_name(name: &str) -> Result<(), InvalidInput> {
    let bad = |why: &str| {
        Err(InvalidInput(format!(
            "invalid node name {name:?}: {why} (a DNS-1123 label: 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit)"
        )))
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > 63 {
        return bad(&format!("it is {} characters long", name.len()));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return bad(&format!("it contains {c:?}"));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return bad("it starts or ends with '-'");
    }
    Ok(())
}

/// Decode a WireGuard public key: standard base64 of exactly 32 bytes.
pub fn parse_public_key(key: &str) -> Result<[u8; 32], InvalidInput> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(key.trim()).map_err(|e| {
        InvalidInput(format!("invalid public key {key:?}: not standard base64 ({e}); expected the output of `wg pubkey`, 44 characters"))
    })?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        InvalidInput(format!(
            "invalid public key {key:?}: decodes to {} bytes, a WireGuard key is 32",
            bytes.len()
        ))
    })
}

/// A short, stable fingerprint of a public key for tables and messages:
/// the first 8 characters of its base64.
pub fn key_fingerprint(key: &str) -> String {
    key.chars().take(8).collect()
}

/// Check underlay endpoints: each "ip:port" (IPv6 as "[addr]:port"), port
/// not 0, no more than 16, no duplicates. Returns them normalized.
pub fn validate_endpoints(endpoints: &[String]) -> Result<Vec<String>, InvalidInput> {
    if endpoints.len() > 16 {
        return Err(InvalidInput(format!(
            "too many endpoints: {} (at most 16)",
            endpoints.len()
        )));
    }
    let mut out: Vec<String> = Vec::with_capacity(endpoints.len());
    for e in endpoints {
        let addr: SocketAddr = e.trim().parse().map_err(|_| {
            InvalidInput(format!("invalid endpoint {e:?}: expected ip:port, e.g. 192.0.2.10:51820 or [2001:db8::1]:51820"))
        })?;
        if addr.port() == 0 {
            return Err(InvalidInput(format!("invalid endpoint {e:?}: port 0")));
        }
        if addr.ip().is_unspecified() || addr.ip().is_multicast() {
            return Err(InvalidInput(format!(
                "invalid endpoint {e:?}: {} cannot be a peer's address",
                addr.ip()
            )));
        }
        let s = addr.to_string();
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

/// Check labels: keys 1-253 characters of [A-Za-z0-9._/-], values at most
/// 63 characters of [A-Za-z0-9._-], at most 64 labels.
pub fn validate_labels<'a>(
    labels: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Result<(), InvalidInput> {
    let ok_key = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-');
    let ok_val = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let mut n = 0;
    for (k, v) in labels {
        n += 1;
        if k.is_empty() || k.len() > 253 || !k.chars().all(ok_key) {
            return Err(InvalidInput(format!(
                "invalid label key {k:?}: 1-253 characters of letters, digits, '.', '_', '/', '-'"
            )));
        }
        if v.len() > 63 || !v.chars().all(ok_val) {
            return Err(InvalidInput(format!(
                "invalid value {v:?} for label {k:?}: at most 63 letters, digits, '.', '_', '-'"
            )));
        }
    }
    if n > 64 {
        return Err(InvalidInput(format!("too many labels: {n} (at most 64)")));
    }
    Ok(())
}

/// Encode a node record for the store.
pub fn encode_node(node: &Node) -> Vec<u8> {
    node.encode_to_vec()
}

/// Decode a node record from the store.
pub fn decode_node(bytes: &[u8]) -> Result<Node, prost::DecodeError> {
    Node::decode(bytes)
}

/// A join token as stored: the secret only as a SHA-256 hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TokenRecord {
    pub id: String,
    /// Lowercase hex SHA-256 of the secret.
    pub secret_sha256: String,
    /// 0: never expires.
    pub expires_unix_ms: i64,
    /// None: unlimited.
    pub usages_left: Option<u32>,
    pub revoked: bool,
    pub description: String,
    pub created_unix_ms: i64,
    pub used: u32,
}

/// The cluster-wide settings fixed when the cluster was created. A restart
/// with different flags for these is refused: existing nodes hold CIDRs from
/// the old ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ClusterRecord {
    pub cluster_cidr: IpNet,
    pub node_cidr_prefix: u8,
    pub service_cidr: IpNet,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names() {
        for ok in ["a", "node-1", "n0", &"a".repeat(63)] {
            validate_node_name(ok).unwrap();
        }
        for (bad, why) in [
            ("", "empty"),
            ("Node1", "'N'"),
            ("-a", "starts or ends"),
            ("a-", "starts or ends"),
            ("a_b", "'_'"),
            ("a.b", "'.'"),
            (&"a".repeat(64), "64 characters"),
        ] {
            let e = validate_node_name(bad).unwrap_err();
            assert!(e.0.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn public_keys() {
        let good = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert_eq!(parse_public_key(&good).unwrap(), [7u8; 32]);
        let e = parse_public_key("not base64!").unwrap_err();
        assert!(e.0.contains("not standard base64"), "{e}");
        let short = base64::engine::general_purpose::STANDARD.encode([7u8; 31]);
        let e = parse_public_key(&short).unwrap_err();
        assert!(e.0.contains("31 bytes"), "{e}");
        let e = parse_public_key("").unwrap_err();
        assert!(e.0.contains("0 bytes"), "{e}");
    }

    #[test]
    fn endpoints() {
        let v = validate_endpoints(&[
            "192.0.2.1:51820".into(),
            "[2001:db8::1]:51820".into(),
            "192.0.2.1:51820".into(),
        ])
        .unwrap();
        assert_eq!(v, vec!["192.0.2.1:51820", "[2001:db8::1]:51820"]);
        for bad in [
            "192.0.2.1",
            "host:51820",
            "192.0.2.1:0",
            "0.0.0.0:51820",
            "224.0.0.1:5",
        ] {
            assert!(validate_endpoints(&[bad.to_string()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn labels() {
        let mut m = std::collections::BTreeMap::new();
        m.insert(
            "topology.kubernetes.io/zone".to_string(),
            "eu-1".to_string(),
        );
        validate_labels(&m).unwrap();
        m.insert("bad key".to_string(), "x".to_string());
        assert!(validate_labels(&m).is_err());
    }
}
