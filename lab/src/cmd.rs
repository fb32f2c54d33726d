//! Running external commands (`ip`, and anything inside a namespace) with a
//! time bound and errors that name the command line and its stderr.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::LabError;

/// The time bound of every `ip` command the lab runs.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `program args...` inside the named network namespace `ns` (through
/// `ip netns exec`) and returns its output, whatever its exit status.
///
/// Errors only when it cannot be started or does not finish within
/// `timeout`; then it and everything it started are killed.
pub fn exec_in(
    ns: &str,
    program: &str,
    args: &[&str],
    timeout: Duration,
) -> Result<Output, LabError> {
    check_ns_name(ns)?;
    let mut full = vec!["netns", "exec", ns, program];
    full.extend_from_slice(args);
    run("ip", &full, timeout)
}

/// The names of all named network namespaces (`ip netns list`).
pub fn list_namespaces() -> Result<Vec<String>, LabError> {
    let out = ip(&["netns", "list"])?;
    Ok(out
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect())
}

/// The pids of the processes inside the named namespace `ns` (`ip netns pids`).
pub fn namespace_pids(ns: &str) -> Result<Vec<u32>, LabError> {
    check_ns_name(ns)?;
    let out = ip(&["netns", "pids", ns])?;
    Ok(out
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

/// Refuses namespace names `ip` would read as a path or an option.
pub(crate) fn check_ns_name(ns: &str) -> Result<(), LabError> {
    if ns.is_empty() || ns.contains('/') || ns.starts_with('-') || ns == "." || ns == ".." {
        return Err(LabError::InvalidArgument(format!(
            "invalid namespace name {ns:?}"
        )));
    }
    Ok(())
}

/// Runs `ip args...` with [`DEFAULT_COMMAND_TIMEOUT`]; non-zero exit is an
/// error. Returns stdout.
pub(crate) fn ip(args: &[&str]) -> Result<String, LabError> {
    let out = run("ip", args, DEFAULT_COMMAND_TIMEOUT)?;
    if !out.status.success() {
        return Err(LabError::Command {
            command: command_line("ip", args),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `program args...` as one line, for messages.
pub(crate) fn command_line(program: &str, args: &[&str]) -> String {
    std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `program args...` in its own process group, collecting its output,
/// killing the whole group if it takes longer than `timeout`.
pub(crate) fn run(program: &str, args: &[&str], timeout: Duration) -> Result<Output, LabError> {
    let command = command_line(program, args);
    let deadline = Instant::now() + timeout;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|cause| LabError::Spawn {
            command: command.clone(),
            cause,
        })?;
    let stdout = collect(child.stdout.take());
    let stderr = collect(child.stderr.take());
    let timed_out = || LabError::CommandTimeout {
        command: command.clone(),
        timeout,
    };

    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                kill_group(&mut child);
                return Err(timed_out());
            }
            Ok(None) => thread::sleep(Duration::from_millis(5)),
            Err(e) => {
                kill_group(&mut child);
                return Err(LabError::io(format!("waiting for `{command}`"), e));
            }
        }
    };
    // A background process it left behind may hold the pipes open: bounded
    // too, and killed with the rest of the group (whose id cannot be reused
    // while any member lives).
    let pgid = i32::try_from(child.id()).ok().map(Pid::from_raw);
    let drain = |rx: mpsc::Receiver<Vec<u8>>| {
        rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .map_err(|_| {
                if let Some(pgid) = pgid {
                    let _ = killpg(pgid, Signal::SIGKILL);
                }
                timed_out()
            })
    };
    let stdout = drain(stdout)?;
    let stderr = drain(stderr)?;
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Reads a pipe to its end on a thread; the bytes arrive on the channel.
fn collect(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            // A read error just ends the output early.
            let _ = pipe.read_to_end(&mut buf);
        }
        let _ = tx.send(buf);
    });
    rx
}

/// Kills the child's process group (it leads one) and reaps the child.
fn kill_group(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}
