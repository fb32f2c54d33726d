//! A WireGuard public key and an underlay endpoint belong to one node
//! (issue 10, items 1 and 7), over real TLS gRPC: Join and UpdateNode refuse
//! another node's key (ALREADY_EXISTS) or endpoint (INVALID_ARGUMENT)
//! without naming that node, concurrent joins with one key have exactly one
//! winner, the guarantee survives restarts, a removed node's claims are
//! free again, and a store written before the index existed is indexed when
//! the control plane opens it.

mod support;

use std::sync::Arc;

use support::*;
use tonic::Code;
use weft_control_plane::model;
use weft_control_plane::store::redb::RedbStore;
use weft_control_plane::store::{Op, Store, Txn};
use weft_proto::v1::{
    GetClusterInfoRequest, GetNodeRequest, ListTokensRequest, Node, NodeState, RemoveNodeRequest,
    UpdateNodeRequest,
};

async fn node_count(cp: &weft_control_plane::server::Running) -> u32 {
    admin(cp)
        .await
        .get_cluster_info(GetClusterInfoRequest {})
        .await
        .unwrap()
        .into_inner()
        .nodes_total
}

async fn get_node(cp: &weft_control_plane::server::Running, name: &str) -> Node {
    admin(cp)
        .await
        .get_node(GetNodeRequest { name: name.into() })
        .await
        .unwrap()
        .into_inner()
        .node
        .unwrap()
}

/// Join `name` with key seed `key_seed` at `endpoint`.
async fn join_at(
    cp: &weft_control_plane::server::Running,
    tok: &str,
    hash: &str,
    name: &str,
    key_seed: u8,
    endpoint: &str,
) -> Result<(), tonic::Status> {
    let (_, csr) = weft_client::generate_csr(name).unwrap();
    let mut req = join_request(tok, name, &key(key_seed), &csr);
    req.endpoints = vec![endpoint.to_string()];
    pinned(cp, hash).await.join(req).await.map(|_| ())
}

#[tokio::test]
async fn a_join_with_another_nodes_key_is_refused_and_names_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start(dir.path(), &[]).await;
    let (tok, hash) = token(&cp, 0, 0).await;
    join(&cp, &tok, &hash, "victim-node", 1).await.unwrap();

    let e = join_at(&cp, &tok, &hash, "a-dup", 1, &endpoint(200))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    assert!(e.message().contains("another node"), "{}", e.message());
    assert!(!e.message().contains("victim"), "{}", e.message());
    // The same key spelled differently (surrounding spaces) is the same key.
    let (_, csr) = weft_client::generate_csr("a-dup").unwrap();
    let mut req = join_request(&tok, "a-dup", &format!("  {} ", key(1)), &csr);
    req.endpoints = vec![endpoint(201)];
    let e = pinned(&cp, &hash).await.join(req).await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");

    // Nothing changed: one node, no token usage spent on the refusals, and
    // the victim keeps its key.
    assert_eq!(node_count(&cp).await, 1);
    let t = &admin(&cp)
        .await
        .list_tokens(ListTokensRequest {})
        .await
        .unwrap()
        .into_inner()
        .tokens[0];
    assert_eq!(t.used, 1);
    assert_eq!(get_node(&cp, "victim-node").await.public_key, key(1));
    cp.stop().await.unwrap();
}

#[tokio::test]
async fn update_node_to_another_nodes_key_or_endpoint_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start(dir.path(), &[]).await;
    let (tok, hash) = token(&cp, 0, 0).await;
    let n1 = join(&cp, &tok, &hash, "n1", 1).await.unwrap();
    join(&cp, &tok, &hash, "n2", 2).await.unwrap();
    let mut c1 = n1.client().await;

    let e = c1
        .update_node(UpdateNodeRequest {
            node_name: "n1".into(),
            public_key: key(2),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    assert!(!e.message().contains("n2"), "{}", e.message());

    let e = c1
        .update_node(UpdateNodeRequest {
            node_name: "n1".into(),
            endpoints: vec![endpoint(2)],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().contains("already the endpoint of another node"),
        "{}",
        e.message()
    );
    assert!(!e.message().contains("n2"), "{}", e.message());

    let n = get_node(&cp, "n1").await;
    assert_eq!((n.public_key, n.endpoints), (key(1), vec![endpoint(1)]));

    // Rotating to a fresh key frees the old one: another node may take it.
    c1.update_node(UpdateNodeRequest {
        node_name: "n1".into(),
        public_key: key(3),
        endpoints: vec![endpoint(3)],
        ..Default::default()
    })
    .await
    .unwrap();
    join_at(&cp, &tok, &hash, "n4", 1, &endpoint(1))
        .await
        .unwrap();
    cp.stop().await.unwrap();
}

#[tokio::test]
async fn concurrent_joins_with_one_key_have_exactly_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let cp = Arc::new(start(dir.path(), &[]).await);
    let (tok, hash) = token(&cp, 0, 0).await;
    let mut tasks = vec![];
    for i in 0..12u8 {
        let (cp, tok, hash) = (cp.clone(), tok.clone(), hash.clone());
        tasks.push(tokio::spawn(async move {
            join_at(
                &cp,
                &tok,
                &hash,
                &format!("racer-{i}"),
                77,
                &endpoint(i + 1),
            )
            .await
        }));
    }
    let (mut ok, mut exists) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(e) if e.code() == Code::AlreadyExists => exists += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!((ok, exists), (1, 11));
    assert_eq!(node_count(&cp).await, 1);
    // Same for one endpoint with different keys.
    let mut tasks = vec![];
    for i in 0..12u8 {
        let (cp, tok, hash) = (cp.clone(), tok.clone(), hash.clone());
        tasks.push(tokio::spawn(async move {
            join_at(
                &cp,
                &tok,
                &hash,
                &format!("ep-{i}"),
                100 + i,
                "198.51.100.7:51820",
            )
            .await
        }));
    }
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(e) if e.code() == Code::InvalidArgument => refused += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!((ok, refused), (1, 11));
    assert_eq!(node_count(&cp).await, 2);
}

#[tokio::test]
async fn claims_survive_a_restart_and_are_freed_by_removal() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start(dir.path(), &[]).await;
    let (tok, hash) = token(&cp, 0, 0).await;
    join(&cp, &tok, &hash, "n1", 1).await.unwrap();
    let cp = restart(cp, dir.path(), &[]).await;
    let e = join_at(&cp, &tok, &hash, "n2", 1, &endpoint(2))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    let e = join_at(&cp, &tok, &hash, "n2", 2, &endpoint(1))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    admin(&cp)
        .await
        .remove_node(RemoveNodeRequest { name: "n1".into() })
        .await
        .unwrap();
    join_at(&cp, &tok, &hash, "n2", 1, &endpoint(1))
        .await
        .unwrap();
    // The index holds exactly n2's claims now.
    cp.stop().await.unwrap();
    let store = RedbStore::open(&dir.path().join("state.redb")).unwrap();
    let (keys, _) = store.range(model::KEYS_PREFIX).await.unwrap();
    let (eps, _) = store.range(model::ENDPOINTS_PREFIX).await.unwrap();
    let owners: Vec<&[u8]> = keys
        .iter()
        .chain(&eps)
        .map(|kv| kv.value.as_slice())
        .collect();
    assert_eq!(owners, vec![b"n2".as_slice(), b"n2".as_slice()]);
}

fn old_node(name: &str, id: u64, key_seed: u8, ep: &str, joined: i64) -> Node {
    Node {
        id,
        name: name.into(),
        public_key: key(key_seed),
        endpoints: vec![ep.into()],
        pod_cidr: format!("10.244.{id}.0/24"),
        state: NodeState::Ready as i32,
        joined_unix_ms: joined,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_store_without_the_index_is_indexed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    // A store as an older control plane left it: nodes, no index, and two
    // nodes that already share a key (the defect this guards against).
    {
        let store = RedbStore::open(&dir.path().join("state.redb")).unwrap();
        let mut ops = vec![];
        for (n, cidr) in [
            (
                old_node("old-a", 1, 1, "192.0.2.1:51820", 1000),
                "10.244.1.0/24",
            ),
            (
                old_node("old-b", 2, 2, "192.0.2.2:51820", 2000),
                "10.244.2.0/24",
            ),
            (
                old_node("dup-c", 3, 1, "192.0.2.3:51820", 3000),
                "10.244.3.0/24",
            ),
        ] {
            ops.push(Op::Put {
                key: model::node_key(&n.name),
                value: model::encode_node(&n),
            });
            ops.push(Op::Put {
                key: format!("ipam/{cidr}"),
                value: n.name.clone().into_bytes(),
            });
        }
        ops.push(Op::Put {
            key: model::NEXT_NODE_ID_KEY.into(),
            value: b"4".to_vec(),
        });
        // A stale entry for a node that is gone.
        ops.push(Op::Put {
            key: model::endpoint_index_key("192.0.2.99:51820"),
            value: b"gone".to_vec(),
        });
        assert!(
            store
                .txn(Txn {
                    compares: vec![],
                    ops
                })
                .await
                .unwrap()
                .succeeded
        );
    }
    let cp = start(dir.path(), &[]).await;
    let (tok, hash) = token(&cp, 0, 0).await;
    for (seed, ep, code) in [
        (1, endpoint(50), Code::AlreadyExists),
        (2, endpoint(50), Code::AlreadyExists),
        (50, "192.0.2.3:51820".to_string(), Code::InvalidArgument),
    ] {
        let e = join_at(&cp, &tok, &hash, "new", seed, &ep)
            .await
            .unwrap_err();
        assert_eq!(e.code(), code, "seed {seed} at {ep}: {e:?}");
    }
    // The stale entry is gone: its endpoint is free.
    join_at(&cp, &tok, &hash, "new", 50, "192.0.2.99:51820")
        .await
        .unwrap();
    cp.stop().await.unwrap();
    let store = RedbStore::open(&dir.path().join("state.redb")).unwrap();
    let key1 = model::key_index_key(&[1u8; 32]);
    let owner = store.get(&key1).await.unwrap().unwrap().value;
    assert_eq!(owner, b"old-a", "the node that joined first keeps the key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_etcd_too_one_key_has_one_winner_and_big_claims_fit_the_txn_limit() {
    let etcd = weft_control_plane::store::etcd::local::LocalEtcd::start(1)
        .await
        .unwrap();
    let url = etcd.store_url();
    let dir = tempfile::tempdir().unwrap();
    let cp = Arc::new(start(dir.path(), &["--store", url.as_str()]).await);
    let (tok, hash) = token(&cp, 0, 0).await;
    let mut tasks = vec![];
    for i in 0..12u8 {
        let (cp, tok, hash) = (cp.clone(), tok.clone(), hash.clone());
        tasks.push(tokio::spawn(async move {
            join_at(
                &cp,
                &tok,
                &hash,
                &format!("racer-{i}"),
                77,
                &endpoint(i + 1),
            )
            .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(e) => assert_eq!(e.code(), Code::AlreadyExists, "{e:?}"),
        }
    }
    assert_eq!(ok, 1);
    // Joins with 16 endpoints each, at once: their claims exceed one etcd
    // transaction together, so the batch is cut, and every join lands.
    let mut tasks = vec![];
    for i in 0..20u8 {
        let (cp, tok, hash) = (cp.clone(), tok.clone(), hash.clone());
        tasks.push(tokio::spawn(async move {
            let name = format!("wide-{i}");
            let (_, csr) = weft_client::generate_csr(&name).unwrap();
            let mut req = join_request(&tok, &name, &key(100 + i), &csr);
            req.endpoints = (0..16)
                .map(|p| format!("198.51.100.{i}:{}", 1000 + p))
                .collect();
            pinned(&cp, &hash).await.join(req).await.map(|_| ())
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(node_count(&cp).await, 21);
}
