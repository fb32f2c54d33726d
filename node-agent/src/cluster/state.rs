//! The cluster client's state: one owner, one lock.
//!
//! Contract:
//! - [`Shared`] is what the client's tasks (watch, apply, persist, lease)
//!   hold an `Arc` of: the facts fixed at start (config, state-dir paths,
//!   key) in plain fields, and everything that changes in one [`State`]
//!   behind one mutex, reached only through [`Shared::with`]. The closure
//!   is synchronous, so the lock is never held across an `.await`, and a
//!   change that spans several parts (a re-join replacing node,
//!   credential and channel) is seen whole or not at all.
//! - Wake-ups go by channels beside the lock: `renew_now` (renew the lease
//!   and check this node's record), `persist_now` (write `peers.json`),
//!   and `channel_gen` (bumped when a re-join replaced the channel).
//! - The cluster's objects keep their own lock ([`ViewFeed`]).
//! - This module depends on nothing of the tasks that use it (`watch`,
//!   `lease`, `membership`), so the client's modules form no cycle:
//!   `options`, `statedir`, `peers` <- `state` <- `watch`, `lease` <-
//!   `membership`.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{watch, Notify};
use tonic::transport::Channel;
use weft_client::Credentials;

use super::options::MembershipConfig;
use super::peers::PeerDirectory;
use super::statedir::{NodeFile, PeersFile, StatePaths};
use crate::view::ViewFeed;
use crate::wg::NodeKey;

/// The link to the control plane, as the tasks last saw it.
#[derive(Debug, Default)]
pub(super) struct Connection {
    /// The watch stream is up.
    pub(super) connected: bool,
    /// The last error talking to the control plane.
    pub(super) last_error: Option<String>,
    /// The control plane said this node no longer exists.
    pub(super) removed: bool,
    pub(super) watch_attempts: u64,
    pub(super) watch_failures: u64,
    pub(super) lease_renewals: u64,
}

/// Everything about the node's membership that changes while it runs.
pub(super) struct State {
    /// This node's record (`node.json`).
    pub(super) node: NodeFile,
    /// The node credential (`credentials.json`).
    pub(super) creds: Credentials,
    /// The channel the watch and reconciliation use (replaced on a re-join).
    pub(super) channel: Channel,
    /// The other nodes, as the watch described them.
    pub(super) peers: PeerDirectory,
    /// The link's health.
    pub(super) connection: Connection,
    /// Joins made by this client (1 on a first start, more on re-joins).
    pub(super) joins: u64,
    /// The peers changed since `peers.json` was last written.
    pub(super) dirty: bool,
}

/// What the cluster client's tasks share (see the module docs).
pub(super) struct Shared {
    pub(super) cfg: MembershipConfig,
    pub(super) paths: StatePaths,
    pub(super) key: NodeKey,
    state: Mutex<State>,
    /// Bumped when `State::channel` is replaced (after a re-join).
    pub(super) channel_gen: watch::Sender<u64>,
    /// Wakes the lease task: renew now and check this node's own record.
    pub(super) renew_now: Notify,
    /// Wakes the persist task.
    pub(super) persist_now: Notify,
    /// The cluster's objects (namespaces, pods, Services, ...), behind
    /// their own lock: the watch task applies each response's objects
    /// there, the registration task and the local API read them.
    pub(super) view: Arc<ViewFeed>,
    /// Bumped each time a watch stream opens: the pod registrations sync
    /// after every (re)connection.
    pub(super) watch_opened: watch::Sender<u64>,
}

impl Shared {
    pub(super) fn new(
        cfg: MembershipConfig,
        paths: StatePaths,
        key: NodeKey,
        state: State,
        view: Arc<ViewFeed>,
    ) -> Self {
        Self {
            cfg,
            paths,
            key,
            state: Mutex::new(state),
            channel_gen: watch::channel(0).0,
            renew_now: Notify::new(),
            persist_now: Notify::new(),
            view,
            watch_opened: watch::channel(0).0,
        }
    }

    /// Where the next watch resumes: the older of the peer directory's and
    /// the cluster view's revisions (0 when either has none), so neither
    /// misses a change.
    pub(super) fn resume_revision(&self) -> u64 {
        let peers = self.with(|s| s.peers.revision());
        peers.min(self.view.revision())
    }

    /// The next watch starts with a snapshot.
    pub(super) fn reset_revision(&self) {
        self.with(|s| s.peers.reset_revision());
        self.view.reset_revision();
    }

    /// Runs `f` on the state under its lock. `f` must not block.
    pub(super) fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The current channel to the control plane.
    pub(super) fn channel(&self) -> Channel {
        self.with(|s| s.channel.clone())
    }

    /// Records the last error talking to the control plane.
    pub(super) fn set_error(&self, e: impl Into<String>) {
        let e = e.into();
        self.with(|s| s.connection.last_error = Some(e));
    }

    /// Notes that the peers changed, and wakes the persist task.
    pub(super) fn mark_dirty(&self) {
        self.with(|s| s.dirty = true);
        self.persist_now.notify_one();
    }

    /// Whether `peers.json` is behind.
    pub(super) fn is_dirty(&self) -> bool {
        self.with(|s| s.dirty)
    }

    /// Writes `peers.json` if anything changed since the last write.
    pub(super) fn persist(&self) {
        let file = self.with(|s| {
            if !std::mem::take(&mut s.dirty) {
                return None;
            }
            Some(PeersFile {
                revision: s.peers.revision(),
                peers: s.peers.records(),
            })
        });
        let Some(file) = file else {
            return;
        };
        if let Err(e) = file.save(&self.paths.peers()) {
            self.with(|s| s.dirty = true);
            tracing::warn!(error = %e, "cannot write the peer cache");
        }
    }
}
