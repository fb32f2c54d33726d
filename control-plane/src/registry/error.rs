//! The registry's errors. Their gRPC codes are mapped in [`crate::status`].

use crate::store::StoreError;

/// Why the registry refused or failed a request. Each variant maps to one
/// gRPC code in [`crate::status`]; messages are for a person.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Bad input from the caller (INVALID_ARGUMENT).
    #[error("{0}")]
    Invalid(String),
    /// A join token or credential that does not authenticate (UNAUTHENTICATED).
    #[error("{0}")]
    Unauthenticated(String),
    /// An authenticated caller acting on what is not theirs (PERMISSION_DENIED).
    #[error("{0}")]
    PermissionDenied(String),
    /// The name is held by someone else (ALREADY_EXISTS).
    #[error("{0}")]
    AlreadyExists(String),
    /// The request is valid but the cluster's state forbids it
    /// (FAILED_PRECONDITION): deleting a pod or a system namespace, a label
    /// that exists without overwrite.
    #[error("{0}")]
    FailedPrecondition(String),
    /// No such node or token (NOT_FOUND).
    #[error("{0}")]
    NotFound(String),
    /// No free pod CIDR (RESOURCE_EXHAUSTED).
    #[error("{0}")]
    Exhausted(String),
    /// Lost a race with concurrent changes too often; retry (ABORTED).
    #[error("{0}")]
    Conflict(String),
    /// The store failed (UNAVAILABLE).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Stored data could not be read back (INTERNAL).
    #[error("{0}")]
    Corrupt(String),
}

impl From<crate::model::InvalidInput> for RegistryError {
    fn from(e: crate::model::InvalidInput) -> Self {
        RegistryError::Invalid(e.0)
    }
}
