//! Shared helpers for the control plane's integration tests: a real server on
//! 127.0.0.1:0 over TLS, admin and node clients made the way weftctl and the
//! agent make them.

#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use tonic::transport::Channel;
use weft_client::Credentials;
use weft_control_plane::config::{Config, Settings};
use weft_control_plane::server::{self, Running};
use weft_proto::v1::admin_client::AdminClient;
use weft_proto::v1::cluster_client::ClusterClient;
use weft_proto::v1::{CreateTokenRequest, JoinRequest, JoinResponse};

use clap::Parser;

pub(crate) mod objects;

/// Settings for a test server in `dir`, with extra flags.
pub(crate) fn settings(dir: &Path, extra: &[&str]) -> Settings {
    let state = dir.to_str().unwrap().to_string();
    let mut args = vec![
        "weft-control-plane",
        "--listen",
        "127.0.0.1:0",
        "--state-dir",
        &state,
    ];
    args.extend_from_slice(extra);
    Config::try_parse_from(args).unwrap().validate().unwrap()
}

pub(crate) async fn start(dir: &Path, extra: &[&str]) -> Running {
    server::spawn(settings(dir, extra))
        .await
        .expect("control plane starts")
}

/// Restart on the same port and state dir.
pub(crate) async fn restart(old: Running, dir: &Path, extra: &[&str]) -> Running {
    let addr = old.addr;
    old.stop().await.expect("clean stop");
    let mut s = settings(dir, extra);
    s.listen = addr;
    s.advertise = addr.to_string();
    // The port may take a moment to be free again.
    for _ in 0..50 {
        match server::spawn(s.clone()).await {
            Ok(r) => return r,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("control plane did not restart on {addr}");
}

pub(crate) async fn admin(cp: &Running) -> AdminClient<Channel> {
    let creds = Credentials::load(cp.admin_conf()).unwrap();
    AdminClient::new(weft_client::connect(&creds).await.unwrap())
}

pub(crate) async fn token(cp: &Running, usages: u32, ttl: u64) -> (String, String) {
    let r = admin(cp)
        .await
        .create_token(CreateTokenRequest {
            ttl_seconds: ttl,
            usages,
            description: "test".into(),
        })
        .await
        .unwrap()
        .into_inner();
    (r.token_string, r.ca_cert_hash)
}

/// A distinct endpoint per key seed: no two nodes may share one.
pub(crate) fn endpoint(seed: u8) -> String {
    format!("192.0.2.{seed}:51820")
}

pub(crate) fn key(seed: u8) -> String {
    base64::engine::general_purpose::STANDARD.encode([seed; 32])
}

/// A joined test node: its credentials and a client with them.
pub(crate) struct TestNode {
    pub name: String,
    pub creds: Credentials,
    pub joined: JoinResponse,
}

impl TestNode {
    pub(crate) async fn client(&self) -> ClusterClient<Channel> {
        ClusterClient::new(weft_client::connect(&self.creds).await.unwrap())
    }
}

pub(crate) fn join_request(token: &str, name: &str, key: &str, csr: &str) -> JoinRequest {
    JoinRequest {
        token: token.into(),
        node_name: name.into(),
        public_key: key.into(),
        endpoints: vec!["192.0.2.10:51820".into()],
        labels: Default::default(),
        csr_pem: csr.into(),
    }
}

/// A client for Join, pinning the CA by hash, as the agent does.
pub(crate) async fn pinned(cp: &Running, ca_hash: &str) -> ClusterClient<Channel> {
    let (ch, _) = weft_client::connect_pinned(&cp.addr.to_string(), ca_hash)
        .await
        .unwrap();
    ClusterClient::new(ch)
}

/// Join `name` with `key(key_seed)` at `endpoint(key_seed)`.
pub(crate) async fn join(
    cp: &Running,
    token: &str,
    ca_hash: &str,
    name: &str,
    key_seed: u8,
) -> Result<TestNode, tonic::Status> {
    let (key_pem, csr) = weft_client::generate_csr(name).unwrap();
    let mut req = join_request(token, name, &key(key_seed), &csr);
    req.endpoints = vec![endpoint(key_seed)];
    let r = pinned(cp, ca_hash).await.join(req).await?.into_inner();
    let creds = Credentials {
        server: cp.addr.to_string(),
        ca_pem: r.ca_pem.clone(),
        cert_pem: r.certificate_pem.clone(),
        key_pem,
        name: name.into(),
    };
    Ok(TestNode {
        name: name.into(),
        creds,
        joined: r,
    })
}
