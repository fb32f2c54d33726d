//! `weftctl pod add/del/list`: pods on this node, through the local node
//! agent's API socket (root only).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use weft_agent_api::{AsyncAgentClient, ErrorCode, Pod, PodAddRequest, DEFAULT_SOCKET};

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
    /// network namespace. Without --netns the agent creates the network
    /// namespace NAME (/run/netns/NAME, as `ip netns add` would; it outlives
    /// the agent), and deletes it with the pod. Adding a pod that exists
    /// with the same settings changes nothing and says so.
    Add {
        #[arg(help = POD_NAME_RULE)]
        name: String,
        /// Put the pod in this existing network namespace (e.g.
        /// /run/netns/NAME or /proc/PID/ns/net) instead of creating one.
        #[arg(long, conflicts_with = "create")]
        netns: Option<PathBuf>,
        /// Have the agent create the namespace NAME; this is what happens
        /// without --netns too, so the flag only makes it explicit.
        #[arg(long)]
        create: bool,
        /// The interface name inside the pod.
        #[arg(long, default_value = "eth0")]
        ifname: String,
        /// Output: `table` (text for people) or `json` (for scripts).
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
        /// Output: `table` (text for people) or `json` (for scripts).
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

/// The rule for pod names, as help and in errors.
const POD_NAME_RULE: &str = "The pod's name: 1 to 253 ASCII letters, digits, '.', '_' or '-', \
    starting with a letter or digit. '/' is allowed only with --netns: without it the name also \
    names the network namespace the agent creates, and a namespace name cannot hold '/'.";

/// Checks `name` against [`POD_NAME_RULE`]; `creating` when the agent is to
/// create the namespace NAME.
fn check_pod_name(name: &str, creating: bool) -> Result<()> {
    let first_ok = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric());
    let chars_ok = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'));
    let segments_ok = !name
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..");
    let problem = if name.len() > 253 {
        "it is longer than 253 bytes"
    } else if !first_ok || !chars_ok || !segments_ok {
        "it does not follow the rule"
    } else if creating && name.contains('/') {
        "it holds '/' and no --netns is given"
    } else {
        return Ok(());
    };
    bail!("invalid pod name {name:?}: {problem}. {POD_NAME_RULE}")
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
            check_pod_name(&name, netns.is_none())?;
            // Whether it exists already, to say so (the add is idempotent).
            let existed = match agent.pod_get(&name).await {
                Ok(_) => true,
                Err(e) if e.code() == Some(ErrorCode::NotFound) => false,
                Err(e) => return Err(e.into()),
            };
            let request = PodAddRequest {
                id: name,
                create_netns: netns.is_none(),
                netns: netns.map(|p| p.display().to_string()),
                ifname: Some(ifname),
                ..PodAddRequest::default()
            };
            let pod = agent.pod_add(request).await?;
            let verb = if existed { "already existed" } else { "added" };
            match output {
                Format::Json => println!("{}", serde_json::to_string_pretty(&pod)?),
                Format::Table => println!(
                    "pod {} {verb}: {} on {} in {}",
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
    fn pod_names_follow_one_rule() {
        for ok in ["web", "a", "web-1.x_y", &"a".repeat(253)] {
            assert!(check_pod_name(ok, true).is_ok(), "{ok}");
        }
        assert!(check_pod_name("c0ffee/eth0", false).is_ok());
        for (bad, creating, problem) in [
            ("", true, "does not follow the rule"),
            ("bad name", true, "does not follow the rule"),
            ("-a", true, "does not follow the rule"),
            ("a//b", false, "does not follow the rule"),
            ("a/../b", false, "does not follow the rule"),
            (&"a".repeat(254), true, "longer than 253 bytes"),
            ("web/1", true, "holds '/' and no --netns is given"),
        ] {
            let e = check_pod_name(bad, creating).unwrap_err().to_string();
            assert!(e.contains(problem), "{bad:?}: {e}");
            // The rule itself, the same text as the help.
            assert!(e.ends_with(POD_NAME_RULE), "{e}");
        }
    }

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
