//! The one mapping from the control plane's domain errors to gRPC statuses.
//!
//! Contract: nothing else in the crate builds a `tonic::Status`. Services,
//! auth and the transport return domain errors ([`RegistryError`],
//! [`AuthError`], [`WatchError`], [`TooLarge`]); `?` turns them into a
//! status here, each variant into exactly one code (the table in
//! `docs/api.md`). Messages are the errors' own `Display`, which quote
//! callers' input only through [`crate::untrusted`], so a status is never
//! larger than a few hundred bytes.

use tonic::Status;

use crate::auth::AuthError;
use crate::registry::RegistryError;
use crate::service::WatchError;
use crate::store::StoreError;
use crate::transport::TooLarge;

impl From<RegistryError> for Status {
    fn from(e: RegistryError) -> Self {
        let msg = e.to_string();
        match e {
            RegistryError::Invalid(_) => Status::invalid_argument(msg),
            RegistryError::Unauthenticated(_) => Status::unauthenticated(msg),
            RegistryError::PermissionDenied(_) => Status::permission_denied(msg),
            RegistryError::AlreadyExists(_) => Status::already_exists(msg),
            RegistryError::NotFound(_) => Status::not_found(msg),
            RegistryError::FailedPrecondition(_) => Status::failed_precondition(msg),
            RegistryError::Exhausted(_) => Status::resource_exhausted(msg),
            RegistryError::Conflict(_) => Status::aborted(msg),
            RegistryError::Store(StoreError::Compacted { .. }) => Status::out_of_range(msg),
            RegistryError::Store(_) => Status::unavailable(msg),
            RegistryError::Corrupt(_) => Status::internal(msg),
        }
    }
}

impl From<AuthError> for Status {
    fn from(e: AuthError) -> Self {
        let msg = e.to_string();
        match e {
            AuthError::Unauthenticated(_) => Status::unauthenticated(msg),
            AuthError::PermissionDenied(_) => Status::permission_denied(msg),
        }
    }
}

impl From<WatchError> for Status {
    fn from(e: WatchError) -> Self {
        let msg = e.to_string();
        match e {
            WatchError::AheadOfHead { .. } => Status::out_of_range(msg),
            WatchError::Lagged { .. } => Status::aborted(msg),
            WatchError::ShuttingDown | WatchError::Closed { .. } | WatchError::NotReady => {
                Status::unavailable(msg)
            }
            WatchError::Registry(e) => e.into(),
        }
    }
}

impl From<TooLarge> for Status {
    fn from(e: TooLarge) -> Self {
        Status::resource_exhausted(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn each_error_has_its_code() {
        let cases: Vec<(Status, Code)> = vec![
            (
                RegistryError::Invalid("x".into()).into(),
                Code::InvalidArgument,
            ),
            (
                RegistryError::Exhausted("x".into()).into(),
                Code::ResourceExhausted,
            ),
            (RegistryError::Conflict("x".into()).into(), Code::Aborted),
            (
                RegistryError::Store(StoreError::Compacted {
                    requested: 1,
                    oldest: 5,
                })
                .into(),
                Code::OutOfRange,
            ),
            (
                RegistryError::Store(StoreError::Backend("x".into())).into(),
                Code::Unavailable,
            ),
            (
                AuthError::Unauthenticated("x".into()).into(),
                Code::Unauthenticated,
            ),
            (
                AuthError::PermissionDenied("x".into()).into(),
                Code::PermissionDenied,
            ),
            (
                WatchError::AheadOfHead { resume: 9, head: 3 }.into(),
                Code::OutOfRange,
            ),
            (WatchError::Lagged { last: 3 }.into(), Code::Aborted),
            (WatchError::ShuttingDown.into(), Code::Unavailable),
            (
                WatchError::Registry(RegistryError::Store(StoreError::Compacted {
                    requested: 1,
                    oldest: 5,
                }))
                .into(),
                Code::OutOfRange,
            ),
            (
                TooLarge { len: 5, limit: 4 }.into(),
                Code::ResourceExhausted,
            ),
        ];
        for (status, code) in cases {
            assert_eq!(status.code(), code, "{status:?}");
        }
    }
}
