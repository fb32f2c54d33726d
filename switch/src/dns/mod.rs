//! Cluster DNS, answered inside the packet path: the Kubernetes DNS-Based
//! Service Discovery specification (schema 1.1.0) for the cluster domain.
//!
//! - [`zone`]: [`DnsZone`], the records, built from [`ZoneSpec`] (plain
//!   descriptions of the Services the agent compiles from its objects).
//! - [`answer`](mod@answer): one query's bytes in, a response's bytes (or
//!   "forward it upstream", or a drop) out.
//! - [`forward`]: names outside the cluster, to the node's upstream
//!   resolvers: cache, coalescing, timeouts, failover (sans-IO).
//! - `name`: label rules, reverse names, pod-record addresses.
//!
//! Contract: sans-IO like the rest of weft-switch (no clock, no sockets),
//! no panics on any input. Unlike the per-packet switch, answering a query
//! allocates (hickory-proto's message types): DNS queries are a small share
//! of packets, and nothing allocated outlives the call.

pub mod answer;
pub mod forward;
mod name;
pub mod zone;

#[cfg(test)]
mod tests;

pub use answer::{answer, Answer, DnsDrop, Proto, Summary};
pub use forward::{ForwardConfig, ForwardStats, Forwarder, Step};
pub use zone::{DnsZone, EndpointSpec, PortSpec, ServiceKind, ServiceSpec, ZoneSpec};
