//! Tests of what only the redb store does: its file (reopen, open errors,
//! a foreign or corrupt file), exact compaction points and retention, and
//! lagging watchers. The [`Store`] contract itself is tested against every
//! backend in `store/suite.rs`.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use super::{RedbOptions, RedbStore};
use crate::store::suite::{put_op, revisions, take};
use crate::store::{EventKind, Store, StoreError, Txn, TxnOutcome};

async fn put(store: &RedbStore, key: &str, value: &str) -> TxnOutcome {
    crate::store::suite::put(store, key, value).await
}

async fn del(store: &RedbStore, key: &str) -> TxnOutcome {
    store
        .txn(Txn {
            compares: vec![],
            ops: vec![crate::store::suite::del_op(key)],
        })
        .await
        .unwrap()
}

fn temp_store(options: RedbOptions) -> (tempfile::TempDir, RedbStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open_with(&dir.path().join("state.redb"), options).unwrap();
    (dir, store)
}

#[tokio::test]
async fn reopen_keeps_values_revision_and_history() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    {
        let store = RedbStore::open(&path).unwrap();
        put(&store, "a", "1").await;
        put(&store, "b", "2").await;
        del(&store, "a").await;
    }
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(store.revision().await.unwrap(), 3);
    assert_eq!(store.get("a").await.unwrap(), None);
    assert_eq!(store.get("b").await.unwrap().unwrap().value, b"2");
    // The counter goes on from where it was.
    assert_eq!(put(&store, "c", "3").await.revision, 4);
    let mut w = store.watch("", 0).await.unwrap();
    let evs = take(&mut w, 4).await;
    assert_eq!(revisions(&evs), [1, 2, 3, 4]);
    assert_eq!(evs[2].kind, EventKind::Delete);
}

#[tokio::test]
async fn explicit_compaction() {
    let (_dir, store) = temp_store(RedbOptions::default());
    for i in 1..=10 {
        put(&store, &format!("k/{i}"), "v").await;
    }
    store.compact(5).await.unwrap();
    match store.watch("", 4).await {
        Err(StoreError::Compacted { requested, oldest }) => {
            assert_eq!((requested, oldest), (4, 5));
        }
        Err(e) => panic!("expected Compacted, got {e}"),
        Ok(_) => panic!("expected Compacted, got a stream"),
    }
    assert!(matches!(
        store.watch("", 0).await,
        Err(StoreError::Compacted { .. })
    ));
    // Watching from the compaction point itself is fine.
    let mut w = store.watch("", 5).await.unwrap();
    assert_eq!(revisions(&take(&mut w, 5).await), [6, 7, 8, 9, 10]);
    // Values are kept.
    assert_eq!(store.range("k/").await.unwrap().0.len(), 10);
    // Compacting backwards is a no-op; past the current revision an error.
    store.compact(3).await.unwrap();
    assert!(matches!(
        store.compact(11).await,
        Err(StoreError::Backend(_))
    ));
    store.compact(10).await.unwrap();
    assert!(store.watch("", 10).await.is_ok());
    assert!(store.watch("", 9).await.is_err());
}

#[tokio::test]
async fn automatic_retention_keeps_the_last_n_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let options = RedbOptions {
        history_retention: 3,
        ..RedbOptions::default()
    };
    {
        let store = RedbStore::open_with(&path, options.clone()).unwrap();
        for i in 1..=10 {
            put(&store, &format!("k/{i}"), "v").await;
        }
        match store.watch("", 6).await {
            Err(StoreError::Compacted { requested, oldest }) => {
                assert_eq!((requested, oldest), (6, 7));
            }
            _ => panic!("expected Compacted"),
        }
        let mut w = store.watch("", 7).await.unwrap();
        assert_eq!(revisions(&take(&mut w, 3).await), [8, 9, 10]);
    }
    // The compaction point survives a restart too.
    let store = RedbStore::open_with(&path, options).unwrap();
    assert!(store.watch("", 6).await.is_err());
    assert!(store.watch("", 7).await.is_ok());
}

#[tokio::test]
async fn a_watcher_that_never_reads_lags() {
    let (_dir, store) = temp_store(RedbOptions {
        watch_buffer: 8,
        ..RedbOptions::default()
    });
    let mut w = store.watch("", 0).await.unwrap();
    for i in 0..40 {
        put(&store, &format!("k/{i}"), "v").await;
    }
    let mut items = Vec::new();
    while let Some(item) = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .expect("stream should end")
    {
        items.push(item);
    }
    assert!(
        matches!(items.last(), Some(Err(StoreError::Lagged))),
        "{items:?}"
    );
    assert!(items[..items.len() - 1].iter().all(|i| i.is_ok()));
}

#[test]
fn open_errors_are_errors() {
    let dir = tempfile::tempdir().unwrap();

    let missing = dir.path().join("no/such/dir/state.redb");
    let err = RedbStore::open(&missing).unwrap_err();
    assert!(matches!(&err, StoreError::Open { path, .. } if path.contains("no/such/dir")));

    // A directory is not a database file.
    assert!(matches!(
        RedbStore::open(dir.path()),
        Err(StoreError::Open { .. })
    ));

    // Garbage, short and long.
    let short = dir.path().join("short");
    std::fs::write(&short, b"hello, not a database").unwrap();
    assert!(matches!(
        RedbStore::open(&short),
        Err(StoreError::Open { .. })
    ));
    let long = dir.path().join("long");
    let mut x: u32 = 12345;
    let bytes: Vec<u8> = (0..64 * 1024)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect();
    std::fs::write(&long, bytes).unwrap();
    let err = RedbStore::open(&long).unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err}");

    // A second open of a file in use.
    let path = dir.path().join("state.redb");
    let first = RedbStore::open(&path).unwrap();
    let err = RedbStore::open(&path).unwrap_err();
    assert!(err.to_string().contains("already open"), "{err}");
    drop(first);
    assert!(RedbStore::open(&path).is_ok());
}

#[test]
fn open_refuses_a_foreign_redb_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.redb");
    {
        let db = ::redb::Database::create(&path).unwrap();
        let wtx = db.begin_write().unwrap();
        {
            let table: ::redb::TableDefinition<u32, u32> = ::redb::TableDefinition::new("stuff");
            wtx.open_table(table).unwrap().insert(1, 2).unwrap();
        }
        wtx.commit().unwrap();
    }
    let err = RedbStore::open(&path).unwrap_err();
    assert!(err.to_string().contains("not a weft store"), "{err}");
}

#[test]
fn describe_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(store.describe(), format!("redb:{}", path.display()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_record_is_an_error_and_fails_only_its_own_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    drop(RedbStore::open(&path).unwrap());
    {
        // Damage one value behind the store's back.
        let db = ::redb::Database::create(&path).unwrap();
        let wtx = db.begin_write().unwrap();
        wtx.open_table(super::CURRENT)
            .unwrap()
            .insert("bad", [1u8, 2, 3].as_slice())
            .unwrap();
        wtx.commit().unwrap();
    }
    let store = Arc::new(RedbStore::open(&path).unwrap());
    assert!(matches!(
        store.get("bad").await,
        Err(StoreError::Backend(_))
    ));
    assert!(matches!(store.range("").await, Err(StoreError::Backend(_))));

    let mut tasks = Vec::new();
    for i in 0..30 {
        let store = Arc::clone(&store);
        let key = if i == 15 {
            "bad".to_owned()
        } else {
            format!("good/{i}")
        };
        tasks.push(tokio::spawn(async move {
            store
                .txn(Txn {
                    compares: vec![],
                    ops: vec![put_op(&key, "v")],
                })
                .await
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let result = t.await.unwrap();
        if i == 15 {
            assert!(matches!(result, Err(StoreError::Backend(_))));
        } else {
            assert!(result.unwrap().succeeded);
        }
    }
    assert_eq!(store.range("good/").await.unwrap().0.len(), 29);
    assert_eq!(store.revision().await.unwrap(), 29);
}
