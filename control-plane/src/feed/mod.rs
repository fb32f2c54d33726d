//! The watch feed: what every `Watch` stream and every controller of this
//! replica reads, kept in memory from one store watch.
//!
//! Contract:
//! - One store watch per replica follows every change to `nodes/` and
//!   `objects/`. Each store transaction becomes one [`Batch`] of prepared
//!   `weft.v1` changes (an object's JSON gets its `resourceVersion` here,
//!   and each change is encoded as its `WatchEvent` here: once, not once
//!   per watcher), applied to the in-memory state and sent to every
//!   subscriber. The events of one transaction are never split.
//! - The state (every node and object at [`Feed::revision`]) serves
//!   snapshots. A fresh subscription first lets the feed catch up with the
//!   store's current revision (at most [`CATCH_UP`]), so a snapshot shows
//!   every write that completed before the watch started. A snapshot is a
//!   frozen copy shared by every subscriber that asks while the state is at
//!   its revision (a burst of agents reconnecting shares one copy).
//! - The last [`HISTORY_REVISIONS`] transactions (at most
//!   [`HISTORY_BYTES`] of them) stay in memory, filled from the store's own
//!   history when the feed starts, so a client resumes after a control-plane
//!   restart without a new snapshot. A resume from further back is
//!   `Compacted` (OUT_OF_RANGE: the client takes a snapshot).
//! - If the store watch fails (or lags), every subscription ends (their
//!   clients resume from their last revision) and the feed loads afresh.
//!
//! Files: `mod.rs` (state, subscriptions), `prepare.rs` (store events to
//! `weft.v1` changes), `follow.rs` (the loading and following task),
//! `tests.rs`.

mod follow;
mod prepare;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use weft_objects::Kind;
use weft_proto::v1;

pub use follow::run;

use crate::service::WatchError;
use crate::store::{Revision, Store, StoreError};

/// Transactions kept for resuming watches.
pub const HISTORY_REVISIONS: usize = 10_000;
/// Most bytes of prepared changes kept for resuming watches.
pub const HISTORY_BYTES: usize = 64 * 1024 * 1024;
/// Longest wait of a fresh subscription for the feed to reach the store's
/// current revision. (On an etcd shared with other clusters the store's
/// revision counts their writes too, which the feed never sees; the
/// snapshot is then served at the feed's revision after this wait.)
pub const CATCH_UP: Duration = Duration::from_secs(2);
/// Batches buffered for subscribers; one further behind is dropped (its
/// client resumes from the history).
pub const BROADCAST_CAPACITY: usize = 16_384;
/// How long a subscription waits for the feed to load or catch up.
const WAIT: Duration = Duration::from_secs(10);

/// What a feed item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ItemKind {
    Node,
    Object(Kind),
}

/// One node or object, as sent.
#[derive(Debug, Clone)]
pub enum Payload {
    Node(v1::Node),
    Object(v1::Object),
}

impl Payload {
    /// What it is.
    pub fn kind(&self) -> ItemKind {
        match self {
            Payload::Node(_) => ItemKind::Node,
            Payload::Object(o) => ItemKind::Object(o.kind.parse::<Kind>().unwrap_or(Kind::Node)),
        }
    }

    /// About how many bytes it takes on the wire.
    pub fn size(&self) -> usize {
        match self {
            Payload::Node(n) => {
                64 + n.name.len() + n.endpoints.iter().map(String::len).sum::<usize>() + 64
            }
            Payload::Object(o) => 32 + o.namespace.len() + o.name.len() + o.json.len(),
        }
    }
}

/// One change, as sent.
#[derive(Debug, Clone)]
pub struct Event {
    /// The store key (`nodes/..`, `objects/..`).
    pub key: String,
    /// Put or delete.
    pub deleted: bool,
    /// The new state (put) or the last one (delete).
    pub payload: Payload,
    /// This change as an encoded `weft.v1.WatchEvent` (at the batch's
    /// revision), shared by every watcher that sends it.
    pub encoded: bytes::Bytes,
}

/// The changes of one store transaction.
#[derive(Debug)]
pub struct Batch {
    pub revision: Revision,
    pub events: Vec<Event>,
    /// About how many bytes the events take (decoded and encoded).
    pub size: usize,
}

/// A frozen copy of the state, shared by subscribers.
#[derive(Debug, Clone)]
pub struct Frozen {
    pub revision: Revision,
    pub items: Arc<Vec<Arc<Payload>>>,
    /// The state's `changed_at` when it was copied.
    changed_at: Revision,
}

/// What a subscriber gets: a snapshot (fresh watches), the batches after
/// it or after the resume revision, then the live ones.
pub struct Subscription {
    pub snapshot: Option<Frozen>,
    pub backlog: VecDeque<Arc<Batch>>,
    pub live: broadcast::Receiver<Arc<Batch>>,
    /// The revision the subscription starts after.
    pub start: Revision,
}

struct State {
    loaded: bool,
    revision: Revision,
    items: BTreeMap<String, Arc<Payload>>,
    /// The revision of the last batch that changed `items` (or of the load).
    changed_at: Revision,
    frozen: Option<Frozen>,
    history: VecDeque<Arc<Batch>>,
    history_bytes: usize,
    /// The history holds every batch after this revision.
    oldest: Revision,
    tx: broadcast::Sender<Arc<Batch>>,
    /// The history before the load is still being read.
    filling: bool,
    /// Counts loads.
    generation: u64,
    /// Most transactions, and most bytes, kept in `history`.
    limits: (usize, usize),
}

/// The feed. Shared behind an `Arc`; [`run`] keeps it current.
pub struct Feed {
    store: Arc<dyn Store>,
    state: Mutex<State>,
    /// The revision the feed has applied (0 until loaded).
    applied: watch::Sender<Revision>,
    /// Whether the history before the last load has been read.
    filled: watch::Sender<bool>,
}

impl Feed {
    /// An empty feed on `store`; nothing is served until [`run`] loads it.
    pub fn new(store: Arc<dyn Store>) -> Arc<Feed> {
        Self::with_history(store, HISTORY_REVISIONS, HISTORY_BYTES)
    }

    /// A feed that keeps at most `revisions` transactions and `bytes` of
    /// history (tests use small ones).
    pub fn with_history(store: Arc<dyn Store>, revisions: usize, bytes: usize) -> Arc<Feed> {
        Arc::new(Feed {
            store,
            state: Mutex::new(State {
                loaded: false,
                revision: 0,
                items: BTreeMap::new(),
                changed_at: 0,
                frozen: None,
                history: VecDeque::new(),
                history_bytes: 0,
                oldest: 0,
                tx: broadcast::channel(BROADCAST_CAPACITY).0,
                filling: false,
                generation: 0,
                limits: (revisions.max(1), bytes),
            }),
            applied: watch::channel(0).0,
            filled: watch::channel(false).0,
        })
    }

    /// How many transactions the history keeps.
    fn history_revisions(&self) -> usize {
        self.state().limits.0
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The revision the feed has applied.
    pub fn revision(&self) -> Revision {
        *self.applied.borrow()
    }

    /// Follow the applied revision.
    pub fn applied(&self) -> watch::Receiver<Revision> {
        self.applied.subscribe()
    }

    /// Wait until the feed is loaded and has applied `revision`.
    async fn wait_for(&self, revision: Revision) -> Result<(), WatchError> {
        let mut rx = self.applied.subscribe();
        // `reset` marks the state loaded before it publishes the revision.
        let loaded = |r: &Revision| *r >= revision && self.state().loaded;
        let ready = matches!(
            tokio::time::timeout(WAIT, rx.wait_for(loaded)).await,
            Ok(Ok(_))
        );
        if ready {
            Ok(())
        } else {
            Err(WatchError::NotReady)
        }
    }

    /// Subscribe: from a fresh snapshot (`resume` 0), or with exactly the
    /// changes after `resume`.
    pub async fn subscribe(&self, resume: Revision) -> Result<Subscription, WatchError> {
        if resume == 0 {
            // Read-your-writes: the snapshot includes every completed write.
            let head = self.store.revision().await.map_err(WatchError::from)?;
            let mut rx = self.applied.subscribe();
            let _ = tokio::time::timeout(CATCH_UP, rx.wait_for(|r| *r >= head)).await;
        } else if resume > self.revision() {
            let head = self.store.revision().await.map_err(WatchError::from)?;
            if resume > head {
                return Err(WatchError::AheadOfHead { resume, head });
            }
        }
        self.wait_for(resume).await?;
        if resume != 0 && resume < self.state().oldest && self.state().filling {
            // A resume from before the load waits for the history.
            let mut filled = self.filled.subscribe();
            let _ = tokio::time::timeout(WAIT, filled.wait_for(|f| *f)).await;
        }
        let mut st = self.state();
        if !st.loaded {
            return Err(WatchError::NotReady);
        }
        if resume == 0 {
            // Batches without carried changes (leases, allocation keys)
            // move the revision but leave a frozen copy current.
            let (revision, changed_at) = (st.revision, st.changed_at);
            match &mut st.frozen {
                Some(f) if f.changed_at == changed_at => f.revision = revision,
                _ => {
                    let items: Vec<Arc<Payload>> = st.items.values().cloned().collect();
                    st.frozen = Some(Frozen {
                        revision,
                        items: Arc::new(items),
                        changed_at,
                    });
                }
            }
            let frozen = st.frozen.clone().ok_or(WatchError::NotReady)?;
            let start = frozen.revision;
            Ok(Subscription {
                backlog: backlog(&st.history, start),
                live: st.tx.subscribe(),
                snapshot: Some(frozen),
                start,
            })
        } else {
            if resume < st.oldest {
                return Err(WatchError::from(StoreError::Compacted {
                    requested: resume,
                    oldest: st.oldest,
                }));
            }
            Ok(Subscription {
                backlog: backlog(&st.history, resume),
                live: st.tx.subscribe(),
                snapshot: None,
                start: resume,
            })
        }
    }

    /// Every node and object now, and the revision (for controllers).
    pub fn items(&self) -> (Vec<Arc<Payload>>, Revision) {
        let st = self.state();
        (st.items.values().cloned().collect(), st.revision)
    }

    /// Replace the state (a fresh load at `revision`), with an empty
    /// history still to be filled. Ends every subscription. Returns the
    /// load's generation.
    fn reset(&self, items: BTreeMap<String, Arc<Payload>>, revision: Revision) -> u64 {
        let mut st = self.state();
        st.tx = broadcast::channel(BROADCAST_CAPACITY).0;
        st.items = items;
        st.revision = revision;
        st.changed_at = revision;
        st.frozen = None;
        st.history.clear();
        st.history_bytes = 0;
        st.oldest = revision;
        st.filling = true;
        st.generation += 1;
        st.loaded = true;
        let generation = st.generation;
        drop(st);
        self.applied.send_replace(revision);
        self.filled.send_replace(false);
        generation
    }

    /// The history before the load: `batches` (in order, all at or before
    /// the load's revision) cover everything after `oldest`.
    fn history_filled(&self, batches: Vec<Batch>, oldest: Revision, generation: u64) {
        let mut st = self.state();
        if st.generation != generation {
            return;
        }
        let live: Vec<Arc<Batch>> = st.history.drain(..).collect();
        st.history_bytes = 0;
        st.oldest = oldest;
        for b in batches {
            push_history(&mut st, Arc::new(b));
        }
        for b in live {
            push_history(&mut st, b);
        }
        st.filling = false;
        drop(st);
        self.filled.send_replace(true);
    }

    /// Mark the feed broken: subscriptions end, new ones wait for a reload.
    fn break_off(&self) {
        let mut st = self.state();
        st.loaded = false;
        st.tx = broadcast::channel(BROADCAST_CAPACITY).0;
    }

    /// Apply one live batch and send it.
    fn apply(&self, batch: Batch) {
        let mut st = self.state();
        if batch.revision <= st.revision {
            return;
        }
        if batch.events.is_empty() {
            st.revision = batch.revision;
            drop(st);
            self.applied.send_replace(batch.revision);
            return;
        }
        for e in &batch.events {
            if e.deleted {
                st.items.remove(&e.key);
            } else {
                st.items.insert(e.key.clone(), Arc::new(e.payload.clone()));
            }
        }
        st.revision = batch.revision;
        st.changed_at = batch.revision;
        let batch = Arc::new(batch);
        push_history(&mut st, batch.clone());
        let _ = st.tx.send(batch);
        let rev = st.revision;
        drop(st);
        self.applied.send_replace(rev);
    }
}

fn push_history(st: &mut State, batch: Arc<Batch>) {
    st.history_bytes += batch.size;
    st.history.push_back(batch);
    let (max_revisions, max_bytes) = st.limits;
    while st.history.len() > max_revisions || st.history_bytes > max_bytes {
        let Some(old) = st.history.pop_front() else {
            break;
        };
        st.history_bytes -= old.size;
        st.oldest = old.revision;
    }
}

/// The history batches after `after`.
fn backlog(history: &VecDeque<Arc<Batch>>, after: Revision) -> VecDeque<Arc<Batch>> {
    let from = history.partition_point(|b| b.revision <= after);
    history.range(from..).cloned().collect()
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("revision", &self.revision())
            .finish()
    }
}
