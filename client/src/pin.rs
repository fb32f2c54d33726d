//! CA pinning: the `sha256:<hex>` hash of a CA certificate's
//! SubjectPublicKeyInfo (kubeadm's `discovery-token-ca-cert-hash` scheme), and
//! the rustls server verifier that accepts a server only if its chain holds
//! the pinned CA and the leaf verifies against that CA.
//!
//! Hashing the public key rather than the whole certificate means a CA
//! re-issued with the same key keeps its pin.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};

use crate::ClientError;

const PREFIX: &str = "sha256:";

/// `sha256:<64 lowercase hex>` of the SubjectPublicKeyInfo of a DER certificate.
pub fn ca_cert_hash(ca_cert_der: &[u8]) -> Result<String, ClientError> {
    let (_, cert) = x509_parser::parse_x509_certificate(ca_cert_der)
        .map_err(|e| ClientError::BadCertificate(e.to_string()))?;
    let spki = cert.tbs_certificate.subject_pki.raw;
    Ok(format!("{PREFIX}{}", hex::encode(Sha256::digest(spki))))
}

/// [`ca_cert_hash`] of the first certificate in PEM text.
pub fn ca_pem_hash(ca_pem: &str) -> Result<String, ClientError> {
    let certs = crate::pem::certs("CA certificate", ca_pem)?;
    ca_cert_hash(&certs[0])
}

/// Checks that `input` is `sha256:<64 hex digits>` and returns it normalized
/// (hex in lowercase).
pub fn parse_ca_hash(input: &str) -> Result<String, ClientError> {
    let bad = |reason: String| ClientError::BadCaHash {
        input: input.to_string(),
        reason: format!("{reason}; expected sha256:<64 hex digits>"),
    };
    let Some((algo, digest)) = input.split_once(':') else {
        return Err(bad("no \"sha256:\" prefix".to_string()));
    };
    if !algo.eq_ignore_ascii_case("sha256") {
        return Err(bad(format!("unsupported hash algorithm {algo:?}")));
    }
    if let Some((pos, ch)) = digest.char_indices().find(|(_, c)| !c.is_ascii_hexdigit()) {
        return Err(bad(format!(
            "{ch:?} at position {} is not a hex digit",
            PREFIX.len() + pos
        )));
    }
    if digest.len() != 64 {
        return Err(bad(format!("{} hex digits instead of 64", digest.len())));
    }
    Ok(format!("{PREFIX}{}", digest.to_ascii_lowercase()))
}

/// What the pinned verifier saw during the last handshake.
#[derive(Debug, Default)]
pub(crate) struct PinOutcome {
    /// The CA certificate that matched the pin, once a server verified.
    pub(crate) ca: Option<CertificateDer<'static>>,
    /// Why the last handshake was refused by the pin check.
    pub(crate) mismatch: Option<ClientError>,
}

/// A [`ServerCertVerifier`] that trusts only the CA with the pinned hash, and
/// only if the server itself sends it.
#[derive(Debug)]
pub(crate) struct PinnedVerifier {
    expected: String,
    provider: Arc<CryptoProvider>,
    outcome: Arc<Mutex<PinOutcome>>,
}

impl PinnedVerifier {
    /// `expected` must already be normalized by [`parse_ca_hash`].
    pub(crate) fn new(
        expected: String,
        provider: Arc<CryptoProvider>,
        outcome: Arc<Mutex<PinOutcome>>,
    ) -> Self {
        Self {
            expected,
            provider,
            outcome,
        }
    }

    fn record_mismatch(&self, presented: Vec<String>) -> rustls::Error {
        tracing::warn!(expected = %self.expected, presented = ?presented, "server CA does not match the pin");
        let mut outcome = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
        outcome.mismatch = Some(ClientError::CaPinMismatch {
            expected: self.expected.clone(),
            presented,
        });
        rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut presented = Vec::new();
        let mut pinned = None;
        for cert in intermediates {
            let Ok(hash) = ca_cert_hash(cert) else {
                continue;
            };
            if hash == self.expected {
                pinned = Some(cert.clone().into_owned());
            }
            presented.push(hash);
        }
        let Some(ca) = pinned else {
            return Err(self.record_mismatch(presented));
        };

        let mut roots = RootCertStore::empty();
        roots.add(ca.clone())?;
        let webpki =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        let verified = webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        self.outcome.lock().unwrap_or_else(|e| e.into_inner()).ca = Some(ca);
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn reason(input: &str) -> String {
        match parse_ca_hash(input) {
            Err(ClientError::BadCaHash { reason, .. }) => reason,
            other => panic!("{input:?}: expected BadCaHash, got {other:?}"),
        }
    }

    #[test]
    fn accepts_and_normalizes() {
        assert_eq!(
            parse_ca_hash(&format!("sha256:{HEX}")).unwrap(),
            format!("sha256:{HEX}")
        );
        assert_eq!(
            parse_ca_hash(&format!("SHA256:{}", HEX.to_uppercase())).unwrap(),
            format!("sha256:{HEX}")
        );
    }

    #[test]
    fn rejects_each_malformation_precisely() {
        assert!(reason(HEX).contains("no \"sha256:\" prefix"));
        assert!(reason(&format!("md5:{HEX}")).contains("unsupported hash algorithm \"md5\""));
        assert!(reason("sha256:abc").contains("3 hex digits instead of 64"));
        assert!(reason("sha256:").contains("0 hex digits instead of 64"));
        assert!(reason(&format!("sha256:{HEX}0")).contains("65 hex digits"));
        let mut bad = HEX.to_string();
        bad.replace_range(10..11, "g");
        assert!(reason(&format!("sha256:{bad}")).contains("'g' at position 17 is not a hex digit"));
        assert!(reason(&format!("sha256:{HEX} ")).contains("' ' at position 71"));
        for input in ["", "sha256", &format!("sha256:{HEX}")[..20]] {
            assert!(reason(input).ends_with("expected sha256:<64 hex digits>"));
        }
    }

    #[test]
    fn hash_is_of_the_public_key() {
        let key = rcgen::KeyPair::generate().unwrap();
        let a = rcgen::CertificateParams::new(vec!["a".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let b = rcgen::CertificateParams::new(vec!["b".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let ha = ca_cert_hash(a.der()).unwrap();
        assert_eq!(ha, ca_cert_hash(b.der()).unwrap(), "same key, same pin");
        assert_eq!(ha, parse_ca_hash(&ha).unwrap());
        let expected = format!(
            "sha256:{}",
            hex::encode(Sha256::digest(
                rcgen::PublicKeyData::subject_public_key_info(&key)
            ))
        );
        assert_eq!(ha, expected);
        assert_eq!(ca_pem_hash(&a.pem()).unwrap(), ha);
        assert!(matches!(
            ca_cert_hash(b"garbage"),
            Err(ClientError::BadCertificate(_))
        ));
    }
}
