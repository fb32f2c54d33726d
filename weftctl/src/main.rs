//! `weftctl`: the admin CLI of weft. Thin: parse arguments, run one command,
//! print its result or one line of error.

mod cmd;
mod duration;
mod output;
mod render;

use cmd::{admin, check, lab, pod, status};

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// weftctl: manage a weft cluster (join tokens, nodes, cluster info), this
/// node's pods and status, and a local lab cluster.
#[derive(Debug, Parser)]
#[command(name = "weftctl", version, about)]
struct Cli {
    /// Admin credentials file written by the control plane (admin.conf).
    #[arg(
        long,
        global = true,
        env = "WEFT_CONFIG",
        default_value = "/var/lib/weft/control-plane/admin.conf"
    )]
    config: PathBuf,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Join tokens: create, list, revoke.
    #[command(subcommand)]
    Token(admin::TokenCommand),
    /// List the cluster's nodes.
    Nodes {
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t = output::Format::Table)]
        output: output::Format,
    },
    /// Act on one node.
    #[command(subcommand)]
    Node(admin::NodeCommand),
    /// Cluster settings, counts and version.
    #[command(subcommand)]
    Cluster(admin::ClusterCommand),
    /// Pods on this node, through the local agent: add, del, list.
    Pod(pod::PodArgs),
    /// This node as its agent sees it: control-plane link, peers, drops.
    Status(status::StatusArgs),
    /// Connectivity check across real hosts: inventory, run, cluster (root).
    Check(check::CheckArgs),
    /// A whole weft cluster on this machine, in network namespaces: up,
    /// status, exec, logs, down (root).
    Lab(lab::LabArgs),
}

fn main() {
    let cli = Cli::parse();
    // The lab is synchronous and runs its own runtimes where it needs them.
    if let Command::Lab(args) = cli.command {
        std::process::exit(lab::run(args));
    }
    // So is the connectivity check (threads, plain sockets).
    if let Command::Check(args) = cli.command {
        std::process::exit(check::run(args));
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("weftctl: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Token(cmd) => admin::token(&cli.config, cmd).await,
            Command::Nodes { output } => admin::nodes(&cli.config, output).await,
            Command::Node(cmd) => admin::node(&cli.config, cmd).await,
            Command::Cluster(cmd) => admin::cluster(&cli.config, cmd).await,
            Command::Pod(args) => pod::run(args).await,
            Command::Status(args) => status::run(args).await,
            Command::Lab(_) | Command::Check(_) => Ok(()),
        }
    });
    if let Err(e) = result {
        eprintln!("weftctl: {e:#}");
        std::process::exit(1);
    }
}
