//! The store's single writer thread.
//!
//! Every write ([`Store::txn`](crate::store::Store::txn) and
//! [`Store::compact`](crate::store::Store::compact)) is a [`Request`] sent to
//! this thread. It takes whatever requests are queued (up to
//! [`MAX_BATCH`]), applies them in arrival order inside ONE redb write
//! transaction, commits (one fsync for the lot: group commit), then publishes
//! the committed events on the broadcast channel in revision order, and only
//! then answers the callers. Each request still gets its own revision and is
//! checked against the effects of the requests before it, so the result is
//! exactly as if they had run one after another. If the batch fails (a
//! storage error, or one request's data could not be stored), nothing of it
//! is visible and each request is retried alone, so one bad request cannot
//! fail the others.

use std::sync::mpsc;
use std::sync::Arc;

use ::redb::{Database, ReadableTable, Table};
use tokio::sync::{broadcast, oneshot};

use super::codec::{decode_record, encode_events, encode_record};
use super::{backend, read_meta, CURRENT, HISTORY, META, META_COMPACTED, META_REVISION};
use crate::store::{Compare, Event, EventKind, Op, Revision, StoreError, Txn, TxnOutcome};

/// Most requests folded into one redb write transaction.
pub(super) const MAX_BATCH: usize = 256;

/// A write for the writer thread, with where to send its answer.
pub(super) enum Request {
    Txn(Txn, oneshot::Sender<Result<TxnOutcome, StoreError>>),
    Compact(Revision, oneshot::Sender<Result<(), StoreError>>),
}

/// The events of one committed transaction, as broadcast to watchers.
#[derive(Debug)]
pub(super) struct Committed {
    pub revision: Revision,
    pub events: Vec<Event>,
}

/// What one request did inside a batch, before the commit.
enum Done {
    Txn(TxnOutcome),
    Compact,
}

pub(super) struct Writer {
    pub db: Arc<Database>,
    pub requests: mpsc::Receiver<Request>,
    pub events: broadcast::Sender<Arc<Committed>>,
    pub history_retention: u64,
}

impl Writer {
    /// Serve requests until every sender is gone.
    pub(super) fn run(self) {
        while let Ok(first) = self.requests.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match self.requests.try_recv() {
                    Ok(req) => batch.push(req),
                    Err(_) => break,
                }
            }
            self.serve(batch);
        }
        tracing::debug!("store writer stopped");
    }

    fn serve(&self, batch: Vec<Request>) {
        let n = batch.len();
        let (work, replies): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|req| match req {
                Request::Txn(txn, reply) => (Work::Txn(txn), Reply::Txn(reply)),
                Request::Compact(rev, reply) => (Work::Compact(rev), Reply::Compact(reply)),
            })
            .unzip();
        match self.apply(&work) {
            Ok((results, committed)) => {
                if let Some(last) = committed.last() {
                    tracing::debug!(requests = n, revision = last.revision, "store commit");
                }
                self.publish(committed);
                for (reply, result) in replies.into_iter().zip(results) {
                    reply.send(result);
                }
            }
            Err(err) if n > 1 => {
                // Don't let one bad request fail the others: run each alone.
                tracing::warn!(requests = n, error = %err, "store batch failed; retrying one by one");
                for (w, reply) in work.iter().zip(replies) {
                    match self.apply(std::slice::from_ref(w)) {
                        Ok((mut results, committed)) => {
                            self.publish(committed);
                            reply.send(results.pop().unwrap_or_else(|| Err(mismatch())));
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, "store write failed");
                            reply.send(Err(err));
                        }
                    }
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "store write failed");
                for reply in replies {
                    reply.send(Err(StoreError::Backend(err.to_string())));
                }
            }
        }
    }

    /// Hand committed transactions to watchers, in revision order.
    fn publish(&self, committed: Vec<Committed>) {
        for c in committed {
            // No receivers is fine: nobody is watching.
            let _ = self.events.send(Arc::new(c));
        }
    }

    /// Apply a batch in one write transaction and commit it. Returns each
    /// request's result and the committed transactions' events.
    #[allow(clippy::type_complexity)]
    fn apply(
        &self,
        work: &[Work],
    ) -> Result<(Vec<Result<Done, StoreError>>, Vec<Committed>), StoreError> {
        let wtx = self.db.begin_write().map_err(backend)?;
        let mut results = Vec::with_capacity(work.len());
        let mut committed = Vec::new();
        let mut dirty = false;
        {
            let mut current = wtx.open_table(CURRENT).map_err(backend)?;
            let mut history = wtx.open_table(HISTORY).map_err(backend)?;
            let mut meta = wtx.open_table(META).map_err(backend)?;
            let mut rev = read_meta(&meta, META_REVISION)?;
            let start_compacted = read_meta(&meta, META_COMPACTED)?;
            let mut compacted = start_compacted;

            for w in work {
                match w {
                    Work::Txn(txn) => {
                        if !compares_hold(&current, &txn.compares)? {
                            results.push(Ok(Done::Txn(TxnOutcome {
                                succeeded: false,
                                revision: rev,
                            })));
                            continue;
                        }
                        let next = rev + 1;
                        let events = apply_ops(&mut current, &txn.ops, next)?;
                        if !events.is_empty() {
                            history
                                .insert(next, encode_events(&events)?.as_slice())
                                .map_err(backend)?;
                            rev = next;
                            dirty = true;
                            committed.push(Committed {
                                revision: next,
                                events,
                            });
                        }
                        results.push(Ok(Done::Txn(TxnOutcome {
                            succeeded: true,
                            revision: rev,
                        })));
                    }
                    Work::Compact(target) => {
                        if *target > rev {
                            results.push(Err(StoreError::Backend(format!(
                                "cannot compact through revision {target}: the current revision is {rev}"
                            ))));
                            continue;
                        }
                        if *target > compacted {
                            forget_history(&mut history, *target)?;
                            compacted = *target;
                        }
                        results.push(Ok(Done::Compact));
                    }
                }
            }

            // Automatic retention: keep at least the last `history_retention`
            // revisions.
            let floor = rev.saturating_sub(self.history_retention);
            if floor > compacted {
                forget_history(&mut history, floor)?;
                compacted = floor;
            }
            if compacted != start_compacted {
                dirty = true;
                meta.insert(META_COMPACTED, compacted).map_err(backend)?;
            }
            if dirty {
                meta.insert(META_REVISION, rev).map_err(backend)?;
            }
        }
        if dirty {
            wtx.commit().map_err(backend)?;
        } else {
            // Nothing changed: skip the fsync.
            wtx.abort().map_err(backend)?;
        }
        Ok((results, committed))
    }
}

enum Work {
    Txn(Txn),
    Compact(Revision),
}

enum Reply {
    Txn(oneshot::Sender<Result<TxnOutcome, StoreError>>),
    Compact(oneshot::Sender<Result<(), StoreError>>),
}

impl Reply {
    /// Answer the caller (who may have gone away: then nobody listens).
    fn send(self, result: Result<Done, StoreError>) {
        match (self, result) {
            (Reply::Txn(tx), Ok(Done::Txn(outcome))) => {
                let _ = tx.send(Ok(outcome));
            }
            (Reply::Compact(tx), Ok(Done::Compact)) => {
                let _ = tx.send(Ok(()));
            }
            (Reply::Txn(tx), Err(e)) => {
                let _ = tx.send(Err(e));
            }
            (Reply::Compact(tx), Err(e)) => {
                let _ = tx.send(Err(e));
            }
            (Reply::Txn(tx), Ok(_)) => {
                let _ = tx.send(Err(mismatch()));
            }
            (Reply::Compact(tx), Ok(_)) => {
                let _ = tx.send(Err(mismatch()));
            }
        }
    }
}

fn mismatch() -> StoreError {
    StoreError::Backend("internal error: store writer answered the wrong request kind".into())
}

type CurrentTable<'t> = Table<'t, &'static str, &'static [u8]>;

/// The key's mod revision, 0 if absent.
fn mod_revision_of(current: &CurrentTable<'_>, key: &str) -> Result<Revision, StoreError> {
    match current.get(key).map_err(backend)? {
        None => Ok(0),
        Some(guard) => Ok(decode_record(key, guard.value())?.mod_revision),
    }
}

fn compares_hold(current: &CurrentTable<'_>, compares: &[Compare]) -> Result<bool, StoreError> {
    for cmp in compares {
        let holds = match cmp {
            Compare::ModRevision { key, revision } => mod_revision_of(current, key)? == *revision,
            Compare::Absent { key } => mod_revision_of(current, key)? == 0,
            Compare::Exists { key } => mod_revision_of(current, key)? != 0,
        };
        if !holds {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Apply `ops` at revision `rev`; the events they caused, in order.
fn apply_ops(
    current: &mut CurrentTable<'_>,
    ops: &[Op],
    rev: Revision,
) -> Result<Vec<Event>, StoreError> {
    let mut events = Vec::with_capacity(ops.len());
    for op in ops {
        match op {
            Op::Put { key, value } => {
                let prev = match current.get(key.as_str()).map_err(backend)? {
                    None => None,
                    Some(guard) => Some(decode_record(key, guard.value())?.to_key_value(key)),
                };
                let create = prev.as_ref().map_or(rev, |p| p.create_revision);
                current
                    .insert(key.as_str(), encode_record(create, rev, value).as_slice())
                    .map_err(backend)?;
                events.push(Event {
                    revision: rev,
                    kind: EventKind::Put,
                    kv: crate::store::KeyValue {
                        key: key.clone(),
                        value: value.clone(),
                        create_revision: create,
                        mod_revision: rev,
                    },
                    prev,
                });
            }
            Op::Delete { key } => {
                let removed = match current.remove(key.as_str()).map_err(backend)? {
                    None => None,
                    Some(guard) => Some(decode_record(key, guard.value())?.to_key_value(key)),
                };
                if let Some(prev) = removed {
                    let mut kv = prev.clone();
                    kv.mod_revision = rev;
                    events.push(Event {
                        revision: rev,
                        kind: EventKind::Delete,
                        kv,
                        prev: Some(prev),
                    });
                }
            }
        }
    }
    Ok(events)
}

/// Drop history entries at or below `through`.
fn forget_history(
    history: &mut Table<'_, u64, &'static [u8]>,
    through: Revision,
) -> Result<(), StoreError> {
    history.retain_in(..=through, |_, _| false).map_err(backend)
}
