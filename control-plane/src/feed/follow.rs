//! Loading the feed and following the store.
//!
//! Load: one consistent read of every key at revision `R` (the state), and
//! a store watch from `R` that is followed live. Meanwhile a second store
//! watch, from `R -` the history's length (or the oldest revision the store
//! kept), fills the history up to `R`, so clients that resume from before
//! `R` (after a control-plane restart) get exactly what they missed;
//! until it is done, such resumes wait for it. The store hands a watcher a
//! transaction's events together, so a batch is complete when the next
//! event has a later revision or none is ready. On any failure the feed
//! breaks off its subscribers and loads again after a pause.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};

use super::{prepare, Feed};
use crate::store::{self, Revision, StoreError, WatchStream};

/// Pause before loading again after a failure.
const RETRY: Duration = Duration::from_millis(500);
/// The history fill gives up when nothing arrives for this long (on an
/// etcd shared with other clusters, revisions up to the load may be theirs:
/// resumes from before the load then take a snapshot).
const FILL_QUIET: Duration = Duration::from_millis(500);
/// The history fill gives up after this long.
const FILL_LIMIT: Duration = Duration::from_secs(30);

/// Keep `feed` current until `stop` turns true.
pub async fn run(feed: Arc<Feed>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        let result = tokio::select! {
            r = follow_once(&feed) => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        feed.break_off();
        match result {
            Ok(()) => tracing::warn!("the store ended the feed's watch; loading again"),
            Err(e) => tracing::warn!(error = %e, "the feed's store watch failed; loading again"),
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Load, then follow until the watch ends or fails.
async fn follow_once(feed: &Arc<Feed>) -> Result<(), StoreError> {
    let (kvs, at) = feed.store.range("").await?;
    let mut items = BTreeMap::new();
    for kv in kvs.iter().filter(|kv| prepare::carried(&kv.key)) {
        if let Some(p) = prepare::payload(kv, kv.mod_revision) {
            items.insert(kv.key.clone(), Arc::new(p));
        }
    }
    drop(kvs);
    let mut events = feed.store.watch("", at).await?;
    let generation = feed.reset(items, at);
    tracing::info!(revision = at, "watch feed loaded");
    // Aborted however this future ends (also when `run` drops it on stop):
    // a detached fill would hold the store open for up to FILL_LIMIT.
    let _fill = AbortOnDrop(tokio::spawn(fill_history(feed.clone(), at, generation)));
    follow(feed, &mut events).await
}

/// Aborts its task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn follow(feed: &Feed, events: &mut WatchStream) -> Result<(), StoreError> {
    let mut pending = None;
    loop {
        let (batch, next) = read_batch(events, pending.take()).await?;
        pending = next;
        let Some((rev, evs)) = batch else {
            return Ok(());
        };
        feed.apply(prepare::batch(rev, &evs));
    }
}

/// Fill the history with the transactions up to `at` the store still holds.
async fn fill_history(feed: Arc<Feed>, at: Revision, generation: u64) {
    let mut from = at.saturating_sub(feed.history_revisions() as Revision);
    let mut events = loop {
        if from >= at {
            feed.history_filled(Vec::new(), at, generation);
            return;
        }
        match feed.store.watch("", from).await {
            Ok(w) => break w,
            Err(StoreError::Compacted { oldest, .. }) if oldest > from => from = oldest,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the store's history; watches resume from now on");
                feed.history_filled(Vec::new(), at, generation);
                return;
            }
        }
    };
    let deadline = tokio::time::Instant::now() + FILL_LIMIT;
    let mut batches = Vec::new();
    let mut pending = None;
    let complete = loop {
        let read = tokio::time::timeout(FILL_QUIET, read_batch(&mut events, pending.take()));
        match tokio::time::timeout_at(deadline, read).await {
            Ok(Ok(Ok((Some((rev, evs)), next)))) => {
                pending = next;
                if rev > at {
                    break true;
                }
                let b = prepare::batch(rev, &evs);
                if !b.events.is_empty() {
                    batches.push(b);
                }
                if rev == at {
                    break true;
                }
            }
            // Nothing more, or too slow, or failed: without every
            // transaction up to `at` the history cannot start before it.
            _ => break false,
        }
    };
    if complete {
        feed.history_filled(batches, from, generation);
    } else {
        tracing::warn!("reading the store's history took too long; watches resume from now on");
        feed.history_filled(Vec::new(), at, generation);
    }
}

/// The events of one transaction: `first` (read earlier) and what follows
/// at its revision. Returns the batch and the first event of the next one,
/// if it was read; `None` when the stream ended.
async fn read_batch(
    events: &mut WatchStream,
    first: Option<store::Event>,
) -> Result<(Option<(Revision, Vec<store::Event>)>, Option<store::Event>), StoreError> {
    let first = match first {
        Some(e) => e,
        None => match events.next().await {
            Some(Ok(e)) => e,
            Some(Err(e)) => return Err(e),
            None => return Ok((None, None)),
        },
    };
    let rev = first.revision;
    let mut batch = vec![first];
    loop {
        match events.next().now_or_never() {
            Some(Some(Ok(e))) if e.revision == rev => batch.push(e),
            Some(Some(Ok(e))) => return Ok((Some((rev, batch)), Some(e))),
            Some(Some(Err(e))) => return Err(e),
            Some(None) | None => return Ok((Some((rev, batch)), None)),
        }
    }
}
