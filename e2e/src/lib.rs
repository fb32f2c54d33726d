//! Helpers of weft's multi-node end-to-end tests (`tests/*.rs`).
//!
//! The tests build whole clusters on one machine with
//! [`weft_lab::Cluster`] (a control plane, node agents and pods, each in
//! its own network namespace, on a private underlay bridge) and check what
//! only real kernel objects show: pings and TCP streams through pod TUNs,
//! WireGuard on the underlay, anti-spoofing, churn and restarts. See
//! `e2e/README.md` for what each test covers.
//!
//! Contract:
//! - Everything needs root and says so ([`require_root`] is an error, not a
//!   skip, without it).
//! - Every wait is bounded; a failed wait names what it waited for and the
//!   last thing it saw.
//! - Traffic only ever leaves from, and goes to, the lab's own namespaces:
//!   sockets are opened on short-lived threads that entered a lab namespace
//!   ([`in_ns`]), never in the test's own namespace.
//! - Nothing here panics on bad input; errors are [`E2eError`]s, whose
//!   `Debug` is their message, so a test returning `Result<(), E2eError>`
//!   fails with a readable line.

#![forbid(unsafe_code)]

mod capture;
mod error;
mod net;
mod packet;
mod pcap;
mod rogue;
mod setup;
mod stream;

pub use capture::{Capture, CaptureSummary};
pub use error::{E2eError, Result};
pub use net::{
    in_ns, interface_addresses, ping_until, raw_ipv4_socket, send_raw, tcp_connect, tcp_listen,
    tcp_pair, tcp_retransmits, udp_bind, InterfaceAddress, UdpInbox,
};
pub use packet::{ipv4_udp, Ipv4Udp};
pub use pcap::{contains, read_pcap, Frame, LinkProtocol, UnderlayReport};
pub use rogue::{RogueJoin, RoguePeer};
pub use setup::{
    binaries, drop_count, peer_names, require_root, spec, unique, up, wait_until, Stopwatch, POLL,
};
pub use stream::{transfer, Pattern, PatternReader, PatternWriter, TransferReport};
