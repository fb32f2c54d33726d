//! The control plane's configuration: command-line flags with environment
//! fallbacks, checked by [`Config::validate`] into a [`Settings`] the server
//! runs with. Bad configuration is a [`ConfigError`] whose message names the
//! flag and what is wrong; the binary exits 64 with it.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use ipnet::IpNet;

use crate::ipam::Pool;
use crate::store::etcd::{EtcdOptions, EtcdTls};

/// weft control plane: hands out node WireGuard peers and pod CIDRs over gRPC + TLS.
#[derive(Debug, Clone, Parser)]
#[command(name = "weft-control-plane", version, about, long_about = None)]
pub struct Config {
    /// Address to serve gRPC (TLS) on.
    #[arg(long, env = "WEFT_LISTEN", default_value = "0.0.0.0:7443")]
    pub listen: SocketAddr,

    /// Directory for the store (state.redb), the cluster CA and admin.conf.
    #[arg(
        long,
        env = "WEFT_STATE_DIR",
        default_value = "/var/lib/weft/control-plane"
    )]
    pub state_dir: PathBuf,

    /// The cluster (pod) CIDR that node CIDRs are cut from.
    #[arg(long, env = "WEFT_CLUSTER_CIDR", default_value = "10.244.0.0/16")]
    pub cluster_cidr: IpNet,

    /// Prefix length of each node's pod CIDR.
    #[arg(long, env = "WEFT_NODE_CIDR_PREFIX", default_value_t = 24)]
    pub node_cidr_prefix: u8,

    /// The service (ClusterIP) CIDR.
    #[arg(long, env = "WEFT_SERVICE_CIDR", default_value = "10.96.0.0/12")]
    pub service_cidr: IpNet,

    /// The cluster DNS address (default: the 10th address of the service CIDR).
    #[arg(long, env = "WEFT_CLUSTER_DNS")]
    pub cluster_dns: Option<IpAddr>,

    /// The range node ports are allocated from, FIRST-LAST (inclusive).
    #[arg(
        long,
        env = "WEFT_SERVICE_NODE_PORT_RANGE",
        default_value = "30000-32767",
        value_parser = parse_port_range
    )]
    pub service_node_port_range: std::ops::RangeInclusive<u16>,

    /// The cluster DNS domain.
    #[arg(long, env = "WEFT_CLUSTER_DOMAIN", default_value = "cluster.local")]
    pub cluster_domain: String,

    /// Address (host:port) that nodes and weftctl use to reach this control
    /// plane; written into admin.conf and join commands, and added to the
    /// serving certificate. Default: the listen address, or 127.0.0.1 when
    /// listening on 0.0.0.0.
    #[arg(long, env = "WEFT_ADVERTISE_ADDRESS")]
    pub advertise_address: Option<String>,

    /// Extra subject alternative names (DNS names or IPs) for the serving
    /// certificate; repeat or separate with commas.
    #[arg(long = "tls-san", env = "WEFT_TLS_SANS", value_delimiter = ',')]
    pub tls_sans: Vec<String>,

    /// Seconds a node may go without renewing its lease before it turns NotReady.
    #[arg(long = "lease-ttl", env = "WEFT_LEASE_TTL", default_value_t = 40)]
    pub lease_ttl_seconds: u32,

    /// Seconds a NotReady node is kept before it is removed and its CIDR freed.
    #[arg(
        long = "removal-grace",
        env = "WEFT_REMOVAL_GRACE",
        default_value_t = 300
    )]
    pub removal_grace_seconds: u32,

    /// The default WireGuard UDP port nodes listen on.
    #[arg(long, env = "WEFT_WIREGUARD_PORT", default_value_t = 51820)]
    pub wireguard_port: u16,

    /// Seconds between keepalives on idle watch streams.
    #[arg(
        long = "watch-keepalive",
        env = "WEFT_WATCH_KEEPALIVE",
        default_value_t = 15
    )]
    pub watch_keepalive_seconds: u32,

    /// Log as JSON lines instead of human-readable text.
    #[arg(long, env = "WEFT_LOG_JSON")]
    pub log_json: bool,

    /// Seconds a new connection has to finish its TLS handshake and send the
    /// HTTP/2 preface before it is closed.
    #[arg(
        long = "handshake-timeout",
        env = "WEFT_HANDSHAKE_TIMEOUT",
        default_value_t = 10
    )]
    pub handshake_timeout_seconds: u32,

    /// Most connections served at once (including ones still handshaking);
    /// more are closed at once. Keep it below the process's file limit.
    #[arg(long, env = "WEFT_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,

    /// Most connections at once from one source (an IPv4 address or an
    /// IPv6 /64); more are closed at once.
    #[arg(long, env = "WEFT_MAX_CONNECTIONS_PER_SOURCE", default_value_t = 256)]
    pub max_connections_per_source: usize,

    /// Accept loopback addresses as node endpoints (every node on one host).
    /// Default: true when --listen is a loopback address, false otherwise.
    #[arg(
        long,
        env = "WEFT_ALLOW_LOOPBACK_ENDPOINTS",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub allow_loopback_endpoints: Option<bool>,

    #[command(flatten)]
    pub store: StoreFlags,
}

/// Where the cluster's state lives: the embedded file, or etcd.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreFlags {
    /// The store: `redb` (the default: state.redb in --state-dir, for one
    /// control plane) or `etcd://host:port[,host:port...]` (an etcd v3
    /// cluster, for several replicas serving one cluster).
    #[arg(long = "store", env = "WEFT_STORE", default_value = "redb")]
    pub store: String,

    /// Key prefix for this cluster in etcd, ending with '/'; clusters
    /// sharing one etcd need different prefixes.
    #[arg(long, env = "WEFT_ETCD_PREFIX", default_value = crate::store::etcd::DEFAULT_PREFIX)]
    pub etcd_prefix: String,

    /// PEM CA that signed etcd's serving certificates; turns on TLS to etcd.
    #[arg(long, env = "WEFT_ETCD_CA")]
    pub etcd_ca: Option<PathBuf>,

    /// PEM client certificate for etcd (with --etcd-key), if etcd runs with
    /// --client-cert-auth.
    #[arg(long, env = "WEFT_ETCD_CERT")]
    pub etcd_cert: Option<PathBuf>,

    /// PEM private key of --etcd-cert.
    #[arg(long, env = "WEFT_ETCD_KEY")]
    pub etcd_key: Option<PathBuf>,

    /// With an etcd store: the file holding the key that encrypts the
    /// cluster CA's and the serving certificate's private keys in etcd. The
    /// first replica creates it; copy it to every other replica (mode 0600).
    /// Default: cluster-secret in --state-dir.
    #[arg(long, env = "WEFT_CLUSTER_SECRET")]
    pub cluster_secret: Option<PathBuf>,
}

/// The checked store choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChoice {
    /// The embedded store, `state.redb` in the state dir.
    Redb,
    /// An etcd cluster.
    Etcd(EtcdOptions),
}

impl StoreFlags {
    /// Check the store flags.
    pub fn validate(&self) -> Result<StoreChoice, ConfigError> {
        let bad = |s: String| Err(ConfigError::Invalid(s));
        let etcd_flags =
            self.etcd_ca.is_some() || self.etcd_cert.is_some() || self.etcd_key.is_some();
        if self.store == "redb" {
            if self.cluster_secret.is_some() {
                return bad("--cluster-secret needs --store etcd://...".into());
            }
            if etcd_flags {
                return bad("--etcd-ca/--etcd-cert/--etcd-key need --store etcd://...".into());
            }
            return Ok(StoreChoice::Redb);
        }
        let mut options = EtcdOptions::from_url(&self.store).map_err(|e| {
            ConfigError::Invalid(format!(
                "--store {:?}: {e} (or `redb` for the embedded store)",
                self.store
            ))
        })?;
        EtcdOptions::check_prefix(&self.etcd_prefix)
            .map_err(|e| ConfigError::Invalid(format!("--etcd-prefix {e}")))?;
        options.prefix = self.etcd_prefix.clone();
        options.tls = match (&self.etcd_ca, &self.etcd_cert, &self.etcd_key) {
            (None, None, None) => None,
            (None, _, _) => {
                return bad(
                    "--etcd-cert/--etcd-key need --etcd-ca (the CA of etcd's certificates)".into(),
                )
            }
            (Some(_), Some(_), None) | (Some(_), None, Some(_)) => {
                return bad("--etcd-cert and --etcd-key go together".into())
            }
            (Some(ca), cert, key) => Some(EtcdTls {
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
            }),
        };
        Ok(StoreChoice::Etcd(options))
    }
}

/// A configuration that cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A flag's value is unusable; the string names the flag.
    #[error("{0}")]
    Invalid(String),
}

/// Checked settings the server runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub state_dir: PathBuf,
    pub pool: Pool,
    pub service_cidr: IpNet,
    pub cluster_dns: IpAddr,
    /// Node ports are allocated from this range.
    pub node_port_range: std::ops::RangeInclusive<u16>,
    pub cluster_domain: String,
    /// host:port written into admin.conf and join commands.
    pub advertise: String,
    /// Serving certificate SANs beyond the built-in ones.
    pub tls_sans: Vec<String>,
    pub lease_ttl: Duration,
    pub removal_grace: Duration,
    pub wireguard_port: u16,
    pub watch_keepalive: Duration,
    /// Where the cluster's state lives.
    pub store: StoreChoice,
    /// The file of the key that encrypts private keys stored in etcd.
    pub cluster_secret: PathBuf,
    /// Time for a connection's TLS handshake and HTTP/2 preface.
    pub handshake_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_source: usize,
    /// Whether loopback addresses are acceptable node endpoints.
    pub allow_loopback_endpoints: bool,
}

impl Config {
    /// Check the flags and derive the settings.
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        let bad = |s: String| Err(ConfigError::Invalid(s));
        let pool = Pool::new(self.cluster_cidr, self.node_cidr_prefix)
            .map_err(|e| ConfigError::Invalid(format!("--cluster-cidr/--node-cidr-prefix: {e}")))?;
        if self.service_cidr.trunc() != self.service_cidr {
            return bad(format!(
                "--service-cidr {} has host bits set; did you mean {}?",
                self.service_cidr,
                self.service_cidr.trunc()
            ));
        }
        if self.service_cidr.contains(&self.cluster_cidr)
            || self.cluster_cidr.contains(&self.service_cidr)
        {
            return bad(format!(
                "--cluster-cidr {} and --service-cidr {} overlap; pod and service addresses must be distinct",
                self.cluster_cidr, self.service_cidr
            ));
        }
        let cluster_dns = match self.cluster_dns {
            Some(ip) => ip,
            None => nth_host(&self.service_cidr, 10).ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "--service-cidr {} is too small to hold the cluster DNS address (.10)",
                    self.service_cidr
                ))
            })?,
        };
        if !self.service_cidr.contains(&cluster_dns) {
            return bad(format!(
                "--cluster-dns {cluster_dns} is outside --service-cidr {}",
                self.service_cidr
            ));
        }
        if self.cluster_domain.is_empty()
            || !self
                .cluster_domain
                .split('.')
                .all(|l| crate::model::validate_node_name(l).is_ok())
        {
            return bad(format!(
                "--cluster-domain {:?} is not a valid DNS domain",
                self.cluster_domain
            ));
        }
        if self.lease_ttl_seconds == 0 {
            return bad("--lease-ttl must be at least 1 second".into());
        }
        if self.watch_keepalive_seconds == 0 {
            return bad("--watch-keepalive must be at least 1 second".into());
        }
        if self.wireguard_port == 0 {
            return bad("--wireguard-port must not be 0".into());
        }
        let store = self.store.validate()?;
        if self.handshake_timeout_seconds == 0 {
            return bad("--handshake-timeout must be at least 1 second".into());
        }
        if self.max_connections == 0 || self.max_connections_per_source == 0 {
            return bad(
                "--max-connections and --max-connections-per-source must be at least 1".into(),
            );
        }
        let advertise = match &self.advertise_address {
            Some(a) => {
                check_host_port(a)
                    .map_err(|e| ConfigError::Invalid(format!("--advertise-address {a:?}: {e}")))?;
                a.clone()
            }
            None if self.listen.ip().is_unspecified() => {
                format!("127.0.0.1:{}", self.listen.port())
            }
            None => self.listen.to_string(),
        };
        let mut tls_sans: Vec<String> = self
            .tls_sans
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        for s in &tls_sans {
            if s.parse::<IpAddr>().is_err()
                && !s.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '*')
                })
            {
                return bad(format!(
                    "--tls-san {s:?} is neither an IP address nor a DNS name"
                ));
            }
        }
        if let Some((host, _)) = advertise.rsplit_once(':') {
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            if !tls_sans.contains(&host) {
                tls_sans.push(host);
            }
        }
        if !self.listen.ip().is_unspecified() {
            let ip = self.listen.ip().to_string();
            if !tls_sans.contains(&ip) {
                tls_sans.push(ip);
            }
        }
        Ok(Settings {
            listen: self.listen,
            state_dir: self.state_dir.clone(),
            pool,
            service_cidr: self.service_cidr,
            cluster_dns,
            node_port_range: self.service_node_port_range.clone(),
            cluster_domain: self.cluster_domain.clone(),
            advertise,
            tls_sans,
            lease_ttl: Duration::from_secs(u64::from(self.lease_ttl_seconds)),
            removal_grace: Duration::from_secs(u64::from(self.removal_grace_seconds)),
            wireguard_port: self.wireguard_port,
            watch_keepalive: Duration::from_secs(u64::from(self.watch_keepalive_seconds)),
            store,
            cluster_secret: self
                .store
                .cluster_secret
                .clone()
                .unwrap_or_else(|| self.state_dir.join("cluster-secret")),
            handshake_timeout: Duration::from_secs(u64::from(self.handshake_timeout_seconds)),
            max_connections: self.max_connections,
            max_connections_per_source: self.max_connections_per_source,
            allow_loopback_endpoints: self
                .allow_loopback_endpoints
                .unwrap_or(self.listen.ip().is_loopback()),
        })
    }
}

/// `FIRST-LAST`, 1 <= FIRST <= LAST <= 65535.
fn parse_port_range(s: &str) -> Result<std::ops::RangeInclusive<u16>, String> {
    let bad = || format!("{s:?} is not a port range FIRST-LAST (e.g. 30000-32767)");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let a: u16 = a.trim().parse().map_err(|_| bad())?;
    let b: u16 = b.trim().parse().map_err(|_| bad())?;
    if a == 0 || a > b {
        return Err(bad());
    }
    Ok(a..=b)
}

/// The `n`-th address of a network (network address + n).
fn nth_host(net: &IpNet, n: u32) -> Option<IpAddr> {
    let addr = match net.network() {
        IpAddr::V4(a) => IpAddr::V4(u32::from(a).checked_add(n)?.into()),
        IpAddr::V6(a) => IpAddr::V6(u128::from(a).checked_add(u128::from(n))?.into()),
    };
    net.contains(&addr).then_some(addr)
}

fn check_host_port(s: &str) -> Result<(), String> {
    let (host, port) = s.rsplit_once(':').ok_or("expected host:port")?;
    let port: u16 = port.parse().map_err(|_| format!("bad port {port:?}"))?;
    if port == 0 {
        return Err("port 0".into());
    }
    if host.is_empty() {
        return Err("empty host".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        let mut v = vec!["weft-control-plane"];
        v.extend_from_slice(args);
        Config::try_parse_from(v).unwrap()
    }

    #[test]
    fn defaults_are_kubernetes_conventions() {
        let s = parse(&[]).validate().unwrap();
        assert_eq!(s.pool.cluster().to_string(), "10.244.0.0/16");
        assert_eq!(s.pool.node_prefix(), 24);
        assert_eq!(s.cluster_dns.to_string(), "10.96.0.10");
        assert_eq!(s.advertise, "127.0.0.1:7443");
        assert_eq!(s.lease_ttl, Duration::from_secs(40));
        assert_eq!(s.store, StoreChoice::Redb);
        assert_eq!(s.handshake_timeout, Duration::from_secs(10));
        assert_eq!(
            (s.max_connections, s.max_connections_per_source),
            (4096, 256)
        );
        assert!(!s.allow_loopback_endpoints, "listening on 0.0.0.0");
    }

    #[test]
    fn etcd_store_flags() {
        let s = parse(&[
            "--store",
            "etcd://10.0.0.1:2379,10.0.0.2:2379",
            "--etcd-prefix",
            "/weft/prod/",
            "--etcd-ca",
            "/etc/etcd/ca.pem",
            "--etcd-cert",
            "/etc/weft/etcd.pem",
            "--etcd-key",
            "/etc/weft/etcd-key.pem",
        ])
        .validate()
        .unwrap();
        let StoreChoice::Etcd(o) = s.store else {
            panic!("expected etcd")
        };
        assert_eq!(o.endpoints, ["10.0.0.1:2379", "10.0.0.2:2379"]);
        assert_eq!(o.prefix, "/weft/prod/");
        let tls = o.tls.unwrap();
        assert_eq!(tls.ca, PathBuf::from("/etc/etcd/ca.pem"));
        assert_eq!(tls.key, Some(PathBuf::from("/etc/weft/etcd-key.pem")));
    }

    #[test]
    fn loopback_endpoints_follow_the_listen_address_unless_set() {
        let on = |args: &[&str]| parse(args).validate().unwrap().allow_loopback_endpoints;
        assert!(on(&["--listen", "127.0.0.1:7443"]));
        assert!(!on(&["--listen", "192.0.2.1:7443"]));
        assert!(on(&[
            "--listen",
            "192.0.2.1:7443",
            "--allow-loopback-endpoints"
        ]));
        assert!(!on(&[
            "--listen",
            "127.0.0.1:7443",
            "--allow-loopback-endpoints=false"
        ]));
    }

    #[test]
    fn bad_flags_name_the_flag() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["--node-cidr-prefix", "16"],
                "must be longer than the cluster CIDR prefix",
            ),
            (
                &["--node-cidr-prefix", "8"],
                "must be longer than the cluster CIDR prefix",
            ),
            (&["--service-cidr", "10.0.0.0/8"], "overlap"),
            (
                &["--cluster-cidr", "10.96.0.0/16", "--node-cidr-prefix", "24"],
                "overlap",
            ),
            (&["--cluster-dns", "10.1.1.1"], "outside --service-cidr"),
            (&["--lease-ttl", "0"], "--lease-ttl"),
            (&["--handshake-timeout", "0"], "--handshake-timeout"),
            (&["--max-connections", "0"], "--max-connections"),
            (
                &["--advertise-address", "nohostport"],
                "--advertise-address",
            ),
            (&["--tls-san", "bad name!"], "--tls-san"),
            (&["--cluster-domain", "Bad_Domain"], "--cluster-domain"),
            (&["--store", "mysql://x"], "--store"),
            (&["--store", "etcd://nohost"], "--store"),
            (
                &["--store", "etcd://a:1", "--etcd-prefix", "x"],
                "--etcd-prefix",
            ),
            (&["--etcd-ca", "/ca.pem"], "need --store etcd"),
            (
                &["--store", "etcd://a:1", "--etcd-cert", "/c"],
                "need --etcd-ca",
            ),
            (
                &[
                    "--store",
                    "etcd://a:1",
                    "--etcd-ca",
                    "/ca",
                    "--etcd-key",
                    "/k",
                ],
                "go together",
            ),
        ];
        for (args, want) in cases {
            let e = parse(args).validate().unwrap_err();
            assert!(e.to_string().contains(want), "{args:?}: {e}");
        }
    }
}
