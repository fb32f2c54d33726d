//! [`Membership`]: the node's identity and its link to the control plane,
//! without any TUN or socket, so it can be tested against a real control
//! plane with a fake [`PeerSink`].
//!
//! Contract:
//! - [`Membership::bootstrap`] loads (or generates) the key, then either
//!   reuses `credentials.json` + `node.json` (no token needed, no call to
//!   the control plane, so it works while the control plane is down) or
//!   joins and writes them. Flags that contradict the state dir (another
//!   name, another cluster CA) are refused.
//! - [`Membership::run`] first applies the persisted peers, then keeps the
//!   sink in step with the control plane until `shutdown`: the watch
//!   (resuming from the persisted revision, reconnecting with backoff;
//!   its objects kept in the [`ViewFeed`] and `objects.json`), the
//!   lease (renewed every third of its TTL; re-joining with the token if the
//!   node was removed), this node's endpoint and key (corrected with
//!   `UpdateNode`), and `peers.json` (debounced, atomic). It never calls
//!   `Leave`. It returns an error only when the agent must restart
//!   ([`ClusterError::PodCidrChanged`]).
//! - Every wait is bounded: RPCs by `rpc_timeout`, a silent watch by
//!   `watch_idle_timeout`, retries by `backoff_max`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tonic::transport::Channel;
use weft_agent_api::NodeInfo;
use weft_client::Credentials;

use super::error::ClusterError;
use super::files;
use super::join::{self, JoinParams};
use super::lease;
use super::options::MembershipConfig;
use super::peers::{PeerAction, PeerDirectory, PeerRecord, PeerSink};
use super::state::{Connection, Shared, State};
use super::statedir::{NodeFile, PeersFile, StatePaths};
use super::watch as watch_tasks;
use crate::api::NodeInfoSource;
use crate::engine::PeerSpec;
use crate::view::{ViewFeed, ViewSnapshot};
use crate::wg::NodeKey;

/// How long the client's tasks get to stop.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The cluster client's view of its link to the control plane.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MembershipStatus {
    /// The watch stream is up (it delivered an event and has not failed).
    pub connected: bool,
    /// The last revision seen.
    pub revision: u64,
    /// The last error talking to the control plane, if the link is down
    /// or the node was removed.
    pub last_error: Option<String>,
    /// Watch streams opened (or tried) since start.
    pub watch_attempts: u64,
    /// Failed watch attempts since the last event.
    pub watch_failures: u64,
    /// Successful lease renewals since start.
    pub lease_renewals: u64,
    /// Joins this client made (1 on a first start, 0 after a restart, more
    /// after re-joins).
    pub joins: u64,
    /// The control plane said this node no longer exists.
    pub removed: bool,
    /// Number of peers.
    pub peers: usize,
}

/// The node's membership of the cluster: its identity and its link to the
/// control plane. Cheap to clone (a handle on the one [`Shared`] state).
#[derive(Clone)]
pub struct Membership {
    pub(super) shared: Arc<Shared>,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("name", &self.shared.cfg.name)
            .finish_non_exhaustive()
    }
}

impl Membership {
    /// Opens the state dir, loads or generates the key, and loads the
    /// node's identity or joins (see the module docs).
    pub async fn bootstrap(cfg: MembershipConfig) -> Result<Self, ClusterError> {
        let paths = StatePaths::new(&cfg.state_dir);
        files::ensure_private_dir(&paths.dir)
            .map_err(|e| ClusterError::io("creating the state dir", &paths.dir, e))?;
        let (key, _) = NodeKey::load_or_generate(&paths.private_key())?;
        Self::bootstrap_with_key(cfg, key).await
    }

    /// Like [`Membership::bootstrap`], with the key already loaded.
    pub async fn bootstrap_with_key(
        cfg: MembershipConfig,
        key: NodeKey,
    ) -> Result<Self, ClusterError> {
        let paths = StatePaths::new(&cfg.state_dir);
        files::ensure_private_dir(&paths.dir)
            .map_err(|e| ClusterError::io("creating the state dir", &paths.dir, e))?;
        let stored = match NodeFile::load(&paths.node())? {
            Some(node) if paths.credentials().exists() => {
                Some((node, Credentials::load(paths.credentials())?))
            }
            _ => None,
        };
        let (node, creds, joins) = match stored {
            Some((node, creds)) => {
                let (node, creds) = reuse(&cfg, &paths, &key, node, creds)?;
                (node, creds, 0)
            }
            None => {
                let params = first_join_params(&cfg, &paths)?;
                let timing = &cfg.timing;
                let joined = join::join_first(
                    &params,
                    &key,
                    timing.rpc_timeout,
                    timing.backoff(),
                    timing.first_join,
                )
                .await?;
                joined.credentials.save(paths.credentials())?;
                joined.node.save(&paths.node())?;
                (joined.node, joined.credentials, 1)
            }
        };
        let peers = PeersFile::load_or_empty(&paths.peers());
        tracing::info!(node = %node.name, id = node.id, pod_cidr = %node.pod_cidr, peers = peers.peers.len(), revision = peers.revision, "node identity ready");
        let peers = PeerDirectory::new(&node.name, peers.revision, peers.peers);
        let view = Arc::new(ViewFeed::open(&paths.objects()));
        let channel = weft_client::connect_lazy(&creds)?;
        let state = State {
            node,
            creds,
            channel,
            peers,
            connection: Connection::default(),
            joins,
            dirty: false,
        };
        Ok(Self {
            shared: Arc::new(Shared::new(cfg, paths, key, state, view)),
        })
    }

    /// This node's record (`node.json`).
    pub fn node(&self) -> NodeFile {
        self.shared.with(|s| s.node.clone())
    }

    /// The node's WireGuard key.
    pub fn key(&self) -> &NodeKey {
        &self.shared.key
    }

    /// The configuration the client runs with.
    pub fn config(&self) -> &MembershipConfig {
        &self.shared.cfg
    }

    /// The current peers.
    pub fn peers(&self) -> Vec<PeerRecord> {
        self.shared.with(|s| s.peers.records())
    }

    /// The current peers as the data plane sees them.
    pub fn peer_specs(&self) -> Vec<PeerSpec> {
        self.shared.with(|s| s.peers.specs())
    }

    /// The cluster's objects, their change notification and their file.
    pub fn view(&self) -> Arc<ViewFeed> {
        self.shared.view.clone()
    }

    /// The cluster's objects now.
    pub fn cluster_view(&self) -> Arc<ViewSnapshot> {
        self.shared.view.current()
    }

    /// A counter bumped each time a watch stream to the control plane
    /// opens (after a start, an outage, a new credential).
    pub fn connections(&self) -> watch::Receiver<u64> {
        self.shared.watch_opened.subscribe()
    }

    /// The channel to the control plane, with this node's credential.
    pub fn channel(&self) -> Channel {
        self.shared.channel()
    }

    /// The link to the control plane.
    pub fn status(&self) -> MembershipStatus {
        self.shared.with(|s| MembershipStatus {
            connected: s.connection.connected,
            revision: s.peers.revision(),
            last_error: s.connection.last_error.clone(),
            watch_attempts: s.connection.watch_attempts,
            watch_failures: s.connection.watch_failures,
            lease_renewals: s.connection.lease_renewals,
            joins: s.joins,
            removed: s.connection.removed,
            peers: s.peers.records().len(),
        })
    }

    /// Keeps `sink` in step with the cluster until `shutdown` resolves (see
    /// the module docs). Writes `peers.json` one last time before returning.
    pub async fn run(
        &self,
        sink: Arc<dyn PeerSink>,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<(), ClusterError> {
        let shared = self.shared.clone();
        let (stop_tx, stop_rx) = watch::channel(false);
        let (act_tx, act_rx) = mpsc::channel::<PeerAction>(1024);
        let initial = shared.with(|s| s.peers.specs());
        tracing::info!(peers = initial.len(), "applying the last known peers");
        let _ = act_tx.send(PeerAction::SetAll(initial)).await;

        let applier = tokio::spawn(watch_tasks::apply_loop(
            shared.clone(),
            sink,
            act_rx,
            stop_rx.clone(),
        ));
        let persister = tokio::spawn(watch_tasks::persist_loop(shared.clone(), stop_rx.clone()));
        let view_persister = tokio::spawn(crate::view::persist_loop(
            shared.view.clone(),
            shared.cfg.timing.view_persist,
            stop_rx.clone(),
        ));
        let watcher = tokio::spawn(watch_tasks::watch_loop(
            shared.clone(),
            act_tx,
            stop_rx.clone(),
        ));
        let mut lease = tokio::spawn(lease::lease_loop(shared.clone(), stop_rx));

        let result = tokio::select! {
            _ = shutdown => Ok(()),
            r = &mut lease => match r {
                Ok(r) => r,
                Err(e) => Err(ClusterError::Protocol(format!("the lease task failed: {e}"))),
            },
        };
        let _ = stop_tx.send(true);
        // Every task watches `stop`; give them one shared grace period.
        let tasks = [watcher, applier, persister, view_persister];
        let aborts: Vec<_> = tasks.iter().map(|t| t.abort_handle()).collect();
        let lease_abort = lease.abort_handle();
        let all = async {
            for t in tasks {
                let _ = t.await;
            }
            if !lease.is_finished() {
                let _ = lease.await;
            }
        };
        if tokio::time::timeout(STOP_GRACE, all).await.is_err() {
            tracing::warn!("the cluster client's tasks did not stop in time; aborting them");
            aborts.iter().for_each(|a| a.abort());
            lease_abort.abort();
        }
        shared.persist();
        result
    }
}

impl NodeInfoSource for Membership {
    fn node_info(&self) -> NodeInfo {
        let node = self.node();
        let status = self.status();
        let cfg = &self.shared.cfg;
        NodeInfo {
            name: node.name.clone(),
            node_id: node.id,
            pod_cidr: node.pod_cidr.to_string(),
            node_address: node.host_address().to_string(),
            cluster_cidr: node.settings.cluster_cidr.to_string(),
            service_cidr: node.settings.service_cidr.to_string(),
            cluster_dns: node.settings.cluster_dns.to_string(),
            cluster_domain: node.settings.cluster_domain.clone(),
            mtu: cfg.mtu,
            listen_port: cfg.listen_port,
            control_plane: cfg.control_plane.clone(),
            control_plane_connected: status.connected,
            watch_revision: status.revision,
            last_error: status.last_error,
        }
    }
}

/// Checks the stored identity against the flags and brings the credential's
/// server address up to date.
fn reuse(
    cfg: &MembershipConfig,
    paths: &StatePaths,
    key: &NodeKey,
    mut node: NodeFile,
    mut creds: Credentials,
) -> Result<(NodeFile, Credentials), ClusterError> {
    let dir = paths.dir.display();
    if node.name != cfg.name {
        return Err(ClusterError::Config(format!(
            "{dir} belongs to node {:?}, but the node name is {:?} (--name / WEFT_NODE_NAME, or the hostname); \
             pass --name {} or use another --state-dir",
            node.name, cfg.name, node.name
        )));
    }
    if let Some(hash) = &cfg.ca_hash {
        let want = weft_client::parse_ca_hash(hash)?;
        let have = weft_client::ca_pem_hash(&creds.ca_pem)?;
        if want != have {
            return Err(ClusterError::Config(format!(
                "--ca-hash {want} does not match the cluster CA of this node's credential ({have}) in {}: \
                 the state dir belongs to another cluster; remove {dir} to join this one",
                paths.credentials().display()
            )));
        }
    }
    if cfg.token.is_some() {
        tracing::info!(node = %node.name, "already joined (node.json); --token is not needed and is kept only to re-join if the control plane removes this node");
    }
    if creds.server != cfg.control_plane {
        tracing::info!(old = %creds.server, new = %cfg.control_plane, "the control plane address changed; updating credentials.json");
        creds.server = cfg.control_plane.clone();
        creds.save(paths.credentials())?;
    }
    if node.public_key != key.public_base64() {
        tracing::warn!(old = %node.public_key, new = %key.public_base64(), "private.key changed since the node joined; the control plane will be told the new public key");
        node.public_key = key.public_base64();
        node.save(&paths.node())?;
    }
    Ok((node, creds))
}

fn first_join_params(
    cfg: &MembershipConfig,
    paths: &StatePaths,
) -> Result<JoinParams, ClusterError> {
    let dir = paths.dir.display();
    let token = cfg.token.clone().ok_or_else(|| {
        ClusterError::Config(format!(
            "{dir} holds no node.json/credentials.json, so this node has not joined yet: the first start needs \
             --token and --ca-hash (WEFT_TOKEN, WEFT_CA_HASH), as printed by `weftctl token create`"
        ))
    })?;
    let ca_hash = cfg.ca_hash.clone().ok_or_else(|| {
        ClusterError::Config(format!(
            "{dir} holds no node.json/credentials.json, so this node has not joined yet: the first start needs \
             --ca-hash (WEFT_CA_HASH) with --token, as printed by `weftctl token create`"
        ))
    })?;
    Ok(JoinParams {
        control_plane: cfg.control_plane.clone(),
        token,
        ca_hash,
        name: cfg.name.clone(),
        endpoint: cfg.endpoint,
    })
}
