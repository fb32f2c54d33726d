//! Root-only: many add/del cycles of pods leak nothing: no TUN, no
//! namespace, no file descriptor, no address. In its own test binary, so
//! no other test's fds disturb the count.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use weft_node_agent::kernel::netns::NetNs;
use weft_node_agent::pods::{AddPod, MemoryPortSink, PodManager};

const CYCLES: usize = 50;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// The fd count once it settles (netlink driver threads close their
/// sockets just after their last handle is dropped).
async fn settled_fds(target: usize) -> usize {
    let mut n = open_fds();
    for _ in 0..100 {
        if n <= target {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        n = open_fds();
    }
    n
}

struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for name in &self.0 {
            if Path::new("/run/netns").join(name).exists() {
                let _ = NetNs::delete_named(name);
            }
        }
    }
}

#[tokio::test]
async fn fifty_add_del_cycles_leak_nothing() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "pod tests need root (CAP_NET_ADMIN + CAP_SYS_ADMIN); CI runs them as root"
    );
    let pid = std::process::id();
    let given = format!("wpc{pid}-given");
    let mut cleanup = Cleanup(vec![given.clone()]);
    let given_ns = NetNs::create_named(&given).unwrap();
    let created: Vec<String> = (0..=CYCLES).map(|i| format!("wpc{pid}-{i}")).collect();
    cleanup.0.extend(created.iter().cloned());

    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(MemoryPortSink::new());
    let pods = PodManager::open_with(
        dir.path(),
        "10.78.0.0/24".parse().unwrap(),
        "10.78.0.1".parse().unwrap(),
        1420,
        sink.clone(),
    )
    .await
    .unwrap();

    let cycle = |i: usize| {
        let pods = &pods;
        let (id, given) = (created[i].clone(), given.clone());
        async move {
            // A pod in a namespace the agent creates, and one in a given one,
            // alive at the same time.
            let a = pods
                .add(AddPod {
                    id: id.clone(),
                    create_netns: true,
                    ..AddPod::default()
                })
                .await
                .unwrap();
            let b = pods
                .add(AddPod {
                    id: format!("given-{i}"),
                    netns: Some(Path::new("/run/netns").join(&given)),
                    ..AddPod::default()
                })
                .await
                .unwrap();
            assert_eq!(a.address.to_string(), "10.78.0.2", "cycle {i}");
            assert_eq!(b.address.to_string(), "10.78.0.3", "cycle {i}");
            pods.del(&id).await.unwrap().unwrap();
            pods.del(&format!("given-{i}")).await.unwrap().unwrap();
        }
    };

    // One warm-up cycle: lazily created runtime parts are not leaks.
    cycle(CYCLES).await;
    let before = settled_fds(0).await;
    for i in 0..CYCLES {
        cycle(i).await;
    }
    let after = settled_fds(before).await;
    eprintln!("fds {before} -> {after}");
    assert!(
        after <= before,
        "fds leaked: {before} before, {after} after"
    );

    assert!(pods.list().await.is_empty(), "no record left");
    assert!(sink.attached().is_empty(), "no port left attached");
    for name in &created {
        assert!(
            !Path::new("/run/netns").join(name).exists(),
            "namespace {name} leaked"
        );
    }
    let links = std::process::Command::new("ip")
        .args(["-n", &given, "-j", "link"])
        .output()
        .unwrap();
    let links: serde_json::Value = serde_json::from_slice(&links.stdout).unwrap();
    let names: Vec<&str> = links
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ifname"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["lo"], "no TUN left in the given namespace");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("pods.json")).unwrap()).unwrap();
    assert_eq!(
        state["pods"],
        serde_json::json!([]),
        "no address left allocated"
    );
    drop(given_ns);
}
