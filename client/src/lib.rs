//! Connecting to the weft control plane.
//!
//! Contract:
//! - Every connection is TLS. Clients verify the server certificate for the
//!   DNS name [`SERVER_NAME`], never for the address they dialled, so a
//!   control plane that changes its IP keeps a valid certificate.
//! - [`connect`] speaks mutual TLS with a stored [`Credentials`] file
//!   (`admin.conf`, or a node agent's credential).
//! - [`connect_pinned`] is for `Join`: the client has no CA file yet, only the
//!   CA hash from the join command ([`ca_cert_hash`]); it accepts the server
//!   only if the presented chain holds a CA with that hash and the leaf
//!   verifies against it, and hands back the CA PEM to store.
//! - Failures come back as [`ClientError`] with the precise cause (a CA pin
//!   mismatch, a rejected server certificate, an unreadable file), not as a
//!   generic transport error.
//!
//! Join tokens ([`JoinToken`]) and CSRs for node credentials ([`generate_csr`])
//! live here too, so the agent, `weftctl` and the control plane agree on them.

#![forbid(unsafe_code)]

mod connect;
mod credentials;
mod csr;
mod error;
mod pem;
mod pin;
mod token;

pub use connect::{connect, connect_lazy, connect_pinned, Servers};
pub use credentials::Credentials;
pub use csr::generate_csr;
pub use error::ClientError;
pub use pin::{ca_cert_hash, ca_pem_hash, parse_ca_hash};
pub use token::{JoinToken, TokenError};

/// The DNS name every control-plane serving certificate carries, and the only
/// name clients verify it for.
pub const SERVER_NAME: &str = "weft-control-plane";
