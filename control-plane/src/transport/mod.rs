//! The control plane's transport, below gRPC: who may connect, how long a
//! connection may take to become HTTP/2, and how large a request may be.
//!
//! Contract:
//! - Connections are capped overall (`--max-connections`) and per source
//!   (`--max-connections-per-source`, an IPv4 address or an IPv6 /64);
//!   one over a cap is closed at once, counted in [`ConnStats`] and
//!   reported in the log at most once per 10 s (`limits`).
//! - A connection must finish TLS and send the HTTP/2 preface within
//!   `--handshake-timeout` of being accepted, or it is closed and counted
//!   (`accept`). TLS is rustls with the cluster's serving certificate;
//!   client certificates are optional and reach `auth` through tonic's
//!   connect info.
//! - A request whose first gRPC message declares more than
//!   [`MAX_MESSAGE_BYTES`] is answered `RESOURCE_EXHAUSTED` before it is
//!   read or decoded (`size_limit`); tonic's own limit is the same.
//!
//! File map: `limits.rs` (caps, refusal reports; no IO), `accept.rs`
//! (accept loop, TLS, preface, the [`Conn`] tonic serves), `size_limit.rs`
//! (the message-size layer).

mod accept;
mod limits;
mod size_limit;

use std::sync::atomic::{AtomicU64, Ordering};

pub use accept::{spawn as spawn_accept, AcceptConfig, Conn, PREFACE};
pub use limits::{ConnLimiter, Refusal, RefusalLog, RefusalReport, Slot, Source, REPORT_EVERY};
pub use size_limit::{MessageSizeLayer, TooLarge, MAX_MESSAGE_BYTES};

/// Counts of connections the transport closed, since start.
#[derive(Debug, Default)]
pub struct ConnStats {
    /// Refused: `--max-connections` were open.
    pub refused_total_cap: AtomicU64,
    /// Refused: `--max-connections-per-source` were open from the source.
    pub refused_source_cap: AtomicU64,
    /// Closed: TLS and the preface took longer than `--handshake-timeout`.
    pub handshake_timeouts: AtomicU64,
    /// Closed: TLS failed or the client did not speak HTTP/2.
    pub handshake_failures: AtomicU64,
}

/// A copy of [`ConnStats`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConnStatsSnapshot {
    pub refused_total_cap: u64,
    pub refused_source_cap: u64,
    pub handshake_timeouts: u64,
    pub handshake_failures: u64,
}

impl ConnStats {
    fn note_refusal(&self, why: Refusal) {
        match why {
            Refusal::Total => &self.refused_total_cap,
            Refusal::PerSource => &self.refused_source_cap,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// Connections refused over either cap since start.
    pub fn refused(&self) -> u64 {
        self.refused_total_cap.load(Ordering::Relaxed)
            + self.refused_source_cap.load(Ordering::Relaxed)
    }

    /// The counts now.
    pub fn snapshot(&self) -> ConnStatsSnapshot {
        ConnStatsSnapshot {
            refused_total_cap: self.refused_total_cap.load(Ordering::Relaxed),
            refused_source_cap: self.refused_source_cap.load(Ordering::Relaxed),
            handshake_timeouts: self.handshake_timeouts.load(Ordering::Relaxed),
            handshake_failures: self.handshake_failures.load(Ordering::Relaxed),
        }
    }
}
