//! [`ClientError`]: everything that can go wrong while loading credentials or
//! connecting to the control plane. Messages name the file, server or value
//! at fault so a person can act on them.

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
    BadToken(#[from] TokenError),
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
    #[error("reading credentials {path}: {source}")]
    ReadCredentials {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: io::Error,
    },
    /// A credentials file is not JSON of the expected shape.
    #[error("parsing credentials {path}: {source}")]
    ParseCredentials {
        /// The file.
        path: PathBuf,
        /// The JSON error, with line and column.
        source: serde_json::Error,
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
    #[error("writing credentials {path}: {source}")]
    WriteCredentials {
        /// The file (or its temporary sibling).
        path: PathBuf,
        /// The IO error.
        source: io::Error,
    },
    /// Generating a key pair or certificate signing request failed.
    #[error("generating the key and CSR: {0}")]
    Csr(#[from] rcgen::Error),
    /// The TLS client configuration could not be built.
    #[error("building the TLS configuration: {0}")]
    TlsConfig(String),
    /// No TCP connection to the server could be opened.
    #[error("connecting to {server}: {source}")]
    Tcp {
        /// The control-plane address.
        server: String,
        /// The IO error.
        source: io::Error,
    },
    /// The server presented no CA certificate with the pinned hash.
    #[error(
        "the server's CA does not match the pinned CA hash: expected {expected}, the server presented {}; \
         check the --ca-cert-hash from `weftctl token create`, or someone is intercepting the connection",
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
    #[error("the certificate of {server} was rejected: {reason}")]
    ServerCertRejected {
        /// The control-plane address.
        server: String,
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
        /// The transport error.
        #[source]
        source: tonic::transport::Error,
    },
}

#[cfg(test)]
mod tests {
    #[test]
    fn errors_cross_threads() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<super::ClientError>();
    }
}
