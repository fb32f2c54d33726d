//! The objects half of `Admin` over real TLS gRPC on 127.0.0.1:0: Apply
//! (create, configure, unchanged, all or nothing), GetObjects (by name,
//! namespace, every namespace, label selector), LabelObject, DeleteObjects
//! (a Service's ClusterIP freed, a namespace's contents with it), and every
//! validation refusal with its gRPC code, Kubernetes' message and nothing
//! stored.

mod support;

use support::objects::*;
use support::*;
use tonic::Code;
use weft_proto::v1::{
    ApplyAction, ApplyRequest, DeleteObjectsRequest, GetObjectsRequest, LabelObjectRequest,
    ObjectRef,
};

const SHOP: &str = "\
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: a}}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop, labels: {app: web}}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-in, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {team: a}}, podSelector: {matchLabels: {role: fe}}}]
    ports: [{port: http}, {port: 8000, endPort: 8080}]
";

fn oref(kind: &str, ns: &str, name: &str) -> ObjectRef {
    ObjectRef {
        kind: kind.into(),
        namespace: ns.into(),
        name: name.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_get_label_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start(dir.path(), &[]).await;
    let mut admin = admin(&cp).await;

    // The system namespaces exist, labelled with their names.
    let ns = get_one(&mut admin, "ns", "", "default").await.unwrap();
    assert_eq!(
        json(&ns)["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "default"
    );

    let r = apply(&mut admin, SHOP).await.unwrap();
    let actions: Vec<(ApplyAction, String)> = r
        .objects
        .iter()
        .map(|a| (a.action(), a.object.as_ref().unwrap().name.clone()))
        .collect();
    assert_eq!(
        actions,
        [
            (ApplyAction::Created, "shop".to_string()),
            (ApplyAction::Created, "web".to_string()),
            (ApplyAction::Created, "web-in".to_string())
        ]
    );
    let svc = r.objects[1].object.clone().unwrap();
    assert_eq!(svc.revision, r.revision);
    let v = json(&svc);
    assert_eq!(v["metadata"]["resourceVersion"], r.revision.to_string());
    assert_eq!(v["metadata"]["namespace"], "shop");
    let ip: std::net::Ipv4Addr = v["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
    assert!(
        "10.96.0.0/12"
            .parse::<ipnet::Ipv4Net>()
            .unwrap()
            .contains(&ip),
        "{ip}"
    );
    assert_ne!(ip.to_string(), "10.96.0.1");
    assert_ne!(ip.to_string(), "10.96.0.10");
    assert_eq!(v["spec"]["type"], "ClusterIP");
    assert_eq!(v["spec"]["sessionAffinity"], "None");
    assert!(!v["metadata"]["uid"].as_str().unwrap().is_empty());
    let np = json(r.objects[2].object.as_ref().unwrap());
    assert_eq!(np["spec"]["policyTypes"], serde_json::json!(["Ingress"]));
    assert_eq!(np["spec"]["ingress"][0]["ports"][0]["protocol"], "TCP");

    // Read back: by name (same revision), per namespace, everywhere, by label.
    let got = get_one(&mut admin, "svc", "shop", "web").await.unwrap();
    assert_eq!(got.revision, svc.revision);
    assert_eq!(json(&got)["spec"]["clusterIP"], v["spec"]["clusterIP"]);
    assert_eq!(
        list(&mut admin, "services", Some("shop"), "").await.len(),
        1
    );
    assert!(list(&mut admin, "services", Some("default"), "")
        .await
        .is_empty());
    assert_eq!(list(&mut admin, "Service", None, "app=web").await.len(), 1);
    assert!(list(&mut admin, "svc", None, "app!=web").await.is_empty());
    let names: Vec<String> = list(&mut admin, "ns", None, "")
        .await
        .into_iter()
        .map(|o| o.name)
        .collect();
    assert_eq!(names, ["default", "kube-system", "shop"]);
    let missing = get_one(&mut admin, "svc", "shop", "nope")
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(missing.message(), r#"services "nope" not found"#);
    let bad = admin
        .get_objects(GetObjectsRequest {
            kind: "deployments".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(
        bad.message().contains(r#""deployments""#),
        "{}",
        bad.message()
    );

    // Applying the same again changes nothing; a change configures and
    // keeps the allocated ClusterIP.
    let again = apply(&mut admin, SHOP).await.unwrap();
    assert!(again
        .objects
        .iter()
        .all(|a| a.action() == ApplyAction::Unchanged));
    assert_eq!(
        again.objects[1].object.as_ref().unwrap().revision,
        svc.revision
    );
    let changed = apply(&mut admin, &SHOP.replace("port: 80,", "port: 81,"))
        .await
        .unwrap();
    assert_eq!(changed.objects[1].action(), ApplyAction::Configured);
    let v2 = json(changed.objects[1].object.as_ref().unwrap());
    assert_eq!(v2["spec"]["clusterIP"], v["spec"]["clusterIP"]);
    assert_eq!(v2["spec"]["ports"][0]["port"], 81);
    assert_eq!(v2["metadata"]["uid"], v["metadata"]["uid"]);
    assert_eq!(v2["metadata"]["generation"], 2);

    // Labels: set, refuse a silent overwrite, overwrite, remove.
    let label = |set: &[(&str, &str)], remove: &[&str], overwrite: bool| LabelObjectRequest {
        object: Some(oref("svc", "shop", "web")),
        set: set
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        remove: remove.iter().map(|s| s.to_string()).collect(),
        overwrite,
        dry_run: false,
    };
    let l = admin
        .label_object(label(&[("tier", "fe")], &[], false))
        .await
        .unwrap()
        .into_inner();
    assert!(l.changed);
    let e = admin
        .label_object(label(&[("tier", "be")], &[], false))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert_eq!(
        e.message(),
        "'tier' already has a value (fe), and --overwrite is false"
    );
    admin
        .label_object(label(&[("tier", "be")], &["app"], true))
        .await
        .unwrap();
    let labels = json(&get_one(&mut admin, "svc", "shop", "web").await.unwrap())["metadata"]
        ["labels"]
        .clone();
    assert_eq!(labels, serde_json::json!({"tier": "be"}));
    let e = admin
        .label_object(label(&[("-bad", "x")], &[], false))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message()
            .starts_with(r#"Service "web" is invalid: metadata.labels: Invalid value: "-bad""#),
        "{}",
        e.message()
    );

    // Delete the Service: its ClusterIP is free for another one.
    let d = admin
        .delete_objects(DeleteObjectsRequest {
            objects: vec![oref("svc", "shop", "web")],
            ignore_not_found: false,
            dry_run: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.deleted.len(), 1);
    assert_eq!(
        get_one(&mut admin, "svc", "shop", "web")
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    let reuse = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: again, namespace: shop}}\nspec:\n  clusterIP: {}\n  ports: [{{port: 80}}]\n",
        v["spec"]["clusterIP"].as_str().unwrap()
    );
    apply(&mut admin, &reuse).await.unwrap();
    let e = admin
        .delete_objects(DeleteObjectsRequest {
            objects: vec![oref("svc", "shop", "web")],
            ignore_not_found: false,
            dry_run: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // The system namespaces stay; deleting shop deletes what it holds.
    let e = admin
        .delete_objects(DeleteObjectsRequest {
            objects: vec![oref("ns", "", "default")],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    admin
        .delete_objects(DeleteObjectsRequest {
            objects: vec![oref("ns", "", "shop"), oref("svc", "shop", "again")],
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(list(&mut admin, "svc", None, "").await.is_empty());
    assert!(list(&mut admin, "netpol", None, "").await.is_empty());
    assert!(list(&mut admin, "endpointslices", None, "")
        .await
        .is_empty());
    cp.stop().await.unwrap();
}

/// One case per refusal: (what, manifest, exact message).
fn refusals() -> Vec<(&'static str, String, String)> {
    let svc = |spec: &str| {
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: shop}}\nspec:\n{spec}")
    };
    let np = |spec: &str| {
        format!("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: shop}}\nspec:\n  podSelector: {{}}\n{spec}")
    };
    let svc_err = |e: &str| format!(r#"documents[0]: Service "web" is invalid: {e}"#);
    let np_err =
        |e: &str| format!(r#"documents[0]: NetworkPolicy.networking.k8s.io "p" is invalid: {e}"#);
    vec![
        (
            "port out of range",
            svc("  ports: [{port: 70000, targetPort: 8080}]\n"),
            svc_err("spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive"),
        ),
        (
            "duplicate port names",
            svc("  ports: [{name: http, port: 80}, {name: http, port: 81}]\n"),
            svc_err(r#"spec.ports[1].name: Duplicate value: "http""#),
        ),
        (
            "bad targetPort name",
            svc("  ports: [{port: 80, targetPort: web--http}]\n"),
            svc_err(r#"spec.ports[0].targetPort: Invalid value: "web--http": must not contain consecutive hyphens"#),
        ),
        (
            "ClusterIP outside the service CIDR",
            svc("  clusterIP: 10.0.0.1\n  ports: [{port: 80}]\n"),
            svc_err(r#"spec.clusterIPs: Invalid value: ["10.0.0.1"]: failed to allocate IP 10.0.0.1: the provided IP (10.0.0.1) is not in the valid range. The range of valid IPs is 10.96.0.0/12"#),
        ),
        (
            "ClusterIP taken",
            svc("  clusterIP: 10.96.0.50\n  ports: [{port: 80}]\n"),
            svc_err(r#"spec.clusterIPs: Invalid value: ["10.96.0.50"]: failed to allocate IP 10.96.0.50: provided IP is already allocated"#),
        ),
        (
            "NodePort outside the range",
            svc("  type: NodePort\n  ports: [{port: 80, nodePort: 8080}]\n"),
            svc_err("spec.ports[0].nodePort: Invalid value: 8080: provided port is not in the valid range. The range of valid ports is 30000-32767"),
        ),
        (
            "NodePort taken",
            svc("  type: NodePort\n  ports: [{port: 80, nodePort: 30080}]\n"),
            svc_err("spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"),
        ),
        (
            "ExternalName without externalName",
            svc("  type: ExternalName\n"),
            svc_err("spec.externalName: Required value"),
        ),
        (
            "bad service name",
            "apiVersion: v1\nkind: Service\nmetadata: {name: 1web, namespace: shop}\nspec:\n  ports: [{port: 80}]\n".into(),
            r#"documents[0]: Service "1web" is invalid: metadata.name: Invalid value: "1web": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"#.into(),
        ),
        (
            "bad label value",
            svc("  selector: {app: -web}\n  ports: [{port: 80}]\n"),
            svc_err(r#"spec.selector: Invalid value: "-web": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"#),
        ),
        (
            "bad selector operator",
            np("  ingress: [{from: [{podSelector: {matchExpressions: [{key: a, operator: Near}]}}]}]\n"),
            np_err(r#"spec.ingress[0].from[0].podSelector.matchExpressions[0].operator: Invalid value: "Near": not a valid selector operator"#),
        ),
        (
            "ipBlock except outside cidr",
            np("  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [192.168.0.0/16]}}]}]\n"),
            np_err(r#"spec.ingress[0].from[0].ipBlock.except[0]: Invalid value: "192.168.0.0/16": must be a strict subset of `cidr`"#),
        ),
        (
            "endPort below port",
            np("  egress: [{ports: [{port: 80, endPort: 79}]}]\n"),
            np_err("spec.egress[0].ports[0].endPort: Invalid value: 79: must be greater than or equal to `port`"),
        ),
        (
            "unknown kind",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n".into(),
            r#"documents[0]: document 0: no matches for kind "Deployment" in version "apps/v1": weft serves Namespace (v1), Pod (v1), Service (v1), NetworkPolicy (networking.k8s.io/v1), EndpointSlice (discovery.k8s.io/v1) and List"#.into(),
        ),
        (
            "unknown apiVersion",
            "apiVersion: v2\nkind: Service\nmetadata: {name: x}\n".into(),
            r#"documents[0]: document 0: no matches for kind "Service" in version "v2": weft serves Namespace (v1), Pod (v1), Service (v1), NetworkPolicy (networking.k8s.io/v1), EndpointSlice (discovery.k8s.io/v1) and List"#.into(),
        ),
        (
            "unknown field",
            svc("  ports: [{port: 80, tagetPort: 8080}]\n"),
            r#"documents[0]: document 0: strict decoding error: unknown field "spec.ports[0].tagetPort""#.into(),
        ),
        (
            "a pod cannot be applied",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: shop}\n".into(),
            r#"documents[0]: pod "p": pods cannot be applied: a pod is registered by the agent of the node that runs it (CNI, or `weftctl pod add` on that node); `weftctl label pod` changes its labels"#.into(),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_worded_as_kubernetes_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start(dir.path(), &[]).await;
    let mut admin = admin(&cp).await;
    apply(
        &mut admin,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: taken, namespace: shop}\nspec:\n  type: NodePort\n  clusterIP: 10.96.0.50\n  ports: [{port: 80, nodePort: 30080}]\n",
    )
    .await
    .unwrap();
    let before = list(&mut admin, "svc", None, "").await;
    let mut failures = Vec::new();
    for (what, doc, want) in refusals() {
        let rev = cp_revision(&mut admin).await;
        match apply(&mut admin, &doc).await {
            Ok(r) => failures.push(format!("{what}: accepted: {:?}", r.objects)),
            Err(e) => {
                if e.code() != Code::InvalidArgument || e.message() != want {
                    failures.push(format!(
                        "{what}:\n  got:  {:?} {}\n  want: InvalidArgument {want}",
                        e.code(),
                        e.message()
                    ));
                }
            }
        }
        if cp_revision(&mut admin).await != rev {
            failures.push(format!("{what}: the store changed"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(list(&mut admin, "svc", None, "").await, before);
    assert!(list(&mut admin, "netpol", None, "").await.is_empty());

    // All or nothing: a valid object beside an invalid one is not stored,
    // across documents of one request too.
    let e = admin
        .apply(ApplyRequest {
            documents: vec![
                "apiVersion: v1\nkind: Service\nmetadata: {name: fine, namespace: shop}\nspec:\n  ports: [{port: 80}]\n".as_bytes().to_vec().into(),
                "apiVersion: v1\nkind: Service\nmetadata: {name: bad, namespace: shop}\nspec:\n  ports: [{port: 0}]\n".as_bytes().to_vec().into(),
            ],
            dry_run: false,
            namespace: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message()
            .starts_with(r#"documents[1]: Service "bad" is invalid: "#),
        "{}",
        e.message()
    );
    assert_eq!(list(&mut admin, "svc", None, "").await, before);

    // A namespace that does not exist: NOT_FOUND, as Kubernetes.
    let e = apply(
        &mut admin,
        "apiVersion: v1\nkind: Service\nmetadata: {name: x, namespace: nowhere}\nspec:\n  ports: [{port: 80}]\n",
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(e.message(), r#"namespaces "nowhere" not found"#);

    // A dry run validates and allocates but stores nothing.
    let rev = cp_revision(&mut admin).await;
    let r = admin
        .apply(ApplyRequest {
            documents: vec!["apiVersion: v1\nkind: Service\nmetadata: {name: dry, namespace: shop}\nspec:\n  type: NodePort\n  ports: [{port: 80}]\n".as_bytes().to_vec().into()],
            dry_run: true,
            namespace: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let v = json(r.objects[0].object.as_ref().unwrap());
    assert!(v["spec"]["ports"][0]["nodePort"].as_i64().unwrap() >= 30000);
    assert_eq!(cp_revision(&mut admin).await, rev);
    assert_eq!(
        get_one(&mut admin, "svc", "shop", "dry")
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    cp.stop().await.unwrap();
}

async fn cp_revision(
    admin: &mut weft_proto::v1::admin_client::AdminClient<tonic::transport::Channel>,
) -> u64 {
    admin
        .get_cluster_info(weft_proto::v1::GetClusterInfoRequest {})
        .await
        .unwrap()
        .into_inner()
        .revision
}
