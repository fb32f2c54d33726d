//! [`AgentCore`]: the node's identity and its link to the control plane,
//! without any TUN or socket, so it can be tested against a real control
//! plane with a fake [`PeerSink`].
//!
//! Contract:
//! - [`AgentCore::bootstrap`] loads (or generates) the key, then either
//!   reuses `credentials.json` + `node.json` (no token needed, no call to
//!   the control plane, so it works while the control plane is down) or
//!   joins and writes them. Flags that contradict the state dir (another
//!   name, another cluster CA) are refused.
//! - [`AgentCore::run`] first applies the persisted peers, then keeps the
//!   sink in step with the control plane until `shutdown`: the watch
//!   (resuming from the persisted revision, reconnecting with backoff;
//!   its objects kept in the [`ViewFeed`] and `objects.json`), the
//!   lease (renewed every third of its TTL; re-joining with the token if the
//!   node was removed), this node's endpoint and key (corrected with
//!   `UpdateNode`), and `peers.json` (debounced, atomic). It never calls
//!   `Leave`. It returns an error only when the agent must restart
//!   ([`AgentError::PodCidrChanged`]).
//! - Every wait is bounded: RPCs by `rpc_timeout`, a silent watch by
//!   `watch_idle_timeout`, retries by `backoff_max`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};
use tonic::transport::Channel;
use weft_agent_api::NodeInfo;
use weft_client::{Credentials, JoinToken};

use super::backoff::Backoff;
use super::error::AgentError;
use super::files;
use super::join::{self, JoinParams};
use super::keys::NodeKey;
use super::peers::{PeerAction, PeerRecord, PeerSink, PeerTable};
use super::state::{NodeFile, PeersFile, StatePaths};
use crate::api::NodeInfoSource;
use crate::dataplane::PeerSpec;
use crate::view::{ViewFeed, ViewSnapshot};

/// How long the core's tasks get to stop.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Timeouts and retry delays of the core.
#[derive(Debug, Clone)]
pub struct Timing {
    /// First reconnect delay.
    pub backoff_initial: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// Bound on each unary call and on opening the watch.
    pub rpc_timeout: Duration,
    /// A watch with no event (not even a keepalive) for this long is
    /// considered dead and reopened.
    pub watch_idle_timeout: Duration,
    /// How long to gather changes before writing `peers.json`.
    pub persist_debounce: Duration,
    /// How often to re-apply the whole peer set after the sink failed.
    pub sink_retry: Duration,
    /// How long a first join (no identity in the state dir yet) may try
    /// before the agent gives up (`--join-timeout`); re-joins retry
    /// forever.
    pub first_join: Duration,
    /// At most how often `objects.json` is written while the cluster's
    /// objects change.
    pub view_persist: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(10),
            rpc_timeout: Duration::from_secs(10),
            watch_idle_timeout: Duration::from_secs(90),
            persist_debounce: Duration::from_millis(500),
            sink_retry: Duration::from_secs(5),
            first_join: Duration::from_secs(30),
            view_persist: Duration::from_secs(2),
        }
    }
}

impl Timing {
    pub(super) fn backoff(&self) -> Backoff {
        Backoff::new(self.backoff_initial, self.backoff_max)
    }
}

/// What the core needs (the checked flags, minus the data plane's).
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// The control plane, `host:port`.
    pub control_plane: String,
    /// The join token: needed on first start; kept to re-join if the
    /// control plane removes the node.
    pub token: Option<JoinToken>,
    /// The cluster CA hash: needed on first start; checked against the
    /// stored CA on later starts.
    pub ca_hash: Option<String>,
    /// The node name.
    pub name: String,
    /// The underlay endpoint peers send to (`None`: dial out only).
    pub endpoint: Option<SocketAddr>,
    /// The state dir.
    pub state_dir: PathBuf,
    /// The overlay MTU (reported in [`NodeInfo`]).
    pub mtu: u32,
    /// The WireGuard UDP port (reported in [`NodeInfo`]).
    pub listen_port: u16,
    /// Timeouts and retry delays.
    pub timing: Timing,
}

/// The core's view of its link to the control plane.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoreStatus {
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
    /// Joins this core made (1 on a first start, 0 after a restart, more
    /// after re-joins).
    pub joins: u64,
    /// The control plane said this node no longer exists.
    pub removed: bool,
    /// Number of peers.
    pub peers: usize,
}

#[derive(Debug, Default)]
pub(super) struct Link {
    pub connected: bool,
    pub last_error: Option<String>,
    pub removed: bool,
    pub watch_attempts: u64,
    pub watch_failures: u64,
    pub lease_renewals: u64,
}

pub(super) struct Shared {
    pub cfg: CoreConfig,
    pub paths: StatePaths,
    pub key: NodeKey,
    pub node: Mutex<NodeFile>,
    pub creds: Mutex<Credentials>,
    pub channel: Mutex<Channel>,
    /// Bumped when `channel` is replaced (after a re-join).
    pub channel_gen: watch::Sender<u64>,
    pub table: Mutex<PeerTable>,
    /// The cluster's objects (namespaces, pods, Services, ...).
    pub view: Arc<ViewFeed>,
    /// Bumped each time a watch stream opens: the pod registrations sync
    /// after every (re)connection.
    pub watch_opened: watch::Sender<u64>,
    pub link: Mutex<Link>,
    /// Wakes the lease task: renew now and check this node's own record.
    pub renew_now: Notify,
    /// Wakes the persist task.
    pub persist_now: Notify,
    pub dirty: AtomicBool,
    pub joins: AtomicU64,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn channel(&self) -> Channel {
        lock(&self.channel).clone()
    }

    /// Where the next watch resumes: the older of the peer table's and
    /// the cluster view's revisions (0 when either has none), so neither
    /// misses a change.
    pub fn resume_revision(&self) -> u64 {
        let peers = lock(&self.table).revision();
        peers.min(self.view.revision())
    }

    /// The next watch starts with a snapshot.
    pub fn reset_revision(&self) {
        lock(&self.table).reset_revision();
        self.view.reset_revision();
    }

    pub fn set_error(&self, e: impl Into<String>) {
        lock(&self.link).last_error = Some(e.into());
    }

    pub fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::Release);
        self.persist_now.notify_one();
    }

    /// Writes `peers.json` if anything changed since the last write.
    pub fn persist(&self) {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return;
        }
        let file = {
            let t = lock(&self.table);
            PeersFile {
                revision: t.revision(),
                peers: t.records(),
            }
        };
        if let Err(e) = file.save(&self.paths.peers()) {
            self.dirty.store(true, Ordering::Release);
            tracing::warn!(error = %e, "cannot write the peer cache");
        }
    }
}

/// The agent core. Cheap to clone (a handle on shared state).
#[derive(Clone)]
pub struct AgentCore {
    pub(super) shared: Arc<Shared>,
}

impl std::fmt::Debug for AgentCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentCore")
            .field("name", &self.shared.cfg.name)
            .finish_non_exhaustive()
    }
}

impl AgentCore {
    /// Opens the state dir, loads or generates the key, and loads the
    /// node's identity or joins (see the module docs).
    pub async fn bootstrap(cfg: CoreConfig) -> Result<Self, AgentError> {
        let paths = StatePaths::new(&cfg.state_dir);
        files::ensure_private_dir(&paths.dir)
            .map_err(|e| AgentError::io("creating the state dir", &paths.dir, e))?;
        let (key, _) = NodeKey::load_or_generate(&paths.private_key())?;
        Self::bootstrap_with_key(cfg, key).await
    }

    /// Like [`AgentCore::bootstrap`], with the key already loaded.
    pub async fn bootstrap_with_key(cfg: CoreConfig, key: NodeKey) -> Result<Self, AgentError> {
        let paths = StatePaths::new(&cfg.state_dir);
        files::ensure_private_dir(&paths.dir)
            .map_err(|e| AgentError::io("creating the state dir", &paths.dir, e))?;
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
        let table = PeerTable::new(&node.name, peers.revision, peers.peers);
        let view = Arc::new(ViewFeed::open(&paths.objects()));
        let channel = weft_client::connect_lazy(&creds)?;
        let (channel_gen, _) = watch::channel(0);
        Ok(Self {
            shared: Arc::new(Shared {
                cfg,
                paths,
                key,
                node: Mutex::new(node),
                creds: Mutex::new(creds),
                channel: Mutex::new(channel),
                channel_gen,
                table: Mutex::new(table),
                view,
                watch_opened: watch::channel(0).0,
                link: Mutex::new(Link::default()),
                renew_now: Notify::new(),
                persist_now: Notify::new(),
                dirty: AtomicBool::new(false),
                joins: AtomicU64::new(joins),
            }),
        })
    }

    /// This node's record (`node.json`).
    pub fn node(&self) -> NodeFile {
        lock(&self.shared.node).clone()
    }

    /// The node's WireGuard key.
    pub fn key(&self) -> &NodeKey {
        &self.shared.key
    }

    /// The configuration the core runs with.
    pub fn config(&self) -> &CoreConfig {
        &self.shared.cfg
    }

    /// The current peers.
    pub fn peers(&self) -> Vec<PeerRecord> {
        lock(&self.shared.table).records()
    }

    /// The current peers as the data plane sees them.
    pub fn peer_specs(&self) -> Vec<PeerSpec> {
        lock(&self.shared.table).specs()
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
    pub fn status(&self) -> CoreStatus {
        let link = lock(&self.shared.link);
        let table = lock(&self.shared.table);
        CoreStatus {
            connected: link.connected,
            revision: table.revision(),
            last_error: link.last_error.clone(),
            watch_attempts: link.watch_attempts,
            watch_failures: link.watch_failures,
            lease_renewals: link.lease_renewals,
            joins: self.shared.joins.load(Ordering::Relaxed),
            removed: link.removed,
            peers: table.records().len(),
        }
    }

    /// Keeps `sink` in step with the cluster until `shutdown` resolves (see
    /// the module docs). Writes `peers.json` one last time before returning.
    pub async fn run(
        &self,
        sink: Arc<dyn PeerSink>,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<(), AgentError> {
        let shared = self.shared.clone();
        let (stop_tx, stop_rx) = watch::channel(false);
        let (act_tx, act_rx) = mpsc::channel::<PeerAction>(1024);
        let initial = lock(&shared.table).specs();
        tracing::info!(peers = initial.len(), "applying the last known peers");
        let _ = act_tx.send(PeerAction::SetAll(initial)).await;

        let applier = tokio::spawn(super::watch::apply_loop(
            shared.clone(),
            sink,
            act_rx,
            stop_rx.clone(),
        ));
        let persister = tokio::spawn(super::watch::persist_loop(shared.clone(), stop_rx.clone()));
        let view_persister = tokio::spawn(crate::view::persist_loop(
            shared.view.clone(),
            shared.cfg.timing.view_persist,
            stop_rx.clone(),
        ));
        let watcher = tokio::spawn(super::watch::watch_loop(
            shared.clone(),
            act_tx,
            stop_rx.clone(),
        ));
        let mut lease = tokio::spawn(super::lease::lease_loop(shared.clone(), stop_rx));

        let result = tokio::select! {
            _ = shutdown => Ok(()),
            r = &mut lease => match r {
                Ok(r) => r,
                Err(e) => Err(AgentError::Protocol(format!("the lease task failed: {e}"))),
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
            tracing::warn!("the agent core's tasks did not stop in time; aborting them");
            aborts.iter().for_each(|a| a.abort());
            lease_abort.abort();
        }
        shared.persist();
        result
    }
}

impl NodeInfoSource for AgentCore {
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
    cfg: &CoreConfig,
    paths: &StatePaths,
    key: &NodeKey,
    mut node: NodeFile,
    mut creds: Credentials,
) -> Result<(NodeFile, Credentials), AgentError> {
    let dir = paths.dir.display();
    if node.name != cfg.name {
        return Err(AgentError::Config(format!(
            "{dir} belongs to node {:?}, but the node name is {:?} (--name / WEFT_NODE_NAME, or the hostname); \
             pass --name {} or use another --state-dir",
            node.name, cfg.name, node.name
        )));
    }
    if let Some(hash) = &cfg.ca_hash {
        let want = weft_client::parse_ca_hash(hash)?;
        let have = weft_client::ca_pem_hash(&creds.ca_pem)?;
        if want != have {
            return Err(AgentError::Config(format!(
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

fn first_join_params(cfg: &CoreConfig, paths: &StatePaths) -> Result<JoinParams, AgentError> {
    let dir = paths.dir.display();
    let token = cfg.token.clone().ok_or_else(|| {
        AgentError::Config(format!(
            "{dir} holds no node.json/credentials.json, so this node has not joined yet: the first start needs \
             --token and --ca-hash (WEFT_TOKEN, WEFT_CA_HASH), as printed by `weftctl token create`"
        ))
    })?;
    let ca_hash = cfg.ca_hash.clone().ok_or_else(|| {
        AgentError::Config(format!(
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
