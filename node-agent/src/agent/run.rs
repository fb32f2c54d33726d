//! The running agent: the core wired to the kernel and the data plane.
//!
//! [`run`] takes the checked flags and a shutdown future, and in order:
//! loads the key (a bad key file fails before anything else), probes the
//! underlay toward the control plane (default endpoint and MTU), then
//! takes everything it needs on this machine before it talks to the
//! control plane, so that a start that cannot work never registers a node
//! or spends a token use: the WireGuard UDP socket, the local API socket (a
//! second agent on the node is refused here), the metrics listener
//! (`--metrics-listen`), a write in the state dir, and the host TUN `weft0`
//! (created, or re-attached after a restart; one another process holds is
//! refused). Then it brings up the [`Membership`] (joining on first start),
//! configures `weft0` (the node's overlay address, routes to the cluster
//! and service CIDRs), starts the
//! [`Dataplane`] and hands it to the core (which applies the persisted peers
//! at once), starts the Service compiler ([`services::run`]: the view's
//! Services into the switch's table) and the policy compiler
//! ([`policy::run`]: the view's NetworkPolicies for this node's pods),
//! opens the [`PodManager`], registers its pods with the control
//! plane in the background ([`registration`]), and serves the local API
//! and the metrics (both from the same [`Services`]). Errors are
//! [`RunError`]s; [`RunError::is_config`] marks those the binary exits 64 for.
//!
//! On shutdown it stops the API (and removes its socket) and the metrics,
//! the core (which writes `peers.json`) and the data plane; pod TUNs
//! persist, and the node does **not** leave the cluster, so a restart picks
//! up where it stopped.
//! [`leave`] is the explicit way out.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use tokio::sync::watch;
use weft_client::Credentials;
use weft_proto::v1::cluster_client::ClusterClient;
use weft_proto::v1::LeaveRequest;

use super::flags::{AgentConfig, LeaveConfig};
use crate::api::{self, ApiError, ApiListener, ClusterSources, Services};
use crate::cluster::files;
use crate::cluster::ClusterError;
use crate::cluster::PeerSink;
use crate::cluster::{Membership, MembershipConfig, Timing};
use crate::cluster::{NodeFile, StatePaths};
use crate::engine::{Dataplane, DataplaneConfig, DataplaneError};
use crate::kernel::netns::{NetNs, NetNsError};
use crate::kernel::tun::{
    configure_host_tun, open_host_tun, KernelError, PortSpec, Tun, TunError, TunOptions,
};
use crate::kernel::underlay::{self, FALLBACK_MTU};
use crate::metrics::{self, MetricsError};
use crate::pods::{PodDns, PodError, PodManager};
use crate::policy::{self, PolicySink};
use crate::registration::{self, RegistrationStatus, RegistrationTiming};
use crate::services::{self, ServiceSink};
use crate::wg::NodeKey;
use weft_switch::conntrack::ConntrackConfig;

/// The host port's interface name.
pub const HOST_IFNAME: &str = "weft0";
/// WireGuard persistent keepalive toward every peer, in seconds.
const PERSISTENT_KEEPALIVE: u16 = 25;
/// How long stopping the API may take.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The core failed (keys, state, joining).
    #[error(transparent)]
    Agent(#[from] ClusterError),
    /// The WireGuard UDP port could not be bound.
    #[error("binding UDP port {port} for WireGuard: {reason}")]
    Udp {
        /// The port.
        port: u16,
        /// Why, and what to do.
        reason: String,
    },
    /// The host network namespace could not be opened.
    #[error("opening the host network namespace: {0}")]
    NetNs(NetNsError),
    /// The host port could not be set up.
    #[error("setting up the host port {HOST_IFNAME}: {0}")]
    HostTun(KernelError),
    /// Another process holds the host port's TUN device.
    #[error(
        "the TUN device {HOST_IFNAME} is held by another process (another weft-agent in this \
         network namespace?); stop it first: this agent has not joined or changed anything"
    )]
    HostTunBusy,
    /// The data plane did not start.
    #[error("starting the data plane: {0}")]
    Dataplane(DataplaneError),
    /// The pods could not be opened.
    #[error("opening this node's pods: {0}")]
    Pods(PodError),
    /// The local API failed.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The metrics listener could not be bound.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// Leaving the cluster failed.
    #[error("leaving the cluster: {0}")]
    Leave(String),
}

// Each message above includes its cause, so these are plain `From`s rather
// than `#[from]` (which would also make the cause the `source()`, and
// anyhow's `{:#}` would print it twice).
impl From<NetNsError> for RunError {
    fn from(e: NetNsError) -> Self {
        Self::NetNs(e)
    }
}

impl From<KernelError> for RunError {
    fn from(e: KernelError) -> Self {
        Self::HostTun(e)
    }
}

impl From<DataplaneError> for RunError {
    fn from(e: DataplaneError) -> Self {
        Self::Dataplane(e)
    }
}

impl From<PodError> for RunError {
    fn from(e: PodError) -> Self {
        Self::Pods(e)
    }
}

impl RunError {
    /// Whether this is a configuration problem (exit 64).
    pub fn is_config(&self) -> bool {
        match self {
            Self::Agent(e) => e.is_config(),
            Self::Udp { .. } | Self::HostTunBusy => true,
            Self::Api(ApiError::InUse { .. } | ApiError::NotASocket { .. }) => true,
            Self::Metrics(MetricsError::Bind { .. }) => true,
            _ => false,
        }
    }
}

/// Runs the agent until `shutdown` resolves (see the module docs).
pub async fn run(
    cfg: AgentConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    {
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
    }
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    let paths = StatePaths::new(&cfg.state_dir);
    files::ensure_private_dir(&paths.dir)
        .map_err(|e| ClusterError::io("creating the state dir", &paths.dir, e))?;
    let (key, created) =
        NodeKey::load_or_generate(&paths.private_key()).map_err(ClusterError::from)?;
    tracing::info!(public_key = %key.public_base64(), new = created, "WireGuard key");

    let (endpoint, mtu) = underlay_defaults(&cfg).await;
    let udp = bind_udp(cfg.listen_port)?;
    // Bound now, so that another agent on this node is found before this
    // one joins or touches weft0; served once the pods are open.
    let listeners = Listeners {
        api: api::bind(&cfg.api_socket)?,
        metrics: cfg.metrics_listen.map(metrics::bind).transpose()?,
    };
    check_writable(&paths.dir)?;
    let ns = NetNs::current()?;
    let (host_tun, created_tun) = open_host_tun(&ns, HOST_IFNAME, &TunOptions::persistent())
        .await
        .map_err(|e| match e {
            KernelError::Tun(TunError::Busy { .. }) => RunError::HostTunBusy,
            e => RunError::HostTun(e),
        })?;

    let core_cfg = MembershipConfig {
        control_plane: cfg.control_plane.clone(),
        token: cfg.token.clone(),
        ca_hash: cfg.ca_hash.clone(),
        name: cfg.name.clone(),
        endpoint,
        state_dir: cfg.state_dir.clone(),
        mtu,
        listen_port: cfg.listen_port,
        timing: Timing {
            first_join: cfg.join_timeout,
            ..Timing::default()
        },
    };
    let core = tokio::select! {
        c = Membership::bootstrap_with_key(core_cfg, key.clone()) => c,
        _ = stopped() => {
            tracing::info!("stopped before the node had joined");
            discard_new_tun(host_tun, created_tun);
            return Ok(());
        }
    };
    let core = match core {
        Ok(core) => core,
        Err(e) => {
            discard_new_tun(host_tun, created_tun);
            return Err(e.into());
        }
    };
    let node = core.node();
    let host_address = node.host_address();
    let host_net = IpNet::new(host_address, node.pod_cidr.prefix_len())
        .map_err(|e| ClusterError::Protocol(format!("the pod CIDR {}: {e}", node.pod_cidr)))?;

    let spec = PortSpec::host(
        HOST_IFNAME,
        host_net,
        mtu,
        &[node.settings.cluster_cidr, node.settings.service_cidr],
    );
    configure_host_tun(&ns, &spec).await?;
    tracing::info!(interface = HOST_IFNAME, address = %host_net, mtu, "host port ready");

    let dataplane = Arc::new(Dataplane::start(
        DataplaneConfig {
            key: key.clone(),
            node_cidrs: vec![node.pod_cidr],
            host_addresses: vec![host_address],
            persistent_keepalive: Some(PERSISTENT_KEEPALIVE),
            offload: cfg.offload,
            mtu,
            services: cfg.conntrack_max.map(|capacity| ConntrackConfig {
                capacity,
                ..ConntrackConfig::default()
            }),
        },
        host_tun,
        udp,
    )?);

    // The core applies the persisted peers first thing, so the data plane
    // works at once, with or without the control plane.
    let mut core_task = {
        let core = core.clone();
        let sink: Arc<dyn PeerSink> = dataplane.clone();
        let stopped = stopped();
        tokio::spawn(async move { core.run(sink, stopped).await })
    };

    // Cluster DNS: the zone follows the objects; the engine answers.
    let dns_task = tokio::spawn(crate::dns::run(
        dns_plan(&cfg, &node),
        core.view().subscribe(),
        dataplane.clone(),
        stop_tx.subscribe(),
    ));
    // Services: the view's Services and EndpointSlices compiled off the
    // engine thread into the switch's table, on every change.
    let services_task = cfg.conntrack_max.is_some().then(|| {
        let sink: Arc<dyn ServiceSink> = dataplane.clone();
        tokio::spawn(services::run(
            core.view().subscribe(),
            node.name.clone(),
            sink,
            stop_tx.subscribe(),
        ))
    });

    // NetworkPolicy: the view's policies compiled for this node's pods,
    // judged per connection by the engine (needs connection tracking).
    let policy_task = if cfg.conntrack_max.is_some() {
        let sink: Arc<dyn PolicySink> = dataplane.clone();
        Some(tokio::spawn(policy::run(
            core.view().subscribe(),
            node.name.clone(),
            sink,
            stop_tx.subscribe(),
        )))
    } else {
        tracing::warn!("NetworkPolicy is not enforced on this node: --no-services turns connection tracking off");
        None
    };

    let result = serve(
        &cfg,
        listeners,
        &node,
        mtu,
        &core,
        &dataplane,
        &mut core_task,
        &stopped,
        &stop_tx,
    )
    .await;

    let _ = stop_tx.send(true);
    stop_task(dns_task, STOP_GRACE, "cluster DNS").await;
    if let Some(task) = services_task {
        stop_task(task, STOP_GRACE, "the service compiler").await;
    }
    if let Some(task) = policy_task {
        stop_task(task, STOP_GRACE, "the policy compiler").await;
    }
    if !core_task.is_finished() {
        let _ = tokio::time::timeout(STOP_GRACE * 3, &mut core_task).await;
    }
    match Arc::try_unwrap(dataplane) {
        Ok(dp) => {
            if let Err(e) = dp.shutdown() {
                tracing::warn!(error = %e, "stopping the data plane");
            }
        }
        Err(_) => tracing::warn!("the data plane is still in use; not waiting for it"),
    }
    tracing::info!("agent stopped; the node stays in the cluster");
    result
}

/// The sockets bound at start-up, served once the pods are open.
struct Listeners {
    /// The local API's unix socket.
    api: ApiListener,
    /// The metrics endpoint, if `--metrics-listen` asks for one.
    metrics: Option<TcpListener>,
}

/// Opens the pods and serves the local API (and the metrics) until stop or
/// a core failure.
#[allow(clippy::too_many_arguments)]
async fn serve<F, Fut>(
    cfg: &AgentConfig,
    listeners: Listeners,
    node: &NodeFile,
    mtu: u32,
    core: &Membership,
    dataplane: &Arc<Dataplane>,
    core_task: &mut tokio::task::JoinHandle<Result<(), ClusterError>>,
    stopped: &F,
    stop_tx: &watch::Sender<bool>,
) -> Result<(), RunError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let pods = tokio::select! {
        p = PodManager::open(&cfg.state_dir, node.pod_cidr, node.host_address(), mtu, dataplane.clone()) => Arc::new(p?.with_dns(PodDns {
            nameserver: node.settings.cluster_dns,
            domain: dns_plan(cfg, node).domain,
        })),
        r = &mut *core_task => return core_result(r),
        _ = stopped() => return Ok(()),
    };
    // Pods with a Kubernetes name are registered with the control plane in
    // the background; the API answers without waiting for it.
    let registrations = Arc::new(RegistrationStatus::new());
    let registrar = tokio::spawn(registration::run(
        core.clone(),
        pods.clone(),
        registrations.clone(),
        RegistrationTiming {
            rpc_timeout: core.config().timing.rpc_timeout,
            ..RegistrationTiming::default()
        },
        stop_tx.subscribe(),
    ));
    let services = Services {
        pods,
        dataplane: dataplane.clone(),
        node: Arc::new(core.clone()),
        cluster: Some(ClusterSources {
            registrations,
            view: core.view(),
        }),
    };
    // The API removes its socket when it stops (unless another agent has
    // replaced it meanwhile).
    let metrics_task = listeners.metrics.map(|l| {
        let serving = metrics::serve_on(l, services.clone(), stopped());
        tokio::spawn(async move {
            // Not fatal: the agent goes on switching packets without it.
            if let Err(e) = serving.await {
                tracing::warn!(error = %e, "metrics stopped");
            }
        })
    });
    let mut api_task = tokio::spawn(api::serve_on(listeners.api, services, stopped()));
    tracing::info!(socket = %cfg.api_socket.display(), "local API serving");
    let result = tokio::select! {
        r = &mut *core_task => core_result(r),
        r = &mut api_task => match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(ClusterError::Protocol(format!("the API task failed: {e}")).into()),
        },
    };
    let _ = stop_tx.send(true);
    let metrics_stop = async {
        if let Some(task) = metrics_task {
            stop_task(task, STOP_GRACE, "the metrics endpoint").await;
        }
    };
    tokio::join!(
        stop_task(api_task, api::SHUTDOWN_GRACE + STOP_GRACE, "the local API"),
        stop_task(registrar, STOP_GRACE, "the pod registrations"),
        metrics_stop,
    );
    result
}

/// Waits up to `grace` for a stopping task, then aborts it.
async fn stop_task<T>(mut task: tokio::task::JoinHandle<T>, grace: Duration, what: &str) {
    if !task.is_finished() && tokio::time::timeout(grace, &mut task).await.is_err() {
        tracing::warn!("{what} did not stop in time");
        task.abort();
        let _ = task.await;
    }
}

/// Cluster DNS as the flags and the cluster's settings say: the address
/// pods are given, the domain (`--cluster-domain` or the cluster's), the
/// upstreams (`--dns-upstream` or the node's resolv.conf).
fn dns_plan(cfg: &AgentConfig, node: &NodeFile) -> crate::dns::DnsPlan {
    let vip = node.settings.cluster_dns;
    let domain = cfg.cluster_domain.clone().unwrap_or_else(|| {
        node.settings
            .cluster_domain
            .trim_end_matches('.')
            .to_ascii_lowercase()
    });
    let upstreams = cfg.dns_upstreams.clone().unwrap_or_else(|| {
        crate::dns::upstream::from_system(std::path::Path::new("/etc/resolv.conf"), &[vip])
    });
    crate::dns::DnsPlan {
        vips: vec![vip],
        domain,
        upstreams,
    }
}

fn core_result(
    r: Result<Result<(), ClusterError>, tokio::task::JoinError>,
) -> Result<(), RunError> {
    match r {
        Ok(r) => r.map_err(RunError::from),
        Err(e) => Err(ClusterError::Protocol(format!("the agent core failed: {e}")).into()),
    }
}

/// The endpoint and MTU to use: the flags, or what the underlay suggests.
async fn underlay_defaults(cfg: &AgentConfig) -> (Option<SocketAddr>, u32) {
    if let (Some(e), Some(m)) = (cfg.endpoint, cfg.mtu) {
        return (Some(e), m);
    }
    match underlay::probe(&cfg.control_plane, Duration::from_secs(5)).await {
        Ok(u) => {
            let endpoint = cfg
                .endpoint
                .or_else(|| Some(SocketAddr::new(u.local_ip, cfg.listen_port)));
            let mtu = cfg.mtu.unwrap_or_else(|| u.overlay_mtu());
            tracing::info!(control_plane = %u.control_plane, local_ip = %u.local_ip, interface = ?u.interface,
                underlay_mtu = ?u.mtu, endpoint = ?endpoint, mtu, "underlay");
            (endpoint, mtu)
        }
        Err(e) => {
            let mtu = cfg.mtu.unwrap_or(FALLBACK_MTU);
            tracing::warn!(error = %e, mtu, "cannot probe the underlay toward the control plane; \
                announcing no endpoint unless --endpoint is given (peers learn it when this node sends)");
            (cfg.endpoint, mtu)
        }
    }
}

/// Fails unless a file can be created in the state dir (a read-only or
/// foreign-owned dir would otherwise fail only after the join, when
/// `credentials.json` is written).
fn check_writable(dir: &std::path::Path) -> Result<(), RunError> {
    let probe = dir.join(format!(".weft-agent-write-check-{}", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .and_then(|f| f.sync_all());
    let _ = std::fs::remove_file(&probe);
    written.map_err(|e| {
        RunError::Agent(ClusterError::io(
            "the state dir is not writable: creating a file in",
            dir,
            e,
        ))
    })
}

/// Removes `weft0` again if this start created it and then gave up before
/// using it, so a failed first start leaves no interface behind.
fn discard_new_tun(tun: Tun, created: bool) {
    if created {
        if let Err(e) = tun.set_persist(false) {
            tracing::warn!(error = %e, interface = HOST_IFNAME, "could not remove the TUN device this start created");
        }
    }
}

/// Binds the WireGuard socket on every address.
fn bind_udp(port: u16) -> Result<UdpSocket, RunError> {
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
    UdpSocket::bind(addr).map_err(|e| RunError::Udp {
        port,
        reason: match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                "it is already in use (another weft-agent, or kernel WireGuard?); \
                stop that, or choose another port with --listen-port"
                    .to_string()
            }
            std::io::ErrorKind::PermissionDenied => {
                format!("{e}; ports below 1024 need root (or CAP_NET_BIND_SERVICE)")
            }
            _ => e.to_string(),
        },
    })
}

/// Leaves the cluster with the stored credential, then forgets the node's
/// identity (credentials.json, node.json, peers.json, objects.json;
/// private.key stays).
/// Returns a line for the operator.
pub async fn leave(cfg: &LeaveConfig) -> Result<String, RunError> {
    let paths = StatePaths::new(&cfg.state_dir);
    let cred_path = paths.credentials();
    if !cred_path.exists() {
        return Err(RunError::Leave(format!(
            "{} does not exist: this node has not joined (or has left already)",
            cred_path.display()
        )));
    }
    let mut creds = Credentials::load(&cred_path).map_err(ClusterError::from)?;
    if let Some(cp) = &cfg.control_plane {
        creds.server = cp.clone();
    }
    let name = match NodeFile::load(&paths.node())? {
        Some(n) => n.name,
        None => creds.name.clone(),
    };
    let timeout = Duration::from_secs(10);
    let channel = tokio::time::timeout(timeout, weft_client::connect(&creds))
        .await
        .map_err(|_| RunError::Leave(format!("connecting to {} timed out", creds.server)))?
        .map_err(ClusterError::from)?;
    let request = LeaveRequest {
        node_name: name.clone(),
    };
    let note = match tokio::time::timeout(timeout, ClusterClient::new(channel).leave(request)).await
    {
        Err(_) => return Err(RunError::Leave("Leave timed out".into())),
        Ok(Err(s)) if s.code() == tonic::Code::NotFound => {
            format!("node {name} was not in the cluster any more")
        }
        Ok(Err(s)) => return Err(RunError::Leave(format!("{:?}: {}", s.code(), s.message()))),
        Ok(Ok(_)) => format!("node {name} left the cluster"),
    };
    for path in [
        paths.credentials(),
        paths.node(),
        paths.peers(),
        paths.objects(),
    ] {
        if let Err(e) = std::fs::remove_file(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(ClusterError::io("removing", &path, e).into());
            }
        }
    }
    Ok(format!(
        "{note}; removed its identity from {} (the next start joins anew and needs --token)",
        paths.dir.display()
    ))
}
