//! What the image tests share: root, the binaries, running the recipes'
//! scripts with a time bound, and processes that die with their guard.

pub(crate) mod containerd;
pub(crate) mod cri_api;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use weft_e2e::{E2eError, Result};

/// The checkout's root.
pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A name unique to this test process: `<tag><pid>`.
pub(crate) fn unique(tag: &str) -> String {
    format!("{tag}{}", std::process::id())
}

/// Fails unless this process runs as root.
pub(crate) fn require_root() -> Result<()> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(E2eError::failed(
            "the image tests need root (namespaces, containerd, QEMU taps); \
             run them as root, e.g. sudo ./scripts/test-all",
        ))
    }
}

/// The profile directory holding weft's binaries (`target/debug`), with
/// weft-agent, weft-cni, weftctl, weft-control-plane and weft-image built
/// there first, once per test process.
pub(crate) fn bin_dir() -> Result<PathBuf> {
    static BUILT: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = weft_lab::profile_dir().map_err(|e| e.to_string())?;
            cargo_build(&dir)?;
            // A copy: other test binaries build (and so may relink) these
            // programs while this one runs, and an image built from a
            // binary that changed between two builds is not this test's
            // finding. Overwritten by the next run; under the target dir.
            let snapshot = dir.join("images-test-bins");
            std::fs::create_dir_all(&snapshot)
                .map_err(|e| format!("{}: {e}", snapshot.display()))?;
            for b in [
                "weft-agent",
                "weft-cni",
                "weftctl",
                "weft-control-plane",
                "weft-image",
            ] {
                if !dir.join(b).is_file() {
                    return Err(format!(
                        "{} is missing after cargo build",
                        dir.join(b).display()
                    ));
                }
                std::fs::copy(dir.join(b), snapshot.join(b))
                    .map_err(|e| format!("copying {b} to {}: {e}", snapshot.display()))?;
            }
            Ok(snapshot)
        })
        .clone()
        .map_err(E2eError::Failed)
}

fn cargo_build(dir: &Path) -> std::result::Result<(), String> {
    let target = dir.parent().ok_or("no target directory")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build").arg("--bins");
    if dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    for p in [
        "weft-node-agent",
        "weftctl",
        "weft-control-plane",
        "weft-images",
    ] {
        cmd.args(["-p", p]);
    }
    cmd.arg("--manifest-path")
        .arg(repo().join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target);
    // Variables cargo sets for the crate under test would make this build
    // (and the next) rebuild crates whose build scripts track them.
    for (key, _) in std::env::vars_os() {
        let Some(k) = key.to_str() else { continue };
        if k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_MANIFEST_")
            || k.starts_with("CARGO_BIN_EXE_")
            || k.starts_with("CARGO_CFG_")
            || [
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "OUT_DIR",
            ]
            .contains(&k)
        {
            cmd.env_remove(&key);
        }
    }
    let out =
        run(&mut cmd, Duration::from_secs(30 * 60)).map_err(|e| format!("cargo build: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "cargo build failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Runs `cmd` with stdout and stderr captured, killing it after `timeout`.
pub(crate) fn run(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| E2eError::io(format!("starting {what}"), e))?;
    // Drain both pipes on threads so a chatty child never blocks.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(E2eError::Timeout {
                    what,
                    timeout,
                    last: "still running; killed".into(),
                });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(E2eError::io(format!("waiting for {what}"), e)),
        }
    };
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// Runs `cmd` and fails unless it exits 0; returns its stdout.
pub(crate) fn run_ok(cmd: &mut Command, timeout: Duration) -> Result<String> {
    let what = format!("{cmd:?}");
    let out = run(cmd, timeout)?;
    if !out.status.success() {
        return Err(E2eError::failed(format!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A child process killed (and reaped) when the guard drops.
#[derive(Debug)]
pub(crate) struct ChildGuard {
    pub child: Child,
}

impl ChildGuard {
    /// Starts `cmd` with its output going to `log`.
    pub(crate) fn spawn(cmd: &mut Command, log: &Path) -> Result<Self> {
        let file =
            std::fs::File::create(log).map_err(|e| E2eError::io(log.display().to_string(), e))?;
        let err = file
            .try_clone()
            .map_err(|e| E2eError::io(log.display().to_string(), e))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .map_err(|e| E2eError::io(format!("starting {cmd:?}"), e))?;
        Ok(ChildGuard { child })
    }

    /// Whether it still runs.
    pub(crate) fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then SIGKILL after `grace`; reaps it.
    pub(crate) fn stop(&mut self, grace: Duration) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        if !self.running() {
            return;
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !self.running() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// A network namespace removed when the guard drops.
#[derive(Debug)]
pub(crate) struct NetnsGuard {
    pub name: String,
}

impl NetnsGuard {
    /// `ip netns add NAME`, with `lo` up.
    pub(crate) fn add(name: &str) -> Result<Self> {
        run_ok(
            Command::new("ip").args(["netns", "add", name]),
            Duration::from_secs(10),
        )?;
        let guard = NetnsGuard {
            name: name.to_string(),
        };
        guard.ip(&["link", "set", "lo", "up"])?;
        Ok(guard)
    }

    /// `ip -n NAME ARGS...`.
    pub(crate) fn ip(&self, args: &[&str]) -> Result<String> {
        run_ok(
            Command::new("ip").arg("-n").arg(&self.name).args(args),
            Duration::from_secs(10),
        )
    }

    /// `/run/netns/NAME`.
    pub(crate) fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Prints how long each phase took, to stderr.
#[derive(Debug)]
pub(crate) struct Stopwatch {
    test: &'static str,
    start: Instant,
    lap: Instant,
}

impl Stopwatch {
    pub(crate) fn start(test: &'static str) -> Self {
        let now = Instant::now();
        Stopwatch {
            test,
            start: now,
            lap: now,
        }
    }

    pub(crate) fn lap(&mut self, phase: &str) {
        let now = Instant::now();
        eprintln!(
            "[{}] {phase}: {:.1?} (total {:.1?})",
            self.test,
            now - self.lap,
            now - self.start
        );
        self.lap = now;
    }
}

/// Calls `probe` every 100 ms until it returns `Ok`, for at most `timeout`.
pub(crate) fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> std::result::Result<T, String>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        match probe() {
            Ok(v) => return Ok(v),
            Err(last) if Instant::now() >= deadline => {
                return Err(E2eError::Timeout {
                    what: what.to_string(),
                    timeout,
                    last,
                })
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}
