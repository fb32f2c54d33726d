//! The watch stream carries the cluster's objects, over real TLS gRPC: the
//! snapshot holds them, changes arrive with the revision the write
//! returned (and as `metadata.resourceVersion`), one transaction's changes
//! together, deletes with the last state, and a resume (also after a
//! control-plane restart) yields exactly what was missed.

mod support;

use std::collections::VecDeque;
use std::time::Duration;

use futures::StreamExt;
use support::objects::*;
use support::*;
use weft_proto::v1::{
    change, watch_event, ChangeType, DeleteObjectsRequest, ObjectRef, WatchEvent, WatchRequest,
    WatchResponse,
};

const T: Duration = Duration::from_secs(10);

struct Watch {
    stream: tonic::Streaming<WatchResponse>,
    buf: VecDeque<WatchEvent>,
}

impl Watch {
    async fn open(node: &TestNode, resume: u64) -> Watch {
        let stream = node
            .client()
            .await
            .watch(WatchRequest {
                resume_revision: resume,
            })
            .await
            .unwrap()
            .into_inner();
        Watch {
            stream,
            buf: VecDeque::new(),
        }
    }

    async fn next(&mut self) -> WatchEvent {
        loop {
            if let Some(e) = self.buf.pop_front() {
                if !matches!(e.event, Some(watch_event::Event::Keepalive(_))) {
                    return e;
                }
                continue;
            }
            let r = tokio::time::timeout(T, self.stream.next())
                .await
                .expect("a watch response in time")
                .expect("the stream is open")
                .expect("a response, not an error");
            self.buf.extend(r.events);
        }
    }

    /// The next object change: (type, kind, namespace/name, revision, json).
    async fn object_change(&mut self) -> (ChangeType, String, String, u64, serde_json::Value) {
        loop {
            let e = self.next().await;
            let Some(watch_event::Event::Change(c)) = &e.event else {
                panic!("expected a change: {e:?}");
            };
            if let Some(change::Object::ClusterObject(o)) = &c.object {
                let v = if o.json.is_empty() {
                    serde_json::Value::Null
                } else {
                    json(o)
                };
                assert_eq!(
                    o.revision, e.revision,
                    "an object's revision is its event's"
                );
                return (
                    c.r#type(),
                    o.kind.clone(),
                    format!("{}/{}", o.namespace, o.name),
                    e.revision,
                    v,
                );
            }
        }
    }

    async fn quiet(&mut self, d: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            while let Some(e) = self.buf.pop_front() {
                if !matches!(e.event, Some(watch_event::Event::Keepalive(_))) {
                    return false;
                }
            }
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return true,
                Ok(Some(Ok(r))) => self.buf.extend(r.events),
                Ok(other) => panic!("the stream ended: {other:?}"),
            }
        }
    }
}

fn short(c: &(ChangeType, String, String, u64, serde_json::Value)) -> (ChangeType, String, String) {
    (c.0, c.1.clone(), c.2.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_reach_watchers_with_revisions_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start(dir.path(), &[]).await;
    let mut admin = admin(&cp).await;
    let (tok, hash) = token(&cp, 0, 0).await;
    let n1 = join(&cp, &tok, &hash, "n1", 1).await.unwrap();
    apply(
        &mut admin,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
    )
    .await
    .unwrap();

    // The snapshot holds the node and every object.
    let mut w = Watch::open(&n1, 0).await;
    let first = w.next().await;
    let Some(watch_event::Event::Snapshot(snap)) = &first.event else {
        panic!("a snapshot first: {first:?}");
    };
    assert!(!snap.more);
    assert_eq!(snap.nodes.len(), 1);
    let names: Vec<String> = snap
        .objects
        .iter()
        .map(|o| format!("{}/{}", o.kind, o.name))
        .collect();
    assert_eq!(
        names,
        [
            "Namespace/default",
            "Namespace/kube-system",
            "Namespace/shop"
        ]
    );
    for o in &snap.objects {
        assert_eq!(
            json(o)["metadata"]["resourceVersion"],
            o.revision.to_string()
        );
    }

    // An apply arrives with the revision it returned; the controller's
    // placeholder EndpointSlice follows.
    let r = apply(
        &mut admin,
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec:\n  selector: {app: web}\n  ports: [{port: 80}]\n",
    )
    .await
    .unwrap();
    let c = w.object_change().await;
    assert_eq!(
        short(&c),
        (ChangeType::Put, "Service".into(), "shop/web".into())
    );
    assert_eq!(c.3, r.revision);
    assert_eq!(c.4["metadata"]["resourceVersion"], r.revision.to_string());
    assert_eq!(
        c.4["spec"]["clusterIP"],
        json(r.objects[0].object.as_ref().unwrap())["spec"]["clusterIP"]
    );
    let c = w.object_change().await;
    assert_eq!(c.1, "EndpointSlice");
    assert_eq!(
        c.4["metadata"]["labels"]["kubernetes.io/service-name"],
        "web"
    );
    let seen = c.3;
    drop(w);

    // Missed while away: a policy, then the Service deleted (its slice in
    // the same transaction), then a pod registered.
    apply(
        &mut admin,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: shop}\nspec:\n  podSelector: {}\n",
    )
    .await
    .unwrap();
    admin
        .delete_objects(DeleteObjectsRequest {
            objects: vec![ObjectRef {
                kind: "svc".into(),
                namespace: "shop".into(),
                name: "web".into(),
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    let p = PodSpec {
        namespace: "shop",
        name: "p",
        node: "n1",
        labels: &[],
        ip: "10.244.0.9",
        ports: &[],
        ready: true,
    };
    n1.client()
        .await
        .register_pod(weft_proto::v1::RegisterPodRequest {
            pod: p.json().into(),
        })
        .await
        .unwrap();

    let expect = [
        (
            ChangeType::Put,
            "NetworkPolicy".to_string(),
            "shop/deny".to_string(),
        ),
        (ChangeType::Delete, "Service".into(), "shop/web".into()),
        (ChangeType::Delete, "EndpointSlice".into(), String::new()),
        (ChangeType::Put, "Pod".into(), "shop/p".into()),
    ];
    let check = |got: &[(ChangeType, String, String, u64, serde_json::Value)]| {
        let kinds: Vec<(ChangeType, String)> = got.iter().map(|c| (c.0, c.1.clone())).collect();
        let want: Vec<(ChangeType, String)> = expect.iter().map(|c| (c.0, c.1.clone())).collect();
        assert_eq!(kinds, want);
        assert_eq!(got[0].2, "shop/deny");
        assert_eq!(got[1].2, "shop/web");
        assert_eq!(got[3].2, "shop/p");
        // The Service's delete carries its last state, in one revision with
        // its slice's.
        assert_eq!(got[1].4["spec"]["selector"]["app"], "web");
        assert_eq!(got[1].3, got[2].3);
        assert!(got[0].3 > seen && got[2].3 > got[0].3 && got[3].3 > got[2].3);
    };
    let mut w = Watch::open(&n1, seen).await;
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(w.object_change().await);
    }
    check(&got);
    assert!(w.quiet(Duration::from_millis(300)).await);
    let last = got[3].3;
    drop(w);

    // After a restart the history is read back from the store: the same
    // resume yields the same changes, and a resume from the end nothing.
    let cp = restart(cp, dir.path(), &[]).await;
    let mut w = Watch::open(&n1, seen).await;
    let mut again = Vec::new();
    for _ in 0..4 {
        again.push(w.object_change().await);
    }
    check(&again);
    assert_eq!(
        again.iter().map(|c| c.3).collect::<Vec<_>>(),
        got.iter().map(|c| c.3).collect::<Vec<_>>()
    );
    let mut w = Watch::open(&n1, last).await;
    assert!(w.quiet(Duration::from_millis(300)).await);
    cp.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_watchers_see_the_same_changes() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start(dir.path(), &[]).await;
    let mut admin = admin(&cp).await;
    let (tok, hash) = token(&cp, 0, 0).await;
    let mut watches = Vec::new();
    for i in 0..8u8 {
        let n = join(&cp, &tok, &hash, &format!("n{i}"), i + 1)
            .await
            .unwrap();
        let mut w = Watch::open(&n, 0).await;
        let _snapshot = w.next().await;
        watches.push(w);
    }
    let mut revisions = Vec::new();
    for i in 0..20 {
        let r = apply(
            &mut admin,
            &format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: ns{i}}}\n"),
        )
        .await
        .unwrap();
        revisions.push(r.revision);
    }
    for w in &mut watches {
        let mut got = Vec::new();
        while got.len() < 20 {
            let c = w.object_change().await;
            if c.1 == "Namespace" {
                got.push(c.3);
            }
        }
        assert_eq!(got, revisions);
    }
    cp.stop().await.unwrap();
}
