//! The agent's local API on a unix socket (root only), for `weftctl` and
//! `weft-cni`: pods (add, del, list) and status.
//!
//! STATUS: interface stub; being written.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use weft_client::agent_api::NodeInfo;

use crate::dataplane::Dataplane;
use crate::pods::PodManager;

/// Where the agent's own view of its node comes from (the agent core).
pub trait NodeInfoSource: Send + Sync + 'static {
    /// A snapshot of the node's info and control-plane link.
    fn node_info(&self) -> NodeInfo;
}

/// Errors of the API server.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The socket could not be set up.
    #[error("local API socket {path}: {source}")]
    Socket { path: String, source: std::io::Error },
}

/// Serve the local API on `socket` until `shutdown` resolves.
pub async fn serve(
    socket: &Path,
    _pods: Arc<PodManager>,
    _dataplane: Arc<Dataplane>,
    _node: Arc<dyn NodeInfoSource>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ApiError> {
    let _ = socket;
    shutdown.await;
    Ok(())
}
