//! Admin commands: join tokens, nodes, cluster info. Each connects with the
//! admin credentials (admin.conf) over mutual TLS.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;
use weft_proto::v1::admin_client::AdminClient;
use weft_proto::v1::{
    CreateTokenRequest, GetClusterInfoRequest, ListNodesRequest, ListTokensRequest, Node,
    NodeState, RemoveNodeRequest, RevokeTokenRequest, Token,
};

use crate::duration;
use crate::output::Format;
use crate::render::table;

/// Where the admin credentials are: the admin commands' `--config`.
#[derive(Debug, Args)]
pub(crate) struct AdminConfig {
    /// Admin credentials file written by the control plane (admin.conf in
    /// its --state-dir).
    #[arg(
        long,
        global = true,
        env = "WEFT_CONFIG",
        default_value = "/var/lib/weft/control-plane/admin.conf"
    )]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct TokenArgs {
    #[command(flatten)]
    pub admin: AdminConfig,
    #[command(subcommand)]
    pub command: TokenCommand,
}

#[derive(Debug, Args)]
pub(crate) struct NodeArgs {
    #[command(flatten)]
    pub admin: AdminConfig,
    #[command(subcommand)]
    pub command: NodeCommand,
}

#[derive(Debug, Args)]
pub(crate) struct ClusterArgs {
    #[command(flatten)]
    pub admin: AdminConfig,
    #[command(subcommand)]
    pub command: ClusterCommand,
}

/// The longest join-token TTL weftctl asks for.
const MAX_TTL: Duration = Duration::from_secs(365 * 86_400);

/// `--ttl`: a duration from 1s to 365d.
fn parse_ttl(s: &str) -> Result<Duration, String> {
    let ttl = duration::parse(s)?;
    if ttl.is_zero() || ttl > MAX_TTL {
        return Err(format!(
            "{s:?} is out of range: a token lives from 1s to 365d (e.g. 30m, 24h, 7d)"
        ));
    }
    Ok(ttl)
}

/// `--usages`: 0 (unlimited) to 4294967295.
fn parse_usages(s: &str) -> Result<u32, String> {
    s.trim().parse::<u32>().map_err(|_| {
        format!(
            "{s:?} is not a number of nodes from 0 (unlimited) to {}",
            u32::MAX
        )
    })
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Create a join token and print the command that joins a node with it.
    Create {
        /// How long the token is valid: 1s to 365d ("30m", "24h", "7d", or
        /// seconds).
        #[arg(long, default_value = "24h", value_parser = parse_ttl, allow_hyphen_values = true)]
        ttl: Duration,
        /// How many nodes may join with it: 0 (unlimited) to 4294967295.
        #[arg(long, default_value = "0", value_parser = parse_usages, allow_hyphen_values = true)]
        usages: u32,
        /// A note to find it by later.
        #[arg(long, default_value = "")]
        description: String,
        /// Output: `table` (text for people) or `json` (for scripts).
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// List join tokens (secrets are never shown again).
    List {
        /// Output: `table` (text for people) or `json` (for scripts).
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Revoke a join token by id.
    Revoke {
        /// The token id (the part before the dot).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum NodeCommand {
    /// Remove a node now: its pod CIDR is freed and every agent drops it.
    Remove {
        /// The node's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ClusterCommand {
    /// Cluster settings, counts and version.
    Info {
        /// Output: `table` (text for people) or `json` (for scripts).
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

/// Largest response weftctl reads (`get pods -A` on a large cluster).
const MAX_RESPONSE: usize = 256 * 1024 * 1024;

/// An Admin client with the credentials in `config`, and the server's address.
pub(crate) async fn admin_client(
    config: &Path,
) -> Result<(AdminClient<tonic::transport::Channel>, String)> {
    // The client's errors name the file or the server and their cause, once.
    let creds = weft_client::Credentials::load(config).map_err(|e| {
        anyhow!(
            "admin credentials: {e}; the control plane writes admin.conf into its --state-dir: \
             point --config or WEFT_CONFIG at it"
        )
    })?;
    let channel = weft_client::connect(&creds)
        .await
        .with_context(|| format!("reaching the control plane named in {}", config.display()))?;
    Ok((
        AdminClient::new(channel).max_decoding_message_size(MAX_RESPONSE),
        creds.server,
    ))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn since(ms: i64) -> String {
    if ms <= 0 {
        return "-".into();
    }
    duration::human(Duration::from_millis(
        now_ms().saturating_sub(ms).max(0) as u64
    ))
}

fn until(ms: i64) -> String {
    if ms <= 0 {
        return "never".into();
    }
    let left = ms - now_ms();
    if left <= 0 {
        format!(
            "expired {} ago",
            duration::human(Duration::from_millis((-left) as u64))
        )
    } else {
        format!("in {}", duration::human(Duration::from_millis(left as u64)))
    }
}

/// A refusal as one line: the message and the gRPC code.
pub(crate) fn status_error(e: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{} ({:?})", e.message(), e.code())
}

/// `weftctl token ...`
pub(crate) async fn token(config: &Path, cmd: TokenCommand) -> Result<()> {
    let (mut admin, server) = admin_client(config).await?;
    match cmd {
        TokenCommand::Create {
            ttl,
            usages,
            description,
            output,
        } => {
            let r = admin
                .create_token(CreateTokenRequest {
                    ttl_seconds: ttl.as_secs(),
                    usages,
                    description,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            let t = r.token.unwrap_or_default();
            // Every live replica (a control plane older than the list sends
            // none: the address weftctl reached it at).
            let control_plane = if r.control_planes.is_empty() {
                server
            } else {
                r.control_planes.join(",")
            };
            let join = format!(
                "weft-agent --control-plane {control_plane} --token {} --ca-hash {}",
                r.token_string, r.ca_cert_hash
            );
            match output {
                Format::Json => println!(
                    "{}",
                    json!({ "token": r.token_string, "ca_cert_hash": r.ca_cert_hash, "control_plane": control_plane,
                            "expires_unix_ms": t.expires_unix_ms, "usages": usages, "join_command": join })
                ),
                Format::Table => {
                    let uses = if usages == 0 {
                        "unlimited uses".to_string()
                    } else {
                        format!("{usages} use(s)")
                    };
                    println!(
                        "Join token {} created: expires {}, {uses}.",
                        t.id,
                        until(t.expires_unix_ms)
                    );
                    println!("Join a node by running, on that node, as root:\n\n  {join}\n");
                }
            }
        }
        TokenCommand::List { output } => {
            let tokens = admin
                .list_tokens(ListTokensRequest {})
                .await
                .map_err(status_error)?
                .into_inner()
                .tokens;
            match output {
                Format::Json => println!(
                    "{}",
                    serde_json::Value::Array(tokens.iter().map(token_json).collect())
                ),
                Format::Table => {
                    let rows: Vec<Vec<String>> = tokens.iter().map(token_row).collect();
                    print!(
                        "{}",
                        table(
                            &["ID", "STATE", "EXPIRES", "USED", "LEFT", "DESCRIPTION"],
                            &rows
                        )
                    );
                }
            }
        }
        TokenCommand::Revoke { id } => {
            admin
                .revoke_token(RevokeTokenRequest { id: id.clone() })
                .await
                .map_err(status_error)?;
            println!("Join token {id} revoked.");
        }
    }
    Ok(())
}

fn token_state(t: &Token) -> &'static str {
    if t.revoked {
        "revoked"
    } else if t.expires_unix_ms != 0 && t.expires_unix_ms <= now_ms() {
        "expired"
    } else if !t.unlimited && t.usages_left == 0 {
        "used-up"
    } else {
        "active"
    }
}

fn token_row(t: &Token) -> Vec<String> {
    vec![
        t.id.clone(),
        token_state(t).into(),
        until(t.expires_unix_ms),
        t.used.to_string(),
        if t.unlimited {
            "unlimited".into()
        } else {
            t.usages_left.to_string()
        },
        t.description.clone(),
    ]
}

fn token_json(t: &Token) -> serde_json::Value {
    json!({ "id": t.id, "state": token_state(t), "expires_unix_ms": t.expires_unix_ms, "used": t.used,
            "usages_left": if t.unlimited { None } else { Some(t.usages_left) }, "revoked": t.revoked,
            "description": t.description, "created_unix_ms": t.created_unix_ms })
}

fn state_name(state: i32) -> &'static str {
    match NodeState::try_from(state) {
        Ok(NodeState::Ready) => "Ready",
        Ok(NodeState::NotReady) => "NotReady",
        _ => "Unknown",
    }
}

fn node_json(n: &Node) -> serde_json::Value {
    json!({ "id": n.id, "name": n.name, "pod_cidr": n.pod_cidr, "endpoints": n.endpoints,
            "public_key": n.public_key, "state": state_name(n.state), "labels": n.labels,
            "last_renewal_unix_ms": n.last_renewal_unix_ms, "joined_unix_ms": n.joined_unix_ms,
            "revision": n.revision })
}

/// `weftctl nodes`
pub(crate) async fn nodes(config: &Path, output: Format) -> Result<()> {
    let (mut admin, _) = admin_client(config).await?;
    let nodes = admin
        .list_nodes(ListNodesRequest {})
        .await
        .map_err(status_error)?
        .into_inner()
        .nodes;
    match output {
        Format::Json => println!("{}", nodes_json(&nodes)),
        Format::Table => print!("{}", node_table(&nodes)),
    }
    Ok(())
}

/// The nodes as a JSON array (weft's node records, not a Kubernetes shape).
pub(crate) fn nodes_json(nodes: &[Node]) -> serde_json::Value {
    serde_json::Value::Array(nodes.iter().map(node_json).collect())
}

/// NAME, POD CIDR, ENDPOINT, KEY, STATE, LEASE AGE.
pub(crate) fn node_table(nodes: &[Node]) -> String {
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.pod_cidr.clone(),
                n.endpoints.first().cloned().unwrap_or_else(|| "-".into()),
                format!("{}...", n.public_key.chars().take(8).collect::<String>()),
                state_name(n.state).into(),
                since(n.last_renewal_unix_ms),
            ]
        })
        .collect();
    table(
        &["NAME", "POD CIDR", "ENDPOINT", "KEY", "STATE", "LEASE AGE"],
        &rows,
    )
}

/// `weftctl node ...`
pub(crate) async fn node(config: &Path, cmd: NodeCommand) -> Result<()> {
    let (mut admin, _) = admin_client(config).await?;
    match cmd {
        NodeCommand::Remove { name } => {
            let n = admin
                .remove_node(RemoveNodeRequest { name: name.clone() })
                .await
                .map_err(status_error)?
                .into_inner()
                .node
                .unwrap_or_default();
            println!(
                "Node {name} removed; pod CIDR {} returned to the pool.",
                n.pod_cidr
            );
        }
    }
    Ok(())
}

/// `weftctl cluster ...`
pub(crate) async fn cluster(config: &Path, cmd: ClusterCommand) -> Result<()> {
    let (mut admin, server) = admin_client(config).await?;
    let ClusterCommand::Info { output } = cmd;
    let i = admin
        .get_cluster_info(GetClusterInfoRequest {})
        .await
        .map_err(status_error)?
        .into_inner();
    let s = i.settings.unwrap_or_default();
    match output {
        Format::Json => println!(
            "{}",
            json!({ "control_plane": server, "version": i.version, "revision": i.revision,
                    "cluster_cidr": s.cluster_cidr, "node_cidr_prefix": s.node_cidr_prefix,
                    "service_cidr": s.service_cidr, "cluster_dns": s.cluster_dns, "cluster_domain": s.cluster_domain,
                    "lease_ttl_seconds": s.lease_ttl_seconds, "removal_grace_seconds": s.removal_grace_seconds,
                    "nodes_total": i.nodes_total, "nodes_ready": i.nodes_ready,
                    "node_cidrs_total": i.node_cidrs_total, "node_cidrs_free": i.node_cidrs_free,
                    "tokens_active": i.tokens_active, "ca_cert_hash": i.ca_cert_hash, "store": i.store })
        ),
        Format::Table => {
            let rows = vec![
                vec!["control plane".into(), format!("{server} (v{})", i.version)],
                vec![
                    "cluster CIDR".into(),
                    format!("{} (/{} per node)", s.cluster_cidr, s.node_cidr_prefix),
                ],
                vec![
                    "node CIDRs".into(),
                    format!("{} free of {}", i.node_cidrs_free, i.node_cidrs_total),
                ],
                vec!["service CIDR".into(), s.service_cidr],
                vec![
                    "cluster DNS".into(),
                    format!("{} ({})", s.cluster_dns, s.cluster_domain),
                ],
                vec![
                    "nodes".into(),
                    format!("{} ({} Ready)", i.nodes_total, i.nodes_ready),
                ],
                vec!["active tokens".into(), i.tokens_active.to_string()],
                vec![
                    "lease".into(),
                    format!(
                        "TTL {}s, removal after {}s more",
                        s.lease_ttl_seconds, s.removal_grace_seconds
                    ),
                ],
                vec!["CA hash".into(), i.ca_cert_hash],
                vec![
                    "store".into(),
                    format!("{} at revision {}", i.store, i.revision),
                ],
            ];
            print!(
                "{}",
                table(&["", ""], &rows)
                    .lines()
                    .skip(1)
                    .map(|l| format!("{l}\n"))
                    .collect::<String>()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_range() {
        assert_eq!(parse_ttl("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_ttl("365d"), Ok(MAX_TTL));
        for bad in ["0", "0s", "366d"] {
            let e = parse_ttl(bad).unwrap_err();
            assert!(e.contains("from 1s to 365d"), "{bad}: {e}");
        }
    }

    #[test]
    fn usages_range() {
        assert_eq!(parse_usages("0"), Ok(0));
        assert_eq!(parse_usages("3"), Ok(3));
        for bad in ["-1", "x", "4294967296"] {
            let e = parse_usages(bad).unwrap_err();
            assert!(e.contains("from 0 (unlimited) to 4294967295"), "{bad}: {e}");
        }
    }
}
