//! Controllers: the work only the leading replica does on the cluster's
//! objects, kept in step with the store through the [`Feed`].
//!
//! Contract:
//! - Derived EndpointSlices ([`endpoints`]) and LoadBalancer ingress
//!   ([`load_balancer`]) follow every change to pods, Services, nodes and
//!   namespaces: a change marks what it affects dirty, and dirty work is
//!   done [`DEBOUNCE`] after the first change of a quiet spell (sooner
//!   than that is wasted on bursts; a pod registered reaches the slices
//!   well under a second later). While changes keep coming, a reconcile
//!   waits [`pace`] after the one before (longer the more Services that
//!   one had to derive, at most [`MAX_PACE`]), so a busy stretch (a node
//!   registering its pods, many nodes at once) derives each Service's
//!   slices once per round for all the changes of the round, not once
//!   per change.
//! - Writes happen only when something differs, packed into transactions
//!   of at most [`MAX_OPS`] operations (or what the store allows), each
//!   comparing the revisions the plan read. A transaction that fails a
//!   compare is planned again once the view has caught up with the store.
//! - The controllers stop when their leadership term ends, and start over
//!   from a fresh snapshot in the next term.
//!
//! Files: `view.rs` (the decoded view), `index.rs` (its label indexes),
//! `endpoints.rs`, `load_balancer.rs`.

pub mod endpoints;
pub mod index;
pub mod load_balancer;
pub mod view;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::TryRecvError;

use crate::feed::Feed;
use crate::objects::Writes;
use crate::registry::RegistryError;
use crate::store::{Revision, Store};
use view::{Dirty, View};

/// Wait after the first change of a quiet spell before reconciling.
pub const DEBOUNCE: Duration = Duration::from_millis(50);
/// Longest wait between two reconciles while changes keep coming.
pub const MAX_PACE: Duration = Duration::from_millis(300);
/// Wait between reconciles per Service the first one derived.
const PACE_PER_SERVICE: Duration = Duration::from_millis(2);
/// Most operations in one controller transaction.
pub const MAX_OPS: usize = 128;
/// Pause after the store failed.
const RETRY: Duration = Duration::from_millis(500);
/// Longest wait for the view to catch up after a lost race.
const CATCH_UP: Duration = Duration::from_secs(5);

/// Run the controllers until `ended` resolves (the end of a leadership
/// term, or the server stopping).
pub async fn run(
    feed: Arc<Feed>,
    store: Arc<dyn Store>,
    ended: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(ended);
    loop {
        tokio::select! {
            _ = &mut ended => return,
            _ = run_subscription(&feed, &store) => {}
        }
        tokio::select! {
            _ = &mut ended => return,
            _ = tokio::time::sleep(RETRY) => {}
        }
    }
}

/// One subscription to the feed: returns when it ends.
async fn run_subscription(feed: &Feed, store: &Arc<dyn Store>) {
    let sub = match feed.subscribe(0).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "controllers cannot read the feed yet");
            return;
        }
    };
    let Some(frozen) = sub.snapshot else {
        return;
    };
    let (mut view, mut dirty) = View::load(&frozen.items);
    for b in &sub.backlog {
        view.apply(b, &mut dirty);
    }
    let mut live = sub.live;
    // No reconcile before this (see `pace`).
    let mut not_before = tokio::time::Instant::now();
    tracing::info!(
        revision = frozen.revision,
        services = view.services.len(),
        "controllers started"
    );
    loop {
        loop {
            match live.try_recv() {
                Ok(b) => view.apply(&b, &mut dirty),
                Err(TryRecvError::Empty) => break,
                Err(_) => return,
            }
        }
        if dirty.services.is_empty() && !dirty.ingress {
            match live.recv().await {
                Ok(b) => view.apply(&b, &mut dirty),
                Err(_) => return,
            }
            let debounced = tokio::time::Instant::now() + DEBOUNCE;
            tokio::time::sleep_until(debounced.max(not_before)).await;
            continue;
        }
        if tokio::time::Instant::now() < not_before {
            // Let the round's changes gather; they are read at the top.
            tokio::time::sleep_until(not_before).await;
            continue;
        }
        let services = dirty.services.len();
        let result = reconcile(&view, &mut dirty, store.as_ref()).await;
        not_before = tokio::time::Instant::now() + pace(services);
        match result {
            Ok(None) => {}
            Ok(Some(rev)) => {
                // Lost a race: plan again once the view has seen the store
                // at `rev`.
                let mut applied = feed.applied();
                let _ = tokio::time::timeout(CATCH_UP, applied.wait_for(|r| *r >= rev)).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "controllers could not write; retrying");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// The wait after a reconcile that derived `services` Services' slices.
pub fn pace(services: usize) -> Duration {
    let n = u32::try_from(services).unwrap_or(u32::MAX);
    PACE_PER_SERVICE.saturating_mul(n).min(MAX_PACE)
}

/// Do the dirty work. `Ok(Some(rev))` if a transaction lost a race (what
/// it covered stays dirty; the store was at `rev`). On a store error
/// everything stays dirty.
async fn reconcile(
    view: &View,
    dirty: &mut Dirty,
    store: &dyn Store,
) -> Result<Option<Revision>, RegistryError> {
    let services = std::mem::take(&mut dirty.services);
    let ingress = std::mem::take(&mut dirty.ingress);
    let mut packer = Packer::new(store);
    let result = async {
        for svc in &services {
            let mut one = Writes::default();
            if let Err(e) = endpoints::plan(view, svc, &mut one) {
                tracing::error!(namespace = %svc.0, service = %svc.1, error = %e, "cannot derive endpoints");
                continue;
            }
            packer.add(one, Some(svc.clone())).await?;
        }
        if ingress {
            for one in load_balancer::plan(view)? {
                packer.add(one, None).await?;
            }
        }
        packer.flush().await
    }
    .await;
    match result {
        Ok(()) => {
            dirty.services.extend(packer.lost_services);
            dirty.ingress |= packer.lost_ingress;
            Ok(packer.lost)
        }
        Err(e) => {
            dirty.services.extend(services);
            dirty.ingress |= ingress;
            Err(e)
        }
    }
}

/// Packs per-object writes into transactions of at most a budget.
struct Packer<'a> {
    store: &'a dyn Store,
    budget: usize,
    pending: Writes,
    covered: Vec<Option<view::Name>>,
    lost: Option<Revision>,
    lost_services: Vec<view::Name>,
    lost_ingress: bool,
}

impl<'a> Packer<'a> {
    fn new(store: &'a dyn Store) -> Self {
        Packer {
            store,
            budget: MAX_OPS.min(store.max_txn_ops()),
            pending: Writes::default(),
            covered: Vec::new(),
            lost: None,
            lost_services: Vec::new(),
            lost_ingress: false,
        }
    }

    /// Add one unit of writes (for a Service's slices, or `None` for an
    /// ingress update).
    async fn add(&mut self, one: Writes, what: Option<view::Name>) -> Result<(), RegistryError> {
        if one.is_empty() {
            return Ok(());
        }
        if self.pending.size() + one.size() > self.budget && !self.pending.is_empty() {
            self.flush().await?;
        }
        self.pending.extend(one);
        self.covered.push(what);
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), RegistryError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let w = std::mem::take(&mut self.pending);
        let covered = std::mem::take(&mut self.covered);
        let out = self.store.txn(w.into_txn()).await?;
        if !out.succeeded {
            self.lost = Some(out.revision);
            for c in covered {
                match c {
                    Some(svc) => self.lost_services.push(svc),
                    None => self.lost_ingress = true,
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pace_grows_with_the_work_and_stays_bounded() {
        assert_eq!(pace(0), Duration::ZERO);
        assert_eq!(pace(1), PACE_PER_SERVICE);
        assert!(pace(10) > pace(1));
        assert_eq!(pace(100_000), MAX_PACE);
        assert_eq!(pace(usize::MAX), MAX_PACE);
        // A change after a burst still reaches the slices well within a second.
        assert!(MAX_PACE + DEBOUNCE < Duration::from_secs(1));
    }
}
