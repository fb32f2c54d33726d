//! The control plane's controllers over real TLS gRPC, on the embedded
//! store and on a real etcd: EndpointSlices follow pods (registered on two
//! nodes, with named target ports resolved per pod, not-ready pods listed
//! not ready), relabels and node removal; LoadBalancer Services get the
//! nodes' addresses; NodePorts come from the range; a deleted Service
//! takes its slices and a deleted namespace its pods.

mod support;

use support::objects::*;
use support::*;
use weft_control_plane::store::etcd::local::LocalEtcd;
use weft_proto::v1::{
    DeleteObjectsRequest, LabelObjectRequest, ObjectRef, RegisterPodRequest, RemoveNodeRequest,
};

const SERVICES: &str = "\
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: lb, namespace: shop}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 443, targetPort: 8443}]
";

fn oref(kind: &str, ns: &str, name: &str) -> ObjectRef {
    ObjectRef {
        kind: kind.into(),
        namespace: ns.into(),
        name: name.into(),
    }
}

type Endpoints = Vec<(String, Vec<i64>, bool)>;

fn ep(ip: &str, port: i64, ready: bool) -> (String, Vec<i64>, bool) {
    (ip.to_string(), vec![port], ready)
}

async fn controllers_follow_the_cluster(flags: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let cp = start(dir.path(), flags).await;
    let mut admin = admin(&cp).await;
    let (tok, hash) = token(&cp, 0, 0).await;
    let n1 = join(&cp, &tok, &hash, "n1", 1).await.unwrap();
    let n2 = join(&cp, &tok, &hash, "n2", 2).await.unwrap();

    let r = apply(&mut admin, SERVICES).await.unwrap();
    let web = json(r.objects[1].object.as_ref().unwrap());
    let node_port = web["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    assert!((30000..=32767).contains(&node_port), "{node_port}");

    // Without pods: one empty placeholder slice.
    let slices = eventually(SETTLE, "the placeholder slice", || {
        let mut a = admin.clone();
        async move {
            let s = list(
                &mut a,
                "endpointslices",
                Some("shop"),
                "kubernetes.io/service-name=web",
            )
            .await;
            (!s.is_empty()).then_some(s)
        }
    })
    .await;
    assert_eq!(slices.len(), 1);
    assert!(json(&slices[0])["endpoints"]
        .as_array()
        .is_none_or(|a| a.is_empty()));

    // Pods on both nodes: the named port resolves per pod; a not-ready
    // pod is listed not ready; a pod with other labels is not listed.
    let pods = [
        (
            &n1,
            PodSpec {
                namespace: "shop",
                name: "a",
                node: "n1",
                labels: &[("app", "web")],
                ip: "10.244.0.5",
                ports: &[("http", 8080)],
                ready: true,
            },
        ),
        (
            &n2,
            PodSpec {
                namespace: "shop",
                name: "b",
                node: "n2",
                labels: &[("app", "web")],
                ip: "10.244.1.5",
                ports: &[("http", 9090)],
                ready: true,
            },
        ),
        (
            &n2,
            PodSpec {
                namespace: "shop",
                name: "c",
                node: "n2",
                labels: &[("app", "web")],
                ip: "10.244.1.6",
                ports: &[("http", 8080)],
                ready: false,
            },
        ),
        (
            &n1,
            PodSpec {
                namespace: "shop",
                name: "d",
                node: "n1",
                labels: &[("app", "db")],
                ip: "10.244.0.6",
                ports: &[("http", 8080)],
                ready: true,
            },
        ),
    ];
    for (node, p) in &pods {
        node.client()
            .await
            .register_pod(RegisterPodRequest {
                pod: p.json().into(),
            })
            .await
            .unwrap();
    }
    let want: Endpoints = vec![
        ep("10.244.0.5", 8080, true),
        ep("10.244.1.5", 9090, true),
        ep("10.244.1.6", 8080, false),
    ];
    wait_endpoints(&mut admin, "web", &want).await;
    let want_lb: Endpoints = vec![
        ep("10.244.0.5", 8443, true),
        ep("10.244.1.5", 8443, true),
        ep("10.244.1.6", 8443, false),
    ];
    wait_endpoints(&mut admin, "lb", &want_lb).await;
    let slice = list(
        &mut admin,
        "endpointslices",
        Some("shop"),
        "kubernetes.io/service-name=web",
    )
    .await;
    let v = json(&slice[0]);
    assert_eq!(
        v["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.weft"
    );
    assert!(v["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["nodeName"].is_string()));

    // LoadBalancer ingress: the nodes' addresses.
    let ingress = eventually(SETTLE, "the load-balancer ingress", || {
        let mut a = admin.clone();
        async move {
            let v = json(&get_one(&mut a, "svc", "shop", "lb").await.unwrap());
            let ips: Vec<String> = v["status"]["loadBalancer"]["ingress"]
                .as_array()?
                .iter()
                .filter_map(|i| i["ip"].as_str().map(String::from))
                .collect();
            (ips.len() == 2).then_some(ips)
        }
    })
    .await;
    assert_eq!(
        ingress,
        [
            endpoint(1).replace(":51820", ""),
            endpoint(2).replace(":51820", "")
        ]
    );

    // A relabelled pod leaves; a removed node's pods leave.
    admin
        .label_object(LabelObjectRequest {
            object: Some(oref("pod", "shop", "b")),
            set: [("app".to_string(), "other".to_string())].into(),
            remove: vec![],
            overwrite: true,
            dry_run: false,
        })
        .await
        .unwrap();
    wait_endpoints(
        &mut admin,
        "web",
        &[ep("10.244.0.5", 8080, true), ep("10.244.1.6", 8080, false)],
    )
    .await;
    admin
        .remove_node(RemoveNodeRequest { name: "n1".into() })
        .await
        .unwrap();
    wait_endpoints(&mut admin, "web", &[ep("10.244.1.6", 8080, false)]).await;
    let lb = eventually(SETTLE, "one ingress address left", || {
        let mut a = admin.clone();
        async move {
            let v = json(&get_one(&mut a, "svc", "shop", "lb").await.unwrap());
            let n = v["status"]["loadBalancer"]["ingress"]
                .as_array()
                .map_or(0, Vec::len);
            (n == 1).then_some(v)
        }
    })
    .await;
    assert_eq!(
        lb["status"]["loadBalancer"]["ingress"][0]["ip"],
        endpoint(2).replace(":51820", "")
    );

    // A deleted Service takes its slices; a deleted namespace its pods.
    admin
        .delete_objects(DeleteObjectsRequest {
            objects: vec![oref("svc", "shop", "web")],
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(list(
        &mut admin,
        "endpointslices",
        Some("shop"),
        "kubernetes.io/service-name=web"
    )
    .await
    .is_empty());
    admin
        .delete_objects(DeleteObjectsRequest {
            objects: vec![oref("ns", "", "shop")],
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(list(&mut admin, "pods", None, "").await.is_empty());
    assert!(list(&mut admin, "svc", None, "").await.is_empty());
    // Nothing is re-derived for the deleted namespace.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(list(&mut admin, "endpointslices", None, "")
        .await
        .is_empty());
    cp.stop().await.unwrap();
}

async fn wait_endpoints(
    admin: &mut weft_proto::v1::admin_client::AdminClient<tonic::transport::Channel>,
    svc: &str,
    want: &[(String, Vec<i64>, bool)],
) {
    let mut last = Vec::new();
    let deadline = tokio::time::Instant::now() + SETTLE;
    while tokio::time::Instant::now() < deadline {
        last = endpoints(admin, "shop", svc).await;
        if last == want {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("endpoints of {svc}: got {last:?}, want {want:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_on_the_embedded_store() {
    controllers_follow_the_cluster(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_on_etcd() {
    let etcd = LocalEtcd::start(1).await.unwrap();
    let url = etcd.store_url();
    controllers_follow_the_cluster(&[
        "--store",
        url.as_str(),
        "--etcd-prefix",
        "/weft/objects-test/",
    ])
    .await;
}
