//! The agent core's identity against a real control plane over TLS: first
//! start joins and persists key, credential and node.json; later starts
//! reuse them without a token; flags that contradict the state dir, a bad
//! token and a bad key file are refused precisely; a changed endpoint is
//! corrected with UpdateNode; `leave` removes the node.

mod agent_support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use agent_support::*;
use weft_client::Credentials;
use weft_node_agent::agent::{self, LeaveConfig};
use weft_node_agent::cluster::{ClusterError, Membership, NodeFile};
use weft_node_agent::wg::{KeyError, NodeKey};
use weft_proto::v1::GetNodeRequest;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn first_start_joins_then_restarts_reuse_the_identity_without_a_token() {
    let cp_dir = tempfile::tempdir().unwrap();
    let cp = start_cp(cp_dir.path()).await;
    let (token, hash) = token(&cp).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("agent");

    // First start: joins.
    let core = Membership::bootstrap(core_config(
        cp.addr,
        &state,
        "node-a",
        Some((&token, &hash)),
    ))
    .await
    .unwrap();
    assert_eq!(core.status().joins, 1);
    let node = core.node();
    assert_eq!(node.name, "node-a");
    assert_eq!(node.pod_cidr.to_string(), "10.244.0.0/24");
    assert_eq!(node.host_address().to_string(), "10.244.0.1");
    assert_eq!(node.settings.cluster_cidr.to_string(), "10.244.0.0/16");
    assert_eq!(node.settings.service_cidr.to_string(), "10.96.0.0/12");
    for f in ["private.key", "credentials.json", "node.json"] {
        assert_eq!(mode(&state.join(f)), 0o600, "{f}");
    }
    assert_eq!(mode(&state), 0o700);
    let key = NodeKey::load(&state.join("private.key")).unwrap();
    assert_eq!(key.public_base64(), core.key().public_base64());
    let creds = Credentials::load(state.join("credentials.json")).unwrap();
    assert_eq!(creds.name, "node-a");
    assert_eq!(creds.server, cp.addr.to_string());
    let stored = NodeFile::load(&state.join("node.json")).unwrap().unwrap();
    assert_eq!(stored, node);
    let nodes = list_nodes(&cp).await;
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].public_key, key.public_base64());
    assert_eq!(nodes[0].endpoints, vec![endpoint_of("node-a").to_string()]);
    drop(core);

    // Second start: no token, no hash; same key, id and CIDR; no new node.
    let again = Membership::bootstrap(core_config(cp.addr, &state, "node-a", None))
        .await
        .unwrap();
    assert_eq!(again.status().joins, 0);
    assert_eq!(again.node(), node);
    assert_eq!(again.key().public_base64(), key.public_base64());
    // It works with the stored credential: the lease renews.
    let running = RunningCore::start(again);
    eventually("a lease renewal with the stored credential", || async {
        running.core.status().lease_renewals >= 1
    })
    .await;
    running.stop().await;
    assert_eq!(list_nodes(&cp).await.len(), 1);

    // A token on a later start is ignored (kept for re-joins): no new node.
    let third = Membership::bootstrap(core_config(
        cp.addr,
        &state,
        "node-a",
        Some((&token, &hash)),
    ))
    .await
    .unwrap();
    assert_eq!(third.status().joins, 0);
    assert_eq!(third.node().id, node.id);
    assert_eq!(list_nodes(&cp).await.len(), 1);
}

#[tokio::test]
async fn flags_that_contradict_the_state_dir_are_refused() {
    let cp_dir = tempfile::tempdir().unwrap();
    let cp = start_cp(cp_dir.path()).await;
    let (token, hash) = token(&cp).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();

    // No token on a first start.
    let err = Membership::bootstrap(core_config(cp.addr, state, "node-a", None))
        .await
        .unwrap_err();
    assert!(err.is_config(), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("--token") && msg.contains("weftctl token create"),
        "{msg}"
    );

    Membership::bootstrap(core_config(cp.addr, state, "node-a", Some((&token, &hash))))
        .await
        .unwrap();

    // Another name.
    let err = Membership::bootstrap(core_config(cp.addr, state, "node-b", None))
        .await
        .unwrap_err();
    assert!(err.is_config());
    assert!(
        err.to_string().contains("belongs to node \"node-a\""),
        "{err}"
    );

    // Another cluster's CA hash.
    let other = format!("sha256:{}", "ab".repeat(32));
    let mut cfg = core_config(cp.addr, state, "node-a", None);
    cfg.ca_hash = Some(other);
    let err = Membership::bootstrap(cfg).await.unwrap_err();
    assert!(err.is_config());
    assert!(err.to_string().contains("another cluster"), "{err}");
}

#[tokio::test]
async fn a_refused_join_says_why() {
    let cp_dir = tempfile::tempdir().unwrap();
    let cp = start_cp(cp_dir.path()).await;
    let (_, hash) = token(&cp).await;
    let dir = tempfile::tempdir().unwrap();
    let unknown = "zzzzzz.0123456789abcdef";
    let err = Membership::bootstrap(core_config(
        cp.addr,
        dir.path(),
        "node-a",
        Some((unknown, &hash)),
    ))
    .await
    .unwrap_err();
    match &err {
        ClusterError::JoinRefused { code, .. } => assert_eq!(*code, tonic::Code::Unauthenticated),
        other => panic!("{other:?}"),
    }
    assert!(err.is_config());
    // Nothing but the key was written.
    assert!(!dir.path().join("node.json").exists());
    assert!(!dir.path().join("credentials.json").exists());

    // A wrong CA pin fails before any request.
    let (token, _) = token(&cp).await;
    let wrong = format!("sha256:{}", "cd".repeat(32));
    let err = Membership::bootstrap(core_config(
        cp.addr,
        dir.path(),
        "node-a",
        Some((&token, &wrong)),
    ))
    .await
    .unwrap_err();
    assert!(err.to_string().contains("pinned CA hash"), "{err}");
    assert!(err.is_config());
}

#[tokio::test]
async fn a_bad_private_key_is_refused_precisely() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("private.key");
    // The control plane is never reached: the key is checked first.
    let cp: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();

    std::fs::write(&key, "not a key\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = Membership::bootstrap(core_config(cp, dir.path(), "node-a", None))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClusterError::Key(KeyError::Malformed { .. })),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&key.display().to_string()) && msg.contains("not standard base64"),
        "{msg}"
    );

    std::fs::write(&key, "AAAA\n").unwrap();
    let msg = Membership::bootstrap(core_config(cp, dir.path(), "node-a", None))
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.contains("decodes to 3 bytes, not 32"), "{msg}");

    std::fs::remove_file(&key).unwrap();
    let generated = NodeKey::load_or_generate(&key).unwrap().0;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let err = Membership::bootstrap(core_config(cp, dir.path(), "node-a", None))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClusterError::Key(KeyError::Permissions { mode: 0o640, .. })
        ),
        "{err:?}"
    );
    assert!(err.is_config());
    assert!(err.to_string().contains("chmod 600"), "{err}");
    // Never overwritten.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        NodeKey::load(&key).unwrap().public_bytes(),
        generated.public_bytes()
    );
}

#[tokio::test]
async fn a_changed_endpoint_is_corrected_with_update_node() {
    let cp_dir = tempfile::tempdir().unwrap();
    let cp = start_cp(cp_dir.path()).await;
    let (token, hash) = token(&cp).await;
    let dir = tempfile::tempdir().unwrap();
    Membership::bootstrap(core_config(
        cp.addr,
        dir.path(),
        "node-a",
        Some((&token, &hash)),
    ))
    .await
    .unwrap();

    let mut cfg = core_config(cp.addr, dir.path(), "node-a", None);
    cfg.endpoint = Some("127.0.99.1:51999".parse().unwrap());
    let running = RunningCore::boot(cfg).await;
    let mut admin = admin(&cp).await;
    eventually("the control plane to have the new endpoint", || {
        let mut admin = admin.clone();
        async move {
            let node = admin
                .get_node(GetNodeRequest {
                    name: "node-a".into(),
                })
                .await
                .unwrap()
                .into_inner()
                .node
                .unwrap();
            node.endpoints == vec!["127.0.99.1:51999".to_string()]
        }
    })
    .await;
    running.stop().await;
    let n = admin
        .get_node(GetNodeRequest {
            name: "node-a".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .node
        .unwrap();
    assert_eq!(n.pod_cidr, "10.244.0.0/24");
}

#[tokio::test]
async fn leave_removes_the_node_and_forgets_the_identity() {
    let cp_dir = tempfile::tempdir().unwrap();
    let cp = start_cp(cp_dir.path()).await;
    let (token, hash) = token(&cp).await;
    let dir = tempfile::tempdir().unwrap();
    Membership::bootstrap(core_config(
        cp.addr,
        dir.path(),
        "node-a",
        Some((&token, &hash)),
    ))
    .await
    .unwrap();
    assert_eq!(list_nodes(&cp).await.len(), 1);

    let cfg = LeaveConfig {
        state_dir: dir.path().to_path_buf(),
        control_plane: None,
        log_json: false,
    };
    let msg = agent::leave(&cfg).await.unwrap();
    assert!(msg.contains("node-a left the cluster"), "{msg}");
    assert!(list_nodes(&cp).await.is_empty());
    assert!(!dir.path().join("credentials.json").exists());
    assert!(!dir.path().join("node.json").exists());
    assert!(dir.path().join("private.key").exists());
    // Again: nothing to leave with.
    let err = agent::leave(&cfg).await.unwrap_err();
    assert!(err.to_string().contains("has not joined"), "{err}");
}
