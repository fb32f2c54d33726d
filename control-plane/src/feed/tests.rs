//! The feed against a real embedded store: one batch per transaction,
//! bounded history with older resumes refused as compacted, history read
//! back from the store after a restart, snapshots shared while nothing the
//! feed carries changed.

use std::sync::Arc;
use std::time::Duration;

use super::{Feed, Subscription};
use crate::service::WatchError;
use crate::store::redb::RedbStore;
use crate::store::{Op, Revision, Store, StoreError, Txn};

fn namespace(name: &str) -> Op {
    Op::Put {
        key: format!("objects/namespaces/{name}"),
        value: serde_json::to_vec(&serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name},
        }))
        .unwrap(),
    }
}

async fn write(store: &dyn Store, ops: Vec<Op>) -> Revision {
    let out = store
        .txn(Txn {
            compares: vec![],
            ops,
        })
        .await
        .unwrap();
    assert!(out.succeeded);
    out.revision
}

/// A running feed; its task stops when this is dropped.
struct Running {
    feed: Arc<Feed>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

fn run(store: Arc<dyn Store>, history: usize) -> Running {
    let feed = Feed::with_history(store, history, usize::MAX);
    let (stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(super::run(feed.clone(), rx));
    Running { feed, stop }
}

async fn caught_up(feed: &Feed, revision: Revision) {
    let mut rx = feed.applied();
    tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|r| *r >= revision))
        .await
        .expect("the feed catches up")
        .unwrap();
}

fn revisions(sub: &Subscription) -> Vec<Revision> {
    sub.backlog.iter().map(|b| b.revision).collect()
}

fn open(dir: &tempfile::TempDir) -> Arc<dyn Store> {
    Arc::new(RedbStore::open(&dir.path().join("state.redb")).unwrap())
}

#[tokio::test]
async fn history_is_bounded_and_older_resumes_are_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let r = run(store.clone(), 5);
    caught_up(&r.feed, 0).await;
    let mut revs = Vec::new();
    for i in 0..10 {
        revs.push(write(store.as_ref(), vec![namespace(&format!("ns{i}"))]).await);
    }
    caught_up(&r.feed, revs[9]).await;

    // The last five transactions are kept: a resume after the fifth write
    // gets exactly the later five; one from further back is compacted.
    let sub = r.feed.subscribe(revs[4]).await.unwrap();
    assert!(sub.snapshot.is_none());
    assert_eq!(revisions(&sub), &revs[5..]);
    match r.feed.subscribe(revs[2]).await {
        Err(WatchError::Registry(e)) => {
            assert!(
                matches!(
                    e,
                    crate::registry::RegistryError::Store(StoreError::Compacted { .. })
                ),
                "{e}"
            )
        }
        Err(e) => panic!("expected compacted, got {e}"),
        Ok(_) => panic!("expected compacted, got a subscription"),
    }
    // A fresh subscription: every object, at the current revision.
    let sub = r.feed.subscribe(0).await.unwrap();
    let snap = sub.snapshot.unwrap();
    assert_eq!(snap.revision, revs[9]);
    assert_eq!(snap.items.len(), 10);
    assert!(sub.backlog.is_empty());
}

#[tokio::test]
async fn one_transaction_is_one_batch_and_other_keys_keep_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let r = run(store.clone(), 100);
    caught_up(&r.feed, 0).await;
    let first = r.feed.subscribe(0).await.unwrap();
    let rev = write(
        store.as_ref(),
        vec![namespace("a"), namespace("b"), namespace("c")],
    )
    .await;
    let mut live = first.live;
    let batch = tokio::time::timeout(Duration::from_secs(10), live.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(batch.revision, rev);
    assert_eq!(batch.events.len(), 3);

    // A key the feed does not carry moves the revision; the snapshot copy
    // is shared, at the new revision.
    let a = r.feed.subscribe(0).await.unwrap().snapshot.unwrap();
    let other = write(
        store.as_ref(),
        vec![Op::Put {
            key: "alloc/clusterip/10.96.0.5".into(),
            value: b"default/x".to_vec(),
        }],
    )
    .await;
    caught_up(&r.feed, other).await;
    let b = r.feed.subscribe(0).await.unwrap().snapshot.unwrap();
    assert_eq!((a.revision, b.revision), (rev, other));
    assert!(Arc::ptr_eq(&a.items, &b.items));
    // A carried change makes a new copy.
    let more = write(store.as_ref(), vec![namespace("d")]).await;
    caught_up(&r.feed, more).await;
    let c = r.feed.subscribe(0).await.unwrap().snapshot.unwrap();
    assert!(!Arc::ptr_eq(&b.items, &c.items));
    assert_eq!(c.items.len(), 4);
}

#[tokio::test]
async fn a_restarted_feed_reads_its_history_back_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut revs = Vec::new();
    for i in 0..6 {
        revs.push(write(store.as_ref(), vec![namespace(&format!("ns{i}"))]).await);
    }
    let r = run(store.clone(), 100);
    let sub = r.feed.subscribe(revs[1]).await.unwrap();
    assert_eq!(revisions(&sub), &revs[2..]);
    // Ahead of the store: refused.
    assert!(matches!(
        r.feed.subscribe(revs[5] + 10).await,
        Err(WatchError::AheadOfHead { .. })
    ));
}
