//! The one error type of the e2e helpers.

use std::fmt;
use std::time::Duration;

use weft_lab::LabError;
use weft_node_agent::kernel::netns::NetNsError;

/// Everything an e2e helper can fail with.
#[derive(thiserror::Error)]
pub enum E2eError {
    /// The lab library failed (bringing a cluster up, an agent call, ...).
    #[error(transparent)]
    Lab(#[from] LabError),
    /// Entering or opening a network namespace failed.
    #[error(transparent)]
    NetNs(#[from] NetNsError),
    /// A socket, file or process operation failed.
    #[error("{what}: {cause}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        cause: std::io::Error,
    },
    /// A bounded wait ran out.
    #[error("{what}: not within {timeout:?} (last: {last})")]
    Timeout {
        /// What was waited for.
        what: String,
        /// The bound.
        timeout: Duration,
        /// The last state seen.
        last: String,
    },
    /// Anything else: a refusal, an unexpected answer, a missing tool.
    #[error("{0}")]
    Failed(String),
}

impl E2eError {
    /// An [`E2eError::Io`] for `what`.
    pub fn io(what: impl Into<String>, cause: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            cause,
        }
    }

    /// An [`E2eError::Failed`].
    pub fn failed(message: impl Into<String>) -> Self {
        Self::Failed(message.into())
    }
}

/// The message itself, so that a test returning `Result<(), E2eError>`
/// fails with it rather than with a struct dump.
impl fmt::Debug for E2eError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The helpers' result type.
pub type Result<T, E = E2eError> = std::result::Result<T, E>;
