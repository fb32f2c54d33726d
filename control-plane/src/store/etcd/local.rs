//! A local etcd cluster on loopback, for tests, benchmarks and labs: real
//! `etcd` processes (Debian's `etcd-server`), each on its own free ports and
//! data dir under one temporary directory, killed by PID and removed when
//! the [`LocalEtcd`] is dropped.
//!
//! Contract:
//! - [`LocalEtcd::start`] returns once every member answers and the cluster
//!   has a leader, or fails within [`START_TIMEOUT`] with the members' logs.
//! - Members use short raft timings (heartbeat 50 ms, election 500 ms) so a
//!   lost leader is replaced within about a second.
//! - The `etcd` binary is `$WEFT_ETCD_BIN`, or `etcd` on the `PATH`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};

use super::{EtcdOptions, EtcdTls};

/// How long a cluster may take to come up.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a local etcd could not start.
#[derive(Debug, thiserror::Error)]
pub enum LocalEtcdError {
    /// The `etcd` binary is missing.
    #[error("cannot run {bin}: {reason} (install Debian's etcd-server, or set WEFT_ETCD_BIN)")]
    NoBinary { bin: String, reason: String },
    /// Files or processes could not be set up.
    #[error("local etcd: {0}")]
    Setup(String),
    /// The members did not form a cluster in time.
    #[error("local etcd did not become ready within {secs} s; logs:\n{logs}")]
    NotReady { secs: u64, logs: String },
}

/// TLS for a local cluster: the server pair every member serves with, the
/// CA that signed the clients' certificates, and a client pair for the
/// readiness check (and for callers, through [`LocalEtcd::options`]).
#[derive(Clone, Debug)]
pub struct LocalEtcdTls {
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

/// A running local etcd cluster. See the module docs.
pub struct LocalEtcd {
    dir: PathBuf,
    bin: String,
    token: String,
    members: Vec<Member>,
    tls: Option<LocalEtcdTls>,
}

impl std::fmt::Debug for LocalEtcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEtcd")
            .field("dir", &self.dir)
            .field("endpoints", &self.endpoints())
            .finish()
    }
}

impl LocalEtcd {
    /// Start a cluster of `members` plain-HTTP members.
    pub async fn start(members: usize) -> Result<LocalEtcd, LocalEtcdError> {
        Self::start_with(members, None).await
    }

    /// Start a cluster of `members`, with TLS (and client certificates) if
    /// given.
    ///
    /// Ports are picked free and then handed to etcd, so another process
    /// can take one in between: a start whose member could not bind is
    /// retried on fresh ports (at most [`START_ATTEMPTS`] times).
    pub async fn start_with(
        members: usize,
        tls: Option<LocalEtcdTls>,
    ) -> Result<LocalEtcd, LocalEtcdError> {
        let mut attempt = 1;
        loop {
            match Self::try_start(members, tls.clone()).await {
                Err(LocalEtcdError::NotReady { logs, .. })
                    if attempt < START_ATTEMPTS && logs.contains("address already in use") =>
                {
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn try_start(
        members: usize,
        tls: Option<LocalEtcdTls>,
    ) -> Result<LocalEtcd, LocalEtcdError> {
        let bin = std::env::var("WEFT_ETCD_BIN").unwrap_or_else(|_| "etcd".into());
        let n = SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let token = format!("weft-{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join(format!("{token}-etcd"));
        std::fs::create_dir_all(&dir)
            .map_err(|e| LocalEtcdError::Setup(format!("creating {}: {e}", dir.display())))?;
        let mut cluster = LocalEtcd {
            dir,
            bin,
            token,
            members: Vec::new(),
            tls,
        };
        for i in 0..members.max(1) {
            cluster.members.push(Member {
                name: format!("m{i}"),
                client_port: free_port()?,
                peer_port: free_port()?,
                child: None,
            });
        }
        for i in 0..cluster.members.len() {
            cluster.spawn(i, "new")?;
        }
        cluster.wait_ready().await?;
        Ok(cluster)
    }

    /// `host:port` of every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client_port))
            .collect()
    }

    /// The `--store` value for this cluster.
    pub fn store_url(&self) -> String {
        format!("{}{}", super::URL_SCHEME, self.endpoints().join(","))
    }

    /// Store options for this cluster (the default prefix; its TLS).
    pub fn options(&self) -> EtcdOptions {
        let mut o = EtcdOptions::new(self.endpoints());
        o.tls = self.tls.as_ref().map(|t| EtcdTls {
            ca: t.ca.clone(),
            cert: Some(t.client_cert.clone()),
            key: Some(t.client_key.clone()),
        });
        o
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the cluster has no members (never, once started).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The PID of member `i`, if it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members.get(i)?.child.as_ref().map(Child::id)
    }

    /// Kill member `i` with SIGKILL and reap it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members.get_mut(i).and_then(|m| m.child.take()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start member `i` again on its ports and data dir, and wait until it
    /// answers.
    pub async fn restart(&mut self, i: usize) -> Result<(), LocalEtcdError> {
        self.kill(i);
        self.spawn(i, "existing")?;
        self.wait_member(i).await
    }

    /// The tail of member `i`'s log.
    pub fn log_tail(&self, i: usize) -> String {
        let Some(m) = self.members.get(i) else {
            return String::new();
        };
        let text =
            std::fs::read_to_string(self.dir.join(format!("{}.log", m.name))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// The directory holding the members' data dirs and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    fn spawn(&mut self, i: usize, state: &str) -> Result<(), LocalEtcdError> {
        let initial: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect();
        let scheme = self.scheme();
        let m = &self.members[i];
        let client_url = format!("{scheme}://127.0.0.1:{}", m.client_port);
        let peer_url = format!("http://127.0.0.1:{}", m.peer_port);
        let log_path = self.dir.join(format!("{}.log", m.name));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| LocalEtcdError::Setup(format!("{}: {e}", log_path.display())))?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(self.dir.join(&m.name))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &initial.join(",")])
            .args(["--initial-cluster-state", state])
            .args(["--initial-cluster-token", &self.token])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--logger", "zap", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(t) = &self.tls {
            cmd.arg("--cert-file")
                .arg(&t.server_cert)
                .arg("--key-file")
                .arg(&t.server_key)
                .arg("--trusted-ca-file")
                .arg(&t.ca)
                .arg("--client-cert-auth");
        }
        let child = cmd.spawn().map_err(|e| LocalEtcdError::NoBinary {
            bin: self.bin.clone(),
            reason: e.to_string(),
        })?;
        self.members[i].child = Some(child);
        Ok(())
    }

    async fn wait_ready(&self) -> Result<(), LocalEtcdError> {
        for i in 0..self.members.len() {
            self.wait_member(i).await?;
        }
        Ok(())
    }

    /// Wait until member `i` answers and knows a leader.
    async fn wait_member(&self, i: usize) -> Result<(), LocalEtcdError> {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        let endpoint = format!("127.0.0.1:{}", self.members[i].client_port);
        let mut connect = ConnectOptions::new()
            .with_connect_timeout(Duration::from_millis(500))
            .with_timeout(Duration::from_secs(1));
        if let Some(tls) = self.options().tls {
            let tls = super::tls_options(&tls).map_err(LocalEtcdError::Setup)?;
            connect = connect.with_tls(tls);
        }
        while tokio::time::Instant::now() < deadline {
            if let Ok(mut client) = Client::connect([&endpoint], Some(connect.clone())).await {
                if let Ok(status) = client.status().await {
                    if status.leader() != 0 {
                        return Ok(());
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let logs = (0..self.members.len())
            .map(|j| format!("--- {}:\n{}", self.members[j].name, self.log_tail(j)))
            .collect::<Vec<_>>()
            .join("\n");
        Err(LocalEtcdError::NotReady {
            secs: START_TIMEOUT.as_secs(),
            logs,
        })
    }
}

impl Drop for LocalEtcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts tried when a port was taken between picking and binding it.
const START_ATTEMPTS: u32 = 3;

static SEQUENCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> Result<u16, LocalEtcdError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| LocalEtcdError::Setup(format!("finding a free port: {e}")))
}
