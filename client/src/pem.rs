//! PEM in and out: certificates and private keys as rustls types, and DER
//! certificates back to PEM text. Every function reports what it was parsing.

use base64::Engine as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::ClientError;

/// All certificates in `pem`; at least one, or an error naming `what`.
pub(crate) fn certs(
    what: &'static str,
    pem: &str,
) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ClientError::BadPem {
            what,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(ClientError::BadPem {
            what,
            reason: "no \"BEGIN CERTIFICATE\" block found".to_string(),
        });
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in `pem`.
pub(crate) fn private_key(
    what: &'static str,
    pem: &str,
) -> Result<PrivateKeyDer<'static>, ClientError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| ClientError::BadPem {
        what,
        reason: match e {
            rustls_pki_types::pem::Error::NoItemsFound => {
                "no \"BEGIN PRIVATE KEY\" block found".to_string()
            }
            other => other.to_string(),
        },
    })
}

/// A DER certificate as PEM text (64-column base64, trailing newline).
pub(crate) fn cert_to_pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 60);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cert_pem_round_trips() {
        let der: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let pem = cert_to_pem(&der);
        assert!(pem.lines().all(|l| l.len() <= 64));
        let back = certs("test", &pem).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].as_ref(), der.as_slice());
    }

    #[test]
    fn missing_blocks_are_named() {
        let err = certs("CA certificate", "hello").unwrap_err().to_string();
        assert!(
            err.contains("CA certificate") && err.contains("BEGIN CERTIFICATE"),
            "{err}"
        );
        let err = private_key("client key", "hello").unwrap_err().to_string();
        assert!(
            err.contains("client key") && err.contains("PRIVATE KEY"),
            "{err}"
        );
    }
}
