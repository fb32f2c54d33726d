//! Capturing a lab's underlay with `tcpdump`, and reading what it saw.
//!
//! [`Capture::start`] runs `tcpdump -i any` inside a lab namespace (the
//! underlay's, where every frame between hosts crosses the bridge: `any`
//! captures on every bridge port, so each such frame shows where it enters
//! the bridge and where it leaves it, whether or not `br0` itself is
//! promiscuous) writing a pcap file, and returns once tcpdump says it is
//! listening. [`Capture::stop`] stops it
//! and returns its counters (a kernel drop means the capture is not the
//! whole truth). [`read_pcap`](crate::read_pcap) reads the file back.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::{E2eError, Result};

/// The longest tcpdump may take to start listening, or to stop.
const TCPDUMP_WAIT: Duration = Duration::from_secs(10);

/// A running `tcpdump`; killed when dropped.
#[derive(Debug)]
pub struct Capture {
    child: Child,
    file: PathBuf,
    stderr: mpsc::Receiver<String>,
    lines: Vec<String>,
}

/// What tcpdump reported when it stopped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaptureSummary {
    /// The pcap file.
    pub file: PathBuf,
    /// "N packets captured".
    pub captured: Option<u64>,
    /// "N packets dropped by kernel".
    pub dropped_by_kernel: Option<u64>,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

impl Capture {
    /// Starts `tcpdump -i any -n -U -s 0 -B 16384 -Z root -w file` inside the
    /// named namespace `ns` and waits until it listens. Fails clearly if
    /// tcpdump is not installed.
    pub fn start(ns: &str, file: &Path) -> Result<Self> {
        let tcpdump = which("tcpdump").ok_or_else(|| {
            E2eError::failed(
                "tcpdump is not installed (the underlay test needs it): \
                 apt-get install tcpdump, or run ./scripts/test-all, which installs it",
            )
        })?;
        let tcpdump = tcpdump.display().to_string();
        let file_arg = file.display().to_string();
        let args = [
            "netns", "exec", ns, &tcpdump, "-i", "any", "-n", "-U", "-s", "0", "-B", "16384", "-Z",
            "root", "-w", &file_arg,
        ];
        let mut child = Command::new("ip")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| E2eError::io(format!("starting `ip {}`", args.join(" ")), e))?;
        let (tx, rx) = mpsc::channel();
        if let Some(stderr) = child.stderr.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            });
        }
        let mut capture = Capture {
            child,
            file: file.to_path_buf(),
            stderr: rx,
            lines: Vec::new(),
        };
        loop {
            match capture.stderr.recv_timeout(TCPDUMP_WAIT) {
                Ok(line) => {
                    let listening = line.contains("listening on");
                    capture.lines.push(line);
                    if listening {
                        return Ok(capture);
                    }
                }
                Err(_) => {
                    let _ = capture.child.kill();
                    let _ = capture.child.wait();
                    return Err(E2eError::failed(format!(
                        "tcpdump in {ns} did not start listening within {TCPDUMP_WAIT:?}: {}",
                        capture.lines.join(" | ")
                    )));
                }
            }
        }
    }

    /// Stops tcpdump (SIGINT, so it flushes the file) and returns what it
    /// reported.
    pub fn stop(mut self) -> Result<CaptureSummary> {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(i32::MAX));
        let _ = kill(pid, Signal::SIGINT);
        // Its stderr closes when it exits.
        loop {
            match self.stderr.recv_timeout(TCPDUMP_WAIT) {
                Ok(line) => self.lines.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return Err(E2eError::failed(format!(
                        "tcpdump did not stop within {TCPDUMP_WAIT:?} after SIGINT"
                    )));
                }
            }
        }
        let status = self
            .child
            .wait()
            .map_err(|e| E2eError::io("waiting for tcpdump", e))?;
        let stderr = self.lines.join("\n");
        if !status.success() {
            return Err(E2eError::failed(format!(
                "tcpdump exited with {status}: {stderr}"
            )));
        }
        let count = |what: &str| {
            self.lines
                .iter()
                .find(|l| l.ends_with(what))
                .and_then(|l| l.split_whitespace().next())
                .and_then(|n| n.parse().ok())
        };
        Ok(CaptureSummary {
            file: self.file.clone(),
            captured: count("packets captured"),
            dropped_by_kernel: count("packets dropped by kernel"),
            stderr,
        })
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `program` on `PATH`, if it is there.
fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}
