//! Watch streams on etcd: one etcd watch per stream, from `after + 1`, with
//! previous values.
//!
//! Contract, beyond [`Store::watch`](crate::store::Store::watch):
//! - `watch` fails with [`StoreError::Compacted`] if etcd no longer holds
//!   revision `after + 1` (`oldest` is etcd's compaction revision minus one,
//!   the smallest `after` it accepts); a compaction that overtakes a running
//!   stream ends it with the same error.
//! - A broken etcd stream (a member died, a leader election, a reset
//!   connection) is resumed from the last revision received, up to
//!   [`RESUME_ATTEMPTS`] times in a row with a growing pause: the caller sees
//!   neither a gap nor a duplicate. When every attempt fails (etcd lost
//!   quorum, or is unreachable) the stream ends with
//!   [`StoreError::Unavailable`]; a watch cancelled by etcd for another
//!   reason ends with [`StoreError::Backend`]. Either way: watch again from
//!   the last revision seen.
//! - Dropping the store ends the stream with [`StoreError::Backend`].
//! - etcd buffers for slow watchers itself, so these streams never lag.
//! - A `Delete` event carries the deleted key's last value and create
//!   revision from etcd's previous key/value; if etcd compacted that away,
//!   the value is empty and the create revision 0.

use std::collections::VecDeque;
use std::time::Duration;

use etcd_client::{Client, EventType, GetOptions, WatchOptions};
use tokio::sync::watch as signal;

use super::{error, revision, EtcdOptions, EtcdStore};
use crate::store::{Event, EventKind, KeyValue, Revision, Store, StoreError, WatchStream};

/// Reopen attempts in a row before a broken stream ends with an error.
pub(super) const RESUME_ATTEMPTS: u32 = 5;
/// The pause before the first reopen; it doubles with each further one.
const FIRST_PAUSE: Duration = Duration::from_millis(100);
/// How long to wait for etcd to confirm a new watch.
const CREATE_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) async fn open(
    store: &EtcdStore,
    prefix: &str,
    after: Revision,
) -> Result<WatchStream, StoreError> {
    let mut st = WatchState {
        client: store.client.clone(),
        options: store.options.clone(),
        watched: store.full_key(prefix),
        received: after,
        upstream: None,
        buf: VecDeque::new(),
        closed: store.closed.subscribe(),
        done: false,
    };
    // etcd answers a watch from a compacted revision with a created
    // response and, a little later, a cancel; a read at that revision says
    // so at once.
    let current = store.revision().await?;
    let compacted = after < current && {
        let at = i64::try_from(after + 1).unwrap_or(i64::MAX);
        let probe = GetOptions::new()
            .with_revision(at)
            .with_count_only()
            .with_limit(1);
        match store.read(store.options.prefix.clone(), probe).await {
            Ok(_) => false,
            Err(StoreError::Backend(m)) if m.contains("compacted") => true,
            Err(e) => return Err(e),
        }
    };
    let mut upstream = st.create().await?;
    if compacted {
        // Learn the compaction revision from etcd's cancel.
        let oldest = tokio::time::timeout(CREATE_TIMEOUT, upstream.message())
            .await
            .ok()
            .and_then(|m| m.ok().flatten())
            .map_or(0, |r| revision(r.compact_revision()).saturating_sub(1));
        return Err(StoreError::Compacted {
            requested: after,
            oldest,
        });
    }
    st.upstream = Some(upstream);
    Ok(Box::pin(futures::stream::unfold(st, next_item)))
}

struct WatchState {
    client: Client,
    options: EtcdOptions,
    /// The full etcd key prefix watched.
    watched: String,
    /// The last revision received from etcd (or `after`).
    received: Revision,
    upstream: Option<etcd_client::WatchStream>,
    buf: VecDeque<Event>,
    closed: signal::Receiver<()>,
    done: bool,
}

impl WatchState {
    /// Open an etcd watch from `received + 1` and wait for etcd to confirm it.
    async fn create(&mut self) -> Result<etcd_client::WatchStream, StoreError> {
        let start = i64::try_from(self.received + 1).map_err(|_| {
            StoreError::Invalid(format!("revision {} is out of range", self.received))
        })?;
        let options = WatchOptions::new()
            .with_prefix()
            .with_prev_key()
            .with_start_revision(start);
        let mut stream = self
            .client
            .watch_client()
            .watch(self.watched.clone(), Some(options))
            .await
            .map_err(|e| error(&self.options, "watch", e))?;
        match tokio::time::timeout(CREATE_TIMEOUT, stream.message()).await {
            Ok(Ok(Some(r))) if r.created() && !r.canceled() => Ok(stream),
            Ok(Ok(Some(r))) => Err(cancelled(&self.options, &r, self.received)),
            Ok(Ok(None)) => Err(StoreError::Unavailable(
                "etcd closed the watch as it was created".into(),
            )),
            Ok(Err(e)) => Err(error(&self.options, "watch", e)),
            Err(_) => Err(StoreError::Unavailable(format!(
                "etcd did not confirm a watch within {} s",
                CREATE_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Reopen a broken stream, a bounded number of times.
    async fn resume(&mut self, why: StoreError) -> Result<(), StoreError> {
        let mut last = why;
        let mut pause = FIRST_PAUSE;
        for attempt in 1..=RESUME_ATTEMPTS {
            tracing::debug!(prefix = %self.watched, after = self.received, attempt, error = %last, "resuming an etcd watch");
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = self.closed.changed() => return Err(store_closed()),
            }
            pause *= 2;
            match self.create().await {
                Ok(s) => {
                    self.upstream = Some(s);
                    return Ok(());
                }
                Err(e @ StoreError::Compacted { .. }) => return Err(e),
                Err(e) => last = e,
            }
        }
        Err(StoreError::Unavailable(format!(
            "the etcd watch on {} broke and could not be resumed ({last}); watch again from revision {}",
            self.watched, self.received
        )))
    }

    /// Buffer the events of one etcd response (skipping any already
    /// received, which a resumed stream cannot send, but cheap to be sure).
    fn take(&mut self, resp: &etcd_client::WatchResponse) -> Result<(), StoreError> {
        let mut last = self.received;
        for ev in resp.events() {
            let event = convert(&self.options.prefix, ev)?;
            if event.revision > self.received {
                last = last.max(event.revision);
                self.buf.push_back(event);
            }
        }
        self.received = last;
        Ok(())
    }
}

async fn next_item(mut st: WatchState) -> Option<(Result<Event, StoreError>, WatchState)> {
    loop {
        if let Some(ev) = st.buf.pop_front() {
            return Some((Ok(ev), st));
        }
        if st.done {
            return None;
        }
        let Some(upstream) = st.upstream.as_mut() else {
            st.done = true;
            return Some((Err(store_closed()), st));
        };
        let broken = tokio::select! {
            msg = upstream.message() => match msg {
                Ok(Some(resp)) if resp.canceled() => {
                    let e = cancelled(&st.options, &resp, st.received);
                    match e {
                        StoreError::Unavailable(_) => e,
                        other => {
                            st.done = true;
                            return Some((Err(other), st));
                        }
                    }
                }
                Ok(Some(resp)) => {
                    if let Err(e) = st.take(&resp) {
                        st.done = true;
                        return Some((Err(e), st));
                    }
                    continue;
                }
                Ok(None) => StoreError::Unavailable("etcd ended the watch stream".into()),
                Err(e) => error(&st.options, "watch", e),
            },
            _ = st.closed.changed() => {
                st.done = true;
                return Some((Err(store_closed()), st));
            }
        };
        st.upstream = None;
        if let Err(e) = st.resume(broken).await {
            st.done = true;
            return Some((Err(e), st));
        }
    }
}

/// Why etcd cancelled a watch: compaction, a lost leader (retryable), or
/// something else.
fn cancelled(
    options: &EtcdOptions,
    resp: &etcd_client::WatchResponse,
    received: Revision,
) -> StoreError {
    if resp.compact_revision() > 0 {
        return StoreError::Compacted {
            requested: received,
            oldest: revision(resp.compact_revision()).saturating_sub(1),
        };
    }
    let reason = resp.cancel_reason();
    if reason.contains("no leader") || reason.is_empty() {
        StoreError::Unavailable(format!(
            "etcd at {} cancelled the watch: {}",
            options.endpoints.join(","),
            if reason.is_empty() {
                "no reason given"
            } else {
                reason
            }
        ))
    } else {
        StoreError::Backend(format!(
            "etcd at {} cancelled the watch: {reason}; watch again from revision {received}",
            options.endpoints.join(",")
        ))
    }
}

fn store_closed() -> StoreError {
    StoreError::Backend("the store was closed".into())
}

/// An etcd event as a store event.
fn convert(prefix: &str, ev: &etcd_client::Event) -> Result<Event, StoreError> {
    let kv = ev
        .kv()
        .ok_or_else(|| StoreError::Backend("etcd sent a watch event without a key".into()))?;
    let prev = ev.prev_kv().map(|p| key_value(prefix, p)).transpose()?;
    let mut out = key_value(prefix, kv)?;
    let kind = match ev.event_type() {
        EventType::Put => EventKind::Put,
        EventType::Delete => {
            if let Some(p) = &prev {
                out.value = p.value.clone();
                out.create_revision = p.create_revision;
            }
            EventKind::Delete
        }
    };
    Ok(Event {
        revision: out.mod_revision,
        kind,
        kv: out,
        prev,
    })
}

/// An etcd key/value under `prefix` as a store key/value.
pub(super) fn key_value(prefix: &str, kv: &etcd_client::KeyValue) -> Result<KeyValue, StoreError> {
    let key = std::str::from_utf8(kv.key())
        .map_err(|_| StoreError::Backend("etcd returned a key that is not UTF-8".into()))?;
    let key = key.strip_prefix(prefix).ok_or_else(|| {
        StoreError::Backend(format!(
            "etcd returned key {key:?} outside the prefix {prefix:?}"
        ))
    })?;
    Ok(KeyValue {
        key: key.to_owned(),
        value: kv.value().to_vec(),
        create_revision: revision(kv.create_revision()),
        mod_revision: revision(kv.mod_revision()),
    })
}
