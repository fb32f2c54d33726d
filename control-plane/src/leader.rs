//! Leader-only tasks: work that exactly one control-plane replica at a time
//! may do (the lease sweeper today; controllers later).
//!
//! Contract:
//! - An [`Election`] says, through a `watch` channel, whether this replica
//!   leads. [`Solo`] always leads (one control plane on the embedded store);
//!   [`crate::store::etcd::election::EtcdElection`] campaigns on an etcd
//!   lease, so at most one replica leads and a new one takes over within a
//!   few seconds of the old one dying.
//! - [`run`] starts every [`LeaderTask`] when leadership is gained, and tells
//!   them to stop (their [`Term`] ends) as soon as it is lost or the server
//!   stops; it waits up to [`STOP_GRACE`] for them, then aborts them. A task
//!   must not act once its term has ended.
//! - To add a controller, add a [`LeaderTask`] to the list the server builds
//!   (`server::leader_tasks`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// How long stopping tasks may take before they are aborted.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Who leads: reports `true` on `leading` while this replica leads.
#[async_trait::async_trait]
pub trait Election: Send + Sync + 'static {
    /// Campaign until `stop` turns true, keeping `leading` current. Must
    /// report `false` before the leadership can have passed to another
    /// replica, and step down (freeing the leadership) when stopped.
    async fn run(self: Arc<Self>, leading: watch::Sender<bool>, stop: watch::Receiver<bool>);
    /// A short description for logs.
    fn describe(&self) -> String;
}

/// The election of a control plane with no peers: it always leads.
#[derive(Debug, Default)]
pub struct Solo;

#[async_trait::async_trait]
impl Election for Solo {
    async fn run(self: Arc<Self>, leading: watch::Sender<bool>, mut stop: watch::Receiver<bool>) {
        let _ = leading.send(true);
        let _ = stop.wait_for(|s| *s).await;
        let _ = leading.send(false);
    }

    fn describe(&self) -> String {
        "solo (embedded store)".into()
    }
}

/// One term of leadership, handed to each task: it ends when the
/// leadership is lost or the server stops.
#[derive(Clone, Debug)]
pub struct Term {
    ended: watch::Receiver<bool>,
}

impl Term {
    /// Resolves when the term has ended.
    pub async fn ended(&mut self) {
        let _ = self.ended.wait_for(|e| *e).await;
    }

    /// Whether the term has ended.
    pub fn is_over(&self) -> bool {
        *self.ended.borrow()
    }
}

type TaskFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A task run on the leader only, started afresh for every term.
pub struct LeaderTask {
    name: &'static str,
    start: Box<dyn Fn(Term) -> TaskFuture + Send + Sync>,
}

impl LeaderTask {
    /// A task: `start` is called at the beginning of each term and its
    /// future must end soon after the term does.
    pub fn new<F, Fut>(name: &'static str, start: F) -> LeaderTask
    where
        F: Fn(Term) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        LeaderTask {
            name,
            start: Box::new(move |term| Box::pin(start(term))),
        }
    }

    /// The task's name, for logs.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl std::fmt::Debug for LeaderTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderTask")
            .field("name", &self.name)
            .finish()
    }
}

/// Run the election and the leader tasks until `stop` turns true. `leading`
/// mirrors the election (for status and tests).
pub async fn run(
    election: Arc<dyn Election>,
    tasks: Vec<LeaderTask>,
    leading: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let (elected_tx, mut elected) = watch::channel(false);
    let campaign = tokio::spawn(election.clone().run(elected_tx, stop.clone()));
    loop {
        tokio::select! {
            r = elected.wait_for(|l| *l) => if r.is_err() { break },
            _ = stop.wait_for(|s| *s) => break,
        }
        tracing::info!(election = %election.describe(), "this replica leads: starting leader tasks");
        let _ = leading.send(true);
        let (end_tx, end_rx) = watch::channel(false);
        let running: Vec<_> = tasks
            .iter()
            .map(|t| {
                let fut = (t.start)(Term {
                    ended: end_rx.clone(),
                });
                (t.name, tokio::spawn(fut))
            })
            .collect();
        let stopping = tokio::select! {
            _ = elected.wait_for(|l| !*l) => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        let _ = leading.send(false);
        let _ = end_tx.send(true);
        for (name, task) in running {
            let abort = task.abort_handle();
            if tokio::time::timeout(STOP_GRACE, task).await.is_err() {
                tracing::warn!(task = name, "leader task did not stop in time; aborting it");
                abort.abort();
            }
        }
        if stopping {
            break;
        }
        tracing::warn!(election = %election.describe(), "this replica lost the leadership: leader tasks stopped");
    }
    let _ = campaign.await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// An election driven by the test.
    struct Scripted(watch::Receiver<bool>);

    #[async_trait::async_trait]
    impl Election for Scripted {
        async fn run(
            self: Arc<Self>,
            leading: watch::Sender<bool>,
            mut stop: watch::Receiver<bool>,
        ) {
            let mut script = self.0.clone();
            loop {
                let now = *script.borrow_and_update();
                let _ = leading.send(now);
                tokio::select! {
                    r = script.changed() => if r.is_err() { return },
                    _ = stop.wait_for(|s| *s) => { let _ = leading.send(false); return }
                }
            }
        }
        fn describe(&self) -> String {
            "scripted".into()
        }
    }

    #[tokio::test]
    async fn tasks_run_only_during_terms() {
        let (script, script_rx) = watch::channel(false);
        let (leading_tx, mut leading) = watch::channel(false);
        let (stop_tx, stop_rx) = watch::channel(false);
        let starts = Arc::new(AtomicUsize::new(0));
        let active = Arc::new(AtomicUsize::new(0));
        let task = {
            let (starts, active) = (starts.clone(), active.clone());
            LeaderTask::new("count", move |mut term| {
                let (starts, active) = (starts.clone(), active.clone());
                async move {
                    starts.fetch_add(1, Ordering::SeqCst);
                    active.fetch_add(1, Ordering::SeqCst);
                    term.ended().await;
                    assert!(term.is_over());
                    active.fetch_sub(1, Ordering::SeqCst);
                }
            })
        };
        let runner = tokio::spawn(run(
            Arc::new(Scripted(script_rx)),
            vec![task],
            leading_tx,
            stop_rx,
        ));
        let t = Duration::from_secs(5);
        let settle = || tokio::time::sleep(Duration::from_millis(50));
        settle().await;
        assert_eq!(starts.load(Ordering::SeqCst), 0, "not leader: nothing runs");

        script.send(true).unwrap();
        tokio::time::timeout(t, leading.wait_for(|l| *l))
            .await
            .unwrap()
            .unwrap();
        settle().await;
        assert_eq!(active.load(Ordering::SeqCst), 1);

        script.send(false).unwrap();
        tokio::time::timeout(t, leading.wait_for(|l| !*l))
            .await
            .unwrap()
            .unwrap();
        settle().await;
        assert_eq!(active.load(Ordering::SeqCst), 0, "term over: task ended");

        script.send(true).unwrap();
        tokio::time::timeout(t, leading.wait_for(|l| *l))
            .await
            .unwrap()
            .unwrap();
        settle().await;
        assert_eq!(starts.load(Ordering::SeqCst), 2, "started afresh per term");

        stop_tx.send(true).unwrap();
        tokio::time::timeout(t, runner).await.unwrap().unwrap();
        assert_eq!(active.load(Ordering::SeqCst), 0);
        assert!(!*leading.borrow());
    }

    #[tokio::test]
    async fn solo_leads_until_stopped() {
        let (leading_tx, mut leading) = watch::channel(false);
        let (stop_tx, stop_rx) = watch::channel(false);
        let runner = tokio::spawn(run(Arc::new(Solo), vec![], leading_tx, stop_rx));
        let t = Duration::from_secs(5);
        tokio::time::timeout(t, leading.wait_for(|l| *l))
            .await
            .unwrap()
            .unwrap();
        stop_tx.send(true).unwrap();
        tokio::time::timeout(t, runner).await.unwrap().unwrap();
    }
}
