//! Objects against both real stores (the embedded redb file and an etcd
//! the test starts on loopback): allocation under random create / update /
//! delete / restart sequences (no value handed out twice, none leaked),
//! requested values honoured or refused, exhaustion worded as Kubernetes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use clap::Parser;
use proptest::prelude::*;
use weft_objects::{Kind, Object};

use super::alloc::{self, Value};
use super::{keys, Objects};
use crate::config::{Config, Settings};
use crate::store::etcd::local::LocalEtcd;
use crate::store::etcd::{EtcdOptions, EtcdStore};
use crate::store::redb::RedbStore;
use crate::store::Store;

fn settings(extra: &[&str]) -> Settings {
    let mut args = vec!["weft-control-plane"];
    args.extend_from_slice(extra);
    Config::try_parse_from(args).unwrap().validate().unwrap()
}

/// A small cluster: 14 ClusterIPs (2 reserved), 10 node ports.
fn small() -> Settings {
    settings(&[
        "--service-cidr",
        "10.96.0.0/28",
        "--cluster-dns",
        "10.96.0.10",
        "--service-node-port-range",
        "30000-30009",
    ])
}

/// Where a test's objects live; opening it again is a control-plane restart.
enum Backend {
    Redb(tempfile::TempDir),
    /// A prefix of its own on a shared test etcd.
    Etcd(EtcdOptions),
}

impl Backend {
    fn redb() -> Backend {
        Backend::Redb(tempfile::tempdir().unwrap())
    }

    fn etcd(etcd: &LocalEtcd, prefix: &str) -> Backend {
        let mut o = etcd.options();
        o.prefix = prefix.to_string();
        Backend::Etcd(o)
    }

    async fn open(&self, s: &Settings) -> Objects {
        let store: Arc<dyn Store> = match self {
            Backend::Redb(dir) => {
                Arc::new(RedbStore::open(&dir.path().join("state.redb")).unwrap())
            }
            Backend::Etcd(o) => Arc::new(EtcdStore::connect(o.clone()).await.unwrap()),
        };
        let objects = Objects::new(store, s);
        objects.ensure_system_namespaces().await.unwrap();
        objects
    }
}

#[derive(Debug, Clone)]
enum Step {
    /// Create or update service `n` with a type and maybe a requested
    /// ClusterIP / node port.
    Apply {
        n: u8,
        kind: u8,
        ip: Option<u8>,
        node_port: Option<u16>,
    },
    Delete(u8),
    Restart,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0u8..8, 0u8..5, proptest::option::of(0u8..16), proptest::option::of(29998u16..30012))
            .prop_map(|(n, kind, ip, node_port)| Step::Apply { n, kind, ip, node_port }),
        3 => (0u8..8).prop_map(Step::Delete),
        1 => Just(Step::Restart),
    ]
}

fn manifest(n: u8, kind: u8, ip: Option<u8>, node_port: Option<u16>) -> String {
    let ty = [
        "ClusterIP",
        "NodePort",
        "LoadBalancer",
        "ExternalName",
        "ClusterIP",
    ][kind as usize];
    let mut spec = serde_json::json!({
        "type": ty,
        "ports": [{"name": "a", "port": 80, "protocol": "TCP"}, {"name": "b", "port": 80, "protocol": "UDP"}],
        "selector": {"app": "x"},
    });
    if ty == "ExternalName" {
        spec["externalName"] = "example.com".into();
    } else if kind == 4 {
        spec["clusterIP"] = "None".into();
        spec["type"] = "ClusterIP".into();
    } else if let Some(ip) = ip {
        spec["clusterIP"] = format!("10.96.0.{ip}").into();
    }
    if let (Some(np), "NodePort" | "LoadBalancer") = (node_port, ty) {
        spec["ports"][0]["nodePort"] = np.into();
        spec["externalTrafficPolicy"] = "Local".into();
    }
    serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": format!("s{n}"), "namespace": "default"},
        "spec": spec,
    })
    .to_string()
}

/// Every invariant: allocation keys are exactly the values the stored
/// Services hold, each held by one Service, owned by it.
async fn check(objects: &Objects) {
    let store = objects.store();
    let (services, _) = objects
        .list_typed(&keys::kind_prefix(Kind::Service))
        .await
        .unwrap();
    let mut held: BTreeMap<Value, String> = BTreeMap::new();
    for (obj, _) in &services {
        let Object::Service(svc) = obj else { panic!() };
        let owner = format!("default/{}", svc.metadata.name);
        for v in alloc::held(svc) {
            if let Some(other) = held.insert(v, owner.clone()) {
                assert_eq!(other, owner, "{v:?} held by {other} and {owner}");
            }
        }
        if svc.service_type() != weft_objects::values::ServiceType::ExternalName
            && !svc.is_headless()
        {
            let ip: std::net::IpAddr = svc.spec.cluster_ip.parse().unwrap();
            assert_ne!(ip.to_string(), "10.96.0.1", "reserved");
            assert_ne!(ip.to_string(), "10.96.0.10", "reserved");
        }
    }
    let mut keys_found: BTreeMap<Value, String> = BTreeMap::new();
    for prefix in [alloc::CLUSTER_IP_PREFIX, alloc::NODE_PORT_PREFIX] {
        for kv in store.range(prefix).await.unwrap().0 {
            let v = Value::from_key(&kv.key).unwrap();
            keys_found.insert(v, String::from_utf8(kv.value).unwrap());
        }
    }
    assert_eq!(
        keys_found, held,
        "allocation keys vs values held by Services"
    );
}

async fn run_steps(backend: &Backend, steps: Vec<Step>) {
    let s = small();
    let mut objects = backend.open(&s).await;
    for st in steps {
        match st {
            Step::Apply {
                n,
                kind,
                ip,
                node_port,
            } => {
                let doc = Bytes::from(manifest(n, kind, ip, node_port));
                // Refusals (taken, exhausted, immutable) are fine; the
                // invariants must hold either way.
                let _ = objects.apply(&[doc], "", false).await;
            }
            Step::Delete(n) => {
                let t =
                    super::delete::Target::new(Kind::Service, "default", &format!("s{n}")).unwrap();
                let _ = objects.delete(&[t], true, false).await;
            }
            Step::Restart => {
                drop(objects);
                objects = backend.open(&s).await;
            }
        }
        check(&objects).await;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn allocation_never_duplicates_nor_leaks_on_redb(steps in proptest::collection::vec(step(), 1..30)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run_steps(&Backend::redb(), steps));
    }
}

#[test]
fn allocation_never_duplicates_nor_leaks_on_etcd() {
    use proptest::test_runner::{Config as RunnerConfig, TestRunner};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let etcd = rt.block_on(LocalEtcd::start(1)).unwrap();
    let mut runner = TestRunner::new(RunnerConfig {
        cases: 12,
        ..RunnerConfig::default()
    });
    let case = std::sync::atomic::AtomicUsize::new(0);
    let result = runner.run(&proptest::collection::vec(step(), 1..30), |steps| {
        // A prefix per case: each starts from an empty cluster.
        let n = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        rt.block_on(run_steps(
            &Backend::etcd(&etcd, &format!("/weft/alloc-{n}/")),
            steps,
        ));
        Ok(())
    });
    drop(etcd);
    result.unwrap();
}

async fn requested_values_are_honoured_then_refused_when_taken(backend: Backend) {
    let objects = backend.open(&settings(&[])).await;
    let doc = |name: &str, ip: &str, np: u16| {
        Bytes::from(
            serde_json::json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name},
                "spec": {"type": "NodePort", "clusterIP": ip,
                         "ports": [{"port": 80, "nodePort": np}]},
            })
            .to_string(),
        )
    };
    let (out, _) = objects
        .apply(&[doc("a", "10.96.0.50", 30080)], "", false)
        .await
        .unwrap();
    let Object::Service(a) = &out[0].object else {
        panic!()
    };
    assert_eq!(a.spec.cluster_ip, "10.96.0.50");
    assert_eq!(a.spec.ports[0].node_port, 30080);

    let err = objects
        .apply(&[doc("b", "10.96.0.50", 30081)], "", false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains(
        r#"spec.clusterIPs: Invalid value: ["10.96.0.50"]: failed to allocate IP 10.96.0.50: provided IP is already allocated"#
    ), "{err}");
    let err = objects
        .apply(&[doc("b", "10.96.0.51", 30080)], "", false)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(
            "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
        ),
        "{err}"
    );
    for reserved in ["10.96.0.1", "10.96.0.10"] {
        let err = objects
            .apply(&[doc("b", reserved, 30081)], "", false)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("provided IP is already allocated"),
            "{err}"
        );
    }
    let err = objects
        .apply(&[doc("b", "10.200.0.1", 30081)], "", false)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("is not in the valid range"),
        "{err}"
    );
    // Nothing of b was stored, and a's values are freed with a.
    assert!(objects
        .get_typed(Kind::Service, "default", "b")
        .await
        .unwrap()
        .is_none());
    let t = super::delete::Target::new(Kind::Service, "default", "a").unwrap();
    objects.delete(&[t], false, false).await.unwrap();
    objects
        .apply(&[doc("b", "10.96.0.50", 30080)], "", false)
        .await
        .unwrap();
}

async fn dynamic_values_avoid_the_static_band_and_exhaustion_is_worded(backend: Backend) {
    let objects = backend.open(&small()).await;
    let mut ips = BTreeSet::new();
    for i in 0..12 {
        let doc = Bytes::from(format!(
            r#"{{"apiVersion":"v1","kind":"Service","metadata":{{"name":"s{i}"}},"spec":{{"ports":[{{"port":80}}]}}}}"#
        ));
        let (out, _) = objects.apply(&[doc], "", false).await.unwrap();
        let Object::Service(s) = &out[0].object else {
            panic!()
        };
        assert!(ips.insert(s.spec.cluster_ip.clone()));
    }
    let doc = Bytes::from(
        r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"full"},"spec":{"ports":[{"port":80}]}}"#,
    );
    let err = objects.apply(&[doc], "", false).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "Internal error occurred: failed to allocate a serviceIP: range is full"
    );
    assert!(matches!(err, crate::registry::RegistryError::Exhausted(_)));
}

#[tokio::test]
async fn requested_values_on_redb() {
    requested_values_are_honoured_then_refused_when_taken(Backend::redb()).await;
}

#[tokio::test]
async fn exhaustion_on_redb() {
    dynamic_values_avoid_the_static_band_and_exhaustion_is_worded(Backend::redb()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requested_values_and_exhaustion_on_etcd() {
    let etcd = LocalEtcd::start(1).await.unwrap();
    requested_values_are_honoured_then_refused_when_taken(Backend::etcd(&etcd, "/weft/a/")).await;
    dynamic_values_avoid_the_static_band_and_exhaustion_is_worded(Backend::etcd(&etcd, "/weft/b/"))
        .await;
}

/// A namespace larger than one etcd transaction is deleted in several:
/// marked Terminating first (no new content), then emptied, then removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_larger_than_a_transaction_is_deleted_in_parts() {
    let etcd = LocalEtcd::start(1).await.unwrap();
    let objects = Backend::etcd(&etcd, "/weft/big/")
        .open(&settings(&[]))
        .await;
    objects
        .apply(
            &[Bytes::from(
                "apiVersion: v1\nkind: Namespace\nmetadata: {name: big}\n",
            )],
            "",
            false,
        )
        .await
        .unwrap();
    for group in 0..3 {
        let docs: Vec<Bytes> = (0..50)
            .map(|i| {
                Bytes::from(format!(
                    "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p{group}-{i}, namespace: big}}\nspec: {{podSelector: {{}}}}\n"
                ))
            })
            .collect();
        objects.apply(&docs, "", false).await.unwrap();
    }
    let prefix = keys::namespace_prefix(Kind::NetworkPolicy, "big");
    assert_eq!(objects.store().range(&prefix).await.unwrap().0.len(), 150);
    let t = super::delete::Target::new(Kind::Namespace, "", "big").unwrap();
    objects.delete(&[t], false, false).await.unwrap();
    assert!(objects.store().range(&prefix).await.unwrap().0.is_empty());
    assert!(objects
        .get_typed(Kind::Namespace, "", "big")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn nothing_new_is_created_in_a_terminating_namespace() {
    let backend = Backend::redb();
    let objects = backend.open(&settings(&[])).await;
    let ns = Bytes::from("apiVersion: v1\nkind: Namespace\nmetadata: {name: going}\n");
    let svc = |name: &str| {
        Bytes::from(format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: going}}\nspec:\n  ports: [{{port: 80}}]\n"
        ))
    };
    objects.apply(&[ns, svc("old")], "", false).await.unwrap();
    // Mark it as a deletion in parts does.
    let (mut obj, kv) = objects
        .get_typed(Kind::Namespace, "", "going")
        .await
        .unwrap()
        .unwrap();
    let Object::Namespace(n) = &mut obj else {
        panic!()
    };
    n.status.phase = Some(weft_objects::values::NamespacePhase::Terminating);
    let mut w = super::Writes::default();
    w.put(&kv.key, super::codec::encode(&obj).unwrap());
    objects.store().txn(w.into_txn()).await.unwrap();

    let err = objects.apply(&[svc("new")], "", false).await.unwrap_err();
    assert!(matches!(
        err,
        crate::registry::RegistryError::FailedPrecondition(_)
    ));
    assert_eq!(
        err.to_string(),
        r#"services "new" is forbidden: unable to create new content in namespace going because it is being terminated"#
    );
    // Updates of what is there are still allowed, as in Kubernetes.
    let updated = String::from_utf8(svc("old").to_vec())
        .unwrap()
        .replace("port: 80", "port: 81");
    let (out, _) = objects
        .apply(&[Bytes::from(updated)], "", false)
        .await
        .unwrap();
    assert_eq!(out[0].action, super::Action::Configured);
}
