//! Root-only tests of pod management against the real kernel: a
//! `PodManager` with a recording fake data plane (`MemoryPortSink`), pods
//! in namespaces it creates and in namespaces it is given, restarts,
//! rollback of failed adds, idempotency and exhaustion.
//!
//! They fail (never skip) without root. Every namespace has a unique name
//! (with the pid) and is removed by a `Drop` guard, also when an assertion
//! fails. `ip -j` is the independent witness.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use serde_json::Value;
use weft_node_agent::kernel::netns::NetNs;
use weft_node_agent::kernel::tun::{create_pod_tun, PortSpec};
use weft_node_agent::pods::{AddPod, MemoryPortSink, PodError, PodManager, SinkEvent};

mod support;
use support::{ip_json, link_exists, require_root, unique_name};

/// Names of namespaces a test may create (itself or through the manager),
/// deleted on drop.
#[derive(Default)]
struct Namespaces(Vec<String>);

impl Namespaces {
    /// A fresh unique name, registered for cleanup.
    fn name(&mut self, tag: &str) -> String {
        let name = unique_name("wp", tag);
        self.0.push(name.clone());
        name
    }

    /// A namespace made by the test itself.
    fn create(&mut self, tag: &str) -> (String, NetNs) {
        let name = self.name(tag);
        let ns = NetNs::create_named(&name).expect("create test namespace");
        (name, ns)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in &self.0 {
            if ns_exists(name) {
                if let Err(e) = NetNs::delete_named(name) {
                    eprintln!("cleanup: {e}");
                }
            }
        }
    }
}

fn ns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

fn ns_path(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}

/// Checks with `ip` that `ifname` in `ns` has exactly the pod's address as
/// a /32, the MTU, and a default route out of it.
fn assert_pod_interface(ns: &str, ifname: &str, address: IpAddr, mtu: u64) {
    let link = &ip_json(ns, &["addr", "show", "dev", ifname])[0];
    assert_eq!(link["mtu"], mtu, "{link}");
    let flags = link["flags"].as_array().unwrap();
    assert!(flags.iter().any(|f| f == "UP"), "{link}");
    let v4: Vec<(String, u64)> = link["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["family"] == "inet")
        .map(|a| {
            (
                a["local"].as_str().unwrap().to_string(),
                a["prefixlen"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(v4, vec![(address.to_string(), 32)], "{link}");
    let routes = ip_json(ns, &["route", "show", "dev", ifname]);
    assert!(
        routes
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["dst"] == "default"),
        "no default route out of {ifname}: {routes}"
    );
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const MTU: u32 = 1400;

async fn manager(dir: &Path, cidr: &str, sink: &Arc<MemoryPortSink>) -> PodManager {
    let cidr: ipnet::IpNet = cidr.parse().unwrap();
    // The node address: the CIDR's first host address (network + 1).
    let node = match cidr.network() {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a) + 1).into()),
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) + 1).into()),
    };
    PodManager::open_with(dir, cidr, node, MTU, sink.clone())
        .await
        .expect("open the pod manager")
}

fn create(id: &str) -> AddPod {
    AddPod {
        id: id.into(),
        create_netns: true,
        ..AddPod::default()
    }
}

fn in_netns(id: &str, netns: &str, ifname: &str) -> AddPod {
    AddPod {
        id: id.into(),
        netns: Some(ns_path(netns)),
        ifname: Some(ifname.into()),
        ..AddPod::default()
    }
}

fn state_file(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("pods.json")).unwrap()).unwrap()
}

fn state_ids(dir: &Path) -> Vec<String> {
    state_file(dir)["pods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn created_namespace_pod_is_configured_and_del_removes_everything() {
    require_root();
    let mut names = Namespaces::default();
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(MemoryPortSink::new());
    let pods = manager(dir.path(), "10.77.0.0/24", &sink).await;

    let id = names.name("web");
    let pod = pods.add(create(&id)).await.expect("add pod");
    assert_eq!(pod.address, ip("10.77.0.2"));
    assert_eq!(pod.ifname, "eth0");
    assert_eq!(pod.netns, ns_path(&id));
    assert!(pod.created_netns && pod.attached);
    assert!(ns_exists(&id));
    assert_pod_interface(&id, "eth0", pod.address, MTU.into());
    assert_eq!(sink.attached(), vec![(id.clone(), vec![pod.address])]);
    assert_eq!(state_ids(dir.path()), vec![id.clone()]);
    assert_eq!(state_file(dir.path())["node_cidr"], "10.77.0.0/24");

    // A second pod gets the next address.
    let id2 = names.name("db");
    let pod2 = pods.add(create(&id2)).await.expect("add second pod");
    assert_eq!(pod2.address, ip("10.77.0.3"));
    assert_eq!(pods.list().await.len(), 2);

    let gone = pods.del(&id).await.expect("del").expect("it existed");
    assert_eq!(gone.address, pod.address);
    assert!(
        !ns_exists(&id),
        "the namespace the agent created is deleted"
    );
    assert!(sink.events().contains(&SinkEvent::Detach {
        id: id.clone(),
        found: true
    }));
    assert_eq!(state_ids(dir.path()), vec![id2.clone()]);
    // Idempotent.
    assert!(pods.del(&id).await.unwrap().is_none());

    // The freed address is the lowest free one again.
    let id3 = names.name("again");
    assert_eq!(
        pods.add(create(&id3)).await.unwrap().address,
        ip("10.77.0.2")
    );
    for id in [&id2, &id3] {
        pods.del(id).await.unwrap();
    }
    assert!(pods.list().await.is_empty());
    assert!(sink.attached().is_empty());
}

#[tokio::test]
async fn pod_in_an_existing_namespace_keeps_the_namespace_on_del() {
    require_root();
    let mut names = Namespaces::default();
    let (ns_name, _ns) = names.create("given");
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(MemoryPortSink::new());
    let pods = manager(dir.path(), "10.77.1.0/24", &sink).await;

    let mut req = in_netns("cni-abc/eth1", &ns_name, "eth1");
    req.pod_namespace = Some("default".into());
    req.pod_name = Some("web-1".into());
    let pod = pods.add(req).await.expect("add pod");
    assert_eq!(pod.address, ip("10.77.1.2"));
    assert!(!pod.created_netns);
    assert_eq!(pod.pod_name.as_deref(), Some("web-1"));
    assert_pod_interface(&ns_name, "eth1", pod.address, MTU.into());

    pods.del("cni-abc/eth1").await.unwrap().unwrap();
    assert!(!link_exists(&ns_name, "eth1"), "the pod's TUN is deleted");
    assert!(
        ns_exists(&ns_name),
        "a namespace the agent did not create stays"
    );

    // del after the namespace vanished is fine too.
    let pod = pods.add(in_netns("p2", &ns_name, "eth0")).await.unwrap();
    assert_eq!(pod.address, ip("10.77.1.2"));
    NetNs::delete_named(&ns_name).unwrap();
    assert!(pods.del("p2").await.unwrap().is_some());
    assert!(pods.list().await.is_empty());
}

#[tokio::test]
async fn a_restarted_manager_reattaches_and_drops_the_gone() {
    require_root();
    let mut names = Namespaces::default();
    let (ns_name, _ns) = names.create("keep");
    let dir = tempfile::tempdir().unwrap();
    let cidr = "10.77.2.0/24";
    let (a, b, c, d) = (
        names.name("a"),
        names.name("b"),
        names.name("c"),
        names.name("d"),
    );
    {
        let sink = Arc::new(MemoryPortSink::new());
        let pods = manager(dir.path(), cidr, &sink).await;
        for id in [&a, &b, &c] {
            pods.add(create(id)).await.unwrap();
        }
        pods.add(in_netns(&d, &ns_name, "eth0")).await.unwrap();
        // The agent stops: manager and data plane go, TUNs persist.
    }
    assert!(link_exists(&a, "eth0"));
    // While it is down, b's namespace and c's interface vanish.
    NetNs::delete_named(&b).unwrap();
    assert!(Command::new("ip")
        .args(["-n", &c, "link", "del", "eth0"])
        .status()
        .unwrap()
        .success());

    let sink = Arc::new(MemoryPortSink::new());
    let pods = manager(dir.path(), cidr, &sink).await;
    let list = pods.list().await;
    let kept: Vec<(String, IpAddr, bool)> = list
        .iter()
        .map(|p| (p.id.clone(), p.address, p.attached))
        .collect();
    assert_eq!(
        kept,
        vec![
            (a.clone(), ip("10.77.2.2"), true),
            (d.clone(), ip("10.77.2.5"), true),
        ]
    );
    assert_eq!(
        sink.attached(),
        vec![
            (a.clone(), vec![ip("10.77.2.2")]),
            (d.clone(), vec![ip("10.77.2.5")]),
        ]
    );
    assert_pod_interface(&a, "eth0", ip("10.77.2.2"), MTU.into());
    assert_pod_interface(&ns_name, "eth0", ip("10.77.2.5"), MTU.into());
    assert!(
        !ns_exists(&c),
        "a dropped pod's namespace the agent created is removed"
    );
    assert_eq!(state_ids(dir.path()), vec![a.clone(), d.clone()]);
    // The dropped pods' addresses are free again, lowest first.
    let e = names.name("e");
    assert_eq!(pods.add(create(&e)).await.unwrap().address, ip("10.77.2.3"));
    for id in [&a, &d, &e] {
        pods.del(id).await.unwrap();
    }
}

#[tokio::test]
async fn failed_adds_roll_back_completely() {
    require_root();
    let mut names = Namespaces::default();
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(MemoryPortSink::new());
    let pods = manager(dir.path(), "10.77.3.0/24", &sink).await;

    // A namespace path that does not exist: precise error, nothing left.
    let missing = names.name("missing");
    let err = pods
        .add(in_netns("p1", &missing, "eth0"))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("network namespace /run/netns/{missing} does not exist")
    );
    assert!(pods.list().await.is_empty());
    assert!(state_ids(dir.path()).is_empty() || !dir.path().join("pods.json").exists());

    // The data plane refuses: the TUN and the created namespace go again.
    sink.refuse_attach(Some("port table full"));
    let refused = names.name("refused");
    let err = pods.add(create(&refused)).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("attaching pod {refused} to the data plane: port table full")
    );
    assert!(!ns_exists(&refused), "the created namespace is rolled back");
    let (given, _ns) = names.create("given");
    let err = pods.add(in_netns("p2", &given, "eth0")).await.unwrap_err();
    assert!(matches!(err, PodError::Dataplane { .. }), "{err}");
    assert!(!link_exists(&given, "eth0"), "the TUN is rolled back");
    assert!(ns_exists(&given));
    sink.refuse_attach(None);
    assert!(pods.list().await.is_empty());
    assert!(state_ids(dir.path()).is_empty());

    // An interface of that name exists already: refused, and not ours to delete.
    let (busy, busy_ns) = names.create("busy");
    let _theirs = create_pod_tun(
        &busy_ns,
        &PortSpec::pod("eth0", vec!["192.0.2.9/32".parse().unwrap()], 1500),
    )
    .await
    .unwrap();
    let err = pods.add(in_netns("p3", &busy, "eth0")).await.unwrap_err();
    assert_eq!(err.to_string(), "network interface eth0 already exists");
    assert!(link_exists(&busy, "eth0"), "someone else's interface stays");

    // A namespace of the pod's name exists already: refused, and it stays.
    let (taken, _taken_ns) = names.create("taken");
    let err = pods.add(create(&taken)).await.unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    assert!(ns_exists(&taken));

    // Invalid requests never reach the kernel.
    let err = pods
        .add(AddPod {
            id: "bad id".into(),
            create_netns: true,
            ..AddPod::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, PodError::Invalid(_)), "{err}");
    let err = pods.add(create("a/b")).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("the agent names the network namespace it creates after the pod"),
        "{err}"
    );

    // No address was consumed by any of it.
    assert!(pods.list().await.is_empty());
    let ok = names.name("ok");
    assert_eq!(
        pods.add(create(&ok)).await.unwrap().address,
        ip("10.77.3.2")
    );
    pods.del(&ok).await.unwrap();
}

#[tokio::test]
async fn same_id_is_idempotent_when_identical_and_refused_otherwise() {
    require_root();
    let mut names = Namespaces::default();
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(MemoryPortSink::new());
    let pods = manager(dir.path(), "10.77.4.0/24", &sink).await;
    let id = names.name("idem");
    let first = pods.add(create(&id)).await.unwrap();
    let again = pods.add(create(&id)).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(pods.list().await.len(), 1);
    let attaches = sink
        .events()
        .iter()
        .filter(|e| matches!(e, SinkEvent::Attach { .. }))
        .count();
    assert_eq!(attaches, 1, "an identical add does nothing");

    let mut other = create(&id);
    other.ifname = Some("eth1".into());
    let err = pods.add(other).await.unwrap_err();
    assert!(matches!(err, PodError::AlreadyExists(_)), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "pod {id} already exists (10.77.4.2 on eth0 in /run/netns/{id}); delete it first to change it"
        )
    );

    // Another id for the same interface is refused before the kernel is asked.
    let err = pods
        .add(AddPod {
            id: "other".into(),
            netns: Some(ns_path(&id)),
            ..AddPod::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("interface eth0 in /run/netns/{id} belongs to pod {id} already")
    );
    pods.del(&id).await.unwrap();
}

#[tokio::test]
async fn exhaustion_names_the_cidr_and_del_frees() {
    require_root();
    let mut names = Namespaces::default();
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(MemoryPortSink::new());
    // A /30: .0 network, .1 node, .3 broadcast: room for one pod.
    let pods = manager(dir.path(), "10.77.5.0/30", &sink).await;
    let (one, two) = (names.name("one"), names.name("two"));
    assert_eq!(
        pods.add(create(&one)).await.unwrap().address,
        ip("10.77.5.2")
    );
    let err = pods.add(create(&two)).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "no free address in node CIDR 10.77.5.0/30: all 1 pod addresses are in use"
    );
    assert!(!ns_exists(&two), "nothing was created for the refused pod");
    pods.del(&one).await.unwrap();
    assert_eq!(
        pods.add(create(&two)).await.unwrap().address,
        ip("10.77.5.2")
    );
    pods.del(&two).await.unwrap();
}

#[tokio::test]
async fn a_corrupt_state_file_stops_the_manager_with_its_path() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pods.json"), b"{\"version\":1,").unwrap();
    let sink = Arc::new(MemoryPortSink::new());
    let err = PodManager::open_with(
        dir.path(),
        "10.77.6.0/24".parse().unwrap(),
        ip("10.77.6.1"),
        MTU,
        sink,
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "pod state {}: not valid pod state JSON",
            dir.path().join("pods.json").display()
        )),
        "{msg}"
    );
    assert!(msg.ends_with("move it away to start with no pods"), "{msg}");
}

#[tokio::test]
async fn ipv6_pods_get_a_slash_128_and_a_default_route() {
    require_root();
    let mut names = Namespaces::default();
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(MemoryPortSink::new());
    let pods = manager(dir.path(), "fd00:77:7::/64", &sink).await;
    let id = names.name("v6");
    let pod = pods.add(create(&id)).await.unwrap();
    assert_eq!(pod.address, ip("fd00:77:7::2"));
    let link = &ip_json(&id, &["-6", "addr", "show", "dev", "eth0"])[0];
    let globals: Vec<(String, u64)> = link["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["scope"] == "global")
        .map(|a| {
            (
                a["local"].as_str().unwrap().to_string(),
                a["prefixlen"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(globals, vec![("fd00:77:7::2".to_string(), 128)], "{link}");
    let routes = ip_json(&id, &["-6", "route", "show", "dev", "eth0"]);
    assert!(
        routes
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["dst"] == "default"),
        "{routes}"
    );
    pods.del(&id).await.unwrap().unwrap();
    assert!(!ns_exists(&id));
}

#[tokio::test]
async fn restart_with_the_data_plane_down_keeps_pods_and_a_new_cidr_drops_them() {
    require_root();
    let mut names = Namespaces::default();
    let dir = tempfile::tempdir().unwrap();
    let id = names.name("keep");
    {
        let sink = Arc::new(MemoryPortSink::new());
        let pods = manager(dir.path(), "10.77.7.0/24", &sink).await;
        pods.add(create(&id)).await.unwrap();
    }
    // The data plane refuses at start: the pod stays, detached, with its
    // address; an identical add attaches it again.
    let sink = Arc::new(MemoryPortSink::new());
    sink.refuse_attach(Some("not running"));
    let pods = manager(dir.path(), "10.77.7.0/24", &sink).await;
    let list = pods.list().await;
    assert_eq!(list.len(), 1);
    assert!(!list[0].attached);
    assert_eq!(list[0].address, ip("10.77.7.2"));
    assert!(link_exists(&id, "eth0"), "the interface is left alone");
    sink.refuse_attach(None);
    let again = pods.add(create(&id)).await.unwrap();
    assert!(again.attached);
    assert_eq!(again.address, ip("10.77.7.2"));
    assert_eq!(sink.attached().len(), 1);
    drop(pods);

    // The node got another CIDR: the pod's address is not ours any more.
    let sink = Arc::new(MemoryPortSink::new());
    let pods = manager(dir.path(), "10.77.8.0/24", &sink).await;
    assert!(pods.list().await.is_empty());
    assert!(
        !ns_exists(&id),
        "the dropped pod's created namespace is removed"
    );
    assert_eq!(state_file(dir.path())["node_cidr"], "10.77.8.0/24");
    assert!(state_ids(dir.path()).is_empty());
}
