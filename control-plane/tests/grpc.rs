//! The control plane end to end over real TLS gRPC on 127.0.0.1:0: joins,
//! watch streams with revisions and resume, leases, restarts, and every
//! refusal with its gRPC code.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use support::*;
use tonic::Code;
use weft_proto::v1::{
    watch_event, ChangeType, GetClusterInfoRequest, GetNodeRequest, LeaveRequest, ListNodesRequest,
    ListTokensRequest, NodeState, RemoveNodeRequest, RenewLeaseRequest, RevokeTokenRequest,
    UpdateNodeRequest, WatchEvent, WatchRequest, WatchResponse,
};

const T: Duration = Duration::from_secs(10);

/// Watch events, read out of batched responses.
struct Events {
    stream: tonic::Streaming<WatchResponse>,
    buf: std::collections::VecDeque<WatchEvent>,
}

impl Events {
    fn new(stream: tonic::Streaming<WatchResponse>) -> Events {
        Events {
            stream,
            buf: Default::default(),
        }
    }

    async fn next(&mut self) -> WatchEvent {
        loop {
            if let Some(e) = self.buf.pop_front() {
                return e;
            }
            let r = tokio::time::timeout(T, self.stream.next())
                .await
                .expect("watch response in time")
                .expect("stream open")
                .expect("response ok");
            assert!(!r.events.is_empty(), "no empty responses");
            self.buf.extend(r.events);
        }
    }

    /// The next non-keepalive event.
    async fn change(&mut self) -> WatchEvent {
        loop {
            let e = self.next().await;
            if !matches!(e.event, Some(watch_event::Event::Keepalive(_))) {
                return e;
            }
        }
    }

    /// Nothing arrives within `d`.
    async fn quiet(&mut self, d: Duration) -> bool {
        self.buf.is_empty() && tokio::time::timeout(d, self.stream.next()).await.is_err()
    }
}

async fn next_event(s: &mut Events) -> WatchEvent {
    s.next().await
}

async fn next_change(s: &mut Events) -> WatchEvent {
    s.change().await
}

fn change_of(e: &WatchEvent) -> (ChangeType, String) {
    match &e.event {
        Some(watch_event::Event::Change(c)) => {
            let Some(weft_proto::v1::change::Object::Node(n)) = &c.object else {
                panic!("no node")
            };
            (ChangeType::try_from(c.r#type).unwrap(), n.name.clone())
        }
        other => panic!("expected a change, got {other:?}"),
    }
}

#[tokio::test]
async fn three_nodes_join_and_a_watch_sees_them_in_revision_order() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start(dir.path(), &[]).await;
    let (tok, hash) = token(&cp, 0, 0).await;

    let n1 = join(&cp, &tok, &hash, "n1", 1).await.unwrap();
    let mut watch = Events::new(
        n1.client()
            .await
            .watch(WatchRequest { resume_revision: 0 })
            .await
            .unwrap()
            .into_inner(),
    );
    let first = next_event(&mut watch).await;
    let Some(watch_event::Event::Snapshot(snap)) = &first.event else {
        panic!("snapshot first: {first:?}")
    };
    assert_eq!(snap.nodes.len(), 1);
    assert_eq!(snap.nodes[0].name, "n1");
    assert_eq!(
        snap.settings.as_ref().unwrap().cluster_cidr,
        "10.244.0.0/16"
    );

    let n2 = join(&cp, &tok, &hash, "n2", 2).await.unwrap();
    let n3 = join(&cp, &tok, &hash, "n3", 3).await.unwrap();
    let mut last = first.revision;
    let mut seen = vec![];
    for _ in 0..2 {
        let e = next_change(&mut watch).await;
        assert!(
            e.revision > last,
            "revisions strictly increase: {} then {}",
            last,
            e.revision
        );
        last = e.revision;
        let (kind, name) = change_of(&e);
        assert_eq!(kind, ChangeType::Put);
        seen.push(name);
    }
    assert_eq!(seen, vec!["n2", "n3"]);

    let cidrs: BTreeSet<String> = [&n1, &n2, &n3]
        .iter()
        .map(|n| n.joined.node.as_ref().unwrap().pod_cidr.clone())
        .collect();
    assert_eq!(cidrs.len(), 3, "distinct pod CIDRs: {cidrs:?}");
    for c in &cidrs {
        let net: ipnet::IpNet = c.parse().unwrap();
        assert_eq!(net.prefix_len(), 24);
        assert!("10.244.0.0/16"
            .parse::<ipnet::IpNet>()
            .unwrap()
            .contains(&net));
    }
    let ids: BTreeSet<u64> = [&n1, &n2, &n3]
        .iter()
        .map(|n| n.joined.node.as_ref().unwrap().id)
        .collect();
    assert_eq!(ids.len(), 3);

    let nodes = admin(&cp)
        .await
        .list_nodes(ListNodesRequest {})
        .await
        .unwrap()
        .into_inner()
        .nodes;
    assert_eq!(
        nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
        ["n1", "n2", "n3"]
    );
    assert!(nodes.iter().all(|n| n.state == NodeState::Ready as i32));
    cp.stop().await.unwrap();
}

#[tokio::test]
async fn resuming_a_watch_yields_exactly_the_missed_events() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start(dir.path(), &[]).await;
    let (tok, hash) = token(&cp, 0, 0).await;
    let n1 = join(&cp, &tok, &hash, "n1", 1).await.unwrap();
    let mut c1 = n1.client().await;
    let mut watch = Events::new(
        c1.watch(WatchRequest { resume_revision: 0 })
            .await
            .unwrap()
            .into_inner(),
    );
    let snap = next_event(&mut watch).await;
    drop(watch);

    // Missed while disconnected: two joins, an update, a removal.
    join(&cp, &tok, &hash, "n2", 2).await.unwrap();
    let n3 = join(&cp, &tok, &hash, "n3", 3).await.unwrap();
    n3.client()
        .await
        .update_node(UpdateNodeRequest {
            node_name: "n3".into(),
            endpoints: vec!["192.0.2.33:51820".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    admin(&cp)
        .await
        .remove_node(RemoveNodeRequest { name: "n2".into() })
        .await
        .unwrap();

    let mut watch = Events::new(
        c1.watch(WatchRequest {
            resume_revision: snap.revision,
        })
        .await
        .unwrap()
        .into_inner(),
    );
    let mut got = vec![];
    let mut last = snap.revision;
    for _ in 0..4 {
        let e = next_change(&mut watch).await;
        assert!(e.revision > last);
        last = e.revision;
        got.push(change_of(&e));
    }
    assert_eq!(
        got,
        vec![
            (ChangeType::Put, "n2".to_string()),
            (ChangeType::Put, "n3".to_string()),
            (ChangeType::Put, "n3".to_string()),
            (ChangeType::Delete, "n2".to_string()),
        ]
    );
    // And nothing more: the next thing is a keepalive or a new change.
    assert!(watch.quiet(Duration::from_millis(300)).await);

    // Resuming from the latest revision gives nothing old.
    let mut w2 = Events::new(
        c1.watch(WatchRequest {
            resume_revision: last,
        })
        .await
        .unwrap()
        .into_inner(),
    );
    assert!(w2.quiet(Duration::from_millis(300)).await);
    cp.stop().await.unwrap();
}

#[tokio::test]
async fn keepalives_flow_on_an_idle_watch() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start(dir.path(), &["--watch-keepalive", "1"]).await;
    let (tok, hash) = token(&cp, 0, 0).await;
    let n1 = join(&cp, &tok, &hash, "n1", 1).await.unwrap();
    let mut watch = Events::new(
        n1.client()
            .await
            .watch(WatchRequest { resume_revision: 0 })
            .await
            .unwrap()
            .into_inner(),
    );
    let snap = next_event(&mut watch).await;
    let ka = next_event(&mut watch).await;
    assert!(
        matches!(ka.event, Some(watch_event::Event::Keepalive(_))),
        "{ka:?}"
    );
    assert_eq!(ka.revision, snap.revision);
    cp.stop().await.unwrap();
}

#[tokio::test]
async fn a_silent_node_turns_not_ready_then_is_removed_and_its_cidr_freed() {
    let dir = tempfile::tempdir().unwrap();
    // A pool of two node CIDRs, so the freed one is visibly reused.
    let cp = start(
        dir.path(),
        &[
            "--lease-ttl",
            "1",
            "--removal-grace",
            "1",
            "--cluster-cidr",
            "10.250.0.0/23",
            "--node-cidr-prefix",
            "24",
        ],
    )
    .await;
    let (tok, hash) = token(&cp, 0, 0).await;
    let live = join(&cp, &tok, &hash, "live", 1).await.unwrap();
    let silent = join(&cp, &tok, &hash, "silent", 2).await.unwrap();
    let silent_cidr = silent.joined.node.as_ref().unwrap().pod_cidr.clone();
    let mut live_client = live.client().await;
    let mut watch = Events::new(
        live_client
            .watch(WatchRequest { resume_revision: 0 })
            .await
            .unwrap()
            .into_inner(),
    );
    next_event(&mut watch).await;

    // Keep "live" renewing; "silent" never renews.
    let renew = tokio::spawn(async move {
        loop {
            let _ = live_client.renew_lease(RenewLeaseRequest {}).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let e = next_change(&mut watch).await;
    let Some(watch_event::Event::Change(c)) = &e.event else {
        panic!()
    };
    let Some(weft_proto::v1::change::Object::Node(n)) = &c.object else {
        panic!()
    };
    assert_eq!(
        (n.name.as_str(), n.state),
        ("silent", NodeState::NotReady as i32)
    );
    let e = next_change(&mut watch).await;
    assert_eq!(change_of(&e), (ChangeType::Delete, "silent".to_string()));

    // Its lease is gone: renewing says NOT_FOUND.
    let err = silent
        .client()
        .await
        .renew_lease(RenewLeaseRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    // Its CIDR is free again: a new node gets it.
    let newcomer = join(&cp, &tok, &hash, "newcomer", 3).await.unwrap();
    assert_eq!(newcomer.joined.node.unwrap().pod_cidr, silent_cidr);
    // "live" stayed Ready throughout.
    let n = admin(&cp)
        .await
        .get_node(GetNodeRequest {
            name: "live".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .node
        .unwrap();
    assert_eq!(n.state, NodeState::Ready as i32);
    renew.abort();
    cp.stop().await.unwrap();
}

#[tokio::test]
async fn a_not_ready_node_that_renews_is_ready_again() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start(dir.path(), &["--lease-ttl", "1", "--removal-grace", "60"]).await;
    let (tok, hash) = token(&cp, 0, 0).await;
    let n1 = join(&cp, &tok, &hash, "n1", 1).await.unwrap();
    let mut admin = admin(&cp).await;
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let n = admin
            .get_node(GetNodeRequest { name: "n1".into() })
            .await
            .unwrap()
            .into_inner()
            .node
            .unwrap();
        if n.state == NodeState::NotReady as i32 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "n1 never turned NotReady"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = n1
        .client()
        .await
        .renew_lease(RenewLeaseRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.state, NodeState::Ready as i32);
    assert_eq!(r.lease_ttl_seconds, 1);
    cp.stop().await.unwrap();
}

#[tokio::test]
async fn a_restart_keeps_nodes_cidrs_tokens_and_the_revision() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start(dir.path(), &[]).await;
    let (tok, hash) = token(&cp, 5, 0).await;
    let n1 = join(&cp, &tok, &hash, "n1", 1).await.unwrap();
    let n2 = join(&cp, &tok, &hash, "n2", 2).await.unwrap();
    let before = admin(&cp)
        .await
        .get_cluster_info(GetClusterInfoRequest {})
        .await
        .unwrap()
        .into_inner();

    let cp = restart(cp, dir.path(), &[]).await;
    let after = admin(&cp)
        .await
        .get_cluster_info(GetClusterInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.ca_cert_hash, before.ca_cert_hash, "same CA");
    assert!(
        after.revision >= before.revision,
        "revision never goes back"
    );
    assert_eq!(after.nodes_total, 2);
    assert_eq!(after.node_cidrs_free, before.node_cidrs_free);
    let tokens = admin(&cp)
        .await
        .list_tokens(ListTokensRequest {})
        .await
        .unwrap()
        .into_inner()
        .tokens;
    assert_eq!(tokens.len(), 1);
    assert_eq!((tokens[0].used, tokens[0].usages_left), (2, 3));

    // The old node credential still works, and the token still joins.
    n1.client()
        .await
        .renew_lease(RenewLeaseRequest {})
        .await
        .unwrap();
    let again = join(&cp, &tok, &hash, "n2", 2).await.unwrap();
    assert_eq!(
        again.joined.node.as_ref().unwrap().pod_cidr,
        n2.joined.node.as_ref().unwrap().pod_cidr
    );
    assert_eq!(
        again.joined.node.as_ref().unwrap().id,
        n2.joined.node.as_ref().unwrap().id
    );
    let n3 = join(&cp, &tok, &hash, "n3", 3).await.unwrap();
    let cidrs: BTreeSet<String> = [&n1, &n2, &n3]
        .iter()
        .map(|n| n.joined.node.as_ref().unwrap().pod_cidr.clone())
        .collect();
    assert_eq!(cidrs.len(), 3, "no CIDR handed out twice across a restart");
    cp.stop().await.unwrap();
}

#[tokio::test]
async fn rejoin_is_idempotent_and_a_live_name_with_another_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start(dir.path(), &[]).await;
    let (tok, hash) = token(&cp, 1, 0).await;
    let a = join(&cp, &tok, &hash, "n1", 1).await.unwrap();
    // Same name, same key: same id and CIDR, even though the token is now used up.
    let b = join(&cp, &tok, &hash, "n1", 1).await.unwrap();
    assert_eq!(
        a.joined.node.as_ref().unwrap().pod_cidr,
        b.joined.node.as_ref().unwrap().pod_cidr
    );
    assert_eq!(
        a.joined.node.as_ref().unwrap().id,
        b.joined.node.as_ref().unwrap().id
    );
    // Same name, another key, while n1 is Ready.
    let (tok2, _) = token(&cp, 0, 0).await;
    let e = join(&cp, &tok2, &hash, "n1", 9).await.err().unwrap();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    assert!(
        e.message().contains("n1") && e.message().contains("weftctl node remove"),
        "{}",
        e.message()
    );
    // The used-up token refuses a new node.
    let e = join(&cp, &tok, &hash, "n2", 2).await.err().unwrap();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("used up"), "{}", e.message());
    cp.stop().await.unwrap();
}

#[tokio::test]
async fn an_exhausted_pool_says_so_and_frees_up_after_a_removal() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start(
        dir.path(),
        &[
            "--cluster-cidr",
            "10.250.0.0/23",
            "--node-cidr-prefix",
            "24",
        ],
    )
    .await;
    let (tok, hash) = token(&cp, 0, 0).await;
    join(&cp, &tok, &hash, "a", 1).await.unwrap();
    join(&cp, &tok, &hash, "b", 2).await.unwrap();
    let e = join(&cp, &tok, &hash, "c", 3).await.err().unwrap();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(
        e.message().contains("10.250.0.0/23") && e.message().contains("/24"),
        "{}",
        e.message()
    );
    let info = admin(&cp)
        .await
        .get_cluster_info(GetClusterInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!((info.node_cidrs_total, info.node_cidrs_free), (2, 0));
    admin(&cp)
        .await
        .remove_node(RemoveNodeRequest { name: "a".into() })
        .await
        .unwrap();
    join(&cp, &tok, &hash, "c", 3).await.unwrap();
    cp.stop().await.unwrap();
}

#[tokio::test]
async fn concurrent_joins_never_share_a_cidr() {
    let dir = tempfile::tempdir().unwrap();
    let cp = std::sync::Arc::new(start(dir.path(), &[]).await);
    let (tok, hash) = token(&cp, 0, 0).await;
    let mut tasks = vec![];
    for i in 0..40u8 {
        let (cp, tok, hash) = (cp.clone(), tok.clone(), hash.clone());
        tasks.push(tokio::spawn(async move {
            join(&cp, &tok, &hash, &format!("n{i}"), i + 1)
                .await
                .unwrap()
                .joined
                .node
                .unwrap()
                .pod_cidr
        }));
    }
    let mut cidrs = BTreeSet::new();
    for t in tasks {
        assert!(cidrs.insert(t.await.unwrap()), "duplicate CIDR");
    }
    assert_eq!(cidrs.len(), 40);
}

#[tokio::test]
async fn tokens_expire_and_can_be_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start(dir.path(), &[]).await;
    let (short, hash) = token(&cp, 0, 1).await;
    let (revoked, _) = token(&cp, 0, 0).await;
    let id = revoked.split('.').next().unwrap().to_string();
    admin(&cp)
        .await
        .revoke_token(RevokeTokenRequest { id: id.clone() })
        .await
        .unwrap();
    let e = join(&cp, &revoked, &hash, "n1", 1).await.err().unwrap();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("revoked"), "{}", e.message());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let e = join(&cp, &short, &hash, "n1", 1).await.err().unwrap();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("expired"), "{}", e.message());
    let e = admin(&cp)
        .await
        .revoke_token(RevokeTokenRequest {
            id: "zzzzzz".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let nodes = admin(&cp)
        .await
        .list_nodes(ListNodesRequest {})
        .await
        .unwrap()
        .into_inner()
        .nodes;
    assert!(nodes.is_empty(), "refused joins changed nothing");
    cp.stop().await.unwrap();
}

#[tokio::test]
async fn bad_join_requests_are_refused_precisely_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start(dir.path(), &[]).await;
    let (tok, hash) = token(&cp, 0, 0).await;
    let (id, _) = tok.split_once('.').unwrap();
    let (_, csr) = weft_client::generate_csr("x").unwrap();
    let mut c = pinned(&cp, &hash).await;
    let good_key = key(1);
    let short_key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [1u8; 31]);
    let unknown = "abcdef.0123456789abcdef".to_string();
    let wrong_secret = format!("{id}.0123456789abcdef");
    let cases: Vec<(String, &str, &str, &str, Code, &str)> = vec![
        (
            tok.clone(),
            "n1",
            "not-base64!",
            &csr,
            Code::InvalidArgument,
            "base64",
        ),
        (
            tok.clone(),
            "n1",
            &short_key,
            &csr,
            Code::InvalidArgument,
            "31 bytes",
        ),
        (
            tok.clone(),
            "",
            &good_key,
            &csr,
            Code::InvalidArgument,
            "empty",
        ),
        (
            tok.clone(),
            "Bad_Name",
            &good_key,
            &csr,
            Code::InvalidArgument,
            "DNS-1123",
        ),
        (
            tok.clone(),
            "n1",
            &good_key,
            "",
            Code::InvalidArgument,
            "csr_pem",
        ),
        (
            tok.clone(),
            "n1",
            &good_key,
            "garbage",
            Code::InvalidArgument,
            "certificate signing request",
        ),
        (
            unknown,
            "n1",
            &good_key,
            &csr,
            Code::Unauthenticated,
            "not known",
        ),
        (
            wrong_secret,
            "n1",
            &good_key,
            &csr,
            Code::Unauthenticated,
            "wrong secret",
        ),
        (
            "nodot".into(),
            "n1",
            &good_key,
            &csr,
            Code::Unauthenticated,
            "malformed",
        ),
    ];
    for (token, name, key, csr, code, want) in cases {
        let e = c
            .join(join_request(&token, name, key, csr))
            .await
            .unwrap_err();
        assert_eq!(e.code(), code, "{name} {key} {token}: {e:?}");
        assert!(
            e.message().contains(want),
            "want {want:?} in {:?}",
            e.message()
        );
    }
    let mut bad_endpoint = join_request(&tok, "n1", &good_key, &csr);
    bad_endpoint.endpoints = vec!["nope".into()];
    let e = c.join(bad_endpoint).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("ip:port"), "{}", e.message());

    let info = admin(&cp)
        .await
        .get_cluster_info(GetClusterInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.nodes_total, 0);
    let t = &admin(&cp)
        .await
        .list_tokens(ListTokensRequest {})
        .await
        .unwrap()
        .into_inner()
        .tokens[0];
    assert_eq!(t.used, 0, "no usage spent on refused joins");
    cp.stop().await.unwrap();
}

#[tokio::test]
async fn wrong_ca_pin_is_refused_by_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start(dir.path(), &[]).await;
    let wrong = format!("sha256:{}", "0".repeat(64));
    let e = weft_client::connect_pinned(&cp.addr.to_string(), &wrong)
        .await
        .expect_err("must refuse");
    assert!(
        matches!(e, weft_client::ClientError::CaPinMismatch { .. }),
        "{e}"
    );
    cp.stop().await.unwrap();
}

#[tokio::test]
async fn credentials_are_checked_for_every_call() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start(dir.path(), &[]).await;
    let (tok, hash) = token(&cp, 0, 0).await;
    let n1 = join(&cp, &tok, &hash, "n1", 1).await.unwrap();
    join(&cp, &tok, &hash, "n2", 2).await.unwrap();

    // No credential: node calls and admin calls are UNAUTHENTICATED.
    let mut anon = pinned(&cp, &hash).await;
    assert_eq!(
        anon.renew_lease(RenewLeaseRequest {})
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    assert_eq!(
        anon.watch(WatchRequest::default())
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    let (ch, _) = weft_client::connect_pinned(&cp.addr.to_string(), &hash)
        .await
        .unwrap();
    let mut anon_admin = weft_proto::v1::admin_client::AdminClient::new(ch);
    let e = anon_admin
        .list_nodes(ListNodesRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("admin"), "{}", e.message());

    // A node may not change another node, nor call Admin.
    let mut c1 = n1.client().await;
    let e = c1
        .update_node(UpdateNodeRequest {
            node_name: "n2".into(),
            endpoints: vec!["192.0.2.9:1".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = c1
        .leave(LeaveRequest {
            node_name: "n2".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let mut node_admin = weft_proto::v1::admin_client::AdminClient::new(
        weft_client::connect(&n1.creds).await.unwrap(),
    );
    let e = node_admin
        .list_nodes(ListNodesRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    // n2 is untouched.
    let n2 = admin(&cp)
        .await
        .get_node(GetNodeRequest { name: "n2".into() })
        .await
        .unwrap()
        .into_inner()
        .node
        .unwrap();
    assert_eq!(n2.endpoints, vec![endpoint(2)]);

    // A node may change itself; bad values are refused.
    let e = c1
        .update_node(UpdateNodeRequest {
            node_name: "n1".into(),
            public_key: "short".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let n = c1
        .update_node(UpdateNodeRequest {
            node_name: "n1".into(),
            public_key: key(7),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .node
        .unwrap();
    assert_eq!(n.public_key, key(7));
    // And leave.
    c1.leave(LeaveRequest {
        node_name: "n1".into(),
    })
    .await
    .unwrap();
    let e = admin(&cp)
        .await
        .get_node(GetNodeRequest { name: "n1".into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    cp.stop().await.unwrap();
}

#[tokio::test]
async fn health_and_reflection_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start(dir.path(), &[]).await;
    let creds = weft_client::Credentials::load(cp.admin_conf()).unwrap();
    let ch = weft_client::connect(&creds).await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(ch.clone());
    let r = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "weft.v1.Cluster".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let mut refl = ServerReflectionClient::new(ch);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut resp = refl
        .server_reflection_info(futures::stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let msg = resp.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = msg.message_response else {
        panic!("{msg:?}")
    };
    let names: BTreeSet<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in ["weft.v1.Cluster", "weft.v1.Admin", "grpc.health.v1.Health"] {
        assert!(names.contains(want), "{want} missing from {names:?}");
    }
    cp.stop().await.unwrap();
}

#[tokio::test]
async fn concurrent_joins_spend_a_limited_token_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let cp = std::sync::Arc::new(start(dir.path(), &[]).await);
    let (tok, hash) = token(&cp, 5, 0).await;
    let mut tasks = vec![];
    for i in 0..20u8 {
        let (cp, tok, hash) = (cp.clone(), tok.clone(), hash.clone());
        tasks.push(tokio::spawn(async move {
            join(&cp, &tok, &hash, &format!("n{i}"), i + 1).await
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
    let t = &admin(&cp)
        .await
        .list_tokens(ListTokensRequest {})
        .await
        .unwrap()
        .into_inner()
        .tokens[0];
    assert_eq!((t.used, t.usages_left), (5, 0));
    let info = admin(&cp)
        .await
        .get_cluster_info(GetClusterInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.nodes_total, 5);
}

#[tokio::test]
async fn concurrent_joins_of_one_name_with_different_keys_have_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let cp = std::sync::Arc::new(start(dir.path(), &[]).await);
    let (tok, hash) = token(&cp, 0, 0).await;
    let mut tasks = vec![];
    for i in 0..10u8 {
        let (cp, tok, hash) = (cp.clone(), tok.clone(), hash.clone());
        tasks.push(tokio::spawn(async move {
            join(&cp, &tok, &hash, "same", i + 1).await
        }));
    }
    let (mut ok, mut exists) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) if e.code() == Code::AlreadyExists => exists += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!((ok, exists), (1, 9));
    let info = admin(&cp)
        .await
        .get_cluster_info(GetClusterInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!((info.nodes_total, info.node_cidrs_free), (1, 255));
}

#[tokio::test]
async fn a_large_snapshot_comes_in_parts_and_a_resume_ahead_of_the_head_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cp = std::sync::Arc::new(start(dir.path(), &["--cluster-cidr", "10.128.0.0/14"]).await);
    let (tok, hash) = token(&cp, 0, 0).await;
    let n = weft_control_plane::service::SNAPSHOT_PART + 10;
    let mut tasks = vec![];
    for i in 0..n {
        let (cp, tok, hash) = (cp.clone(), tok.clone(), hash.clone());
        tasks.push(tokio::spawn(async move {
            join(&cp, &tok, &hash, &format!("n{i}"), (i % 250) as u8 + 1)
                .await
                .unwrap()
        }));
    }
    let mut first = None;
    for t in tasks {
        let node = t.await.unwrap();
        first.get_or_insert(node);
    }
    let node = first.unwrap();
    let mut c = node.client().await;
    let mut s = c
        .watch(WatchRequest { resume_revision: 0 })
        .await
        .unwrap()
        .into_inner();
    let mut names = BTreeSet::new();
    let mut parts = 0;
    let mut rev = None;
    loop {
        let r = tokio::time::timeout(T, s.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(r.events.len(), 1, "one snapshot part per response");
        let e = &r.events[0];
        assert_eq!(
            *rev.get_or_insert(e.revision),
            e.revision,
            "all parts at one revision"
        );
        let Some(watch_event::Event::Snapshot(snap)) = &e.event else {
            panic!("{e:?}")
        };
        assert!(snap.nodes.len() <= weft_control_plane::service::SNAPSHOT_PART);
        assert_eq!(
            snap.settings.is_some(),
            parts == 0,
            "settings in the first part only"
        );
        parts += 1;
        names.extend(snap.nodes.iter().map(|n| n.name.clone()));
        if !snap.more {
            break;
        }
    }
    assert_eq!(parts, 2);
    assert_eq!(names.len(), n);

    let e = c
        .watch(WatchRequest {
            resume_revision: rev.unwrap() + 1000,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "{e:?}");
    assert!(e.message().contains("ahead"), "{}", e.message());
}
