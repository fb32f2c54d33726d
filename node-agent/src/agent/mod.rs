//! The agent core: flags, keys, joining, the watch client, leases, and
//! wiring the data plane, pods and the local API together.
//!
//! Layers, from pure to IO:
//! - [`config`]: the command line, checked into an [`AgentConfig`] (exit 64
//!   with one line on bad input).
//! - [`keys`], [`state`]: the state dir (`private.key`, `credentials.json`,
//!   `node.json`, `peers.json`), each written atomically with mode 0600.
//! - [`peers`]: the sans-IO [`PeerTable`] (watch events in, [`PeerAction`]s
//!   out) and the [`PeerSink`] they go to (the data plane in production).
//! - [`AgentCore`]: join or reuse the identity, then watch, renew the lease,
//!   correct this node's record, persist; testable against a real control
//!   plane with a fake sink, since it touches no TUN or socket.
//! - [`run()`]: the whole agent (UDP socket, host TUN `weft0`, data plane,
//!   pods, local API), and [`leave`].

pub mod backoff;
pub mod config;
mod core;
mod error;
pub mod files;
pub mod join;
pub mod keys;
mod lease;
pub mod peers;
mod run;
pub mod state;
pub mod underlay;
mod watch;

pub use self::config::{parse, AgentConfig, ConfigError, Invocation, LeaveConfig};
pub use self::core::{AgentCore, CoreConfig, CoreStatus, Timing};
pub use self::error::AgentError;
pub use self::keys::{KeyError, NodeKey};
pub use self::peers::{PeerAction, PeerRecord, PeerSink, PeerSinkError, PeerTable};
pub use self::run::{leave, run, RunError, HOST_IFNAME};
pub use self::state::{ClusterSettings, NodeFile, PeersFile, StatePaths};
