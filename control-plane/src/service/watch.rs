//! The `Watch` stream: a snapshot (or a resume point), then every change to
//! nodes and objects, each with its store revision, batched into
//! responses, and keepalives in between. Served from the replica's
//! [`Feed`], so a change is prepared once for every watcher.
//!
//! Contract, per stream:
//! - A snapshot comes first (fresh watches only), in parts of at most
//!   [`SNAPSHOT_PART`] nodes or [`PART_BYTES`] of objects, one part per
//!   response; the cluster settings are in the first.
//! - Changes are batched: a response carries the first ready transaction
//!   plus whatever else arrives within [`LINGER`], up to [`MAX_BATCH`]
//!   events or [`PART_BYTES`]; the events of one store transaction are
//!   never split across responses.
//! - A keepalive (carrying the last revision sent) follows every
//!   `watch_keepalive` of silence.
//! - The stream ends with a status: ABORTED if it fell behind the feed,
//!   UNAVAILABLE on shutdown or when the feed reloads (resume either way).
//!
//! The stream is a plain state machine polled by tonic: no task per
//! watcher. Changes go out as the feed encoded them (each `WatchEvent`'s
//! bytes are shared by every watcher: a watcher copies them into its
//! frame, it does not build or encode them again).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tonic::Status;
use weft_proto::v1::{
    watch_event, ClusterSettings, Keepalive, Snapshot, WatchEvent, WatchResponse,
};

use crate::feed::{Batch, Feed, Frozen, Payload};
use crate::registry::RegistryError;
use crate::store::{Revision, StoreError};

/// The stream type of `Cluster.Watch`.
pub(super) type WatchResponseStream =
    Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

/// Nodes per snapshot part. A node is about 200 bytes: parts stay near
/// 13 KB, because each stream keeps an encode buffer as large as the largest
/// message it sent (2,000 watch streams x 200 KB would be 400 MB).
pub const SNAPSHOT_PART: usize = 64;
/// Most bytes of objects in one snapshot part or change batch (one
/// transaction's changes are never split, so a batch may exceed it by the
/// rest of one transaction).
pub const PART_BYTES: usize = 32 * 1024;
/// How long a batch waits for more events after its first one.
pub const LINGER: Duration = Duration::from_millis(10);
/// Most events in one response (a store transaction is never split, so a
/// response may exceed this by the rest of one transaction).
pub const MAX_BATCH: usize = 64;

/// Why a watch could not start, or ended.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The client resumes from a revision the store has not reached
    /// (OUT_OF_RANGE).
    #[error(
        "resume revision {resume} is ahead of this control plane's revision {head} \
         (was it restored from a backup?); watch again with resume_revision 0 for a fresh snapshot"
    )]
    AheadOfHead { resume: Revision, head: Revision },
    /// The stream fell behind the feed (ABORTED).
    #[error("this watch fell behind the control plane's buffers; watch again with resume_revision {last}")]
    Lagged { last: Revision },
    /// The control plane is stopping (UNAVAILABLE).
    #[error("the control plane is shutting down; watch again")]
    ShuttingDown,
    /// The feed reloaded from the store (UNAVAILABLE).
    #[error("the control plane's store watch restarted; watch again with resume_revision {last}")]
    Closed { last: Revision },
    /// The feed has not loaded the store yet (UNAVAILABLE).
    #[error("the control plane is still loading its store; watch again shortly")]
    NotReady,
    /// Reading the store failed; a resume revision older than the kept
    /// history is OUT_OF_RANGE (watch again from 0).
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

impl From<StoreError> for WatchError {
    fn from(e: StoreError) -> Self {
        WatchError::Registry(RegistryError::Store(e))
    }
}

/// Start a watch for one client.
pub(super) async fn watch(
    feed: &Feed,
    settings: ClusterSettings,
    keepalive: Duration,
    resume: u64,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<WatchResponseStream, WatchError> {
    let sub = feed.subscribe(resume).await?;
    let state = Watcher {
        snapshot: sub.snapshot.map(|f| SnapshotCursor {
            frozen: f,
            next: 0,
            settings: Some(settings),
        }),
        backlog: sub.backlog,
        live: sub.live,
        last: sub.start,
        failed: None,
        done: false,
        keepalive,
        shutdown,
    };
    Ok(Box::pin(futures::stream::unfold(
        state,
        |mut w| async move {
            let item = w.next_response().await?;
            Some((item, w))
        },
    )))
}

struct SnapshotCursor {
    frozen: Frozen,
    next: usize,
    settings: Option<ClusterSettings>,
}

impl SnapshotCursor {
    /// The next part, and whether more follow.
    fn part(&mut self) -> (Snapshot, bool) {
        let items = &self.frozen.items;
        let mut snap = Snapshot {
            settings: self.settings.take(),
            ..Default::default()
        };
        let mut bytes = 0;
        while self.next < items.len() {
            match items[self.next].as_ref() {
                Payload::Node(n) => {
                    if snap.nodes.len() >= SNAPSHOT_PART {
                        break;
                    }
                    snap.nodes.push(n.clone());
                }
                Payload::Object(o) => {
                    if bytes >= PART_BYTES {
                        break;
                    }
                    bytes += o.json.len();
                    snap.objects.push(o.clone());
                }
            }
            self.next += 1;
        }
        let more = self.next < items.len();
        snap.more = more;
        (snap, more)
    }
}

struct Watcher {
    snapshot: Option<SnapshotCursor>,
    backlog: VecDeque<Arc<Batch>>,
    live: tokio::sync::broadcast::Receiver<Arc<Batch>>,
    /// The revision of the last batch sent (or of the snapshot).
    last: Revision,
    /// An error to end the stream with after the response in hand.
    failed: Option<WatchError>,
    done: bool,
    keepalive: Duration,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

/// What is ready to send.
enum Next {
    Batch(Arc<Batch>),
    Empty,
    Failed(WatchError),
}

impl Watcher {
    /// A batch from the backlog or the live feed, if one is ready.
    fn try_next(&mut self) -> Next {
        if let Some(b) = self.backlog.pop_front() {
            return Next::Batch(b);
        }
        match self.live.try_recv() {
            Ok(b) => Next::Batch(b),
            Err(TryRecvError::Empty) => Next::Empty,
            Err(TryRecvError::Lagged(_)) => Next::Failed(WatchError::Lagged { last: self.last }),
            Err(TryRecvError::Closed) => Next::Failed(WatchError::Closed { last: self.last }),
        }
    }

    fn recv_error(&self, e: RecvError) -> WatchError {
        match e {
            RecvError::Lagged(_) => WatchError::Lagged { last: self.last },
            RecvError::Closed => WatchError::Closed { last: self.last },
        }
    }

    fn keepalive(&self) -> WatchResponse {
        WatchResponse::of(vec![WatchEvent {
            revision: self.last,
            event: Some(watch_event::Event::Keepalive(Keepalive {})),
        }])
    }

    async fn next_response(&mut self) -> Option<Result<WatchResponse, Status>> {
        if self.done {
            return None;
        }
        if let Some(cursor) = &mut self.snapshot {
            let rev = cursor.frozen.revision;
            let (part, more) = cursor.part();
            if !more {
                self.snapshot = None;
            }
            return Some(Ok(WatchResponse::of(vec![WatchEvent {
                revision: rev,
                event: Some(watch_event::Event::Snapshot(part)),
            }])));
        }
        if let Some(e) = self.failed.take() {
            self.done = true;
            return Some(Err(e.into()));
        }
        let first = loop {
            let b = match self.try_next() {
                Next::Batch(b) => b,
                Next::Failed(e) => {
                    self.done = true;
                    return Some(Err(e.into()));
                }
                Next::Empty => tokio::select! {
                    b = self.live.recv() => match b {
                        Ok(b) => b,
                        Err(e) => {
                            self.done = true;
                            return Some(Err(self.recv_error(e).into()));
                        }
                    },
                    _ = tokio::time::sleep(self.keepalive) => return Some(Ok(self.keepalive())),
                    _ = self.shutdown.changed() => {
                        self.done = true;
                        return Some(Err(WatchError::ShuttingDown.into()));
                    }
                },
            };
            if b.revision > self.last {
                break b;
            }
        };
        let mut events = Vec::new();
        let mut bytes = 0;
        bytes += push(&first, &mut events);
        self.last = first.revision;
        let deadline = tokio::time::Instant::now() + LINGER;
        while events.len() < MAX_BATCH && bytes < PART_BYTES {
            let b = match self.try_next() {
                Next::Batch(b) => b,
                Next::Failed(e) => {
                    self.failed = Some(e);
                    break;
                }
                Next::Empty => match tokio::time::timeout_at(deadline, self.live.recv()).await {
                    Ok(Ok(b)) => b,
                    Ok(Err(e)) => {
                        self.failed = Some(self.recv_error(e));
                        break;
                    }
                    Err(_) => break,
                },
            };
            if b.revision <= self.last {
                continue;
            }
            bytes += push(&b, &mut events);
            self.last = b.revision;
        }
        Some(Ok(WatchResponse::pre_encoded(events)))
    }
}

/// Add a batch's changes (as the feed encoded them) to a response;
/// returns their size.
fn push(batch: &Batch, out: &mut Vec<bytes::Bytes>) -> usize {
    out.extend(batch.events.iter().map(|e| e.encoded.clone()));
    batch.events.iter().map(|e| e.encoded.len()).sum()
}
