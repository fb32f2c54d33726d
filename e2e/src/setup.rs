//! Bringing lab clusters up for a test, and waiting on them.
//!
//! # The binaries
//!
//! The lab runs `weft-control-plane` and `weft-agent`, binaries of other
//! packages that `cargo test -p weft-e2e` does not build. So [`binaries`]
//! runs, once per test process, `cargo build --bins -p weft-control-plane
//! -p weft-node-agent` into the profile directory that holds the running
//! test (`target/<profile>/deps/..`), with the `cargo` that runs the tests
//! (`$CARGO`): a no-op when they are fresh, a build when they are missing
//! or stale, so a test never runs an old agent.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use weft_agent_api::StatusResult;
use weft_lab::{build_binaries_once, profile_dir, Binaries, ClusterGuard, ClusterSpec};

use crate::{E2eError, Result};

/// How often the waits here poll.
pub const POLL: Duration = Duration::from_millis(50);

/// Fails unless this process runs as root: the tests need network
/// namespaces, veths, TUN devices and raw sockets. A failure, never a skip.
pub fn require_root() -> Result<()> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(E2eError::failed(
            "the e2e tests need root (network namespaces, TUN devices, raw sockets); \
             run them as root, e.g. sudo ./scripts/test-all",
        ))
    }
}

/// `weft-control-plane` and `weft-agent`, built once per test process next
/// to the running test (see the module docs).
pub fn binaries() -> Result<Binaries> {
    let dir = profile_dir().map_err(|e| E2eError::failed(e.to_string()))?;
    build_binaries_once(&dir).map_err(E2eError::Failed)
}

/// A lab name unique to this test process: `<tag><pid>` (tags are short, so
/// the name stays within the lab's 20 bytes).
pub fn unique(tag: &str) -> String {
    format!("{tag}{}", std::process::id())
}

/// The spec of a cluster of `nodes` nodes with `pods_per_node` pods each,
/// named [`unique`]`(tag)`, running the [`binaries`].
pub fn spec(tag: &str, nodes: usize, pods_per_node: usize) -> Result<ClusterSpec> {
    let mut spec = ClusterSpec::new(&unique(tag), nodes, pods_per_node)?;
    spec.binaries = Some(binaries()?);
    Ok(spec)
}

/// Brings `spec` up under a guard that tears the lab down when dropped,
/// also when the test panics.
pub fn up(spec: ClusterSpec) -> Result<ClusterGuard> {
    require_root()?;
    Ok(ClusterGuard::up(spec)?)
}

/// Calls `probe` every [`POLL`] until it returns `Ok`, for at most
/// `timeout`; then fails with `what` and the last `Err` it returned.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> std::result::Result<T, String>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        match probe() {
            Ok(value) => return Ok(value),
            Err(last) if Instant::now() >= deadline => {
                return Err(E2eError::Timeout {
                    what: what.to_string(),
                    timeout,
                    last,
                })
            }
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// The drop counter `reason` (`spoofed_pod_source`, ...) of an agent's
/// status; 0 when it has not counted any, or has no data plane.
pub fn drop_count(status: &StatusResult, reason: &str) -> u64 {
    status
        .dataplane
        .as_ref()
        .and_then(|dp| dp.drops.iter().find(|d| d.reason == reason))
        .map_or(0, |d| d.count)
}

/// The names of an agent's peers, from its status (empty without a data
/// plane).
pub fn peer_names(status: &StatusResult) -> BTreeSet<String> {
    status
        .dataplane
        .as_ref()
        .map(|dp| dp.peers.iter().map(|p| p.name.clone()).collect())
        .unwrap_or_default()
}

/// Prints how long each phase of a test took, to stderr (shown with
/// `--nocapture`, and with a failing test's output).
#[derive(Debug)]
pub struct Stopwatch {
    test: &'static str,
    start: Instant,
    lap: Instant,
}

impl Stopwatch {
    /// Starts timing `test`.
    pub fn start(test: &'static str) -> Self {
        let now = Instant::now();
        Self {
            test,
            start: now,
            lap: now,
        }
    }

    /// Prints the time since the last lap (and since the start) for `phase`.
    pub fn lap(&mut self, phase: &str) {
        let now = Instant::now();
        eprintln!(
            "[{}] {phase}: {:.1?} (total {:.1?})",
            self.test,
            now - self.lap,
            now - self.start
        );
        self.lap = now;
    }
}
