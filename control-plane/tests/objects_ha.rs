//! Objects with two control-plane replicas on one etcd (started by the test
//! on loopback): objects applied and pods registered through the follower
//! are derived into EndpointSlices by the leader's controllers (one set of
//! slices, never two), and after the leader stops the other replica's
//! controllers carry on.

mod support;

use std::time::Duration;

use support::objects::*;
use support::*;
use weft_control_plane::store::etcd::local::LocalEtcd;
use weft_proto::v1::RegisterPodRequest;

async fn wait_leader(cp: &weft_control_plane::server::Running) {
    let mut l = cp.leadership();
    tokio::time::timeout(Duration::from_secs(10), l.wait_for(|x| *x))
        .await
        .expect("leads in time")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_run_on_the_leader_and_move_with_it() {
    let etcd = LocalEtcd::start(1).await.unwrap();
    let url = etcd.store_url();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start(da.path(), &["--store", &url, "--tls-san", "a.weft.test"]).await;
    wait_leader(&a).await;
    std::fs::copy(
        da.path().join("cluster-secret"),
        db.path().join("cluster-secret"),
    )
    .unwrap();
    let b = start(db.path(), &["--store", &url, "--tls-san", "b.weft.test"]).await;
    assert!(!b.is_leader());

    // Everything through B, the follower.
    let mut admin_b = admin(&b).await;
    apply(
        &mut admin_b,
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec:\n  selector: {app: web}\n  ports: [{port: 80, targetPort: 8080}]\n",
    )
    .await
    .unwrap();
    let (tok, hash) = token(&b, 0, 0).await;
    let n1 = join(&b, &tok, &hash, "n1", 1).await.unwrap();
    let pod = |name: &'static str, ip: &'static str| PodSpec {
        namespace: "default",
        name,
        node: "n1",
        labels: &[("app", "web")],
        ip,
        ports: &[],
        ready: true,
    };
    let mut c1 = n1.client().await;
    c1.register_pod(RegisterPodRequest {
        pod: pod("p1", "10.244.0.5").json().into(),
    })
    .await
    .unwrap();
    let want = vec![("10.244.0.5".to_string(), vec![8080], true)];
    eventually(SETTLE, "the leader derives p1", || {
        let (mut a, want) = (admin_b.clone(), want.clone());
        async move { (endpoints(&mut a, "default", "web").await == want).then_some(()) }
    })
    .await;

    // The leader stops; B leads and its controllers go on from there.
    a.stop().await.unwrap();
    wait_leader(&b).await;
    c1.register_pod(RegisterPodRequest {
        pod: pod("p2", "10.244.0.6").json().into(),
    })
    .await
    .unwrap();
    let want = vec![
        ("10.244.0.5".to_string(), vec![8080], true),
        ("10.244.0.6".to_string(), vec![8080], true),
    ];
    eventually(SETTLE, "B derives p2", || {
        let (mut a, want) = (admin_b.clone(), want.clone());
        async move { (endpoints(&mut a, "default", "web").await == want).then_some(()) }
    })
    .await;
    // One slice for the Service, whoever derived it.
    let slices = list(
        &mut admin_b,
        "endpointslices",
        Some("default"),
        "kubernetes.io/service-name=web",
    )
    .await;
    assert_eq!(slices.len(), 1);
    b.stop().await.unwrap();
}
