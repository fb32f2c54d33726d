//! Kubernetes Services without kube-proxy: step 4 of the packet path
//! (DESIGN "The packet path"), on the client's node.
//!
//! The agent resolves Services and EndpointSlices into plain
//! [`ServiceSpec`]s; [`ServiceTable::compile`] turns them into a map from
//! frontends (cluster IPs, external IPs and load-balancer IPs, each
//! `ip:port/proto`, and node ports for the agent's relays) to the
//! endpoint sets the traffic policies select. A [`Translator`] holds what
//! persists between packets besides the [`Conntrack`](crate::conntrack::Conntrack)
//! table: ClientIP affinity records, the seeded PRNG that picks
//! endpoints, counters. [`Translator::translate`] is the per-packet step:
//! conntrack lookup, endpoint choice for a new connection, destination
//! NAT (and source NAT for hairpin), reverse translation of replies and
//! of ICMP errors from the entry, and rejects for Services without
//! endpoints.
//!
//! Contract:
//! - Sans-IO: time is an argument, randomness comes from a seed the
//!   caller draws, nothing does IO.
//! - Per packet: no allocation, no panic on any bytes, one conntrack
//!   lookup per packet or TSO/GRO super-packet. Checksums are updated
//!   incrementally (RFC 1624), full or partial (virtio `NEEDS_CSUM`) as
//!   the caller says; ICMP errors, being small, get theirs recomputed.
//! - Semantics follow kube-proxy (see docs/services.md, "How the agent
//!   implements Services", for what differs): random endpoint per
//!   connection, ClientIP affinity refreshed by new connections,
//!   `internalTrafficPolicy` for cluster IPs, `externalTrafficPolicy` for
//!   clients outside the cluster (in-cluster clients of external and
//!   load-balancer IPs use every endpoint), terminating endpoints only
//!   when nothing is ready, reject when no endpoint exists anywhere and
//!   drop when only the Local policy finds none, the client's address
//!   kept except for hairpin (SNAT to the node's overlay address).
//!
//! Files: `spec` (input), `table` (compiled table, traffic policies,
//! health checks), `affinity` (ClientIP records), `translator` (state,
//! counters, endpoint choice), `translate` (the per-packet step),
//! `packet` (the header reads and rewrites it needs, on the crate's wire
//! views).

mod affinity;
mod packet;
mod spec;
mod table;
mod translate;
mod translator;

#[cfg(test)]
mod tests;

pub use affinity::AffinityTable;
pub use spec::{
    EndpointPort, EndpointSpec, Protocol, ServicePort, ServiceSpec, SessionAffinity, TrafficPolicy,
    DEFAULT_AFFINITY_TIMEOUT, LABEL_HEADLESS, LABEL_SERVICE_PROXY_NAME,
};
pub use table::{
    Candidates, CompileError, Frontend, FrontendKind, HealthCheck, Origin, Problem, ServiceTable,
};
pub use translate::{NatDrop, Outcome, PacketMeta, Reject};
pub use translator::{Choice, ServiceStats, Translator, TranslatorConfig};
