//! `weftctl`: the admin CLI of weft. Thin: parse arguments, run one command,
//! print its result or one line of error.

mod admin;
mod duration;
mod output;
mod pod;
mod status;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// weftctl: manage a weft cluster (join tokens, nodes, cluster info) and this
/// node's pods and status.
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
}

fn main() {
    let cli = Cli::parse();
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
        }
    });
    if let Err(e) = result {
        eprintln!("weftctl: {e:#}");
        std::process::exit(1);
    }
}
