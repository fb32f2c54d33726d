//! [`ViewFeed`]: the [`ClusterView`] behind a lock, its change
//! notification, and `objects.json`.
//!
//! Contract: a watch response is applied whole under the lock
//! ([`ViewFeed::apply`]), so what is read or written never falls inside a
//! store transaction; if the objects changed, one new snapshot is published
//! on the channel. [`persist_loop`] writes the file from a published
//! snapshot, outside the lock.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use weft_proto::v1::WatchEvent;

use super::file::{self, ViewFile};
use super::snapshot::ViewSnapshot;
use super::table::ClusterView;

/// The cluster view of a running agent: shared, observable, persisted.
#[derive(Debug)]
pub struct ViewFeed {
    view: Mutex<ClusterView>,
    tx: watch::Sender<Arc<ViewSnapshot>>,
    path: PathBuf,
    /// Changed since the file was last written.
    dirty: AtomicBool,
    /// The revision last written (or loaded).
    saved_revision: Mutex<u64>,
}

impl ViewFeed {
    /// The view persisted at `path` (empty if there is none).
    pub fn open(path: &Path) -> Self {
        let file = ViewFile::load_or_empty(path);
        let revision = file.revision;
        let view = ClusterView::from_file(file);
        let snapshot = view.snapshot();
        if !snapshot.is_empty() {
            tracing::info!(
                revision,
                objects = snapshot.len(),
                "cluster objects loaded from {}",
                path.display()
            );
        }
        Self {
            view: Mutex::new(view),
            tx: watch::channel(snapshot).0,
            path: path.to_path_buf(),
            dirty: AtomicBool::new(false),
            saved_revision: Mutex::new(revision),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ClusterView> {
        self.view.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The objects now.
    pub fn current(&self) -> Arc<ViewSnapshot> {
        self.tx.borrow().clone()
    }

    /// A receiver that sees every new snapshot (`changed()` wakes on each).
    pub fn subscribe(&self) -> watch::Receiver<Arc<ViewSnapshot>> {
        self.tx.subscribe()
    }

    /// The last revision applied.
    pub fn revision(&self) -> u64 {
        self.lock().revision()
    }

    /// Forget the revision (the next watch starts with a snapshot).
    pub fn reset_revision(&self) {
        self.lock().reset_revision();
    }

    /// Drop a snapshot whose parts stopped coming.
    pub fn abandon_partial(&self) {
        self.lock().abandon_partial();
    }

    /// Objects left out because their JSON did not read, since start.
    pub fn unreadable(&self) -> u64 {
        self.lock().unreadable()
    }

    /// Applies one watch response's events, in order, under one lock;
    /// publishes a new snapshot if the objects changed. Returns whether
    /// they did.
    pub fn apply(&self, events: &[WatchEvent]) -> bool {
        let mut view = self.lock();
        let mut changed = false;
        for ev in events {
            changed |= view.apply(ev);
        }
        if changed {
            // Published under the lock: whoever reads the revision under it
            // also sees the objects of that revision.
            self.dirty.store(true, Ordering::Release);
            self.tx.send_replace(view.snapshot());
        }
        changed
    }

    /// Writes `objects.json` if the objects changed since the last write
    /// (or if the revision moved on by more than `max_lag` since). Blocking
    /// IO: call it off the async workers.
    pub fn save_if_needed(&self, max_lag: u64) -> std::io::Result<bool> {
        let (snapshot, revision) = {
            let view = self.lock();
            (self.current(), view.revision())
        };
        let saved = *self
            .saved_revision
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let dirty = self.dirty.swap(false, Ordering::AcqRel);
        if !dirty && revision.saturating_sub(saved) <= max_lag {
            return Ok(false);
        }
        if let Err(e) = file::save(&self.path, &snapshot, revision) {
            self.dirty.store(true, Ordering::Release);
            return Err(e);
        }
        *self
            .saved_revision
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = revision;
        Ok(true)
    }

    /// The file it is persisted in.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// How far the revision may run ahead of the file's without a change of
/// objects before the file is written anyway (node changes move the
/// revision; a resume from a far older one could fall out of the control
/// plane's history).
const MAX_REVISION_LAG: u64 = 1000;

/// Writes `objects.json` after changes, at most once per `interval`, until
/// `stop`, and once more then.
pub async fn persist_loop(
    feed: Arc<ViewFeed>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut changes = feed.subscribe();
    loop {
        tokio::select! {
            r = changes.changed() => if r.is_err() { break },
            _ = stop.changed() => break,
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => break,
        }
        save(&feed).await;
    }
    save(&feed).await;
}

async fn save(feed: &Arc<ViewFeed>) {
    let f = feed.clone();
    match tokio::task::spawn_blocking(move || f.save_if_needed(MAX_REVISION_LAG)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::warn!(path = %feed.path().display(), error = %e, "cannot write the cluster objects")
        }
        Err(e) => tracing::warn!(error = %e, "writing the cluster objects failed"),
    }
}
