//! Key and certificate signing request for a node credential. The node keeps
//! the key; the control plane signs the CSR in `Join` (and overrides the
//! subject, so the common name asked for here is only a courtesy).

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};

use crate::ClientError;

/// A fresh ECDSA P-256 key and a CSR for it with subject CN=`common_name`.
/// Returns `(key_pem, csr_pem)`.
pub fn generate_csr(common_name: &str) -> Result<(String, String), ClientError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    let csr = params.serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.pem()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_parses_and_verifies() {
        let (key_pem, csr_pem) = generate_csr("n1").unwrap();
        assert!(key_pem.contains("BEGIN PRIVATE KEY"));
        let parsed = rcgen::CertificateSigningRequestParams::from_pem(&csr_pem).unwrap();
        let cn = parsed.params.distinguished_name.get(&DnType::CommonName);
        assert_eq!(cn, Some(&rcgen::DnValue::Utf8String("n1".to_string())));
        let key = KeyPair::from_pem(&key_pem).unwrap();
        assert_eq!(
            rcgen::PublicKeyData::der_bytes(&parsed.public_key),
            key.public_key_raw()
        );
    }
}
