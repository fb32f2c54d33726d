//! The one error type of the lab layer.
//!
//! Every message includes its cause, so no variant also returns it from
//! `source()` (anyhow's `{:#}` would print it twice).

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while building, using or removing a lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The lab name breaks the naming rules.
    #[error("invalid lab name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// A lab spec or an argument is out of range.
    #[error("{0}")]
    InvalidArgument(String),
    /// The lab (its state directory or one of its namespaces) already exists.
    #[error(
        "lab '{name}' is already up (found {found}); run `weftctl lab down --name {name}` first"
    )]
    AlreadyUp {
        /// The lab name.
        name: String,
        /// What was found, e.g. "namespace weft-x-n1".
        found: String,
    },
    /// The lab has no state file: it is not up (or it crashed).
    #[error("lab '{name}' is not up (no {path}); run `weftctl lab up --name {name}`")]
    NotUp {
        /// The lab name.
        name: String,
        /// The state file that is missing.
        path: PathBuf,
    },
    /// A namespace that is not one of this lab's.
    #[error("namespace {ns:?} is not part of lab '{lab}'")]
    UnknownNamespace {
        /// The namespace asked for.
        ns: String,
        /// The lab name.
        lab: String,
    },
    /// An external command ran and exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The full command line.
        command: String,
        /// Its exit status, e.g. "exit status: 2".
        status: String,
        /// What it wrote to stderr, trimmed.
        stderr: String,
    },
    /// An external command did not finish in time and was killed.
    #[error("`{command}` did not finish within {timeout:?}; killed it")]
    CommandTimeout {
        /// The full command line.
        command: String,
        /// The bound it exceeded.
        timeout: Duration,
    },
    /// An external command could not be started.
    #[error("cannot start `{command}`: {cause}")]
    Spawn {
        /// The full command line.
        command: String,
        /// Why.
        cause: std::io::Error,
    },
    /// A filesystem or socket operation failed.
    #[error("{context}: {cause}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// Why it failed.
        cause: std::io::Error,
    },
    /// The state file exists but cannot be used.
    #[error("lab state {path}: {reason}")]
    State {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A supervised process exited while it was expected to run.
    #[error("process '{label}' (pid {pid}) exited ({status}) before it was ready; log {log}:\n{log_tail}")]
    ProcessExited {
        /// The process label.
        label: String,
        /// Its pid.
        pid: u32,
        /// How it exited.
        status: String,
        /// Its log file.
        log: PathBuf,
        /// The last lines of its log.
        log_tail: String,
    },
    /// A supervised process did not become ready in time.
    #[error("process '{label}' (pid {pid}) not ready after {timeout:?}; log {log}:\n{log_tail}")]
    NotReady {
        /// The process label.
        label: String,
        /// Its pid.
        pid: u32,
        /// The bound it exceeded.
        timeout: Duration,
        /// Its log file.
        log: PathBuf,
        /// The last lines of its log.
        log_tail: String,
    },
    /// A process did not die, even after SIGKILL.
    #[error("{what} (pid {pid}) is still alive after SIGTERM and SIGKILL")]
    Survived {
        /// Which process.
        what: String,
        /// Its pid.
        pid: u32,
    },
    /// `up` failed, and removing what it had made failed too.
    #[error("{cause}; cleaning up also failed: {cleanup}; run `weftctl lab down --name {name}`")]
    UpFailed {
        /// The lab name.
        name: String,
        /// Why `up` failed.
        cause: Box<LabError>,
        /// Why the cleanup failed.
        cleanup: Box<LabError>,
    },
    /// A program the lab runs is missing.
    #[error(
        "{path} not found (the lab looks next to the running executable); build it with `{build}`"
    )]
    MissingBinary {
        /// Where it was looked for.
        path: PathBuf,
        /// The cargo command that builds it there.
        build: String,
    },
    /// A step of bringing up or changing a cluster failed.
    #[error("{step}: {cause}")]
    Step {
        /// The step, e.g. "starting agent n2".
        step: String,
        /// Why.
        cause: Box<LabError>,
    },
    /// A condition a cluster step waits for did not come true in time.
    #[error("not within {timeout:?}: {last}; log {log}:\n{log_tail}")]
    WaitTimeout {
        /// The bound it exceeded.
        timeout: Duration,
        /// What was seen last (e.g. "n1 has peers \[n2\] but not \[n3\]").
        last: String,
        /// The log of the process concerned.
        log: PathBuf,
        /// The last lines of that log.
        log_tail: String,
    },
    /// A call to a lab process's API failed.
    #[error("{what}: {reason}")]
    Api {
        /// The call, e.g. "pod_add n1-p1 on n1".
        what: String,
        /// Why it failed.
        reason: String,
    },
    /// A lab process refused or failed a request.
    #[error("{what}: {reason}; log {log}:\n{log_tail}")]
    Refused {
        /// The request, e.g. "pod_add n1-p1 on n1".
        what: String,
        /// Why it failed.
        reason: String,
        /// The log of the process concerned.
        log: PathBuf,
        /// The last lines of that log.
        log_tail: String,
    },
    /// Teardown removed what it could but some things remain.
    #[error("teardown of lab '{name}' left things behind: {}", problems.join("; "))]
    TeardownIncomplete {
        /// The lab name.
        name: String,
        /// What could not be removed, and why.
        problems: Vec<String>,
        /// What was removed.
        report: Box<crate::TeardownReport>,
    },
}

impl LabError {
    /// Wraps `self` as the cause of `step`.
    pub fn in_step(self, step: impl Into<String>) -> Self {
        LabError::Step {
            step: step.into(),
            cause: Box::new(self),
        }
    }

    pub(crate) fn io(context: impl Into<String>, cause: std::io::Error) -> Self {
        LabError::Io {
            context: context.into(),
            cause,
        }
    }
}
