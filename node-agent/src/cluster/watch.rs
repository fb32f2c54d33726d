//! The watch client and the two tasks that follow it: applying peer
//! changes to the sink, and persisting the peer set. The cluster's objects
//! in each response go to the [`crate::view::ViewFeed`].
//!
//! Contract:
//! - [`watch_loop`] keeps one `Watch` stream open, resuming from the last
//!   revision applied; `OUT_OF_RANGE` resets the revision so the next
//!   stream starts with a snapshot. A stream resumes from the older of the
//!   peer directory's and the cluster view's revisions. After a failure it waits with
//!   exponential backoff (reset by the first event of a stream); the peers
//!   stay as they are while the control plane is unreachable.
//! - [`apply_loop`] applies [`PeerAction`]s in order, in a span per peer.
//!   If the sink fails, it re-applies the whole set every `sink_retry`
//!   until it succeeds.
//! - [`persist_loop`] writes `peers.json` at most once per
//!   `persist_debounce`, and once more on stop.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tonic::Code;
use weft_proto::v1::cluster_client::ClusterClient;
use weft_proto::v1::{watch_event, WatchRequest, WatchResponse};

use super::peers::{PeerAction, PeerSink, PeerSinkError};
use super::state::Shared;
use super::statedir::ClusterSettings;

/// Why a watch stream ended.
#[derive(Debug)]
enum WatchEnd {
    Status(tonic::Status),
    Timeout(String),
    Ended,
    NewCredential,
    Stopped,
}

impl std::fmt::Display for WatchEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Status(s) => write!(f, "watch: {:?}: {}", s.code(), s.message()),
            Self::Timeout(s) => write!(f, "watch: {s}"),
            Self::Ended => write!(f, "watch: the control plane ended the stream"),
            Self::NewCredential => write!(f, "watch: reconnecting with the new node credential"),
            Self::Stopped => write!(f, "stopped"),
        }
    }
}

/// Keeps a watch open until `stop`.
pub(super) async fn watch_loop(
    shared: Arc<Shared>,
    actions: mpsc::Sender<PeerAction>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = shared.cfg.timing.backoff();
    let mut gen = shared.channel_gen.subscribe();
    loop {
        if *stop.borrow() {
            return;
        }
        gen.borrow_and_update();
        shared.with(|s| s.connection.watch_attempts += 1);
        let end = tokio::select! {
            end = stream_once(&shared, &actions, &mut backoff) => end,
            _ = stop.changed() => WatchEnd::Stopped,
            _ = gen.changed() => WatchEnd::NewCredential,
        };
        shared.with(|s| s.connection.connected = false);
        match end {
            WatchEnd::Stopped => return,
            WatchEnd::NewCredential => {
                tracing::info!("reconnecting the watch with the new node credential");
                continue;
            }
            _ => {}
        }
        let failures = shared.with(|s| {
            s.connection.watch_failures += 1;
            s.connection.last_error = Some(end.to_string());
            s.connection.watch_failures
        });
        match &end {
            WatchEnd::Status(s) if s.code() == Code::OutOfRange => {
                tracing::info!(error = %end, "the resume revision is gone; watching again from a fresh snapshot");
                shared.reset_revision();
            }
            WatchEnd::Status(s)
                if matches!(s.code(), Code::Unauthenticated | Code::PermissionDenied) =>
            {
                tracing::error!(error = %end, "the control plane rejected this node's credential; if the control plane's \
                    state was reset, remove the agent's state dir and join again with a new token");
            }
            _ if failures.is_power_of_two() => {
                tracing::warn!(error = %end, failures, "watch failed; keeping the last known peers and reconnecting");
            }
            _ => tracing::debug!(error = %end, failures, "watch failed again"),
        }
        let delay = backoff.next_delay();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => return,
        }
    }
}

/// One watch stream, from opening it until it fails.
async fn stream_once(
    shared: &Shared,
    actions: &mpsc::Sender<PeerAction>,
    backoff: &mut super::backoff::Backoff,
) -> WatchEnd {
    let t = &shared.cfg.timing;
    let resume = shared.resume_revision();
    let mut client = ClusterClient::new(shared.channel());
    let opened = tokio::time::timeout(
        t.rpc_timeout,
        client.watch(WatchRequest {
            resume_revision: resume,
        }),
    )
    .await;
    let mut stream = match opened {
        Err(_) => return WatchEnd::Timeout(format!("opening timed out after {:?}", t.rpc_timeout)),
        Ok(Err(s)) => return WatchEnd::Status(s),
        Ok(Ok(r)) => r.into_inner(),
    };
    tracing::debug!(resume, "watch opened");
    // The control plane accepted the stream: the link is up (a resumed
    // stream may stay silent until the next change or keepalive).
    shared.with(|s| {
        let link = &mut s.connection;
        if link.watch_failures > 0 {
            tracing::info!(resume, "watch connected again");
        }
        link.connected = true;
        link.watch_failures = 0;
        if !link.removed {
            link.last_error = None;
        }
    });
    shared.watch_opened.send_modify(|n| *n = n.wrapping_add(1));
    let mut first = true;
    loop {
        let ev = match tokio::time::timeout(t.watch_idle_timeout, stream.message()).await {
            Err(_) => {
                return end(
                    shared,
                    WatchEnd::Timeout(format!("no event for {:?}", t.watch_idle_timeout)),
                )
            }
            Ok(Err(s)) => return end(shared, WatchEnd::Status(s)),
            Ok(Ok(None)) => return end(shared, WatchEnd::Ended),
            Ok(Ok(Some(ev))) => ev,
        };
        if first {
            // Only a stream that delivers resets the backoff, so a control
            // plane that accepts and then fails streams is not hammered.
            first = false;
            backoff.reset();
        }
        handle_event(shared, &ev, actions).await;
    }
}

/// A stream ended: a snapshot whose parts stopped coming is dropped.
fn end(shared: &Shared, why: WatchEnd) -> WatchEnd {
    shared.with(|s| s.peers.abandon_partial());
    shared.view.abandon_partial();
    why
}

/// Applies one response (all its events under one lock, so the persisted
/// revision never falls inside a store transaction) and hands the actions
/// to the applier.
async fn handle_event(shared: &Shared, resp: &WatchResponse, actions: &mpsc::Sender<PeerAction>) {
    let mut all = Vec::new();
    let mut changed = false;
    let mut me_changed = None;
    let mut settings = None;
    shared.with(|s| {
        let table = &mut s.peers;
        for ev in &resp.events {
            if let Some(watch_event::Event::Snapshot(s)) = &ev.event {
                tracing::debug!(
                    revision = ev.revision,
                    nodes = s.nodes.len(),
                    objects = s.objects.len(),
                    more = s.more,
                    "watch snapshot part"
                );
                if s.settings.is_some() {
                    settings = s.settings.clone();
                }
            }
            let applied = table.apply(ev);
            if matches!(&ev.event, Some(watch_event::Event::Snapshot(s)) if !s.more) {
                tracing::info!(
                    revision = ev.revision,
                    peers = table.records().len(),
                    "watch snapshot applied"
                );
            }
            all.extend(applied.actions);
            changed |= applied.changed;
            if let Some(me) = applied.me {
                if me.is_none() {
                    tracing::warn!(
                        revision = ev.revision,
                        "this node is no longer in the cluster; checking its lease"
                    );
                }
                me_changed = Some(me);
            }
        }
    });
    // The objects of the same response, under the view's own lock.
    shared.view.apply(&resp.events);
    if let Some(s) = &settings {
        update_settings(shared, s);
    }
    for action in all {
        if actions.send(action).await.is_err() {
            return;
        }
    }
    if changed {
        shared.mark_dirty();
    }
    if me_changed.is_some() {
        shared.renew_now.notify_one();
    }
}

/// Keeps `node.json`'s copy of the cluster settings current.
fn update_settings(shared: &Shared, proto: &weft_proto::v1::ClusterSettings) {
    let settings = match ClusterSettings::from_proto(proto) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "ignoring unusable cluster settings in the snapshot");
            return;
        }
    };
    let node = shared.with(|s| {
        if s.node.settings == settings {
            return None;
        }
        let old = std::mem::replace(&mut s.node.settings, settings.clone());
        Some((old, s.node.clone()))
    });
    let Some((old, node)) = node else {
        return;
    };
    if old.cluster_cidr != settings.cluster_cidr || old.service_cidr != settings.service_cidr {
        tracing::warn!(old_cluster = %old.cluster_cidr, new_cluster = %settings.cluster_cidr,
            old_service = %old.service_cidr, new_service = %settings.service_cidr,
            "the cluster's CIDRs changed; restart the agent to route them");
    } else {
        tracing::info!("the cluster settings changed");
    }
    if let Err(e) = node.save(&shared.paths.node()) {
        tracing::warn!(error = %e, "cannot update node.json");
    }
}

/// Applies peer actions to the sink, in order, until `stop`.
pub(super) async fn apply_loop(
    shared: Arc<Shared>,
    sink: Arc<dyn PeerSink>,
    mut actions: mpsc::Receiver<PeerAction>,
    mut stop: watch::Receiver<bool>,
) {
    let mut needs_resync = false;
    let mut retry =
        tokio::time::interval(shared.cfg.timing.sink_retry.max(Duration::from_millis(10)));
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let action = tokio::select! {
            a = actions.recv() => match a {
                Some(a) => a,
                None => return,
            },
            _ = retry.tick(), if needs_resync => PeerAction::SetAll(shared.with(|s| s.peers.specs())),
            _ = stop.changed() => return,
        };
        let whole = matches!(action, PeerAction::SetAll(_));
        match apply(sink.as_ref(), action).await {
            Ok(()) => {
                if whole {
                    needs_resync = false;
                }
            }
            Err(e) => {
                if !needs_resync {
                    tracing::warn!(error = %e, retry_in = ?shared.cfg.timing.sink_retry, "the data plane did not take a peer change; re-applying the whole set until it does");
                }
                needs_resync = true;
                retry.reset();
            }
        }
    }
}

async fn apply(sink: &dyn PeerSink, action: PeerAction) -> Result<(), PeerSinkError> {
    use tracing::Instrument as _;
    match action {
        PeerAction::SetAll(peers) => {
            tracing::debug!(peers = peers.len(), "setting the whole peer set");
            sink.set_peers(peers).await
        }
        PeerAction::Set(peer) => {
            let span = tracing::info_span!("peer", peer = %peer.name);
            async {
                tracing::info!(endpoint = ?peer.endpoint, allowed = ?peer.allowed, "peer set");
                sink.set_peer(peer).await
            }
            .instrument(span)
            .await
        }
        PeerAction::Remove(name) => {
            let span = tracing::info_span!("peer", peer = %name);
            async {
                tracing::info!("peer removed");
                sink.remove_peer(name).await
            }
            .instrument(span)
            .await
        }
    }
}

/// Writes `peers.json` after changes, debounced, until `stop`.
pub(super) async fn persist_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = shared.persist_now.notified() => {}
            _ = stop.changed() => break,
        }
        tokio::select! {
            _ = tokio::time::sleep(shared.cfg.timing.persist_debounce) => {}
            _ = stop.changed() => break,
        }
        if shared.is_dirty() {
            let s = shared.clone();
            // A small file, but still blocking IO with fsyncs.
            let _ = tokio::task::spawn_blocking(move || s.persist()).await;
        }
    }
    shared.persist();
}
