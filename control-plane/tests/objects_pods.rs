//! Pods as agents register them, over real TLS gRPC: RegisterPod,
//! UnregisterPod and SyncPods with a node credential that may only touch
//! its own node's pods, the namespace a pod creates, labels an admin set
//! surviving re-registration, and a node's pods removed with the node
//! (admin removal, Leave, lease expiry).

mod support;

use std::time::Duration;

use support::objects::*;
use support::*;
use tonic::Code;
use weft_proto::v1::{
    ApplyAction, DeleteObjectsRequest, LabelObjectRequest, LeaveRequest, ObjectRef,
    RegisterPodRequest, RemoveNodeRequest, SyncPodsRequest, UnregisterPodRequest,
};

fn pod<'a>(ns: &'a str, name: &'a str, node: &'a str, ip: &'a str) -> PodSpec<'a> {
    PodSpec {
        namespace: ns,
        name,
        node,
        labels: &[("app", "web")],
        ip,
        ports: &[("http", 8080)],
        ready: true,
    }
}

fn register(p: &PodSpec<'_>) -> RegisterPodRequest {
    RegisterPodRequest {
        pod: p.json().into(),
    }
}

fn pod_names(objects: &[weft_proto::v1::Object]) -> Vec<String> {
    objects
        .iter()
        .map(|o| format!("{}/{}", o.namespace, o.name))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_register_only_their_own_pods() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start(dir.path(), &[]).await;
    let mut admin = admin(&cp).await;
    let (tok, hash) = token(&cp, 0, 0).await;
    let n1 = join(&cp, &tok, &hash, "n1", 1).await.unwrap();
    let n2 = join(&cp, &tok, &hash, "n2", 2).await.unwrap();
    let (mut c1, mut c2) = (n1.client().await, n2.client().await);

    // A pod in a namespace that does not exist creates it.
    let a = pod("shop", "a", "n1", "10.244.0.5");
    let r = c1.register_pod(register(&a)).await.unwrap().into_inner();
    let applied = r.pod.unwrap();
    assert_eq!(applied.action(), ApplyAction::Created);
    let v = json(applied.object.as_ref().unwrap());
    assert_eq!(v["spec"]["nodeName"], "n1");
    assert_eq!(v["status"]["podIP"], "10.244.0.5");
    let ns = get_one(&mut admin, "ns", "", "shop").await.unwrap();
    assert_eq!(
        json(&ns)["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "shop"
    );

    // The same registration again changes nothing; a status change does.
    let again = c1.register_pod(register(&a)).await.unwrap().into_inner();
    assert_eq!(again.pod.unwrap().action(), ApplyAction::Unchanged);
    let not_ready = PodSpec {
        ready: false,
        ..pod("shop", "a", "n1", "10.244.0.5")
    };
    let r = c1
        .register_pod(register(&not_ready))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.pod.unwrap().action(), ApplyAction::Configured);

    // An admin's label survives the agent registering the pod again.
    admin
        .label_object(LabelObjectRequest {
            object: Some(ObjectRef {
                kind: "pod".into(),
                namespace: "shop".into(),
                name: "a".into(),
            }),
            set: [("tier".to_string(), "fe".to_string())].into(),
            remove: vec![],
            overwrite: false,
            dry_run: false,
        })
        .await
        .unwrap();
    c1.register_pod(register(&a)).await.unwrap();
    let stored = json(&get_one(&mut admin, "pods", "shop", "a").await.unwrap());
    assert_eq!(stored["metadata"]["labels"]["tier"], "fe");
    assert_eq!(stored["status"]["conditions"][0]["status"], "True");

    // n2 may not register a pod on n1, nor take n1's pod's name, nor
    // remove it.
    let e = c2.register_pod(register(&a)).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert_eq!(
        e.message(),
        r#"pod: spec.nodeName is "n1"; node "n2" may only register its own pods"#
    );
    let e = c2
        .register_pod(register(&pod("shop", "a", "n2", "10.244.1.5")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(
        e.message()
            .contains(r#"pod "shop/a" is registered by node "n1""#),
        "{}",
        e.message()
    );
    let e = c2
        .unregister_pod(UnregisterPodRequest {
            namespace: "shop".into(),
            name: "a".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = c2
        .sync_pods(SyncPodsRequest {
            pods: vec![a.json().into()],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    // Credentials are kept apart: the admin cannot register pods, a node
    // cannot apply objects, nobody deletes a pod through Admin.
    let mut admin_as_node = weft_proto::v1::cluster_client::ClusterClient::new(
        weft_client::connect(&weft_client::Credentials::load(cp.admin_conf()).unwrap())
            .await
            .unwrap(),
    );
    let e = admin_as_node.register_pod(register(&a)).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let mut node_as_admin = weft_proto::v1::admin_client::AdminClient::new(
        weft_client::connect(&n1.creds).await.unwrap(),
    );
    let e = apply(
        &mut node_as_admin,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n",
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = admin
        .delete_objects(DeleteObjectsRequest {
            objects: vec![ObjectRef {
                kind: "pod".into(),
                namespace: "shop".into(),
                name: "a".into(),
            }],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);

    // An invalid pod is refused with Kubernetes' wording, nothing stored.
    let bad = pod("shop", "Bad_Name", "n1", "10.244.0.6");
    let e = c1.register_pod(register(&bad)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message()
            .starts_with(r#"Pod "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name""#),
        "{}",
        e.message()
    );

    // SyncPods makes the list the node's whole set.
    c1.register_pod(register(&pod("shop", "b", "n1", "10.244.0.7")))
        .await
        .unwrap();
    c2.register_pod(register(&pod("shop", "z", "n2", "10.244.1.7")))
        .await
        .unwrap();
    let s = c1
        .sync_pods(SyncPodsRequest {
            pods: vec![
                pod("shop", "b", "n1", "10.244.0.7").json().into(),
                pod("default", "c", "n1", "10.244.0.8").json().into(),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    let actions: Vec<ApplyAction> = s.pods.iter().map(|p| p.action()).collect();
    assert_eq!(actions, [ApplyAction::Unchanged, ApplyAction::Created]);
    assert_eq!(s.removed.len(), 1);
    assert_eq!(
        (s.removed[0].namespace.as_str(), s.removed[0].name.as_str()),
        ("shop", "a")
    );
    assert_eq!(
        pod_names(&list(&mut admin, "pods", None, "").await),
        ["default/c", "shop/b", "shop/z"]
    );

    // Unregistering is idempotent.
    let u = c1
        .unregister_pod(UnregisterPodRequest {
            namespace: "shop".into(),
            name: "b".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(u.found);
    let u = c1
        .unregister_pod(UnregisterPodRequest {
            namespace: "shop".into(),
            name: "b".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!u.found);

    // Removing n1 removes its pods and only its pods; Leave does the same.
    admin
        .remove_node(RemoveNodeRequest { name: "n1".into() })
        .await
        .unwrap();
    assert_eq!(
        pod_names(&list(&mut admin, "pods", None, "").await),
        ["shop/z"]
    );
    let e = c1.register_pod(register(&a)).await.unwrap_err();
    assert!(
        matches!(
            e.code(),
            Code::NotFound | Code::PermissionDenied | Code::Unauthenticated
        ),
        "{e:?}"
    );
    c2.leave(LeaveRequest {
        node_name: "n2".into(),
    })
    .await
    .unwrap();
    assert!(list(&mut admin, "pods", None, "").await.is_empty());
    cp.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_node_takes_its_pods_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start(dir.path(), &["--lease-ttl", "1", "--removal-grace", "1"]).await;
    let admin = admin(&cp).await;
    let (tok, hash) = token(&cp, 0, 0).await;
    let live = join(&cp, &tok, &hash, "live", 1).await.unwrap();
    let silent = join(&cp, &tok, &hash, "silent", 2).await.unwrap();
    let mut lc = live.client().await;
    lc.register_pod(register(&pod("default", "kept", "live", "10.244.0.5")))
        .await
        .unwrap();
    silent
        .client()
        .await
        .register_pod(register(&pod("default", "gone", "silent", "10.244.1.5")))
        .await
        .unwrap();
    let renew = tokio::spawn(async move {
        loop {
            let _ = lc.renew_lease(weft_proto::v1::RenewLeaseRequest {}).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let left = eventually(
        Duration::from_secs(15),
        "the silent node's pod to go",
        || {
            let mut admin = admin.clone();
            async move {
                let pods = pod_names(&list(&mut admin, "pods", None, "").await);
                (pods.len() == 1).then_some(pods)
            }
        },
    )
    .await;
    assert_eq!(left, ["default/kept"]);
    renew.abort();
    cp.stop().await.unwrap();
}
