//! containerd (Debian's package) started by a test with its own config,
//! root, state and socket, optionally inside a lab node's namespace, and
//! removed with everything it started when the guard drops.
//!
//! Its CRI plugin gets `restrict_oom_score_adj = true` (without it Debian's
//! containerd 1.6 cannot start sandboxes here), a local sandbox image, and,
//! when given, CNI bin/conf dirs (weft-cni).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use weft_e2e::{E2eError, Result};

use super::cri_api::CriClient;
use super::{run_ok, wait_until, ChildGuard};

/// How long containerd gets to answer after a start.
const READY: Duration = Duration::from_secs(30);

/// Where its CNI plugins and network lists are.
#[derive(Debug, Clone)]
pub(crate) struct Cni {
    pub bin_dir: PathBuf,
    pub conf_dir: PathBuf,
}

/// A running containerd of the test's own.
#[derive(Debug)]
pub(crate) struct Containerd {
    pub dir: PathBuf,
    pub socket: PathBuf,
    netns: Option<String>,
    process: Option<ChildGuard>,
    restarts: u32,
    /// Sandboxes to stop and remove on drop.
    sandboxes: Vec<String>,
    _tmp: tempfile::TempDir,
}

impl Containerd {
    /// Writes its config and starts it (in `netns` if given), then waits
    /// until its CRI answers.
    pub(crate) fn start(
        netns: Option<&str>,
        sandbox_image: &str,
        cni: Option<&Cni>,
    ) -> Result<Self> {
        let tmp = tempfile::Builder::new()
            .prefix("weft-ctd-")
            .tempdir()
            .map_err(|e| E2eError::io("creating containerd's dir", e))?;
        let dir = tmp.path().to_path_buf();
        let socket = dir.join("containerd.sock");
        let mut config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.internal.v1.opt", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{socket}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"#,
            root = dir.join("root").display(),
            state = dir.join("state").display(),
            socket = socket.display(),
        );
        if let Some(cni) = cni {
            config.push_str(&format!(
                "  [plugins.\"io.containerd.grpc.v1.cri\".cni]\n    bin_dir = \"{}\"\n    conf_dir = \"{}\"\n    max_conf_num = 1\n",
                cni.bin_dir.display(),
                cni.conf_dir.display()
            ));
        }
        std::fs::write(dir.join("config.toml"), config)
            .map_err(|e| E2eError::io("writing containerd's config", e))?;
        let mut c = Containerd {
            dir,
            socket,
            netns: netns.map(str::to_string),
            process: None,
            restarts: 0,
            sandboxes: Vec::new(),
            _tmp: tmp,
        };
        c.spawn()?;
        Ok(c)
    }

    fn spawn(&mut self) -> Result<()> {
        let config = self.dir.join("config.toml");
        let mut cmd = match &self.netns {
            // Only the network namespace: `ip netns exec` would also give
            // it a mount namespace of its own, where the sandboxes' netns
            // bind mounts would stay, unseen by the agent (on a real node
            // both share the host's mounts).
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}")).arg("containerd");
                c
            }
            None => Command::new("containerd"),
        };
        cmd.arg("--config").arg(&config);
        let log = self.log_path();
        self.process = Some(ChildGuard::spawn(&mut cmd, &log)?);
        let socket = self.socket.clone();
        let rt = runtime()?;
        let result = wait_until("containerd's CRI to answer", READY, || {
            rt.block_on(async {
                let mut c = CriClient::connect(&socket).await?;
                c.version().await
            })
        });
        result.map_err(|e| E2eError::failed(format!("{e}\n{}", self.log_tail())))?;
        Ok(())
    }

    /// Its log of the current run.
    pub(crate) fn log_path(&self) -> PathBuf {
        self.dir.join(format!("containerd.{}.log", self.restarts))
    }

    /// The last lines of its log, for failure messages.
    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(25);
        format!(
            "containerd log ({}):\n{}",
            self.log_path().display(),
            lines[start..].join("\n")
        )
    }

    /// Stops containerd (SIGTERM) and starts it again on the same config,
    /// root and state; its sandboxes run on meanwhile.
    pub(crate) fn restart(&mut self) -> Result<()> {
        if let Some(mut p) = self.process.take() {
            p.stop(Duration::from_secs(10));
        }
        self.restarts += 1;
        self.spawn()
    }

    /// `ctr --address SOCKET ARGS...`.
    pub(crate) fn ctr(&self, args: &[&str], timeout: Duration) -> Result<String> {
        run_ok(
            Command::new("ctr")
                .arg("--address")
                .arg(&self.socket)
                .args(args),
            timeout,
        )
    }

    /// A CRI client.
    pub(crate) fn cri(&self, rt: &tokio::runtime::Runtime) -> Result<CriClient> {
        rt.block_on(CriClient::connect(&self.socket))
            .map_err(E2eError::Failed)
    }

    /// Remembers a sandbox to remove on drop (if the test does not).
    pub(crate) fn track(&mut self, id: &str) {
        self.sandboxes.push(id.to_string());
    }

    /// Forgets a sandbox the test removed.
    pub(crate) fn untrack(&mut self, id: &str) {
        self.sandboxes.retain(|s| s != id);
    }

    /// The shims this containerd started (their command line names its
    /// socket), by pid.
    fn shims(&self) -> Vec<i32> {
        let socket = self.socket.display().to_string();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|c| {
                        let c = String::from_utf8_lossy(&c).replace('\0', " ");
                        c.contains("containerd-shim") && c.contains(&socket)
                    })
                    .unwrap_or(false)
            })
            .collect()
    }
}

/// A current-thread tokio runtime for the CRI calls.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| E2eError::io("starting a tokio runtime", e))
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Sandboxes first, through the CRI, so that CNI DEL runs and their
        // namespaces go.
        if self.process.as_mut().is_some_and(|p| p.running()) && !self.sandboxes.is_empty() {
            if let Ok(rt) = runtime() {
                let socket = self.socket.clone();
                let ids = std::mem::take(&mut self.sandboxes);
                rt.block_on(async {
                    if let Ok(mut c) = CriClient::connect(&socket).await {
                        for id in ids {
                            let _ = c.stop_pod_sandbox(&id).await;
                            let _ = c.remove_pod_sandbox(&id).await;
                        }
                    }
                });
            }
        }
        let _ = Command::new("ctr")
            .arg("--address")
            .arg(&self.socket)
            .args(["-n", "k8s.io", "tasks", "ls", "-q"])
            .output()
            .map(|out| {
                for id in String::from_utf8_lossy(&out.stdout).lines() {
                    let _ = Command::new("ctr")
                        .arg("--address")
                        .arg(&self.socket)
                        .args(["-n", "k8s.io", "tasks", "kill", "-s", "KILL", id])
                        .output();
                }
            });
        if let Some(mut p) = self.process.take() {
            p.stop(Duration::from_secs(10));
        }
        // Shims outlive containerd by design; ours go too.
        for pid in self.shims() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // Snapshot mounts left under its root.
        let root = self.dir.display().to_string();
        if let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") {
            let mut points: Vec<&str> = mounts
                .lines()
                .filter_map(|l| l.split_whitespace().nth(1))
                .filter(|p| p.starts_with(&root))
                .collect();
            points.sort_by_key(|p| std::cmp::Reverse(p.len()));
            for p in points {
                let _ = nix::mount::umount2(Path::new(p), nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
}
