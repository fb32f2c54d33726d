//! [`ClientError`]: everything that can go wrong while loading credentials or
//! connecting to the control plane. Messages name the file, server or value
//! at fault so a person can act on them.
//!
//! Each message is whole: it includes its cause, so no variant also
//! returns that cause from `source()` (anyhow's `{:#}` would print it a
//! second time).

use std::io;
use std::path::PathBuf;

use crate::token::TokenError;

/// An error of the weft client library.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server address is not a usable `host:port`.
    #[error("bad control-plane address {server:?}: {reason}")]
    BadServerAddress {
        /// The address as given.
        server: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The join token is malformed.
    #[error("bad join token: {0}")]
    BadToken(TokenError),
    /// The CA hash is not of the form `sha256:<64 hex digits>`.
    #[error("bad CA hash {input:?}: {reason}")]
    BadCaHash {
        /// The hash as given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// PEM text did not hold the certificate or key expected.
    #[error("bad {what}: {reason}")]
    BadPem {
        /// Which PEM this was ("CA certificate", "client key", ...).
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A DER certificate could not be parsed.
    #[error("unparseable certificate: {0}")]
    BadCertificate(String),
    /// A credentials file could not be read.
    #[error("reading credentials {path}: {cause}")]
    ReadCredentials {
        /// The file.
        path: PathBuf,
        /// The IO error.
        cause: io::Error,
    },
    /// A credentials file is not JSON of the expected shape.
    #[error("parsing credentials {path}: {cause}")]
    ParseCredentials {
        /// The file.
        path: PathBuf,
        /// The JSON error, with line and column.
        cause: serde_json::Error,
    },
    /// A credentials file parsed, but one of its fields is unusable.
    #[error("credentials {path}: {reason}")]
    InvalidCredentials {
        /// The file.
        path: PathBuf,
        /// Which field is wrong, and how.
        reason: String,
    },
    /// A credentials file could not be written.
    #[error("writing credentials {path}: {cause}")]
    WriteCredentials {
        /// The file (or its temporary sibling).
        path: PathBuf,
        /// The IO error.
        cause: io::Error,
    },
    /// Generating a key pair or certificate signing request failed.
    #[error("generating the key and CSR: {0}")]
    Csr(rcgen::Error),
    /// The TLS client configuration could not be built.
    #[error("building the TLS configuration: {0}")]
    TlsConfig(String),
    /// No TCP connection to the server could be opened.
    #[error("connecting to {server}: {cause}")]
    Tcp {
        /// The control-plane address.
        server: String,
        /// The IO error.
        cause: io::Error,
    },
    /// The server presented no CA certificate with the pinned hash.
    #[error(
        "the server's CA does not match the pinned CA hash: expected {expected}, the server presented {}; \
         check the --ca-hash from `weftctl token create`, or someone is intercepting the connection",
        if presented.is_empty() { "no CA certificate".to_string() } else { presented.join(", ") }
    )]
    CaPinMismatch {
        /// The pinned hash.
        expected: String,
        /// The hashes of the CA certificates the server presented.
        presented: Vec<String>,
    },
    /// The server's certificate did not verify against the cluster CA for
    /// [`crate::SERVER_NAME`].
    #[error(
        "the certificate presented by {} was rejected: {reason}",
        reached_text(server, reached)
    )]
    ServerCertRejected {
        /// The control-plane address.
        server: String,
        /// The address the connection reached (`server` resolved), which
        /// may not be the control plane at all.
        reached: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The TLS handshake failed for a reason other than the server certificate.
    #[error("TLS handshake with {server} failed: {reason}")]
    Handshake {
        /// The control-plane address.
        server: String,
        /// The TLS error.
        reason: String,
    },
    /// The gRPC channel could not be established (timeout, HTTP/2 failure).
    #[error("connecting to {server}: {reason}")]
    Connect {
        /// The control-plane address.
        server: String,
        /// The transport error with its causes, on one line.
        reason: String,
        /// The transport error (its text and causes are in `reason`).
        error: tonic::transport::Error,
    },
}

/// "192.0.2.1:7443", or "192.0.2.1:7443 (cp.example:7443)" when the
/// address reached is not the one given.
fn reached_text(server: &str, reached: &str) -> String {
    if server == reached {
        server.to_string()
    } else {
        format!("{reached} ({server})")
    }
}

impl From<TokenError> for ClientError {
    fn from(e: TokenError) -> Self {
        Self::BadToken(e)
    }
}

impl From<rcgen::Error> for ClientError {
    fn from(e: rcgen::Error) -> Self {
        Self::Csr(e)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn errors_cross_threads() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<super::ClientError>();
    }
}
