//! Processes running inside lab namespaces: starting, identifying, stopping.
//!
//! A process is identified by its pid *and* its start time (field 22 of
//! `/proc/PID/stat`), which no later process with a recycled pid can share,
//! so a stale record never leads to signalling someone else's process.

use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

use super::cmd::check_ns_name;
use super::{LabError, ProcessRecord};

/// How long a process gets to exit after SIGTERM before SIGKILL.
pub(crate) const TERM_GRACE: Duration = Duration::from_secs(3);
/// How long to wait for a SIGKILLed process to disappear.
const KILL_WAIT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(20);

/// A process started in a lab namespace, with its log file.
///
/// Dropping it neither stops nor waits for the process: lab processes outlive
/// the invocation that started them, and teardown stops them.
#[derive(Debug)]
pub struct LabProcess {
    record: ProcessRecord,
    child: Option<Child>,
}

impl LabProcess {
    /// A handle on a recorded process (e.g. read from `lab.json` by another
    /// invocation); it may have exited since.
    pub fn from_record(record: ProcessRecord) -> Self {
        LabProcess {
            record,
            child: None,
        }
    }

    /// What `lab.json` says about it.
    pub fn record(&self) -> &ProcessRecord {
        &self.record
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.record.pid
    }

    /// The file receiving its stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.record.log_path
    }

    /// Whether it is still running (neither exited nor a zombie).
    pub fn is_running(&mut self) -> bool {
        self.exit_status().is_none()
    }

    /// How it ended, or `None` while it runs.
    fn exit_status(&mut self) -> Option<String> {
        if let Some(child) = &mut self.child {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status.to_string()),
                Ok(None) => {}
                // Reaped elsewhere (by a teardown in this process).
                Err(_) => return Some("reaped".to_string()),
            }
        }
        if process_is_running(&self.record) {
            None
        } else {
            Some("gone".to_string())
        }
    }

    /// Stops it: SIGTERM, then SIGKILL after a grace period. Succeeds if it
    /// had already exited.
    pub fn kill(&mut self) -> Result<(), LabError> {
        let survivors = terminate(&[(self.record.pid, self.record.start_ticks)], TERM_GRACE);
        if let Some(child) = &mut self.child {
            let _ = child.try_wait();
        }
        if survivors.is_empty() {
            Ok(())
        } else {
            Err(LabError::Survived {
                what: format!("process '{}'", self.record.label),
                pid: self.record.pid,
            })
        }
    }

    /// Sends `signal` to it if it still runs (never to a process that reused
    /// its pid); returns whether it did.
    pub fn signal(&self, signal: Signal) -> Result<bool, LabError> {
        if !process_is_running(&self.record) {
            return Ok(false);
        }
        let pid = i32::try_from(self.record.pid).map_err(|_| {
            LabError::InvalidArgument(format!("pid {} is out of range", self.record.pid))
        })?;
        match kill(Pid::from_raw(pid), signal) {
            Ok(()) => Ok(true),
            Err(Errno::ESRCH) => Ok(false),
            Err(e) => Err(LabError::io(
                format!(
                    "sending {signal} to process '{}' (pid {pid})",
                    self.record.label
                ),
                e.into(),
            )),
        }
    }

    /// Waits up to `timeout` for it to exit (reaping it if it is a child of
    /// this process); returns whether it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            reap(self.record.pid);
            if !self.is_running() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(POLL);
        }
    }

    /// Polls `ready` until it returns true. Fails early, with the end of the
    /// log, if the process exits; fails after `timeout` likewise.
    pub fn wait_ready(
        &mut self,
        timeout: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> Result<(), LabError> {
        let deadline = Instant::now() + timeout;
        loop {
            if ready() {
                return Ok(());
            }
            if let Some(status) = self.exit_status() {
                return Err(LabError::ProcessExited {
                    label: self.record.label.clone(),
                    pid: self.record.pid,
                    status,
                    log: self.record.log_path.clone(),
                    log_tail: self.log_tail(20),
                });
            }
            if Instant::now() >= deadline {
                return Err(LabError::NotReady {
                    label: self.record.label.clone(),
                    pid: self.record.pid,
                    timeout,
                    log: self.record.log_path.clone(),
                    log_tail: self.log_tail(20),
                });
            }
            thread::sleep(POLL);
        }
    }

    /// Waits until its log contains `needle`.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> Result<(), LabError> {
        let path = self.record.log_path.clone();
        self.wait_ready(timeout, || {
            fs::read(&path)
                .map(|log| String::from_utf8_lossy(&log).contains(needle))
                .unwrap_or(false)
        })
    }

    /// The last `lines` lines of its log (at most 64 KiB are read).
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.record.log_path, lines)
    }
}

/// The last `lines` lines of the file at `path` (at most 64 KiB are read).
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(mut file) = fs::File::open(path) else {
        return String::from("(no log)");
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut buf = Vec::new();
    let _ = file.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Starts `program args...` inside `ns` through `ip netns exec` (which execs
/// it, keeping the pid), in its own process group, stdin from /dev/null,
/// stdout and stderr appended to `log_path`.
pub(crate) fn spawn(
    ns: &str,
    label: &str,
    program: &str,
    args: &[&str],
    env: &[(&str, &str)],
    log_path: PathBuf,
) -> Result<LabProcess, LabError> {
    check_ns_name(ns)?;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| LabError::io(format!("opening log {}", log_path.display()), e))?;
    let log2 = log
        .try_clone()
        .map_err(|e| LabError::io(format!("opening log {}", log_path.display()), e))?;
    let child = Command::new("ip")
        .args(["netns", "exec", ns, program])
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .process_group(0)
        .spawn()
        .map_err(|cause| LabError::Spawn {
            command: super::cmd::command_line(
                "ip",
                &[&["netns", "exec", ns, program][..], args].concat(),
            ),
            cause,
        })?;
    let pid = child.id();
    let start_ticks = proc_stat(pid).map(|s| s.start_ticks).unwrap_or(0);
    Ok(LabProcess {
        record: ProcessRecord {
            label: label.to_string(),
            ns: ns.to_string(),
            program: program.to_string(),
            args: args.iter().map(|a| a.to_string()).collect(),
            pid,
            start_ticks,
            log_path,
        },
        child: Some(child),
    })
}

/// Whether the recorded process still runs: its pid exists, is no zombie,
/// and started at the recorded time.
pub fn process_is_running(record: &ProcessRecord) -> bool {
    is_alive(record.pid, record.start_ticks)
}

pub(crate) struct ProcStat {
    pub(crate) state: char,
    pub(crate) start_ticks: u64,
}

/// Reads the state and start time of `pid` from `/proc/PID/stat`.
pub(crate) fn proc_stat(pid: u32) -> Option<ProcStat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain anything, even ") ": skip past its last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); start time is field 22.
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        start_ticks: fields.get(22 - 3)?.parse().ok()?,
    })
}

pub(crate) fn is_alive(pid: u32, start_ticks: u64) -> bool {
    match proc_stat(pid) {
        Some(stat) => stat.state != 'Z' && stat.start_ticks == start_ticks,
        None => false,
    }
}

/// The command line of `pid`, for reports.
pub(crate) fn cmdline(pid: u32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|part| !part.is_empty())
                .map(|part| String::from_utf8_lossy(part).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// Stops every `(pid, start_ticks)` still alive: SIGTERM, up to `grace` to
/// exit, then SIGKILL. Reaps those that are children of this process.
/// Returns the ones that are still alive afterwards.
pub(crate) fn terminate(targets: &[(u32, u64)], grace: Duration) -> Vec<u32> {
    let alive = |targets: &[(u32, u64)]| -> Vec<(u32, u64)> {
        targets
            .iter()
            .copied()
            .filter(|&(pid, ticks)| {
                reap(pid);
                is_alive(pid, ticks)
            })
            .collect()
    };
    let mut left = alive(targets);
    for (signal, wait) in [(Signal::SIGTERM, grace), (Signal::SIGKILL, KILL_WAIT)] {
        for &(pid, _) in &left {
            signal_pid(pid, signal);
        }
        let deadline = Instant::now() + wait;
        while !left.is_empty() && Instant::now() < deadline {
            thread::sleep(POLL);
            left = alive(&left);
        }
        if left.is_empty() {
            break;
        }
    }
    left.into_iter().map(|(pid, _)| pid).collect()
}

fn signal_pid(pid: u32, signal: Signal) {
    if let Ok(raw) = i32::try_from(pid) {
        match kill(Pid::from_raw(raw), signal) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => tracing::warn!(pid, %signal, error = %e, "cannot signal lab process"),
        }
    }
}

/// Collects the exit status of `pid` if it is an exited child of ours, so it
/// leaves no zombie; a no-op for anyone else's process.
fn reap(pid: u32) {
    if let Ok(raw) = i32::try_from(pid) {
        let _ = waitpid(Pid::from_raw(raw), Some(WaitPidFlag::WNOHANG));
    }
}
