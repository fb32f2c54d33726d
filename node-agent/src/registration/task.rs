//! The registration task: follows the pods and the control-plane
//! connection, and makes the calls [`Registrations`] asks for.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use tokio::sync::watch;
use tonic::transport::Channel;
use tonic::Code;
use weft_agent_api::{PodRegistration, RegistrationInfo};
use weft_proto::v1::cluster_client::ClusterClient;
use weft_proto::v1::{RegisterPodRequest, SyncPodsRequest, UnregisterPodRequest};

use super::plan::{Next, Outcome, Registrations, Work};
use super::pod::documents;
use crate::cluster::Membership;
use crate::pods::{PodManager, PodRecord};
use crate::view::ObjectKey;

/// Where the task reads the node's pods: the [`PodManager`] (or a fake).
pub trait PodSource: Send + Sync + 'static {
    /// Every pod of the node now.
    fn pods(&self) -> BoxFuture<'_, Vec<PodRecord>>;
    /// A counter bumped after every change of the pods.
    fn changes(&self) -> watch::Receiver<u64>;
}

impl PodSource for PodManager {
    fn pods(&self) -> BoxFuture<'_, Vec<PodRecord>> {
        Box::pin(self.list())
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.subscribe()
    }
}

/// Retry delays and the bound of each call.
#[derive(Debug, Clone)]
pub struct RegistrationTiming {
    /// The first retry delay after a failure.
    pub initial: Duration,
    /// The longest retry delay.
    pub max: Duration,
    /// The bound of each call.
    pub rpc_timeout: Duration,
}

impl Default for RegistrationTiming {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            rpc_timeout: Duration::from_secs(10),
        }
    }
}

/// Where the registrations stand, for the local API: the summary and each
/// pod's state, as of the task's last step.
#[derive(Debug, Default)]
pub struct RegistrationStatus {
    inner: Mutex<(RegistrationInfo, BTreeMap<ObjectKey, PodRegistration>)>,
}

impl RegistrationStatus {
    /// An empty status (nothing known yet).
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, (RegistrationInfo, BTreeMap<ObjectKey, PodRegistration>)> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The summary.
    pub fn summary(&self) -> RegistrationInfo {
        self.lock().0.clone()
    }

    /// The state of the pod `namespace`/`name`.
    pub fn of(&self, namespace: &str, name: &str) -> Option<PodRegistration> {
        self.lock().1.get(&ObjectKey::new(namespace, name)).cloned()
    }

    fn publish(&self, plan: &Registrations) {
        let now = now();
        let wall = SystemTime::now();
        let unix_of = |t: Instant| {
            let at = wall
                .checked_sub(now.saturating_duration_since(t))
                .unwrap_or(wall);
            at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
        };
        *self.lock() = (plan.status(unix_of), plan.pod_states());
    }
}

/// Keeps the control plane's record of this node's pods in line with
/// `pods` until `stop` (see the module docs).
pub async fn run(
    core: Membership,
    pods: Arc<dyn PodSource>,
    status: Arc<RegistrationStatus>,
    timing: RegistrationTiming,
    mut stop: watch::Receiver<bool>,
) {
    let node = core.node().name;
    let mut plan = Registrations::new(timing.initial, timing.max);
    let mut pod_changes = pods.changes();
    let mut connections = core.connections();
    // The first round reads the pods whatever the counters say; a sync is
    // owed from the start anyway.
    let mut pods_changed = true;
    let mut reconnected = false;
    connections.borrow_and_update();
    loop {
        if *stop.borrow() {
            return;
        }
        // `changed()` below marks what it saw as seen: look at the flags,
        // and at anything that came meanwhile.
        if pods_changed || pod_changes.has_changed().unwrap_or(false) {
            pods_changed = false;
            pod_changes.borrow_and_update();
            let (docs, refused) = documents(&pods.pods().await, &node);
            for (key, why) in refused {
                tracing::warn!(pod = %key, %why, "not registering a pod the control plane would refuse");
            }
            plan.set_desired(docs);
        }
        if reconnected || connections.has_changed().unwrap_or(false) {
            reconnected = false;
            connections.borrow_and_update();
            plan.resync();
        }
        status.publish(&plan);
        match plan.next(now()) {
            Next::Call(work) => {
                let outcome = tokio::select! {
                    o = call(core.channel(), &work, timing.rpc_timeout) => o,
                    _ = stop.changed() => return,
                };
                log(&work, &outcome);
                let view = core.view();
                plan.complete(work, outcome, now(), || held_by(&view.current(), &node));
            }
            Next::Wait(until) => {
                let sleep = async {
                    match until {
                        Some(t) => {
                            tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await
                        }
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    r = pod_changes.changed() => match r {
                        Ok(()) => pods_changed = true,
                        Err(_) => return,
                    },
                    r = connections.changed() => match r {
                        Ok(()) => reconnected = true,
                        Err(_) => return,
                    },
                    _ = sleep => {}
                    _ = stop.changed() => return,
                }
            }
        }
    }
}

/// The runtime's clock (paused in tests), as the planner takes it.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// The pods the control plane holds for `node`, as the watch shows them.
fn held_by(view: &crate::view::ViewSnapshot, node: &str) -> BTreeSet<ObjectKey> {
    view.pods
        .iter()
        .filter(|(_, p)| p.spec.node_name == node)
        .map(|(k, _)| k.clone())
        .collect()
}

fn log(work: &Work, outcome: &Outcome) {
    let (what, pod) = match work {
        Work::Sync(pods) => {
            match outcome {
                Outcome::Done => {
                    tracing::info!(pods = pods.len(), "pods synced with the control plane")
                }
                Outcome::Unavailable(e) => {
                    tracing::debug!(error = %e, "pod sync did not go through; retrying")
                }
                Outcome::Refused(e) => {
                    tracing::warn!(error = %e, "the control plane refused the pod sync")
                }
            }
            return;
        }
        Work::Register(key, _) => ("registered", key),
        Work::Unregister(key) => ("unregistered", key),
    };
    match outcome {
        Outcome::Done => tracing::info!(pod = %pod, "pod {what}"),
        Outcome::Unavailable(e) => {
            tracing::debug!(pod = %pod, error = %e, "pod not {what} yet; retrying")
        }
        Outcome::Refused(e) => {
            tracing::warn!(pod = %pod, error = %e, "the control plane refused: pod not {what}; retrying")
        }
    }
}

/// Makes one call, bounded by `timeout`.
async fn call(channel: Channel, work: &Work, timeout: Duration) -> Outcome {
    let mut client = ClusterClient::new(channel);
    let answer = match work {
        Work::Sync(pods) => {
            let req = SyncPodsRequest {
                pods: pods.iter().map(|(_, d)| d.clone().into()).collect(),
            };
            tokio::time::timeout(timeout, client.sync_pods(req))
                .await
                .map(|r| r.map(|_| ()))
        }
        Work::Register(_, doc) => {
            let req = RegisterPodRequest {
                pod: doc.clone().into(),
            };
            tokio::time::timeout(timeout, client.register_pod(req))
                .await
                .map(|r| r.map(|_| ()))
        }
        Work::Unregister(key) => {
            let req = UnregisterPodRequest {
                namespace: key.namespace.clone(),
                name: key.name.clone(),
            };
            let answer = tokio::time::timeout(timeout, client.unregister_pod(req)).await;
            // Another node's pod now: nothing of ours to remove.
            match answer {
                Ok(Err(s)) if s.code() == Code::PermissionDenied => Ok(Ok(())),
                other => other.map(|r| r.map(|_| ())),
            }
        }
    };
    match answer {
        Err(_) => Outcome::Unavailable(format!("no answer within {timeout:?}")),
        Ok(Ok(())) => Outcome::Done,
        Ok(Err(s)) => {
            let msg = format!("{:?}: {}", s.code(), s.message());
            match s.code() {
                Code::InvalidArgument
                | Code::PermissionDenied
                | Code::FailedPrecondition
                | Code::AlreadyExists
                | Code::OutOfRange
                | Code::Unimplemented => Outcome::Refused(msg),
                _ => Outcome::Unavailable(msg),
            }
        }
    }
}
