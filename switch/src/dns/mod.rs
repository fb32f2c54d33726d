//! Cluster DNS, answered inside the packet path: the Kubernetes DNS-Based
//! Service Discovery specification (schema 1.1.0) for the cluster domain.
//!
//! - [`zone`]: [`DnsZone`], the records, built from [`ZoneSpec`] (plain
//!   descriptions of the Services the agent compiles from its objects).
//! - [`answer`](mod@answer): one query's bytes in, a response's bytes (or
//!   "forward it upstream", or a drop) out.
//! - [`forward`]: names outside the cluster, to the node's upstream
//!   resolvers: cache, coalescing, timeouts, failover (sans-IO).
//! - [`vip`]: the DNS VIP step of the switch's decision (configuration,
//!   the query's client, the actions for the engine), finished (answered,
//!   counted) in `finish`; [`reply`]: the
//!   UDP/IP packet carrying a response back to the client; [`counters`]:
//!   what the VIP counts.
//! - `name`: label rules, reverse names, pod-record addresses.
//!
//! Contract: sans-IO like the rest of weft-switch (no clock, no sockets),
//! no panics on any input. Unlike the per-packet switch, answering a query
//! allocates (hickory-proto's message types): DNS queries are a small share
//! of packets, and nothing allocated outlives the call.

pub mod answer;
pub mod counters;
mod finish;
pub mod forward;
mod name;
pub mod reply;
pub mod vip;
pub mod zone;

#[cfg(test)]
pub(crate) mod tests;

pub use answer::{answer, answer_within, Answer, DnsDrop, Proto, Summary};
pub use counters::{DnsCounters, DnsDropReason, DnsQtype, DnsRcode};
pub use forward::{ForwardConfig, ForwardStats, Forwarder, Step, LATENCY_BOUNDS};
pub use reply::{reply_packet, ReplyError, Written};
pub use vip::{
    DnsClient, DnsConfig, DnsOrigin, DnsQuery, DEFAULT_CLUSTER_DOMAIN, DEFAULT_DNS_VIP, DNS_PORT,
};
pub use zone::{DnsZone, EndpointSpec, PortSpec, ServiceKind, ServiceSpec, ZoneSpec};
