//! Opening gRPC channels to the control plane over TLS.
//!
//! Both entry points build a tonic [`Channel`] on `http://host:port` with our
//! own connector (TCP, then a tokio-rustls handshake offering ALPN `h2`, with
//! the server verified for [`SERVER_NAME`]), so tonic's own TLS is never
//! involved and the verifier is ours to choose:
//! - [`connect`]: mutual TLS from [`Credentials`]; the server must chain to
//!   the credentials' CA.
//! - [`connect_pinned`]: no client certificate; the server must present a CA
//!   with the pinned SPKI hash, and its leaf must verify against that CA.
//!
//! Channels connect eagerly, and the connector keeps the precise cause of a
//! failed attempt (pin mismatch, rejected certificate, refused TCP) so it is
//! returned as a [`ClientError`] instead of tonic's generic "transport error".
//! Later reconnects (tonic reconnects on its own) go through the same
//! verification.
//!
//! Failover: `server` may list several control-plane replicas,
//! `a:7443,b:7443,c:7443`. Every connection attempt (the first, and each
//! reconnect after a replica died) tries them in order, starting with the one
//! that last worked, so a channel moves to a live replica by itself: calls on
//! the broken connection fail `Unavailable` once, and the caller's retry (a
//! lease renewal, a watch resumed from its last revision) reaches another
//! replica. This list type, [`Servers`], is the one place that knows about
//! failover.

use std::error::Error as _;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::crypto::CryptoProvider;
use rustls::{CertificateError, ClientConfig, RootCertStore};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tonic::transport::{Channel, Endpoint};

use crate::pin::{PinOutcome, PinnedVerifier};
use crate::{pem, ClientError, Credentials, SERVER_NAME};

/// How long TCP connect plus TLS handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an HTTP/2 PING checks an otherwise quiet connection.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// How long to wait for the PING's answer before the connection is dropped.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a mutual-TLS channel with a stored credential: the server is
/// verified against `creds.ca_pem` for [`SERVER_NAME`], and the client
/// presents `creds.cert_pem`.
pub async fn connect(creds: &Credentials) -> Result<Channel, ClientError> {
    let connector = TlsConnector::new(&creds.server, mtls_config(creds)?, None);
    connector.establish(endpoint(&creds.server)?).await
}

/// Like [`connect`], but returns at once; the first call connects, and a
/// failure then shows up as that call's `Unavailable` status. For daemons
/// that must start while the control plane is down.
pub fn connect_lazy(creds: &Credentials) -> Result<Channel, ClientError> {
    let connector = TlsConnector::new(&creds.server, mtls_config(creds)?, None);
    Ok(endpoint(&creds.server)?.connect_with_connector_lazy(connector.service()))
}

/// Opens a channel for `Join`, trusting the server only if it presents a CA
/// certificate whose SPKI hash is `ca_hash` and its leaf verifies against
/// that CA for [`SERVER_NAME`]. No client certificate is sent. Returns the
/// channel and the pinned CA as PEM, for the caller to store.
pub async fn connect_pinned(server: &str, ca_hash: &str) -> Result<(Channel, String), ClientError> {
    let expected = crate::parse_ca_hash(ca_hash)?;
    let endpoint = endpoint(server)?;
    let outcome = Arc::new(Mutex::new(PinOutcome::default()));
    let provider = provider();
    let verifier = PinnedVerifier::new(expected, provider.clone(), outcome.clone());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::TlsConfig(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    let connector = TlsConnector::new(server, config, Some(outcome.clone()));
    let channel = connector.establish(endpoint).await?;
    let ca = lock(&outcome)
        .ca
        .clone()
        .ok_or_else(|| ClientError::Handshake {
            server: server.to_string(),
            reason: "the handshake finished without verifying the pinned CA".to_string(),
        })?;
    Ok((channel, pem::cert_to_pem(&ca)))
}

/// The tonic endpoint for `server` (`host:port`, or a comma-separated list
/// of them: the first names the endpoint; the connector picks the replica),
/// with timeouts and keepalives set. Also validates every address.
pub(crate) fn endpoint(server: &str) -> Result<Endpoint, ClientError> {
    let servers = Servers::parse(server)?;
    one_endpoint(servers.first())
}

/// The tonic endpoint for one `host:port`.
fn one_endpoint(server: &str) -> Result<Endpoint, ClientError> {
    let bad = |reason: &str| ClientError::BadServerAddress {
        server: server.to_string(),
        reason: reason.to_string(),
    };
    if server.is_empty() {
        return Err(bad("it is empty; expected host:port"));
    }
    if server.contains("://") {
        return Err(bad("expected host:port without a scheme"));
    }
    if server.contains(['/', '?', '#', '@']) || server.chars().any(char::is_whitespace) {
        return Err(bad("expected just host:port"));
    }
    let uri: http::Uri = format!("http://{server}")
        .parse()
        .map_err(|e| bad(&format!("{e}; expected host:port")))?;
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("no host; expected host:port"));
    }
    if uri.port_u16().is_none() {
        return Err(bad("no port; expected host:port"));
    }
    let endpoint = Endpoint::from(uri)
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    Ok(endpoint)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn mtls_config(creds: &Credentials) -> Result<ClientConfig, ClientError> {
    let mut roots = RootCertStore::empty();
    for ca in pem::certs("CA certificate", &creds.ca_pem)? {
        roots.add(ca).map_err(|e| ClientError::BadPem {
            what: "CA certificate",
            reason: e.to_string(),
        })?;
    }
    let chain = pem::certs("client certificate", &creds.cert_pem)?;
    let key = pem::private_key("client key", &creds.key_pem)?;
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::TlsConfig(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| ClientError::BadPem {
            what: "client certificate and key",
            reason: e.to_string(),
        })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The control-plane replicas a client may use, and the one that last
/// worked (shared by every clone).
#[derive(Clone, Debug)]
pub struct Servers {
    list: Arc<[String]>,
    current: Arc<std::sync::atomic::AtomicUsize>,
}

impl Servers {
    /// Parse `host:port[,host:port...]`, checking each address.
    pub fn parse(servers: &str) -> Result<Servers, ClientError> {
        let list: Vec<String> = servers.split(',').map(|s| s.trim().to_string()).collect();
        for s in &list {
            one_endpoint(s).map_err(|e| match e {
                ClientError::BadServerAddress { reason, .. } if list.len() > 1 => {
                    ClientError::BadServerAddress {
                        server: servers.to_string(),
                        reason: format!("{s:?}: {reason}"),
                    }
                }
                other => other,
            })?;
        }
        Ok(Servers {
            list: list.into(),
            current: Arc::default(),
        })
    }

    /// The first address listed.
    pub fn first(&self) -> &str {
        self.list.first().map_or("", String::as_str)
    }

    /// Every address, starting with the one that last worked.
    pub fn in_order(&self) -> impl Iterator<Item = (usize, &str)> {
        let n = self.list.len();
        let start = self.current.load(std::sync::atomic::Ordering::Relaxed) % n.max(1);
        (0..n).map(move |i| {
            let at = (start + i) % n;
            (at, self.list[at].as_str())
        })
    }

    /// Remember that the address at `at` worked.
    fn worked(&self, at: usize) {
        self.current.store(at, std::sync::atomic::Ordering::Relaxed);
    }

    /// All of them, as given.
    pub fn joined(&self) -> String {
        self.list.join(",")
    }
}

/// TCP + TLS to one control plane (the first of [`Servers`] that answers),
/// remembering why the last attempt failed.
#[derive(Clone)]
struct TlsConnector {
    servers: Servers,
    server: Arc<str>,
    tls: tokio_rustls::TlsConnector,
    /// Set by the pinned verifier; consulted to explain a failed handshake.
    pin: Option<Arc<Mutex<PinOutcome>>>,
    /// The precise error of the last failed attempt.
    failure: Arc<Mutex<Option<ClientError>>>,
}

impl TlsConnector {
    fn new(server: &str, mut config: ClientConfig, pin: Option<Arc<Mutex<PinOutcome>>>) -> Self {
        config.alpn_protocols = vec![b"h2".to_vec()];
        // The callers validated `server` through `endpoint` already.
        let servers = Servers::parse(server).unwrap_or_else(|_| Servers {
            list: vec![server.to_string()].into(),
            current: Arc::default(),
        });
        Self {
            servers,
            server: server.into(),
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            pin,
            failure: Arc::default(),
        }
    }

    /// The connector as the tower service tonic wants. Its error is a plain
    /// message; the typed error stays in `self.failure`.
    fn service(
        &self,
    ) -> impl tower::Service<
        http::Uri,
        Response = TokioIo<TlsStream<TcpStream>>,
        Error = std::io::Error,
        Future = impl Future<Output = Result<TokioIo<TlsStream<TcpStream>>, std::io::Error>> + Send,
    > + Send
           + 'static {
        let this = self.clone();
        tower::service_fn(move |_uri: http::Uri| {
            let this = this.clone();
            async move {
                match this.attempt().await {
                    Ok(io) => Ok(io),
                    Err(e) => {
                        tracing::debug!(server = %this.server, error = %e, "control-plane connection attempt failed");
                        let plain = std::io::Error::other(e.to_string());
                        *lock(&this.failure) = Some(e);
                        Err(plain)
                    }
                }
            }
        })
    }

    /// Connects eagerly, returning the precise cause on failure.
    async fn establish(self, endpoint: Endpoint) -> Result<Channel, ClientError> {
        match endpoint.connect_with_connector(self.service()).await {
            Ok(channel) => {
                tracing::debug!(server = %self.server, "connected to the control plane");
                Ok(channel)
            }
            Err(error) => Err(lock(&self.failure)
                .take()
                .unwrap_or_else(|| ClientError::Connect {
                    server: self.server.to_string(),
                    reason: error_chain(&error),
                    error,
                })),
        }
    }

    /// Try every replica in turn, from the one that last worked; the error
    /// is the last replica's.
    async fn attempt(&self) -> Result<TokioIo<TlsStream<TcpStream>>, ClientError> {
        let mut last = None;
        for (at, server) in self.servers.in_order() {
            match tokio::time::timeout(CONNECT_TIMEOUT, self.attempt_one(server)).await {
                Ok(Ok(io)) => {
                    self.servers.worked(at);
                    return Ok(io);
                }
                Ok(Err(e)) => {
                    tracing::debug!(server, error = %e, "control-plane replica unreachable; trying the next");
                    last = Some(e);
                }
                Err(_) => {
                    last = Some(ClientError::Handshake {
                        server: server.to_string(),
                        reason: format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
                    })
                }
            }
        }
        Err(last.unwrap_or_else(|| ClientError::BadServerAddress {
            server: self.server.to_string(),
            reason: "no address".into(),
        }))
    }

    async fn attempt_one(
        &self,
        server: &str,
    ) -> Result<TokioIo<TlsStream<TcpStream>>, ClientError> {
        if let Some(pin) = &self.pin {
            lock(pin).mismatch = None;
        }
        let tcp = TcpStream::connect(server)
            .await
            .map_err(|cause| ClientError::Tcp {
                server: server.to_string(),
                cause,
            })?;
        // Small gRPC frames should not wait for Nagle.
        let _ = tcp.set_nodelay(true);
        let reached = tcp.peer_addr().ok();
        let name =
            ServerName::try_from(SERVER_NAME).map_err(|e| ClientError::TlsConfig(e.to_string()))?;
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| self.explain(server, e, reached))?;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err(ClientError::Handshake {
                server: server.to_string(),
                reason:
                    "the server did not agree to HTTP/2 (ALPN h2); is this a weft control plane?"
                        .to_string(),
            });
        }
        Ok(TokioIo::new(tls))
    }

    /// Turns a failed handshake with `server` (reached at `reached`, the
    /// address the TCP connection went to) into the most precise error we
    /// know.
    fn explain(
        &self,
        server: &str,
        err: std::io::Error,
        reached: Option<SocketAddr>,
    ) -> ClientError {
        if let Some(pin) = &self.pin {
            if let Some(mismatch) = lock(pin).mismatch.take() {
                return mismatch;
            }
        }
        let server = server.to_string();
        match err
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
        {
            Some(rustls::Error::InvalidCertificate(cert_err)) => ClientError::ServerCertRejected {
                reached: reached.map_or_else(|| server.clone(), |a| a.to_string()),
                server,
                reason: describe_cert_error(cert_err),
            },
            Some(rustls::Error::AlertReceived(alert)) => ClientError::Handshake {
                server,
                reason: format!("the server sent the TLS alert {alert:?}"),
            },
            Some(other) => ClientError::Handshake {
                server,
                reason: other.to_string(),
            },
            None => ClientError::Handshake {
                server,
                reason: format!("{err} (is this a TLS endpoint of a weft control plane?)"),
            },
        }
    }
}

fn describe_cert_error(err: &CertificateError) -> String {
    match err {
        CertificateError::UnknownIssuer | CertificateError::BadSignature => format!(
            "it is not signed by the cluster CA this client trusts ({err:?}); what answered \
             may not be this cluster's control plane (another service on that address, another \
             cluster's control plane, or the control plane runs in a network namespace this \
             host does not reach)"
        ),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            format!("it is not valid for the name {SERVER_NAME:?}")
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "it has expired".to_string()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "it is not valid yet (check the clocks)".to_string()
        }
        other => format!("{other:?}"),
    }
}

/// An error and its causes on one line, e.g. "transport error: timed out".
fn error_chain(err: &tonic::transport::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(server: &str) -> String {
        match endpoint(server) {
            Err(ClientError::BadServerAddress { reason, .. }) => reason,
            other => panic!("{server:?}: expected BadServerAddress, got {other:?}"),
        }
    }

    #[test]
    fn server_addresses() {
        for good in [
            "127.0.0.1:7443",
            "[::1]:7443",
            "cp.example.com:443",
            "localhost:1",
        ] {
            assert!(endpoint(good).is_ok(), "{good}");
        }
        assert!(reason("").contains("empty"));
        assert!(reason("https://cp:443").contains("without a scheme"));
        assert!(reason("cp").contains("no port"));
        assert!(reason("cp:443/x").contains("just host:port"));
        assert!(reason("cp :443").contains("just host:port"));
        assert!(reason(":443").contains("host"));
        // Lists of replicas: every one is checked.
        assert!(endpoint("a:1,b:2, [::1]:3").is_ok());
        assert!(reason("a:1,b").contains("\"b\": no port"));
        assert!(reason("a:1,").contains("empty"));
    }

    #[test]
    fn servers_start_with_the_last_that_worked() {
        let s = Servers::parse("a:1,b:2,c:3").unwrap();
        let order = |s: &Servers| s.in_order().map(|(_, a)| a.to_string()).collect::<Vec<_>>();
        assert_eq!(order(&s), ["a:1", "b:2", "c:3"]);
        s.clone().worked(1);
        assert_eq!(order(&s), ["b:2", "c:3", "a:1"], "shared by clones");
        assert_eq!(s.joined(), "a:1,b:2,c:3");
    }

    #[tokio::test]
    async fn a_dead_replica_is_skipped() {
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_addr = dead.local_addr().unwrap();
        drop(dead);
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live_addr = live.local_addr().unwrap();
        // The live one accepts TCP and closes: the error must name it, not
        // the dead one tried first.
        tokio::spawn(async move {
            while let Ok((s, _)) = live.accept().await {
                drop(s);
            }
        });
        let hash = format!("sha256:{}", "0".repeat(64));
        let err = connect_pinned(&format!("{dead_addr},{live_addr}"), &hash)
            .await
            .unwrap_err();
        assert!(err.to_string().contains(&live_addr.to_string()), "{err}");
    }

    #[tokio::test]
    async fn refused_tcp_is_reported_as_such() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let hash = format!("sha256:{}", "0".repeat(64));
        let err = connect_pinned(&addr.to_string(), &hash).await.unwrap_err();
        assert!(matches!(err, ClientError::Tcp { .. }), "{err:?}");
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }

    #[tokio::test]
    async fn bad_pin_is_refused_before_dialing() {
        let err = connect_pinned("127.0.0.1:1", "sha256:abc")
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::BadCaHash { .. }), "{err:?}");
    }
}
