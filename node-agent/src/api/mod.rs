//! The agent's local API on a unix socket (root only), for `weftctl` and
//! `weft-cni`: pods (add, get, del, list), status, and ping (readiness).
//!
//! Contract:
//! - The wire protocol is `weft_agent_api` (one JSON request per
//!   line, one JSON response per line; documented in `docs/agent-api.md`);
//!   this module only serves it.
//! - [`bind`] creates the socket's directory, refuses to start if another
//!   live agent answers on the socket ([`ApiError::InUse`]), replaces a stale
//!   socket file, and never removes anything that is not a socket. The
//!   socket appears already at mode 0600 (bound under a temporary name,
//!   chmod'ed, then renamed into place), so there is no moment at which a
//!   non-root process could connect.
//! - [`serve_on`] accepts up to [`MAX_CONNECTIONS`] connections at once.
//!   Each request line is at most [`MAX_REQUEST_BYTES`] and must arrive
//!   within [`IDLE_TIMEOUT`]; a longer line is answered with an `invalid`
//!   error and the connection is closed; a silent connection is closed.
//!   Bad input gets a precise error response, never a panic.
//! - Every request is bounded in time: it runs on a task of its own and
//!   the connection waits for it at most [`REQUEST_TIMEOUT`], then answers
//!   `unavailable` (the request goes on in the background, as one whose
//!   client went away) and serves the next line; `status` waits at most
//!   [`STATUS_TIMEOUT`] for the data plane and never for the pod table.
//!   Nothing a request does blocks a runtime worker (namespaces are opened
//!   without blocking, kernel steps run on threads of their own), so the
//!   agent's other tasks (the lease, the watch, the metrics) never wait on
//!   the API.
//! - A request that started is carried out even if its client goes away.
//!   On shutdown the listener stops accepting, idle connections are closed
//!   and requests in flight get [`SHUTDOWN_GRACE`] to finish. The socket
//!   file is removed when serving ends (unless another agent replaced it).

mod conn;
mod dns;
mod handlers;
mod socket;
mod trace;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};
use weft_agent_api::NodeInfo;

pub use handlers::status;
pub use socket::{bind, ApiListener};
pub use weft_agent_api::MAX_REQUEST_BYTES;

use crate::engine::{Dataplane, DataplaneError, DataplaneStatus, TraceOutcome};
use crate::pods::{MemoryPortSink, PodManager};
use crate::registration::RegistrationStatus;
use crate::view::ViewFeed;

/// At most this many connections are served at once; more are refused with
/// an `unavailable` error.
pub const MAX_CONNECTIONS: usize = 64;

/// How long a connection may stay silent before (or while) sending a request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long writing one response may take.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the connection waits for one request before answering
/// `unavailable` (below the clients' own 30 s timeout, so they get the
/// precise error rather than a timeout of theirs).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// How long `status` (and so a metrics scrape) waits for the data plane.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// How long requests in flight may take to finish after shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Where the agent's own view of its node comes from (the agent core).
pub trait NodeInfoSource: Send + Sync + 'static {
    /// A snapshot of the node's info and control-plane link.
    fn node_info(&self) -> NodeInfo;
}

/// Where the data plane's status comes from: the [`Dataplane`], or a fake.
pub trait DataplaneStatusSource: Send + Sync + 'static {
    /// Current peers, ports and counters.
    fn dataplane_status(&self) -> BoxFuture<'_, Result<DataplaneStatus, DataplaneError>>;

    /// A probe packet from pod port `port` through the packet path
    /// ([`Dataplane::trace`]); a data plane without a switch refuses.
    fn trace(
        &self,
        port: &str,
        packet: Vec<u8>,
    ) -> BoxFuture<'_, Result<TraceOutcome, DataplaneError>> {
        let _ = (port, packet);
        Box::pin(std::future::ready(Err(DataplaneError::Rejected(
            "this data plane has no packet switch to trace".into(),
        ))))
    }
}

impl DataplaneStatusSource for Dataplane {
    fn dataplane_status(&self) -> BoxFuture<'_, Result<DataplaneStatus, DataplaneError>> {
        Box::pin(self.status())
    }

    fn trace(
        &self,
        port: &str,
        packet: Vec<u8>,
    ) -> BoxFuture<'_, Result<TraceOutcome, DataplaneError>> {
        let port = port.to_owned();
        Box::pin(async move { Dataplane::trace(self, &port, packet).await })
    }
}

/// The in-memory sink reports its ports, with no peers and no counters.
impl DataplaneStatusSource for MemoryPortSink {
    fn dataplane_status(&self) -> BoxFuture<'_, Result<DataplaneStatus, DataplaneError>> {
        let status = DataplaneStatus {
            ports: self.attached(),
            ..DataplaneStatus::default()
        };
        Box::pin(std::future::ready(Ok(status)))
    }
}

/// What the API serves from.
#[derive(Clone)]
pub struct Services {
    /// The node's pods.
    pub pods: Arc<PodManager>,
    /// The data plane, for status.
    pub dataplane: Arc<dyn DataplaneStatusSource>,
    /// The node's info, for status.
    pub node: Arc<dyn NodeInfoSource>,
    /// The pods' registrations and the cluster's objects, when the agent
    /// runs with a control plane (`None`: left out of the answers).
    pub cluster: Option<ClusterSources>,
}

/// The agent's part in the cluster, for status and pod answers.
#[derive(Clone)]
pub struct ClusterSources {
    /// Where each pod's registration stands.
    pub registrations: Arc<RegistrationStatus>,
    /// The cluster's objects the agent holds.
    pub view: Arc<ViewFeed>,
}

/// Errors of the API server.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The socket could not be set up.
    #[error("local API socket {path}: {cause}")]
    Socket { path: String, cause: std::io::Error },
    /// Another live agent answers on the socket.
    #[error("local API socket {path}: another weft-agent is serving on it; stop it first, or give this agent another socket path")]
    InUse { path: String },
    /// Something that is not a socket is at the path; it is left alone.
    #[error("local API socket {path}: the path exists and is not a socket; remove it or choose another path")]
    NotASocket { path: String },
}

/// Serve the local API on `socket` until `shutdown` resolves.
pub async fn serve(
    socket: &Path,
    pods: Arc<PodManager>,
    dataplane: Arc<Dataplane>,
    node: Arc<dyn NodeInfoSource>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ApiError> {
    let listener = bind(socket)?;
    let services = Services {
        pods,
        dataplane,
        node,
        cluster: None,
    };
    serve_on(listener, services, shutdown).await
}

/// Serve the local API on a bound listener until `shutdown` resolves. Runs
/// on a tokio runtime (its connections are tokio tasks).
pub async fn serve_on(
    listener: ApiListener,
    services: Services,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ApiError> {
    let path = listener.path().to_owned();
    let (std_listener, _socket_file) = listener.into_parts();
    let listener =
        tokio::net::UnixListener::from_std(std_listener).map_err(|source| ApiError::Socket {
            path: path.display().to_string(),
            cause: source,
        })?;
    info!(socket = %path.display(), "local API listening");
    let (stop_tx, stop_rx) = watch::channel(false);
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let permit = permits.clone().try_acquire_owned().ok();
                    let services = services.clone();
                    let stop = stop_rx.clone();
                    connections.spawn(async move {
                        conn::serve_connection(stream, services, permit, stop).await;
                    });
                }
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning.
                    warn!(error = %e, "local API: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            left = connections.len(),
            "local API: requests still running after the grace period; aborting them"
        );
        connections.shutdown().await;
    }
    debug!(socket = %path.display(), "local API stopped");
    Ok(())
}
