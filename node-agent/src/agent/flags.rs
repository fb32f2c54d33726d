//! `weft-agent`'s command line: flags with environment fallbacks, checked
//! into an [`AgentConfig`] (or a [`LeaveConfig`] for `weft-agent leave`).
//!
//! Contract: [`parse`] is what the binary calls and what tests call; every
//! problem is a [`ConfigError`] whose `Display` is one line naming the flag
//! (clap's own errors are cut to their first line). The checks here need no
//! network and no state dir; whether a token is needed depends on the state
//! dir and is checked by [`crate::cluster::Membership::bootstrap`].

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use weft_client::JoinToken;

/// The largest overlay MTU accepted.
const MAX_MTU: u32 = 65535;
/// The smallest overlay MTU accepted (the IPv4 minimum datagram size).
const MIN_MTU: u32 = 576;
/// The longest unix socket path (`sun_path` less its NUL).
const MAX_SOCKET_PATH: usize = 107;
/// The longest `--join-timeout`, in seconds (a day).
const MAX_JOIN_TIMEOUT: u64 = 86_400;

/// weft node agent: joins this node to a weft cluster and switches pod
/// traffic between TUN devices and WireGuard tunnels to the other nodes.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "weft-agent",
    version,
    about,
    long_about = None,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Run the agent (no subcommand) or another action.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The agent's flags.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Actions other than running the agent.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Leave the cluster for good: remove this node (its record and pod
    /// CIDR) from the control plane with the stored node credential, and
    /// forget its identity locally. Stop the agent first.
    Leave(LeaveArgs),
}

/// Flags of the agent itself.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The control plane's gRPC address, HOST:PORT (e.g. 192.0.2.1:7443), or
    /// every replica's, comma-separated (a:7443,b:7443,c:7443): the agent
    /// fails over between them.
    #[arg(long, env = "WEFT_CONTROL_PLANE", value_name = "HOST:PORT[,...]")]
    pub control_plane: Option<String>,

    /// Join token from `weftctl token create`. Needed only on the first
    /// start (when the state dir holds no identity); later it is kept only
    /// to re-join if the control plane has removed this node.
    #[arg(long, env = "WEFT_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// The cluster CA's hash, sha256:<64 hex digits>, printed with the
    /// token; pins the control plane's certificate on first join.
    #[arg(long, env = "WEFT_CA_HASH", value_name = "sha256:HEX")]
    pub ca_hash: Option<String>,

    /// This node's name, a DNS-1123 label [default: the short hostname,
    /// lowercased].
    #[arg(long, env = "WEFT_NODE_NAME", value_name = "NAME")]
    pub name: Option<String>,

    /// The underlay address other nodes send WireGuard to [default: the
    /// local address of the route toward the control plane, with
    /// --listen-port].
    #[arg(long, env = "WEFT_ENDPOINT", value_name = "IP:PORT")]
    pub endpoint: Option<String>,

    /// Directory for the node's key, credential, identity and peer cache.
    #[arg(
        long,
        env = "WEFT_STATE_DIR",
        value_name = "DIR",
        default_value = "/var/lib/weft/agent"
    )]
    pub state_dir: PathBuf,

    /// UDP port for WireGuard (bound on all addresses).
    #[arg(
        long,
        env = "WEFT_LISTEN_PORT",
        value_name = "PORT",
        default_value_t = 51820
    )]
    pub listen_port: u16,

    /// Overlay MTU for weft0 and pods [default: the MTU of the underlay
    /// interface toward the control plane minus 80, or 1420].
    #[arg(long, env = "WEFT_MTU", value_name = "N")]
    pub mtu: Option<u32>,

    /// Unix socket of the local API (for weft-cni and weftctl).
    #[arg(
        long,
        env = "WEFT_API_SOCKET",
        value_name = "PATH",
        default_value = "/run/weft/agent.sock"
    )]
    pub api_socket: PathBuf,

    /// How long the first join (while the state dir holds no identity)
    /// keeps trying to reach the control plane before the agent gives up,
    /// in seconds (1 to 86400). Once joined, the agent retries forever.
    #[arg(
        long,
        env = "WEFT_JOIN_TIMEOUT",
        value_name = "SECONDS",
        default_value_t = 30
    )]
    pub join_timeout: u64,

    /// Log JSON lines instead of human-readable text.
    #[arg(long, env = "WEFT_LOG_JSON")]
    pub log_json: bool,

    /// Move one plain packet per TUN read and per datagram: no TSO/GRO
    /// super-packets on the TUNs, no UDP GSO/GRO (for debugging, or a
    /// kernel that misbehaves with them; unsupported offloads are skipped
    /// anyway).
    #[arg(long, env = "WEFT_NO_OFFLOAD")]
    pub no_offload: bool,

    /// Serve Prometheus metrics (peers, drops by reason, forwarding,
    /// offloads, the control-plane link) at http://IP:PORT/metrics, e.g.
    /// 127.0.0.1:9590 [default: off].
    #[arg(long, env = "WEFT_METRICS_LISTEN", value_name = "IP:PORT")]
    pub metrics_listen: Option<String>,

    /// The resolvers names outside the cluster are forwarded to, IP or
    /// IP:PORT, comma-separated [default: the nameservers of the node's
    /// /etc/resolv.conf, without the cluster DNS address].
    #[arg(long, env = "WEFT_DNS_UPSTREAM", value_name = "IP[:PORT],...")]
    pub dns_upstream: Option<String>,

    /// The cluster domain the agent answers for [default: the cluster's,
    /// from the control plane (cluster.local unless it was set there)].
    #[arg(long, env = "WEFT_CLUSTER_DOMAIN", value_name = "DOMAIN")]
    pub cluster_domain: Option<String>,
    /// Connections the conntrack table holds at most (reserved at start;
    /// about 200 bytes each). Every connection through the node takes an
    /// entry; a full table evicts connections not yet established, then
    /// refuses new ones (docs/services.md).
    #[arg(
        long,
        env = "WEFT_CONNTRACK_MAX",
        value_name = "ENTRIES",
        default_value_t = DEFAULT_CONNTRACK_MAX
    )]
    pub conntrack_max: usize,

    /// Turn off connection tracking and Service translation in the packet
    /// path (Service addresses are then not reachable from this node).
    #[arg(long, env = "WEFT_NO_SERVICES")]
    pub no_services: bool,
}

/// `--conntrack-max`'s default (Linux's `nf_conntrack_max` for a node
/// with 8 GiB or more).
pub const DEFAULT_CONNTRACK_MAX: usize = 131_072;
/// `--conntrack-max` at most (2^24: 3 GiB of entries).
const MAX_CONNTRACK: usize = 1 << 24;

/// Flags of `weft-agent leave`.
#[derive(Debug, Clone, Args)]
pub struct LeaveArgs {
    /// The agent's state dir (holds credentials.json and node.json).
    #[arg(
        long,
        env = "WEFT_STATE_DIR",
        value_name = "DIR",
        default_value = "/var/lib/weft/agent"
    )]
    pub state_dir: PathBuf,

    /// The control plane's address, HOST:PORT [default: the one in
    /// credentials.json].
    #[arg(long, env = "WEFT_CONTROL_PLANE", value_name = "HOST:PORT")]
    pub control_plane: Option<String>,

    /// Log JSON lines instead of human-readable text.
    #[arg(long, env = "WEFT_LOG_JSON")]
    pub log_json: bool,
}

/// A bad command line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// clap refused the arguments (or was asked for --help/--version:
    /// see [`clap::Error::use_stderr`]).
    #[error("{}", first_line(.0))]
    Usage(clap::Error),
    /// A flag's value is unusable; the message names the flag.
    #[error("{0}")]
    Invalid(String),
}

fn first_line(e: &clap::Error) -> String {
    let msg = e.to_string();
    msg.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid arguments")
        .trim_start_matches("error: ")
        .to_string()
}

/// What the command line asks for.
// Made once per process, at start: the size of its variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Invocation {
    /// Run the agent.
    Run(AgentConfig),
    /// Leave the cluster.
    Leave(LeaveConfig),
}

/// The agent's checked configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The control plane, `host:port`.
    pub control_plane: String,
    /// The join token, if given.
    pub token: Option<JoinToken>,
    /// The CA hash, normalized (`sha256:<lowercase hex>`), if given.
    pub ca_hash: Option<String>,
    /// The node name.
    pub name: String,
    /// The underlay endpoint, if given.
    pub endpoint: Option<SocketAddr>,
    /// The state dir.
    pub state_dir: PathBuf,
    /// The WireGuard UDP port.
    pub listen_port: u16,
    /// The overlay MTU, if given.
    pub mtu: Option<u32>,
    /// The local API socket.
    pub api_socket: PathBuf,
    /// How long a first join may try (`--join-timeout`).
    pub join_timeout: std::time::Duration,
    /// JSON logs.
    pub log_json: bool,
    /// Data-plane offloads (TSO/GRO on TUNs, UDP GSO/GRO); off with
    /// `--no-offload`.
    pub offload: bool,
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// `--dns-upstream`, if given.
    pub dns_upstreams: Option<Vec<SocketAddr>>,
    /// `--cluster-domain` (lower case, no trailing dot), if given.
    pub cluster_domain: Option<String>,
    /// Conntrack table size with Service translation on; `None`: both off
    /// (`--no-services`).
    pub conntrack_max: Option<usize>,
}

/// `weft-agent leave`'s checked configuration.
#[derive(Debug, Clone)]
pub struct LeaveConfig {
    /// The state dir.
    pub state_dir: PathBuf,
    /// Overrides the control plane address of the credential.
    pub control_plane: Option<String>,
    /// JSON logs.
    pub log_json: bool,
}

/// Parses and checks a command line (the first item is the program name).
pub fn parse<I, T>(args: I) -> Result<Invocation, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = Cli::try_parse_from(args).map_err(ConfigError::Usage)?;
    match cli.command {
        Some(Command::Leave(l)) => Ok(Invocation::Leave(l.check()?)),
        None => Ok(Invocation::Run(cli.run.check()?)),
    }
}

impl RunArgs {
    /// Checks the flags; the default name comes from the system hostname.
    pub fn check(&self) -> Result<AgentConfig, ConfigError> {
        self.check_with_hostname(system_hostname)
    }

    /// Checks the flags, taking the default name from `hostname`.
    pub fn check_with_hostname(
        &self,
        hostname: impl FnOnce() -> std::io::Result<String>,
    ) -> Result<AgentConfig, ConfigError> {
        let bad = |s: String| Err(ConfigError::Invalid(s));
        let control_plane = match self.control_plane.as_deref().map(str::trim) {
            None | Some("") => return bad(
                "--control-plane (WEFT_CONTROL_PLANE) is required: the control plane's HOST:PORT"
                    .into(),
            ),
            Some(cp) => {
                check_control_planes(cp)
                    .map_err(|e| ConfigError::Invalid(format!("--control-plane {cp:?}: {e}")))?;
                cp.to_string()
            }
        };
        let token = match self.token.as_deref() {
            None | Some("") => None,
            Some(t) => Some(
                t.parse::<JoinToken>()
                    .map_err(|e| ConfigError::Invalid(format!("--token: {e}")))?,
            ),
        };
        let ca_hash = match self.ca_hash.as_deref() {
            None | Some("") => None,
            Some(h) => Some(
                weft_client::parse_ca_hash(h)
                    .map_err(|e| ConfigError::Invalid(format!("--ca-hash: {e}")))?,
            ),
        };
        // A token without a hash is fine on later starts (the stored CA pins
        // re-joins); the first start checks for both.
        let name = match self.name.as_deref() {
            Some(n) => {
                validate_node_name(n)
                    .map_err(|e| ConfigError::Invalid(format!("--name {n:?}: {e}")))?;
                n.to_string()
            }
            None => {
                let host = hostname().map_err(|e| {
                    ConfigError::Invalid(format!(
                        "cannot read the hostname for the default node name ({e}); pass --name"
                    ))
                })?;
                let name = short_hostname(&host);
                validate_node_name(&name).map_err(|e| {
                    ConfigError::Invalid(format!(
                        "the hostname {host:?} does not make a node name ({e}); pass --name (WEFT_NODE_NAME)"
                    ))
                })?;
                name
            }
        };
        let endpoint = match self.endpoint.as_deref() {
            None | Some("") => None,
            Some(e) => Some(
                parse_endpoint(e)
                    .map_err(|why| ConfigError::Invalid(format!("--endpoint {e:?}: {why}")))?,
            ),
        };
        if self.listen_port == 0 {
            return bad("--listen-port must not be 0".into());
        }
        if let Some(mtu) = self.mtu {
            if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
                return bad(format!(
                    "--mtu {mtu}: must be between {MIN_MTU} and {MAX_MTU}"
                ));
            }
        }
        let metrics_listen =
            match self.metrics_listen.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(m) => Some(parse_listen(m).map_err(|why| {
                    ConfigError::Invalid(format!("--metrics-listen {m:?}: {why}"))
                })?),
            };
        if !(1..=MAX_JOIN_TIMEOUT).contains(&self.join_timeout) {
            return bad(format!(
                "--join-timeout {}: must be between 1 and {MAX_JOIN_TIMEOUT} seconds",
                self.join_timeout
            ));
        }
        if self.state_dir.as_os_str().is_empty() {
            return bad("--state-dir must not be empty".into());
        }
        let dns_upstreams =
            match self.dns_upstream.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(list) => Some(crate::dns::upstream::parse_upstreams(list).map_err(|why| {
                    ConfigError::Invalid(format!("--dns-upstream {list:?}: {why}"))
                })?),
            };
        let cluster_domain = match self.cluster_domain.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(d) => {
                let domain = d.trim_end_matches('.').to_ascii_lowercase();
                if !weft_objects::names::is_dns1123_subdomain(&domain).is_empty() {
                    return bad(format!(
                        "--cluster-domain {d:?}: not a DNS domain (lower-case labels of [a-z0-9-], dot-separated)"
                    ));
                }
                Some(domain)
            }
        };
        let socket_len = self.api_socket.as_os_str().len();
        if socket_len == 0 {
            return bad("--api-socket must not be empty".into());
        }
        if socket_len > MAX_SOCKET_PATH {
            return bad(format!(
                "--api-socket {}: {socket_len} bytes; a unix socket path may have at most {MAX_SOCKET_PATH}",
                self.api_socket.display()
            ));
        }
        if !(1024..=MAX_CONNTRACK).contains(&self.conntrack_max) {
            return bad(format!(
                "--conntrack-max {}: must be between 1024 and {MAX_CONNTRACK}",
                self.conntrack_max
            ));
        }
        Ok(AgentConfig {
            control_plane,
            token,
            ca_hash,
            name,
            endpoint,
            state_dir: self.state_dir.clone(),
            listen_port: self.listen_port,
            mtu: self.mtu,
            api_socket: self.api_socket.clone(),
            join_timeout: std::time::Duration::from_secs(self.join_timeout),
            log_json: self.log_json,
            offload: !self.no_offload,
            metrics_listen,
            dns_upstreams,
            cluster_domain,
            conntrack_max: (!self.no_services).then_some(self.conntrack_max),
        })
    }
}

impl LeaveArgs {
    /// Checks the flags.
    pub fn check(&self) -> Result<LeaveConfig, ConfigError> {
        let control_plane = match self.control_plane.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(cp) => {
                check_control_planes(cp)
                    .map_err(|e| ConfigError::Invalid(format!("--control-plane {cp:?}: {e}")))?;
                Some(cp.to_string())
            }
        };
        if self.state_dir.as_os_str().is_empty() {
            return Err(ConfigError::Invalid("--state-dir must not be empty".into()));
        }
        Ok(LeaveConfig {
            state_dir: self.state_dir.clone(),
            control_plane,
            log_json: self.log_json,
        })
    }
}

/// Checks a DNS-1123 label: 1-63 of `[a-z0-9-]`, alphanumeric at both ends.
pub fn validate_node_name(name: &str) -> Result<(), String> {
    const RULE: &str = "a node name is a DNS-1123 label: 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit";
    let why = if name.is_empty() {
        "it is empty".to_string()
    } else if name.len() > 63 {
        format!("it is {} characters long", name.len())
    } else if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        format!("it contains {c:?}")
    } else if name.starts_with('-') || name.ends_with('-') {
        "it starts or ends with '-'".to_string()
    } else {
        return Ok(());
    };
    Err(format!("{why}; {RULE}"))
}

/// The hostname's first label, lowercased.
pub fn short_hostname(host: &str) -> String {
    host.trim()
        .split('.')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// The kernel's hostname.
pub fn system_hostname() -> std::io::Result<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
}

/// An `ip:port` another node can send to.
fn parse_endpoint(s: &str) -> Result<SocketAddr, String> {
    let addr = parse_ip_port(s, "192.0.2.10:51820 or [2001:db8::1]:51820")?;
    if addr.ip().is_unspecified() || addr.ip().is_multicast() {
        return Err(format!("{} cannot be a peer's address", addr.ip()));
    }
    Ok(addr)
}

/// A local `ip:port` to listen on (any address, not port 0).
fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let addr = parse_ip_port(s, "127.0.0.1:9590 or [::1]:9590")?;
    if addr.ip().is_multicast() {
        return Err(format!("{} is a multicast address", addr.ip()));
    }
    Ok(addr)
}

/// `IP:PORT` (surrounding white space ignored) with a port from 1 to
/// 65535; `examples` go into the error.
fn parse_ip_port(s: &str, examples: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = s
        .trim()
        .parse()
        .map_err(|_| format!("expected IP:PORT, e.g. {examples}"))?;
    if addr.port() == 0 {
        return Err("port 0".into());
    }
    Ok(addr)
}

/// `host:port` with a non-empty host and a port from 1 to 65535.
/// `HOST:PORT`, or several control-plane replicas' `HOST:PORT,HOST:PORT,...`
/// (the client fails over between them).
fn check_control_planes(s: &str) -> Result<(), String> {
    for one in s.split(',') {
        check_host_port(one.trim()).map_err(|e| format!("{one:?}: {e}"))?;
    }
    Ok(())
}

fn check_host_port(s: &str) -> Result<(), String> {
    if s.contains("://") {
        return Err("expected HOST:PORT without a scheme".into());
    }
    let (host, port) = s.rsplit_once(':').ok_or("expected HOST:PORT")?;
    let port: u16 = port.parse().map_err(|_| format!("bad port {port:?}"))?;
    if port == 0 {
        return Err("port 0".into());
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(['/', ' ', '@', '?', '#']) {
        return Err("expected HOST:PORT".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

    fn run(args: &[&str]) -> Result<AgentConfig, ConfigError> {
        let mut all = vec!["weft-agent"];
        all.extend_from_slice(args);
        let cli = Cli::try_parse_from(all).map_err(ConfigError::Usage)?;
        cli.run
            .check_with_hostname(|| Ok("Node-7.example.com".into()))
    }

    fn err(args: &[&str]) -> String {
        let e = run(args).unwrap_err().to_string();
        assert!(!e.contains('\n'), "{e}");
        e
    }

    #[test]
    fn defaults() {
        let c = run(&["--control-plane", "cp:7443"]).unwrap();
        assert_eq!(c.name, "node-7");
        assert_eq!(c.listen_port, 51820);
        assert_eq!(c.state_dir, PathBuf::from("/var/lib/weft/agent"));
        assert_eq!(c.api_socket, PathBuf::from("/run/weft/agent.sock"));
        assert!(
            c.token.is_none() && c.ca_hash.is_none() && c.endpoint.is_none() && c.mtu.is_none()
        );
        assert!(c.offload);
        assert!(c.metrics_listen.is_none());
        assert_eq!(c.join_timeout, std::time::Duration::from_secs(30));
    }

    #[test]
    fn full() {
        let c = run(&[
            "--control-plane",
            "192.0.2.1:7443",
            "--token",
            "abc123.0123456789abcdef",
            "--ca-hash",
            HASH,
            "--name",
            "n1",
            "--endpoint",
            "192.0.2.5:51821",
            "--listen-port",
            "51821",
            "--mtu",
            "1400",
            "--no-offload",
            "--metrics-listen",
            "127.0.0.1:9590",
        ])
        .unwrap();
        assert!(!c.offload);
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9590".parse().unwrap()));
        assert_eq!(c.token.unwrap().id(), "abc123");
        assert_eq!(c.endpoint, Some("192.0.2.5:51821".parse().unwrap()));
        assert_eq!(c.mtu, Some(1400));
    }

    #[test]
    fn bad_values_name_their_flag() {
        assert!(err(&[]).contains("--control-plane"));
        assert!(err(&["--control-plane", "cp"]).contains("--control-plane \"cp\""));
        assert!(err(&["--control-plane", "a:1,b"]).contains("\"b\""));
        assert!(run(&["--control-plane", "a:1,b:2,c:3"]).is_ok());
        assert!(err(&["--control-plane", "cp:1", "--token", "x"]).starts_with("--token"));
        assert!(err(&["--control-plane", "cp:1", "--ca-hash", "md5:1"]).starts_with("--ca-hash"));
        assert!(err(&["--control-plane", "cp:1", "--name", "Bad_Name"]).starts_with("--name"));
        assert!(err(&["--control-plane", "cp:1", "--endpoint", "x"]).starts_with("--endpoint"));
        assert!(err(&["--control-plane", "cp:1", "--endpoint", "0.0.0.0:1"]).contains("cannot be"));
        assert!(
            err(&["--control-plane", "cp:1", "--listen-port", "0"]).starts_with("--listen-port")
        );
        assert!(err(&["--control-plane", "cp:1", "--mtu", "100"]).starts_with("--mtu"));
        for bad in ["0", "86401"] {
            let e = err(&["--control-plane", "cp:1", "--join-timeout", bad]);
            assert!(
                e.starts_with("--join-timeout") && e.contains("1 and 86400"),
                "{e}"
            );
        }
        assert!(err(&["--control-plane", "cp:1", "--bogus"]).contains("--bogus"));
        assert!(err(&["--control-plane", "cp:1", "--listen-port", "x"]).contains("--listen-port"));
        for bad in ["9590", "localhost:9590", "127.0.0.1:0", "[ff02::1]:9590"] {
            let e = err(&["--control-plane", "cp:1", "--metrics-listen", bad]);
            assert!(e.starts_with("--metrics-listen"), "{e}");
        }
    }

    #[test]
    fn hostname_that_is_not_a_label() {
        let cli = Cli::try_parse_from(["weft-agent", "--control-plane", "cp:1"]).unwrap();
        let e = cli
            .run
            .check_with_hostname(|| Ok("under_score".into()))
            .unwrap_err();
        assert!(e.to_string().contains("pass --name"), "{e}");
    }

    #[test]
    fn leave_subcommand() {
        match parse(["weft-agent", "leave", "--state-dir", "/tmp/x"]).unwrap() {
            Invocation::Leave(l) => assert_eq!(l.state_dir, PathBuf::from("/tmp/x")),
            other => panic!("{other:?}"),
        }
    }
}
