//! What a node may announce, over real TLS gRPC (issue 10, items 5 and 7):
//! endpoints that no peer should send WireGuard to and small-order keys are
//! refused with INVALID_ARGUMENT and the reason; oversized input gets a
//! short message, and a request over the message-size limit gets
//! RESOURCE_EXHAUSTED (gRPC's code for it), not OUT_OF_RANGE.

mod support;

use base64::Engine;
use support::*;
use tonic::Code;
use weft_control_plane::model::LOW_ORDER_POINTS;
use weft_proto::v1::{GetClusterInfoRequest, JoinRequest, UpdateNodeRequest};

async fn join_with(
    cp: &weft_control_plane::server::Running,
    hash: &str,
    req: JoinRequest,
) -> tonic::Status {
    pinned(cp, hash).await.join(req).await.unwrap_err()
}

#[tokio::test]
async fn unusable_endpoints_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    // Listening on loopback would allow loopback endpoints (a one-host
    // cluster); this cluster says no.
    let cp = start(dir.path(), &["--allow-loopback-endpoints=false"]).await;
    let (tok, hash) = token(&cp, 0, 0).await;
    let n1 = join(&cp, &tok, &hash, "n1", 1).await.unwrap();
    let (_, csr) = weft_client::generate_csr("x").unwrap();
    let own = cp.addr.to_string();
    let cases = [
        ("127.0.0.1:51820", "loopback"),
        ("[::1]:51820", "loopback"),
        ("255.255.255.255:51820", "broadcast"),
        ("224.0.0.5:51820", "multicast"),
        ("0.0.0.0:51820", "unspecified"),
        ("169.254.10.1:51820", "link-local"),
        ("[fe80::1]:51820", "link-local"),
        (own.as_str(), "loopback"),
        ("192.0.2.1:51820", "already the endpoint of another node"),
        ("192.0.2.5:0", "port 0"),
    ];
    for (ep, why) in cases {
        let mut req = join_request(&tok, "x", &key(9), &csr);
        req.endpoints = vec![ep.to_string()];
        let e = join_with(&cp, &hash, req).await;
        assert_eq!(e.code(), Code::InvalidArgument, "{ep}: {e:?}");
        assert!(
            e.message().contains(why),
            "{ep}: want {why:?} in {}",
            e.message()
        );
        // UpdateNode applies the same rules.
        let e = n1
            .client()
            .await
            .update_node(UpdateNodeRequest {
                node_name: "n1".into(),
                endpoints: vec![ep.to_string()],
                ..Default::default()
            })
            .await;
        if ep == "192.0.2.1:51820" {
            // n1's own endpoint is fine for n1.
            e.unwrap();
            continue;
        }
        let e = e.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "update to {ep}: {e:?}");
    }
    let info = admin(&cp)
        .await
        .get_cluster_info(GetClusterInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.nodes_total, 1, "nothing joined");
    cp.stop().await.unwrap();
}

#[tokio::test]
async fn the_control_planes_own_address_is_not_a_node_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    // On loopback, loopback endpoints are fine (every node on this host),
    // but never the control plane's own address.
    let cp = start(dir.path(), &[]).await;
    let (tok, hash) = token(&cp, 0, 0).await;
    let (_, csr) = weft_client::generate_csr("x").unwrap();
    let mut req = join_request(&tok, "x", &key(9), &csr);
    req.endpoints = vec![cp.addr.to_string()];
    let e = join_with(&cp, &hash, req.clone()).await;
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().contains("control plane's own address"),
        "{}",
        e.message()
    );
    req.endpoints = vec![format!("127.0.0.1:{}", cp.addr.port() ^ 1)];
    pinned(&cp, &hash).await.join(req).await.unwrap();
    cp.stop().await.unwrap();
}

#[tokio::test]
async fn small_order_keys_are_refused_on_join_and_update() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start(dir.path(), &[]).await;
    let (tok, hash) = token(&cp, 0, 0).await;
    let n1 = join(&cp, &tok, &hash, "n1", 1).await.unwrap();
    let (_, csr) = weft_client::generate_csr("x").unwrap();
    let mut tried = 0;
    for point in LOW_ORDER_POINTS {
        for high in [0u8, 0x80] {
            let mut p = point;
            p[31] |= high;
            let k = base64::engine::general_purpose::STANDARD.encode(p);
            let mut req = join_request(&tok, "x", &k, &csr);
            req.endpoints = vec![endpoint(9)];
            let e = join_with(&cp, &hash, req).await;
            assert_eq!(e.code(), Code::InvalidArgument, "{k}: {e:?}");
            assert!(e.message().contains("small-order"), "{}", e.message());
            let e = n1
                .client()
                .await
                .update_node(UpdateNodeRequest {
                    node_name: "n1".into(),
                    public_key: k.clone(),
                    ..Default::default()
                })
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "update to {k}: {e:?}");
            tried += 1;
        }
    }
    assert_eq!(tried, 14);
    cp.stop().await.unwrap();
}

#[tokio::test]
async fn a_huge_name_gets_a_short_invalid_argument() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start(dir.path(), &[]).await;
    let (tok, hash) = token(&cp, 0, 0).await;
    let (_, csr) = weft_client::generate_csr("x").unwrap();
    let name = "n".repeat(1 << 20);
    let e = join_with(&cp, &hash, join_request(&tok, &name, &key(1), &csr)).await;
    assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
    assert!(e.message().len() < 400, "{} bytes", e.message().len());
    assert!(e.message().contains("(1048576 bytes)"), "{}", e.message());
    // The same for a huge key, endpoint and label.
    let mut req = join_request(&tok, "x", &"k".repeat(1 << 20), &csr);
    let e = join_with(&cp, &hash, req.clone()).await;
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().len() < 400, "{} bytes", e.message().len());
    req.public_key = key(1);
    req.endpoints = vec!["e".repeat(1 << 20)];
    let e = join_with(&cp, &hash, req.clone()).await;
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().len() < 400, "{} bytes", e.message().len());
    req.endpoints = vec![endpoint(1)];
    req.labels.insert("l".repeat(1 << 20), "v".into());
    let e = join_with(&cp, &hash, req).await;
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().len() < 400, "{} bytes", e.message().len());
    cp.stop().await.unwrap();
}

#[tokio::test]
async fn a_request_over_the_size_limit_is_resource_exhausted() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start(dir.path(), &[]).await;
    let (tok, hash) = token(&cp, 0, 0).await;
    let (_, csr) = weft_client::generate_csr("x").unwrap();
    let name = "n".repeat(5 << 20);
    let e = join_with(&cp, &hash, join_request(&tok, &name, &key(1), &csr)).await;
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("at most 4194304"), "{}", e.message());
    // The connection's server still serves.
    join(&cp, &tok, &hash, "n1", 1).await.unwrap();
    cp.stop().await.unwrap();
}
