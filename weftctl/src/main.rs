//! `weftctl`: the admin CLI of weft. Thin: parse arguments, run one command,
//! print its result or one line of error.

#![forbid(unsafe_code)]

mod cmd;
mod duration;
mod output;
mod render;

use cmd::{admin, apply, check, explain, get, lab, on_lab, pod, status, trace};

use clap::{Parser, Subcommand};

/// weftctl: manage a weft cluster (join tokens, nodes, cluster info, and
/// its Kubernetes objects: apply, get, delete, label), this node's pods and
/// status, and a local lab cluster.
#[derive(Debug, Parser)]
#[command(name = "weftctl", version, about)]
struct Cli {
    /// Send an admin command to a local lab's control plane (`weftctl
    /// lab`), with the lab's admin credentials: `--lab` (the lab WEFT_LAB
    /// names, else `lab`), `--lab=NAME`, or `--lab NAME` before the
    /// command. Root.
    #[arg(
        long,
        global = true,
        value_name = "NAME",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = ""
    )]
    lab: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Join tokens: create, list, revoke.
    Token(admin::TokenArgs),
    /// List the cluster's nodes.
    Nodes {
        #[command(flatten)]
        admin: admin::AdminConfig,
        /// Output: `table` (text for people) or `json` (for scripts).
        #[arg(short = 'o', long, value_enum, default_value_t = output::Format::Table)]
        output: output::Format,
    },
    /// Act on one node.
    Node(admin::NodeArgs),
    /// Cluster settings, counts and version.
    Cluster(admin::ClusterArgs),
    /// Create or update objects from Kubernetes manifests (kubectl apply).
    Apply(apply::ApplyArgs),
    /// List objects, or show some: namespaces, pods, services,
    /// endpointslices, networkpolicies, nodes.
    Get(get::GetArgs),
    /// Delete objects by kind and name, or those a manifest describes.
    Delete(apply::DeleteArgs),
    /// Set (key=value) and remove (key-) labels of an object.
    Label(get::LabelArgs),
    /// Whether NetworkPolicy allows a new connection from a pod to a pod
    /// or address, and the policy and rule that decided each direction.
    Explain(explain::ExplainArgs),
    /// Pods on this node, through the local agent: add, del, list.
    Pod(pod::PodArgs),
    /// This node as its agent sees it: control-plane link, peers, drops.
    Status(status::StatusArgs),
    /// What this node's packet path would do with a new connection from a
    /// pod: DNS, conntrack, Service translation, NetworkPolicy, route.
    Trace(trace::TraceArgs),
    /// Connectivity check across real hosts: inventory, run, cluster (root).
    Check(check::CheckArgs),
    /// A whole weft cluster on this machine, in network namespaces: up,
    /// status, exec, ping, check, restart, logs, down (root).
    Lab(lab::LabArgs),
}

/// Every command's name, for `--lab NAME` before one of them.
fn command_names() -> Vec<String> {
    use clap::CommandFactory as _;
    Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect()
}

/// The admin credentials an admin command uses; `None` for the others.
fn admin_config(command: &mut Command) -> Option<&mut std::path::PathBuf> {
    match command {
        Command::Token(a) => Some(&mut a.admin.config),
        Command::Nodes { admin, .. } => Some(&mut admin.config),
        Command::Node(a) => Some(&mut a.admin.config),
        Command::Cluster(a) => Some(&mut a.admin.config),
        Command::Apply(a) => Some(&mut a.admin.config),
        Command::Get(a) => Some(&mut a.admin.config),
        Command::Delete(a) => Some(&mut a.admin.config),
        Command::Label(a) => Some(&mut a.admin.config),
        Command::Explain(a) => Some(&mut a.admin.config),
        Command::Pod(_)
        | Command::Status(_)
        | Command::Trace(_)
        | Command::Check(_)
        | Command::Lab(_) => None,
    }
}

fn main() {
    let names = command_names();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let args = on_lab::normalize_args(std::env::args_os().collect(), &names);
    let mut cli = Cli::parse_from(args);
    init_logging();
    // `--lab trace POD ...`: the agent of the pod's node.
    if let (Some(name), Command::Trace(args)) = (&cli.lab, &mut cli.command) {
        match trace::lab_socket(name, &args.from) {
            Ok(socket) => args.socket.path = socket,
            Err(e) => {
                eprintln!("weftctl: {e:#}");
                std::process::exit(1);
            }
        }
        cli.lab = None;
    }
    // `--lab`: the lab's credentials, and the command runs inside the lab.
    let lab = match cli.lab.take() {
        None => None,
        Some(name) => {
            let target = match admin_config(&mut cli.command) {
                None => Err(anyhow::anyhow!(
                    "--lab is for admin commands (apply, get, delete, label, explain, nodes, node, token, cluster) and trace; \
                     for a node's agent use `weftctl lab exec n1 -- weftctl ...`"
                )),
                Some(config) => on_lab::resolve(&name).inspect(|t| {
                    config.clone_from(&t.admin_conf);
                }),
            };
            match target {
                Ok(t) => Some(t),
                Err(e) => {
                    eprintln!("weftctl: {e:#}");
                    std::process::exit(1);
                }
            }
        }
    };
    // The lab is synchronous and runs its own runtimes where it needs them.
    if let Command::Lab(args) = cli.command {
        std::process::exit(lab::run(args));
    }
    // So is the connectivity check (threads, plain sockets).
    if let Command::Check(args) = cli.command {
        std::process::exit(check::run(args));
    }
    let result = match lab {
        None => run(cli.command),
        Some(target) => {
            let command = cli.command;
            on_lab::run_in(&target, move || run(command)).and_then(|r| r)
        }
    };
    if let Err(e) = result {
        eprintln!("weftctl: {e:#}");
        std::process::exit(1);
    }
}

/// Runs one command (not `lab`, not `check`) on a runtime of its own.
fn run(command: Command) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        match command {
            Command::Token(a) => admin::token(&a.admin.config, a.command).await,
            Command::Nodes { admin, output } => admin::nodes(&admin.config, output).await,
            Command::Node(a) => admin::node(&a.admin.config, a.command).await,
            Command::Cluster(a) => admin::cluster(&a.admin.config, a.command).await,
            Command::Apply(a) => apply::apply(&a.admin.config.clone(), a).await,
            Command::Get(a) => get::get(&a.admin.config.clone(), a).await,
            Command::Delete(a) => apply::delete(&a.admin.config.clone(), a).await,
            Command::Label(a) => get::label(&a.admin.config.clone(), a).await,
            Command::Explain(a) => explain::explain(&a.admin.config.clone(), a).await,
            Command::Pod(args) => pod::run(args).await,
            Command::Status(args) => status::run(args).await,
            Command::Trace(args) => trace::run(args).await,
            Command::Lab(_) | Command::Check(_) => Ok(()),
        }
    })
}

/// Warnings of the libraries weftctl uses (e.g. a credentials file others
/// can read) on stderr; WEFT_LOG for more. Colour only on a terminal.
fn init_logging() {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEFT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .try_init();
}
