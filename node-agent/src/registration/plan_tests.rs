//! The registration planner: sync first, then removals and registrations,
//! backoff per pod, resync on reconnect, and the refused-sync fallback.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use weft_agent_api::RegistrationState;

use super::*;

const INITIAL: Duration = Duration::from_millis(100);
const MAX: Duration = Duration::from_secs(2);

fn key(name: &str) -> ObjectKey {
    ObjectKey::new("shop", name)
}

fn desired(pods: &[(&str, &str)]) -> BTreeMap<ObjectKey, Vec<u8>> {
    pods.iter()
        .map(|(n, d)| (key(n), d.as_bytes().to_vec()))
        .collect()
}

fn none() -> BTreeSet<ObjectKey> {
    BTreeSet::new()
}

fn call(r: &Registrations, now: Instant) -> Work {
    match r.next(now) {
        Next::Call(w) => w,
        Next::Wait(w) => panic!("expected a call, got a wait until {w:?}"),
    }
}

fn state(r: &Registrations, name: &str) -> RegistrationState {
    r.pod_state(&key(name)).unwrap().state
}

#[test]
fn a_sync_comes_first_then_changes_one_by_one() {
    let t0 = Instant::now();
    let mut r = Registrations::new(INITIAL, MAX);
    r.set_desired(desired(&[("a", "A1"), ("b", "B1")]));
    assert_eq!(state(&r, "a"), RegistrationState::Pending);
    let sync = call(&r, t0);
    assert_eq!(
        sync,
        Work::Sync(vec![(key("a"), b"A1".to_vec()), (key("b"), b"B1".to_vec())])
    );
    r.complete(sync, Outcome::Done, t0, none);
    assert_eq!(r.next(t0), Next::Wait(None));
    assert_eq!(state(&r, "a"), RegistrationState::Registered);
    let info = r.status(|_| 7);
    assert_eq!((info.registered, info.pending, info.failed), (2, 0, 0));
    assert_eq!(info.last_sync_unix, Some(7));

    // a pod changes, one goes, one comes.
    r.set_desired(desired(&[("a", "A2"), ("c", "C1")]));
    assert_eq!(call(&r, t0), Work::Unregister(key("b")));
    r.complete(Work::Unregister(key("b")), Outcome::Done, t0, none);
    assert_eq!(call(&r, t0), Work::Register(key("a"), b"A2".to_vec()));
    r.complete(
        Work::Register(key("a"), b"A2".to_vec()),
        Outcome::Done,
        t0,
        none,
    );
    assert_eq!(call(&r, t0), Work::Register(key("c"), b"C1".to_vec()));
    r.complete(
        Work::Register(key("c"), b"C1".to_vec()),
        Outcome::Done,
        t0,
        none,
    );
    assert_eq!(r.next(t0), Next::Wait(None));
    assert!(r.pod_state(&key("b")).is_none());
}

#[test]
fn failures_back_off_per_pod_and_show_in_the_status() {
    let t0 = Instant::now();
    let mut r = Registrations::new(INITIAL, MAX);
    r.set_desired(desired(&[("a", "A"), ("b", "B")]));
    let sync = call(&r, t0);
    r.complete(sync, Outcome::Done, t0, none);
    r.set_desired(desired(&[("a", "A2"), ("b", "B2")]));

    let w = call(&r, t0);
    assert_eq!(w, Work::Register(key("a"), b"A2".to_vec()));
    r.complete(w, Outcome::Refused("pod_ip: bad".into()), t0, none);
    // a waits; b goes meanwhile.
    let w = call(&r, t0);
    assert_eq!(w, Work::Register(key("b"), b"B2".to_vec()));
    r.complete(
        w,
        Outcome::Unavailable("connection refused".into()),
        t0,
        none,
    );
    assert_eq!(r.next(t0), Next::Wait(Some(t0 + INITIAL)));
    let a = r.pod_state(&key("a")).unwrap();
    assert_eq!(a.state, RegistrationState::Failed);
    assert_eq!((a.failures, a.error.as_deref()), (1, Some("pod_ip: bad")));
    let info = r.status(|_| 0);
    assert_eq!((info.registered, info.failed), (0, 2));
    assert_eq!(info.problems.len(), 2);
    assert_eq!(info.problems[0].action, "register");
    assert_eq!(info.problems[0].name, "a");

    // The backoff doubles up to the maximum.
    let mut now = t0 + INITIAL;
    for expect in [200, 400, 800, 1600, 2000, 2000] {
        let w = call(&r, now);
        assert_eq!(w, Work::Register(key("a"), b"A2".to_vec()));
        r.complete(w, Outcome::Unavailable("down".into()), now, none);
        let w = call(&r, now);
        r.complete(w, Outcome::Unavailable("down".into()), now, none);
        assert_eq!(
            r.next(now),
            Next::Wait(Some(now + Duration::from_millis(expect)))
        );
        now += Duration::from_millis(expect);
    }
    let w = call(&r, now);
    r.complete(w, Outcome::Done, now, none);
    assert_eq!(state(&r, "a"), RegistrationState::Registered);
    assert_eq!(state(&r, "b"), RegistrationState::Failed);
}

#[test]
fn a_reconnect_owes_a_sync_at_once_and_nothing_else_goes_before_it() {
    let t0 = Instant::now();
    let mut r = Registrations::new(INITIAL, MAX);
    r.set_desired(desired(&[("a", "A")]));
    let sync = call(&r, t0);
    r.complete(
        sync.clone(),
        Outcome::Unavailable("no route".into()),
        t0,
        none,
    );
    assert_eq!(r.next(t0), Next::Wait(Some(t0 + INITIAL)));
    assert_eq!(state(&r, "a"), RegistrationState::Failed);
    let info = r.status(|_| 0);
    assert_eq!(info.problems[0].action, "sync");
    // A pod added meanwhile does not go before the sync.
    r.set_desired(desired(&[("a", "A"), ("b", "B")]));
    assert!(matches!(r.next(t0), Next::Wait(Some(_))));
    // The watch connected: the sync goes now, with both.
    r.resync();
    let sync = call(&r, t0);
    assert_eq!(
        sync,
        Work::Sync(vec![(key("a"), b"A".to_vec()), (key("b"), b"B".to_vec())])
    );
    // A pod deleted while the sync was out is removed after it.
    r.set_desired(desired(&[("b", "B")]));
    r.complete(sync, Outcome::Done, t0, none);
    assert_eq!(call(&r, t0), Work::Unregister(key("a")));
    r.complete(Work::Unregister(key("a")), Outcome::Done, t0, none);
    assert_eq!(r.next(t0), Next::Wait(None));

    // After a reconnect the registered pods stay registered until the sync.
    r.resync();
    assert_eq!(state(&r, "b"), RegistrationState::Registered);
    assert!(matches!(call(&r, t0), Work::Sync(_)));
}

#[test]
fn a_refused_sync_falls_back_to_one_by_one_and_removes_what_the_watch_shows() {
    let t0 = Instant::now();
    let mut r = Registrations::new(INITIAL, MAX);
    r.set_desired(desired(&[("a", "A"), ("b", "B")]));
    let sync = call(&r, t0);
    r.complete(sync, Outcome::Refused("too many pods".into()), t0, || {
        [key("a"), key("old")].into_iter().collect()
    });
    assert_eq!(call(&r, t0), Work::Unregister(key("old")));
    r.complete(Work::Unregister(key("old")), Outcome::Done, t0, none);
    assert_eq!(call(&r, t0), Work::Register(key("a"), b"A".to_vec()));
    r.complete(
        Work::Register(key("a"), b"A".to_vec()),
        Outcome::Done,
        t0,
        none,
    );
    assert_eq!(call(&r, t0), Work::Register(key("b"), b"B".to_vec()));
    // Deleted while its registration was out: it is removed again.
    r.set_desired(desired(&[("a", "A")]));
    r.complete(
        Work::Register(key("b"), b"B".to_vec()),
        Outcome::Done,
        t0,
        none,
    );
    assert_eq!(call(&r, t0), Work::Unregister(key("b")));
    r.complete(Work::Unregister(key("b")), Outcome::Done, t0, none);
    assert_eq!(r.next(t0), Next::Wait(None));
    let info = r.status(|_| 0);
    assert_eq!((info.registered, info.pending, info.failed), (1, 0, 0));
}
