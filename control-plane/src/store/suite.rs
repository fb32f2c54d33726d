//! The [`Store`] contract as one test suite, run against every backend:
//! the embedded redb store and a real etcd started on loopback by the test
//! itself (one fresh single-member cluster per test, so revisions are the
//! test's own). Backend-specific behaviour (redb's files and retention,
//! etcd's prefixes, TLS, quorum) is tested next to each backend.
//!
//! Revisions are checked relative to the store's revision when the test
//! starts: 0 for a fresh redb file, 1 for a fresh etcd.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use super::{
    Compare, Event, EventKind, Op, Revision, Store, StoreError, Txn, TxnOutcome, WatchStream,
};

/// A store under test and what keeps its backend alive.
pub(crate) struct Fixture {
    pub store: Arc<dyn Store>,
    pub base: Revision,
    /// Dropped after the store: the temp dir, or the etcd processes.
    _keep: Box<dyn Any + Send>,
}

impl Fixture {
    pub(super) async fn new(store: Arc<dyn Store>, keep: Box<dyn Any + Send>) -> Fixture {
        let base = store.revision().await.unwrap();
        Fixture {
            store,
            base,
            _keep: keep,
        }
    }
}

pub(crate) async fn redb() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = super::redb::RedbStore::open(&dir.path().join("state.redb")).unwrap();
    Fixture::new(Arc::new(store), Box::new(dir)).await
}

pub(crate) async fn etcd() -> Fixture {
    let cluster = super::etcd::local::LocalEtcd::start(1).await.unwrap();
    let store = super::etcd::EtcdStore::connect(cluster.options())
        .await
        .unwrap();
    Fixture::new(Arc::new(store), Box::new(cluster)).await
}

pub(crate) fn put_op(key: &str, value: &str) -> Op {
    Op::Put {
        key: key.into(),
        value: value.as_bytes().to_vec(),
    }
}

pub(crate) fn del_op(key: &str) -> Op {
    Op::Delete { key: key.into() }
}

pub(crate) async fn put(store: &dyn Store, key: &str, value: &str) -> TxnOutcome {
    store
        .txn(Txn {
            compares: vec![],
            ops: vec![put_op(key, value)],
        })
        .await
        .unwrap()
}

pub(crate) async fn del(store: &dyn Store, key: &str) -> TxnOutcome {
    store
        .txn(Txn {
            compares: vec![],
            ops: vec![del_op(key)],
        })
        .await
        .unwrap()
}

/// The next `n` events, failing the test on an error, an end, or a stall.
pub(crate) async fn take(stream: &mut WatchStream, n: usize) -> Vec<Event> {
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
pub(crate) async fn assert_quiet(stream: &mut WatchStream) {
    let got = tokio::time::timeout(Duration::from_millis(150), stream.next()).await;
    assert!(got.is_err(), "unexpected item: {:?}", got.unwrap());
}

pub(crate) fn revisions(events: &[Event]) -> Vec<Revision> {
    events.iter().map(|e| e.revision).collect()
}

fn outcome(succeeded: bool, revision: Revision) -> TxnOutcome {
    TxnOutcome {
        succeeded,
        revision,
    }
}

pub(crate) async fn put_get_range_with_revisions(f: Fixture) {
    let (store, b) = (f.store.as_ref(), f.base);
    assert_eq!(store.get("a/1").await.unwrap(), None);

    assert_eq!(put(store, "a/1", "one").await, outcome(true, b + 1));
    assert_eq!(put(store, "a/2", "two").await.revision, b + 2);
    assert_eq!(put(store, "b/1", "bee").await.revision, b + 3);
    assert_eq!(put(store, "a/1", "uno").await.revision, b + 4);

    let kv = store.get("a/1").await.unwrap().unwrap();
    assert_eq!(kv.value, b"uno");
    assert_eq!((kv.create_revision, kv.mod_revision), (b + 1, b + 4));

    let (kvs, rev) = store.range("a/").await.unwrap();
    assert_eq!(rev, b + 4);
    let keys: Vec<_> = kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["a/1", "a/2"]);
    assert_eq!(kvs[1].value, b"two");
    let (all, _) = store.range("").await.unwrap();
    assert_eq!(all.len(), 3);
    assert!(store.range("c/").await.unwrap().0.is_empty());
    assert_eq!(store.revision().await.unwrap(), b + 4);
}

pub(crate) async fn delete_and_noop_writes(f: Fixture) {
    let (store, b) = (f.store.as_ref(), f.base);
    put(store, "k", "v").await;
    let mut w = store.watch("", b).await.unwrap();
    take(&mut w, 1).await;

    // Deleting an absent key: succeeds, no new revision, no event.
    assert_eq!(del(store, "nope").await, outcome(true, b + 1));
    // A transaction without ops: same.
    assert_eq!(
        store.txn(Txn::default()).await.unwrap(),
        outcome(true, b + 1)
    );
    assert_eq!(store.revision().await.unwrap(), b + 1);
    assert_quiet(&mut w).await;

    // A real delete: one revision, one event carrying the last value.
    assert_eq!(del(store, "k").await.revision, b + 2);
    assert_eq!(store.get("k").await.unwrap(), None);
    let ev = take(&mut w, 1).await.remove(0);
    assert_eq!(ev.kind, EventKind::Delete);
    assert_eq!(ev.revision, b + 2);
    assert_eq!(ev.kv.key, "k");
    assert_eq!(ev.kv.value, b"v");
    assert_eq!((ev.kv.create_revision, ev.kv.mod_revision), (b + 1, b + 2));
    assert_eq!(ev.prev.unwrap().mod_revision, b + 1);

    // Re-created: create_revision starts over.
    assert_eq!(put(store, "k", "again").await.revision, b + 3);
    let kv = store.get("k").await.unwrap().unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision), (b + 3, b + 3));
    let ev = take(&mut w, 1).await.remove(0);
    assert_eq!((ev.kind, ev.revision), (EventKind::Put, b + 3));
    assert_eq!(ev.prev, None);
}

pub(crate) async fn one_txn_one_revision_for_all_its_ops(f: Fixture) {
    let (store, b) = (f.store.as_ref(), f.base);
    put(store, "gone", "x").await;
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
    assert_eq!(o.revision, b + 2);
    let mut w = store.watch("", b + 1).await.unwrap();
    let evs = take(&mut w, 3).await;
    assert_eq!(revisions(&evs), [b + 2, b + 2, b + 2]);
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

pub(crate) async fn a_txn_writing_a_key_twice_is_refused(f: Fixture) {
    let (store, b) = (f.store.as_ref(), f.base);
    for ops in [
        vec![put_op("k", "1"), put_op("k", "2")],
        vec![put_op("k", "1"), del_op("k")],
    ] {
        let err = store
            .txn(Txn {
                compares: vec![],
                ops,
            })
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err}");
        assert!(err.to_string().contains("\"k\" twice"), "{err}");
    }
    let too_many = Txn {
        compares: vec![],
        ops: (0..store.max_txn_ops().min(100_000) + 1)
            .map(|i| put_op(&format!("k/{i}"), "v"))
            .collect(),
    };
    if store.max_txn_ops() < 100_000 {
        let err = store.txn(too_many).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    }
    assert_eq!(store.revision().await.unwrap(), b);
    assert!(store.get("k").await.unwrap().is_none());
}

pub(crate) async fn cas_on_mod_revision(f: Fixture) {
    let (store, b) = (f.store.as_ref(), f.base);
    let r1 = put(store, "k", "v1").await.revision;
    put(store, "other", "x").await;

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
    assert_eq!(o, outcome(false, b + 2));
    assert_eq!(store.get("k").await.unwrap().unwrap().value, b"v1");
    assert_eq!(store.get("new").await.unwrap(), None);
    assert_eq!(store.revision().await.unwrap(), b + 2);

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
    assert_eq!(o, outcome(true, b + 3));
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

pub(crate) async fn absent_and_exists_compares(f: Fixture) {
    let (store, b) = (f.store.as_ref(), f.base);
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
    assert_eq!(o.revision, b + 2);
    assert!(store.get("lock").await.unwrap().is_none());

    // All compares must hold.
    put(store, "x", "1").await;
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

pub(crate) async fn fifty_claimers_exactly_one_wins(f: Fixture) {
    let b = f.base;
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = Arc::clone(&f.store);
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
    let kv = f.store.get("cidr/10.244.7.0").await.unwrap().unwrap();
    assert_eq!(kv.value, format!("node-{}", winners[0]).into_bytes());
    assert_eq!(f.store.revision().await.unwrap(), b + 1);
}

pub(crate) async fn watch_replays_then_follows_live(f: Fixture) {
    let (store, b) = (f.store.as_ref(), f.base);
    for i in 1..=5 {
        put(store, &format!("k/{i}"), "v").await;
    }
    let r = |i: u64| b + i;
    // From the start: everything.
    let mut all = store.watch("", b).await.unwrap();
    assert_eq!(
        revisions(&take(&mut all, 5).await),
        [r(1), r(2), r(3), r(4), r(5)]
    );
    // From the middle: exactly what was missed, in order.
    let mut mid = store.watch("", r(3)).await.unwrap();
    let evs = take(&mut mid, 2).await;
    assert_eq!(revisions(&evs), [r(4), r(5)]);
    assert_eq!(evs[0].kv.key, "k/4");
    assert_quiet(&mut mid).await;
    // From the current revision: nothing until the next write.
    let mut now = store.watch("", r(5)).await.unwrap();
    assert_quiet(&mut now).await;
    // From the future: only live events past it.
    let mut future = store.watch("", r(6)).await.unwrap();

    put(store, "k/6", "v").await;
    put(store, "k/7", "v").await;
    assert_eq!(revisions(&take(&mut all, 2).await), [r(6), r(7)]);
    assert_eq!(revisions(&take(&mut mid, 2).await), [r(6), r(7)]);
    assert_eq!(revisions(&take(&mut now, 2).await), [r(6), r(7)]);
    assert_eq!(revisions(&take(&mut future, 1).await), [r(7)]);
    assert_quiet(&mut future).await;
}

pub(crate) async fn watch_filters_by_prefix(f: Fixture) {
    let (store, b) = (f.store.as_ref(), f.base);
    put(store, "nodes/a", "1").await;
    put(store, "pods/x", "1").await;
    put(store, "nodes/b", "1").await;
    let mut w = store.watch("nodes/", b).await.unwrap();
    let evs = take(&mut w, 2).await;
    let keys: Vec<_> = evs.iter().map(|e| e.kv.key.as_str()).collect();
    assert_eq!(keys, ["nodes/a", "nodes/b"]);
    put(store, "pods/y", "1").await;
    put(store, "nodes/c", "1").await;
    let ev = take(&mut w, 1).await.remove(0);
    assert_eq!((ev.kv.key.as_str(), ev.revision), ("nodes/c", b + 5));
    assert_quiet(&mut w).await;
}

pub(crate) async fn replay_and_range_longer_than_one_chunk(f: Fixture) {
    let b = f.base;
    let n = 2500u64;
    // Writers in a few tasks, so the test stays quick on any backend.
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let store = Arc::clone(&f.store);
            tokio::spawn(async move {
                for i in (w..n).step_by(8) {
                    assert!(
                        put(store.as_ref(), &format!("k/{i:05}"), "v")
                            .await
                            .succeeded
                    );
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    assert_eq!(f.store.revision().await.unwrap(), b + n);
    let (kvs, rev) = f.store.range("k/").await.unwrap();
    assert_eq!((kvs.len() as u64, rev), (n, b + n));
    assert!(kvs.windows(2).all(|w| w[0].key < w[1].key));
    let mut w = f.store.watch("k/", b + 10).await.unwrap();
    let evs = take(&mut w, (n - 10) as usize).await;
    assert_eq!(revisions(&evs), (b + 11..=b + n).collect::<Vec<_>>());
    put(f.store.as_ref(), "k/last", "v").await;
    assert_eq!(revisions(&take(&mut w, 1).await), [b + n + 1]);
}

/// Writers race a watcher's replay-to-live switch: the watcher must see
/// exactly the committed revisions for its prefix, in order.
pub(crate) async fn watch_has_no_gap_and_no_dup_under_concurrent_writers(f: Fixture) {
    let store = &f.store;
    for i in 0..20 {
        put(store.as_ref(), &format!("a/seed{i}"), "s").await;
        put(store.as_ref(), &format!("b/seed{i}"), "s").await;
    }
    let start = store.revision().await.unwrap();

    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = Arc::clone(store);
            tokio::spawn(async move {
                let mut mine = Vec::new();
                for i in 0..150 {
                    let prefix = if (i + w) % 3 == 0 { "b" } else { "a" };
                    let key = format!("{prefix}/{w}/{}", i % 7);
                    let o = put(store.as_ref(), &key, &i.to_string()).await;
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

pub(crate) async fn compaction_refuses_old_watches_and_keeps_values(f: Fixture) {
    let (store, b) = (f.store.as_ref(), f.base);
    for i in 1..=10 {
        put(store, &format!("k/{i}"), "v").await;
    }
    store.compact(b + 5).await.unwrap();
    match store.watch("", b + 4).await {
        Err(StoreError::Compacted { requested, oldest }) => {
            assert_eq!((requested, oldest), (b + 4, b + 5));
        }
        Err(e) => panic!("expected Compacted, got {e}"),
        Ok(_) => panic!("expected Compacted, got a stream"),
    }
    assert!(matches!(
        store.watch("", b).await,
        Err(StoreError::Compacted { .. })
    ));
    // Watching from the compaction point itself is fine.
    let mut w = store.watch("", b + 5).await.unwrap();
    assert_eq!(
        revisions(&take(&mut w, 5).await),
        (b + 6..=b + 10).collect::<Vec<_>>()
    );
    // Values are kept.
    assert_eq!(store.range("k/").await.unwrap().0.len(), 10);
    // Compacting backwards is a no-op; past the current revision an error.
    store.compact(b + 3).await.unwrap();
    assert!(store.watch("", b + 5).await.is_ok());
    assert!(store.compact(b + 11).await.is_err());
}

pub(crate) async fn watch_ends_when_the_store_is_dropped(f: Fixture) {
    let Fixture { store, base, _keep } = f;
    let mut w = store.watch("", base).await.unwrap();
    drop(store);
    let item = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .unwrap();
    assert!(
        matches!(item, Some(Err(StoreError::Backend(_)))),
        "{item:?}"
    );
    assert!(w.next().await.is_none());
    drop(_keep);
}

/// One `#[tokio::test]` per suite case for a backend's fixture.
macro_rules! suite_for {
    ($backend:ident) => {
        mod $backend {
            suite_for!(@cases $backend:
                put_get_range_with_revisions,
                delete_and_noop_writes,
                one_txn_one_revision_for_all_its_ops,
                a_txn_writing_a_key_twice_is_refused,
                cas_on_mod_revision,
                absent_and_exists_compares,
                fifty_claimers_exactly_one_wins,
                watch_replays_then_follows_live,
                watch_filters_by_prefix,
                replay_and_range_longer_than_one_chunk,
                compaction_refuses_old_watches_and_keeps_values,
                watch_ends_when_the_store_is_dropped,
            );
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn watch_has_no_gap_and_no_dup_under_concurrent_writers() {
                super::watch_has_no_gap_and_no_dup_under_concurrent_writers(
                    super::$backend().await,
                )
                .await
            }
        }
    };
    (@cases $backend:ident: $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                super::$case(super::$backend().await).await
            }
        )*
    };
}

suite_for!(redb);
suite_for!(etcd);
