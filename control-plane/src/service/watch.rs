//! The `Watch` stream: a snapshot (or a resume point), then every change to
//! `nodes/`, each with its store revision, batched into responses, and
//! keepalives in between.
//!
//! Contract, per stream:
//! - A snapshot comes first (fresh watches only), in parts of at most
//!   [`SNAPSHOT_PART`] nodes, one part per response.
//! - Changes are batched: a response carries the first ready event plus
//!   whatever else arrives within [`LINGER`], up to [`MAX_BATCH`] events; the
//!   events of one store transaction are never split across responses.
//! - A keepalive (carrying the last revision sent) follows every
//!   `watch_keepalive` of silence.
//! - The stream ends with a status: ABORTED if it fell behind the store,
//!   UNAVAILABLE on shutdown.
//!
//! The stream is a plain state machine polled by tonic: no task and no
//! buffer per watcher beyond the store's own watch.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, Stream, StreamExt};
use tonic::Status;
use weft_proto::v1::{
    change, watch_event, Change, ChangeType, Keepalive, Node, Snapshot, WatchEvent, WatchResponse,
};

use crate::model::NODES_PREFIX;
use crate::registry::{decode_node_kv, Registry, RegistryError};
use crate::store::{Event, EventKind, Revision, StoreError, WatchStream};

/// The stream type of `Cluster.Watch`.
pub type WatchResponseStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

/// Nodes per snapshot part. A node is about 200 bytes: parts stay near
/// 13 KB, because each stream keeps an encode buffer as large as the largest
/// message it sent (2,000 watch streams x 200 KB would be 400 MB).
pub const SNAPSHOT_PART: usize = 64;
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
    /// The stream fell behind the store's buffers (ABORTED).
    #[error("this watch fell behind the control plane's buffers; watch again with resume_revision {last}")]
    Lagged { last: Revision },
    /// The control plane is stopping (UNAVAILABLE).
    #[error("the control plane is shutting down; watch again")]
    ShuttingDown,
    /// The store ended the watch (UNAVAILABLE).
    #[error("the control plane's store closed the watch; watch again")]
    Closed,
    /// Reading the store failed; a compacted resume revision is
    /// OUT_OF_RANGE (watch again from 0).
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

impl From<StoreError> for WatchError {
    fn from(e: StoreError) -> Self {
        WatchError::Registry(RegistryError::Store(e))
    }
}

/// Start a watch for one client.
pub async fn watch_nodes(
    registry: Arc<Registry>,
    resume: u64,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<WatchResponseStream, WatchError> {
    let store = registry.store().clone();
    let mut parts = std::collections::VecDeque::new();
    let (last, events) = if resume == 0 {
        let (nodes, rev) = registry.list_nodes().await?;
        let events = store.watch(NODES_PREFIX, rev).await?;
        parts.extend(snapshot_parts(nodes, rev, &registry));
        (rev, events)
    } else {
        let head = store.revision().await?;
        if resume > head {
            return Err(WatchError::AheadOfHead { resume, head });
        }
        (resume, store.watch(NODES_PREFIX, resume).await?)
    };
    let keepalive = registry.settings().watch_keepalive;
    let state = Watcher {
        events,
        parts,
        last,
        held: None,
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

/// Cut a snapshot into parts of at most [`SNAPSHOT_PART`] nodes.
fn snapshot_parts(nodes: Vec<Node>, rev: Revision, registry: &Registry) -> Vec<WatchResponse> {
    let chunks: Vec<Vec<Node>> = if nodes.is_empty() {
        vec![Vec::new()]
    } else {
        nodes.chunks(SNAPSHOT_PART).map(<[Node]>::to_vec).collect()
    };
    let n = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, nodes)| WatchResponse {
            events: vec![WatchEvent {
                revision: rev,
                event: Some(watch_event::Event::Snapshot(Snapshot {
                    nodes,
                    settings: (i == 0).then(|| registry.cluster_settings()),
                    more: i + 1 < n,
                })),
            }],
        })
        .collect()
}

struct Watcher {
    events: WatchStream,
    parts: std::collections::VecDeque<WatchResponse>,
    /// The revision of the last event sent.
    last: Revision,
    /// An event read past a full batch, for the next response.
    held: Option<Event>,
    /// An error to end the stream with after the batch in hand is sent.
    failed: Option<Status>,
    done: bool,
    keepalive: Duration,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

impl Watcher {
    async fn next_response(&mut self) -> Option<Result<WatchResponse, Status>> {
        if self.done {
            return None;
        }
        if let Some(part) = self.parts.pop_front() {
            return Some(Ok(part));
        }
        if let Some(e) = self.failed.take() {
            self.done = true;
            return Some(Err(e));
        }
        let first = match self.held.take() {
            Some(e) => e,
            None => {
                tokio::select! {
                    ev = self.events.next() => match ev {
                        Some(Ok(e)) => e,
                        other => {
                            self.done = true;
                            return Some(Err(self.end_status(other).into()));
                        }
                    },
                    _ = tokio::time::sleep(self.keepalive) => {
                        return Some(Ok(WatchResponse { events: vec![WatchEvent {
                            revision: self.last,
                            event: Some(watch_event::Event::Keepalive(Keepalive {})),
                        }] }));
                    }
                    _ = self.shutdown.changed() => {
                        self.done = true;
                        return Some(Err(WatchError::ShuttingDown.into()));
                    }
                }
            }
        };
        let mut rev = first.revision;
        let mut batch = Vec::new();
        push(&mut batch, first);
        let deadline = tokio::time::Instant::now() + LINGER;
        loop {
            let next = if batch.len() >= MAX_BATCH {
                // Full: take only what is ready and of the same transaction.
                match self.events.next().now_or_never() {
                    Some(Some(Ok(e))) if e.revision == rev => Some(Some(Ok(e))),
                    Some(Some(Ok(e))) => {
                        self.held = Some(e);
                        break;
                    }
                    Some(other) => Some(other),
                    None => break,
                }
            } else {
                tokio::time::timeout_at(deadline, self.events.next())
                    .await
                    .ok()
            };
            match next {
                None => break,
                Some(Some(Ok(e))) => {
                    rev = e.revision;
                    push(&mut batch, e);
                }
                Some(other) => {
                    self.failed = Some(self.end_status(other).into());
                    break;
                }
            }
        }
        self.last = rev;
        Some(Ok(WatchResponse { events: batch }))
    }

    /// Why a stream whose store watch ended or failed ends.
    fn end_status(&self, ev: Option<Result<Event, StoreError>>) -> WatchError {
        match ev {
            Some(Err(StoreError::Lagged)) => WatchError::Lagged { last: self.last },
            Some(Err(e)) => e.into(),
            _ => WatchError::Closed,
        }
    }
}

/// Add a store event to a batch as a `Change` (an unreadable record is
/// logged and skipped).
fn push(batch: &mut Vec<WatchEvent>, ev: Event) {
    let node = match decode_node_kv(&ev.kv) {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(error = %e, "skipping an unreadable node record in a watch");
            return;
        }
    };
    let kind = match ev.kind {
        EventKind::Put => ChangeType::Put,
        EventKind::Delete => ChangeType::Delete,
    };
    batch.push(WatchEvent {
        revision: ev.revision,
        event: Some(watch_event::Event::Change(Change {
            r#type: kind as i32,
            object: Some(change::Object::Node(node)),
        })),
    });
}
