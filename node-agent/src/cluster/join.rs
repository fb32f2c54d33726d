//! Joining the cluster: `Cluster.Join` over a channel that pins the cluster
//! CA by hash, with a fresh node-credential key and CSR.
//!
//! Contract: [`join_once`] makes one bounded attempt and says whether a
//! failure is worth retrying ([`JoinFailure::transient`]): the control plane
//! unreachable or unavailable is; a refused token, a bad name, a name held
//! by another key, a CA pin mismatch is not. [`join`] retries the transient
//! ones with backoff and returns the credential and `node.json` record; it
//! writes nothing (the caller persists). [`join`] is for re-joins (the node
//! has joined before, so the control plane exists: retry until it answers);
//! [`join_first`] is for a first join, where a wrong or unreachable address
//! is likelier than an outage: it gives up after a bounded time with
//! [`ClusterError::JoinTimedOut`].

use std::net::SocketAddr;
use std::time::Duration;

use weft_client::{ClientError, Credentials, JoinToken};
use weft_proto::v1::cluster_client::ClusterClient;
use weft_proto::v1::JoinRequest;

use super::backoff::Backoff;
use super::error::ClusterError;
use super::statedir::{ClusterSettings, NodeFile};
use crate::wg::NodeKey;

/// What a join needs.
#[derive(Debug, Clone)]
pub struct JoinParams {
    /// The control plane, `host:port`.
    pub control_plane: String,
    /// The join token.
    pub token: JoinToken,
    /// The cluster CA hash, `sha256:<hex>`.
    pub ca_hash: String,
    /// The node name.
    pub name: String,
    /// The underlay endpoint to announce, if any.
    pub endpoint: Option<SocketAddr>,
}

/// A successful join.
#[derive(Debug, Clone)]
pub struct Joined {
    /// The node credential.
    pub credentials: Credentials,
    /// The node record to keep.
    pub node: NodeFile,
}

/// A failed join attempt.
#[derive(Debug)]
pub struct JoinFailure {
    /// Why.
    pub error: ClusterError,
    /// Whether trying again later may succeed.
    pub transient: bool,
}

/// One join attempt, bounded by `timeout`.
pub async fn join_once(
    p: &JoinParams,
    key: &NodeKey,
    timeout: Duration,
) -> Result<Joined, JoinFailure> {
    let connected = tokio::time::timeout(
        timeout,
        weft_client::connect_pinned(&p.control_plane, &p.ca_hash),
    )
    .await
    .map_err(|_| JoinFailure {
        error: ClusterError::Protocol(format!(
            "connecting to {} timed out after {timeout:?}",
            p.control_plane
        )),
        transient: true,
    })?;
    let (channel, pinned_ca) = connected.map_err(|e| JoinFailure {
        transient: client_error_transient(&e),
        error: e.into(),
    })?;
    let (key_pem, csr_pem) = weft_client::generate_csr(&p.name).map_err(|e| JoinFailure {
        error: e.into(),
        transient: false,
    })?;
    let request = JoinRequest {
        token: p.token.to_string(),
        node_name: p.name.clone(),
        public_key: key.public_base64(),
        endpoints: p.endpoint.iter().map(ToString::to_string).collect(),
        labels: Default::default(),
        csr_pem,
    };
    let mut client = ClusterClient::new(channel);
    let response = match tokio::time::timeout(timeout, client.join(request)).await {
        Err(_) => {
            return Err(JoinFailure {
                error: ClusterError::Protocol(format!("Join timed out after {timeout:?}")),
                transient: true,
            })
        }
        Ok(Err(status)) => {
            return Err(JoinFailure {
                transient: status_transient(status.code()),
                error: ClusterError::JoinRefused {
                    name: p.name.clone(),
                    code: status.code(),
                    message: status.message().to_string(),
                },
            })
        }
        Ok(Ok(r)) => r.into_inner(),
    };
    let bad = |what: String| JoinFailure {
        error: ClusterError::Protocol(what),
        transient: false,
    };
    let node = response
        .node
        .ok_or_else(|| bad("Join returned no node".into()))?;
    let settings = response
        .settings
        .ok_or_else(|| bad("Join returned no cluster settings".into()))?;
    let settings = ClusterSettings::from_proto(&settings).map_err(bad)?;
    let pod_cidr = node
        .pod_cidr
        .parse()
        .map_err(|_| bad(format!("Join returned a bad pod CIDR {:?}", node.pod_cidr)))?;
    let ca_pem = if response.ca_pem.is_empty() {
        pinned_ca
    } else {
        response.ca_pem
    };
    let credentials = Credentials {
        server: p.control_plane.clone(),
        ca_pem,
        cert_pem: response.certificate_pem,
        key_pem,
        name: p.name.clone(),
    };
    credentials
        .check()
        .map_err(|e| bad(format!("the node credential from Join is unusable: {e}")))?;
    Ok(Joined {
        credentials,
        node: NodeFile {
            name: node.name,
            id: node.id,
            pod_cidr,
            public_key: key.public_base64(),
            settings,
        },
    })
}

/// Joins, retrying transient failures with `backoff` (forever: the caller
/// bounds it, e.g. by racing it against its shutdown signal).
pub async fn join(
    p: &JoinParams,
    key: &NodeKey,
    timeout: Duration,
    mut backoff: Backoff,
) -> Result<Joined, ClusterError> {
    loop {
        match join_once(p, key, timeout).await {
            Ok(j) => {
                tracing::info!(node = %j.node.name, id = j.node.id, pod_cidr = %j.node.pod_cidr, "joined the cluster");
                return Ok(j);
            }
            Err(JoinFailure {
                error,
                transient: true,
            }) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %error, retry_in = ?delay, "join failed; retrying");
                tokio::time::sleep(delay).await;
            }
            Err(JoinFailure { error, .. }) => return Err(error),
        }
    }
}

/// A first join: like [`join`], but gives up once `limit` has passed since
/// the start (an attempt in flight is cut short), naming the address, the
/// attempts and the last failure.
pub async fn join_first(
    p: &JoinParams,
    key: &NodeKey,
    timeout: Duration,
    mut backoff: Backoff,
    limit: Duration,
) -> Result<Joined, ClusterError> {
    let start = tokio::time::Instant::now();
    let deadline = start + limit;
    let mut attempts = 0u32;
    let gave_up = |attempts: u32, last: String| ClusterError::JoinTimedOut {
        control_plane: p.control_plane.clone(),
        waited: limit,
        attempts,
        last,
    };
    loop {
        attempts += 1;
        let error = match tokio::time::timeout_at(deadline, join_once(p, key, timeout)).await {
            Err(_) => {
                return Err(gave_up(
                    attempts,
                    format!("no answer from {} yet", p.control_plane),
                ))
            }
            Ok(Ok(j)) => {
                tracing::info!(node = %j.node.name, id = j.node.id, pod_cidr = %j.node.pod_cidr, "joined the cluster");
                return Ok(j);
            }
            Ok(Err(JoinFailure {
                error,
                transient: true,
            })) => error,
            Ok(Err(JoinFailure { error, .. })) => return Err(error),
        };
        let delay = backoff.next_delay();
        if tokio::time::Instant::now() + delay >= deadline {
            // No time for another attempt after this pause: say so now.
            tokio::time::sleep_until(deadline).await;
            return Err(gave_up(attempts, error.to_string()));
        }
        tracing::warn!(error = %error, retry_in = ?delay, gives_up_in = ?deadline.saturating_duration_since(tokio::time::Instant::now()), "join failed; retrying");
        tokio::time::sleep(delay).await;
    }
}

/// Whether a gRPC code may go away by retrying.
pub fn status_transient(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::Unavailable
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Aborted
            | tonic::Code::Internal
            | tonic::Code::Unknown
            | tonic::Code::Cancelled
    )
}

fn client_error_transient(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Tcp { .. } | ClientError::Connect { .. } | ClientError::Handshake { .. }
    )
}
