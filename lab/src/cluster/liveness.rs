//! Which process runs a lab label (`cp`, `nK`) right now: the one
//! `lab.json` recorded, or one started by hand in its place (an operator
//! who stopped an agent and ran its command line again, as docs/lab.md
//! describes), found by its namespace and its state dir.
//!
//! Contract: read-only (`ip netns pids`, `/proc`); a process is only ever
//! named with its start time, so a recycled pid is never mistaken for it.

use std::fs;
use std::path::Path;

use serde::Serialize;

use crate::process::{is_alive, proc_stat};
use crate::{namespace_pids, ProcessRecord};

/// How the process of a lab label runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum LiveProcess {
    /// The process `lab.json` recorded runs.
    Running {
        /// Its pid.
        pid: u32,
    },
    /// Another process runs in its place, in its namespace with its state
    /// dir: started by hand, not by the lab.
    RestartedByHand {
        /// Its pid.
        pid: u32,
        /// Its start time (`/proc/PID/stat` field 22).
        #[serde(skip)]
        start_ticks: u64,
    },
    /// Nothing runs.
    Stopped,
}

impl LiveProcess {
    /// The pid of what runs, if anything does.
    pub fn pid(&self) -> Option<u32> {
        match *self {
            Self::Running { pid } | Self::RestartedByHand { pid, .. } => Some(pid),
            Self::Stopped => None,
        }
    }

    /// For people: "running (pid 12)", "running (restarted by hand, pid
    /// 34)", "STOPPED".
    pub fn describe(&self) -> String {
        match self {
            Self::Running { pid } => format!("running (pid {pid})"),
            Self::RestartedByHand { pid, .. } => {
                format!("running (restarted by hand, pid {pid})")
            }
            Self::Stopped => "STOPPED".to_string(),
        }
    }
}

/// What runs for the label whose record is `recorded`, in namespace `ns`
/// with state dir `state_dir`.
pub(crate) fn find(recorded: Option<&ProcessRecord>, ns: &str, state_dir: &Path) -> LiveProcess {
    if let Some(r) = recorded.filter(|r| is_alive(r.pid, r.start_ticks)) {
        return LiveProcess::Running { pid: r.pid };
    }
    let Ok(pids) = namespace_pids(ns) else {
        return LiveProcess::Stopped;
    };
    for pid in pids {
        if !uses_state_dir(pid, state_dir) {
            continue;
        }
        if let Some(stat) = proc_stat(pid).filter(|s| s.state != 'Z') {
            return LiveProcess::RestartedByHand {
                pid,
                start_ticks: stat.start_ticks,
            };
        }
    }
    LiveProcess::Stopped
}

/// Whether process `pid` runs with `--state-dir DIR` (or `--state-dir=DIR`,
/// or `WEFT_STATE_DIR=DIR` in its environment).
fn uses_state_dir(pid: u32, dir: &Path) -> bool {
    let dir = dir.as_os_str().as_encoded_bytes();
    let args = read_nul_list(&format!("/proc/{pid}/cmdline"));
    let by_flag = args
        .windows(2)
        .any(|w| w[0] == b"--state-dir" && w[1] == dir)
        || args
            .iter()
            .any(|a| a.strip_prefix(b"--state-dir=") == Some(dir));
    by_flag
        || read_nul_list(&format!("/proc/{pid}/environ"))
            .iter()
            .any(|v| v.strip_prefix(b"WEFT_STATE_DIR=") == Some(dir))
}

/// A NUL-separated `/proc` file as its items (empty if unreadable).
fn read_nul_list(path: &str) -> Vec<Vec<u8>> {
    fs::read(path)
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|p| !p.is_empty())
                .map(<[u8]>::to_vec)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This test process is found by its own `--state-dir`-free command
    /// line as not using a state dir, and the descriptions read as the
    /// status table shows them.
    #[test]
    fn descriptions_and_matching() {
        assert_eq!(
            LiveProcess::Running { pid: 7 }.describe(),
            "running (pid 7)"
        );
        assert_eq!(
            LiveProcess::RestartedByHand {
                pid: 8,
                start_ticks: 1
            }
            .describe(),
            "running (restarted by hand, pid 8)"
        );
        assert_eq!(LiveProcess::Stopped.describe(), "STOPPED");
        assert_eq!(LiveProcess::Stopped.pid(), None);
        let me = std::process::id();
        assert!(!uses_state_dir(me, Path::new("/nonexistent/state")));
    }

    /// A child started with `--state-dir DIR` is recognised by it.
    #[test]
    fn a_process_with_the_state_dir_is_recognised() {
        let dir = "/nonexistent/weft-lab-liveness-test";
        // `sh -c CMD ARG0 ARG1...` keeps its arguments in its cmdline (the
        // `; :` stops a shell from exec'ing `sleep` in its place).
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30; :", "--state-dir", dir])
            .spawn()
            .expect("sh runs");
        let seen = (0..100).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            uses_state_dir(child.id(), Path::new(dir))
        });
        let _ = child.kill();
        let _ = child.wait();
        assert!(seen, "the child's --state-dir was not seen");
    }
}
