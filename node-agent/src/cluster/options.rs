//! What the cluster client is started with: [`MembershipConfig`] (the
//! checked flags it needs) and [`Timing`] (its timeouts and retry delays).
//! Plain data; the agent's flags are parsed in `crate::agent::flags`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use weft_client::JoinToken;

use super::backoff::Backoff;

/// Timeouts and retry delays of the cluster client.
#[derive(Debug, Clone)]
pub struct Timing {
    /// First reconnect delay.
    pub backoff_initial: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// Bound on each unary call and on opening the watch.
    pub rpc_timeout: Duration,
    /// A watch with no event (not even a keepalive) for this long is
    /// considered dead and reopened.
    pub watch_idle_timeout: Duration,
    /// How long to gather changes before writing `peers.json`.
    pub persist_debounce: Duration,
    /// How often to re-apply the whole peer set after the sink failed.
    pub sink_retry: Duration,
    /// How long a first join (no identity in the state dir yet) may try
    /// before the agent gives up (`--join-timeout`); re-joins retry
    /// forever.
    pub first_join: Duration,
    /// At most how often `objects.json` is written while the cluster's
    /// objects change.
    pub view_persist: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(10),
            rpc_timeout: Duration::from_secs(10),
            watch_idle_timeout: Duration::from_secs(90),
            persist_debounce: Duration::from_millis(500),
            sink_retry: Duration::from_secs(5),
            first_join: Duration::from_secs(30),
            view_persist: Duration::from_secs(2),
        }
    }
}

impl Timing {
    pub(super) fn backoff(&self) -> Backoff {
        Backoff::new(self.backoff_initial, self.backoff_max)
    }
}

/// What the cluster client needs (the checked flags, minus the engine's).
#[derive(Debug, Clone)]
pub struct MembershipConfig {
    /// The control plane, `host:port`.
    pub control_plane: String,
    /// The join token: needed on first start; kept to re-join if the
    /// control plane removes the node.
    pub token: Option<JoinToken>,
    /// The cluster CA hash: needed on first start; checked against the
    /// stored CA on later starts.
    pub ca_hash: Option<String>,
    /// The node name.
    pub name: String,
    /// The underlay endpoint peers send to (`None`: dial out only).
    pub endpoint: Option<SocketAddr>,
    /// The state dir.
    pub state_dir: PathBuf,
    /// The overlay MTU (reported in the local API's node info).
    pub mtu: u32,
    /// The WireGuard UDP port (reported in the local API's node info).
    pub listen_port: u16,
    /// Timeouts and retry delays.
    pub timing: Timing,
}
