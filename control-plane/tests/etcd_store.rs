//! The control plane on etcd (`--store etcd://...`), end to end over TLS
//! gRPC, against a real etcd the test starts on loopback: concurrent joins
//! in batches larger than etcd's transaction limit allows in one, a limited
//! token spent exactly, a restart that keeps everything, and an
//! unreachable etcd refused at start with a message naming it.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;

use support::*;
use tonic::Code;
use weft_control_plane::server::{self, ServerError};
use weft_control_plane::store::etcd::local::LocalEtcd;
use weft_proto::v1::{GetClusterInfoRequest, ListNodesRequest, ListTokensRequest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_tokens_and_restarts_on_etcd() {
    let etcd = LocalEtcd::start(1).await.unwrap();
    let url = etcd.store_url();
    let flags = ["--store", url.as_str(), "--etcd-prefix", "/weft/test/"];
    let dir = tempfile::tempdir().unwrap();
    let cp = Arc::new(start(dir.path(), &flags).await);

    // More joins at once than one etcd transaction can carry.
    let (tok, hash) = token(&cp, 0, 0).await;
    let mut tasks = vec![];
    for i in 0..100u8 {
        let (cp, tok, hash) = (cp.clone(), tok.clone(), hash.clone());
        tasks.push(tokio::spawn(async move {
            let n = join(&cp, &tok, &hash, &format!("n{i}"), i + 1)
                .await
                .unwrap();
            let node = n.joined.node.unwrap();
            (node.pod_cidr, node.id)
        }));
    }
    let (mut cidrs, mut ids) = (BTreeSet::new(), BTreeSet::new());
    for t in tasks {
        let (cidr, id) = t.await.unwrap();
        assert!(cidrs.insert(cidr), "duplicate CIDR");
        assert!(ids.insert(id), "duplicate node id");
    }

    // A limited token is spent exactly.
    let (limited, _) = token(&cp, 5, 0).await;
    let mut tasks = vec![];
    for i in 0..20u8 {
        let (cp, tok, hash) = (cp.clone(), limited.clone(), hash.clone());
        tasks.push(tokio::spawn(async move {
            join(&cp, &tok, &hash, &format!("l{i}"), 200 + i).await
        }));
    }
    let (mut ok, mut used_up) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) if e.code() == Code::Unauthenticated && e.message().contains("used up") => {
                used_up += 1
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!((ok, used_up), (5, 15));

    let before = admin(&cp)
        .await
        .get_cluster_info(GetClusterInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(before.nodes_total, 105);

    // A restart on the same etcd keeps nodes, tokens and the revision.
    let cp = Arc::into_inner(cp).unwrap();
    let cp = restart(cp, dir.path(), &flags).await;
    let admin_after = &mut admin(&cp).await;
    let after = admin_after
        .get_cluster_info(GetClusterInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.nodes_total, 105);
    assert!(after.revision >= before.revision);
    assert_eq!(after.node_cidrs_free, before.node_cidrs_free);
    let nodes = admin_after
        .list_nodes(ListNodesRequest {})
        .await
        .unwrap()
        .into_inner()
        .nodes;
    assert_eq!(nodes.len(), 105);
    let tokens = admin_after
        .list_tokens(ListTokensRequest {})
        .await
        .unwrap()
        .into_inner()
        .tokens;
    assert_eq!(tokens.iter().map(|t| t.used).sum::<u32>(), 105);
    // A new node after the restart gets a CIDR nobody holds.
    let n = join(&cp, &tok, &hash, "fresh", 250).await.unwrap();
    assert!(!cidrs.contains(&n.joined.node.unwrap().pod_cidr));
    cp.stop().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_etcd_is_a_configuration_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("etcd://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let err = match server::spawn(settings(dir.path(), &["--store", &url])).await {
        Err(e) => e,
        Ok(_) => panic!("started without etcd"),
    };
    assert!(matches!(err, ServerError::Config(_)), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("--store") && msg.contains(&port.to_string()),
        "{msg}"
    );
}
