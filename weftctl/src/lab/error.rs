//! The one error type of the lab layer.

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
    #[error("cannot start `{command}`: {source}")]
    Spawn {
        /// The full command line.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// A filesystem or socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// Why it failed.
        source: std::io::Error,
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
    /// Teardown removed what it could but some things remain.
    #[error("teardown of lab '{name}' left things behind: {}", problems.join("; "))]
    TeardownIncomplete {
        /// The lab name.
        name: String,
        /// What could not be removed, and why.
        problems: Vec<String>,
        /// What was removed.
        report: Box<crate::lab::TeardownReport>,
    },
}

impl LabError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        LabError::Io {
            context: context.into(),
            source,
        }
    }
}
