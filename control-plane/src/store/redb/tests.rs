//! Tests of the redb store against the [`Store`] contract.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use super::{RedbOptions, RedbStore};
use crate::store::{
    Compare, Event, EventKind, Op, Revision, Store, StoreError, Txn, TxnOutcome, WatchStream,
};

fn put_op(key: &str, value: &str) -> Op {
    Op::Put {
        key: key.into(),
        value: value.as_bytes().to_vec(),
    }
}

fn del_op(key: &str) -> Op {
    Op::Delete { key: key.into() }
}

async fn put(store: &RedbStore, key: &str, value: &str) -> TxnOutcome {
    store
        .txn(Txn {
            compares: vec![],
            ops: vec![put_op(key, value)],
        })
        .await
        .unwrap()
}

async fn del(store: &RedbStore, key: &str) -> TxnOutcome {
    store
        .txn(Txn {
            compares: vec![],
            ops: vec![del_op(key)],
        })
        .await
        .unwrap()
}

fn temp_store(options: RedbOptions) -> (tempfile::TempDir, RedbStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open_with(&dir.path().join("state.redb"), options).unwrap();
    (dir, store)
}

/// The next `n` events, failing the test on an error, an end, or a stall.
async fn take(stream: &mut WatchStream, n: usize) -> Vec<Event> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let item = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("watch stalled");
        out.push(item.expect("watch ended").expect("watch error"));
    }
    out
}

/// Nothing more arrives for a little while.
async fn assert_quiet(stream: &mut WatchStream) {
    let got = tokio::time::timeout(Duration::from_millis(150), stream.next()).await;
    assert!(got.is_err(), "unexpected item: {:?}", got.unwrap());
}

fn revisions(events: &[Event]) -> Vec<Revision> {
    events.iter().map(|e| e.revision).collect()
}

#[tokio::test]
async fn put_get_range_with_revisions() {
    let (_dir, store) = temp_store(RedbOptions::default());
    assert_eq!(store.revision().await.unwrap(), 0);
    assert_eq!(store.get("a/1").await.unwrap(), None);

    let o = put(&store, "a/1", "one").await;
    assert_eq!(
        o,
        TxnOutcome {
            succeeded: true,
            revision: 1
        }
    );
    assert_eq!(put(&store, "a/2", "two").await.revision, 2);
    assert_eq!(put(&store, "b/1", "bee").await.revision, 3);
    assert_eq!(put(&store, "a/1", "uno").await.revision, 4);

    let kv = store.get("a/1").await.unwrap().unwrap();
    assert_eq!(kv.value, b"uno");
    assert_eq!((kv.create_revision, kv.mod_revision), (1, 4));

    let (kvs, rev) = store.range("a/").await.unwrap();
    assert_eq!(rev, 4);
    let keys: Vec<_> = kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["a/1", "a/2"]);
    assert_eq!(kvs[1].value, b"two");
    let (all, _) = store.range("").await.unwrap();
    assert_eq!(all.len(), 3);
    assert!(store.range("c/").await.unwrap().0.is_empty());
    assert_eq!(store.revision().await.unwrap(), 4);
}

#[tokio::test]
async fn delete_and_noop_writes() {
    let (_dir, store) = temp_store(RedbOptions::default());
    put(&store, "k", "v").await;
    let mut w = store.watch("", 0).await.unwrap();
    take(&mut w, 1).await;

    // Deleting an absent key: succeeds, no new revision, no event.
    let o = del(&store, "nope").await;
    assert_eq!(
        o,
        TxnOutcome {
            succeeded: true,
            revision: 1
        }
    );
    // A transaction without ops: same.
    let o = store.txn(Txn::default()).await.unwrap();
    assert_eq!(
        o,
        TxnOutcome {
            succeeded: true,
            revision: 1
        }
    );
    assert_eq!(store.revision().await.unwrap(), 1);
    assert_quiet(&mut w).await;

    // A real delete: one revision, one event carrying the last value.
    assert_eq!(del(&store, "k").await.revision, 2);
    assert_eq!(store.get("k").await.unwrap(), None);
    let ev = take(&mut w, 1).await.remove(0);
    assert_eq!(ev.kind, EventKind::Delete);
    assert_eq!(ev.revision, 2);
    assert_eq!(ev.kv.value, b"v");
    assert_eq!((ev.kv.create_revision, ev.kv.mod_revision), (1, 2));
    assert_eq!(ev.prev.unwrap().mod_revision, 1);

    // Re-created: create_revision starts over.
    assert_eq!(put(&store, "k", "again").await.revision, 3);
    let kv = store.get("k").await.unwrap().unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision), (3, 3));
}

#[tokio::test]
async fn one_txn_one_revision_for_all_its_ops() {
    let (_dir, store) = temp_store(RedbOptions::default());
    put(&store, "gone", "x").await;
    let o = store
        .txn(Txn {
            compares: vec![],
            ops: vec![
                put_op("a", "1"),
                put_op("b", "2"),
                del_op("gone"),
                del_op("absent"),
            ],
        })
        .await
        .unwrap();
    assert_eq!(o.revision, 2);
    let mut w = store.watch("", 1).await.unwrap();
    let evs = take(&mut w, 3).await;
    assert_eq!(revisions(&evs), [2, 2, 2]);
    let kinds: Vec<_> = evs.iter().map(|e| (e.kind, e.kv.key.as_str())).collect();
    assert_eq!(
        kinds,
        [
            (EventKind::Put, "a"),
            (EventKind::Put, "b"),
            (EventKind::Delete, "gone")
        ]
    );
    assert_quiet(&mut w).await;
}

#[tokio::test]
async fn cas_on_mod_revision() {
    let (_dir, store) = temp_store(RedbOptions::default());
    let r1 = put(&store, "k", "v1").await.revision;
    put(&store, "other", "x").await;

    // Stale revision: fails, writes nothing, revision unchanged.
    let o = store
        .txn(Txn {
            compares: vec![Compare::ModRevision {
                key: "k".into(),
                revision: r1 + 100,
            }],
            ops: vec![put_op("k", "bad"), put_op("new", "bad")],
        })
        .await
        .unwrap();
    assert_eq!(
        o,
        TxnOutcome {
            succeeded: false,
            revision: 2
        }
    );
    assert_eq!(store.get("k").await.unwrap().unwrap().value, b"v1");
    assert_eq!(store.get("new").await.unwrap(), None);
    assert_eq!(store.revision().await.unwrap(), 2);

    // Right revision: applies.
    let o = store
        .txn(Txn {
            compares: vec![Compare::ModRevision {
                key: "k".into(),
                revision: r1,
            }],
            ops: vec![put_op("k", "v2")],
        })
        .await
        .unwrap();
    assert_eq!(
        o,
        TxnOutcome {
            succeeded: true,
            revision: 3
        }
    );
    // ModRevision 0 means absent.
    let absent = |rev| Txn {
        compares: vec![Compare::ModRevision {
            key: "fresh".into(),
            revision: rev,
        }],
        ops: vec![put_op("fresh", "f")],
    };
    assert!(store.txn(absent(0)).await.unwrap().succeeded);
    assert!(!store.txn(absent(0)).await.unwrap().succeeded);
}

#[tokio::test]
async fn absent_and_exists_compares() {
    let (_dir, store) = temp_store(RedbOptions::default());
    let claim = || Txn {
        compares: vec![Compare::Absent { key: "lock".into() }],
        ops: vec![put_op("lock", "me")],
    };
    assert!(store.txn(claim()).await.unwrap().succeeded);
    assert!(!store.txn(claim()).await.unwrap().succeeded);

    let release = |key: &str| Txn {
        compares: vec![Compare::Exists { key: key.into() }],
        ops: vec![del_op("lock")],
    };
    let o = store.txn(release("missing")).await.unwrap();
    assert!(!o.succeeded);
    assert!(store.get("lock").await.unwrap().is_some());
    let o = store.txn(release("lock")).await.unwrap();
    assert!(o.succeeded);
    assert_eq!(o.revision, 2);
    assert!(store.get("lock").await.unwrap().is_none());

    // All compares must hold.
    put(&store, "x", "1").await;
    let o = store
        .txn(Txn {
            compares: vec![
                Compare::Exists { key: "x".into() },
                Compare::Exists { key: "lock".into() },
            ],
            ops: vec![put_op("y", "1")],
        })
        .await
        .unwrap();
    assert!(!o.succeeded);
    assert!(store.get("y").await.unwrap().is_none());
}

#[tokio::test]
async fn fifty_claimers_exactly_one_wins() {
    let (_dir, store) = temp_store(RedbOptions::default());
    let store = Arc::new(store);
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .txn(Txn {
                        compares: vec![Compare::Absent {
                            key: "cidr/10.244.7.0".into(),
                        }],
                        ops: vec![put_op("cidr/10.244.7.0", &format!("node-{i}"))],
                    })
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut winners = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        if t.await.unwrap().succeeded {
            winners.push(i);
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let kv = store.get("cidr/10.244.7.0").await.unwrap().unwrap();
    assert_eq!(kv.value, format!("node-{}", winners[0]).into_bytes());
    assert_eq!(store.revision().await.unwrap(), 1);
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
async fn watch_replays_then_follows_live() {
    let (_dir, store) = temp_store(RedbOptions::default());
    for i in 1..=5 {
        put(&store, &format!("k/{i}"), "v").await;
    }
    // From 0: everything.
    let mut all = store.watch("", 0).await.unwrap();
    assert_eq!(revisions(&take(&mut all, 5).await), [1, 2, 3, 4, 5]);
    // From the middle: exactly what was missed, in order.
    let mut mid = store.watch("", 3).await.unwrap();
    let evs = take(&mut mid, 2).await;
    assert_eq!(revisions(&evs), [4, 5]);
    assert_eq!(evs[0].kv.key, "k/4");
    assert_quiet(&mut mid).await;
    // From the current revision: nothing until the next write.
    let mut now = store.watch("", 5).await.unwrap();
    assert_quiet(&mut now).await;
    // From the future: only live events past it.
    let mut future = store.watch("", 6).await.unwrap();

    put(&store, "k/6", "v").await;
    put(&store, "k/7", "v").await;
    assert_eq!(revisions(&take(&mut all, 2).await), [6, 7]);
    assert_eq!(revisions(&take(&mut mid, 2).await), [6, 7]);
    assert_eq!(revisions(&take(&mut now, 2).await), [6, 7]);
    assert_eq!(revisions(&take(&mut future, 1).await), [7]);
    assert_quiet(&mut future).await;
}

#[tokio::test]
async fn watch_filters_by_prefix() {
    let (_dir, store) = temp_store(RedbOptions::default());
    put(&store, "nodes/a", "1").await;
    put(&store, "pods/x", "1").await;
    put(&store, "nodes/b", "1").await;
    let mut w = store.watch("nodes/", 0).await.unwrap();
    let evs = take(&mut w, 2).await;
    let keys: Vec<_> = evs.iter().map(|e| e.kv.key.as_str()).collect();
    assert_eq!(keys, ["nodes/a", "nodes/b"]);
    put(&store, "pods/y", "1").await;
    put(&store, "nodes/c", "1").await;
    let ev = take(&mut w, 1).await.remove(0);
    assert_eq!((ev.kv.key.as_str(), ev.revision), ("nodes/c", 5));
    assert_quiet(&mut w).await;
}

#[tokio::test]
async fn replay_longer_than_one_chunk() {
    let (_dir, store) = temp_store(RedbOptions::default());
    let store = Arc::new(store);
    let n = 2500;
    let writes: Vec<_> = (0..n)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { put(&store, &format!("k/{i}"), "v").await })
        })
        .collect();
    for w in writes {
        assert!(w.await.unwrap().succeeded);
    }
    assert_eq!(store.revision().await.unwrap(), n);
    let mut w = store.watch("k/", 10).await.unwrap();
    let evs = take(&mut w, (n - 10) as usize).await;
    assert_eq!(revisions(&evs), (11..=n).collect::<Vec<_>>());
    put(&store, "k/last", "v").await;
    assert_eq!(revisions(&take(&mut w, 1).await), [n + 1]);
}

/// Writers race a watcher's replay-to-live switch: the watcher must see
/// exactly the committed revisions for its prefix, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_has_no_gap_and_no_dup_under_concurrent_writers() {
    let (_dir, store) = temp_store(RedbOptions::default());
    let store = Arc::new(store);
    for i in 0..20 {
        put(&store, &format!("a/seed{i}"), "s").await;
        put(&store, &format!("b/seed{i}"), "s").await;
    }
    let start = store.revision().await.unwrap();

    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut mine = Vec::new();
                for i in 0..150 {
                    let prefix = if (i + w) % 3 == 0 { "b" } else { "a" };
                    let key = format!("{prefix}/{w}/{}", i % 7);
                    let o = put(&store, &key, &i.to_string()).await;
                    mine.push((prefix, o.revision));
                }
                mine
            })
        })
        .collect();

    // Open watchers at staggered moments while the writers run.
    let mut watchers = Vec::new();
    for _ in 0..4 {
        watchers.push(store.watch("a/", start).await.unwrap());
        tokio::time::sleep(Duration::from_millis(15)).await;
    }

    let mut expected = Vec::new();
    for w in writers {
        for (prefix, rev) in w.await.unwrap() {
            if prefix == "a" {
                expected.push(rev);
            }
        }
    }
    expected.sort_unstable();
    for mut w in watchers {
        let evs = take(&mut w, expected.len()).await;
        assert_eq!(revisions(&evs), expected);
        assert!(evs.iter().all(|e| e.kv.key.starts_with("a/")));
        assert_quiet(&mut w).await;
    }
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

#[tokio::test]
async fn watch_ends_when_the_store_is_dropped() {
    let (_dir, store) = temp_store(RedbOptions::default());
    let mut w = store.watch("", 0).await.unwrap();
    drop(store);
    let item = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .unwrap();
    assert!(matches!(item, Some(Err(StoreError::Backend(_)))));
    assert!(w.next().await.is_none());
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
