//! [`follow`]: the one loop every compiler of the view runs (Services,
//! cluster DNS, NetworkPolicy): compile each new snapshot off the async
//! workers, hand the result on, wait for the next.
//!
//! Contract: the first compile is of whatever the view holds at start
//! (the persisted objects after a restart); snapshots that arrive while
//! one is being compiled are coalesced (only the newest is compiled next);
//! `compile` runs on a blocking thread (never on an async worker, never on
//! the engine thread), and a compile that panics is logged with `what`
//! and skipped: the last result stays in force. Returns when `stop` turns
//! true or the view's sender is gone.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;

use super::ViewSnapshot;

/// Follows `views` until `stop`: `compile(snapshot)` on a blocking thread,
/// then `apply(result, version)` (see the module docs).
pub async fn follow<T, C, A, F>(
    mut views: watch::Receiver<Arc<ViewSnapshot>>,
    mut stop: watch::Receiver<bool>,
    what: &'static str,
    compile: C,
    mut apply: A,
) where
    T: Send + 'static,
    C: Fn(&ViewSnapshot) -> T + Send + Sync + 'static,
    A: FnMut(T, u64) -> F,
    F: Future<Output = ()>,
{
    let compile = Arc::new(compile);
    loop {
        let view = views.borrow_and_update().clone();
        let version = view.version;
        let c = compile.clone();
        match tokio::task::spawn_blocking(move || c(&view)).await {
            Ok(out) => apply(out, version).await,
            Err(e) => tracing::warn!(error = %e, version, "compiling {what} failed"),
        }
        tokio::select! {
            r = views.changed() => if r.is_err() { return },
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
