//! `weftctl pod add/del/list`: pods on this node, through the local node
//! agent's API socket (root only).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use clap::{Args, Subcommand};
use weft_agent_api::{AsyncAgentClient, Pod, PodAddRequest, DEFAULT_SOCKET};

use crate::duration;
use crate::output::Format;
use crate::render::table;

/// Where the node agent's local API is.
#[derive(Debug, Args)]
pub struct AgentSocket {
    /// The node agent's local API socket.
    #[arg(
        long = "agent-socket",
        env = "WEFT_AGENT_SOCKET",
        default_value = DEFAULT_SOCKET,
        global = true
    )]
    pub path: PathBuf,
}

#[derive(Debug, Args)]
pub struct PodArgs {
    #[command(flatten)]
    pub socket: AgentSocket,
    #[command(subcommand)]
    pub command: PodCommand,
}

#[derive(Debug, Subcommand)]
pub enum PodCommand {
    /// Add a pod: an address from this node's pod CIDR on a TUN in its
    /// network namespace. Without --netns the agent creates the namespace
    /// NAME (see `ip netns`), and deletes it with the pod.
    Add {
        /// The pod's name (letters, digits, '.', '_', '-').
        name: String,
        /// Put the pod in this existing network namespace (e.g.
        /// /run/netns/NAME or /proc/PID/ns/net).
        #[arg(long, conflicts_with = "create")]
        netns: Option<PathBuf>,
        /// Let the agent create the namespace NAME (the default).
        #[arg(long)]
        create: bool,
        /// The interface name inside the pod.
        #[arg(long, default_value = "eth0")]
        ifname: String,
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Delete a pod: its interface, its namespace if the agent created it,
    /// and its address. Deleting a pod that does not exist is not an error.
    Del {
        /// The pod's name.
        name: String,
    },
    /// List the pods on this node.
    List {
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

/// Connects to the agent; the error says whether it runs at all.
pub async fn connect(socket: &Path) -> Result<AsyncAgentClient> {
    Ok(AsyncAgentClient::connect(socket).await?)
}

/// `weftctl pod ...`
pub async fn run(args: PodArgs) -> Result<()> {
    let mut agent = connect(&args.socket.path).await?;
    match args.command {
        PodCommand::Add {
            name,
            netns,
            create: _,
            ifname,
            output,
        } => {
            let request = PodAddRequest {
                id: name,
                create_netns: netns.is_none(),
                netns: netns.map(|p| p.display().to_string()),
                ifname: Some(ifname),
                ..PodAddRequest::default()
            };
            let pod = agent.pod_add(request).await?;
            match output {
                Format::Json => println!("{}", serde_json::to_string_pretty(&pod)?),
                Format::Table => println!(
                    "pod {} added: {} on {} in {}",
                    pod.id, pod.address, pod.ifname, pod.netns
                ),
            }
        }
        PodCommand::Del { name } => match agent.pod_del(&name).await? {
            Some(pod) => println!("pod {} deleted ({} freed)", pod.id, pod.address),
            None => println!("pod {name} does not exist; nothing to delete"),
        },
        PodCommand::List { output } => {
            let pods = agent.pod_list().await?;
            match output {
                Format::Json => println!("{}", serde_json::to_string_pretty(&pods)?),
                Format::Table => print!("{}", pod_table(&pods, now_unix())),
            }
        }
    }
    Ok(())
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// NAME, IP, NETNS, IFNAME, AGE; a pod not attached to the data plane is
/// marked.
fn pod_table(pods: &[Pod], now: u64) -> String {
    let rows: Vec<Vec<String>> = pods
        .iter()
        .map(|p| {
            let age = duration::human(Duration::from_secs(now.saturating_sub(p.created_unix)));
            vec![
                p.id.clone(),
                if p.attached {
                    p.address.to_string()
                } else {
                    format!("{} (detached)", p.address)
                },
                p.netns.clone(),
                p.ifname.clone(),
                age,
            ]
        })
        .collect();
    table(&["NAME", "IP", "NETNS", "IFNAME", "AGE"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_rows() {
        let pod = Pod {
            id: "web".into(),
            address: "10.0.0.2".parse().unwrap(),
            netns: "/run/netns/web".into(),
            ifname: "eth0".into(),
            created_netns: true,
            pod_namespace: None,
            pod_name: None,
            created_unix: 1000,
            attached: true,
        };
        let detached = Pod {
            id: "db".into(),
            attached: false,
            ..pod.clone()
        };
        assert_eq!(
            pod_table(&[pod, detached], 1312),
            "NAME  IP                   NETNS           IFNAME  AGE\n\
             web   10.0.0.2             /run/netns/web  eth0    5m12s\n\
             db    10.0.0.2 (detached)  /run/netns/web  eth0    5m12s\n"
        );
    }
}
