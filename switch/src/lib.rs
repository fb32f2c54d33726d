//! weft's packet core: the sans-IO half of the node agent's data plane.
//! The agent's engine (the IO shell: TUN and UDP fds, boringtun, the clock)
//! hands it one packet at a time and does what it answers.
//!
//! # Contract
//!
//! - **Sans-IO.** Nothing here opens, reads or writes a file, socket or
//!   process, sleeps or spawns; the caller owns every fd, buffer and
//!   thread. `switch/clippy.toml` bans those calls (and the types) and the
//!   crate denies `clippy::disallowed_methods` / `disallowed_types`, so a
//!   build with one fails (`tests/contract.rs` proves the ban bites).
//! - **No clock reads.** Time is an argument (`now: Instant`, e.g.
//!   [`Switch::from_pod`], [`TokenBucket::try_take`]); `Instant::now` and
//!   `SystemTime::now` are banned the same way.
//! - **No allocation per packet.** The per-packet calls ([`Switch`]'s
//!   `from_*`, [`offload::segment`], [`offload::Coalescer::push`],
//!   [`service::Translator::translate`]) work in
//!   the caller's buffers or in memory reserved at construction.
//!   Configuration (the control path) may allocate, and so does answering
//!   a DNS query ([`dns`] says why).
//! - **No panics on any input.** Every packet is read through a
//!   [`wire`] view whose checked constructor proves what its accessors
//!   index; `unwrap`, `expect` and unchecked indexing are denied in
//!   non-test code, except where an `#[allow]` names the constructor that
//!   proved the index. Malformed input becomes a counted drop.
//! - `#![forbid(unsafe_code)]`; dependencies: std, `ipnet`, `thiserror`,
//!   `hickory-proto` for the DNS wire format, `siphasher` (the keyed hash
//!   of the conntrack and affinity tables) and `rand_chacha` (the seeded
//!   endpoint choice).
//!
//! # The packet path
//!
//! Per packet, or per TSO/GRO super-packet (one decision per super-packet,
//! never per segment), in this order (DESIGN.md, "The packet path"):
//!
//! 1. **parse** with bounds checks: [`wire`] (`decide.rs`);
//! 2. **anti-spoofing**: a pod sends only from its own address, a peer
//!    only from its pod CIDR, the host port only from the node's overlay
//!    addresses — a strict reverse-path check on the route table, after
//!    dropping martians (`decide.rs`, `martian.rs`);
//! 3. **connection tracking** ([`conntrack`]): 5-tuple -> entry with
//!    NAT state, policy verdict slot, counters, Linux's timeouts; bounded,
//!    no allocation per packet. Built with step 5 as one call
//!    ([`service::Translator::translate`]) and run by the decision once
//!    [`Switch::enable_services`] turned it on (`services.rs`); the DNS
//!    VIP's stateless answers (step 4) are decided before it;
//! 4. **cluster DNS** ([`dns::vip`]): a UDP query from a local pod (or
//!    the host port) to a DNS VIP ([`Switch::set_dns`]) is answered by the
//!    node itself, before service translation (the VIP has no endpoints
//!    to translate to): from the zone into the caller's scratch buffer
//!    ([`Action::Reply`], a packet that fits the client's MTU), or handed
//!    to the engine for the upstream [`dns::Forwarder`]
//!    ([`Action::DnsForward`], answered later through
//!    [`dns::reply_packet`]); TCP to port 53 is the engine's
//!    ([`Action::DnsTcp`]); other ports get ICMP port unreachable; peers
//!    are never answered (the VIP is node-local);
//! 5. **service translation** ([`service`], `services.rs`): a new flow
//!    from a local pod or the host port to a ClusterIP / external IP ->
//!    one endpoint, rewritten in place with [`wire::FlowPacket::rewrite_dst`]
//!    (full or partial checksums, super-packets included); replies and
//!    ICMP errors reverse-translated from the entry; rejects (TCP RST,
//!    ICMP port unreachable) for Services without endpoints and ports
//!    they lack; hairpin; the route is then taken on the new destination;
//! 6. **network policy** ([`policy`], `policing.rs`): once a table is set
//!    ([`Switch::set_policy_table`]), each connection is judged once on
//!    the translated addresses (egress of a local client pod, ingress of a
//!    local endpoint pod), the verdict kept in its conntrack entry and
//!    judged again after a table change; denied packets are dropped;
//! 7. **route**: longest-prefix match ([`PrefixTable`]) -> a pod port, the
//!    host port or a peer ([`Action`]); then the TTL / hop limit, and the
//!    egress MTU (per segment for a super-packet; ICMP "fragmentation
//!    needed" / "packet too big" back, rate-limited) (`decide.rs`,
//!    `mtu.rs`, `icmp_error.rs`, `ratelimit.rs`).
//!
//! Around the decision,
//! the engine uses [`offload`]: [`offload::segment`] splits a TUN's
//! super-packet for a peer (checking its virtio-net header against the
//! packet and the path MTU, refusing by cause), [`offload::Coalescer`]
//! merges decrypted segments into one for a TUN.
//!
//! # Files
//!
//! - `wire/`: the one wire layer — views of IPv4, IPv6, TCP, UDP, ICMP,
//!   the quoted packet of an ICMP error, IP+TCP/UDP with its checksum state
//!   (`flow.rs`), the virtio-net header, and the one checksum (RFC 1071
//!   sum, RFC 1624 update, pseudo-headers).
//! - `decide.rs`: the per-packet decision and [`Action`]; `services.rs`:
//!   conntrack and translation as a step of it; `policing.rs`: the
//!   policy step, its counters and denial records; `config.rs`: the
//!   control path (CIDRs, host addresses, ports, peers, MTUs) and the route
//!   table built from it; `prefix.rs`: the LPM table; `ports.rs`: ids and
//!   routes; `martian.rs`: never-forwarded addresses; `mtu.rs`: the egress
//!   MTU check; `icmp_error.rs`: the ICMP errors the switch writes;
//!   `ratelimit.rs`: the token bucket; `counters.rs`: drop reasons.
//! - `offload/`: `segment.rs` (TSO/USO in software, with the virtio-net
//!   header checks), `coalesce.rs` and `merge.rs` (GRO in software).
//! - `dns/`: the cluster zone, the query answerer, the upstream forwarder,
//!   the DNS VIP step and the reply packets it builds, its counters.
//! - `policy/`: NetworkPolicy compiled per local pod and direction.
//! - `conntrack/`: the connection table (two keys per entry, TCP/UDP
//!   states and timeouts, eviction order, per-source limits).
//! - `service/`: the compiled service table, ClientIP affinity, endpoint
//!   choice and the per-packet translation step.
//! - `testing/` (cargo feature `testing`): the packet builder, the
//!   independent checksum oracle and the test clock every test and
//!   benchmark of the workspace uses.

#![forbid(unsafe_code)]
#![deny(unreachable_pub)]
#![deny(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::print_stdout,
    clippy::print_stderr
)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

mod config;
pub mod conntrack;
mod counters;
mod decide;
pub mod dns;
mod icmp_error;
mod martian;
mod mtu;
pub mod offload;
mod policing;
pub mod policy;
mod ports;
mod prefix;
mod ratelimit;
pub mod service;
mod services;
mod trace;
pub mod wire;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(test)]
mod tests;

pub use config::{ConfigError, MAX_ID, MAX_MTU, MIN_MTU};
pub use counters::{Counters, DropReason};
pub use decide::{Action, Switch, DEFAULT_ICMP_BURST, DEFAULT_ICMP_PER_SECOND};
pub use icmp_error::IcmpError;
pub use policing::{Denial, PolicyCounters, PolicyStatus, DENIAL_LOG_BURST, DENIAL_LOG_PER_SECOND};
pub use ports::{Ingress, PeerId, PortId, Route};
pub use prefix::PrefixTable;
pub use ratelimit::TokenBucket;
pub use services::{ServicesConfig, ServicesStatus};
pub use trace::{probe_packet, ProbeKind, Trace, TracedPolicy, TracedService};
pub use wire::{IpPacket, Ipv4Packet, Ipv6Packet, ParseError, Transport};
