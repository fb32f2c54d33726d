//! The registry's errors, and their one mapping to gRPC status codes.

use crate::store::StoreError;

/// Why the registry refused or failed a request. Each variant maps to one
/// gRPC code in [`RegistryError::into_status`]; messages are for a person.
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
    #[error("{0}")]
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

impl RegistryError {
    /// The gRPC status for this error.
    pub fn into_status(self) -> tonic::Status {
        use tonic::Status;
        let msg = self.to_string();
        match self {
            RegistryError::Invalid(_) => Status::invalid_argument(msg),
            RegistryError::Unauthenticated(_) => Status::unauthenticated(msg),
            RegistryError::PermissionDenied(_) => Status::permission_denied(msg),
            RegistryError::AlreadyExists(_) => Status::already_exists(msg),
            RegistryError::NotFound(_) => Status::not_found(msg),
            RegistryError::Exhausted(_) => Status::resource_exhausted(msg),
            RegistryError::Conflict(_) => Status::aborted(msg),
            RegistryError::Store(StoreError::Compacted { .. }) => Status::out_of_range(msg),
            RegistryError::Store(_) => Status::unavailable(msg),
            RegistryError::Corrupt(_) => Status::internal(msg),
        }
    }
}

impl From<RegistryError> for tonic::Status {
    fn from(e: RegistryError) -> Self {
        e.into_status()
    }
}
