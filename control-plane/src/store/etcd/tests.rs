//! Tests of what only the etcd store does, on real etcd processes started
//! on loopback: key prefixes, TLS with client certificates, an unreachable
//! etcd, a watch resumed across a member's restart, and quorum loss. The
//! [`Store`] contract itself is tested in `store/suite.rs`.

use std::time::Duration;

use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};

use super::local::{LocalEtcd, LocalEtcdTls};
use super::{prefix_end, EtcdOptions, EtcdStore, EtcdTls, DEFAULT_PREFIX};
use crate::store::suite::{assert_quiet, put, put_op, revisions, take};
use crate::store::{Store, StoreError, Txn};

async fn connect(options: EtcdOptions) -> EtcdStore {
    EtcdStore::connect(options).await.unwrap()
}

/// A write that retries while etcd recovers (bounded).
async fn put_eventually(store: &EtcdStore, key: &str) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let txn = Txn {
            compares: vec![],
            ops: vec![put_op(key, "v")],
        };
        match store.txn(txn).await {
            Ok(o) => return o.revision,
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "retrying a write");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("etcd did not recover: {e}"),
        }
    }
}

#[tokio::test]
async fn prefixes_keep_clusters_apart() {
    let etcd = LocalEtcd::start(1).await.unwrap();
    let mut a = etcd.options();
    a.prefix = "/weft/a/".into();
    let mut b = etcd.options();
    b.prefix = "/weft/b/".into();
    let (a, b) = (connect(a).await, connect(b).await);
    let start = a.revision().await.unwrap();
    let mut wa = a.watch("", start).await.unwrap();

    let ra = put(&a, "nodes/x", "a").await.revision;
    let rb = put(&b, "nodes/x", "b").await.revision;
    let ra2 = put(&a, "nodes/y", "a").await.revision;
    // Revisions are etcd's: the other cluster's write took one in between.
    assert_eq!((ra, rb, ra2), (start + 1, start + 2, start + 3));
    assert_eq!(a.get("nodes/x").await.unwrap().unwrap().value, b"a");
    assert_eq!(b.get("nodes/x").await.unwrap().unwrap().value, b"b");
    let (kvs, _) = a.range("").await.unwrap();
    let keys: Vec<_> = kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["nodes/x", "nodes/y"]);
    let evs = take(&mut wa, 2).await;
    assert_eq!(revisions(&evs), [ra, ra2]);
    assert_quiet(&mut wa).await;
    assert_eq!(a.describe(), format!("{}/weft/a/", etcd.store_url()));
}

/// CA, server (127.0.0.1) and client certificates in `dir`.
fn make_tls(dir: &std::path::Path) -> LocalEtcdTls {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose, name: &str| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &issuer).unwrap();
        let (c, k) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    };
    let (server_cert, server_key) = leaf(
        vec!["127.0.0.1".into(), "localhost".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
        "server",
    );
    let (client_cert, client_key) = leaf(
        vec!["weft".into()],
        ExtendedKeyUsagePurpose::ClientAuth,
        "client",
    );
    let ca = dir.join("ca.crt");
    std::fs::write(&ca, ca_cert.pem()).unwrap();
    LocalEtcdTls {
        server_cert,
        server_key,
        ca,
        client_cert,
        client_key,
    }
}

#[tokio::test]
async fn tls_with_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let tls = make_tls(dir.path());
    let etcd = LocalEtcd::start_with(1, Some(tls.clone())).await.unwrap();
    let store = connect(etcd.options()).await;
    let rev = put(&store, "k", "v").await.revision;
    assert_eq!(store.get("k").await.unwrap().unwrap().mod_revision, rev);

    // Without a client certificate etcd refuses the connection.
    let mut no_cert = etcd.options();
    no_cert.request_timeout = Duration::from_secs(2);
    no_cert.tls = Some(EtcdTls {
        ca: tls.ca.clone(),
        cert: None,
        key: None,
    });
    let err = EtcdStore::connect(no_cert).await.unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
    // Plain HTTP to a TLS port fails too.
    let mut plain = etcd.options();
    plain.request_timeout = Duration::from_secs(2);
    plain.tls = None;
    assert!(EtcdStore::connect(plain).await.is_err());
    // A certificate without its key is a clear error.
    let mut half = etcd.options();
    half.tls = Some(EtcdTls {
        ca: tls.ca.clone(),
        cert: Some(tls.client_cert.clone()),
        key: None,
    });
    let err = EtcdStore::connect(half).await.unwrap_err();
    assert!(err.to_string().contains("needs its key"), "{err}");
}

#[tokio::test]
async fn an_unreachable_etcd_is_an_open_error_naming_it() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut options = EtcdOptions::new(vec![format!("127.0.0.1:{port}")]);
    options.request_timeout = Duration::from_secs(1);
    let started = std::time::Instant::now();
    let err = EtcdStore::connect(options).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    match &err {
        StoreError::Open { path, .. } => assert!(path.contains(&port.to_string()), "{err}"),
        other => panic!("expected Open, got {other}"),
    }
}

#[tokio::test]
async fn a_watch_resumes_across_a_member_restart() {
    let mut etcd = LocalEtcd::start(1).await.unwrap();
    let store = connect(etcd.options()).await;
    let start = store.revision().await.unwrap();
    let mut w = store.watch("k/", start).await.unwrap();
    let mut expected = Vec::new();
    for i in 0..3 {
        expected.push(put(&store, &format!("k/{i}"), "v").await.revision);
    }
    assert_eq!(revisions(&take(&mut w, 3).await), expected);

    // The only member dies and comes back: the stream resumes by itself.
    etcd.kill(0);
    etcd.restart(0).await.unwrap();
    for i in 3..6 {
        expected.push(put_eventually(&store, &format!("k/{i}")).await);
    }
    assert_eq!(revisions(&take(&mut w, 3).await), expected[3..]);
    assert_quiet(&mut w).await;
}

#[tokio::test]
async fn quorum_loss_fails_writes_as_unavailable_and_reads_go_on() {
    let mut etcd = LocalEtcd::start(3).await.unwrap();
    let mut options = etcd.options();
    options.request_timeout = Duration::from_secs(2);
    let store = connect(options).await;
    put(&store, "k", "before").await;

    etcd.kill(1);
    etcd.kill(2);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let err = loop {
        let txn = Txn {
            compares: vec![],
            ops: vec![put_op("k", "during")],
        };
        match store.txn(txn).await {
            // A write that raced the kill may still have made it.
            Ok(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Ok(_) => panic!("writes still succeed without quorum"),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("etcd"), "{err}");
    // Reads go on (serializable, from the surviving member).
    assert!(store.get("k").await.unwrap().is_some());
    assert!(store.range("").await.is_ok());

    etcd.restart(1).await.unwrap();
    etcd.restart(2).await.unwrap();
    put_eventually(&store, "after").await;
    assert_eq!(store.get("after").await.unwrap().unwrap().value, b"v");
}

#[test]
fn urls_parse_and_bad_ones_say_why() {
    let o = EtcdOptions::from_url("etcd://10.0.0.1:2379,etcd-b:2379, [::1]:2379").unwrap();
    assert_eq!(o.endpoints, ["10.0.0.1:2379", "etcd-b:2379", "[::1]:2379"]);
    assert_eq!(o.prefix, DEFAULT_PREFIX);
    for (bad, why) in [
        ("redb", "expected etcd://"),
        ("etcd://", "not host:port"),
        ("etcd://host", "not host:port"),
        ("etcd://host:0", "bad port"),
        ("etcd://host:99999", "bad port"),
        ("etcd://:2379", "bad host"),
        ("etcd://a/b:2379", "bad host"),
        ("etcd://a:1,,b:2", "not host:port"),
    ] {
        let e = EtcdOptions::from_url(bad).unwrap_err();
        assert!(e.contains(why), "{bad}: {e}");
    }
}

#[test]
fn prefixes_end_with_a_slash() {
    assert!(EtcdOptions::check_prefix("/weft/").is_ok());
    assert!(EtcdOptions::check_prefix("clusters/a/").is_ok());
    for bad in ["", "/weft", "/we ft/", "/a\n/"] {
        assert!(EtcdOptions::check_prefix(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn prefix_end_is_the_next_key() {
    assert_eq!(prefix_end(b"/weft/"), b"/weft0");
    assert_eq!(prefix_end(b"a\xff"), b"b");
    assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
}
