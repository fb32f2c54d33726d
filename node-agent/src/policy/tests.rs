//! The node's policy compile from a snapshot, and the denial log line.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use weft_objects::{Namespace, NetworkPolicy, Pod};
use weft_switch::policy::{Direction, Verdict};
use weft_switch::Denial;

use super::{compile_table, denial_line};
use crate::view::{ObjectKey, ViewSnapshot};

fn pod(ns: &str, name: &str, node: &str, ip: &str, app: &str) -> Pod {
    let mut p = Pod::new(ns, name);
    p.metadata.labels = BTreeMap::from([("app".to_string(), app.to_string())]);
    p.spec.node_name = node.into();
    p.status.pod_ip = ip.into();
    p
}

fn snapshot(pods: Vec<Pod>, policies: Vec<NetworkPolicy>) -> ViewSnapshot {
    ViewSnapshot {
        version: 1,
        namespaces: Arc::new([("shop".to_string(), Arc::new(Namespace::new("shop")))].into()),
        pods: Arc::new(
            pods.into_iter()
                .map(|p| {
                    (
                        ObjectKey::new(&p.metadata.namespace, &p.metadata.name),
                        Arc::new(p),
                    )
                })
                .collect(),
        ),
        network_policies: Arc::new(
            policies
                .into_iter()
                .map(|p| {
                    (
                        ObjectKey::new(&p.metadata.namespace, &p.metadata.name),
                        Arc::new(p),
                    )
                })
                .collect(),
        ),
        ..ViewSnapshot::default()
    }
}

fn db_policy() -> NetworkPolicy {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "db", "namespace": "shop"},
        "spec": {
            "podSelector": {"matchLabels": {"app": "db"}},
            "ingress": [{
                "from": [{"podSelector": {"matchLabels": {"app": "web"}}}],
                "ports": [{"port": 5432}]
            }]
        }
    }))
    .unwrap()
}

#[test]
fn each_node_compiles_its_own_pods_only() {
    let view = snapshot(
        vec![
            pod("shop", "web", "n1", "10.244.1.5", "web"),
            pod("shop", "db", "n2", "10.244.2.5", "db"),
        ],
        vec![db_policy()],
    );
    let (web, db) = ("10.244.1.5".parse().unwrap(), "10.244.2.5".parse().unwrap());
    let n2 = compile_table(&view, "n2");
    assert!(n2.isolated(Direction::Ingress, db));
    assert!(n2.evaluate(Direction::Ingress, db, web, 6, 5432).allows());
    assert!(matches!(
        n2.evaluate(Direction::Ingress, db, web, 6, 80),
        Verdict::Denied { .. }
    ));
    let n1 = compile_table(&view, "n1");
    assert_eq!(n1.sizes(), (0, 0), "no policy selects a pod of n1");
}

#[test]
fn a_denial_names_both_pods_and_the_policy() {
    let names = HashMap::from([
        ("10.244.1.5".parse().unwrap(), "shop/web".to_string()),
        ("10.244.2.5".parse().unwrap(), "shop/db".to_string()),
    ]);
    let d = Denial {
        src: "10.244.1.5".parse().unwrap(),
        dst: "10.244.2.5".parse().unwrap(),
        proto: 6,
        port: 80,
        direction: Direction::Ingress,
        policy: "shop/db".into(),
    };
    assert_eq!(
        denial_line(&d, &names),
        "NetworkPolicy denied shop/web (10.244.1.5) -> shop/db (10.244.2.5) 80/TCP: \
         ingress of shop/db isolated by shop/db, no rule allows it"
    );
    let outside = Denial {
        dst: "192.0.2.9".parse().unwrap(),
        proto: 17,
        port: 53,
        direction: Direction::Egress,
        ..d
    };
    assert_eq!(
        denial_line(&outside, &names),
        "NetworkPolicy denied shop/web (10.244.1.5) -> 192.0.2.9 53/UDP: \
         egress of shop/web isolated by shop/db, no rule allows it"
    );
}
