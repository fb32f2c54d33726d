//! Root-only: 200 ADD/DEL cycles of the real `weft-cni` binary on one node
//! leak nothing: no address (every ADD gets the same lowest address back),
//! no interface in the pod's namespace, no file descriptor in the process
//! serving the agent's API. In its own test binary, so no other test's fds
//! disturb the count.

mod cni_support;

use std::time::Duration;

use cni_support::{conf, links_in, open_fds, require_root, unique, Agent, Invocation, Namespaces};

const CYCLES: usize = 200;

/// The fd count once it settles (the agent's netlink driver threads close
/// their sockets just after their last handle is dropped).
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

/// The fd count once two reads 100 ms apart agree.
async fn stable_fds() -> usize {
    let mut n = open_fds();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let m = open_fds();
        if m == n {
            break;
        }
        n = m;
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_add_del_cycles_leak_nothing() {
    require_root();
    let agent = Agent::start("10.84.0.0/24", "10.84.0.1").await;
    let mut namespaces = Namespaces::default();
    let name = unique("wcc");
    let netns = namespaces.create(&name);
    let conf = conf("1.1.0", &agent.socket);
    let cycle = |i: usize| {
        let inv = Invocation::new(&format!("{name}c{i}"), &netns);
        let conf = conf.clone();
        async move {
            let add = inv.run("ADD", &conf).await;
            assert_eq!(add.code, 0, "cycle {i}: {add:?}");
            assert_eq!(
                add.json()["ips"][0]["address"],
                "10.84.0.2/32",
                "cycle {i}: the lowest address, every time"
            );
            inv.run("DEL", &conf).await.assert_quiet_success();
        }
    };
    // One cycle first, so that lazily made things (the runtime's blocking
    // pool threads) exist before the count.
    cycle(0).await;
    let before = stable_fds().await;
    let started = std::time::Instant::now();
    for i in 1..=CYCLES {
        cycle(i).await;
    }
    let elapsed = started.elapsed();
    let after = settled_fds(before).await;
    assert_eq!(after, before, "fds of the process serving the API leaked");
    assert_eq!(links_in(&name), ["lo"], "no interface is left");
    assert!(agent.pods.list().await.is_empty(), "no pod record is left");
    assert!(agent.sink.attached().is_empty(), "no port is left attached");
    let state = std::fs::read_to_string(agent.pods.state_path()).unwrap();
    assert!(!state.contains("10.84.0.2"), "no address is left: {state}");
    eprintln!(
        "{CYCLES} ADD/DEL cycles through weft-cni in {elapsed:?} ({:?} per cycle)",
        elapsed / CYCLES as u32
    );
    agent.stop().await;
}
