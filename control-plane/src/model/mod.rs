//! The cluster's records as the store holds them, the store keys, and the
//! validation of everything a caller sends in.
//!
//! Keys:
//! - `nodes/<name>`: a `weft.v1.Node`, protobuf-encoded (so a watch event
//!   turns into a gRPC message with one decode).
//! - `ipam/<cidr>`: the name of the node holding that pod CIDR. A join
//!   writes it in the same transaction as the node, with an "absent"
//!   compare, so no CIDR is ever handed out twice.
//! - `keys/<hex of the 32 key bytes>`: the name of the node whose WireGuard
//!   public key that is, and `endpoints/<ip:port>`: the name of the node
//!   announcing that endpoint. Every write that gives a node a key or an
//!   endpoint puts these in the same transaction, with an "absent" compare,
//!   so no key and no endpoint ever belongs to two nodes (see
//!   `registry::claims`).
//! - `tokens/<id>`: a [`TokenRecord`], JSON.
//! - `meta/next-node-id`: the next node id, decimal.
//! - `meta/cluster`: the [`ClusterRecord`] the cluster was created with.
//!
//! Validation ([`validate`]) returns [`InvalidInput`], whose message says
//! what is wrong and what would be right.

mod low_order;
pub mod validate;

use ipnet::IpNet;
use prost::Message;
use serde::{Deserialize, Serialize};
use weft_proto::v1::Node;

/// Prefix of node records.
pub const NODES_PREFIX: &str = "nodes/";
/// Prefix of CIDR allocations.
pub const IPAM_PREFIX: &str = "ipam/";
/// Prefix of the public-key index.
pub const KEYS_PREFIX: &str = "keys/";
/// Prefix of the endpoint index.
pub const ENDPOINTS_PREFIX: &str = "endpoints/";
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

/// The store key of a public key's index entry.
pub fn key_index_key(key: &[u8; 32]) -> String {
    format!("{KEYS_PREFIX}{}", hex::encode(key))
}

/// The store key of an endpoint's index entry (`endpoint` canonical, as
/// [`validate::validate_endpoints`] returns it).
pub fn endpoint_index_key(endpoint: &str) -> String {
    format!("{ENDPOINTS_PREFIX}{endpoint}")
}

/// The store key of a token.
pub fn token_key(id: &str) -> String {
    format!("{TOKENS_PREFIX}{id}")
}

/// Bad input from a caller; the message is meant for a person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);

pub use low_order::{is_low_order, LOW_ORDER_POINTS};
pub use validate::{
    encode_public_key, parse_public_key, validate_endpoints, validate_labels, validate_node_name,
    EndpointRules,
};

/// A short, stable fingerprint of a public key for tables and messages:
/// the first 8 characters of its base64.
pub fn key_fingerprint(key: &str) -> String {
    key.chars().take(8).collect()
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
