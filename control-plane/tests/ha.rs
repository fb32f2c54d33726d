//! Several control-plane replicas on one etcd (started by the test on
//! loopback), each with its own state dir: one CA and serving certificate
//! for all, any replica serves every RPC, concurrent joins spread over the
//! replicas never share a CIDR or an id, exactly one replica leads, and the
//! sweeper moves with the leadership while renewals made through any
//! replica count.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use support::*;
use weft_control_plane::server::Running;
use weft_control_plane::store::etcd::local::LocalEtcd;
use weft_proto::v1::{GetClusterInfoRequest, GetNodeRequest, ListNodesRequest, RenewLeaseRequest};

fn flags<'a>(url: &'a str, san: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut f = vec!["--store", url, "--tls-san", san];
    f.extend_from_slice(extra);
    f
}

async fn replica(dir: &Path, flags: &[&str]) -> Running {
    start(dir, flags).await
}

/// Wait until `cond` holds (bounded).
async fn eventually(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_ca_the_nodes_and_one_leader() {
    let etcd = LocalEtcd::start(1).await.unwrap();
    let url = etcd.store_url();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = replica(da.path(), &flags(&url, "a.weft.test", &[])).await;

    // A second replica without the cluster secret is refused, saying why.
    let err = match weft_control_plane::server::spawn(settings(
        db.path(),
        &flags(&url, "b.weft.test", &[]),
    ))
    .await
    {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a replica started without the cluster secret"),
    };
    assert!(err.contains("cluster-secret"), "{err}");
    std::fs::copy(
        da.path().join("cluster-secret"),
        db.path().join("cluster-secret"),
    )
    .unwrap();
    let b = replica(db.path(), &flags(&url, "b.weft.test", &[])).await;

    // One CA; B's serving certificate names both replicas.
    let hash_of = |cp: &Running| {
        let conf = cp.admin_conf();
        async move {
            let creds = weft_client::Credentials::load(conf).unwrap();
            weft_proto::v1::admin_client::AdminClient::new(
                weft_client::connect(&creds).await.unwrap(),
            )
            .get_cluster_info(GetClusterInfoRequest {})
            .await
            .unwrap()
            .into_inner()
            .ca_cert_hash
        }
    };
    assert_eq!(hash_of(&a).await, hash_of(&b).await);
    let crt = std::fs::read_to_string(db.path().join("server.crt")).unwrap();
    let pem = x509_parser::pem::parse_x509_pem(crt.as_bytes()).unwrap().1;
    let cert = pem.parse_x509().unwrap();
    let names: Vec<String> = cert
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|n| n.to_string())
        .collect();
    for want in ["a.weft.test", "b.weft.test"] {
        assert!(names.iter().any(|n| n.contains(want)), "{names:?}");
    }

    // Exactly one leader.
    eventually("a leader", Duration::from_secs(10), || {
        a.is_leader() || b.is_leader()
    })
    .await;
    assert!(!(a.is_leader() && b.is_leader()), "two leaders");

    // A token made on A joins on B; joins spread over both never collide.
    let (tok, hash) = token(&a, 0, 0).await;
    let (a, b) = (Arc::new(a), Arc::new(b));
    let mut tasks = vec![];
    for i in 0..80u8 {
        let cp = if i % 2 == 0 { a.clone() } else { b.clone() };
        let (tok, hash) = (tok.clone(), hash.clone());
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
        assert!(ids.insert(id), "duplicate id");
    }
    for cp in [&a, &b] {
        let nodes = admin(cp)
            .await
            .list_nodes(ListNodesRequest {})
            .await
            .unwrap()
            .into_inner()
            .nodes;
        assert_eq!(nodes.len(), 80);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_follows_the_leader_and_counts_renewals_from_any_replica() {
    let etcd = LocalEtcd::start(1).await.unwrap();
    let url = etcd.store_url();
    let leases = ["--lease-ttl", "2", "--removal-grace", "2"];
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = replica(da.path(), &flags(&url, "a.weft.test", &leases)).await;
    eventually("A leads", Duration::from_secs(10), || a.is_leader()).await;
    std::fs::copy(
        da.path().join("cluster-secret"),
        db.path().join("cluster-secret"),
    )
    .unwrap();
    let b = replica(db.path(), &flags(&url, "b.weft.test", &leases)).await;
    assert!(!b.is_leader());

    let (tok, hash) = token(&a, 0, 0).await;
    // `kept` renews through B (a follower) only; `silent` never renews.
    let kept = join(&b, &tok, &hash, "kept", 1).await.unwrap();
    let silent = join(&b, &tok, &hash, "silent", 2).await.unwrap();
    let renewer = {
        let mut client = kept.client().await;
        tokio::spawn(async move {
            loop {
                let _ = client.renew_lease(RenewLeaseRequest {}).await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };

    // The leader leaves; B takes over within 5 s.
    let stopped = tokio::time::Instant::now();
    a.stop().await.unwrap();
    eventually("B leads", Duration::from_secs(5), || b.is_leader()).await;
    let took = stopped.elapsed();

    // B removes the silent node on time, and keeps the renewing one.
    let mut admin_b = admin(&b).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let got = admin_b
            .get_node(GetNodeRequest {
                name: silent.name.clone(),
            })
            .await;
        if got.is_err() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the silent node was not removed (leadership moved in {took:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let kept_node = admin_b
        .get_node(GetNodeRequest {
            name: kept.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        kept_node.node.unwrap().state,
        weft_proto::v1::NodeState::Ready as i32
    );
    renewer.abort();
}

/// A call that may fail once while the channel moves to another replica.
async fn retried<T, F, Fut>(what: &str, mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        match call().await {
            Ok(v) => return v,
            Err(e) if tokio::time::Instant::now() < deadline => {
                assert_eq!(e.code(), tonic::Code::Unavailable, "{what}: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{what}: no replica answered: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_fail_over_and_a_watch_resumes_on_another_replica() {
    use futures::StreamExt;
    use weft_proto::v1::{watch_event, WatchRequest};

    let etcd = LocalEtcd::start(1).await.unwrap();
    let url = etcd.store_url();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = replica(da.path(), &flags(&url, "a.weft.test", &[])).await;
    std::fs::copy(
        da.path().join("cluster-secret"),
        db.path().join("cluster-secret"),
    )
    .unwrap();
    let b = replica(db.path(), &flags(&url, "b.weft.test", &[])).await;

    // B's admin.conf names both replicas, B first.
    let creds = weft_client::Credentials::load(b.admin_conf()).unwrap();
    assert_eq!(creds.server, format!("{},{}", b.addr, a.addr));
    let (tok, hash) = token(&b, 0, 0).await;
    let n1 = join(&b, &tok, &hash, "n1", 1).await.unwrap();

    // A node whose credentials list B then A watches (through B).
    let mut node_creds = n1.creds.clone();
    node_creds.server = format!("{},{}", b.addr, a.addr);
    let mut client = weft_proto::v1::cluster_client::ClusterClient::new(
        weft_client::connect_lazy(&node_creds).unwrap(),
    );
    let mut watch = client
        .watch(WatchRequest { resume_revision: 0 })
        .await
        .unwrap()
        .into_inner();
    let mut last = 0;
    // The snapshot (one part: one node).
    let first = watch.next().await.unwrap().unwrap();
    for e in &first.events {
        last = last.max(e.revision);
    }

    // B dies; a node joins through A meanwhile.
    b.stop().await.unwrap();
    let n2 = join(&a, &tok, &hash, "n2", 2).await.unwrap();

    // The watch broke; resumed from its last revision on the same channel,
    // it reaches A and yields exactly the missed join.
    let mut resumed = retried("watch", || {
        let mut c = client.clone();
        async move {
            c.watch(WatchRequest {
                resume_revision: last,
            })
            .await
            .map(|r| r.into_inner())
        }
    })
    .await;
    let got = tokio::time::timeout(Duration::from_secs(10), resumed.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let names: Vec<String> = got
        .events
        .iter()
        .filter_map(|e| match &e.event {
            Some(watch_event::Event::Change(c)) => match &c.object {
                Some(weft_proto::v1::change::Object::Node(n)) => Some(n.name.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(names, std::slice::from_ref(&n2.name));

    // Lease renewals and admin calls go to the live replica too.
    retried("renewal", || {
        let mut c = client.clone();
        async move { c.renew_lease(RenewLeaseRequest {}).await }
    })
    .await;
    let admin_client =
        weft_proto::v1::admin_client::AdminClient::new(weft_client::connect_lazy(&creds).unwrap());
    let nodes = retried("list", || {
        let mut c = admin_client.clone();
        async move { c.list_nodes(ListNodesRequest {}).await }
    })
    .await
    .into_inner()
    .nodes;
    assert_eq!(nodes.len(), 2);
}
