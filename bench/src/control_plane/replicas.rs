//! The control planes under test: one `weft-control-plane` on its embedded
//! store (the default), or `--replicas N` of them on a local etcd of
//! `--etcd-members` members (the control plane's own `LocalEtcd`: real
//! `etcd` processes on loopback, killed and removed when dropped).
//!
//! Contract:
//! - [`Replicas::start`] starts the replicas one after another on free
//!   loopback ports, each waited for until an admin call works; the first
//!   creates the cluster secret, which is copied into every other one's
//!   state dir before it starts. The first replica is the one the
//!   benchmark measures in detail (timeline, phases, threads); the others
//!   are measured by peak RSS, etcd by peak RSS and database size.
//! - Dropping it stops every replica (SIGTERM, then SIGKILL) and then etcd.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use weft_control_plane::store::etcd::local::LocalEtcd;

use super::process::ServerProcess;
use crate::procfs;

/// Where the simulated cluster's state lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum StoreKind {
    /// The embedded redb file (one control plane).
    Redb,
    /// A local etcd started by the benchmark (any number of replicas).
    Etcd,
}

/// The replicas and the etcd they share.
pub(super) struct Replicas {
    /// The replica measured in detail (also the fan-out writer's).
    pub first: ServerProcess,
    /// The others.
    pub others: Vec<ServerProcess>,
    /// Every replica's address, the first's first.
    pub addrs: Vec<SocketAddr>,
    /// Dropped after the replicas (field order).
    pub etcd: Option<LocalEtcd>,
}

/// What the benchmark reports about etcd.
#[derive(Clone, Debug, Default)]
pub(super) struct EtcdFigures {
    /// Each member's peak RSS (VmHWM).
    pub peak_rss: Vec<u64>,
    /// The largest member database file (`member/snap/db`).
    pub db_bytes: u64,
}

/// Flags and settings for [`Replicas::start`].
pub(super) struct Launch<'a> {
    pub bin: &'a Path,
    pub node_cidr: (&'a str, u8),
    pub log_level: &'a str,
    pub extra: &'a [String],
    pub env: &'a [(String, String)],
}

impl Replicas {
    /// Start `replicas` control planes on `store` (`etcd_members` members
    /// for etcd).
    pub(super) async fn start(
        launch: &Launch<'_>,
        store: StoreKind,
        replicas: usize,
        etcd_members: usize,
    ) -> Result<Replicas> {
        let etcd =
            match store {
                StoreKind::Redb => None,
                StoreKind::Etcd => Some(LocalEtcd::start(etcd_members).await.context(
                    "starting a local etcd (install etcd-server, or set WEFT_ETCD_BIN)",
                )?),
            };
        let mut extra = launch.extra.to_vec();
        if let Some(e) = &etcd {
            extra.extend(["--store".to_string(), e.store_url()]);
        }
        let mut started: Vec<ServerProcess> = Vec::new();
        let mut addrs = Vec::new();
        for i in 0..replicas {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
            let secret: Option<PathBuf> = started
                .first()
                .map(|s| s.state_dir().join("cluster-secret"));
            let mut server = ServerProcess::start(
                launch.bin,
                addr,
                launch.node_cidr,
                launch.log_level,
                &extra,
                launch.env,
                secret.as_deref(),
            )?;
            eprintln!(
                "weft-bench: control plane {} pid {} on {addr}, state dir {}",
                i + 1,
                server.pid(),
                server.state_dir().display()
            );
            server
                .wait_ready(Duration::from_secs(60))
                .await
                .with_context(|| format!("control plane {}", i + 1))?;
            started.push(server);
            addrs.push(addr);
        }
        let first = started.remove(0);
        Ok(Replicas {
            first,
            others: started,
            addrs,
            etcd,
        })
    }
}

/// Each of `servers`: its peak RSS now (0 if unreadable).
pub(super) fn peak_rss(servers: &[ServerProcess]) -> Vec<u64> {
    servers
        .iter()
        .map(|s| procfs::sample(s.pid()).map(|x| x.hwm_bytes).unwrap_or(0))
        .collect()
}

/// An error for each of `servers` that has exited.
pub(super) fn check_alive(servers: &mut [ServerProcess]) -> Vec<String> {
    servers
        .iter_mut()
        .filter_map(|s| s.check_alive().err().map(|e| format!("{e:#}")))
        .collect()
}

/// etcd's figures now, if the store is etcd.
pub(super) fn etcd_figures(etcd: Option<&LocalEtcd>) -> Option<EtcdFigures> {
    let etcd = etcd?;
    let peak_rss = (0..etcd.len())
        .map(|i| {
            etcd.pid(i)
                .and_then(|p| procfs::sample(p).ok())
                .map_or(0, |s| s.hwm_bytes)
        })
        .collect();
    Some(EtcdFigures {
        peak_rss,
        db_bytes: largest_db(etcd.dir()),
    })
}

/// The largest `member/snap/db` under `dir` (each member's data dir).
fn largest_db(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| {
            std::fs::metadata(e.path().join("member").join("snap").join("db"))
                .ok()
                .map(|m| m.len())
        })
        .max()
        .unwrap_or(0)
}

/// A port free on 127.0.0.1 right now.
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("finding a free port on 127.0.0.1")?;
    Ok(l.local_addr().context("reading the free port")?.port())
}
