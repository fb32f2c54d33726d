//! Connections that never become HTTP/2 are closed, and connections are
//! capped (issue 10, item 6), against a real control plane on 127.0.0.1:
//! raw TCP connections that never speak TLS and TLS connections that never
//! send the HTTP/2 preface are all closed within the handshake timeout (plus
//! slack), the connection over the per-source or total cap is closed at
//! once and counted, and real joins keep working meanwhile.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;
use weft_control_plane::server::Running;

/// Slack on top of the handshake timeout for the server to close.
const SLACK: Duration = Duration::from_secs(10);

/// A TCP connection to `cp` from `from` (any 127/8 address is this host).
async fn tcp_from(from: &str, cp: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    socket.connect(cp).await.unwrap()
}

/// A TLS client that trusts the cluster CA and offers HTTP/2, as weft's
/// clients do.
fn tls_connector(cp: &Running) -> tokio_rustls::TlsConnector {
    use rustls_pki_types::pem::PemObject as _;
    let pem = std::fs::read(cp.state_dir.join("ca.crt")).unwrap();
    let ca = rustls_pki_types::CertificateDer::from_pem_slice(&pem).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Wait until the peer closes: a read returns 0 bytes or an error. Panics
/// at `deadline`.
async fn closed_by_server<S: tokio::io::AsyncRead + Unpin>(s: &mut S, deadline: Instant) {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => panic!("the server did not close the connection in time"),
            Ok(Ok(0)) | Ok(Err(_)) => return,
            // TLS may deliver session tickets; keep reading.
            Ok(Ok(_)) => {}
        }
    }
}

/// True if the peer has not closed `s` (nothing to read, no EOF).
fn still_open(s: &TcpStream) -> bool {
    let mut buf = [0u8; 1];
    matches!(s.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_become_http2_are_closed_after_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start(
        dir.path(),
        &[
            "--handshake-timeout",
            "1",
            "--max-connections-per-source",
            "500",
        ],
    )
    .await;
    let (tok, hash) = token(&cp, 0, 0).await;
    let opened = Instant::now();
    let mut raw = Vec::new();
    for _ in 0..50 {
        raw.push(TcpStream::connect(cp.addr).await.unwrap());
    }
    let connector = tls_connector(&cp);
    let name = rustls_pki_types::ServerName::try_from(weft_client::SERVER_NAME).unwrap();
    let mut tls = Vec::new();
    for _ in 0..50 {
        let tcp = TcpStream::connect(cp.addr).await.unwrap();
        let s = connector.connect(name.clone(), tcp).await.unwrap();
        assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        tls.push(s);
    }
    // Real joins work while the stalled connections are open.
    for i in 1..=3u8 {
        join(&cp, &tok, &hash, &format!("n{i}"), i).await.unwrap();
    }
    // Each stalled connection was opened within `opened + (time to open
    // them all)`; every one must be closed within the timeout plus slack.
    let deadline = Instant::now().max(opened) + Duration::from_secs(1) + SLACK;
    for s in &mut raw {
        closed_by_server(s, deadline).await;
    }
    for s in &mut tls {
        closed_by_server(s, deadline).await;
    }
    let stats = cp.connection_stats();
    assert!(
        stats.handshake_timeouts >= 100,
        "all 100 counted as timed out: {stats:?}"
    );
    // And the control plane still serves.
    join(&cp, &tok, &hash, "n4", 4).await.unwrap();
    cp.stop().await.unwrap();
}

#[tokio::test]
async fn a_client_that_does_not_speak_http2_is_closed_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start(dir.path(), &["--handshake-timeout", "60"]).await;
    let connector = tls_connector(&cp);
    let name = rustls_pki_types::ServerName::try_from(weft_client::SERVER_NAME).unwrap();
    let tcp = TcpStream::connect(cp.addr).await.unwrap();
    let mut s = connector.connect(name, tcp).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    s.flush().await.unwrap();
    // Well before the 60 s timeout.
    closed_by_server(&mut s, Instant::now() + SLACK).await;
    assert_eq!(cp.connection_stats().handshake_failures, 1);
    cp.stop().await.unwrap();
}

#[tokio::test]
async fn the_per_source_cap_refuses_the_next_connection_and_joins_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start(
        dir.path(),
        &[
            "--max-connections-per-source",
            "5",
            "--handshake-timeout",
            "60",
        ],
    )
    .await;
    let (tok, hash) = token(&cp, 0, 0).await;
    // 127.0.0.2 takes its 5; the 6th from it is closed at once.
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(tcp_from("127.0.0.2", cp.addr).await);
    }
    let mut sixth = tcp_from("127.0.0.2", cp.addr).await;
    closed_by_server(&mut sixth, Instant::now() + SLACK).await;
    assert!(held.iter().all(still_open), "the first five stay open");
    assert_eq!(cp.connection_stats().refused_source_cap, 1);
    // Other sources are not affected: joins from 127.0.0.1 work.
    for i in 1..=3u8 {
        join(&cp, &tok, &hash, &format!("n{i}"), i).await.unwrap();
    }
    assert_eq!(cp.connection_stats().refused_source_cap, 1);
    cp.stop().await.unwrap();
}

#[tokio::test]
async fn the_total_cap_refuses_every_source() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start(
        dir.path(),
        &["--max-connections", "4", "--handshake-timeout", "60"],
    )
    .await;
    let mut held = Vec::new();
    for from in ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"] {
        held.push(tcp_from(from, cp.addr).await);
    }
    let mut fifth = tcp_from("127.0.0.6", cp.addr).await;
    closed_by_server(&mut fifth, Instant::now() + SLACK).await;
    assert!(held.iter().all(still_open));
    let stats = cp.connection_stats();
    assert_eq!((stats.refused_total_cap, stats.refused_source_cap), (1, 0));
    // Closing one frees its place.
    drop(held.pop());
    let deadline = Instant::now() + SLACK;
    loop {
        let refused = cp.connection_stats().refused_total_cap;
        let s = tcp_from("127.0.0.6", cp.addr).await;
        // A refused connection is closed (and counted) at once; an
        // accepted one waits for TLS. Give the server a moment to decide.
        tokio::time::sleep(Duration::from_millis(100)).await;
        if still_open(&s) && cp.connection_stats().refused_total_cap == refused {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the freed place was never reused"
        );
    }
    cp.stop().await.unwrap();
}
