//! The control plane's PKI: the cluster CA, the serving certificate, and the
//! client certificates it issues (node credentials in `Join`, `admin.conf`).
//!
//! Contract:
//! - Everything lives in the state directory: `ca.crt`, `ca.key` (0600),
//!   `server.crt`, `server.key` (0600). The first start creates them; later
//!   starts load them. The CA is never replaced silently: a missing or broken
//!   CA file is an error naming the file.
//! - The serving certificate carries [`weft_client::SERVER_NAME`] (the name
//!   clients verify), `localhost`, `127.0.0.1`, `::1` and the configured
//!   advertise addresses. It is re-issued when that SAN list changes, when it
//!   no longer verifies against the CA, or when it is within 30 days of expiry.
//! - Issued client certificates encode who the caller is in the subject:
//!   `O=weft:nodes, CN=<node name>` or `O=weft:admins, CN=weft-admin`
//!   (read back by [`crate::auth`]). The subject a CSR asks for is ignored.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rand::RngCore as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
    SanType, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use rustls::client::danger::ServerCertVerifier as _;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use weft_client::{Credentials, SERVER_NAME};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::time::ASN1Time;

/// Common name of the cluster CA.
pub const CA_COMMON_NAME: &str = "weft-cluster-ca";
/// Organization of node credentials.
pub const NODES_ORG: &str = "weft:nodes";
/// Organization of admin credentials.
pub const ADMINS_ORG: &str = "weft:admins";
/// Common name of admin credentials.
pub const ADMIN_COMMON_NAME: &str = "weft-admin";

const DAY: Duration = Duration::from_secs(24 * 60 * 60);
const CA_VALIDITY: Duration = Duration::from_secs(3650 * 24 * 60 * 60);
const LEAF_VALIDITY: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// The serving certificate is re-issued at start when it has less left.
const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// Certificates start this long in the past, for clocks slightly behind.
const BACKDATE: Duration = Duration::from_secs(5 * 60);
/// Larger CSRs are refused before parsing.
const MAX_CSR_LEN: usize = 16 * 1024;

/// An error of the PKI.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file or directory could not be read, written or created.
    #[error("{action} {path}: {cause}")]
    Io {
        /// What was being done ("reading", "writing", ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The IO error.
        cause: std::io::Error,
    },
    /// A certificate file holds no certificate, or an unusable one.
    #[error("{path}: {reason}")]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A key file holds no usable private key.
    #[error("{path}: {reason}")]
    BadKey {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A key file does not hold the private key of its certificate.
    #[error("{key} does not hold the private key of {cert}")]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// One file of the CA's certificate/key pair exists without the other.
    #[error(
        "{present} exists but {missing} does not; restore {missing}, or remove both to create a \
         new cluster CA (every node and admin.conf would then need new credentials)"
    )]
    MissingPair {
        /// The file that exists.
        present: PathBuf,
        /// The file that does not.
        missing: PathBuf,
    },
    /// A configured SAN is neither an IP address nor a DNS name.
    #[error("bad serving-certificate SAN {entry:?}: {reason}")]
    BadSan {
        /// The entry as configured.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A certificate signing request is unusable.
    #[error("bad certificate signing request: {0}")]
    BadCsr(String),
    /// A node name cannot be a certificate common name.
    #[error("bad node name {0:?} for a certificate: it must be 1 to 64 printable characters")]
    BadNodeName(String),
    /// Building or signing a certificate failed.
    #[error("issuing the {what}: {cause}")]
    Issue {
        /// Which certificate.
        what: &'static str,
        /// The rcgen error.
        cause: rcgen::Error,
    },
    /// Writing an admin credentials file failed.
    #[error(transparent)]
    AdminConf(weft_client::ClientError),
    /// The serving identity could not be turned into a TLS configuration.
    #[error("building the TLS server configuration: {0}")]
    Tls(String),
}

/// The cluster CA and the serving identity, loaded from the state directory.
pub struct Pki {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    ca_hash: String,
    issuer: Issuer<'static, KeyPair>,
    server_cert_pem: String,
    server_key_pem: String,
}

/// One subject alternative name, normalized for comparison.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum San {
    Dns(String),
    Ip(IpAddr),
    /// A kind we never issue; its presence forces re-issuing.
    Other,
}

impl Pki {
    /// Loads the PKI from `state_dir`, creating the CA and serving certificate
    /// on first start. `sans` are extra IPs or DNS names for the serving
    /// certificate (the advertise addresses).
    pub fn load_or_create(state_dir: &Path, sans: &[String]) -> Result<Pki, PkiError> {
        fs::create_dir_all(state_dir).map_err(io_err("creating", state_dir))?;
        let wanted_sans = wanted_sans(sans)?;
        let (ca_pem, ca_der, ca_key) = load_or_create_ca(state_dir)?;
        let ca_hash = weft_client::ca_cert_hash(&ca_der).map_err(|e| PkiError::BadCertificate {
            path: state_dir.join("ca.crt"),
            reason: e.to_string(),
        })?;
        let issuer =
            Issuer::from_ca_cert_der(&ca_der, ca_key).map_err(|e| PkiError::BadCertificate {
                path: state_dir.join("ca.crt"),
                reason: e.to_string(),
            })?;
        let (server_cert_pem, server_key_pem) =
            load_or_issue_serving(state_dir, &issuer, &ca_der, &wanted_sans)?;
        Ok(Pki {
            ca_pem,
            ca_der,
            ca_hash,
            issuer,
            server_cert_pem,
            server_key_pem,
        })
    }

    /// The cluster CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The cluster CA certificate, DER.
    pub fn ca_der(&self) -> &[u8] {
        &self.ca_der
    }

    /// `sha256:<hex>` of the CA's SubjectPublicKeyInfo, for join commands.
    pub fn ca_hash(&self) -> &str {
        &self.ca_hash
    }

    /// The serving certificate (leaf only), PEM.
    pub fn server_cert_pem(&self) -> &str {
        &self.server_cert_pem
    }

    /// TLS for the gRPC server (rustls, ALPN `h2`): the serving
    /// certificate with the CA in its chain (joining nodes pin the CA from
    /// the chain), and optional client certificates verified against the
    /// CA (`Join` comes without one). The transport applies the handshake
    /// timeout.
    pub fn server_rustls_config(&self) -> Result<Arc<rustls::ServerConfig>, PkiError> {
        use rustls_pki_types::pem::PemObject as _;
        use rustls_pki_types::PrivateKeyDer;
        let tls = |e: &dyn fmt::Display| PkiError::Tls(e.to_string());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).map_err(|e| tls(&e))?;
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::clone(&provider),
        )
        .allow_unauthenticated()
        .build()
        .map_err(|e| tls(&e))?;
        let leaf =
            CertificateDer::from_pem_slice(self.server_cert_pem.as_bytes()).map_err(|e| tls(&e))?;
        let key =
            PrivateKeyDer::from_pem_slice(self.server_key_pem.as_bytes()).map_err(|e| tls(&e))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls(&e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![leaf, self.ca_der.clone()], key)
            .map_err(|e| tls(&e))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }

    /// Signs a node's CSR: the CSR's signature must verify, and only its
    /// public key is used; the certificate says `CN=<node_name>,
    /// O=weft:nodes`, client auth only, valid for a year. Returns PEM.
    pub fn sign_node_csr(&self, node_name: &str, csr_pem: &str) -> Result<String, PkiError> {
        if node_name.is_empty()
            || node_name.chars().count() > 64
            || node_name.chars().any(char::is_control)
        {
            return Err(PkiError::BadNodeName(node_name.to_string()));
        }
        if csr_pem.len() > MAX_CSR_LEN {
            return Err(PkiError::BadCsr(format!(
                "it is {} bytes; at most {MAX_CSR_LEN} are accepted",
                csr_pem.len()
            )));
        }
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| {
            PkiError::BadCsr(match e {
                rcgen::Error::CouldNotParseCertificationRequest => {
                    "not a PEM \"CERTIFICATE REQUEST\"".to_string()
                }
                rcgen::Error::InvalidCertificationRequestSignature => {
                    "its signature does not verify".to_string()
                }
                rcgen::Error::UnsupportedExtension => {
                    "it requests an extension weft does not support".to_string()
                }
                other => other.to_string(),
            })
        })?;
        let params = client_params(node_name, NODES_ORG);
        let cert = params
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(|cause| PkiError::Issue {
                what: "node certificate",
                cause,
            })?;
        tracing::info!(node = node_name, "issued a node certificate");
        Ok(cert.pem())
    }

    /// Issues an admin credential (`CN=weft-admin, O=weft:admins`) for the
    /// control plane at `server` (`host:port`).
    pub fn issue_admin_credentials(&self, server: &str) -> Result<Credentials, PkiError> {
        let key = new_key("admin key")?;
        let cert = client_params(ADMIN_COMMON_NAME, ADMINS_ORG)
            .signed_by(&key, &self.issuer)
            .map_err(|cause| PkiError::Issue {
                what: "admin certificate",
                cause,
            })?;
        Ok(Credentials {
            server: server.to_string(),
            ca_pem: self.ca_pem.clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            name: "admin".to_string(),
        })
    }

    /// Issues an admin credential and writes it to `path` (mode 0600).
    pub fn write_admin_conf(&self, path: &Path, server: &str) -> Result<(), PkiError> {
        self.issue_admin_credentials(server)?
            .save(path)
            .map_err(PkiError::AdminConf)?;
        tracing::info!(path = %path.display(), "wrote the admin credential");
        Ok(())
    }
}

impl fmt::Debug for Pki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pki")
            .field("ca_hash", &self.ca_hash)
            .finish_non_exhaustive()
    }
}

fn load_or_create_ca(dir: &Path) -> Result<(String, CertificateDer<'static>, KeyPair), PkiError> {
    let crt = dir.join("ca.crt");
    let key_path = dir.join("ca.key");
    match (exists(&crt)?, exists(&key_path)?) {
        (true, true) => {
            let pem = read(&crt)?;
            let der = first_cert(&crt, &pem)?;
            let key = read_key(&key_path)?;
            check_key_matches(&crt, &der, &key_path, &key)?;
            Ok((pem, der, key))
        }
        (false, false) => {
            let key = new_key("CA key")?;
            let mut params = CertificateParams::default();
            params.distinguished_name = DistinguishedName::new();
            params
                .distinguished_name
                .push(DnType::CommonName, CA_COMMON_NAME);
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            set_validity(&mut params, CA_VALIDITY);
            let cert = params.self_signed(&key).map_err(|cause| PkiError::Issue {
                what: "cluster CA",
                cause,
            })?;
            write_file(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
            write_file(&crt, cert.pem().as_bytes(), 0o644)?;
            tracing::info!(dir = %dir.display(), "created the cluster CA");
            Ok((cert.pem(), cert.der().clone(), key))
        }
        (true, false) => Err(PkiError::MissingPair {
            present: crt,
            missing: key_path,
        }),
        (false, true) => Err(PkiError::MissingPair {
            present: key_path,
            missing: crt,
        }),
    }
}

/// Loads the serving certificate and key, or issues new ones; returns PEMs.
fn load_or_issue_serving(
    dir: &Path,
    issuer: &Issuer<'static, KeyPair>,
    ca_der: &CertificateDer<'static>,
    sans: &BTreeSet<San>,
) -> Result<(String, String), PkiError> {
    let crt = dir.join("server.crt");
    let key_path = dir.join("server.key");
    let reason = if exists(&crt)? && exists(&key_path)? {
        let pem = read(&crt)?;
        let der = first_cert(&crt, &pem)?;
        let key = read_key(&key_path)?;
        check_key_matches(&crt, &der, &key_path, &key)?;
        match stale_reason(&crt, &der, ca_der, sans)? {
            None => return Ok((pem, key.serialize_pem())),
            Some(reason) => reason,
        }
    } else {
        "there is none yet".to_string()
    };
    tracing::info!(reason, "issuing the serving certificate");

    let key = new_key("serving key")?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, SERVER_NAME);
    params.subject_alt_names = sans
        .iter()
        .filter_map(|san| match san {
            San::Dns(name) => rcgen::string::Ia5String::try_from(name.as_str())
                .ok()
                .map(SanType::DnsName),
            San::Ip(ip) => Some(SanType::IpAddress(*ip)),
            San::Other => None,
        })
        .collect();
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, LEAF_VALIDITY);
    let cert = params
        .signed_by(&key, issuer)
        .map_err(|cause| PkiError::Issue {
            what: "serving certificate",
            cause,
        })?;
    write_file(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_file(&crt, cert.pem().as_bytes(), 0o644)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Why a loaded serving certificate must be re-issued, if it must.
fn stale_reason(
    path: &Path,
    der: &CertificateDer<'static>,
    ca_der: &CertificateDer<'static>,
    wanted: &BTreeSet<San>,
) -> Result<Option<String>, PkiError> {
    let cert = parse(path, der)?;
    let have = cert_sans(&cert);
    if &have != wanted {
        return Ok(Some(format!(
            "the SAN list changed from {have:?} to {wanted:?}"
        )));
    }
    let left = cert.validity().not_after.timestamp() - ASN1Time::now().timestamp();
    if left < RENEW_BEFORE.as_secs() as i64 {
        return Ok(Some(format!(
            "it expires in {} days",
            left / DAY.as_secs() as i64
        )));
    }
    // The same check a client makes: chains to the CA, valid now, for SERVER_NAME.
    let mut roots = rustls::RootCertStore::empty();
    if let Err(e) = roots.add(ca_der.clone()) {
        return Ok(Some(format!("the CA is not usable as a trust anchor: {e}")));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots.into(), provider)
            .build()
            .map_err(|e| PkiError::BadCertificate {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
    let name = ServerName::try_from(SERVER_NAME).map_err(|e| PkiError::BadCertificate {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if let Err(e) = verifier.verify_server_cert(der, &[], &name, &[], UnixTime::now()) {
        return Ok(Some(format!(
            "it does not verify against the cluster CA: {e}"
        )));
    }
    Ok(None)
}

/// The serving certificate's SANs: the fixed ones plus the configured ones.
fn wanted_sans(extra: &[String]) -> Result<BTreeSet<San>, PkiError> {
    let mut sans = BTreeSet::from([
        San::Dns(SERVER_NAME.to_string()),
        San::Dns("localhost".to_string()),
        San::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        San::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    ]);
    for entry in extra {
        let bad = |reason: &str| PkiError::BadSan {
            entry: entry.clone(),
            reason: reason.to_string(),
        };
        let trimmed = entry.trim();
        let unbracketed = trimmed
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or(trimmed);
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            sans.insert(San::Ip(ip));
            continue;
        }
        if trimmed.is_empty() {
            return Err(bad("it is empty"));
        }
        if trimmed.contains(':') {
            return Err(bad(
                "it looks like host:port; give only the IP address or DNS name",
            ));
        }
        let name = trimmed.trim_end_matches('.').to_ascii_lowercase();
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        };
        if name.len() > 253 || !name.split('.').all(label_ok) {
            return Err(bad("it is neither an IP address nor a DNS name"));
        }
        sans.insert(San::Dns(name));
    }
    Ok(sans)
}

fn cert_sans(cert: &X509Certificate<'_>) -> BTreeSet<San> {
    let Ok(Some(ext)) = cert.subject_alternative_name() else {
        return BTreeSet::new();
    };
    ext.value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::DNSName(dns) => San::Dns(dns.to_ascii_lowercase()),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => <[u8; 4]>::try_from(*bytes).map_or(San::Other, |b| San::Ip(IpAddr::from(b))),
                16 => <[u8; 16]>::try_from(*bytes).map_or(San::Other, |b| San::Ip(IpAddr::from(b))),
                _ => San::Other,
            },
            _ => San::Other,
        })
        .collect()
}

/// Parameters of a client certificate: `CN=<cn>, O=<org>`, client auth.
fn client_params(common_name: &str, org: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, org);
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, LEAF_VALIDITY);
    params
}

/// Validity from a little before now for `lifetime`, and a random serial.
fn set_validity(params: &mut CertificateParams, lifetime: Duration) {
    let now = ASN1Time::now().to_datetime();
    params.not_before = now - BACKDATE;
    params.not_after = now + lifetime;
    let mut serial = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut serial);
    serial[0] &= 0x7f;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
}

fn new_key(what: &'static str) -> Result<KeyPair, PkiError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|cause| PkiError::Issue { what, cause })
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> PkiError {
    let path = path.to_path_buf();
    move |cause| PkiError::Io {
        action,
        path,
        cause,
    }
}

fn exists(path: &Path) -> Result<bool, PkiError> {
    path.try_exists().map_err(io_err("checking", path))
}

fn read(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(io_err("reading", path))
}

fn read_key(path: &Path) -> Result<KeyPair, PkiError> {
    let pem = read(path)?;
    if let Ok(meta) = fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "private key is readable by others; it should be mode 0600");
        }
    }
    KeyPair::from_pem(&pem).map_err(|e| PkiError::BadKey {
        path: path.to_path_buf(),
        reason: format!("no usable PEM private key ({e})"),
    })
}

fn first_cert(path: &Path, pem: &str) -> Result<CertificateDer<'static>, PkiError> {
    use rustls_pki_types::pem::PemObject as _;
    let bad = |reason: String| PkiError::BadCertificate {
        path: path.to_path_buf(),
        reason,
    };
    let der = match CertificateDer::pem_slice_iter(pem.as_bytes()).next() {
        Some(Ok(der)) => der,
        Some(Err(e)) => return Err(bad(format!("bad PEM: {e}"))),
        None => return Err(bad("no \"BEGIN CERTIFICATE\" block found".to_string())),
    };
    parse(path, &der)?;
    Ok(der)
}

fn parse<'a>(path: &Path, der: &'a [u8]) -> Result<X509Certificate<'a>, PkiError> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| cert)
        .map_err(|e| PkiError::BadCertificate {
            path: path.to_path_buf(),
            reason: format!("unparseable certificate: {e}"),
        })
}

fn check_key_matches(
    cert_path: &Path,
    der: &[u8],
    key_path: &Path,
    key: &KeyPair,
) -> Result<(), PkiError> {
    let cert = parse(cert_path, der)?;
    if cert.public_key().raw != key.subject_public_key_info().as_slice() {
        return Err(PkiError::KeyMismatch {
            cert: cert_path.to_path_buf(),
            key: key_path.to_path_buf(),
        });
    }
    Ok(())
}

/// Writes a file atomically (temporary sibling, fsync, rename) with `mode`.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    weft_files::write_atomic(path, contents, mode).map_err(io_err("writing", path))
}
