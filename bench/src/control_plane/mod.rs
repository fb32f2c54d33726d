//! `weft-bench control-plane`: the control plane's scale benchmark.
//!
//! 1. Start the release `weft-control-plane` binary as a child process on
//!    127.0.0.1 with a temporary state dir (or, with `--store etcd`, a local
//!    etcd and `--replicas` of them on it: see `replicas`); wait until an
//!    admin call works; create an unlimited join token with admin.conf.
//!    Node `i` joins and watches through replica `i mod N`.
//! 2. N simulated nodes join concurrently (at most `--join-concurrency` in
//!    set-up at once): each makes its own CA-pinned channel for `Join`, then
//!    its own mutual-TLS channel with the node credential it got, and holds a
//!    `Watch` on it.
//! 3. Measure joins/s and the time until every watcher has seen every node.
//! 4. Fan-out: one node changes its endpoints K times (`UpdateNode`, exactly
//!    one Change each), one change at a time; for every (change, watcher) the
//!    time from just before the call until the watcher received it.
//! 5. Read the server's peak RSS (VmHWM) and CPU time (utime + stime) from
//!    /proc, print a table with PASS/FAIL against the targets, write JSON.
//!
//! The exit status is 0 whether or not targets are met; it is 1 only if the
//! run broke (the server died, joins or watches failed, a phase timed out).

mod node;
mod objects;
mod process;
mod replicas;
mod report;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use weft_proto::v1::cluster_client::ClusterClient;
use weft_proto::v1::{CreateTokenRequest, GetClusterInfoRequest, UpdateNodeRequest};

use crate::procfs::{self, CpuTime, Sample};
use node::{Joined, NodeCtx, Shared};
use replicas::{EtcdFigures, Launch, Replicas, StoreKind};
use report::{mib, ms, round3, Dist};

/// Targets on the reference machine (2 cores): all nodes converged within
/// this time from the start of the joins...
const TARGET_CONVERGE: Duration = Duration::from_secs(20);
/// ...p99 of the fan-out latency under this...
const TARGET_FANOUT_P99: Duration = Duration::from_secs(1);
/// ...and the control plane's peak RSS under this...
const TARGET_RSS_BYTES: u64 = 300 * 1024 * 1024;
/// ...or this, with the objects phase (issue 13's 20,000 pods, 2,000
/// Services, 500 NetworkPolicies)...
const TARGET_RSS_OBJECTS_BYTES: u64 = 600 * 1024 * 1024;
/// ...whose objects every watcher holds within this from the phase's start...
const TARGET_OBJECTS_CONVERGE: Duration = Duration::from_secs(30);
/// ...and whose endpoint changes reach every watcher with p99 under this.
const TARGET_ENDPOINT_P99: Duration = Duration::from_secs(1);

/// The cluster CIDR the benchmark runs the control plane with: a /9 that
/// does not overlap the default service CIDR (10.96.0.0/12), so /24 node
/// CIDRs suffice for 32768 nodes.
const CLUSTER_CIDR: &str = "10.128.0.0/9";
const CLUSTER_PREFIX: u8 = 9;

/// Arguments of `weft-bench control-plane`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// How many simulated nodes join and watch.
    #[arg(long, default_value_t = 2000)]
    pub nodes: usize,

    /// How many fan-out changes to time after convergence (one node's
    /// UpdateNode, one at a time).
    #[arg(long, default_value_t = 50)]
    pub changes: usize,

    /// Most nodes in set-up (pinned connect, Join, mTLS connect, Watch) at
    /// once; 0 starts all of them at once.
    #[arg(long, default_value_t = 256)]
    pub join_concurrency: usize,

    /// Seconds the whole run may take before it is abandoned.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,

    /// Seconds one fan-out change may take to reach every watcher.
    #[arg(long, default_value_t = 10)]
    pub change_timeout: u64,

    /// Objects phase: pods registered by the nodes (0 with no Services and
    /// policies either: no objects phase).
    #[arg(long, default_value_t = 0)]
    pub pods: usize,

    /// Objects phase: Services applied (each selects pods/services pods).
    #[arg(long, default_value_t = 0)]
    pub services: usize,

    /// Objects phase: NetworkPolicies applied.
    #[arg(long, default_value_t = 0)]
    pub policies: usize,

    /// Objects phase: endpoint changes timed (a pod added to a Service,
    /// until every watcher has the EndpointSlice listing it).
    #[arg(long, default_value_t = 10)]
    pub endpoint_changes: usize,

    /// Where to write the JSON results (default:
    /// bench/results/control-plane-<UTC timestamp>.json).
    #[arg(long)]
    pub json: Option<PathBuf>,

    /// The control-plane binary (default: weft-control-plane next to this
    /// executable, i.e. in the same target dir).
    #[arg(long)]
    pub control_plane_bin: Option<PathBuf>,

    /// The control plane's log filter (WEFT_LOG); its log goes to
    /// control-plane.log in its state dir.
    #[arg(long, default_value = "info")]
    pub server_log: String,

    /// Keep the control plane's state dir (store, log) after the run.
    #[arg(long)]
    pub keep_state: bool,

    /// An extra flag for the control plane (repeatable), e.g.
    /// --server-arg=--watch-keepalive=5.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    pub server_args: Vec<String>,

    /// An extra environment variable for the control plane (repeatable),
    /// KEY=VALUE, e.g. --server-env MALLOC_ARENA_MAX=2.
    #[arg(long = "server-env", value_parser = parse_env)]
    pub server_env: Vec<(String, String)>,

    /// The store: `redb` (one control plane on its embedded file) or
    /// `etcd` (a local etcd the benchmark starts; see --replicas).
    #[arg(long, value_enum, default_value_t = StoreKind::Redb)]
    pub store: StoreKind,

    /// Control-plane replicas (more than 1 needs --store etcd); the nodes'
    /// joins and watches are spread over them in turn.
    #[arg(long, default_value_t = 1)]
    pub replicas: usize,

    /// Members of the local etcd (--store etcd).
    #[arg(long, default_value_t = 1)]
    pub etcd_members: usize,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?}: expected KEY=VALUE")),
    }
}

/// Run the benchmark; returns the exit code (1 if the run broke).
pub(crate) async fn main(args: Args) -> Result<ExitCode> {
    if args.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    if args.replicas == 0 || (args.replicas > 1 && args.store != StoreKind::Etcd) {
        bail!("--replicas must be 1, or more with --store etcd");
    }
    if args.etcd_members == 0 {
        bail!("--etcd-members must be at least 1");
    }
    if args.changes > node::MAX_CHANGES {
        bail!("--changes must be at most {}", node::MAX_CHANGES);
    }
    if !procfs::available() {
        bail!("/proc is not available; the benchmark reads the control plane's CPU and memory from it");
    }
    let bin = locate_control_plane(args.control_plane_bin.as_deref())?;
    let nofile = raise_nofile(args.nodes, args.join_concurrency)?;

    // A backstop: the run checks its own deadline (--timeout) between
    // phases and reports what it got; this only catches a hang.
    let backstop = Duration::from_secs(args.timeout + 30);
    let outcome = tokio::select! {
        r = tokio::time::timeout(backstop, run(&args, &bin, nofile)) => match r {
            Ok(r) => r,
            Err(_) => Err(anyhow!("the run hung for {backstop:?}; abandoned")),
        },
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
    };
    // Every path out of `run` has dropped the server guard by now: the
    // control plane is stopped and its state dir removed.
    let results = outcome?;
    print!("{}", results.table());
    let path = match &args.json {
        Some(p) => p.clone(),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("results")
            .join(format!("control-plane-{}.json", report::utc_timestamp())),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(&results.json()).context("encoding the results")?;
    std::fs::write(&path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    println!("results written to {}", path.display());
    if results.errors.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("weft-bench: the run broke:");
        for e in &results.errors {
            eprintln!("  - {e}");
        }
        Ok(ExitCode::from(1))
    }
}

/// The release control-plane binary next to this executable.
fn locate_control_plane(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        if !p.is_file() {
            bail!("--control-plane-bin {}: no such file", p.display());
        }
        return Ok(p.to_path_buf());
    }
    let exe = std::env::current_exe().context("finding this executable's path")?;
    let dir = exe
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent directory", exe.display()))?;
    let bin = dir.join("weft-control-plane");
    if !bin.is_file() {
        bail!(
            "{} does not exist: build it first with `cargo build --release -p weft-control-plane` \
             (or run bench/control-plane.sh, which builds both and runs the benchmark)",
            bin.display()
        );
    }
    if dir.file_name().is_some_and(|n| n != "release") {
        eprintln!(
            "weft-bench: warning: {} is not a release build; figures will not be representative",
            bin.display()
        );
    }
    Ok(bin)
}

/// Raise RLIMIT_NOFILE far enough for this process and the control plane
/// (which inherits it): each holds one connection per node, plus the
/// in-flight join connections. Returns the soft limit now in force.
fn raise_nofile(nodes: usize, concurrency: usize) -> Result<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let in_flight = if concurrency == 0 {
        nodes
    } else {
        concurrency.min(nodes)
    };
    let want = (nodes + in_flight + 1024) as u64;
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).context("getrlimit(RLIMIT_NOFILE)")?;
    if soft >= want {
        return Ok(soft);
    }
    let new_hard = hard.max(want);
    setrlimit(Resource::RLIMIT_NOFILE, want, new_hard)
        .or_else(|_| setrlimit(Resource::RLIMIT_NOFILE, want.min(hard), hard))
        .with_context(|| format!("setrlimit(RLIMIT_NOFILE, {want})"))?;
    let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).context("getrlimit(RLIMIT_NOFILE)")?;
    if soft < want {
        bail!(
            "{nodes} nodes need about {want} open files per process, but the hard limit is {hard}; \
             raise it (e.g. `ulimit -Hn {want}` as root, or limits.conf) or use fewer --nodes"
        );
    }
    Ok(soft)
}

/// The node CIDR prefix that gives every node its own CIDR in CLUSTER_CIDR.
fn node_prefix(nodes: usize) -> Result<u8> {
    let mut prefix = 24u8;
    while (1u64 << (prefix - CLUSTER_PREFIX)) < nodes as u64 {
        prefix += 1;
        if prefix > 30 {
            bail!("{nodes} nodes do not fit into {CLUSTER_CIDR}");
        }
    }
    Ok(prefix)
}

/// A resource sample of the server and of this process at one moment.
#[derive(Debug, Clone, Copy)]
struct Mark {
    at: Duration,
    server: Sample,
    bench: CpuTime,
    /// CPU seconds the whole machine has been busy.
    machine_s: f64,
}

fn mark(pid: u32, epoch: Instant) -> Result<Mark> {
    Ok(Mark {
        at: epoch.elapsed(),
        server: procfs::sample(pid).context("sampling the control plane")?,
        bench: procfs::cpu_time(std::process::id()).context("sampling this process")?,
        machine_s: procfs::machine_busy_s()?,
    })
}

/// One point of the once-every-250-ms timeline.
#[derive(Debug, Clone, Copy)]
struct Point {
    t_s: f64,
    server_rss: u64,
    server_cpu_s: f64,
    bench_cpu_s: f64,
    machine_cpu_s: f64,
    /// Watch streams open at that moment (nodes joined so far).
    watching: usize,
}

/// Everything measured in one run.
struct Results {
    store: StoreKind,
    replicas: usize,
    etcd_members: usize,
    /// Peak RSS of every replica but the first.
    others_peak_rss: Vec<u64>,
    etcd: Option<EtcdFigures>,
    nodes: usize,
    changes: usize,
    join_concurrency: usize,
    nofile: u64,
    node_prefix: u8,
    server_pid: u32,
    server_args: Vec<String>,
    server_env: Vec<(String, String)>,
    server_bin: PathBuf,
    /// Nodes that joined and opened a watch.
    joined: usize,
    join_failures: Vec<String>,
    /// When the last Join returned (since the start).
    join_wall: Option<Duration>,
    /// When the last watch was open.
    setup_wall: Option<Duration>,
    pinned_connect: Dist,
    join_rpc: Dist,
    mtls_connect: Dist,
    watch_open: Dist,
    /// From getting its turn to its watch being open.
    setup_each: Dist,
    /// From a watch being open to its snapshot arriving.
    snapshot_delay: Dist,
    /// Per watcher: from the start until it had seen every node.
    converge_each: Dist,
    converged: usize,
    converge_wall: Option<Duration>,
    fanout: Dist,
    /// Per change: until the last watcher received it.
    fanout_per_change: Dist,
    fanout_missing: usize,
    update_rpc: Dist,
    stream_failures: usize,
    stream_failure_messages: Vec<String>,
    out_of_order: u64,
    responses: u64,
    events: u64,
    snapshot_nodes: u64,
    keepalives: u64,
    marks: Vec<(&'static str, Mark)>,
    peak_rss: u64,
    final_sample: Option<Sample>,
    threads: BTreeMap<String, (CpuTime, usize)>,
    timeline: Vec<Point>,
    cluster_nodes_total: Option<u32>,
    cluster_revision: Option<u64>,
    server_log_lines: usize,
    kept_state: Option<PathBuf>,
    /// The objects phase, if there was one.
    objects: Option<objects::Report>,
    errors: Vec<String>,
}

async fn run(args: &Args, bin: &Path, nofile: u64) -> Result<Results> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout);
    let n = args.nodes;
    let k = args.changes;
    let prefix = node_prefix(n)?;
    let launch = Launch {
        bin,
        node_cidr: (CLUSTER_CIDR, prefix),
        log_level: &args.server_log,
        extra: &args.server_args,
        env: &args.server_env,
    };
    let mut replicas =
        Replicas::start(&launch, args.store, args.replicas, args.etcd_members).await?;
    let servers: Vec<String> = replicas.addrs.iter().map(|a| a.to_string()).collect();
    let server = &mut replicas.first;
    let pid = server.pid();
    let (mut admin, _) = server.wait_ready(Duration::from_secs(30)).await?;
    let token = admin
        .create_token(CreateTokenRequest {
            ttl_seconds: 3600,
            usages: 0,
            description: "weft-bench control-plane".into(),
        })
        .await
        .context("Admin.CreateToken")?
        .into_inner();

    let plan = objects::Plan {
        pods: args.pods,
        services: args.services,
        policies: args.policies,
        endpoint_changes: if args.pods + args.services + args.policies > 0 {
            args.endpoint_changes
        } else {
            0
        },
    };
    let shared = Arc::new(Shared::new(n, k, plan));
    let epoch = shared.epoch;
    let mut errors = Vec::new();
    let mut marks = vec![("start", mark(pid, epoch)?)];

    let timeline = Arc::new(Mutex::new(Vec::new()));
    let sampler = {
        let timeline = timeline.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                let (Ok(s), Ok(b), Ok(m)) = (
                    procfs::sample(pid),
                    procfs::cpu_time(std::process::id()),
                    procfs::machine_busy_s(),
                ) else {
                    return;
                };
                timeline
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Point {
                        t_s: epoch.elapsed().as_secs_f64(),
                        server_rss: s.rss_bytes,
                        server_cpu_s: s.cpu.total_s(),
                        bench_cpu_s: b.total_s(),
                        machine_cpu_s: m,
                        watching: shared.watching.load(Ordering::Relaxed),
                    });
            }
        })
    };

    // Phase 1: joins and watches.
    eprintln!(
        "weft-bench: {n} nodes joining ({})",
        if args.join_concurrency == 0 {
            "all at once".to_string()
        } else {
            format!("at most {} in set-up at once", args.join_concurrency)
        }
    );
    let (tx, mut rx) = mpsc::unbounded_channel();
    let ctx = Arc::new(NodeCtx {
        shared: shared.clone(),
        servers,
        token: token.token_string,
        ca_hash: token.ca_cert_hash,
        limit: (args.join_concurrency > 0).then(|| Arc::new(Semaphore::new(args.join_concurrency))),
        reports: tx,
    });
    let mut tasks = JoinSet::new();
    for idx in 0..n {
        tasks.spawn(node::run(idx, ctx.clone()));
    }
    drop(ctx);
    let mut joined: Vec<Option<Joined>> = (0..n).map(|_| None).collect();
    let mut join_failures = Vec::new();
    let mut reported = 0;
    while reported < n {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(r)) => {
                reported += 1;
                match r.outcome {
                    Ok(j) => joined[r.idx] = Some(j),
                    Err(e) => join_failures.push(e),
                }
            }
            Ok(None) => break,
            Err(_) => {
                errors.push(format!(
                    "only {reported} of {n} nodes finished joining within --timeout"
                ));
                break;
            }
        }
    }
    let ok: Vec<&Joined> = joined.iter().flatten().collect();
    if !join_failures.is_empty() {
        errors.push(format!(
            "{} of {n} nodes failed to join; first: {}",
            join_failures.len(),
            join_failures[0]
        ));
    }
    let join_wall = ok.iter().map(|j| j.joined_at).max();
    let setup_wall = ok.iter().map(|j| j.watching_at).max();
    marks.push(("joined", mark(pid, epoch)?));
    if let Err(e) = server.check_alive() {
        errors.push(format!("{e:#}"));
    }
    eprintln!(
        "weft-bench: {} joined, last Join returned at {:.2} s",
        ok.len(),
        join_wall.unwrap_or_default().as_secs_f64()
    );

    // Phase 2: convergence.
    let expected = ok.len();
    loop {
        if expected < n {
            errors.push(format!(
                "no watcher can see all {n} nodes: only {expected} joined"
            ));
            break;
        }
        let done = shared.converged.load(Ordering::Acquire)
            + shared.stream_failures.load(Ordering::Relaxed);
        if done >= expected {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            errors.push(format!(
                "only {} of {expected} watchers had seen every node within --timeout",
                shared.converged.load(Ordering::Acquire)
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let converged = shared.converged.load(Ordering::Acquire);
    let converge_times: Vec<Duration> = shared
        .converged_at
        .iter()
        .filter_map(|a| Shared::stamp_to_duration(a.load(Ordering::Relaxed)))
        .collect();
    let converge_wall = (converged == n)
        .then(|| converge_times.iter().max().copied())
        .flatten();
    marks.push(("converged", mark(pid, epoch)?));
    eprintln!(
        "weft-bench: {converged} of {n} watchers converged, at {:.2} s",
        converge_times
            .iter()
            .max()
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
    );

    // Phase 3: fan-out.
    let mut fanout = Vec::new();
    let mut per_change = Vec::new();
    let mut update_rpc = Vec::new();
    let mut fanout_missing = 0;
    let updater = joined
        .first()
        .and_then(|j| j.as_ref())
        .and_then(|j| j.channel.clone());
    match updater {
        _ if k == 0 => {}
        _ if tokio::time::Instant::now() >= deadline => {
            errors.push("--timeout reached before the fan-out phase; no changes made".into());
        }
        None => errors.push("node 0 did not join; no fan-out changes made".into()),
        Some(channel) => {
            eprintln!("weft-bench: timing {k} fan-out changes");
            shared.updater.store(0, Ordering::Relaxed);
            let mut client = ClusterClient::new(channel);
            let name = node::node_name(0);
            for i in 0..k {
                let endpoint = format!(
                    "{}:{}",
                    node::FANOUT_IP,
                    node::FANOUT_PORT_BASE as usize + i
                );
                let t0 = shared.now_ns();
                let sent = Instant::now();
                let r = client
                    .update_node(UpdateNodeRequest {
                        node_name: name.clone(),
                        endpoints: vec![endpoint],
                        ..Default::default()
                    })
                    .await;
                update_rpc.push(sent.elapsed());
                if let Err(status) = r {
                    errors.push(format!(
                        "fan-out change {i}: Cluster.UpdateNode failed: {status}"
                    ));
                    break;
                }
                let change_deadline = deadline
                    .min(tokio::time::Instant::now() + Duration::from_secs(args.change_timeout));
                loop {
                    let seen = shared.fanout_seen[i].load(Ordering::Acquire);
                    if seen >= shared.watching.load(Ordering::Relaxed) {
                        break;
                    }
                    if tokio::time::Instant::now() >= change_deadline {
                        errors.push(format!(
                            "fan-out change {i} reached only {seen} of {} watchers within {}s",
                            shared.watching.load(Ordering::Relaxed),
                            args.change_timeout
                        ));
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                let mut last = Duration::ZERO;
                let stamps = &shared.fanout_at[i * n..(i + 1) * n];
                for (stamp, node) in stamps.iter().zip(&joined) {
                    match stamp.load(Ordering::Relaxed) {
                        0 => fanout_missing += usize::from(node.is_some()),
                        at => {
                            let lat = Duration::from_nanos(at.saturating_sub(t0));
                            last = last.max(lat);
                            fanout.push(lat);
                        }
                    }
                }
                per_change.push(last);
                if tokio::time::Instant::now() >= deadline {
                    errors.push(format!(
                        "--timeout reached after {} of {k} fan-out changes",
                        i + 1
                    ));
                    break;
                }
            }
        }
    }
    marks.push(("fanned-out", mark(pid, epoch)?));

    // Phase 4: objects.
    let objects_report = if plan.any() {
        eprintln!(
            "weft-bench: objects: {} services, {} policies, {} pods, {} endpoint changes",
            plan.services, plan.policies, plan.pods, plan.endpoint_changes
        );
        let channels: Vec<_> = joined
            .iter()
            .map(|j| j.as_ref().and_then(|j| j.channel.clone()))
            .collect();
        let s = shared.clone();
        let report = objects::run(
            &mut admin,
            &channels,
            &shared.objects,
            &shared.watching,
            move || s.now_ns(),
            deadline,
            Duration::from_secs(args.change_timeout),
        )
        .await;
        errors.extend(report.errors.iter().cloned());
        marks.push(("objects", mark(pid, epoch)?));
        Some(report)
    } else {
        None
    };
    let end = mark(pid, epoch)?;
    let threads = procfs::thread_cpu(pid).unwrap_or_default();
    let info = admin.get_cluster_info(GetClusterInfoRequest {}).await;
    let (cluster_nodes_total, cluster_revision) = match info {
        Ok(i) => {
            let i = i.into_inner();
            (Some(i.nodes_total), Some(i.revision))
        }
        Err(e) => {
            errors.push(format!("Admin.GetClusterInfo at the end failed: {e}"));
            (None, None)
        }
    };
    if let Err(e) = server.check_alive() {
        errors.push(format!("{e:#}"));
    }
    errors.extend(replicas::check_alive(&mut replicas.others));
    let others_peak_rss = replicas::peak_rss(&replicas.others);
    let etcd = replicas::etcd_figures(replicas.etcd.as_ref());
    let server = &mut replicas.first;
    let stream_failures = shared.stream_failures.load(Ordering::Relaxed);
    if stream_failures > 0 {
        errors.push(format!(
            "{stream_failures} watch streams ended or failed during the run"
        ));
    }
    let out_of_order = shared.out_of_order.load(Ordering::Relaxed);
    if out_of_order > 0 {
        errors.push(format!(
            "{out_of_order} watch changes arrived with a revision not above the one before"
        ));
    }

    sampler.abort();
    tasks.abort_all();
    let server_log_lines = server.log_lines();
    let kept_state = args.keep_state.then(|| server.keep_state());
    drop(admin);
    server.stop();
    drop(replicas);
    while tasks.join_next().await.is_some() {}

    let snapshot_delay: Vec<Duration> = (0..n)
        .filter_map(|i| {
            let at = Shared::stamp_to_duration(shared.snapshot_at[i].load(Ordering::Relaxed))?;
            Some(at.saturating_sub(joined[i].as_ref()?.watching_at))
        })
        .collect();
    let timeline = std::mem::take(&mut *timeline.lock().unwrap_or_else(|e| e.into_inner()));
    let failure_messages = shared
        .failure_messages
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    Ok(Results {
        store: args.store,
        replicas: args.replicas,
        etcd_members: args.etcd_members,
        others_peak_rss,
        etcd,
        nodes: n,
        changes: k,
        join_concurrency: args.join_concurrency,
        nofile,
        node_prefix: prefix,
        server_pid: pid,
        server_args: args.server_args.clone(),
        server_env: args.server_env.clone(),
        server_bin: bin.to_path_buf(),
        joined: ok.len(),
        join_failures,
        join_wall,
        setup_wall,
        pinned_connect: Dist::of(&ok.iter().map(|j| j.pinned_connect).collect::<Vec<_>>()),
        join_rpc: Dist::of(&ok.iter().map(|j| j.join_rpc).collect::<Vec<_>>()),
        mtls_connect: Dist::of(&ok.iter().map(|j| j.mtls_connect).collect::<Vec<_>>()),
        watch_open: Dist::of(&ok.iter().map(|j| j.watch_open).collect::<Vec<_>>()),
        setup_each: Dist::of(
            &ok.iter()
                .map(|j| j.watching_at.saturating_sub(j.started_at))
                .collect::<Vec<_>>(),
        ),
        snapshot_delay: Dist::of(&snapshot_delay),
        converge_each: Dist::of(&converge_times),
        converged,
        converge_wall,
        fanout: Dist::of(&fanout),
        fanout_per_change: Dist::of(&per_change),
        fanout_missing,
        update_rpc: Dist::of(&update_rpc),
        stream_failures,
        stream_failure_messages: failure_messages,
        out_of_order,
        responses: shared.responses.load(Ordering::Relaxed),
        events: shared.events.load(Ordering::Relaxed),
        snapshot_nodes: shared.snapshot_nodes.load(Ordering::Relaxed),
        keepalives: shared.keepalives.load(Ordering::Relaxed),
        peak_rss: end.server.hwm_bytes,
        final_sample: Some(end.server),
        marks,
        threads,
        timeline,
        cluster_nodes_total,
        cluster_revision,
        server_log_lines,
        kept_state,
        objects: objects_report,
        errors,
    })
}

fn pass(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "FAIL"
    }
}

fn secs(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".into(), |d| format!("{:.2} s", d.as_secs_f64()))
}

impl Results {
    fn joins_per_s(&self) -> Option<f64> {
        self.join_wall.map(|w| self.joined as f64 / w.as_secs_f64())
    }

    fn converge_pass(&self) -> bool {
        self.converge_wall.is_some_and(|c| c < TARGET_CONVERGE)
    }

    fn fanout_pass(&self) -> bool {
        self.fanout.count > 0
            && self.fanout_missing == 0
            && self.fanout.p99_ms < TARGET_FANOUT_P99.as_secs_f64() * 1e3
    }

    fn rss_target(&self) -> u64 {
        if self.objects.is_some() {
            TARGET_RSS_OBJECTS_BYTES
        } else {
            TARGET_RSS_BYTES
        }
    }

    fn rss_pass(&self) -> bool {
        self.peak_rss > 0 && self.peak_rss < self.rss_target()
    }

    fn objects_converge_pass(&self) -> bool {
        self.objects
            .as_ref()
            .and_then(|o| o.converge_wall)
            .is_some_and(|c| c < TARGET_OBJECTS_CONVERGE)
    }

    fn endpoint_pass(&self) -> bool {
        self.objects.as_ref().is_some_and(|o| {
            o.endpoint.count > 0
                && o.endpoint_missing == 0
                && o.endpoint.p99_ms < TARGET_ENDPOINT_P99.as_secs_f64() * 1e3
        })
    }

    fn server_cpu(&self) -> CpuTime {
        match (self.marks.first(), self.marks.last()) {
            (Some(a), Some(b)) => b.1.server.cpu.minus(&a.1.server.cpu),
            _ => CpuTime::default(),
        }
    }

    fn store_description(&self) -> String {
        match self.store {
            StoreKind::Redb => "redb (embedded), 1 control plane".to_string(),
            StoreKind::Etcd => format!(
                "etcd ({} member(s), local), {} replica(s); joins and watches spread over them, \
                 fan-out written through the first; detailed figures are the first's",
                self.etcd_members, self.replicas
            ),
        }
    }

    fn table(&self) -> String {
        let mut o = String::new();
        let conc = if self.join_concurrency == 0 {
            "all at once".to_string()
        } else {
            self.join_concurrency.to_string()
        };
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "weft control-plane scale benchmark: {} nodes, join concurrency {conc}, {} fan-out changes, {} cores",
            self.nodes,
            self.changes,
            cores()
        );
        let _ = writeln!(o, "store: {}", self.store_description());
        let _ = writeln!(o, "{:-<100}", "");
        let _ = writeln!(
            o,
            "{:<38} {:<34} {:<14} result",
            "metric", "value", "target"
        );
        let _ = writeln!(o, "{:-<100}", "");
        let row = |o: &mut String, m: &str, v: String, t: &str, r: &str| {
            let _ = writeln!(o, "{m:<38} {v:<34} {t:<14} {r}");
        };
        row(
            &mut o,
            "nodes joined",
            format!("{} of {}", self.joined, self.nodes),
            "",
            "",
        );
        row(
            &mut o,
            "join wall time (last Join returned)",
            secs(self.join_wall),
            "",
            "",
        );
        row(
            &mut o,
            "joins/s",
            self.joins_per_s()
                .map_or_else(|| "-".into(), |j| format!("{j:.0}")),
            "",
            "",
        );
        row(&mut o, "all watches open", secs(self.setup_wall), "", "");
        row(
            &mut o,
            "converged (every watcher saw all)",
            secs(self.converge_wall),
            &format!("< {} s", TARGET_CONVERGE.as_secs()),
            pass(self.converge_pass()),
        );
        row(
            &mut o,
            "fan-out latency p50",
            format!("{} ms", ms(self.fanout.p50_ms)),
            "",
            "",
        );
        row(
            &mut o,
            "fan-out latency p99",
            format!("{} ms", ms(self.fanout.p99_ms)),
            &format!("< {} ms", TARGET_FANOUT_P99.as_millis()),
            pass(self.fanout_pass()),
        );
        row(
            &mut o,
            "fan-out latency max",
            format!("{} ms", ms(self.fanout.max_ms)),
            "",
            "",
        );
        row(
            &mut o,
            "fan-out samples (missing)",
            format!("{} ({})", self.fanout.count, self.fanout_missing),
            "",
            "",
        );
        row(
            &mut o,
            "server peak RSS (VmHWM)",
            format!("{:.1} MiB", mib(self.peak_rss)),
            &format!("< {} MiB", self.rss_target() / (1024 * 1024)),
            pass(self.rss_pass()),
        );
        if !self.others_peak_rss.is_empty() {
            row(
                &mut o,
                "other replicas' peak RSS",
                self.others_peak_rss
                    .iter()
                    .map(|b| format!("{:.1}", mib(*b)))
                    .collect::<Vec<_>>()
                    .join(", ")
                    + " MiB",
                "",
                "",
            );
        }
        if let Some(e) = &self.etcd {
            row(
                &mut o,
                "etcd peak RSS (per member)",
                e.peak_rss
                    .iter()
                    .map(|b| format!("{:.1}", mib(*b)))
                    .collect::<Vec<_>>()
                    .join(", ")
                    + " MiB",
                "",
                "",
            );
            row(
                &mut o,
                "etcd db size (member/snap/db)",
                format!("{:.1} MiB", mib(e.db_bytes)),
                "",
                "",
            );
        }
        if let Some(ob) = &self.objects {
            row(
                &mut o,
                "objects applied (services, policies)",
                format!(
                    "{} + {} in {}",
                    ob.plan.services,
                    ob.plan.policies,
                    secs(ob.apply_wall)
                ),
                "",
                "",
            );
            row(
                &mut o,
                "pods registered (RegisterPod)",
                format!(
                    "{} by {} ({})",
                    ob.plan.pods,
                    secs(ob.register_wall),
                    ob.register_rpc.short()
                ),
                "",
                "",
            );
            row(
                &mut o,
                "objects converged (every watcher)",
                secs(ob.converge_wall),
                &format!("< {} s", TARGET_OBJECTS_CONVERGE.as_secs()),
                pass(self.objects_converge_pass()),
            );
            row(
                &mut o,
                "endpoint change p50",
                format!("{} ms", ms(ob.endpoint.p50_ms)),
                "",
                "",
            );
            row(
                &mut o,
                "endpoint change p99",
                format!("{} ms", ms(ob.endpoint.p99_ms)),
                &format!("< {} ms", TARGET_ENDPOINT_P99.as_millis()),
                pass(self.endpoint_pass()),
            );
            row(
                &mut o,
                "endpoint samples (missing)",
                format!("{} ({})", ob.endpoint.count, ob.endpoint_missing),
                "",
                "",
            );
            row(&mut o, "EndpointSlices", ob.slices.to_string(), "", "");
        }
        let cpu = self.server_cpu();
        row(
            &mut o,
            "server CPU (user + sys)",
            format!(
                "{:.2} s ({:.2} + {:.2})",
                cpu.total_s(),
                cpu.user_s,
                cpu.system_s
            ),
            "",
            "",
        );
        let _ = writeln!(o, "{:-<100}", "");
        let _ = writeln!(o, "set-up latencies per node:");
        let _ = writeln!(
            o,
            "  pinned TLS connect     {}",
            self.pinned_connect.short()
        );
        let _ = writeln!(o, "  Join RPC               {}", self.join_rpc.short());
        let _ = writeln!(o, "  mTLS connect           {}", self.mtls_connect.short());
        let _ = writeln!(o, "  Watch open             {}", self.watch_open.short());
        let _ = writeln!(o, "  whole set-up (own turn) {}", self.setup_each.short());
        let _ = writeln!(
            o,
            "  watch open -> snapshot {}",
            self.snapshot_delay.short()
        );
        let _ = writeln!(o, "  start -> converged     {}", self.converge_each.short());
        let _ = writeln!(o, "fan-out:");
        let _ = writeln!(o, "  UpdateNode RPC         {}", self.update_rpc.short());
        let _ = writeln!(
            o,
            "  per change, last watcher {}",
            self.fanout_per_change.short()
        );
        let _ = writeln!(
            o,
            "watch traffic: {} responses carrying {} events ({} snapshot node records, {} keepalives), {} stream failures, {} out of order",
            self.responses, self.events, self.snapshot_nodes, self.keepalives, self.stream_failures, self.out_of_order
        );
        let _ = writeln!(
            o,
            "per phase (wall; CPU seconds and cores used by the control plane / this benchmark / everything else on the machine):"
        );
        for w in self.marks.windows(2) {
            let (a, b) = (&w[0].1, &w[1].1);
            let wall = (b.at - a.at).as_secs_f64();
            let s = b.server.cpu.minus(&a.server.cpu).total_s();
            let c = b.bench.minus(&a.bench).total_s();
            let other = (b.machine_s - a.machine_s - s - c).max(0.0);
            let cores = |x: f64| x / wall.max(1e-9);
            let _ = writeln!(
                o,
                "  {:<9} -> {:<10} {:>6.2} s   server {:>6.2} s ({:.2})   bench {:>6.2} s ({:.2})   other {:>6.2} s ({:.2})   server RSS {:>5.1} MiB, {} threads, {} fds",
                w[0].0,
                w[1].0,
                wall,
                s,
                cores(s),
                c,
                cores(c),
                other,
                cores(other),
                mib(b.server.rss_bytes),
                b.server.threads,
                b.server.fds
            );
        }
        if !self.threads.is_empty() {
            let _ = writeln!(
                o,
                "control-plane CPU by thread name (threads alive at the end):"
            );
            let mut v: Vec<_> = self.threads.iter().collect();
            v.sort_by(|a, b| b.1 .0.total_s().total_cmp(&a.1 .0.total_s()));
            for (name, (t, count)) in v {
                let _ = writeln!(
                    o,
                    "  {name:<18} x{count:<3} {:>7.2} s (user {:.2}, sys {:.2})",
                    t.total_s(),
                    t.user_s,
                    t.system_s
                );
            }
        }
        if let Some(dir) = &self.kept_state {
            let _ = writeln!(o, "control-plane state dir kept: {}", dir.display());
        }
        for e in &self.stream_failure_messages {
            let _ = writeln!(o, "watch failure: {e}");
        }
        let _ = writeln!(o, "{:-<100}", "");
        o
    }

    fn json(&self) -> Value {
        let dur = |d: Option<Duration>| d.map(|d| round3(d.as_secs_f64()));
        let cpu = self.server_cpu();
        let phases: Vec<Value> = self
            .marks
            .windows(2)
            .map(|w| {
                let (a, b) = (&w[0].1, &w[1].1);
                let sc = b.server.cpu.minus(&a.server.cpu);
                let bc = b.bench.minus(&a.bench);
                json!({
                    "from": w[0].0,
                    "to": w[1].0,
                    "wall_s": round3((b.at - a.at).as_secs_f64()),
                    "server_cpu_user_s": round3(sc.user_s),
                    "server_cpu_system_s": round3(sc.system_s),
                    "bench_cpu_s": round3(bc.total_s()),
                    "other_cpu_s": round3((b.machine_s - a.machine_s - sc.total_s() - bc.total_s()).max(0.0)),
                    "server_rss_mib_at_end": round3(mib(b.server.rss_bytes)),
                    "server_threads_at_end": b.server.threads,
                    "server_fds_at_end": b.server.fds,
                })
            })
            .collect();
        let threads: BTreeMap<&String, Value> = self
            .threads
            .iter()
            .map(|(k, (t, c))| (k, json!({"threads": c, "user_s": round3(t.user_s), "system_s": round3(t.system_s)})))
            .collect();
        json!({
            "benchmark": "control-plane",
            "timestamp_utc": report::utc_timestamp(),
            "environment": {
                "cores": cores(),
                "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
                "git_commit": git_commit(),
            },
            "config": {
                "store": format!("{:?}", self.store).to_lowercase(),
                "replicas": self.replicas,
                "etcd_members": self.etcd_members,
                "nodes": self.nodes,
                "changes": self.changes,
                "join_concurrency": self.join_concurrency,
                "rlimit_nofile": self.nofile,
                "cluster_cidr": CLUSTER_CIDR,
                "node_cidr_prefix": self.node_prefix,
                "server_args_extra": self.server_args,
                "server_env_extra": self.server_env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
                "server_pid": self.server_pid,
                "control_plane_bin": self.server_bin.display().to_string(),
            },
            "results": {
                "nodes_joined": self.joined,
                "join_failures": self.join_failures.len(),
                "join_failure_examples": self.join_failures.iter().take(5).collect::<Vec<_>>(),
                "join_wall_s": dur(self.join_wall),
                "joins_per_s": self.joins_per_s().map(round3),
                "all_watches_open_s": dur(self.setup_wall),
                "converged_watchers": self.converged,
                "converge_s": dur(self.converge_wall),
                "fanout": self.fanout.json(),
                "fanout_missing": self.fanout_missing,
                "fanout_per_change_last_watcher": self.fanout_per_change.json(),
                "update_node_rpc": self.update_rpc.json(),
                "server_peak_rss_bytes": self.peak_rss,
                "server_peak_rss_mib": round3(mib(self.peak_rss)),
                "other_replicas_peak_rss_mib": self.others_peak_rss.iter().map(|b| round3(mib(*b))).collect::<Vec<_>>(),
                "etcd_peak_rss_mib": self.etcd.as_ref().map(|e| e.peak_rss.iter().map(|b| round3(mib(*b))).collect::<Vec<_>>()),
                "etcd_db_bytes": self.etcd.as_ref().map(|e| e.db_bytes),
                "server_cpu_user_s": round3(cpu.user_s),
                "server_cpu_system_s": round3(cpu.system_s),
                "server_cpu_s": round3(cpu.total_s()),
                "server_final": self.final_sample.map(|s| json!({
                    "rss_bytes": s.rss_bytes, "threads": s.threads, "fds": s.fds,
                })),
                "cluster_nodes_total": self.cluster_nodes_total,
                "cluster_revision": self.cluster_revision,
                "server_log_lines": self.server_log_lines,
            },
            "setup_latency": {
                "pinned_connect": self.pinned_connect.json(),
                "join_rpc": self.join_rpc.json(),
                "mtls_connect": self.mtls_connect.json(),
                "watch_open": self.watch_open.json(),
                "whole_setup_from_own_turn": self.setup_each.json(),
                "watch_open_to_snapshot": self.snapshot_delay.json(),
                "start_to_converged": self.converge_each.json(),
            },
            "watch": {
                "responses": self.responses,
                "events": self.events,
                "snapshot_node_records": self.snapshot_nodes,
                "keepalives": self.keepalives,
                "stream_failures": self.stream_failures,
                "stream_failure_examples": self.stream_failure_messages,
                "out_of_order": self.out_of_order,
            },
            "targets": {
                "converge_s": {"target_lt": TARGET_CONVERGE.as_secs(), "pass": self.converge_pass()},
                "fanout_p99_ms": {"target_lt": TARGET_FANOUT_P99.as_millis() as u64, "pass": self.fanout_pass()},
                "server_peak_rss_mib": {"target_lt": self.rss_target() / (1024 * 1024), "pass": self.rss_pass()},
                "objects_converge_s": {"target_lt": TARGET_OBJECTS_CONVERGE.as_secs(), "pass": self.objects_converge_pass()},
                "endpoint_p99_ms": {"target_lt": TARGET_ENDPOINT_P99.as_millis() as u64, "pass": self.endpoint_pass()},
            },
            "objects": self.objects.as_ref().map(objects::Report::json),
            "phases": phases,
            "server_threads_cpu": threads,
            "timeline": self.timeline.iter().map(|p| json!([
                round3(p.t_s), round3(mib(p.server_rss)), round3(p.server_cpu_s), round3(p.bench_cpu_s), round3(p.machine_cpu_s), p.watching
            ])).collect::<Vec<_>>(),
            "timeline_columns": ["t_s", "server_rss_mib", "server_cpu_s", "bench_cpu_s", "machine_busy_cpu_s", "watching"],
            "errors": self.errors,
        })
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

/// The workspace's git commit (with "-dirty" if it has local changes), if git
/// is there to ask.
fn git_commit() -> Option<String> {
    let dir = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new("git")
        .args(["-C", dir, "rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let commit = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let dirty = std::process::Command::new("git")
        .args(["-C", dir, "status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .is_some_and(|o| !o.stdout.is_empty());
    Some(if dirty {
        format!("{commit}-dirty")
    } else {
        commit
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_prefixes() {
        assert_eq!(node_prefix(1).unwrap(), 24);
        assert_eq!(node_prefix(2000).unwrap(), 24);
        assert_eq!(node_prefix(32768).unwrap(), 24);
        assert_eq!(node_prefix(32769).unwrap(), 25);
        assert!(node_prefix(10_000_000).is_err());
    }
}
