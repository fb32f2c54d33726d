//! Watch streams: replay from the history table, then live events from the
//! writer's broadcast channel, with no gap and no duplicate between the two.
//!
//! The order of steps is what makes that true:
//! 1. subscribe to the broadcast channel;
//! 2. in one read transaction, read the current revision `S`, check `after`
//!    against the compaction point, and read the first chunk of history;
//! 3. read the rest of history up to `S` in further chunks (each in its own
//!    read transaction, so a long replay doesn't pin old pages);
//! 4. follow the broadcast, skipping transactions with revision `<= S`.
//!
//! The writer broadcasts a transaction only after it committed, in revision
//! order. Anything committed after step 2's snapshot is therefore broadcast
//! after step 1 and reaches the receiver; anything at or below `S` is in
//! history and is skipped live.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};

use ::redb::{Database, ReadTransaction};
use tokio::sync::broadcast;

use super::codec::decode_events;
use super::writer::Committed;
use super::{backend, read_meta, HISTORY, META, META_COMPACTED, META_REVISION};
use crate::store::{Event, Revision, StoreError, WatchStream};

/// Most history entries (revisions) read per read transaction during replay.
const REPLAY_CHUNK: usize = 1024;

/// Replay state after the first chunk, which `open` reads itself so that a
/// compacted `after` is an error from `watch()` rather than a stream item.
pub(super) async fn open(
    db: &Arc<Database>,
    rx: broadcast::Receiver<Arc<Committed>>,
    prefix: String,
    after: Revision,
) -> Result<WatchStream, StoreError> {
    let weak = Arc::downgrade(db);
    let db = Arc::clone(db);
    let p = prefix.clone();
    let (snapshot, first, next_after) = tokio::task::spawn_blocking(move || {
        let rtx = db.begin_read().map_err(backend)?;
        let meta = rtx.open_table(META).map_err(backend)?;
        let snapshot = read_meta(&meta, META_REVISION)?;
        let compacted = read_meta(&meta, META_COMPACTED)?;
        if after < compacted {
            return Err(StoreError::Compacted {
                requested: after,
                oldest: compacted,
            });
        }
        let (events, next) = read_chunk(&rtx, &p, after, snapshot)?;
        Ok((snapshot, events, next))
    })
    .await
    .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))??;

    let state = WatchState {
        db: weak,
        rx,
        prefix,
        // `after` may be ahead of the store: then skip live events up to it.
        snapshot: snapshot.max(after),
        next_after,
        buf: first.into(),
        done: false,
    };
    Ok(Box::pin(futures::stream::unfold(state, next_item)))
}

struct WatchState {
    db: Weak<Database>,
    rx: broadcast::Receiver<Arc<Committed>>,
    prefix: String,
    /// The revision replay runs to (or `after`, if greater); live events at or
    /// below it are skipped.
    snapshot: Revision,
    /// Replay has delivered everything through this revision.
    next_after: Revision,
    buf: VecDeque<Event>,
    done: bool,
}

async fn next_item(mut st: WatchState) -> Option<(Result<Event, StoreError>, WatchState)> {
    loop {
        if let Some(ev) = st.buf.pop_front() {
            return Some((Ok(ev), st));
        }
        if st.done {
            return None;
        }
        if st.next_after < st.snapshot {
            match replay_more(&st).await {
                Ok((events, next)) => {
                    st.buf.extend(events);
                    st.next_after = next;
                }
                Err(e) => {
                    st.done = true;
                    return Some((Err(e), st));
                }
            }
            continue;
        }
        match st.rx.recv().await {
            Ok(c) if c.revision <= st.snapshot => {}
            Ok(c) => {
                let prefix = &st.prefix;
                let matching = c.events.iter().filter(|e| e.kv.key.starts_with(prefix));
                st.buf.extend(matching.cloned());
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::debug!(prefix = %st.prefix, missed, "store watcher lagged");
                st.done = true;
                return Some((Err(StoreError::Lagged), st));
            }
            Err(broadcast::error::RecvError::Closed) => {
                st.done = true;
                return Some((Err(StoreError::Backend("the store was closed".into())), st));
            }
        }
    }
}

/// The next replay chunk after `st.next_after`, in a fresh read transaction.
async fn replay_more(st: &WatchState) -> Result<(Vec<Event>, Revision), StoreError> {
    let db = st
        .db
        .upgrade()
        .ok_or_else(|| StoreError::Backend("the store was closed".into()))?;
    let prefix = st.prefix.clone();
    let (after, until) = (st.next_after, st.snapshot);
    tokio::task::spawn_blocking(move || {
        let rtx = db.begin_read().map_err(backend)?;
        let meta = rtx.open_table(META).map_err(backend)?;
        let compacted = read_meta(&meta, META_COMPACTED)?;
        if after < compacted {
            // Compacted while we replayed: the watcher is too far behind.
            return Err(StoreError::Compacted {
                requested: after,
                oldest: compacted,
            });
        }
        read_chunk(&rtx, &prefix, after, until)
    })
    .await
    .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?
}

/// Events under `prefix` from history revisions in `(after, until]`, at most
/// [`REPLAY_CHUNK`] revisions of them; and the revision read through.
fn read_chunk(
    rtx: &ReadTransaction,
    prefix: &str,
    after: Revision,
    until: Revision,
) -> Result<(Vec<Event>, Revision), StoreError> {
    if after >= until {
        return Ok((Vec::new(), after));
    }
    let history = rtx.open_table(HISTORY).map_err(backend)?;
    let mut events = Vec::new();
    let mut read = 0;
    let mut through = until;
    for entry in history.range((after + 1)..=until).map_err(backend)? {
        let (rev, bytes) = entry.map_err(backend)?;
        let rev = rev.value();
        events.extend(
            decode_events(rev, bytes.value())?
                .into_iter()
                .filter(|e| e.kv.key.starts_with(prefix)),
        );
        read += 1;
        if read == REPLAY_CHUNK {
            through = rev;
            break;
        }
    }
    Ok((events, through))
}
