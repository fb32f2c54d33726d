//! `weftctl pod add/del/list`: pods on this node, through the local node
//! agent's API socket (root only).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use weft_agent_api::{
    parse_label, AsyncAgentClient, ErrorCode, NamedPort, Pod, PodAddRequest, DEFAULT_POD_NAMESPACE,
    DEFAULT_SOCKET,
};

use crate::duration;
use crate::output::Format;
use crate::render::table;

/// Where the node agent's local API is.
#[derive(Debug, Args)]
pub(crate) struct AgentSocket {
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
pub(crate) struct PodArgs {
    #[command(flatten)]
    pub socket: AgentSocket,
    #[command(subcommand)]
    pub command: PodCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PodCommand {
    /// Add a pod: an address from this node's pod CIDR on a TUN in its
    /// network namespace. Without --netns the agent creates the network
    /// namespace NAME (/run/netns/NAME, as `ip netns add` would; it outlives
    /// the agent), and deletes it with the pod. The agent registers the pod
    /// with the control plane as NAMESPACE/NAME, with its labels and named
    /// ports (in the background: the pod works meanwhile; `weftctl pod
    /// list` shows how that stands). Adding a pod that exists with the same
    /// settings changes nothing and says so.
    Add {
        #[arg(help = POD_NAME_RULE)]
        name: String,
        /// The pod's namespace in the cluster (created if missing).
        #[arg(long, short = 'n', default_value = DEFAULT_POD_NAMESPACE)]
        namespace: String,
        /// A label, KEY=VALUE (Kubernetes syntax); repeat for more.
        #[arg(long = "label", short = 'l', value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// A named port, [NAME=]PORT[/PROTOCOL] (TCP or UDP; default TCP),
        /// e.g. http=8080/TCP: what Services' named targetPorts resolve
        /// to; repeat for more.
        #[arg(long = "port", value_name = "NAME=PORT/PROTO", value_parser = NamedPort::parse)]
        ports: Vec<NamedPort>,
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
const POD_NAME_RULE: &str = "The pod's name: its name in the cluster (NAMESPACE/NAME), its id on \
    this node and, without --netns, the name of the network namespace the agent creates. A \
    Kubernetes pod name: 1 to 253 lowercase letters, digits, '-' and '.', starting and ending \
    with a letter or digit.";

/// Checks `name` against [`POD_NAME_RULE`].
fn check_pod_name(name: &str) -> Result<()> {
    let problems = weft_agent_api::validate_pod_meta(None, Some(name), &Default::default(), &[]);
    if problems.is_empty() {
        return Ok(());
    }
    let prefix = format!("pod_name: Invalid value: {name:?}: ");
    let why: Vec<&str> = problems
        .iter()
        .map(|p| p.strip_prefix(&prefix).unwrap_or(p))
        .collect();
    bail!(
        "invalid pod name {name:?}: {}. {POD_NAME_RULE}",
        why.join("; ")
    )
}

/// Checks the namespace, labels and ports before asking the agent (which
/// checks them again), naming the flag at fault.
fn check_identity(request: &PodAddRequest) -> Result<()> {
    let problems = request.identity_errors();
    if problems.is_empty() {
        return Ok(());
    }
    let flags: Vec<String> = problems
        .iter()
        .map(|p| {
            if let Some(rest) = p.strip_prefix("pod_namespace: ") {
                format!("--namespace: {rest}")
            } else if let Some(rest) = p.strip_prefix("labels: ") {
                format!("--label: {rest}")
            } else if let Some(rest) = p.strip_prefix("ports") {
                format!("--port {rest}")
            } else {
                p.clone()
            }
        })
        .collect();
    bail!("invalid pod {:?}: {}", request.id, flags.join("; "))
}

/// Connects to the agent; the error says whether it runs at all.
pub(crate) async fn connect(socket: &Path) -> Result<AsyncAgentClient> {
    Ok(AsyncAgentClient::connect(socket).await?)
}

/// `weftctl pod ...`
pub(crate) async fn run(args: PodArgs) -> Result<()> {
    let mut agent = connect(&args.socket.path).await?;
    match args.command {
        PodCommand::Add {
            name,
            namespace,
            labels,
            ports,
            netns,
            create: _,
            ifname,
            output,
        } => {
            check_pod_name(&name)?;
            let request = PodAddRequest {
                id: name.clone(),
                create_netns: netns.is_none(),
                netns: netns.map(|p| p.display().to_string()),
                ifname: Some(ifname),
                pod_namespace: Some(namespace),
                pod_name: Some(name.clone()),
                labels: labels.into_iter().collect(),
                ports,
            };
            check_identity(&request)?;
            // Whether it exists already, to say so (the add is idempotent).
            let existed = match agent.pod_get(&name).await {
                Ok(_) => true,
                Err(e) if e.code() == Some(ErrorCode::NotFound) => false,
                Err(e) => return Err(e.into()),
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

/// NAME, IP, NETNS, IFNAME, AGE, then the pod's name in the cluster
/// (CLUSTER) and where its registration stands (REGISTRATION); a pod not attached to the data plane is
/// marked.
fn pod_table(pods: &[Pod], now: u64) -> String {
    let rows: Vec<Vec<String>> = pods
        .iter()
        .map(|p| {
            let age = duration::human(Duration::from_secs(now.saturating_sub(p.created_unix)));
            let cluster = match &p.pod_name {
                Some(name) => format!(
                    "{}/{name}",
                    p.pod_namespace.as_deref().unwrap_or(DEFAULT_POD_NAMESPACE)
                ),
                None => "-".into(),
            };
            let registration = match &p.registration {
                Some(r) => match &r.error {
                    Some(e) => format!("{} ({} failures: {e})", r.state.as_str(), r.failures),
                    None => r.state.as_str().to_string(),
                },
                None => "-".into(),
            };
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
                cluster,
                registration,
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "IP",
            "NETNS",
            "IFNAME",
            "AGE",
            "CLUSTER",
            "REGISTRATION",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_names_follow_one_rule() {
        for ok in ["web", "a", "web-1.x", &"a".repeat(253)] {
            assert!(check_pod_name(ok).is_ok(), "{ok}");
        }
        let subdomain = "a lowercase RFC 1123 subdomain must consist of";
        for (bad, problem) in [
            ("", subdomain),
            ("bad name", subdomain),
            ("-a", subdomain),
            ("Web", subdomain),
            ("web_1", subdomain),
            ("c0ffee/eth0", subdomain),
            (&"a".repeat(254), "must be no more than 253 characters"),
        ] {
            let e = check_pod_name(bad).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("invalid pod name {bad:?}: ")) && e.contains(problem),
                "{bad:?}: {e}"
            );
            // The rule itself, the same text as the help.
            assert!(e.ends_with(POD_NAME_RULE), "{e}");
        }
    }

    #[test]
    fn identity_errors_name_the_flag() {
        let request = PodAddRequest {
            id: "web".into(),
            pod_namespace: Some("Shop".into()),
            pod_name: Some("web".into()),
            labels: [("app".to_string(), "a b".to_string())].into(),
            ports: vec![NamedPort::parse("http=70000").unwrap()],
            ..PodAddRequest::default()
        };
        let e = check_identity(&request).unwrap_err().to_string();
        assert!(
            e.starts_with("invalid pod \"web\": --namespace: Invalid value: \"Shop\""),
            "{e}"
        );
        assert!(e.contains("; --label: Invalid value: \"a b\""), "{e}");
        assert!(
            e.contains(
                "; --port [0].port: Invalid value: 70000: must be between 1 and 65535, inclusive"
            ),
            "{e}"
        );
    }

    #[test]
    fn table_rows() {
        let pod = Pod {
            id: "web".into(),
            address: "10.0.0.2".parse().unwrap(),
            netns: "/run/netns/web".into(),
            ifname: "eth0".into(),
            created_netns: true,
            pod_namespace: Some("shop".into()),
            pod_name: Some("web".into()),
            labels: Default::default(),
            ports: Vec::new(),
            created_unix: 1000,
            attached: true,
            registration: Some(weft_agent_api::PodRegistration {
                state: weft_agent_api::RegistrationState::Registered,
                failures: 0,
                error: None,
            }),
        };
        let detached = Pod {
            id: "db".into(),
            attached: false,
            pod_name: None,
            registration: None,
            ..pod.clone()
        };
        let failing = Pod {
            id: "api".into(),
            pod_namespace: None,
            pod_name: Some("api".into()),
            registration: Some(weft_agent_api::PodRegistration {
                state: weft_agent_api::RegistrationState::Failed,
                failures: 2,
                error: Some("Unavailable: down".into()),
            }),
            ..pod.clone()
        };
        assert_eq!(
            pod_table(&[pod, detached, failing], 1312),
            "NAME  IP                   NETNS           IFNAME  AGE    CLUSTER      REGISTRATION\n\
             web   10.0.0.2             /run/netns/web  eth0    5m12s  shop/web     registered\n\
             db    10.0.0.2 (detached)  /run/netns/web  eth0    5m12s  -            -\n\
             api   10.0.0.2             /run/netns/web  eth0    5m12s  default/api  failed (2 failures: Unavailable: down)\n"
        );
    }
}
