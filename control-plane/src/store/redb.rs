//! The embedded store: everything in one crash-safe [redb] file.
//!
//! [redb]: https://docs.rs/redb/2
//!
//! Layout (three tables in the one file):
//! - `current`: key -> `create_revision | mod_revision | value` (the live map);
//! - `history`: revision -> the events of the transaction that made it;
//! - `meta`: `revision` (the current revision), `compacted_through` (history
//!   at or below it is gone) and `format` (the layout version, 1).
//!
//! Behaviour, beyond the [`Store`] contract in [`crate::store`]:
//! - Writes go through one writer thread that commits queued transactions
//!   together (group commit, one fsync per batch, see `writer`); each
//!   transaction still gets its own revision. Commits use redb's default
//!   durability (fsync before `Ok`). Reads run on `spawn_blocking`.
//! - A transaction bumps the revision only if it changed something: a
//!   successful transaction with no ops, or whose ops are all deletes of
//!   absent keys, reports `succeeded: true` with the unchanged current
//!   revision and emits no event (as etcd does for a delete that deletes
//!   nothing). A transaction that writes one key twice is refused (as etcd
//!   refuses it), see [`Txn::check`].
//! - History keeps at least the last [`RedbOptions::history_retention`]
//!   revisions; older entries are dropped as new ones commit. [`Store::compact`]
//!   drops more on request; compacting below the current compaction point is a
//!   no-op, beyond the current revision an error.
//! - [`StoreError::Compacted`]'s `oldest` is the compaction point: the
//!   smallest `after` that [`Store::watch`] accepts (its events are gone, the
//!   ones after it are kept).
//! - Live events reach watchers through a broadcast channel holding
//!   [`RedbOptions::watch_buffer`] transactions; a watcher further behind
//!   gets [`StoreError::Lagged`]. A watcher whose store was dropped gets a
//!   final [`StoreError::Backend`].
//! - Dropping the [`RedbStore`] waits for the writer thread to finish the
//!   writes already queued, then closes the file (so it can be reopened).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use ::redb::{Database, ReadableTable, TableDefinition, TableHandle};
use tokio::sync::{broadcast, oneshot};

use super::{KeyValue, Revision, Store, StoreError, Txn, TxnOutcome, WatchStream};

mod codec;
mod watch;
mod writer;

#[cfg(test)]
mod tests;

use codec::decode_record;
use writer::{Committed, Request, Writer};

const CURRENT: TableDefinition<&str, &[u8]> = TableDefinition::new("current");
const HISTORY: TableDefinition<u64, &[u8]> = TableDefinition::new("history");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const META_REVISION: &str = "revision";
const META_COMPACTED: &str = "compacted_through";
const META_FORMAT: &str = "format";
const FORMAT_VERSION: u64 = 1;

/// Page cache for the database file. The control plane's data is small.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// Tuning for [`RedbStore::open_with`].
#[derive(Clone, Debug)]
pub struct RedbOptions {
    /// Revisions of history always kept for watchers to resume from.
    pub history_retention: u64,
    /// Committed transactions buffered for live watchers before a slow one
    /// gets [`StoreError::Lagged`] (rounded up to a power of two).
    pub watch_buffer: usize,
}

impl Default for RedbOptions {
    fn default() -> Self {
        RedbOptions {
            history_retention: 10_000,
            watch_buffer: 4096,
        }
    }
}

/// The embedded [`Store`]: one redb file. See the module docs.
pub struct RedbStore {
    db: Arc<Database>,
    path: PathBuf,
    requests: Option<mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
    events: broadcast::Sender<Arc<Committed>>,
}

impl fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish()
    }
}

impl RedbStore {
    /// Open the store at `path`, creating the file if it is absent, with
    /// default options. Blocks while it opens (and possibly repairs) the file.
    pub fn open(path: &Path) -> Result<RedbStore, StoreError> {
        Self::open_with(path, RedbOptions::default())
    }

    /// [`RedbStore::open`] with explicit options.
    pub fn open_with(path: &Path, options: RedbOptions) -> Result<RedbStore, StoreError> {
        let open_err = |reason: String| StoreError::Open {
            path: path.display().to_string(),
            reason,
        };
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| open_err(describe_open_error(e)))?;
        init(&db).map_err(open_err)?;
        let db = Arc::new(db);

        let (events, _) = broadcast::channel(options.watch_buffer.clamp(1, 1 << 20));
        let (requests, rx) = mpsc::channel();
        let writer = Writer {
            db: Arc::clone(&db),
            requests: rx,
            events: events.clone(),
            history_retention: options.history_retention,
        };
        let handle = std::thread::Builder::new()
            .name("weft-store-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| open_err(format!("cannot start the writer thread: {e}")))?;
        tracing::info!(path = %path.display(), "store opened");
        Ok(RedbStore {
            db,
            path: path.to_owned(),
            requests: Some(requests),
            writer: Some(handle),
            events,
        })
    }

    fn submit(&self, req: Request) -> Result<(), StoreError> {
        self.requests
            .as_ref()
            .ok_or_else(writer_gone)?
            .send(req)
            .map_err(|_| writer_gone())
    }

    /// Run a read on the blocking pool.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        drop(self.requests.take());
        if let Some(handle) = self.writer.take() {
            if handle.join().is_err() {
                tracing::error!(path = %self.path.display(), "store writer thread panicked");
            }
        }
    }
}

#[async_trait::async_trait]
impl Store for RedbStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let key = key.to_owned();
        self.read(move |db| {
            let rtx = db.begin_read().map_err(backend)?;
            let current = rtx.open_table(CURRENT).map_err(backend)?;
            let found = current.get(key.as_str()).map_err(backend)?;
            match found {
                None => Ok(None),
                Some(guard) => Ok(Some(decode_record(&key, guard.value())?.to_key_value(&key))),
            }
        })
        .await
    }

    async fn range(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), StoreError> {
        let prefix = prefix.to_owned();
        self.read(move |db| {
            let rtx = db.begin_read().map_err(backend)?;
            let revision = read_meta(&rtx.open_table(META).map_err(backend)?, META_REVISION)?;
            let current = rtx.open_table(CURRENT).map_err(backend)?;
            let mut out = Vec::new();
            for entry in current.range(prefix.as_str()..).map_err(backend)? {
                let (key, value) = entry.map_err(backend)?;
                let key = key.value();
                if !key.starts_with(prefix.as_str()) {
                    break;
                }
                out.push(decode_record(key, value.value())?.to_key_value(key));
            }
            Ok((out, revision))
        })
        .await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        txn.check(self.max_txn_ops())?;
        let (tx, rx) = oneshot::channel();
        self.submit(Request::Txn(txn, tx))?;
        rx.await.map_err(|_| writer_gone())?
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        // Subscribe before reading history: see `watch`'s module docs.
        let rx = self.events.subscribe();
        watch::open(&self.db, rx, prefix.to_owned(), after).await
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        self.read(|db| {
            let rtx = db.begin_read().map_err(backend)?;
            read_meta(&rtx.open_table(META).map_err(backend)?, META_REVISION)
        })
        .await
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.submit(Request::Compact(revision, tx))?;
        rx.await.map_err(|_| writer_gone())?
    }

    fn busy(&self) -> bool {
        // This store's own handle and the writer thread's are always there.
        Arc::strong_count(&self.db) > 2
    }

    fn describe(&self) -> String {
        format!("redb:{}", self.path.display())
    }
}

/// Create the tables on first open; check the layout version otherwise.
fn init(db: &Database) -> Result<(), String> {
    let wtx = db.begin_write().map_err(|e| e.to_string())?;
    {
        let foreign = wtx
            .list_tables()
            .map_err(|e| e.to_string())?
            .map(|t| t.name().to_owned())
            .find(|name| ![CURRENT.name(), HISTORY.name(), META.name()].contains(&name.as_str()));
        let mut meta = wtx
            .open_table(META)
            .map_err(|e| format!("not a weft store: {e}"))?;
        let format = meta
            .get(META_FORMAT)
            .map_err(|e| e.to_string())?
            .map(|g| g.value());
        match format {
            Some(FORMAT_VERSION) => {}
            Some(other) => {
                let supported = FORMAT_VERSION;
                return Err(format!(
                    "store format {other} is not supported (this build reads {supported})"
                ));
            }
            None => {
                if let Some(name) = foreign {
                    return Err(format!(
                        "not a weft store: the redb file holds a table {name:?}"
                    ));
                }
                meta.insert(META_FORMAT, FORMAT_VERSION)
                    .map_err(|e| e.to_string())?;
                meta.insert(META_REVISION, 0).map_err(|e| e.to_string())?;
                meta.insert(META_COMPACTED, 0).map_err(|e| e.to_string())?;
            }
        }
        wtx.open_table(CURRENT)
            .map_err(|e| format!("not a weft store: {e}"))?;
        wtx.open_table(HISTORY)
            .map_err(|e| format!("not a weft store: {e}"))?;
    }
    wtx.commit().map_err(|e| e.to_string())
}

fn describe_open_error(e: ::redb::DatabaseError) -> String {
    match e {
        ::redb::DatabaseError::DatabaseAlreadyOpen => {
            "the file is already open (is another control plane using this state file?)".into()
        }
        other => other.to_string(),
    }
}

/// A metadata counter; absent means 0.
fn read_meta(meta: &impl ReadableTable<&'static str, u64>, name: &str) -> Result<u64, StoreError> {
    Ok(meta.get(name).map_err(backend)?.map_or(0, |g| g.value()))
}

/// Any redb error as [`StoreError::Backend`].
fn backend(e: impl fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn writer_gone() -> StoreError {
    StoreError::Backend("the store's writer thread has stopped".into())
}
