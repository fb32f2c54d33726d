//! The accept loop: TCP connections under the caps, then TLS and the
//! HTTP/2 preface within one deadline, handed to tonic as [`Conn`]s.
//!
//! Per connection: take a [`Slot`] (or close it at once and count the
//! refusal); then, in a task of its own, finish the TLS handshake and read
//! the 24-byte HTTP/2 client preface, both before `handshake_timeout` from
//! accept; a connection that is late, fails TLS, or sends something else
//! is closed and counted. Only then does tonic see it, with the preface
//! replayed in front of the stream. The slot lives inside the [`Conn`], so
//! it is freed whenever the connection closes, at any stage.

use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::Connected;

use super::limits::{ConnLimiter, RefusalLog, Slot, Source};
use super::ConnStats;
use crate::untrusted::untrusted;

/// What every HTTP/2 client sends first (RFC 9113, section 3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Connections that passed TLS and the preface, waiting for tonic.
const READY_QUEUE: usize = 256;

/// How the accept loop treats connections.
#[derive(Debug, Clone)]
pub struct AcceptConfig {
    pub tls: Arc<rustls::ServerConfig>,
    pub handshake_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_source: usize,
}

/// A connection that finished TLS and sent the HTTP/2 preface.
pub struct Conn {
    tls: TlsStream<TcpStream>,
    /// The preface, read to check it, given back to hyper first.
    replay: &'static [u8],
    _slot: Slot,
}

impl Connected for Conn {
    type ConnectInfo = <TlsStream<TcpStream> as Connected>::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        // Carries the client certificates `auth` reads.
        self.tls.connect_info()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.replay.is_empty() {
            let n = self.replay.len().min(buf.remaining());
            let (head, tail) = self.replay.split_at(n);
            buf.put_slice(head);
            self.replay = tail;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.tls).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tls).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tls).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tls).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tls).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tls.is_write_vectored()
    }
}

/// Accept on `listener` until `stop` turns true or the receiver is gone;
/// ready connections go to the returned channel.
pub fn spawn(
    listener: TcpListener,
    config: AcceptConfig,
    stats: Arc<ConnStats>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> mpsc::Receiver<io::Result<Conn>> {
    let (tx, rx) = mpsc::channel(READY_QUEUE);
    let limiter = ConnLimiter::new(config.max_connections, config.max_connections_per_source);
    let acceptor = TlsAcceptor::from(Arc::clone(&config.tls));
    let refusals = Arc::new(Mutex::new(RefusalLog::default()));
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: wait a
                        // moment rather than spin.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = stop.changed() => return,
                _ = tx.closed() => return,
            };
            let source = Source::of(peer.ip());
            let slot = match limiter.try_acquire(source) {
                Ok(slot) => slot,
                Err(why) => {
                    drop(tcp);
                    stats.note_refusal(why);
                    let report = refusals.lock().unwrap_or_else(|e| e.into_inner()).note(
                        tokio::time::Instant::now(),
                        why,
                        source,
                    );
                    if let Some(r) = report {
                        tracing::warn!(
                            over_total_cap = r.total,
                            over_source_cap = r.per_source,
                            last_source = %r.last_source,
                            refused_since_start = stats.refused(),
                            "refused connections over the connection caps (--max-connections, --max-connections-per-source)"
                        );
                    }
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (tx, acceptor, stats) = (tx.clone(), acceptor.clone(), Arc::clone(&stats));
            let timeout = config.handshake_timeout;
            tokio::spawn(async move {
                match tokio::time::timeout(timeout, handshake(&acceptor, tcp)).await {
                    Ok(Ok(tls)) => {
                        let conn = Conn {
                            tls,
                            replay: PREFACE,
                            _slot: slot,
                        };
                        let _ = tx.send(Ok(conn)).await;
                    }
                    Ok(Err(e)) => {
                        stats.handshake_failures.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%peer, error = %e, "closed a connection that failed TLS or the HTTP/2 preface");
                    }
                    Err(_) => {
                        stats.handshake_timeouts.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%peer, "closed a connection that did not finish TLS and the HTTP/2 preface in time");
                    }
                }
            });
        }
    });
    rx
}

/// TLS, then the HTTP/2 preface.
async fn handshake(acceptor: &TlsAcceptor, tcp: TcpStream) -> io::Result<TlsStream<TcpStream>> {
    let mut tls = acceptor.accept(tcp).await?;
    let mut preface = [0u8; PREFACE.len()];
    tls.read_exact(&mut preface).await?;
    if &preface != PREFACE {
        let shown = String::from_utf8_lossy(&preface);
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not an HTTP/2 client: it began with {}", untrusted(&shown)),
        ));
    }
    Ok(tls)
}
