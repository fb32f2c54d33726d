//! Who is calling: the caller's identity from its TLS client certificate.
//!
//! Contract: tonic's TLS layer has already verified any presented chain
//! against the cluster CA (see [`crate::pki::Pki::server_tls_config`]), so
//! here we only read the leaf's subject, as [`crate::pki`] wrote it:
//! `O=weft:admins` is [`Identity::Admin`], `O=weft:nodes, CN=<name>` is
//! [`Identity::Node`]. No certificate, an unparseable one, or any other
//! subject is [`Identity::Anonymous`]. This relies on the server being run
//! with tonic's own TLS (`Server::builder().tls_config(..)`), which is what
//! puts the peer certificates into each request.
//!
//! [`require_admin`], [`require_node`], [`require_self`] and
//! [`require_reader`] turn the identity into an [`AuthError`], which
//! [`crate::status`] maps to the `UNAUTHENTICATED` / `PERMISSION_DENIED`
//! statuses the API documents.

use std::fmt;

use tonic::Request;
use x509_parser::certificate::X509Certificate;

use crate::pki::{ADMINS_ORG, NODES_ORG};

/// Why a caller may not make a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No (recognized) credential where one is needed (UNAUTHENTICATED).
    #[error("{0}")]
    Unauthenticated(String),
    /// A credential that may not make this call (PERMISSION_DENIED).
    #[error("{0}")]
    PermissionDenied(String),
}

/// The authenticated caller of an RPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// The holder of an admin credential (admin.conf).
    Admin,
    /// A node, by name, holding the credential `Join` issued it.
    Node(String),
    /// No (recognized) client certificate.
    Anonymous,
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Admin => f.write_str("admin"),
            Identity::Node(name) => write!(f, "node {name}"),
            Identity::Anonymous => f.write_str("anonymous"),
        }
    }
}

/// The identity of the caller of `req`.
pub fn identity<T>(req: &Request<T>) -> Identity {
    match req.peer_certs() {
        Some(certs) => certs
            .first()
            .map_or(Identity::Anonymous, |leaf| identity_of_cert(leaf)),
        None => Identity::Anonymous,
    }
}

/// The identity a (CA-verified) DER leaf certificate stands for.
pub fn identity_of_cert(der: &[u8]) -> Identity {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Identity::Anonymous;
    };
    let (Some(org), Some(cn)) = (single(&cert, Attr::Org), single(&cert, Attr::Cn)) else {
        return Identity::Anonymous;
    };
    match org {
        ADMINS_ORG => Identity::Admin,
        NODES_ORG if !cn.is_empty() => Identity::Node(cn.to_string()),
        _ => Identity::Anonymous,
    }
}

enum Attr {
    Org,
    Cn,
}

/// The subject attribute's value if there is exactly one of it.
fn single<'a>(cert: &'a X509Certificate<'_>, attr: Attr) -> Option<&'a str> {
    let subject = cert.subject();
    let mut values: Vec<_> = match attr {
        Attr::Org => subject.iter_organization().collect(),
        Attr::Cn => subject.iter_common_name().collect(),
    };
    if values.len() != 1 {
        return None;
    }
    values.pop()?.as_str().ok()
}

/// Allows only the admin credential.
pub fn require_admin<T>(req: &Request<T>) -> Result<(), AuthError> {
    match identity(req) {
        Identity::Admin => Ok(()),
        Identity::Node(name) => Err(AuthError::PermissionDenied(format!(
            "node credentials cannot call Admin; use admin.conf (the caller is node {name})"
        ))),
        Identity::Anonymous => Err(AuthError::Unauthenticated(
            "this call needs the admin credential (admin.conf); none was presented".into(),
        )),
    }
}

/// Allows only a node credential; returns the node's name.
pub fn require_node<T>(req: &Request<T>) -> Result<String, AuthError> {
    match identity(req) {
        Identity::Node(name) => Ok(name),
        Identity::Admin => Err(AuthError::PermissionDenied(
            "the admin credential cannot make node calls; they need the node credential that Join returned".into(),
        )),
        Identity::Anonymous => Err(AuthError::Unauthenticated(
            "this call needs the node credential that Join returned; none was presented (join the cluster first)".into(),
        )),
    }
}

/// Allows only the node named `name` (a node changes only its own record);
/// returns the name.
pub fn require_self<T>(req: &Request<T>, name: &str) -> Result<String, AuthError> {
    let caller = require_node(req)?;
    if caller != name {
        return Err(AuthError::PermissionDenied(format!(
            "node {caller} may only change its own record, not {}",
            crate::untrusted::untrusted(name)
        )));
    }
    Ok(caller)
}

/// Allows any node credential or the admin credential (reading the
/// cluster, e.g. `Watch`).
pub fn require_reader<T>(req: &Request<T>) -> Result<(), AuthError> {
    match identity(req) {
        Identity::Admin | Identity::Node(_) => Ok(()),
        Identity::Anonymous => Err(AuthError::Unauthenticated(
            "Watch needs a node credential (from Join) or the admin credential; none was presented"
                .into(),
        )),
    }
}
