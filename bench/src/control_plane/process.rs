//! The control plane under test, as a child process of its own (so its CPU
//! and memory are measured alone), with a temporary state dir. Dropping a
//! [`ServerProcess`] stops the process (SIGTERM, then SIGKILL by PID) and then
//! deletes the state dir, on every path out of the benchmark.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;
use tonic::transport::Channel;
use weft_client::Credentials;
use weft_proto::v1::admin_client::AdminClient;
use weft_proto::v1::{ClusterInfo, GetClusterInfoRequest};

/// The admin credentials the control plane writes into its state dir.
const ADMIN_CONF: &str = "admin.conf";
/// Where the child's stderr (its log) goes, inside the state dir.
const LOG_FILE: &str = "control-plane.log";

/// A running `weft-control-plane` child process.
pub(super) struct ServerProcess {
    child: Child,
    pid: u32,
    log: PathBuf,
    state_path: PathBuf,
    /// Dropped after the process is stopped (field order does not matter:
    /// `Drop::drop` below runs before any field is dropped).
    state: Option<TempDir>,
    stopped: bool,
}

impl ServerProcess {
    /// Start `bin` on `addr` with a fresh temporary state dir (holding a
    /// copy of `cluster_secret`, for a replica joining others on etcd),
    /// `extra` flags appended, logging at `log_level` (WEFT_LOG) into the
    /// state dir.
    pub(super) fn start(
        bin: &Path,
        addr: SocketAddr,
        node_cidr: (&str, u8),
        log_level: &str,
        extra: &[String],
        env: &[(String, String)],
        cluster_secret: Option<&Path>,
    ) -> Result<Self> {
        let state = tempfile::Builder::new()
            .prefix("weft-bench-cp-")
            .tempdir()
            .context("creating a temporary state dir")?;
        let state_path = state.path().to_path_buf();
        if let Some(secret) = cluster_secret {
            std::fs::copy(secret, state_path.join("cluster-secret"))
                .with_context(|| format!("copying {}", secret.display()))?;
        }
        let log = state_path.join(LOG_FILE);
        let log_file = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = Command::new(bin);
        cmd.arg("--listen")
            .arg(addr.to_string())
            .arg("--state-dir")
            .arg(&state_path)
            .arg("--cluster-cidr")
            .arg(node_cidr.0)
            .arg("--node-cidr-prefix")
            .arg(node_cidr.1.to_string())
            // Simulated nodes do not renew leases; keep them Ready for the
            // whole run so the lease sweeper writes nothing.
            .arg("--lease-ttl")
            .arg("3600")
            // Every simulated node connects from this host: lift the
            // per-source and total connection caps.
            .arg("--max-connections")
            .arg("1000000")
            .arg("--max-connections-per-source")
            .arg("1000000")
            .args(extra)
            .env("WEFT_LOG", log_level)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(
                log_file
                    .try_clone()
                    .context("duplicating the log file handle")?,
            )
            .stderr(log_file);
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let pid = child.id();
        Ok(ServerProcess {
            child,
            pid,
            log,
            state_path,
            state: Some(state),
            stopped: false,
        })
    }

    pub(super) fn pid(&self) -> u32 {
        self.pid
    }

    pub(super) fn state_dir(&self) -> &Path {
        &self.state_path
    }

    /// Keep the state dir (and its log) after the run instead of deleting it.
    pub(super) fn keep_state(&mut self) -> PathBuf {
        if let Some(dir) = self.state.take() {
            return dir.keep();
        }
        self.state_path.clone()
    }

    /// An error if the process has exited, with the end of its log.
    pub(super) fn check_alive(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => bail!(
                "the control plane (pid {}) exited with {status}; the end of its log:\n{}",
                self.pid,
                self.log_tail(20)
            ),
            Err(e) => {
                Err(anyhow!(e).context(format!("checking on the control plane (pid {})", self.pid)))
            }
        }
    }

    /// The last `lines` lines of the control plane's log.
    pub(super) fn log_tail(&self, lines: usize) -> String {
        match std::fs::read_to_string(&self.log) {
            Ok(text) => {
                let all: Vec<&str> = text.lines().collect();
                all[all.len().saturating_sub(lines)..].join("\n")
            }
            Err(e) => format!("(cannot read {}: {e})", self.log.display()),
        }
    }

    /// How many lines the control plane has logged so far.
    pub(super) fn log_lines(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    /// Wait until admin.conf exists and an admin call (GetClusterInfo)
    /// succeeds; return the admin client.
    pub(super) async fn wait_ready(
        &mut self,
        within: Duration,
    ) -> Result<(AdminClient<Channel>, ClusterInfo)> {
        let deadline = Instant::now() + within;
        let conf = self.state_path.join(ADMIN_CONF);
        let mut last_error = String::from("admin.conf not written yet");
        loop {
            self.check_alive()?;
            if conf.exists() {
                match ready_check(&conf).await {
                    Ok(ok) => return Ok(ok),
                    Err(e) => last_error = format!("{e:#}"),
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "the control plane (pid {}) was not ready within {within:?}: {last_error}; the end of its log:\n{}",
                    self.pid,
                    self.log_tail(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stop the process: SIGTERM, up to 3 s for it to exit, then SIGKILL.
    /// Idempotent.
    pub(super) fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = Pid::from_raw(self.pid as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
        // `self.state` (the TempDir) is dropped after this, deleting the dir.
    }
}

async fn ready_check(conf: &Path) -> Result<(AdminClient<Channel>, ClusterInfo)> {
    let creds = Credentials::load(conf).with_context(|| format!("loading {}", conf.display()))?;
    let channel = weft_client::connect(&creds)
        .await
        .context("connecting with admin.conf")?;
    let mut admin = AdminClient::new(channel);
    let info = admin
        .get_cluster_info(GetClusterInfoRequest {})
        .await
        .context("Admin.GetClusterInfo")?
        .into_inner();
    Ok((admin, info))
}

/// Have the kernel kill the child if the thread that started it dies (the
/// benchmark is killed), so no control plane outlives a crashed run.
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: the closure runs in the forked child before exec and only makes
    // the prctl(2) system call, which is async-signal-safe; it allocates
    // nothing and touches no locks.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
}
