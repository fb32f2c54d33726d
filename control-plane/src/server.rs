//! Running the control plane: open the state dir (store, PKI, admin.conf),
//! serve `weft.v1.Cluster`, `weft.v1.Admin`, `grpc.health.v1` and server
//! reflection over TLS on a listener the caller hands in, sweep leases, and
//! stop when the caller's shutdown future resolves.
//!
//! [`run`] is what the binary calls; [`spawn`] runs the same code in the
//! background for tests and benchmarks (on `127.0.0.1:0`).

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use weft_proto::v1::admin_server::AdminServer;
use weft_proto::v1::cluster_server::ClusterServer;

use crate::config::{Settings, StoreChoice};
use crate::pki::Pki;
use crate::registry::Registry;
use crate::service::{AdminService, ClusterService};
use crate::store::etcd::EtcdStore;
use crate::store::redb::RedbStore;
use crate::store::Store;

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

/// Open everything under the state dir and build the registry.
pub async fn open(settings: &Settings) -> Result<Arc<Registry>, ServerError> {
    prepare_state_dir(&settings.state_dir)?;
    let store = open_store(settings).await?;
    let pki = Arc::new(
        Pki::load_or_create(&settings.state_dir, &settings.tls_sans)
            .map_err(|e| ServerError::Config(e.to_string()))?,
    );
    let admin_conf = settings.state_dir.join(ADMIN_CONF);
    if !admin_conf.exists() {
        pki.write_admin_conf(&admin_conf, &settings.advertise)
            .map_err(|e| ServerError::Config(e.to_string()))?;
        tracing::info!(path = %admin_conf.display(), "wrote admin credentials");
    }
    let registry = Registry::open(store, pki, settings.clone())
        .await
        .map_err(|e| ServerError::Config(e.to_string()))?;
    Ok(Arc::new(registry))
}

/// Open the store the settings choose. An unreachable etcd is a
/// configuration error like an unusable state file: the message says which.
pub async fn open_store(settings: &Settings) -> Result<Arc<dyn Store>, ServerError> {
    Ok(match &settings.store {
        StoreChoice::Redb => Arc::new(
            RedbStore::open(&settings.state_dir.join(STORE_FILE))
                .map_err(|e| ServerError::Config(e.to_string()))?,
        ),
        StoreChoice::Etcd(options) => Arc::new(
            EtcdStore::connect(options.clone())
                .await
                .map_err(|e| ServerError::Config(format!("--store: {e}")))?,
        ),
    })
}

/// Serve until `shutdown` resolves.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let registry = open(&settings).await?;
    serve(registry, listener, shutdown).await
}

/// Serve an opened registry until `shutdown` resolves.
pub async fn serve(
    registry: Arc<Registry>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let settings = registry.settings().clone();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop_tx = Arc::new(stop_tx);

    let sweeper = {
        let registry = registry.clone();
        let mut stop = stop_rx.clone();
        let every =
            (settings.lease_ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if let Err(e) = registry.sweep(tokio::time::Instant::now()).await {
                            tracing::warn!(error = %e, "lease sweep failed");
                        }
                    }
                    _ = stop.changed() => return,
                }
            }
        })
    };

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
    tracing::info!(%addr, ca_hash = %registry.pki().ca_hash(), store = %registry.store().describe(), "control plane serving");

    let result = tonic::transport::Server::builder()
        .tls_config(registry.pki().server_tls_config())
        .map_err(|e| ServerError::Serve(format!("TLS: {e}")))?
        .http2_keepalive_interval(Some(Duration::from_secs(20)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(ClusterServer::new(ClusterService::new(
            registry.clone(),
            stop_rx.clone(),
        )))
        .add_service(AdminServer::new(AdminService::new(registry.clone())))
        // With an incoming stream of our own, tonic's `tcp_nodelay` does
        // not apply: set it on the incoming (else every reply waits ~40 ms
        // for a delayed ACK).
        .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), {
            let stop_tx = stop_tx.clone();
            async move {
                shutdown.await;
                let _ = stop_tx.send(true);
            }
        })
        .await;
    // Whatever ended serving, stop the sweeper and the watch streams, and
    // wait until they have let go of the registry, so the store is closed
    // when this returns (a restart in the same process can open it again).
    let _ = stop_tx.send(true);
    let _ = sweeper.await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while Arc::strong_count(&registry) > 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if Arc::strong_count(&registry) > 1 {
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
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), ServerError>>>,
}

impl Running {
    /// Path of the admin credentials.
    pub fn admin_conf(&self) -> PathBuf {
        self.state_dir.join(ADMIN_CONF)
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
    let registry = open(&settings).await?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(registry, listener, async move {
        let _ = rx.await;
    }));
    Ok(Running {
        addr,
        state_dir: settings.state_dir,
        stop: Some(tx),
        task: Some(task),
    })
}
