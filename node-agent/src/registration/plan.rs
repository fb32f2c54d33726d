//! [`Registrations`]: which calls bring the control plane's record of this
//! node's pods in line with the pods the node runs (sans-IO: time is an
//! argument, calls are [`Work`] items handed out and completed).
//!
//! Contract:
//! - The desired set is every local pod's document ([`Registrations::set_desired`]).
//!   What the control plane holds is what the last successful calls left
//!   there ([`Registrations::complete`]).
//! - A whole-node [`Work::Sync`] comes first whenever one is needed: at
//!   start and after every (re)connection ([`Registrations::resync`]),
//!   since the control plane may have lost or removed pods meanwhile
//!   (a restart, a node that expired). No other call goes out while a sync
//!   is owed.
//! - Then [`Work::Unregister`] for pods the control plane holds that the
//!   node no longer runs, and [`Work::Register`] for pods whose document the
//!   control plane does not have as it is.
//! - A failed call is retried after a backoff that doubles per failure of
//!   that pod (or of the sync) up to `max`; a new connection retries the
//!   sync at once. A sync the control plane refuses (not merely could not
//!   take) falls back to pod-by-pod calls, removing the pods the caller
//!   says the control plane holds for this node.
//! - [`Registrations::status`] tells every pod's state and the failures.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use weft_agent_api::{PodRegistration, RegistrationInfo, RegistrationProblem, RegistrationState};

use crate::view::ObjectKey;

/// At most this many failures are listed in [`RegistrationInfo::problems`].
pub(super) const MAX_PROBLEMS: usize = 16;

/// One call to the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    /// `SyncPods`: these are all of the node's pods.
    Sync(Vec<(ObjectKey, Vec<u8>)>),
    /// `RegisterPod` with this document.
    Register(ObjectKey, Vec<u8>),
    /// `UnregisterPod`.
    Unregister(ObjectKey),
}

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It went through.
    Done,
    /// The control plane could not take it now (unreachable, unavailable,
    /// timed out): retry.
    Unavailable(String),
    /// The control plane refused it (invalid, not allowed): retried too,
    /// but a refused sync falls back to pod-by-pod calls.
    Refused(String),
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Make this call, then [`Registrations::complete`] it.
    Call(Work),
    /// Nothing is due before this instant (`None`: nothing at all).
    Wait(Option<Instant>),
}

#[derive(Debug, Clone)]
struct Failure {
    count: u32,
    error: String,
    retry_at: Instant,
}

/// Whether a key's failure is about registering or removing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    Register,
    Unregister,
}

/// The registrations of one node's pods.
#[derive(Debug, Clone)]
pub struct Registrations {
    initial: Duration,
    max: Duration,
    desired: BTreeMap<ObjectKey, Vec<u8>>,
    /// What the control plane holds, as the last successful calls left it.
    registered: BTreeMap<ObjectKey, Vec<u8>>,
    /// Pods it may hold that the node does not run (to unregister).
    stale: BTreeSet<ObjectKey>,
    failures: BTreeMap<(ObjectKey, Action), Failure>,
    sync_needed: bool,
    sync_failure: Option<Failure>,
    /// When the last sync went through.
    last_sync: Option<Instant>,
}

impl Registrations {
    /// Nothing registered yet; a sync is owed. Retries back off from
    /// `initial`, doubling, up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
            desired: BTreeMap::new(),
            registered: BTreeMap::new(),
            stale: BTreeSet::new(),
            failures: BTreeMap::new(),
            sync_needed: true,
            sync_failure: None,
            last_sync: None,
        }
    }

    /// The pods the node runs now, by cluster name, with their documents.
    pub fn set_desired(&mut self, desired: BTreeMap<ObjectKey, Vec<u8>>) {
        for key in self.registered.keys() {
            if !desired.contains_key(key) {
                self.stale.insert(key.clone());
            }
        }
        self.stale.retain(|k| !desired.contains_key(k));
        let keep = |(k, a): &(ObjectKey, Action)| match a {
            Action::Register => desired.contains_key(k),
            Action::Unregister => !desired.contains_key(k),
        };
        self.failures.retain(|k, _| keep(k));
        self.desired = desired;
    }

    /// The control plane was (re)connected: sync the whole set, now.
    pub fn resync(&mut self) {
        self.sync_needed = true;
        self.sync_failure = None;
    }

    fn backoff(&self, count: u32) -> Duration {
        let exp = count.saturating_sub(1).min(16);
        self.initial.saturating_mul(1 << exp).min(self.max)
    }

    /// The next call due at `now`, or how long to wait.
    pub fn next(&self, now: Instant) -> Next {
        if self.sync_needed {
            return match &self.sync_failure {
                Some(f) if f.retry_at > now => Next::Wait(Some(f.retry_at)),
                _ => Next::Call(Work::Sync(
                    self.desired
                        .iter()
                        .map(|(k, d)| (k.clone(), d.clone()))
                        .collect(),
                )),
            };
        }
        let mut wake: Option<Instant> = None;
        let mut due = |key: &ObjectKey, action: Action| -> bool {
            match self.failures.get(&(key.clone(), action)) {
                Some(f) if f.retry_at > now => {
                    wake = Some(wake.map_or(f.retry_at, |w| w.min(f.retry_at)));
                    false
                }
                _ => true,
            }
        };
        for key in &self.stale {
            if due(key, Action::Unregister) {
                return Next::Call(Work::Unregister(key.clone()));
            }
        }
        for (key, doc) in &self.desired {
            if self.registered.get(key) != Some(doc) && due(key, Action::Register) {
                return Next::Call(Work::Register(key.clone(), doc.clone()));
            }
        }
        Next::Wait(wake)
    }

    /// Records how `work` ended at `now`. For a refused sync,
    /// `held_by_node` is what the control plane holds for this node as far
    /// as the caller knows (its watch): those the node does not run are
    /// removed one by one.
    pub fn complete(
        &mut self,
        work: Work,
        outcome: Outcome,
        now: Instant,
        held_by_node: impl FnOnce() -> BTreeSet<ObjectKey>,
    ) {
        match (work, outcome) {
            (Work::Sync(sent), Outcome::Done) => {
                self.registered = sent.into_iter().collect();
                self.stale = self
                    .registered
                    .keys()
                    .filter(|k| !self.desired.contains_key(*k))
                    .cloned()
                    .collect();
                self.failures.clear();
                self.sync_needed = false;
                self.sync_failure = None;
                self.last_sync = Some(now);
            }
            (Work::Sync(_), Outcome::Refused(error)) => {
                tracing::warn!(%error, "the control plane refused this node's pod sync; registering the pods one by one");
                self.sync_needed = false;
                self.sync_failure = None;
                self.registered.clear();
                self.stale = held_by_node()
                    .into_iter()
                    .filter(|k| !self.desired.contains_key(k))
                    .collect();
            }
            (Work::Sync(_), Outcome::Unavailable(error)) => {
                let count = self.sync_failure.as_ref().map_or(0, |f| f.count) + 1;
                self.sync_failure = Some(Failure {
                    count,
                    retry_at: now + self.backoff(count),
                    error,
                });
            }
            (Work::Register(key, doc), Outcome::Done) => {
                self.failures.remove(&(key.clone(), Action::Register));
                // Deleted while the call was out: it goes again.
                if !self.desired.contains_key(&key) {
                    self.stale.insert(key.clone());
                }
                self.registered.insert(key, doc);
            }
            (Work::Unregister(key), Outcome::Done) => {
                self.failures.remove(&(key.clone(), Action::Unregister));
                self.registered.remove(&key);
                self.stale.remove(&key);
            }
            (Work::Register(key, _), Outcome::Unavailable(error) | Outcome::Refused(error)) => {
                self.fail(key, Action::Register, error, now);
            }
            (Work::Unregister(key), Outcome::Unavailable(error) | Outcome::Refused(error)) => {
                self.fail(key, Action::Unregister, error, now);
            }
        }
    }

    fn fail(&mut self, key: ObjectKey, action: Action, error: String, now: Instant) {
        let count = self
            .failures
            .get(&(key.clone(), action))
            .map_or(0, |f| f.count)
            + 1;
        let retry_at = now + self.backoff(count);
        self.failures.insert(
            (key, action),
            Failure {
                count,
                error,
                retry_at,
            },
        );
    }

    /// The state of the pod `key` (if the node runs it).
    pub fn pod_state(&self, key: &ObjectKey) -> Option<PodRegistration> {
        let doc = self.desired.get(key)?;
        if self.registered.get(key) == Some(doc) {
            return Some(PodRegistration {
                state: RegistrationState::Registered,
                failures: 0,
                error: None,
            });
        }
        let failure = self
            .failures
            .get(&(key.clone(), Action::Register))
            .or(self.sync_failure.as_ref().filter(|_| self.sync_needed));
        Some(match failure {
            Some(f) => PodRegistration {
                state: RegistrationState::Failed,
                failures: f.count,
                error: Some(f.error.clone()),
            },
            None => PodRegistration {
                state: RegistrationState::Pending,
                failures: 0,
                error: None,
            },
        })
    }

    /// Every pod's state, by cluster name.
    pub fn pod_states(&self) -> BTreeMap<ObjectKey, PodRegistration> {
        self.desired
            .keys()
            .filter_map(|k| Some((k.clone(), self.pod_state(k)?)))
            .collect()
    }

    /// The summary `status` shows; `since_sync` turns the last sync's
    /// instant into Unix seconds.
    pub fn status(&self, unix_of: impl Fn(Instant) -> u64) -> RegistrationInfo {
        let mut info = RegistrationInfo {
            last_sync_unix: self.last_sync.map(&unix_of),
            ..RegistrationInfo::default()
        };
        for state in self.pod_states().values() {
            match state.state {
                RegistrationState::Registered => info.registered += 1,
                RegistrationState::Pending => info.pending += 1,
                RegistrationState::Failed => info.failed += 1,
            }
        }
        for key in &self.stale {
            if self
                .failures
                .contains_key(&(key.clone(), Action::Unregister))
            {
                info.failed += 1;
            } else {
                info.pending += 1;
            }
        }
        if let (true, Some(f)) = (self.sync_needed, &self.sync_failure) {
            info.problems.push(RegistrationProblem {
                namespace: String::new(),
                name: String::new(),
                action: "sync".into(),
                failures: f.count,
                error: f.error.clone(),
            });
        }
        for ((key, action), f) in &self.failures {
            if info.problems.len() >= MAX_PROBLEMS {
                break;
            }
            info.problems.push(RegistrationProblem {
                namespace: key.namespace.clone(),
                name: key.name.clone(),
                action: match action {
                    Action::Register => "register",
                    Action::Unregister => "unregister",
                }
                .into(),
                failures: f.count,
                error: f.error.clone(),
            });
        }
        info
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
