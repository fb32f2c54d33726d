//! [`ClusterError`]: why the cluster client cannot start or had to stop. Every
//! message names the file, flag or control-plane answer at fault and, where
//! there is one, what to do. [`ClusterError::is_config`] tells the binary
//! which ones are configuration problems (exit 64).

use std::io;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use weft_client::ClientError;

use crate::wg::KeyError;

/// An error of the cluster client.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The flags and the state dir contradict each other, or something the
    /// first start needs is missing.
    #[error("{0}")]
    Config(String),
    /// The private key file is unusable.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A state file is unreadable or malformed.
    #[error("{path}: {reason}")]
    State {
        /// The file.
        path: PathBuf,
        /// What is wrong, and what to do.
        reason: String,
    },
    /// A file operation failed.
    #[error("{op} {path}: {cause}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The IO error.
        cause: io::Error,
    },
    /// Connecting to the control plane failed for good (a CA pin mismatch,
    /// a rejected certificate, a bad credential file).
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The control plane refused to let this node join.
    #[error("joining as {name}: the control plane refused ({code:?}): {message}")]
    JoinRefused {
        /// The node name.
        name: String,
        /// The gRPC code.
        code: tonic::Code,
        /// The control plane's message.
        message: String,
    },
    /// A first join found no control plane to answer within the time
    /// allowed (`--join-timeout`).
    #[error(
        "no control plane answered at {control_plane} within {}s ({attempts} join attempt(s); the last: {last}); \
         check --control-plane, that the control plane runs and that this node reaches it \
         (--join-timeout allows more time)",
        waited.as_secs()
    )]
    JoinTimedOut {
        /// The control-plane address tried.
        control_plane: String,
        /// How long the agent tried.
        waited: std::time::Duration,
        /// How many attempts it made.
        attempts: u32,
        /// Why the last attempt failed.
        last: String,
    },
    /// The control plane answered with something unusable.
    #[error("the control plane's answer is unusable: {0}")]
    Protocol(String),
    /// After a re-join the node has a different pod CIDR: pods and the host
    /// port still hold addresses of the old one, so the agent must restart.
    #[error(
        "this node re-joined the cluster with pod CIDR {new} instead of {old}; \
         node.json is updated: restart the agent (and re-create its pods) to use the new CIDR"
    )]
    PodCidrChanged {
        /// The CIDR the node had.
        old: IpNet,
        /// The CIDR it has now.
        new: IpNet,
    },
}

impl ClusterError {
    /// An IO error on `path`.
    pub fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.to_path_buf(),
            cause: source,
        }
    }

    /// Whether this is a configuration problem an operator must fix (the
    /// binary exits 64 for these).
    pub fn is_config(&self) -> bool {
        match self {
            Self::Config(_) | Self::State { .. } => true,
            Self::Key(KeyError::Permissions { .. } | KeyError::Malformed { .. }) => true,
            Self::Client(
                ClientError::BadServerAddress { .. }
                | ClientError::BadCaHash { .. }
                | ClientError::BadToken(_)
                | ClientError::CaPinMismatch { .. }
                | ClientError::InvalidCredentials { .. }
                | ClientError::ParseCredentials { .. },
            ) => true,
            Self::JoinRefused { code, .. } => matches!(
                code,
                tonic::Code::Unauthenticated
                    | tonic::Code::InvalidArgument
                    | tonic::Code::AlreadyExists
                    | tonic::Code::PermissionDenied
            ),
            _ => false,
        }
    }
}
