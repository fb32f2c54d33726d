//! Running the control plane: open the state dir and the store (PKI shared
//! through etcd for replicas, admin.conf), serve `weft.v1.Cluster`,
//! `weft.v1.Admin`, `grpc.health.v1` and server reflection over TLS on a
//! listener the caller hands in (through [`crate::transport`]: connection
//! caps, handshake timeout, message-size limit), run the leader tasks (lease
//! sweeping) while this replica leads, and stop when the caller's shutdown
//! future resolves.
//!
//! [`run`] is what the binary calls; [`spawn`] runs the same code in the
//! background for tests and benchmarks (on `127.0.0.1:0`).

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use weft_proto::v1::admin_server::AdminServer;
use weft_proto::v1::cluster_server::ClusterServer;

use crate::config::{Settings, StoreChoice};
use crate::feed::Feed;
use crate::leader::{self, Election, LeaderTask, Solo};
use crate::members::Presence;
use crate::pki::Pki;
use crate::registry::Registry;
use crate::service::{AdminService, ClusterService};
use crate::shared_pki;
use crate::store::etcd::election::EtcdElection;
use crate::store::etcd::EtcdStore;
use crate::store::redb::RedbStore;
use crate::store::Store;
use crate::transport::{self, ConnStats, ConnStatsSnapshot, MessageSizeLayer};

/// Why the control plane could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The state dir or its contents are unusable, or the stored cluster
    /// contradicts the flags: a configuration problem (exit 64).
    #[error("{0}")]
    Config(String),
    /// Serving failed.
    #[error("serving gRPC: {0}")]
    Serve(String),
}

/// Name of the store file in the state dir.
pub const STORE_FILE: &str = "state.redb";
/// Name of the admin credentials file in the state dir.
pub const ADMIN_CONF: &str = "admin.conf";

/// Make sure the state dir exists and is writable.
pub fn prepare_state_dir(dir: &Path) -> Result<(), ServerError> {
    std::fs::create_dir_all(dir).map_err(|e| {
        ServerError::Config(format!(
            "--state-dir {}: cannot create it: {e}",
            dir.display()
        ))
    })?;
    let probe = dir.join(".weft-write-test");
    std::fs::write(&probe, b"ok")
        .and_then(|_| std::fs::remove_file(&probe))
        .map_err(|e| {
            ServerError::Config(format!("--state-dir {}: not writable: {e}", dir.display()))
        })?;
    Ok(())
}

/// An opened control plane, ready to serve: the registry, the election that
/// decides whether this replica runs the leader tasks, and whether it leads.
pub struct ControlPlane {
    pub registry: Arc<Registry>,
    pub election: Arc<dyn Election>,
    /// True while this replica leads (runs the leader tasks).
    pub leading: watch::Sender<bool>,
    /// On etcd: this replica's live record (`members/`), registered.
    pub presence: Option<Presence>,
}

/// Open everything under the state dir (and the store) and build the
/// registry.
pub async fn open(settings: &Settings) -> Result<ControlPlane, ServerError> {
    prepare_state_dir(&settings.state_dir)?;
    let (store, election, mut presence) = open_store(settings).await?;
    // admin.conf names every replica known now (weftctl fails over).
    let (pki, servers) = match settings.store {
        StoreChoice::Redb => (
            Pki::load_or_create(&settings.state_dir, &settings.tls_sans)
                .map_err(|e| ServerError::Config(e.to_string()))?,
            settings.advertise.clone(),
        ),
        StoreChoice::Etcd(_) => {
            let shared = shared_pki::load(store.as_ref(), settings)
                .await
                .map_err(|e| ServerError::Config(e.to_string()))?;
            (shared.pki, shared.replicas.join(","))
        }
    };
    let pki = Arc::new(pki);
    let admin_conf = settings.state_dir.join(ADMIN_CONF);
    if !admin_conf.exists() {
        pki.write_admin_conf(&admin_conf, &servers)
            .map_err(|e| ServerError::Config(e.to_string()))?;
        tracing::info!(path = %admin_conf.display(), "wrote admin credentials");
    }
    let registry = Registry::open(store, pki, settings.clone())
        .await
        .map_err(|e| ServerError::Config(e.to_string()))?;
    if let Some(p) = presence.as_mut() {
        p.register()
            .await
            .map_err(|e| ServerError::Config(e.to_string()))?;
    }
    Ok(ControlPlane {
        registry: Arc::new(registry),
        election,
        leading: watch::channel(false).0,
        presence,
    })
}

/// What [`open_store`] opens: the store, its election, and (on etcd) this
/// replica's live record, not yet registered.
pub type OpenedStore = (Arc<dyn Store>, Arc<dyn Election>, Option<Presence>);

/// Open the store the settings choose, the election that goes with it and
/// (on etcd) this replica's live record. An unreachable etcd is a
/// configuration error like an unusable state file: the message says which.
pub async fn open_store(settings: &Settings) -> Result<OpenedStore, ServerError> {
    Ok(match &settings.store {
        StoreChoice::Redb => (
            Arc::new(
                RedbStore::open(&settings.state_dir.join(STORE_FILE))
                    .map_err(|e| ServerError::Config(e.to_string()))?,
            ),
            Arc::new(Solo),
            None,
        ),
        StoreChoice::Etcd(options) => {
            let store = EtcdStore::connect(options.clone())
                .await
                .map_err(|e| ServerError::Config(format!("--store: {e}")))?;
            let election = EtcdElection::new(&store, &settings.advertise);
            let presence = Presence::new(&store, &settings.advertise);
            (Arc::new(store), Arc::new(election), Some(presence))
        }
    })
}

/// The tasks only the leading replica runs: the lease sweeper, (with a
/// shared store) the follower of renewals made through other replicas, and
/// the object controllers (EndpointSlices, LoadBalancer ingress).
/// Controllers that must run once per cluster are added here.
pub fn leader_tasks(registry: &Arc<Registry>, feed: &Arc<Feed>) -> Vec<LeaderTask> {
    let sweeper = {
        let registry = registry.clone();
        LeaderTask::new("lease sweeper", move |mut term| {
            let registry = registry.clone();
            async move {
                let every = (registry.settings().lease_ttl / 4)
                    .clamp(Duration::from_millis(100), Duration::from_secs(5));
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            if let Err(e) = registry.sweep(tokio::time::Instant::now()).await {
                                tracing::warn!(error = %e, "lease sweep failed");
                            }
                        }
                        _ = term.ended() => return,
                    }
                }
            }
        })
    };
    let renewals = {
        let registry = registry.clone();
        LeaderTask::new("renewal follower", move |term| {
            let registry = registry.clone();
            async move { registry.follow_renewals(term).await }
        })
    };
    let controllers = {
        let feed = feed.clone();
        let store = registry.store().clone();
        LeaderTask::new("object controllers", move |mut term| {
            let (feed, store) = (feed.clone(), store.clone());
            async move { crate::controllers::run(feed, store, async move { term.ended().await }).await }
        })
    };
    vec![sweeper, renewals, controllers]
}

/// Serve until `shutdown` resolves.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let cp = open(&settings).await?;
    serve(cp, listener, shutdown).await
}

/// Serve an opened control plane until `shutdown` resolves.
pub async fn serve(
    cp: ControlPlane,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    serve_counting(cp, listener, Arc::default(), shutdown).await
}

/// [`serve`], counting refused and timed-out connections in `stats`.
async fn serve_counting(
    cp: ControlPlane,
    listener: TcpListener,
    stats: Arc<ConnStats>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let ControlPlane {
        registry,
        election,
        leading,
        presence,
    } = cp;
    let settings = registry.settings().clone();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop_tx = Arc::new(stop_tx);

    // The watch feed runs on every replica: every Watch stream and the
    // controllers read from it.
    let feed = Feed::new(registry.store().clone());
    let feed_task = tokio::spawn(crate::feed::run(feed.clone(), stop_rx.clone()));

    let presence = presence.map(|p| tokio::spawn(p.run(stop_rx.clone())));
    let leader = tokio::spawn(leader::run(
        election,
        leader_tasks(&registry, &feed),
        leading,
        stop_rx.clone(),
    ));

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<ClusterServer<ClusterService>>()
        .await;
    health_reporter
        .set_serving::<AdminServer<AdminService>>()
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(weft_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServerError::Serve(format!("reflection: {e}")))?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(weft_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| ServerError::Serve(format!("reflection: {e}")))?;

    let addr = listener
        .local_addr()
        .map_err(|e| ServerError::Serve(e.to_string()))?;
    let accept = transport::AcceptConfig {
        tls: registry
            .pki()
            .server_rustls_config()
            .map_err(|e| ServerError::Serve(e.to_string()))?,
        handshake_timeout: settings.handshake_timeout,
        max_connections: settings.max_connections,
        max_connections_per_source: settings.max_connections_per_source,
    };
    let incoming = tokio_stream::wrappers::ReceiverStream::new(transport::spawn_accept(
        listener,
        accept,
        stats,
        stop_rx.clone(),
    ));
    tracing::info!(%addr, ca_hash = %registry.pki().ca_hash(), store = %registry.store().describe(), "control plane serving");

    let result = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(20)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .layer(MessageSizeLayer::new(transport::MAX_MESSAGE_BYTES))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(ClusterServer::new(ClusterService::new(
            registry.clone(),
            feed.clone(),
            stop_rx.clone(),
        )))
        .add_service(AdminServer::new(AdminService::new(registry.clone())))
        // The accept loop sets TCP_NODELAY (else every reply waits ~40 ms
        // for a delayed ACK).
        .serve_with_incoming_shutdown(incoming, {
            let stop_tx = stop_tx.clone();
            async move {
                shutdown.await;
                let _ = stop_tx.send(true);
            }
        })
        .await;
    // Whatever ended serving, stop the leader tasks and the watch streams, and
    // wait until they have let go of the registry, so the store is closed
    // when this returns (a restart in the same process can open it again).
    let _ = stop_tx.send(true);
    let _ = leader.await;
    let _ = feed_task.await;
    if let Some(p) = presence {
        let _ = p.await;
    }
    // Aborted tasks (the feed's history fill, a controller past its grace)
    // let go of the feed and the registry when the runtime drops them, a
    // moment later; every holder of the store holds one of the two.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    // ... and the store's own work (reads on blocking threads, watch
    // streams of the tasks just stopped) holds its database a moment more.
    let held = || {
        Arc::strong_count(&registry) > 1 || Arc::strong_count(&feed) > 1 || registry.store().busy()
    };
    while held() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if held() {
        tracing::warn!("background tasks still hold the store after shutdown");
    }
    result.map_err(|e| ServerError::Serve(e.to_string()))
}

/// A control plane running in the background (tests, benchmarks).
pub struct Running {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Its state dir (holds admin.conf and ca.crt).
    pub state_dir: PathBuf,
    stats: Arc<ConnStats>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), ServerError>>>,
    leading: watch::Receiver<bool>,
}

impl Running {
    /// Whether this replica leads (runs the leader tasks) now.
    pub fn is_leader(&self) -> bool {
        *self.leading.borrow()
    }

    /// Follow this replica's leadership.
    pub fn leadership(&self) -> watch::Receiver<bool> {
        self.leading.clone()
    }

    /// Path of the admin credentials.
    pub fn admin_conf(&self) -> PathBuf {
        self.state_dir.join(ADMIN_CONF)
    }

    /// Connections refused or closed by the transport so far.
    pub fn connection_stats(&self) -> ConnStatsSnapshot {
        self.stats.snapshot()
    }

    /// Stop serving and wait for it.
    pub async fn stop(mut self) -> Result<(), ServerError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.map_err(|e| ServerError::Serve(e.to_string()))?,
            None => Ok(()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Start a control plane in the background on `settings.listen` (use port 0
/// for any free port); returns once it is ready to serve.
pub async fn spawn(mut settings: Settings) -> Result<Running, ServerError> {
    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|e| ServerError::Config(format!("--listen {}: {e}", settings.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ServerError::Serve(e.to_string()))?;
    if settings.listen.port() == 0 {
        settings.advertise = addr.to_string();
    }
    settings.listen = addr;
    let cp = open(&settings).await?;
    let leading = cp.leading.subscribe();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let stats = Arc::new(ConnStats::default());
    let task = tokio::spawn(serve_counting(
        cp,
        listener,
        Arc::clone(&stats),
        async move {
            let _ = rx.await;
        },
    ));
    Ok(Running {
        addr,
        state_dir: settings.state_dir,
        stats,
        stop: Some(tx),
        task: Some(task),
        leading,
    })
}
