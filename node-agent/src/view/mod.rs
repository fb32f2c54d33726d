//! The cluster's objects as this agent holds them: namespaces, pods,
//! Services, EndpointSlices and NetworkPolicies, from the control plane's
//! watch, kept in memory and in the state dir, and handed to the data
//! plane as immutable, versioned snapshots.
//!
//! Contract:
//! - [`ClusterView`] (sans-IO) applies watch events as [`PeerDirectory`]
//!   applies them to nodes: a snapshot (gathered over its parts) replaces
//!   every object; a `PUT` stores the object, a `DELETE` removes it (by
//!   kind, namespace and name, whatever its JSON holds); events older than
//!   the view's revision are skipped (they were applied). An object whose
//!   JSON does not read as its kind is left out and counted, and never
//!   stops the stream; kinds this agent does not know are ignored.
//! - [`ViewSnapshot`] is what readers get: an `Arc` that never changes,
//!   with a `version` that grows with every change of content, its maps
//!   shared between snapshots until one of them changes (copy on write, one
//!   copy of a kind's map per watch response that touches that kind).
//! - [`ViewFeed`] is the IO side: the view behind a lock, a
//!   `tokio::sync::watch` channel that carries each new snapshot (the
//!   change notification), and `objects.json` in the state dir, written
//!   atomically (weft-files) by [`persist_loop`] at most once per interval
//!   and once more on stop. An agent restarted without its control plane
//!   serves the persisted objects at once; a missing or unreadable file
//!   means an empty view at revision 0 (the watch then starts from a full
//!   snapshot), logged.
//! - The watch resumes from the smaller of the peer table's and the view's
//!   revisions (the two files are written apart), so neither misses a
//!   change; replaying changes already applied is harmless.
//!
//! - [`follow`] is how the compilers of the view (Services, cluster DNS,
//!   NetworkPolicy) follow its snapshots.
//!
//! Files: `snapshot.rs` (the immutable snapshot and its keys), `table.rs`
//! (applying events), `file.rs` (`objects.json`), `feed.rs` (the lock, the
//! channel, persisting), `follow.rs` (the compilers' loop).
//!
//! [`PeerDirectory`]: crate::cluster::PeerDirectory

mod feed;
mod file;
mod follow;
mod snapshot;
mod table;

pub use feed::{persist_loop, ViewFeed};
pub use file::{ViewFile, FILE_NAME};
pub use follow::follow;
pub use snapshot::{ObjectKey, ViewSnapshot};
pub use table::ClusterView;
