//! The node agent's packet switch: a pure, IO-free L3 decision core.
//!
//! Contract (sans-IO, see DESIGN "Node agent: the data plane"):
//!
//! - The caller (the IO shell) owns every file descriptor, socket, buffer and
//!   clock. It hands one IP packet at a time to [`Switch::from_pod`],
//!   [`Switch::from_peer`] or [`Switch::from_host`], together with a scratch
//!   buffer and the current time, and gets back an [`Action`] saying what to do.
//! - Nothing here does IO, reads a clock, locks, hashes or allocates on the
//!   per-packet path. Configuration ([`Switch::set_pod_port`],
//!   [`Switch::set_peer`], ...) runs on the control path and may allocate.
//! - Nothing here panics on any input bytes: malformed packets become
//!   [`Action::Drop`] with [`DropReason::Malformed`], counted in [`Counters`].
//!
//! Per-packet steps, in order: parse (bounds-checked views, [`Ipv4Packet`],
//! [`Ipv6Packet`], [`Transport`]), drop martians, anti-spoofing (strict
//! reverse-path check against the route table), *conntrack, service NAT and
//! policy slot in here later*, route by longest-prefix match ([`PrefixTable`]),
//! decrement TTL / hop limit, and forward or answer with an ICMP error.
//!
//! Files: `checksum` (RFC 1071/1624), `ipv4`/`ipv6`/`packet`/`transport`
//! (views), `prefix` (LPM table), `icmp` (error generation), `ratelimit`
//! (token bucket), `martian` (never-forwarded addresses), `ports` (ids and
//! routes), `counters`, `config` (control path) and `decide` (the per-packet
//! decision).

mod checksum;
mod config;
mod counters;
mod decide;
pub mod dns;
mod icmp;
mod ipv4;
mod ipv6;
mod martian;
pub mod offload;
mod packet;
pub mod policy;
mod ports;
mod prefix;
mod ratelimit;
mod transport;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;

pub use config::{ConfigError, MAX_ID};
pub use counters::{Counters, DropReason};
pub use decide::{Action, Switch, DEFAULT_ICMP_BURST, DEFAULT_ICMP_PER_SECOND};
pub use icmp::IcmpError;
pub use ipv4::Ipv4Packet;
pub use ipv6::Ipv6Packet;
pub use packet::{IpPacket, ParseError};
pub use ports::{PeerId, PortId, Route};
pub use prefix::PrefixTable;
pub use ratelimit::TokenBucket;
pub use transport::Transport;
