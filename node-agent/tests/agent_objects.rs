//! The cluster's objects on an agent, against a real control plane over
//! TLS: the watch delivers namespaces, pods, Services and EndpointSlices
//! into the agent's cluster view; the agent registers its pods (labels,
//! named ports, address, node), unregisters them, and re-syncs them after
//! the control plane comes back; an agent restarted while the control plane
//! is down serves the objects it persisted; after the control plane is back
//! the watch resumes and the view follows again.

mod agent_support;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use agent_support::*;
use futures::future::BoxFuture;
use tokio::sync::watch;
use weft_agent_api::{NamedPort, RegistrationState};
use weft_node_agent::cluster::Membership;
use weft_node_agent::pods::PodRecord;
use weft_node_agent::registration::{self, PodSource, RegistrationStatus, RegistrationTiming};
use weft_node_agent::view::{ObjectKey, ViewSnapshot};
use weft_proto::v1::{ApplyRequest, DeleteObjectsRequest, GetObjectsRequest, ObjectRef};

/// The node's pods, set by the test.
struct FakePods {
    pods: Mutex<Vec<PodRecord>>,
    changes: watch::Sender<u64>,
}

impl FakePods {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            pods: Mutex::new(Vec::new()),
            changes: watch::channel(0).0,
        })
    }

    fn set(&self, pods: Vec<PodRecord>) {
        *self.pods.lock().unwrap() = pods;
        self.changes.send_modify(|n| *n += 1);
    }
}

impl PodSource for FakePods {
    fn pods(&self) -> BoxFuture<'_, Vec<PodRecord>> {
        let pods = self.pods.lock().unwrap().clone();
        Box::pin(async move { pods })
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

fn pod(
    ns: &str,
    name: &str,
    address: IpAddr,
    labels: &[(&str, &str)],
    ports: &[&str],
) -> PodRecord {
    PodRecord {
        id: format!("{ns}.{name}"),
        netns: PathBuf::from(format!("/run/netns/{name}")),
        ifname: "eth0".into(),
        address,
        created_netns: true,
        pod_namespace: Some(ns.into()),
        pod_name: Some(name.into()),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        ports: ports.iter().map(|p| NamedPort::parse(p).unwrap()).collect(),
        created_unix: 1,
        attached: true,
    }
}

/// The `n`-th pod address of the core's node.
fn pod_ip(core: &Membership, n: u32) -> IpAddr {
    let cidr = core.node().pod_cidr;
    match cidr.network() {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a) + 1 + n).into()),
        IpAddr::V6(_) => panic!("IPv4 cluster expected"),
    }
}

/// Runs the registration task for `core` over `pods` until dropped.
struct Registrar {
    status: Arc<RegistrationStatus>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Registrar {
    fn start(core: &Membership, pods: Arc<FakePods>) -> Self {
        let status = Arc::new(RegistrationStatus::new());
        let (stop, rx) = watch::channel(false);
        let timing = RegistrationTiming {
            initial: std::time::Duration::from_millis(50),
            max: std::time::Duration::from_millis(500),
            rpc_timeout: std::time::Duration::from_secs(3),
        };
        let task = tokio::spawn(registration::run(
            core.clone(),
            pods,
            status.clone(),
            timing,
            rx,
        ));
        Self { status, stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("registrar stops in time")
            .expect("registrar task");
    }
}

async fn apply(cp: &weft_control_plane::server::Running, yaml: &str) {
    admin(cp)
        .await
        .apply(ApplyRequest {
            documents: vec![yaml.as_bytes().to_vec().into()],
            ..ApplyRequest::default()
        })
        .await
        .expect("apply");
}

async fn cp_pods(cp: &weft_control_plane::server::Running) -> Vec<String> {
    admin(cp)
        .await
        .get_objects(GetObjectsRequest {
            kind: "pods".into(),
            all_namespaces: true,
            ..GetObjectsRequest::default()
        })
        .await
        .expect("get pods")
        .into_inner()
        .objects
        .iter()
        .map(|o| format!("{}/{}", o.namespace, o.name))
        .collect()
}

/// The addresses and ports of the EndpointSlices of `ns/service`.
fn endpoints(view: &ViewSnapshot, ns: &str, service: &str) -> Vec<(String, i32)> {
    let mut out = Vec::new();
    for slice in view.slices_of(ns, service) {
        let port = slice.ports.first().and_then(|p| p.port).unwrap_or(0);
        for e in &slice.endpoints {
            for a in &e.addresses {
                out.push((a.clone(), port));
            }
        }
    }
    out.sort();
    out
}

const SHOP: &str = "\
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: http
";

#[tokio::test]
async fn the_watch_fills_the_view_and_a_restart_without_the_control_plane_serves_it() {
    let cp_dir = tempfile::tempdir().unwrap();
    let cp = start_cp(cp_dir.path()).await;
    let (token, hash) = token(&cp).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = core_config(cp.addr, dir.path(), "node-a", Some((&token, &hash)));
    let running = RunningCore::boot(cfg.clone()).await;
    let core = running.core.clone();

    // The snapshot brings the namespaces every cluster has.
    eventually("the default namespaces in the view", || {
        let v = core.cluster_view();
        async move { v.namespaces.contains_key("default") && v.namespaces.contains_key("kube-system") }
    })
    .await;
    let mut changes = core.view().subscribe();
    changes.borrow_and_update();

    // A Service, then a pod of this node that it selects: the pod is
    // registered (labels, named port, address, node), and the derived
    // EndpointSlice reaches the view with the pod's address and port.
    apply(&cp, SHOP).await;
    let pods = FakePods::new();
    let registrar = Registrar::start(&core, pods.clone());
    let web1 = pod_ip(&core, 1);
    pods.set(vec![pod(
        "shop",
        "web-1",
        web1,
        &[("app", "web")],
        &["http=8080/TCP"],
    )]);
    eventually("the pod's endpoint in the view", || {
        let v = core.cluster_view();
        async move { endpoints(&v, "shop", "web") == [(web1.to_string(), 8080)] }
    })
    .await;
    assert!(
        changes.has_changed().unwrap(),
        "the view notified its change"
    );
    let view = core.cluster_view();
    let service = view.service("shop", "web").expect("the service");
    assert!(
        !service.spec.cluster_ip.is_empty(),
        "a ClusterIP was allocated"
    );
    let p = &view.pods[&ObjectKey::new("shop", "web-1")];
    assert_eq!(p.spec.node_name, "node-a");
    assert_eq!(p.metadata.labels["app"], "web");
    assert_eq!(p.status.pod_ip, web1.to_string());
    assert!(p.is_ready());
    assert_eq!(p.spec.containers[0].ports[0].name, "http");
    eventually("the registration reported", || {
        let s = registrar.status.of("shop", "web-1");
        async move { s.is_some_and(|s| s.state == RegistrationState::Registered) }
    })
    .await;
    assert_eq!(registrar.status.summary().registered, 1);
    let info = view.info();
    assert!(
        info.namespaces >= 3 && info.pods == 1 && info.services >= 1 && info.endpoint_slices == 1,
        "{info:?}"
    );

    // Stop everything; the agent starts again while the control plane is
    // down: the objects are there before any contact.
    registrar.stop().await;
    let before = core.cluster_view();
    running.stop().await;
    let addr = cp.addr;
    cp.stop().await.expect("control plane stops");
    let restarted = RunningCore::boot(cfg.clone()).await;
    let again = restarted.core.cluster_view();
    assert!(again.version > 0);
    assert_eq!(again.revision, before.revision.max(again.revision));
    assert_eq!(again.pods, before.pods, "the same pods");
    assert_eq!(again.services, before.services, "the same services");
    assert_eq!(
        endpoints(&again, "shop", "web"),
        [(web1.to_string(), 8080)],
        "the same endpoints, without a control plane"
    );
    // And it keeps serving them while the control plane stays away.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(restarted.core.cluster_view().services, before.services);
    assert!(!restarted.core.status().connected);

    // The control plane comes back: the watch resumes and the view follows
    // a change made after it.
    let cp = respawn_cp(addr, cp_dir.path()).await;
    eventually("the watch connected again", || {
        let c = restarted.core.status().connected;
        async move { c }
    })
    .await;
    admin(&cp)
        .await
        .delete_objects(DeleteObjectsRequest {
            objects: vec![ObjectRef {
                kind: "svc".into(),
                namespace: "shop".into(),
                name: "web".into(),
            }],
            ..DeleteObjectsRequest::default()
        })
        .await
        .expect("delete the service");
    let core = restarted.core.clone();
    eventually("the service and its slice gone from the view", || {
        let v = core.cluster_view();
        async move { v.service("shop", "web").is_none() && v.slices_of("shop", "web").count() == 0 }
    })
    .await;
    // The pod is still there: nothing removed it.
    assert!(core
        .cluster_view()
        .pods
        .contains_key(&ObjectKey::new("shop", "web-1")));
    restarted.stop().await;
    cp.stop().await.expect("control plane stops");
}

#[tokio::test]
async fn pods_are_unregistered_and_resynced_after_an_outage() {
    let cp_dir = tempfile::tempdir().unwrap();
    let cp = start_cp(cp_dir.path()).await;
    let (token, hash) = token(&cp).await;
    let dir = tempfile::tempdir().unwrap();
    let running = RunningCore::boot(core_config(
        cp.addr,
        dir.path(),
        "node-b",
        Some((&token, &hash)),
    ))
    .await;
    let core = running.core.clone();
    let pods = FakePods::new();
    let registrar = Registrar::start(&core, pods.clone());
    let (a, b, c) = (pod_ip(&core, 1), pod_ip(&core, 2), pod_ip(&core, 3));

    pods.set(vec![
        pod("shop", "a", a, &[("app", "a")], &[]),
        pod("default", "b", b, &[], &["metrics=9100"]),
    ]);
    eventually("both pods registered", || {
        let cp = &cp;
        async move { cp_pods(cp).await == ["default/b", "shop/a"] }
    })
    .await;
    // A pod without a Kubernetes name is not registered; a deleted one is
    // unregistered.
    let mut local = pod("x", "y", c, &[], &[]);
    local.pod_name = None;
    pods.set(vec![pod("default", "b", b, &[], &["metrics=9100"]), local]);
    eventually("a unregistered", || {
        let cp = &cp;
        async move { cp_pods(cp).await == ["default/b"] }
    })
    .await;

    // The control plane goes down; meanwhile b goes and c comes: the
    // calls fail, the pod says why, its network is not concerned.
    let addr = cp.addr;
    cp.stop().await.expect("control plane stops");
    pods.set(vec![pod("shop", "c", c, &[("app", "c")], &[])]);
    eventually("c failing to register", || {
        let s = registrar.status.of("shop", "c");
        async move { s.is_some_and(|s| s.state == RegistrationState::Failed && s.error.is_some()) }
    })
    .await;
    let summary = registrar.status.summary();
    assert!(
        summary.failed >= 1 && !summary.problems.is_empty(),
        "{summary:?}"
    );

    // It comes back: the watch reconnects, the whole set is synced.
    let cp = respawn_cp(addr, cp_dir.path()).await;
    eventually("exactly c registered after the sync", || {
        let cp = &cp;
        async move { cp_pods(cp).await == ["shop/c"] }
    })
    .await;
    eventually("the status says so", || {
        let s = registrar.status.summary();
        async move { s.registered == 1 && s.failed == 0 && s.pending == 0 && s.last_sync_unix.is_some() }
    })
    .await;
    registrar.stop().await;
    running.stop().await;
    cp.stop().await.expect("control plane stops");
}
