//! Shared harness of the agent core's tests: a real control plane over TLS
//! on 127.0.0.1:0 (`weft_control_plane::server::spawn`), agent cores with
//! fast timings, and a recording fake data plane ([`RecordingSink`], the
//! "mock controller" pattern turned around: a fake on the far side of the
//! core, recording what it is told).
//!
//! Every wait is bounded ([`eventually`], [`WAIT`]).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser as _;
use futures::future::BoxFuture;
use tokio::sync::watch;
use tonic::transport::Channel;
use weft_client::Credentials;
use weft_control_plane::config::{Config, Settings};
use weft_control_plane::server::{self, Running};
use weft_node_agent::cluster::{
    ClusterError, Membership, MembershipConfig, PeerSink, PeerSinkError, Timing,
};
use weft_node_agent::engine::PeerSpec;
use weft_proto::v1::admin_client::AdminClient;
use weft_proto::v1::{CreateTokenRequest, ListNodesRequest, Node};

/// The longest any test waits for one condition.
pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// Settings for a control plane in `dir`, with extra flags.
pub(crate) fn cp_settings(dir: &Path, extra: &[&str]) -> Settings {
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

/// A control plane in `dir` on a free port.
pub(crate) async fn start_cp(dir: &Path) -> Running {
    server::spawn(cp_settings(dir, &[]))
        .await
        .expect("control plane starts")
}

/// Restart a control plane on the same port and state dir.
pub(crate) async fn restart_cp(old: Running, dir: &Path) -> Running {
    let addr = old.addr;
    old.stop().await.expect("clean stop");
    respawn_cp(addr, dir).await
}

/// Start a control plane on `addr` again (after it was stopped).
pub(crate) async fn respawn_cp(addr: std::net::SocketAddr, dir: &Path) -> Running {
    let mut s = cp_settings(dir, &[]);
    s.listen = addr;
    s.advertise = addr.to_string();
    for _ in 0..100 {
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

/// An unlimited token and the CA hash.
pub(crate) async fn token(cp: &Running) -> (String, String) {
    let r = admin(cp)
        .await
        .create_token(CreateTokenRequest {
            ttl_seconds: 3600,
            usages: 0,
            description: "agent test".into(),
        })
        .await
        .unwrap()
        .into_inner();
    (r.token_string, r.ca_cert_hash)
}

pub(crate) async fn list_nodes(cp: &Running) -> Vec<Node> {
    admin(cp)
        .await
        .list_nodes(ListNodesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .nodes
}

/// Timings for tests: quick retries, short waits.
pub(crate) fn fast_timing() -> Timing {
    Timing {
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        rpc_timeout: Duration::from_secs(3),
        watch_idle_timeout: Duration::from_secs(30),
        persist_debounce: Duration::from_millis(50),
        sink_retry: Duration::from_millis(200),
        first_join: Duration::from_secs(30),
        view_persist: Duration::from_millis(50),
    }
}

/// A core config for node `name` in `state_dir`.
pub(crate) fn core_config(
    cp: std::net::SocketAddr,
    state_dir: &Path,
    name: &str,
    join: Option<(&str, &str)>,
) -> MembershipConfig {
    MembershipConfig {
        control_plane: cp.to_string(),
        token: join.map(|(t, _)| t.parse().unwrap()),
        ca_hash: join.map(|(_, h)| h.to_string()),
        name: name.to_string(),
        endpoint: Some(endpoint_of(name)),
        state_dir: state_dir.to_path_buf(),
        mtu: 1420,
        listen_port: 51820,
        timing: fast_timing(),
    }
}

/// A distinct loopback endpoint per node name.
pub(crate) fn endpoint_of(name: &str) -> std::net::SocketAddr {
    let n = name.bytes().fold(0u8, u8::wrapping_add);
    format!("127.0.{n}.1:51820").parse().unwrap()
}

/// A fake data plane: keeps the peer set it was told, and every call.
#[derive(Default)]
pub(crate) struct RecordingSink {
    state: Mutex<SinkState>,
    changed: tokio::sync::Notify,
}

#[derive(Default, Clone)]
pub(crate) struct SinkState {
    pub peers: BTreeMap<String, PeerSpec>,
    /// "set_peers", "set_peer <name>", "remove_peer <name>", in order.
    pub calls: Vec<String>,
}

impl RecordingSink {
    pub(crate) fn snapshot(&self) -> SinkState {
        self.state.lock().unwrap().clone()
    }

    pub(crate) fn names(&self) -> Vec<String> {
        self.snapshot().peers.keys().cloned().collect()
    }

    pub(crate) fn count(&self, call: &str) -> usize {
        self.snapshot()
            .calls
            .iter()
            .filter(|c| c.as_str() == call)
            .count()
    }

    /// Waits until `pred` holds for the sink's peer set.
    pub(crate) async fn wait_for(
        &self,
        what: &str,
        pred: impl Fn(&BTreeMap<String, PeerSpec>) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let notified = self.changed.notified();
            if pred(&self.state.lock().unwrap().peers) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("timed out waiting for {what}; peers: {:?}", self.names());
            }
        }
    }

    fn record(&self, f: impl FnOnce(&mut SinkState)) {
        f(&mut self.state.lock().unwrap());
        self.changed.notify_waiters();
    }
}

impl PeerSink for RecordingSink {
    fn set_peers(&self, peers: Vec<PeerSpec>) -> BoxFuture<'_, Result<(), PeerSinkError>> {
        self.record(|s| {
            s.calls.push("set_peers".into());
            s.peers = peers.into_iter().map(|p| (p.name.clone(), p)).collect();
        });
        Box::pin(async { Ok(()) })
    }

    fn set_peer(&self, peer: PeerSpec) -> BoxFuture<'_, Result<(), PeerSinkError>> {
        self.record(|s| {
            s.calls.push(format!("set_peer {}", peer.name));
            s.peers.insert(peer.name.clone(), peer);
        });
        Box::pin(async { Ok(()) })
    }

    fn remove_peer(&self, name: String) -> BoxFuture<'_, Result<(), PeerSinkError>> {
        self.record(|s| {
            s.calls.push(format!("remove_peer {name}"));
            s.peers.remove(&name);
        });
        Box::pin(async { Ok(()) })
    }
}

/// A core running in the background with a recording sink.
pub(crate) struct RunningCore {
    pub core: Membership,
    pub sink: Arc<RecordingSink>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), ClusterError>>,
}

impl RunningCore {
    pub(crate) fn start(core: Membership) -> Self {
        let sink = Arc::new(RecordingSink::default());
        let (stop, mut rx) = watch::channel(false);
        let task = {
            let core = core.clone();
            let sink: Arc<dyn PeerSink> = sink.clone();
            tokio::spawn(async move {
                core.run(sink, async move {
                    let _ = rx.wait_for(|s| *s).await;
                })
                .await
            })
        };
        Self {
            core,
            sink,
            stop,
            task,
        }
    }

    /// Bootstraps a core from `cfg` and runs it.
    pub(crate) async fn boot(cfg: MembershipConfig) -> Self {
        init_logs();
        let core = tokio::time::timeout(WAIT, Membership::bootstrap(cfg))
            .await
            .expect("bootstrap in time")
            .expect("bootstrap");
        Self::start(core)
    }

    /// Stops the core and waits for it.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("core stops in time")
            .expect("core task")
            .expect("core ends cleanly");
    }
}

/// Polls `cond` every 20 ms until it holds; panics after [`WAIT`].
pub(crate) async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond().await {
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Logs to the test output when `WEFT_LOG` is set (e.g. `WEFT_LOG=debug`).
pub(crate) fn init_logs() {
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("WEFT_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    }
}
