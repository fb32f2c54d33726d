//! TLS end to end, with real handshakes: the control plane's PKI
//! (`weft_control_plane::pki`), caller identities (`weft_control_plane::auth`)
//! and the client library (`weft_client`). A tonic server on 127.0.0.1:0
//! serves the gRPC health service behind an interceptor that records what
//! `auth` made of each caller.

use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;
use tonic::transport::{Channel, Server};
use tonic::Code;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{health_check_response::ServingStatus, HealthCheckRequest};
use weft_client::{ClientError, Credentials};
use weft_control_plane::auth::{self, Identity};
use weft_control_plane::pki::{Pki, PkiError};
use x509_parser::extensions::GeneralName;

/// What the server's interceptor saw of one call.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    identity: Identity,
    admin: Result<(), Code>,
    node: Result<String, Code>,
}

struct TestServer {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    _stop: oneshot::Sender<()>,
}

impl TestServer {
    async fn start(pki: &Pki) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let interceptor = move |req: tonic::Request<()>| {
            record.lock().unwrap().push(Seen {
                identity: auth::identity(&req),
                admin: auth::require_admin(&req).map_err(|e| tonic::Status::from(e).code()),
                node: auth::require_node(&req).map_err(|e| tonic::Status::from(e).code()),
            });
            Ok(req)
        };
        let (_reporter, health) = tonic_health::server::health_reporter();
        let (stop, stopped) = oneshot::channel::<()>();
        // The control plane's own transport: rustls, caps, preface deadline.
        let (_stop_accept, stop_rx) = tokio::sync::watch::channel(false);
        let incoming = weft_control_plane::transport::spawn_accept(
            listener,
            weft_control_plane::transport::AcceptConfig {
                tls: pki.server_rustls_config().unwrap(),
                handshake_timeout: std::time::Duration::from_secs(10),
                max_connections: 64,
                max_connections_per_source: 64,
            },
            Default::default(),
            stop_rx,
        );
        let server = Server::builder()
            .layer(tonic::service::InterceptorLayer::new(interceptor))
            .add_service(health)
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::ReceiverStream::new(incoming),
                async move {
                    let _ = stopped.await;
                    drop(_stop_accept);
                },
            );
        tokio::spawn(server);
        TestServer {
            addr,
            seen,
            _stop: stop,
        }
    }

    fn server(&self) -> String {
        self.addr.to_string()
    }

    fn last_seen(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("no call was seen")
    }
}

async fn check(channel: Channel) -> Result<ServingStatus, tonic::Status> {
    let reply = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await?;
    Ok(reply.into_inner().status())
}

fn pki_in(dir: &Path) -> Pki {
    Pki::load_or_create(dir, &[]).unwrap()
}

fn cert_der(pem: &str) -> Vec<u8> {
    x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .unwrap()
        .1
        .contents
}

/// (O, CN) of a PEM certificate.
fn subject(pem: &str) -> (String, String) {
    let der = cert_der(pem);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let get = |mut it: Box<dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue> + '_>| {
        it.next()
            .map(|a| a.as_str().unwrap().to_string())
            .unwrap_or_default()
    };
    (
        get(Box::new(cert.subject().iter_organization())),
        get(Box::new(cert.subject().iter_common_name())),
    )
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn pinned_connect_with_the_right_hash_works_and_returns_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki_in(dir.path());
    let server = TestServer::start(&pki).await;

    let (channel, ca_pem) = weft_client::connect_pinned(&server.server(), pki.ca_hash())
        .await
        .unwrap();
    assert_eq!(cert_der(&ca_pem), pki.ca_der());
    assert_eq!(check(channel).await.unwrap(), ServingStatus::Serving);

    let seen = server.last_seen();
    assert_eq!(
        seen.identity,
        Identity::Anonymous,
        "no client certificate was sent"
    );
    assert_eq!(seen.admin, Err(Code::Unauthenticated));
    assert_eq!(seen.node, Err(Code::Unauthenticated));
}

#[tokio::test]
async fn pinned_connect_with_a_wrong_hash_fails_with_ca_pin_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki_in(dir.path());
    let server = TestServer::start(&pki).await;
    let other_dir = tempfile::tempdir().unwrap();
    let other = pki_in(other_dir.path());

    let err = weft_client::connect_pinned(&server.server(), other.ca_hash())
        .await
        .unwrap_err();
    match &err {
        ClientError::CaPinMismatch {
            expected,
            presented,
        } => {
            assert_eq!(expected, other.ca_hash());
            assert_eq!(presented, &vec![pki.ca_hash().to_string()]);
        }
        other => panic!("expected CaPinMismatch, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(other.ca_hash()) && msg.contains(pki.ca_hash()),
        "{msg}"
    );
    assert!(
        server.seen.lock().unwrap().is_empty(),
        "no call may get through"
    );
}

#[tokio::test]
async fn admin_conf_authenticates_as_admin() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki_in(dir.path());
    let server = TestServer::start(&pki).await;

    let path = dir.path().join("admin.conf");
    pki.write_admin_conf(&path, &server.server()).unwrap();
    assert_eq!(mode(&path), 0o600);
    let creds = Credentials::load(&path).unwrap();
    assert_eq!(creds.name, "admin");
    assert_eq!(
        subject(&creds.cert_pem),
        ("weft:admins".into(), "weft-admin".into())
    );

    let channel = weft_client::connect(&creds).await.unwrap();
    assert_eq!(check(channel).await.unwrap(), ServingStatus::Serving);
    let seen = server.last_seen();
    assert_eq!(seen.identity, Identity::Admin);
    assert_eq!(seen.admin, Ok(()));
    assert_eq!(seen.node, Err(Code::PermissionDenied));
}

#[tokio::test]
async fn node_credential_authenticates_as_that_node() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki_in(dir.path());
    let server = TestServer::start(&pki).await;

    // The CSR asks for another name; the control plane decides the name.
    let (key_pem, csr_pem) = weft_client::generate_csr("someone-else").unwrap();
    let cert_pem = pki.sign_node_csr("n1", &csr_pem).unwrap();
    let creds = Credentials {
        server: server.server(),
        ca_pem: pki.ca_pem().to_string(),
        cert_pem,
        key_pem,
        name: "n1".to_string(),
    };
    let channel = weft_client::connect(&creds).await.unwrap();
    assert_eq!(check(channel).await.unwrap(), ServingStatus::Serving);
    let seen = server.last_seen();
    assert_eq!(seen.identity, Identity::Node("n1".to_string()));
    assert_eq!(seen.admin, Err(Code::PermissionDenied));
    assert_eq!(seen.node, Ok("n1".to_string()));
}

#[tokio::test]
async fn client_certificate_from_another_ca_is_rejected_by_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki_in(dir.path());
    let server = TestServer::start(&pki).await;
    let other_dir = tempfile::tempdir().unwrap();
    let other = pki_in(other_dir.path());

    // Trusts the right server, but presents an admin cert of another CA.
    let mut creds = other.issue_admin_credentials(&server.server()).unwrap();
    creds.ca_pem = pki.ca_pem().to_string();
    let result = match weft_client::connect(&creds).await {
        Err(e) => Err(e.to_string()),
        Ok(channel) => check(channel).await.map_err(|s| s.to_string()),
    };
    assert!(result.is_err(), "a foreign client certificate got through");
    assert!(
        server.seen.lock().unwrap().is_empty(),
        "no call may get through"
    );
}

#[tokio::test]
async fn server_from_another_ca_is_rejected_by_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki_in(dir.path());
    let server = TestServer::start(&pki).await;
    let other_dir = tempfile::tempdir().unwrap();
    let other = pki_in(other_dir.path());

    let creds = other.issue_admin_credentials(&server.server()).unwrap();
    let err = weft_client::connect(&creds).await.unwrap_err();
    assert!(
        matches!(err, ClientError::ServerCertRejected { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("not signed by the cluster CA"), "{text}");
    // Which address answered, and that it may be something else.
    assert!(text.contains(&server.server()), "{text}");
    assert!(
        text.contains("may not be this cluster's control plane"),
        "{text}"
    );
}

#[tokio::test]
async fn non_tls_server_gives_a_handshake_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        // Accept and hang up at once, like a server that is not TLS.
        while let Ok((conn, _)) = listener.accept().await {
            drop(conn);
        }
    });
    let err = weft_client::connect_pinned(&addr.to_string(), &format!("sha256:{}", "a".repeat(64)))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Handshake { .. }), "{err:?}");
}

#[test]
fn load_or_create_keeps_the_ca_and_reissues_the_serving_cert_on_san_change() {
    let dir = tempfile::tempdir().unwrap();
    let first = Pki::load_or_create(dir.path(), &["10.0.0.1".to_string()]).unwrap();
    for (file, want) in [
        ("ca.crt", 0o644),
        ("ca.key", 0o600),
        ("server.crt", 0o644),
        ("server.key", 0o600),
    ] {
        assert_eq!(mode(&dir.path().join(file)), want, "{file}");
    }

    let second = Pki::load_or_create(dir.path(), &["10.0.0.1".to_string()]).unwrap();
    assert_eq!(first.ca_hash(), second.ca_hash());
    assert_eq!(first.ca_pem(), second.ca_pem());
    assert_eq!(
        first.server_cert_pem(),
        second.server_cert_pem(),
        "unchanged SANs keep the cert"
    );

    let third = Pki::load_or_create(
        dir.path(),
        &["10.0.0.1".to_string(), "cp.example.com".to_string()],
    )
    .unwrap();
    assert_eq!(first.ca_hash(), third.ca_hash());
    assert_ne!(
        first.server_cert_pem(),
        third.server_cert_pem(),
        "new SAN, new cert"
    );
    assert_eq!(
        fs::read_to_string(dir.path().join("server.crt")).unwrap(),
        third.server_cert_pem()
    );

    // The SANs are all there, and the fixed ones too.
    let der = cert_der(third.server_cert_pem());
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let sans: Vec<String> = cert
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => d.to_string(),
            GeneralName::IPAddress(b) if b.len() == 4 => {
                std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*b).unwrap()).to_string()
            }
            GeneralName::IPAddress(b) => {
                std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*b).unwrap()).to_string()
            }
            other => format!("{other:?}"),
        })
        .collect();
    for want in [
        "weft-control-plane",
        "localhost",
        "127.0.0.1",
        "::1",
        "10.0.0.1",
        "cp.example.com",
    ] {
        assert!(
            sans.iter().any(|s| s == want),
            "{want} missing from {sans:?}"
        );
    }
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && !eku.client_auth);

    // Back to fewer SANs: re-issued again.
    let fourth = Pki::load_or_create(dir.path(), &["10.0.0.1".to_string()]).unwrap();
    assert_ne!(third.server_cert_pem(), fourth.server_cert_pem());
}

#[test]
fn serving_cert_verifies_for_the_names_stock_tools_use() {
    use rustls::client::danger::ServerCertVerifier as _;
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(dir.path(), &["192.0.2.7".to_string()]).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der().to_vec().into()).unwrap();
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        roots.into(),
        rustls::crypto::ring::default_provider().into(),
    )
    .build()
    .unwrap();
    let leaf = rustls_pki_types::CertificateDer::from(cert_der(pki.server_cert_pem()));
    for name in [
        "weft-control-plane",
        "localhost",
        "127.0.0.1",
        "::1",
        "192.0.2.7",
    ] {
        let name = rustls_pki_types::ServerName::try_from(name).unwrap();
        verifier
            .verify_server_cert(&leaf, &[], &name, &[], rustls_pki_types::UnixTime::now())
            .unwrap_or_else(|e| panic!("{name:?}: {e}"));
    }
    let wrong = rustls_pki_types::ServerName::try_from("example.com").unwrap();
    assert!(verifier
        .verify_server_cert(&leaf, &[], &wrong, &[], rustls_pki_types::UnixTime::now())
        .is_err());
}

#[test]
fn bad_sans_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["10.0.0.1:7443", "", "bad_name!", "-x.example.com"] {
        let err = Pki::load_or_create(dir.path(), &[bad.to_string()]).unwrap_err();
        assert!(matches!(err, PkiError::BadSan { .. }), "{bad:?}: {err:?}");
    }
    // Brackets around IPv6 are fine.
    Pki::load_or_create(dir.path(), &["[fd00::1]".to_string()]).unwrap();
}

#[test]
fn sign_node_csr_ignores_everything_the_csr_asks_for_but_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki_in(dir.path());

    // A CSR that asks to be an admin CA for some names.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["evil.example.com".to_string()]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "weft:admins");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "weft-admin");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let csr_pem = params.serialize_request(&key).unwrap().pem().unwrap();

    let cert_pem = pki.sign_node_csr("n1", &csr_pem).unwrap();
    assert_eq!(subject(&cert_pem), ("weft:nodes".into(), "n1".into()));
    let der = cert_der(&cert_pem);
    assert_eq!(
        auth::identity_of_cert(&der),
        Identity::Node("n1".to_string())
    );
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert!(!cert.is_ca());
    assert!(cert.subject_alternative_name().unwrap().is_none());
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth);
    assert_eq!(
        cert.public_key().raw,
        rcgen::PublicKeyData::subject_public_key_info(&key)
    );
    let days =
        (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp()) / 86400;
    assert!((364..=366).contains(&days), "{days} days");

    // Two certificates for the same key get different serials.
    let again = pki.sign_node_csr("n1", &csr_pem).unwrap();
    let der2 = cert_der(&again);
    let (_, cert2) = x509_parser::parse_x509_certificate(&der2).unwrap();
    assert_ne!(cert.serial, cert2.serial);
}

#[test]
fn bad_csrs_and_names_give_errors() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki_in(dir.path());
    let (_, csr_pem) = weft_client::generate_csr("n1").unwrap();

    let bad_csr = |csr: &str| match pki.sign_node_csr("n1", csr) {
        Err(PkiError::BadCsr(reason)) => reason,
        other => panic!("{csr:?}: expected BadCsr, got {other:?}"),
    };
    assert!(bad_csr("").contains("CERTIFICATE REQUEST"));
    assert!(bad_csr("garbage").contains("CERTIFICATE REQUEST"));
    assert!(
        bad_csr(pki.ca_pem()).contains("CERTIFICATE REQUEST"),
        "a certificate is not a CSR"
    );
    assert!(bad_csr(&"A".repeat(20_000)).contains("at most"));

    // Flip a byte inside the signature (the end of the DER).
    let block = x509_parser::pem::parse_x509_pem(csr_pem.as_bytes())
        .unwrap()
        .1;
    let mut der = block.contents.clone();
    let last = der.len() - 3;
    der[last] ^= 0x01;
    let tampered = format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &der)
    );
    assert!(
        bad_csr(&tampered).contains("signature"),
        "{}",
        bad_csr(&tampered)
    );

    // Truncated DER and random bytes never panic.
    for cut in [1, 10, der.len() / 2, der.len() - 1] {
        let truncated = format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &der[..cut])
        );
        bad_csr(&truncated);
    }
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..200 {
        let bytes: Vec<u8> = (0..64)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let pem = format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &bytes)
        );
        bad_csr(&pem);
    }

    for name in ["", "a\nb", &"x".repeat(65)] {
        assert!(matches!(
            pki.sign_node_csr(name, &csr_pem),
            Err(PkiError::BadNodeName(_))
        ));
    }
}

#[test]
fn broken_pki_files_are_named_in_errors() {
    let fresh = || {
        let dir = tempfile::tempdir().unwrap();
        pki_in(dir.path());
        dir
    };

    let dir = fresh();
    fs::write(dir.path().join("ca.crt"), "garbage").unwrap();
    let err = Pki::load_or_create(dir.path(), &[]).unwrap_err();
    assert!(matches!(err, PkiError::BadCertificate { .. }), "{err:?}");
    assert!(err.to_string().contains("ca.crt"), "{err}");

    let dir = fresh();
    fs::write(
        dir.path().join("ca.crt"),
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = Pki::load_or_create(dir.path(), &[]).unwrap_err();
    assert!(
        err.to_string().contains("ca.crt") && err.to_string().contains("unparseable"),
        "{err}"
    );

    let dir = fresh();
    fs::write(dir.path().join("ca.key"), "garbage").unwrap();
    let err = Pki::load_or_create(dir.path(), &[]).unwrap_err();
    assert!(matches!(err, PkiError::BadKey { .. }), "{err:?}");
    assert!(err.to_string().contains("ca.key"), "{err}");

    let dir = fresh();
    fs::remove_file(dir.path().join("ca.key")).unwrap();
    let err = Pki::load_or_create(dir.path(), &[]).unwrap_err();
    assert!(matches!(err, PkiError::MissingPair { .. }), "{err:?}");
    assert!(err.to_string().contains("ca.key does not"), "{err}");

    let dir = fresh();
    let other = fresh();
    fs::copy(other.path().join("ca.key"), dir.path().join("ca.key")).unwrap();
    let err = Pki::load_or_create(dir.path(), &[]).unwrap_err();
    assert!(matches!(err, PkiError::KeyMismatch { .. }), "{err:?}");

    let dir = fresh();
    fs::write(dir.path().join("server.crt"), "garbage").unwrap();
    let err = Pki::load_or_create(dir.path(), &[]).unwrap_err();
    assert!(err.to_string().contains("server.crt"), "{err}");

    // A serving cert of another CA is replaced, not trusted.
    let dir = fresh();
    let other = fresh();
    for f in ["server.crt", "server.key"] {
        fs::copy(other.path().join(f), dir.path().join(f)).unwrap();
    }
    let before = fs::read_to_string(dir.path().join("server.crt")).unwrap();
    let pki = Pki::load_or_create(dir.path(), &[]).unwrap();
    assert_ne!(pki.server_cert_pem(), before);

    let file = tempfile::NamedTempFile::new().unwrap();
    let err = Pki::load_or_create(file.path(), &[]).unwrap_err();
    assert!(matches!(err, PkiError::Io { .. }), "{err:?}");
}

#[test]
fn identities_of_odd_certificates_and_requests() {
    assert_eq!(auth::identity_of_cert(b"garbage"), Identity::Anonymous);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "weft:strangers");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "x");
    let cert = params.self_signed(&key).unwrap();
    assert_eq!(auth::identity_of_cert(cert.der()), Identity::Anonymous);

    let req = tonic::Request::new(());
    assert_eq!(auth::identity(&req), Identity::Anonymous);
    let status = tonic::Status::from(auth::require_admin(&req).unwrap_err());
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(
        status.message(),
        "this call needs the admin credential (admin.conf); none was presented"
    );
    assert_eq!(
        tonic::Status::from(auth::require_node(&req).unwrap_err()).code(),
        Code::Unauthenticated
    );
}
