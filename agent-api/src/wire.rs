//! The local API's messages: requests, responses, their results, and the
//! one request parser the agent uses ([`Request::parse`]).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::pod_meta::NamedPort;
use super::NodeInfo;

/// Where the agent serves its local API unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/weft/agent.sock";

/// The longest request line the agent reads, in bytes (without the newline).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// A pod's interface name unless the request names one.
pub const DEFAULT_IFNAME: &str = "eth0";

/// Every op the agent knows, in the order error messages list them.
pub const OPS: &[&str] = &[
    "ping", "status", "pod_add", "pod_get", "pod_del", "pod_list", "trace",
];

/// One request: an object with an `"op"` field and that op's fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Is the agent up? Answers [`PongResult`].
    Ping,
    /// The node, its control-plane link and the data plane: [`StatusResult`].
    Status,
    /// Add a pod: [`PodResult`].
    PodAdd(PodAddRequest),
    /// One pod by id: [`PodResult`], or `not_found`.
    PodGet {
        /// The pod's id.
        id: String,
    },
    /// Delete a pod (idempotent): [`PodDelResult`].
    PodDel {
        /// The pod's id.
        id: String,
    },
    /// Every pod on the node: [`PodList`].
    PodList,
    /// One probe packet from a pod of this node through the packet path,
    /// step by step: [`TraceResult`].
    Trace(TraceRequest),
}

/// The fields of `trace`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceRequest {
    /// The pod the probe comes from: its id on this node, or
    /// `NAMESPACE/NAME`.
    pub pod: String,
    /// The destination address.
    pub address: String,
    /// The destination port (ignored for ICMP).
    #[serde(default)]
    pub port: u16,
    /// `TCP` (a SYN), `UDP` or `ICMP` (an echo request).
    pub protocol: String,
}

/// What the packet path does with one probe packet (`trace`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceResult {
    /// The probe as sent: `10.244.1.5:49152 -> 10.96.0.20:80/TCP`.
    pub probe: String,
    /// Each step of the packet path, in order.
    pub steps: Vec<TraceStep>,
    /// The outcome: where the packet goes, or why it is dropped.
    pub outcome: String,
    /// Whether the packet leaves the switch (delivered or sent on).
    pub forwarded: bool,
}

/// One step of a trace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceStep {
    /// `dns`, `conntrack`, `service`, `policy egress`, `policy ingress`,
    /// `route`.
    pub step: String,
    /// What it did, in words.
    pub detail: String,
}

/// The fields of `pod_add`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodAddRequest {
    /// The pod's unique id on this node: a name (`weftctl pod add NAME`) or
    /// `<container-id>/<ifname>` (CNI). Letters, digits, `.`, `_`, `-`, `/`.
    pub id: String,
    /// The path of the pod's network namespace (`/run/netns/NAME`,
    /// `/proc/PID/ns/net`). Exactly one of `netns` and `create_netns`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// Let the agent create the namespace `/run/netns/<id>` (and delete it
    /// with the pod).
    #[serde(default, skip_serializing_if = "is_false")]
    pub create_netns: bool,
    /// The interface name in the pod; [`DEFAULT_IFNAME`] if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifname: Option<String>,
    /// The Kubernetes namespace of the pod, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_namespace: Option<String>,
    /// The Kubernetes name of the pod, if any. A pod with a name belongs
    /// to the cluster: the agent registers it with the control plane under
    /// `pod_namespace` (default `default`) and this name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// The pod's labels (Kubernetes syntax); needs `pod_name`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The pod's named ports; needs `pod_name`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<NamedPort>,
}

impl PodAddRequest {
    /// Every problem with the pod's cluster identity (namespace, name,
    /// labels, ports), each naming its field; see
    /// [`validate_pod_meta`](crate::validate_pod_meta).
    pub fn identity_errors(&self) -> Vec<String> {
        crate::validate_pod_meta(
            self.pod_namespace.as_deref(),
            self.pod_name.as_deref(),
            &self.labels,
            &self.ports,
        )
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A pod as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pod {
    /// Its unique id on the node.
    pub id: String,
    /// Its address (a /32 or /128 on its interface).
    pub address: IpAddr,
    /// The path of its network namespace.
    pub netns: String,
    /// Its interface name inside the namespace.
    pub ifname: String,
    /// Whether the agent created the namespace (and deletes it with the pod).
    pub created_netns: bool,
    /// Kubernetes namespace, if any.
    #[serde(default)]
    pub pod_namespace: Option<String>,
    /// Kubernetes pod name, if any.
    #[serde(default)]
    pub pod_name: Option<String>,
    /// Its labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Its named ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<NamedPort>,
    /// When it was added, in seconds since the Unix epoch.
    pub created_unix: u64,
    /// Whether its port is attached to the data plane right now.
    pub attached: bool,
    /// Where its registration with the control plane stands; `null` for a
    /// pod without `pod_name` (not a pod of the cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration: Option<PodRegistration>,
}

/// Where a pod's registration with the control plane stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationState {
    /// The control plane has the pod as it is now.
    Registered,
    /// Not sent yet, or being sent (also while the control plane is
    /// unreachable: the pod's network works all the same).
    Pending,
    /// The control plane refused it or could not be reached; retried in
    /// the background.
    Failed,
}

impl RegistrationState {
    /// The state as the wire spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registered => "registered",
            Self::Pending => "pending",
            Self::Failed => "failed",
        }
    }
}

/// One pod's registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRegistration {
    /// Where it stands.
    pub state: RegistrationState,
    /// Attempts that failed since the last success.
    #[serde(default)]
    pub failures: u32,
    /// The last failure, while it is not registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The agent's pod registrations with the control plane, for `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationInfo {
    /// Pods the control plane has as they are.
    pub registered: usize,
    /// Pods (and removals) not sent yet.
    pub pending: usize,
    /// Pods (and removals) that failed and are being retried.
    pub failed: usize,
    /// The failures, at most 16: what, and why.
    #[serde(default)]
    pub problems: Vec<RegistrationProblem>,
    /// Unix seconds of the last whole-node sync (`SyncPods`), if any.
    #[serde(default)]
    pub last_sync_unix: Option<u64>,
}

/// A registration (or removal) that has not gone through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationProblem {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// `register` or `unregister`.
    pub action: String,
    /// Attempts that failed.
    pub failures: u32,
    /// The last error.
    pub error: String,
}

/// How many objects of each kind the agent holds from the control plane.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterViewInfo {
    /// The watch revision the objects are at.
    pub revision: u64,
    /// The number of changes applied since the agent started.
    pub version: u64,
    /// Namespaces.
    pub namespaces: usize,
    /// Pods of every node.
    pub pods: usize,
    /// Services.
    pub services: usize,
    /// EndpointSlices.
    pub endpoint_slices: usize,
    /// NetworkPolicies.
    pub network_policies: usize,
}

/// The result of `ping`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PongResult {
    /// The agent's version.
    pub version: String,
}

/// The result of `pod_add` and `pod_get`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodResult {
    /// The pod.
    pub pod: Pod,
}

/// The result of `pod_del`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodDelResult {
    /// The pod that was deleted; `null` if there was none.
    pub pod: Option<Pod>,
}

/// The result of `pod_list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodList {
    /// Every pod, by id.
    pub pods: Vec<Pod>,
}

/// The result of `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusResult {
    /// The node and its control-plane link.
    pub node: NodeInfo,
    /// How many pods the node has.
    pub pods: usize,
    /// The data plane's peers and counters; `null` if it did not answer.
    pub dataplane: Option<DataplaneInfo>,
    /// Why the data plane did not answer.
    #[serde(default)]
    pub dataplane_error: Option<String>,
    /// The pods' registrations with the control plane (`null` from an
    /// agent without them).
    #[serde(default)]
    pub registration: Option<RegistrationInfo>,
    /// The cluster's objects the agent holds (`null` from an agent
    /// without them).
    #[serde(default)]
    pub cluster_view: Option<ClusterViewInfo>,
}

/// The data plane's state and counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataplaneInfo {
    /// The peers (other nodes).
    pub peers: Vec<PeerInfo>,
    /// The attached pod ports.
    pub ports: Vec<PortInfo>,
    /// Dropped packets by reason (stable names).
    pub drops: Vec<DropCount>,
    /// Packets forwarded to pod ports.
    pub forwarded_to_ports: u64,
    /// Packets forwarded to the host port.
    pub forwarded_to_host: u64,
    /// Packets forwarded to peers.
    pub forwarded_to_peers: u64,
    /// Which offloads are on and what they did (all off and zero from an
    /// agent that predates this field).
    #[serde(default)]
    pub offload: OffloadInfo,
    /// Services, connection tracking and translation (absent: off, or an
    /// agent that predates them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<ServicesInfo>,
    /// NetworkPolicy enforcement (absent: no policy table yet, off, or an
    /// agent that predates it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyInfo>,
    /// Cluster DNS's counters (all zero from an agent that predates them).
    #[serde(default)]
    pub dns: crate::DnsInfo,
}

/// NetworkPolicy in the packet path (see docs/network-policy.md,
/// "Seeing it"). Connections count once per judgement: on their first
/// packet, and again after a policy change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyInfo {
    /// Policy tables put in force since the agent started.
    pub generation: u64,
    /// Policies selecting a pod of this node, and their rules.
    pub policies: u64,
    pub rules: u64,
    /// Connections judged.
    pub judged: u64,
    /// Of those, allowed because no policy isolates either pod.
    pub not_isolated: u64,
    /// Of those, denied.
    pub denied: u64,
    /// Untracked packets (ICMP other than echo, stray TCP) judged one by
    /// one, and those denied.
    pub untracked_judged: u64,
    pub untracked_denied: u64,
    /// Denied connections not logged (the log's rate limit).
    pub denials_unlogged: u64,
    /// Per policy selecting a pod of this node, in `namespace/name` order.
    pub by_policy: Vec<PolicyCount>,
}

/// Connections one policy decided on this node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyCount {
    /// `namespace/name`.
    pub name: String,
    /// Allowed by one of its rules.
    pub allowed: u64,
    /// Denied by the isolation it sets (no rule of any policy allowed).
    pub denied: u64,
}

/// Services in the packet path (see docs/services.md, "Seeing it").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicesInfo {
    /// Services in the table in force.
    pub services: u64,
    /// Their frontends (`ip:port/proto`, node ports included).
    pub frontends: u64,
    /// Endpoint slots (an endpoint counts once per Service port).
    pub endpoints: u64,
    /// Connections tracked now.
    pub conntrack_entries: u64,
    /// The table's capacity (`--conntrack-max`).
    pub conntrack_max: u64,
    /// Entries created.
    pub conntrack_inserts: u64,
    /// Entries removed at their timeout.
    pub conntrack_expired: u64,
    /// Evictable entries removed to make room (a full table, or a source
    /// over its share).
    pub conntrack_evictions: u64,
    /// New connections refused: the table full of established ones.
    pub conntrack_table_full: u64,
    /// New connections refused: their source at its limit.
    pub conntrack_source_limited: u64,
    /// New connections translated to an endpoint.
    pub translations: u64,
    /// Of those, hairpin connections (source rewritten too).
    pub hairpins: u64,
    /// New connections that kept their ClientIP affinity.
    pub affinity_hits: u64,
    /// Connections refused: the Service has no endpoint.
    pub no_endpoint_rejects: u64,
    /// Connections refused: the Service address lacks the port.
    pub unknown_port_rejects: u64,
    /// Dropped: traffic policy Local, no endpoint on this node.
    pub no_local_endpoint_drops: u64,
    /// Dropped: aimed at a Service, unable to start a connection.
    pub invalid_to_service: u64,
    /// UDP flows moved off an endpoint that went away.
    pub stale_flows: u64,
    /// New connections whose source port was moved because their reply
    /// tuple was taken (absent from agents that predate it: 0).
    #[serde(default)]
    pub source_ports_remapped: u64,
}

/// The data plane's offloads (see docs/agent.md, "Data-plane offloads").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffloadInfo {
    /// Whether the host TUN takes and hands over TSO/USO super-packets
    /// (pod TUNs negotiate their own; a pod without them still works).
    pub tun: bool,
    /// Whether runs of datagrams to a peer leave as one UDP GSO message.
    pub udp_gso: bool,
    /// Whether the UDP socket hands over GRO runs of datagrams.
    pub udp_gro: bool,
    /// TSO/USO super-packets read from TUNs (each split into segments).
    pub tun_super_packets_read: u64,
    /// Super-packets written to TUNs.
    pub tun_super_packets_written: u64,
    /// Decrypted segments merged into a super-packet.
    pub segments_coalesced: u64,
    /// UDP GSO messages sent.
    pub udp_gso_messages: u64,
    /// UDP GRO messages received.
    pub udp_gro_messages: u64,
}

/// A peer as the data plane sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// The node's name.
    pub name: String,
    /// Its WireGuard public key, base64.
    pub public_key: String,
    /// Its current endpoint (`ip:port`), if known.
    pub endpoint: Option<String>,
    /// The prefixes routed to it.
    pub allowed: Vec<String>,
    /// Milliseconds since the last completed handshake, if any.
    pub last_handshake_ms: Option<u64>,
    /// Bytes received from it.
    pub rx_bytes: u64,
    /// Bytes sent to it.
    pub tx_bytes: u64,
    /// Packets received from it.
    pub rx_packets: u64,
    /// Packets sent to it.
    pub tx_packets: u64,
    /// Whether the control plane reports its node Ready (absent from
    /// agents older than this field).
    #[serde(default)]
    pub ready: Option<bool>,
    /// Packets for it that found no session: held for a handshake, or lost
    /// if the handshake never completes (a dead node's pods show here).
    #[serde(default)]
    pub queued_packets: u64,
}

/// An attached pod port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortInfo {
    /// The pod's id.
    pub id: String,
    /// Its addresses.
    pub addresses: Vec<IpAddr>,
}

/// A drop counter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropCount {
    /// The reason's stable name.
    pub reason: String,
    /// Packets dropped for it.
    pub count: u64,
}

/// Why a request failed, in a word a program can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// No such pod.
    NotFound,
    /// A pod of that id (or an interface of that name) exists already.
    AlreadyExists,
    /// The request is malformed or asks for something impossible.
    Invalid,
    /// No free address is left in the node's pod CIDR.
    Exhausted,
    /// A part the request needs (the data plane, the kernel) is not
    /// available right now; retry later.
    Unavailable,
    /// Anything else: see the message and the agent's log.
    Internal,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::AlreadyExists => "already_exists",
            Self::Invalid => "invalid",
            Self::Exhausted => "exhausted",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of a failed request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What kind of failure.
    pub code: ErrorCode,
    /// What went wrong, for a person.
    pub message: String,
}

impl ErrorBody {
    /// An error of `code` saying `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Invalid, message)
    }
}

/// One response line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Whether the request succeeded.
    pub ok: bool,
    /// The op's result, when `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// The error, when not `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl Response {
    /// A successful response carrying `result`.
    pub fn success<T: Serialize>(result: &T) -> Self {
        match serde_json::to_value(result) {
            Ok(value) => Self {
                ok: true,
                result: Some(value),
                error: None,
            },
            Err(e) => Self::failure(ErrorBody::new(
                ErrorCode::Internal,
                format!("encoding the result: {e}"),
            )),
        }
    }

    /// A failed response.
    pub fn failure(error: ErrorBody) -> Self {
        Self {
            ok: false,
            result: None,
            error: Some(error),
        }
    }

    /// The response as one line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).unwrap_or_else(|_| {
            br#"{"ok":false,"error":{"code":"internal","message":"encoding the response failed"}}"#
                .to_vec()
        });
        line.push(b'\n');
        line
    }
}

impl Request {
    /// The op's name on the wire.
    pub fn op(&self) -> &'static str {
        match self {
            Self::Ping => "ping",
            Self::Status => "status",
            Self::PodAdd(_) => "pod_add",
            Self::PodGet { .. } => "pod_get",
            Self::PodDel { .. } => "pod_del",
            Self::PodList => "pod_list",
            Self::Trace(_) => "trace",
        }
    }

    /// The request as one line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        // A Request holds only strings and booleans: it always encodes.
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        line.push(b'\n');
        line
    }

    /// Parses one request line (without or with its newline). Every failure
    /// is an `invalid` error saying precisely what is wrong.
    pub fn parse(line: &[u8]) -> Result<Self, ErrorBody> {
        let text = std::str::from_utf8(line)
            .map_err(|e| ErrorBody::invalid(format!("request is not UTF-8: {e}")))?
            .trim();
        if text.is_empty() {
            return Err(ErrorBody::invalid("empty request line"));
        }
        let value = serde_json::from_str::<Unique>(text)
            .map_err(|e| {
                ErrorBody::invalid(if e.is_data() {
                    // Only [`Unique`] raises data errors: a repeated key.
                    format!("request {e}")
                } else {
                    format!("request is not valid JSON: {e}")
                })
            })?
            .0;
        let Value::Object(mut fields) = value else {
            return Err(ErrorBody::invalid(
                "a request must be a JSON object with an \"op\" field",
            ));
        };
        let op = match fields.remove("op") {
            Some(Value::String(op)) => op,
            Some(other) => {
                return Err(ErrorBody::invalid(format!(
                    "\"op\" must be a string, not {other}"
                )))
            }
            None => {
                return Err(ErrorBody::invalid(format!(
                    "missing \"op\" (one of: {})",
                    OPS.join(", ")
                )))
            }
        };
        match op.as_str() {
            "ping" => no_fields(&op, fields).map(|()| Self::Ping),
            "status" => no_fields(&op, fields).map(|()| Self::Status),
            "pod_list" => no_fields(&op, fields).map(|()| Self::PodList),
            "pod_add" => fields_of::<PodAddRequest>(&op, fields).map(Self::PodAdd),
            "pod_get" => fields_of::<IdOnly>(&op, fields).map(|r| Self::PodGet { id: r.id }),
            "pod_del" => fields_of::<IdOnly>(&op, fields).map(|r| Self::PodDel { id: r.id }),
            "trace" => fields_of::<TraceRequest>(&op, fields).map(Self::Trace),
            _ => Err(ErrorBody::invalid(format!(
                "unknown op {op:?} (expected one of: {})",
                OPS.join(", ")
            ))),
        }
    }
}

/// A JSON value in which no object repeats a key (serde_json keeps the
/// last of repeated keys silently, so `{"op":"ping","op":"pod_del",...}`
/// would mean whatever its last "op" says).
struct Unique(Value);

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueVisitor).map(Unique)
    }
}

struct UniqueVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Unique(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut fields = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if fields.contains_key(&key) {
                return Err(serde::de::Error::custom(format_args!(
                    "repeats the key {key:?}: each key may appear once"
                )));
            }
            let Unique(value) = map.next_value()?;
            fields.insert(key, value);
        }
        Ok(Value::Object(fields))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdOnly {
    id: String,
}

fn no_fields(op: &str, fields: Map<String, Value>) -> Result<(), ErrorBody> {
    match fields.keys().next() {
        None => Ok(()),
        Some(key) => Err(ErrorBody::invalid(format!(
            "bad {op} request: it takes no fields, got {key:?}"
        ))),
    }
}

fn fields_of<T: serde::de::DeserializeOwned>(
    op: &str,
    fields: Map<String, Value>,
) -> Result<T, ErrorBody> {
    serde_json::from_value(Value::Object(fields))
        .map_err(|e| ErrorBody::invalid(format!("bad {op} request: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(line: &str) -> String {
        let e = Request::parse(line.as_bytes()).unwrap_err();
        assert_eq!(e.code, ErrorCode::Invalid);
        e.message
    }

    #[test]
    fn every_request_round_trips_through_its_line() {
        let requests = [
            Request::Ping,
            Request::Status,
            Request::PodList,
            Request::PodGet { id: "a".into() },
            Request::PodDel {
                id: "c1/eth0".into(),
            },
            Request::PodAdd(PodAddRequest {
                id: "web".into(),
                create_netns: true,
                ..PodAddRequest::default()
            }),
            Request::PodAdd(PodAddRequest {
                id: "abc/eth1".into(),
                netns: Some("/proc/1/ns/net".into()),
                ifname: Some("eth1".into()),
                pod_namespace: Some("default".into()),
                pod_name: Some("web-1".into()),
                create_netns: false,
                labels: [("app".to_string(), "web".to_string())].into(),
                ports: vec![NamedPort::parse("http=8080/TCP").unwrap()],
            }),
        ];
        for r in requests {
            let line = r.to_line();
            assert_eq!(line.last(), Some(&b'\n'));
            assert_eq!(Request::parse(&line), Ok(r.clone()), "{r:?}");
        }
        assert_eq!(Request::Ping.to_line(), b"{\"op\":\"ping\"}\n");
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        assert_eq!(err(""), "empty request line");
        assert!(err("{\"op\":").starts_with("request is not valid JSON: EOF while parsing"));
        assert!(err("[1]").contains("JSON object"));
        assert!(err("{}").starts_with("missing \"op\" (one of: ping, status"));
        assert_eq!(err("{\"op\":3}"), "\"op\" must be a string, not 3");
        assert!(err("{\"op\":\"frob\"}").starts_with("unknown op \"frob\" (expected one of:"));
        assert_eq!(
            err("{\"op\":\"ping\",\"x\":1}"),
            "bad ping request: it takes no fields, got \"x\""
        );
        assert!(err("{\"op\":\"pod_del\"}").contains("missing field `id`"));
        let m = err("{\"op\":\"pod_add\",\"id\":\"a\",\"create\":true}");
        assert!(
            m.starts_with("bad pod_add request: unknown field `create`"),
            "{m}"
        );
        let m = err("{\"op\":\"pod_add\",\"id\":5}");
        assert!(m.contains("invalid type"), "{m}");
        // A repeated key, "op" or any other, at any depth, is refused
        // (serde_json alone would keep the last one).
        let m = err(r#"{"op":"ping","op":"pod_del","id":"a"}"#);
        assert!(
            m.starts_with("request repeats the key \"op\": each key may appear once"),
            "{m}"
        );
        let m = err(r#"{"op":"pod_del","id":"a","id":"b"}"#);
        assert!(m.contains("repeats the key \"id\""), "{m}");
        let m = err(r#"{"op":"pod_add","id":"a","x":[{"k":1,"k":2}]}"#);
        assert!(m.contains("repeats the key \"k\""), "{m}");
        // Values of every kind still parse.
        assert!(Request::parse(
            br#"{"op":"pod_add","id":"a","create_netns":true,"pod_name":null}"#
        )
        .is_ok());
        assert!(Request::parse(b"\xff")
            .unwrap_err()
            .message
            .contains("UTF-8"));
    }

    #[test]
    fn responses_have_the_documented_shape() {
        let ok = Response::success(&PongResult {
            version: "1".into(),
        });
        assert_eq!(
            ok.to_line(),
            b"{\"ok\":true,\"result\":{\"version\":\"1\"}}\n"
        );
        let bad = Response::failure(ErrorBody::new(ErrorCode::AlreadyExists, "pod a exists"));
        assert_eq!(
            String::from_utf8(bad.to_line()).unwrap(),
            "{\"ok\":false,\"error\":{\"code\":\"already_exists\",\"message\":\"pod a exists\"}}\n"
        );
        let back: Response = serde_json::from_slice(&bad.to_line()).unwrap();
        assert_eq!(back, bad);
    }
}
