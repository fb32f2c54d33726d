//! The control plane's store: a revisioned key/value map with
//! compare-and-swap transactions and watches, shaped like etcd's v3 API so an
//! etcd backend can stand in for the embedded one without touching callers.
//!
//! Contract:
//! - Every successful write transaction takes a new revision, greater than
//!   every earlier one; all of its operations carry that revision. Revisions
//!   never go back, across restarts. On a store of its own (the embedded one,
//!   or an etcd that serves one cluster) each write bumps the revision by
//!   exactly one; on an etcd shared by several clusters, the other clusters'
//!   writes take revisions too, so a cluster sees gaps.
//! - A transaction applies all of its operations or none. It applies only if
//!   every [`Compare`] holds at the moment it runs; otherwise it writes
//!   nothing and reports `succeeded: false`.
//! - [`Store::watch`] yields every event with a revision greater than `after`
//!   for keys under a prefix, in revision order, with no gaps and no
//!   duplicates, then follows live writes. If `after` is older than the oldest
//!   kept history it fails with [`StoreError::Compacted`]; a watcher that
//!   falls too far behind live writes gets [`StoreError::Lagged`] as its last
//!   item. Both mean: read a fresh snapshot with [`Store::range`] and watch
//!   again from its revision.
//! - A write that returned `Ok` is durable: it survives a crash.
//! - A transaction names each key at most once among its ops (etcd refuses
//!   a transaction that writes a key twice; both backends refuse it, see
//!   [`Txn::check`]), and carries at most [`Store::max_txn_ops`] compares and
//!   at most as many ops.
//!
//! Backends: [`redb`] (embedded, one file, the default) and [`etcd`] (several
//! control-plane replicas on one etcd cluster).

use std::pin::Pin;

use futures::Stream;

pub mod etcd;
pub mod redb;

#[cfg(test)]
mod suite;

/// A store revision. 0 means "before the first write".
pub type Revision = u64;

/// One key and its value, with the revisions it was created and last
/// modified at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the write that created the key (since its last delete).
    pub create_revision: Revision,
    /// Revision of the last write to the key.
    pub mod_revision: Revision,
}

/// What happened to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change to one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The revision of the transaction that made the change.
    pub revision: Revision,
    pub kind: EventKind,
    /// For `Put`, the new key/value. For `Delete`, the key with its last
    /// value, and `mod_revision` set to the revision of the delete.
    pub kv: KeyValue,
    /// The key/value before the change, if the key existed.
    pub prev: Option<KeyValue>,
}

/// A condition a transaction checks before it applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Compare {
    /// The key's `mod_revision` equals `revision` (0: the key is absent).
    ModRevision { key: String, revision: Revision },
    /// The key is absent.
    Absent { key: String },
    /// The key exists.
    Exists { key: String },
}

/// A write inside a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put {
        key: String,
        value: Vec<u8>,
    },
    /// Deleting an absent key is a no-op (and emits no event).
    Delete {
        key: String,
    },
}

/// A compare-and-swap transaction: if every compare holds, apply `ops`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub ops: Vec<Op>,
}

impl Txn {
    /// Refuse a transaction that writes one key twice, or that has more
    /// compares or ops than `max_ops`.
    pub fn check(&self, max_ops: usize) -> Result<(), StoreError> {
        if self.compares.len() > max_ops || self.ops.len() > max_ops {
            return Err(StoreError::Invalid(format!(
                "a transaction may carry at most {max_ops} compares and {max_ops} ops (this one: {} and {})",
                self.compares.len(),
                self.ops.len()
            )));
        }
        let mut seen = std::collections::HashSet::with_capacity(self.ops.len());
        for op in &self.ops {
            let key = match op {
                Op::Put { key, .. } | Op::Delete { key } => key,
            };
            if !seen.insert(key.as_str()) {
                return Err(StoreError::Invalid(format!(
                    "a transaction writes key {key:?} twice"
                )));
            }
        }
        Ok(())
    }
}

/// The result of [`Store::txn`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxnOutcome {
    /// Whether every compare held and the ops were applied.
    pub succeeded: bool,
    /// The store revision after the transaction (the new revision if it
    /// wrote, the current one otherwise).
    pub revision: Revision,
}

/// A stream of watch events.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Event, StoreError>> + Send>>;

/// Errors from a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The requested history was compacted away.
    #[error("revision {requested} has been compacted (oldest revision kept is {oldest}); read a fresh snapshot and watch from its revision")]
    Compacted {
        requested: Revision,
        oldest: Revision,
    },
    /// The watcher fell too far behind live writes and was dropped.
    #[error(
        "watcher fell behind by more than the store buffers; read a fresh snapshot and watch again"
    )]
    Lagged,
    /// The store could not be opened: path, and why.
    #[error("cannot open store at {path}: {reason}")]
    Open { path: String, reason: String },
    /// The backend failed (I/O, corruption, a broken connection).
    #[error("store backend error: {0}")]
    Backend(String),
    /// The backend cannot serve now (etcd unreachable, or without quorum);
    /// the request may succeed later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The request is one the store refuses whatever its state (a key
    /// written twice in one transaction, too many ops).
    #[error("store request refused: {0}")]
    Invalid(String),
}

/// A revisioned key/value store with compare-and-swap and watch. See the
/// module docs for the contract.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// One key, if present.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;
    /// Every key under `prefix`, sorted by key, and the revision this
    /// consistent snapshot was read at.
    async fn range(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), StoreError>;
    /// Run a compare-and-swap transaction.
    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError>;
    /// Events for keys under `prefix` with revision > `after`, then live.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError>;
    /// The current revision.
    async fn revision(&self) -> Result<Revision, StoreError>;
    /// Forget history at or below `revision` (watches from there fail with
    /// `Compacted`). Current values are kept.
    async fn compact(&self, revision: Revision) -> Result<(), StoreError>;
    /// A short description for status output, e.g. "redb:/var/lib/weft/state.redb".
    fn describe(&self) -> String;
    /// Whether work started through this store still holds its resources
    /// (a read on a blocking thread, a watch stream not yet dropped):
    /// stopping the control plane waits for it, so that the store is
    /// closed when `stop` returns. False for stores with nothing to close.
    fn busy(&self) -> bool {
        false
    }
    /// The most compares (and, separately, ops) one transaction may carry.
    fn max_txn_ops(&self) -> usize {
        usize::MAX
    }
}
