//! One simulated node: join over its own CA-pinned channel, then open its own
//! mutual-TLS channel with the credential it got and hold a `Watch`, noting
//! when it has seen every node and when each fan-out change reached it (and,
//! in the objects phase, which objects it holds: `objects.rs`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use base64::Engine as _;
use tokio::sync::{mpsc, Semaphore};
use tonic::transport::Channel;
use tonic::Streaming;
use weft_client::Credentials;
use weft_proto::v1::cluster_client::ClusterClient;
use weft_proto::v1::{
    change, watch_event, ChangeType, JoinRequest, Node, WatchRequest, WatchResponse,
};

/// Fan-out changes set the updating node's endpoint to
/// `FANOUT_IP:(FANOUT_PORT_BASE + change index)`, so a watcher can tell which
/// change an event is.
pub(super) const FANOUT_IP: &str = "192.0.2.1";
pub(super) const FANOUT_PORT_BASE: u16 = 20000;
/// Most fan-out changes one run can make (ports stay below 65536).
pub(super) const MAX_CHANGES: usize = (u16::MAX - FANOUT_PORT_BASE) as usize;

/// "bench-00042".
pub(super) fn node_name(idx: usize) -> String {
    format!("bench-{idx:05}")
}

/// The index in a bench node name, if it is one.
fn node_index(name: &str) -> Option<usize> {
    name.strip_prefix("bench-")?.parse().ok()
}

/// A distinct, valid WireGuard public key (32 bytes, base64) per node.
fn public_key(idx: usize) -> String {
    let mut key = [0x5au8; 32];
    key[..8].copy_from_slice(&(idx as u64).to_le_bytes());
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// A distinct underlay endpoint per node (the control plane refuses an
/// endpoint another node holds): 198.18.0.0/15, the benchmarking range.
fn endpoint(idx: usize) -> String {
    let ip =
        std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(198, 18, 0, 1)) + idx as u32);
    format!("{ip}:51820")
}

/// Which fan-out change a node record carries, if any.
fn fanout_index(node: &Node) -> Option<usize> {
    let ep = node.endpoints.first()?;
    let (ip, port) = ep.rsplit_once(':')?;
    if ip != FANOUT_IP {
        return None;
    }
    let port: u16 = port.parse().ok()?;
    port.checked_sub(FANOUT_PORT_BASE).map(usize::from)
}

/// State every node task and the driver share. Times are nanoseconds since
/// `epoch` plus one, so 0 means "not yet".
pub(super) struct Shared {
    pub epoch: Instant,
    /// The objects phase's counters (see `objects.rs`).
    pub objects: super::objects::Tracker,
    pub nodes: usize,
    pub changes: usize,
    /// Per node: when its watch had seen every node.
    pub converged_at: Vec<AtomicU64>,
    pub converged: AtomicUsize,
    /// Per node: when its snapshot arrived.
    pub snapshot_at: Vec<AtomicU64>,
    /// Per (change, node), at `change * nodes + node`: when the change
    /// reached the node's watch.
    pub fanout_at: Vec<AtomicU64>,
    /// Per change: how many watches have received it.
    pub fanout_seen: Vec<AtomicUsize>,
    /// The node whose record the fan-out changes (usize::MAX: none yet).
    pub updater: AtomicUsize,
    /// Watch streams open right now.
    pub watching: AtomicUsize,
    pub responses: AtomicU64,
    pub events: AtomicU64,
    pub snapshot_nodes: AtomicU64,
    pub keepalives: AtomicU64,
    /// Changes whose revision did not increase over the one before.
    pub out_of_order: AtomicU64,
    /// Watch streams that ended or failed, with why (first few).
    pub stream_failures: AtomicUsize,
    pub failure_messages: Mutex<Vec<String>>,
}

impl Shared {
    pub(super) fn new(nodes: usize, changes: usize, plan: super::objects::Plan) -> Shared {
        let zeros = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        Shared {
            epoch: Instant::now(),
            objects: super::objects::Tracker::new(plan, nodes),
            nodes,
            changes,
            converged_at: zeros(nodes),
            converged: AtomicUsize::new(0),
            snapshot_at: zeros(nodes),
            fanout_at: zeros(nodes * changes),
            fanout_seen: (0..changes).map(|_| AtomicUsize::new(0)).collect(),
            updater: AtomicUsize::new(usize::MAX),
            watching: AtomicUsize::new(0),
            responses: AtomicU64::new(0),
            events: AtomicU64::new(0),
            snapshot_nodes: AtomicU64::new(0),
            keepalives: AtomicU64::new(0),
            out_of_order: AtomicU64::new(0),
            stream_failures: AtomicUsize::new(0),
            failure_messages: Mutex::new(Vec::new()),
        }
    }

    /// Nanoseconds since the epoch, plus one (never 0).
    pub(super) fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64 + 1
    }

    /// Turn a stamp back into time since the epoch.
    pub(super) fn stamp_to_duration(stamp: u64) -> Option<Duration> {
        (stamp != 0).then(|| Duration::from_nanos(stamp - 1))
    }

    fn fail(&self, msg: String) {
        self.stream_failures.fetch_add(1, Ordering::Relaxed);
        let mut m = self
            .failure_messages
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if m.len() < 10 {
            m.push(msg);
        }
    }
}

/// What a node reports once its join and watch set-up are done (or failed).
pub(super) struct JoinReport {
    pub idx: usize,
    pub outcome: Result<Joined, String>,
}

/// Timings of one node's way into the cluster; `*_at` since the epoch.
pub(super) struct Joined {
    /// When it got its turn (a semaphore permit) to start.
    pub started_at: Duration,
    pub pinned_connect: Duration,
    pub join_rpc: Duration,
    /// When its Join returned.
    pub joined_at: Duration,
    pub mtls_connect: Duration,
    /// From calling Watch to the response headers.
    pub watch_open: Duration,
    /// When its watch was open.
    pub watching_at: Duration,
    /// Its mTLS channel (for fan-out changes and pod registrations).
    pub channel: Option<Channel>,
}

/// Everything a node task needs.
pub(super) struct NodeCtx {
    pub shared: Arc<Shared>,
    /// The control-plane replicas: node `idx` joins and watches on
    /// `servers[idx % len]`.
    pub servers: Vec<String>,
    pub token: String,
    pub ca_hash: String,
    /// In-flight limit on join + connect + watch set-up (None: unlimited).
    pub limit: Option<Arc<Semaphore>>,
    pub reports: mpsc::UnboundedSender<JoinReport>,
}

/// Run node `idx` until its task is aborted: join, then watch.
pub(super) async fn run(idx: usize, ctx: Arc<NodeCtx>) {
    let permit = match &ctx.limit {
        Some(s) => match s.clone().acquire_owned().await {
            Ok(p) => Some(p),
            Err(_) => return,
        },
        None => None,
    };
    let started_at = ctx.shared.epoch.elapsed();
    let result = set_up(idx, &ctx, started_at).await;
    drop(permit);
    match result {
        Ok((joined, stream)) => {
            let _ = ctx.reports.send(JoinReport {
                idx,
                outcome: Ok(joined),
            });
            watch(idx, stream, &ctx.shared).await;
        }
        Err(e) => {
            let _ = ctx.reports.send(JoinReport {
                idx,
                outcome: Err(format!("{e:#}")),
            });
        }
    }
}

async fn set_up(
    idx: usize,
    ctx: &NodeCtx,
    started_at: Duration,
) -> Result<(Joined, Streaming<WatchResponse>)> {
    let name = node_name(idx);
    let epoch = ctx.shared.epoch;
    let (key_pem, csr_pem) =
        weft_client::generate_csr(&name).with_context(|| format!("{name}: generating a CSR"))?;

    let server = &ctx.servers[idx % ctx.servers.len().max(1)];
    let t = Instant::now();
    let (pinned, _ca) = weft_client::connect_pinned(server, &ctx.ca_hash)
        .await
        .with_context(|| format!("{name}: connecting with the pinned CA"))?;
    let pinned_connect = t.elapsed();

    let t = Instant::now();
    let joined = ClusterClient::new(pinned)
        .join(JoinRequest {
            token: ctx.token.clone(),
            node_name: name.clone(),
            public_key: public_key(idx),
            endpoints: vec![endpoint(idx)],
            labels: Default::default(),
            csr_pem,
        })
        .await
        .with_context(|| format!("{name}: Cluster.Join"))?
        .into_inner();
    let join_rpc = t.elapsed();
    let joined_at = epoch.elapsed();
    // The pinned channel was moved into the client above and is dropped
    // here: from now on the node speaks mutual TLS only.

    let creds = Credentials {
        server: server.clone(),
        ca_pem: joined.ca_pem,
        cert_pem: joined.certificate_pem,
        key_pem,
        name: name.clone(),
    };
    let t = Instant::now();
    let channel = weft_client::connect(&creds)
        .await
        .with_context(|| format!("{name}: connecting with the node credential"))?;
    let mtls_connect = t.elapsed();

    let t = Instant::now();
    let stream = ClusterClient::new(channel.clone())
        .watch(WatchRequest { resume_revision: 0 })
        .await
        .with_context(|| format!("{name}: Cluster.Watch"))?
        .into_inner();
    let watch_open = t.elapsed();
    ctx.shared.watching.fetch_add(1, Ordering::Relaxed);
    let watching_at = epoch.elapsed();
    Ok((
        Joined {
            started_at,
            pinned_connect,
            join_rpc,
            joined_at,
            mtls_connect,
            watch_open,
            watching_at,
            channel: Some(channel),
        },
        stream,
    ))
}

/// Follow the watch: track which nodes this watcher has seen and when each
/// fan-out change arrives, until the stream ends or the task is aborted.
async fn watch(idx: usize, mut stream: Streaming<WatchResponse>, shared: &Shared) {
    let n = shared.nodes;
    let mut seen = vec![false; n];
    let mut count = 0usize;
    let mut last_revision = 0u64;
    let mut mark = |name: &str, seen: &mut Vec<bool>| {
        if let Some(i) = node_index(name) {
            if i < n && !seen[i] {
                seen[i] = true;
                count += 1;
            }
        }
        count
    };
    let mut converged = false;
    let mut objects = super::objects::Seen::new(&shared.objects.plan);
    'stream: loop {
        let response = match stream.message().await {
            Ok(Some(r)) => r,
            Ok(None) => {
                shared.fail(format!("{}: the watch stream ended", node_name(idx)));
                break 'stream;
            }
            Err(status) => {
                shared.fail(format!(
                    "{}: the watch stream failed: {status}",
                    node_name(idx)
                ));
                break 'stream;
            }
        };
        shared.responses.fetch_add(1, Ordering::Relaxed);
        for event in response.events {
            shared.events.fetch_add(1, Ordering::Relaxed);
            let mut seen_count = None;
            match event.event {
                Some(watch_event::Event::Snapshot(s)) => {
                    shared.snapshot_at[idx].store(shared.now_ns(), Ordering::Relaxed);
                    shared
                        .snapshot_nodes
                        .fetch_add(s.nodes.len() as u64, Ordering::Relaxed);
                    for node in &s.nodes {
                        seen_count = Some(mark(&node.name, &mut seen));
                    }
                    let now = shared.now_ns();
                    for o in &s.objects {
                        objects.object(&shared.objects, idx, o, false, now);
                    }
                    last_revision = event.revision;
                }
                Some(watch_event::Event::Change(c)) => {
                    // Changes of one store transaction share a revision.
                    if event.revision < last_revision {
                        shared.out_of_order.fetch_add(1, Ordering::Relaxed);
                    }
                    last_revision = event.revision;
                    if let Some(change::Object::ClusterObject(o)) = &c.object {
                        let deleted = c.r#type == ChangeType::Delete as i32;
                        objects.object(&shared.objects, idx, o, deleted, shared.now_ns());
                    }
                    if let (Ok(ChangeType::Put), Some(change::Object::Node(node))) =
                        (ChangeType::try_from(c.r#type), &c.object)
                    {
                        seen_count = Some(mark(&node.name, &mut seen));
                        if node_index(&node.name) == Some(shared.updater.load(Ordering::Relaxed)) {
                            if let Some(i) = fanout_index(node).filter(|&i| i < shared.changes) {
                                let slot = &shared.fanout_at[i * n + idx];
                                if slot.load(Ordering::Relaxed) == 0 {
                                    slot.store(shared.now_ns(), Ordering::Relaxed);
                                    shared.fanout_seen[i].fetch_add(1, Ordering::Release);
                                }
                            }
                        }
                    }
                }
                Some(watch_event::Event::Keepalive(_)) => {
                    shared.keepalives.fetch_add(1, Ordering::Relaxed);
                }
                None => {}
            }
            if !converged && seen_count == Some(n) {
                converged = true;
                shared.converged_at[idx].store(shared.now_ns(), Ordering::Relaxed);
                shared.converged.fetch_add(1, Ordering::Release);
            }
        }
    }
    shared.watching.fetch_sub(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keys_and_markers() {
        assert_eq!(node_name(42), "bench-00042");
        assert_eq!(node_index("bench-00042"), Some(42));
        assert_eq!(node_index("other"), None);
        assert_ne!(public_key(1), public_key(2));
        assert_eq!(endpoint(0), "198.18.0.1:51820");
        assert_eq!(endpoint(300), "198.18.1.45:51820");
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(public_key(7))
                .unwrap()
                .len(),
            32
        );
        let node = Node {
            endpoints: vec![format!("{FANOUT_IP}:{}", FANOUT_PORT_BASE + 3)],
            ..Default::default()
        };
        assert_eq!(fanout_index(&node), Some(3));
        let node = Node {
            endpoints: vec!["192.0.2.10:51820".into()],
            ..Default::default()
        };
        assert_eq!(fanout_index(&node), None);
    }
}
