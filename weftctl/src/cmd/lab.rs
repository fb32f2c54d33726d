//! `weftctl lab`: a whole weft cluster on this machine, out of network
//! namespaces (see docs/lab.md): `up`, `status`, `pod add/del`, `exec`,
//! `ping`, `check`, `restart`, `logs`, `down`.
//!
//! Thin over [`weft_lab`]: it parses the arguments, shows progress on
//! stderr, prints tables on stdout, and turns the outcome into an exit code
//! (`exec` passes its command's through).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;
use weft_agent_api::StatusResult;
use weft_lab::{
    cargo_build_binaries, ping_stats, profile_dir, teardown, workspace_manifest, Binaries, Cluster,
    ClusterSpec, Lab, LabError, LabName, DEFAULT_STATE_ROOT, LAB_METRICS,
};

use crate::output::{print_out, Format};
use crate::render::lab as render;
use crate::render::progress::Progress;
use crate::render::table;

/// Which lab a command acts on.
#[derive(Debug, Args)]
pub(crate) struct LabSelect {
    /// The lab's name: it prefixes every namespace (weft-NAME-...).
    #[arg(long, env = "WEFT_LAB", default_value = "lab", global = true)]
    pub name: String,
    /// Where lab state lives (lab.json, logs, agent and control-plane state).
    #[arg(long, env = "WEFT_LAB_STATE_ROOT", default_value = DEFAULT_STATE_ROOT, global = true, hide = true)]
    pub state_root: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct LabArgs {
    #[command(flatten)]
    pub select: LabSelect,
    #[command(subcommand)]
    pub command: LabCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum LabCommand {
    /// Bring up a weft cluster on this machine and check it (root).
    ///
    /// A control plane and NODES agents, each in its own network namespace
    /// on a shared underlay, with PODS_PER_NODE pods each; then every pod
    /// and node pings every other. Exits non-zero if any check fails (the
    /// lab stays up to look at). The control plane and the agents log at
    /// the level WEFT_LOG gives (default info).
    Up {
        /// How many nodes.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// How many pods per node.
        #[arg(long, default_value_t = 2)]
        pods_per_node: usize,
        /// How many control-plane replicas; more than 1 runs them on an
        /// etcd (`etcd` on the PATH) in the control plane's namespace.
        #[arg(long, default_value_t = 1)]
        replicas: usize,
    },
    /// Show the lab's nodes, pods (addresses, namespaces) and processes.
    Status {
        /// Output: `table` (text for people) or `json` (for scripts).
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Add or remove a pod with a name, labels and ports (root).
    Pod {
        #[command(subcommand)]
        command: LabPodCommand,
    },
    /// Run a command inside a pod, a node, the control plane or the
    /// outside host (root).
    ///
    /// TARGET is a pod (NAMESPACE/NAME, or its lab name n1-p1), a node
    /// (n1), the control plane (cp) or the outside host (ext: on the
    /// underlay, not a node). The command's exit code is passed through.
    /// WEFT_CONFIG and WEFT_AGENT_SOCKET point at the lab's admin.conf and
    /// the node's agent, so `weftctl nodes` and `weftctl status` work
    /// inside.
    Exec {
        /// shop/web-1, n1-p1, n1, cp, ext.
        target: String,
        /// The command and its arguments (after `--`).
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Ping from a pod or node to a pod, node or address (root).
    ///
    /// ICMP echo sent from inside the lab (no ping binary needed) to a pod,
    /// a node's overlay address, or any address. Exits 1 if no reply came
    /// back.
    Ping {
        /// shop/web-1, n1-p1, n1, cp, ext.
        from: String,
        /// shop/web-1, n2-p1, n2 (its overlay address), ext, or an address.
        to: String,
        /// How many echo requests.
        #[arg(short = 'c', long, default_value_t = 3)]
        count: u32,
    },
    /// Check connectivity again: every pod and node pings every other (root).
    ///
    /// The check `lab up` ends with, the same one `weftctl check cluster`
    /// runs across real hosts (and the Vagrant lab). Exits 1 if any check
    /// fails.
    Check {
        /// Output: `table` (text for people) or `json` (for scripts).
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Restart the control plane (cp) or a node's agent (n1) (root).
    ///
    /// Stops what runs for it (the process the lab started, or one started
    /// by hand in its place), starts it again with the command line `lab up`
    /// used (recorded in lab.json) and waits until it is ready. An agent
    /// keeps its state dir: it does not join again, and its pods keep their
    /// interfaces.
    Restart {
        /// cp, n1, n2, ...
        process: String,
    },
    /// Print the log of the control plane (cp) or a node's agent (n1).
    Logs {
        /// cp, n1, n2, ...
        process: String,
        /// Only the last N lines.
        #[arg(short = 'n', long)]
        lines: Option<usize>,
    },
    /// Remove the lab: processes, namespaces, state (root).
    ///
    /// Succeeds when nothing is up.
    Down,
}

#[derive(Debug, Subcommand)]
pub(crate) enum LabPodCommand {
    /// Add the pod NAMESPACE/NAME to a node: a pod namespace of the node
    /// (its lab name nK-pJ), an address through the node's agent, and its
    /// registration with the control plane (waited for), with its labels
    /// and named ports. The namespace is created if missing.
    Add {
        /// NAMESPACE/NAME, or NAME (in namespace default).
        pod: String,
        /// The node: n1, n2, ...
        #[arg(long)]
        node: String,
        /// A label, KEY=VALUE; repeat for more.
        #[arg(long = "label", short = 'l', value_name = "KEY=VALUE", value_parser = weft_agent_api::parse_label)]
        labels: Vec<(String, String)>,
        /// A named port, [NAME=]PORT[/PROTOCOL] (e.g. http=80/TCP); repeat
        /// for more.
        #[arg(long = "port", value_name = "NAME=PORT/PROTO", value_parser = weft_agent_api::NamedPort::parse)]
        ports: Vec<weft_agent_api::NamedPort>,
    },
    /// Remove a pod (NAMESPACE/NAME or nK-pJ): its interface, address and
    /// namespace, and its registration (waited for).
    Del {
        /// NAMESPACE/NAME, or its lab name nK-pJ.
        pod: String,
    },
}

/// `weftctl lab ...`; returns the exit code.
pub(crate) fn run(args: LabArgs) -> i32 {
    let result = match args.command {
        LabCommand::Up {
            nodes,
            pods_per_node,
            replicas,
        } => up(&args.select, nodes, pods_per_node, replicas),
        LabCommand::Status { output } => status(&args.select, output).map(|()| 0),
        LabCommand::Pod { command } => pod(&args.select, command).map(|()| 0),
        LabCommand::Exec { target, command } => exec(&args.select, &target, &command),
        LabCommand::Ping { from, to, count } => ping(&args.select, &from, &to, count),
        LabCommand::Check { output } => check(&args.select, output),
        LabCommand::Restart { process } => restart(&args.select, &process).map(|()| 0),
        LabCommand::Logs { process, lines } => logs(&args.select, &process, lines).map(|()| 0),
        LabCommand::Down => down(&args.select).map(|()| 0),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("weftctl: {e:#}");
            1
        }
    }
}

fn require_root(what: &str) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "`weftctl lab {what}` needs root (it works with network namespaces); run it with sudo"
        );
    }
    Ok(())
}

fn lab_name(select: &LabSelect) -> Result<LabName> {
    Ok(LabName::new(&select.name)?)
}

/// `--name X` for the commands we suggest, unless it is the default.
fn name_flag(select: &LabSelect) -> String {
    if select.name == "lab" {
        String::new()
    } else {
        format!(" --name {}", select.name)
    }
}

/// The binaries next to this executable. Run through cargo (`cargo run`
/// sets `CARGO`), it first builds them with the same profile, so they are
/// never missing or stale.
fn binaries() -> Result<Binaries> {
    let dir = profile_dir()?;
    let manifest = workspace_manifest();
    if let Some(cargo) = std::env::var_os("CARGO") {
        if manifest.exists() {
            eprintln!(
                "weftctl: building weft-control-plane and weft-agent into {} (run through cargo)",
                dir.display()
            );
            cargo_build_binaries(Path::new(&cargo), &manifest, &dir)
                .context("building the lab's binaries")?;
        }
    }
    let binaries = Binaries::in_dir(&dir);
    binaries.check()?;
    Ok(binaries)
}

fn up(select: &LabSelect, nodes: usize, pods_per_node: usize, replicas: usize) -> Result<i32> {
    require_root("up")?;
    let mut spec = ClusterSpec::new(&select.name, nodes, pods_per_node)?;
    spec.replicas = replicas;
    spec.validate()?;
    spec.lab.state_root = select.state_root.clone();
    spec.binaries = Some(binaries()?);
    // The lab's processes log at WEFT_LOG's level, like they do anywhere.
    if let Ok(filter) = std::env::var("WEFT_LOG") {
        if !filter.trim().is_empty() {
            spec.log_filter = filter;
        }
    }

    let progress = Progress::new();
    let ours = Arc::new(AtomicBool::new(false));
    remove_on_interrupt(
        spec.lab.name.clone(),
        spec.lab.state_root.clone(),
        ours.clone(),
    );
    let mut steps = 0;
    let mut on_step = |step: &str| {
        // The second step comes after the topology was made: from then on
        // the lab is this invocation's to remove.
        steps += 1;
        if steps == 2 {
            ours.store(true, Ordering::SeqCst);
        }
        progress.step(step);
    };
    let cluster = match Cluster::up_with_progress(spec, &mut on_step) {
        Ok(c) => c,
        Err(e) => {
            progress.finish(false);
            return Err(e.into());
        }
    };
    progress.step(&format!(
        "checking connectivity between {} pods and {} nodes",
        cluster.pods().len(),
        cluster.nodes().len()
    ));
    let connectivity = match cluster.check_connectivity() {
        Ok(c) => c,
        Err(e) => {
            progress.finish(false);
            return Err(anyhow!(e).context(format!(
                "checking connectivity; the lab is still up: `weftctl lab down{}` removes it",
                name_flag(select)
            )));
        }
    };
    let ok = connectivity.all_ok();
    let statuses = agent_statuses(&cluster);
    let total = progress.elapsed();
    progress.finish(ok);

    let name = &select.name;
    let flag = name_flag(select);
    let me = invoked_as();
    let mut out = String::new();
    let replicas = cluster.control_plane_labels().len();
    let control_plane = if replicas == 1 {
        "a control plane".to_string()
    } else {
        format!("{replicas} control-plane replicas on etcd")
    };
    out.push_str(&format!(
        "\nLab '{name}' is up: {control_plane}, {} nodes, {} pods.\n\nNODES\n",
        cluster.nodes().len(),
        cluster.pods().len()
    ));
    out.push_str(&render::nodes(&cluster, &statuses));
    out.push_str("\nPODS\n");
    out.push_str(&render::pods(&cluster));
    out.push('\n');
    out.push_str(&render::report(&connectivity));
    out.push_str(&format!("Total time: {:.1}s\n", total.as_secs_f64()));
    let mut steps: Vec<(String, &str)> = Vec::new();
    if let (Some(pod), Some(other)) = (cluster.pods().first(), cluster.pods().last()) {
        steps.push((
            format!("sudo {me} lab exec{flag} {} -- ip addr", pod.name),
            "a pod's interface and address",
        ));
        steps.push((
            format!("sudo {me} lab ping{flag} {} {}", pod.name, other.name),
            "ICMP from one pod to another",
        ));
    }
    steps.push((
        format!("sudo {me} lab exec{flag} n1 -- {me} status"),
        "node n1 as its agent sees it",
    ));
    steps.push((
        format!("sudo {me} lab exec{flag} n1 -- curl -s {LAB_METRICS}/metrics"),
        "n1's Prometheus metrics",
    ));
    steps.push((
        format!("sudo {me} lab exec{flag} cp -- {me} nodes"),
        "the nodes, from the control plane",
    ));
    let lab_flag = if select.name == "lab" {
        "--lab".to_string()
    } else {
        format!("--lab={}", select.name)
    };
    steps.push((
        format!(
            "sudo {me} lab pod add{flag} shop/web-1 --node n1 --label app=web --port http=8080/TCP"
        ),
        "a labelled pod, registered",
    ));
    steps.push((
        format!("sudo {me} {lab_flag} apply -f service.yaml"),
        "any admin command, on the lab",
    ));
    steps.push((
        format!("sudo {me} {lab_flag} get pods -A -o wide"),
        "the cluster's pods",
    ));
    steps.push((
        format!("sudo {me} lab exec{flag} ext -- ping -c 1 192.0.2.2"),
        "a host outside the cluster",
    ));
    steps.push((format!("sudo {me} lab status{flag}"), "this summary again"));
    steps.push((
        format!("sudo {me} lab logs{flag} n1"),
        "an agent's log (or cp)",
    ));
    steps.push((format!("sudo {me} lab down{flag}"), "remove it all"));
    let width = steps.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
    out.push_str("\nNext steps:\n");
    for (command, what) in steps {
        out.push_str(&format!("  {command:<width$}  # {what}\n"));
    }
    if !ok {
        out.push_str(&format!(
            "\nSome checks failed; the lab stays up to look at (logs: {}/logs).\n",
            cluster.lab().state_dir().display()
        ));
    }
    print_out(&out);
    Ok(if ok { 0 } else { 1 })
}

/// On Ctrl-C (SIGINT) while `lab up` works: removes the lab if `ours` says
/// this invocation made it, and exits 130. Lab processes run in their own
/// process groups, so the terminal's SIGINT reaches only weftctl.
fn remove_on_interrupt(name: LabName, state_root: PathBuf, ours: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        if runtime.block_on(tokio::signal::ctrl_c()).is_err() {
            return;
        }
        if ours.load(Ordering::SeqCst) {
            eprintln!("\nweftctl: interrupted; removing lab '{name}'");
            if let Err(e) = teardown(&name, &state_root) {
                eprintln!("weftctl: {e}");
            }
        } else {
            eprintln!(
                "\nweftctl: interrupted; if anything is left, `weftctl lab down --name {name}` removes it"
            );
        }
        std::process::exit(130);
    });
}

/// How the user ran weftctl: the path they typed if it has a `/`
/// (`./target/release/weftctl`), else `weftctl` (found on PATH).
fn invoked_as() -> String {
    std::env::args()
        .next()
        .filter(|a| a.contains('/'))
        .unwrap_or_else(|| "weftctl".to_string())
}

/// Each node's agent status, or why it did not answer.
fn agent_statuses(cluster: &Cluster) -> BTreeMap<String, Result<StatusResult, String>> {
    cluster
        .nodes()
        .iter()
        .map(|n| {
            let status = cluster.agent_status(&n.name).map_err(|e| e.to_string());
            (n.name.clone(), status)
        })
        .collect()
}

fn open(select: &LabSelect) -> Result<Cluster> {
    Ok(Cluster::open(&lab_name(select)?, &select.state_root)?)
}

/// The control plane's rows of `lab status`: `cp`, then an HA lab's other
/// replicas and its etcd.
fn control_plane_rows(cluster: &Cluster, cp_state: String) -> Vec<Vec<String>> {
    let cp = cluster.control_plane();
    let state = |label: &str| match cluster.running_pid(label) {
        Some(pid) => format!("running (pid {pid})"),
        None => "STOPPED".to_string(),
    };
    let mut rows = vec![vec![
        "cp".into(),
        cp.ns.clone(),
        cp.address.to_string(),
        cp_state,
    ]];
    for r in &cp.replicas {
        rows.push(vec![
            r.label.clone(),
            cp.ns.clone(),
            r.address.to_string(),
            state(&r.label),
        ]);
    }
    if let Some(e) = &cp.etcd {
        rows.push(vec![
            weft_lab::ETCD_LABEL.into(),
            cp.ns.clone(),
            e.client.to_string(),
            state(weft_lab::ETCD_LABEL),
        ]);
    }
    rows
}

fn process_state(cluster: &Cluster, label: &str) -> (Option<u32>, String) {
    let live = cluster.live_process(label);
    (live.pid(), live.describe())
}

fn restart(select: &LabSelect, process: &str) -> Result<()> {
    require_root("restart")?;
    let mut cluster = open(select)?;
    if process != weft_lab::CONTROL_PLANE_LABEL && cluster.node(process).is_none() {
        let nodes: Vec<&str> = cluster.nodes().iter().map(|n| n.name.as_str()).collect();
        bail!(
            "lab '{}' has no process {process:?}: cp (the control plane) or a node ({})",
            cluster.name(),
            nodes.join(", ")
        );
    }
    let before = cluster.live_process(process);
    let after = cluster.restart(process)?;
    let what = if process == weft_lab::CONTROL_PLANE_LABEL {
        "the control plane".to_string()
    } else {
        format!("the agent of {process}")
    };
    let was = match before {
        weft_lab::LiveProcess::Stopped => "it was stopped".to_string(),
        other => format!("it was {}", other.describe()),
    };
    print_out(&format!(
        "Restarted {what} ({was}): {}.\n",
        after.describe()
    ));
    Ok(())
}

fn status(select: &LabSelect, output: Format) -> Result<()> {
    let cluster = open(select)?;
    let statuses = agent_statuses(&cluster);
    let cp = cluster.control_plane();
    let (cp_pid, cp_state) = process_state(&cluster, weft_lab::CONTROL_PLANE_LABEL);
    match output {
        Format::Json => {
            let nodes: Vec<_> = cluster
                .nodes()
                .iter()
                .map(|n| {
                    let live = cluster.live_process(&n.name);
                    let pid = live.pid();
                    let peers = match statuses.get(&n.name) {
                        Some(Ok(s)) => s
                            .dataplane
                            .as_ref()
                            .map(|d| {
                                d.peers
                                    .iter()
                                    .map(|p| {
                                        json!({"name": p.name, "endpoint": p.endpoint,
                                        "last_handshake_ms": p.last_handshake_ms})
                                    })
                                    .collect::<Vec<_>>()
                            })
                            .unwrap_or_default(),
                        _ => Vec::new(),
                    };
                    json!({ "name": n.name, "namespace": n.ns, "underlay": n.underlay,
                            "endpoint": n.endpoint, "overlay": n.overlay, "pod_cidr": n.pod_cidr,
                            "api_socket": n.api_socket, "state_dir": n.state_dir, "log": n.log,
                            "pid": pid, "running": pid.is_some(), "process": live, "peers": peers })
                })
                .collect();
            let pods: Vec<_> = cluster
                .pods()
                .iter()
                .map(|p| {
                    json!({ "name": p.name, "node": p.node, "ip": p.ip, "namespace": p.ns,
                            "netns": p.netns, "interface": p.ifname,
                            "cluster_name": p.cluster_name(), "labels": p.labels, "ports": p.ports })
                })
                .collect();
            let doc = json!({
                "name": cluster.name().as_str(),
                "state_dir": cluster.lab().state_dir(),
                "control_plane": { "namespace": cp.ns, "address": cp.address,
                    "admin_conf": cp.admin_conf, "state_dir": cp.state_dir, "log": cp.log,
                    "pid": cp_pid, "running": cp_pid.is_some(),
                    "replicas": cp.replicas.iter().map(|r| {
                        let pid = cluster.running_pid(&r.label);
                        json!({ "label": r.label, "address": r.address, "admin_conf": r.admin_conf,
                                "state_dir": r.state_dir, "pid": pid, "running": pid.is_some() })
                    }).collect::<Vec<_>>(),
                    "etcd": cp.etcd.as_ref().map(|e| {
                        let pid = cluster.running_pid(weft_lab::ETCD_LABEL);
                        json!({ "address": e.client, "data_dir": e.data_dir, "pid": pid,
                                "running": pid.is_some() })
                    }) },
                "nodes": nodes,
                "pods": pods,
                "external": cluster.external().map(|e| json!({
                    "name": EXTERNAL, "namespace": e.ns, "address": e.address.addr() })),
            });
            print_out(&format!("{}\n", serde_json::to_string_pretty(&doc)?));
        }
        Format::Table => {
            let mut out = format!(
                "Lab '{}': {} nodes, {} pods; state in {}\n\n",
                cluster.name(),
                cluster.nodes().len(),
                cluster.pods().len(),
                cluster.lab().state_dir().display()
            );
            out.push_str(&table(
                &["CONTROL PLANE", "NAMESPACE", "ADDRESS", "PROCESS"],
                &control_plane_rows(&cluster, cp_state),
            ));
            let rows: Vec<Vec<String>> = cluster
                .nodes()
                .iter()
                .map(|n| {
                    let dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
                    vec![
                        n.name.clone(),
                        n.ns.clone(),
                        n.endpoint.to_string(),
                        dash(n.overlay.map(|a| a.to_string())),
                        dash(n.pod_cidr.map(|c| c.to_string())),
                        process_state(&cluster, &n.name).1,
                        render::peers(statuses.get(&n.name)),
                    ]
                })
                .collect();
            out.push('\n');
            out.push_str(&table(
                &[
                    "NODE",
                    "NAMESPACE",
                    "ENDPOINT",
                    "OVERLAY",
                    "POD CIDR",
                    "AGENT",
                    "PEERS",
                ],
                &rows,
            ));
            let rows: Vec<Vec<String>> = cluster
                .pods()
                .iter()
                .map(|p| {
                    let labels: Vec<String> =
                        p.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    vec![
                        p.name.clone(),
                        p.cluster_name().unwrap_or_else(|| "-".into()),
                        p.node.clone(),
                        p.ip.to_string(),
                        p.netns.display().to_string(),
                        if labels.is_empty() {
                            "-".into()
                        } else {
                            labels.join(",")
                        },
                    ]
                })
                .collect();
            out.push('\n');
            out.push_str(&table(
                &["POD", "CLUSTER", "NODE", "IP", "NAMESPACE", "LABELS"],
                &rows,
            ));
            if let Some(ext) = cluster.external() {
                out.push('\n');
                out.push_str(&table(
                    &["OUTSIDE HOST", "NAMESPACE", "ADDRESS"],
                    &[vec![
                        EXTERNAL.into(),
                        ext.ns.clone(),
                        ext.address.addr().to_string(),
                    ]],
                ));
            }
            print_out(&out);
        }
    }
    Ok(())
}

/// The namespace of `target` (`cp`, `nK`, `nK-pJ`), and the environment
/// that points weftctl inside it at the lab.
fn resolve(cluster: &Cluster, target: &str) -> Result<(String, Vec<(String, String)>)> {
    let mut env = vec![(
        "WEFT_CONFIG".to_string(),
        cluster.admin_conf().display().to_string(),
    )];
    let (ns, node) = if target == "cp" {
        (cluster.control_plane().ns.clone(), None)
    } else if let Some(ext) = cluster.external().filter(|_| target == EXTERNAL) {
        (ext.ns.clone(), None)
    } else if let Some(node) = cluster.node(target) {
        (node.ns.clone(), Some(node))
    } else if let Some(pod) = cluster.pod(target) {
        (pod.ns.clone(), cluster.node(&pod.node))
    } else {
        let pods: Vec<String> = cluster.pods().iter().map(pod_label).collect();
        let nodes: Vec<&str> = cluster.nodes().iter().map(|n| n.name.as_str()).collect();
        let ext = if cluster.external().is_some() {
            ", ext"
        } else {
            ""
        };
        bail!(
            "lab '{}' has no pod or node {target:?}: pods {}; nodes {}; or cp{ext}",
            cluster.name(),
            pods.join(", "),
            nodes.join(", ")
        );
    };
    if let Some(node) = node {
        env.push((
            "WEFT_AGENT_SOCKET".to_string(),
            node.api_socket.display().to_string(),
        ));
    }
    Ok((ns, env))
}

/// The outside host's name.
const EXTERNAL: &str = "ext";

/// A pod as `lab` commands name it: `NAMESPACE/NAME (nK-pJ)`, or `nK-pJ`.
fn pod_label(pod: &weft_lab::ClusterPod) -> String {
    match pod.cluster_name() {
        Some(c) => format!("{c} ({})", pod.name),
        None => pod.name.clone(),
    }
}

/// `weftctl lab pod add|del`.
fn pod(select: &LabSelect, command: LabPodCommand) -> Result<()> {
    require_root("pod")?;
    let mut cluster = open(select)?;
    match command {
        LabPodCommand::Add {
            pod,
            node,
            labels,
            ports,
        } => {
            let (namespace, name) = match pod.split_once('/') {
                Some((ns, name)) => (ns.to_string(), name.to_string()),
                None => (
                    weft_agent_api::DEFAULT_POD_NAMESPACE.to_string(),
                    pod.clone(),
                ),
            };
            let added = cluster.add_named_pod(
                &node,
                weft_lab::PodIdentity {
                    namespace,
                    name,
                    labels: labels.into_iter().collect(),
                    ports,
                },
            )?;
            print_out(&format!(
                "pod {} added to {} as {}: {} in {}; registered with the control plane\n",
                added.cluster_name().unwrap_or_else(|| pod.clone()),
                added.node,
                added.name,
                added.ip,
                added.ns
            ));
        }
        LabPodCommand::Del { pod } => {
            let removed = cluster.remove_pod(&pod)?;
            print_out(&format!(
                "pod {} removed from {} ({} freed); the control plane no longer has it\n",
                pod_label(&removed),
                removed.node,
                removed.ip
            ));
        }
    }
    Ok(())
}

fn exec(select: &LabSelect, target: &str, command: &[String]) -> Result<i32> {
    require_root("exec")?;
    let cluster = open(select)?;
    let (ns, env) = resolve(&cluster, target)?;
    let Some((program, args)) = command.split_first() else {
        bail!("no command given: weftctl lab exec {target} -- COMMAND [ARGS...]");
    };
    let status = Command::new("ip")
        .args(["netns", "exec", &ns, program])
        .args(args)
        .envs(env)
        .status()
        .with_context(|| format!("running `ip netns exec {ns} {program}`"))?;
    Ok(match status.code() {
        Some(code) => code,
        None => {
            use std::os::unix::process::ExitStatusExt;
            128 + status.signal().unwrap_or(0)
        }
    })
}

fn ping(select: &LabSelect, from: &str, to: &str, count: u32) -> Result<i32> {
    require_root("ping")?;
    let cluster = open(select)?;
    let (ns, _) = resolve(&cluster, from)?;
    let ip: IpAddr = if let Some(pod) = cluster.pod(to) {
        pod.ip
    } else if let Some(ext) = cluster.external().filter(|_| to == EXTERNAL) {
        IpAddr::V4(ext.address.addr())
    } else if let Some(node) = cluster.node(to) {
        node.overlay
            .ok_or_else(|| anyhow!("node {to} has no overlay address recorded"))?
    } else {
        to.parse().map_err(|_| {
            anyhow!(
                "{to:?} is neither a pod, a node nor an IP address of lab '{}'",
                cluster.name()
            )
        })?
    };
    let timeout = Duration::from_millis(200) * count.clamp(1, 1000) + Duration::from_secs(2);
    let stats = ping_stats(&ns, ip, count, timeout)?;
    let shown = if to == ip.to_string() {
        to.to_string()
    } else {
        format!("{to} ({ip})")
    };
    let mut line = format!(
        "{from} -> {shown}: {} sent, {} received",
        stats.sent, stats.received
    );
    if let (Some(min), Some(avg), Some(max)) =
        (stats.min(), stats.average(), stats.rtts.iter().max())
    {
        line.push_str(&format!(
            ", round trip min/avg/max {}/{}/{}",
            render::rtt_text(min),
            render::rtt_text(avg),
            render::rtt_text(*max)
        ));
    }
    print_out(&format!("{line}\n"));
    Ok(if stats.received > 0 { 0 } else { 1 })
}

fn check(select: &LabSelect, output: Format) -> Result<i32> {
    require_root("check")?;
    let cluster = open(select)?;
    let connectivity = cluster.check_connectivity()?;
    match output {
        Format::Json => print_out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&connectivity)?
        )),
        Format::Table => print_out(&render::report(&connectivity)),
    }
    Ok(if connectivity.all_ok() { 0 } else { 1 })
}

fn logs(select: &LabSelect, process: &str, lines: Option<usize>) -> Result<()> {
    let name = lab_name(select)?;
    let lab = Lab::open(&name, &select.state_root)?;
    let record = lab
        .state()
        .processes
        .iter()
        .find(|p| p.label == process)
        .ok_or_else(|| {
            let labels: Vec<&str> = lab
                .state()
                .processes
                .iter()
                .map(|p| p.label.as_str())
                .collect();
            anyhow!(
                "lab '{name}' has no process {process:?}; it has: {}",
                labels.join(", ")
            )
        })?;
    let text = std::fs::read(&record.log_path)
        .with_context(|| format!("reading {}", record.log_path.display()))?;
    let text = String::from_utf8_lossy(&text);
    match lines {
        Some(n) => {
            let all: Vec<&str> = text.lines().collect();
            let tail = all[all.len().saturating_sub(n)..].join("\n");
            print_out(&format!("{tail}\n"));
        }
        None => print_out(&text),
    }
    Ok(())
}

fn down(select: &LabSelect) -> Result<()> {
    require_root("down")?;
    let name = lab_name(select)?;
    let report = match teardown(&name, &select.state_root) {
        Ok(r) => r,
        Err(e @ LabError::TeardownIncomplete { .. }) => return Err(e.into()),
        Err(e) => return Err(anyhow!(e).context(format!("tearing down lab '{name}'"))),
    };
    for w in &report.warnings {
        eprintln!("weftctl: warning: {w}");
    }
    if report.is_empty() {
        print_out(&format!("Lab '{name}' is not up; nothing to remove.\n"));
    } else {
        print_out(&format!(
            "Lab '{name}' is down: stopped {} processes, deleted {} namespaces{}.\n",
            report.processes_killed.len(),
            report.namespaces_deleted.len(),
            if report.state_dir_removed.is_some() {
                ", removed its state"
            } else {
                ""
            }
        ));
    }
    Ok(())
}
