//! The agent core's watch, lease and peer set against a real control plane
//! over TLS, with recording fake data planes: agents see each other; a
//! removed node leaves the others' peer sets; a removed node re-joins with
//! its token, or says what to do without one; a control-plane outage keeps
//! the peers and retries with bounded backoff; a restarted control plane
//! (same port, same state dir) is resumed from the last revision, without
//! re-joining.

mod agent_support;

use std::time::Duration;

use agent_support::*;
use base64::Engine as _;
use weft_node_agent::cluster::{Membership, PeersFile};
use weft_proto::v1::RemoveNodeRequest;

const NAMES: [&str; 3] = ["node-a", "node-b", "node-c"];

/// Joins and runs `names`, in order (so their CIDRs are .0, .1, .2).
async fn cluster(
    cp: &weft_control_plane::server::Running,
    dirs: &[tempfile::TempDir],
    names: &[&str],
    join: (&str, &str),
) -> Vec<RunningCore> {
    let mut out = vec![];
    for (name, dir) in names.iter().zip(dirs) {
        out.push(RunningCore::boot(core_config(cp.addr, dir.path(), name, Some(join))).await);
    }
    out
}

fn others(name: &str) -> Vec<String> {
    NAMES
        .iter()
        .filter(|n| **n != name)
        .map(|n| n.to_string())
        .collect()
}

#[tokio::test]
async fn three_agents_see_each_other_and_a_removed_node_disappears() {
    let cp_dir = tempfile::tempdir().unwrap();
    let cp = start_cp(cp_dir.path()).await;
    let (token, hash) = token(&cp).await;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut cores = cluster(&cp, &dirs, &NAMES, (&token, &hash)).await;

    for c in &cores {
        let name = c.core.node().name;
        let want = others(&name);
        c.sink
            .wait_for(&format!("{name} to see the other two"), |p| {
                p.keys().cloned().collect::<Vec<_>>() == want
            })
            .await;
    }
    // The peers are what the control plane says about the other nodes.
    let a = &cores[0];
    let b_node = cores[1].core.node();
    let spec = a.sink.snapshot().peers["node-b"].clone();
    assert_eq!(spec.allowed, vec![b_node.pod_cidr]);
    assert_eq!(spec.endpoint, Some(endpoint_of("node-b")));
    assert_eq!(
        base64::engine::general_purpose::STANDARD.encode(spec.public_key),
        cores[1].core.key().public_base64()
    );
    // And the peer set is persisted with its revision.
    let peers_json = dirs[0].path().join("peers.json");
    eventually("peers.json with both peers", || async {
        let f = PeersFile::load_or_empty(&peers_json);
        f.revision > 0 && f.peers.len() == 2
    })
    .await;
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&peers_json).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // node-c goes away (its agent stops), then an operator removes it.
    let c = cores.pop().unwrap();
    c.stop().await;
    admin(&cp)
        .await
        .remove_node(RemoveNodeRequest {
            name: "node-c".into(),
        })
        .await
        .unwrap();
    for c in &cores {
        let name = c.core.node().name;
        c.sink
            .wait_for(&format!("{name} to drop node-c"), |p| {
                !p.contains_key("node-c") && p.len() == 1
            })
            .await;
        assert!(c
            .sink
            .snapshot()
            .calls
            .contains(&"remove_peer node-c".to_string()));
    }
    eventually("peers.json without node-c", || async {
        PeersFile::load_or_empty(&peers_json)
            .peers
            .iter()
            .all(|p| p.name != "node-c")
    })
    .await;
    for c in cores {
        c.stop().await;
    }
}

#[tokio::test]
async fn a_removed_node_rejoins_with_its_token() {
    let cp_dir = tempfile::tempdir().unwrap();
    let cp = start_cp(cp_dir.path()).await;
    let (token, hash) = token(&cp).await;
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let cores = cluster(&cp, &dirs, &NAMES[..2], (&token, &hash)).await;
    let b = &cores[1];
    let old = b.core.node();
    cores[0]
        .sink
        .wait_for("node-a to see node-b", |p| p.contains_key("node-b"))
        .await;

    admin(&cp)
        .await
        .remove_node(RemoveNodeRequest {
            name: "node-b".into(),
        })
        .await
        .unwrap();
    eventually("node-b to re-join", || async { b.core.status().joins == 2 }).await;
    let new = b.core.node();
    assert_eq!(
        new.pod_cidr, old.pod_cidr,
        "the lowest free CIDR is its old one"
    );
    assert_ne!(new.id, old.id, "a removed node gets a new id");
    let nodes = list_nodes(&cp).await;
    assert_eq!(nodes.len(), 2);
    // The other node saw it leave and come back.
    cores[0]
        .sink
        .wait_for("node-a to see node-b again", |p| p.contains_key("node-b"))
        .await;
    assert!(cores[0]
        .sink
        .snapshot()
        .calls
        .contains(&"remove_peer node-b".to_string()));
    // node-b kept its peer all along and its watch works on the new credential.
    assert_eq!(b.sink.names(), vec!["node-a"]);
    eventually("node-b's watch back up", || async {
        let s = b.core.status();
        s.connected && !s.removed && s.last_error.is_none()
    })
    .await;
    for c in cores {
        c.stop().await;
    }
}

#[tokio::test]
async fn a_removed_node_without_a_token_says_what_to_do_and_keeps_its_peers() {
    let cp_dir = tempfile::tempdir().unwrap();
    let cp = start_cp(cp_dir.path()).await;
    let (token, hash) = token(&cp).await;
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let cores = cluster(&cp, &dirs, &NAMES[..2], (&token, &hash)).await;
    cores[1]
        .sink
        .wait_for("node-b to see node-a", |p| p.contains_key("node-a"))
        .await;
    // Restart node-b without a token.
    let mut cores = cores;
    cores.pop().unwrap().stop().await;
    let b = RunningCore::boot(core_config(cp.addr, dirs[1].path(), "node-b", None)).await;
    b.sink
        .wait_for("node-b to see node-a", |p| p.contains_key("node-a"))
        .await;

    admin(&cp)
        .await
        .remove_node(RemoveNodeRequest {
            name: "node-b".into(),
        })
        .await
        .unwrap();
    eventually("node-b to notice its removal", || async {
        b.core.status().removed
    })
    .await;
    let err = b.core.status().last_error.unwrap();
    assert!(
        err.contains("NOT_FOUND")
            && err.contains("weftctl token create")
            && err.contains("--token"),
        "{err}"
    );
    assert_eq!(b.core.status().joins, 0);
    assert_eq!(list_nodes(&cp).await.len(), 1);
    // The data plane keeps its peers.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.sink.names(), vec!["node-a"]);
    b.stop().await;
    for c in cores {
        c.stop().await;
    }
}

#[tokio::test]
async fn an_outage_keeps_the_peers_and_a_restarted_control_plane_is_resumed() {
    let cp_dir = tempfile::tempdir().unwrap();
    let cp = start_cp(cp_dir.path()).await;
    let addr = cp.addr;
    let (token, hash) = token(&cp).await;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let cores = cluster(&cp, &dirs, &NAMES[..2], (&token, &hash)).await;
    for c in &cores {
        c.sink.wait_for("the other node", |p| p.len() == 1).await;
        eventually("the watch up", || async { c.core.status().connected }).await;
    }
    let before: Vec<_> = cores
        .iter()
        .map(|c| (c.core.node(), c.core.status(), c.sink.snapshot()))
        .collect();

    // Outage.
    cp.stop().await.unwrap();
    for c in &cores {
        eventually("the watch to notice the outage", || async {
            let s = c.core.status();
            !s.connected && s.last_error.is_some()
        })
        .await;
    }
    let attempts: Vec<u64> = cores
        .iter()
        .map(|c| c.core.status().watch_attempts)
        .collect();
    // With backoff capped at 500 ms (plus jitter below it), 3 s hold several retries.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (c, a) in cores.iter().zip(&attempts) {
        let s = c.core.status();
        assert!(
            s.watch_attempts >= a + 4,
            "bounded backoff: {} -> {}",
            a,
            s.watch_attempts
        );
        assert!(!s.connected);
    }
    for (c, (_, _, sink)) in cores.iter().zip(&before) {
        assert_eq!(
            c.sink.snapshot().peers,
            sink.peers,
            "peers kept through the outage"
        );
    }

    // The control plane comes back on the same port and state dir.
    let cp = respawn_cp(addr, cp_dir.path()).await;
    for c in &cores {
        eventually("the watch to reconnect", || async {
            c.core.status().connected
        })
        .await;
    }
    for (c, (node, status, sink)) in cores.iter().zip(&before) {
        let now = c.core.status();
        assert_eq!(now.joins, status.joins, "no re-join");
        assert_eq!(&c.core.node(), node, "same id and CIDR");
        assert!(now.revision >= status.revision);
        // Resumed, not re-synced: no new snapshot was applied.
        assert_eq!(
            c.sink.count("set_peers"),
            sink.calls.iter().filter(|x| *x == "set_peers").count()
        );
    }
    assert_eq!(list_nodes(&cp).await.len(), 2);

    // New changes arrive on the resumed watches.
    let c = RunningCore::boot(core_config(
        cp.addr,
        dirs[2].path(),
        "node-c",
        Some((&token, &hash)),
    ))
    .await;
    for core in &cores {
        core.sink
            .wait_for("node-c to appear", |p| p.contains_key("node-c"))
            .await;
    }
    c.sink
        .wait_for("node-c to see both", |p| p.len() == 2)
        .await;
    assert_eq!(c.core.node().pod_cidr.to_string(), "10.244.2.0/24");
    c.stop().await;
    for core in cores {
        core.stop().await;
    }
}

#[tokio::test]
async fn a_restarted_agent_applies_its_persisted_peers_with_the_control_plane_down() {
    let cp_dir = tempfile::tempdir().unwrap();
    let cp = start_cp(cp_dir.path()).await;
    let (token, hash) = token(&cp).await;
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let cores = cluster(&cp, &dirs, &NAMES[..2], (&token, &hash)).await;
    cores[0]
        .sink
        .wait_for("node-b", |p| p.contains_key("node-b"))
        .await;
    let want = cores[0].sink.snapshot().peers;
    for c in cores {
        c.stop().await;
    }
    let revision = PeersFile::load_or_empty(&dirs[0].path().join("peers.json")).revision;
    assert!(revision > 0);
    cp.stop().await.unwrap();

    // No control plane: the core starts from its state dir alone.
    let core = tokio::time::timeout(
        WAIT,
        Membership::bootstrap(core_config(
            "127.0.0.1:1".parse().unwrap(),
            dirs[0].path(),
            "node-a",
            None,
        )),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(core.status().revision, revision);
    let a = RunningCore::start(core);
    a.sink.wait_for("the persisted peers", |p| *p == want).await;
    assert_eq!(a.sink.snapshot().calls, vec!["set_peers".to_string()]);
    eventually("the link to be reported down", || async {
        let s = a.core.status();
        !s.connected && s.last_error.is_some()
    })
    .await;
    a.stop().await;
}
