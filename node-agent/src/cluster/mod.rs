//! The cluster client: the control-plane side of the agent. It joins (or
//! reuses the identity in the state dir), keeps a watch open and turns its
//! events into peer changes for the engine, renews the node's lease, keeps
//! this node's record right, and persists what it learnt.
//!
//! Files, from pure to IO (each imports only those before it, so there is
//! no cycle):
//! - [`options`]: [`MembershipConfig`] and [`Timing`];
//! - [`backoff`], [`files`], [`error`];
//! - [`statedir`]: the state dir (`credentials.json`, `node.json`,
//!   `peers.json`; the key file is [`crate::wg::NodeKey`]'s), each written
//!   atomically with mode 0600;
//! - [`peers`]: the sans-IO [`PeerDirectory`] (watch events in,
//!   [`PeerAction`]s out) and the [`PeerSink`] they go to (the engine in
//!   production);
//! - [`join`]: the `Join` call, its retries and first-start bound;
//! - `state`: the one shared state type, one lock, reached by closure;
//! - `watch` (the watch stream, applying and persisting peers) and `lease`
//!   (renewals on their own thread, re-joins, this node's record);
//! - [`Membership`] (`membership.rs`): bootstrap, then run those tasks
//!   until shutdown; testable against a real control plane with a fake
//!   sink, since it touches no TUN or socket.
//!
//! Data flow: watch stream -> `PeerDirectory::apply` -> `PeerAction`s over
//! an mpsc channel -> the apply task -> [`PeerSink`] (the engine's
//! control channel). The lease task and the watch task share only
//! `state::Shared`.

pub mod backoff;
mod error;
pub mod files;
pub mod join;
mod lease;
mod membership;
pub mod options;
pub mod peers;
mod state;
pub mod statedir;
mod watch;

pub use self::error::ClusterError;
pub use self::membership::{Membership, MembershipStatus};
pub use self::options::{MembershipConfig, Timing};
pub use self::peers::{PeerAction, PeerDirectory, PeerRecord, PeerSink, PeerSinkError};
pub use self::statedir::{ClusterSettings, NodeFile, PeersFile, StatePaths};
