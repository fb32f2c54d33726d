//! `Admin.Apply` merges as `kubectl apply` does, over real TLS gRPC on
//! 127.0.0.1:0: the manifest is recorded in the last-applied annotation;
//! fields removed from the manifest since the last apply are removed,
//! fields set by others (`LabelObject`) and by the control plane survive,
//! and `configured` / `unchanged` follow what was stored.

mod support;

use support::objects::*;
use support::*;
use weft_proto::v1::{ApplyAction, LabelObjectRequest, ObjectRef};

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

const FIRST: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: web
  labels: {app: web, tier: fe}
  annotations: {owner: shop-team}
spec:
  type: NodePort
  selector: {app: web, track: stable}
  sessionAffinity: ClientIP
  externalIPs: [192.0.2.10, 192.0.2.11]
  ports: [{name: http, port: 80, targetPort: 8080}]
";

/// `FIRST` without the `tier` label, the annotation, the type, the
/// `track` selector term and the session affinity; another external IP.
const SECOND: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: web
  labels: {app: web}
spec:
  selector: {app: web}
  externalIPs: [192.0.2.12]
  ports: [{name: http, port: 80, targetPort: 8080}]
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_merges_with_the_last_applied_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start(dir.path(), &[]).await;
    let mut admin = admin(&cp).await;

    let r = apply(&mut admin, FIRST).await.unwrap();
    assert_eq!(r.objects[0].action(), ApplyAction::Created);
    let v = json(r.objects[0].object.as_ref().unwrap());
    let recorded: serde_json::Value = serde_json::from_str(
        v["metadata"]["annotations"][LAST_APPLIED]
            .as_str()
            .expect("the manifest is recorded"),
    )
    .unwrap();
    assert_eq!(recorded["metadata"]["labels"]["tier"], "fe");
    assert_eq!(recorded["metadata"]["namespace"], "default");
    assert_eq!(recorded["spec"]["type"], "NodePort");
    assert!(recorded["spec"].get("clusterIP").is_none(), "{recorded}");
    let cluster_ip = v["spec"]["clusterIP"].as_str().unwrap().to_string();
    assert!(v["spec"]["ports"][0]["nodePort"].as_u64().is_some());

    // Someone else labels it (`weftctl label svc web team=a`).
    admin
        .label_object(LabelObjectRequest {
            object: Some(ObjectRef {
                kind: "svc".into(),
                namespace: "default".into(),
                name: "web".into(),
            }),
            set: [("team".to_string(), "a".to_string())].into(),
            ..Default::default()
        })
        .await
        .unwrap();

    // The same manifest again: nothing to do, the label stays.
    let again = apply(&mut admin, FIRST).await.unwrap();
    assert_eq!(again.objects[0].action(), ApplyAction::Unchanged);
    let v = json(&get_one(&mut admin, "svc", "default", "web").await.unwrap());
    assert_eq!(
        v["metadata"]["labels"],
        serde_json::json!({"app": "web", "tier": "fe", "team": "a"})
    );

    // What the manifest dropped goes; what others set stays.
    let second = apply(&mut admin, SECOND).await.unwrap();
    assert_eq!(second.objects[0].action(), ApplyAction::Configured);
    let v = json(&get_one(&mut admin, "svc", "default", "web").await.unwrap());
    assert_eq!(
        v["metadata"]["labels"],
        serde_json::json!({"app": "web", "team": "a"})
    );
    let annotations = v["metadata"]["annotations"].as_object().unwrap();
    assert!(!annotations.contains_key("owner"), "{annotations:?}");
    assert_eq!(v["spec"]["selector"], serde_json::json!({"app": "web"}));
    assert_eq!(v["spec"]["type"], "ClusterIP");
    assert_eq!(v["spec"]["sessionAffinity"], "None");
    assert_eq!(v["spec"]["externalIPs"], serde_json::json!(["192.0.2.12"]));
    assert!(v["spec"]["ports"][0].get("nodePort").is_none(), "{v}");
    assert_eq!(v["spec"]["clusterIP"], cluster_ip.as_str());
    let recorded: serde_json::Value =
        serde_json::from_str(annotations[LAST_APPLIED].as_str().unwrap()).unwrap();
    assert!(recorded["metadata"]["labels"].get("tier").is_none());

    // Applying the second manifest again changes nothing.
    let r = apply(&mut admin, SECOND).await.unwrap();
    assert_eq!(r.objects[0].action(), ApplyAction::Unchanged);
    cp.stop().await.unwrap();
}
