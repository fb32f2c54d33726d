//! Kubernetes Services on this node: the cluster's Services and
//! EndpointSlices ([`ViewSnapshot`]) compiled into the switch's service
//! table and handed to the data-plane engine, which translates Service
//! connections in its packet path (`weft_switch::service`,
//! docs/services.md).
//!
//! Contract:
//! - [`service_specs`] is a pure function (snapshot, node name) ->
//!   `Vec<ServiceSpec>` (`compile.rs` says what it keeps).
//! - [`run`] follows the view's snapshots ([`follow`]: compiled on a
//!   blocking thread, coalesced, the first from whatever the view holds at
//!   start, so Services work before the control plane answers) and hands
//!   each [`ServiceTable`] to the engine ([`ServiceSink::set_services`]),
//!   which swaps it in whole between packet batches. A compile or
//!   hand-over that fails is logged and retried with the next snapshot;
//!   the table in force stays.
//!
//! Files: `compile.rs` (objects -> specs, tested in `compile_tests.rs`),
//! `mod.rs` (the task).

mod compile;
#[cfg(test)]
mod compile_tests;

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::watch;
use weft_switch::service::ServiceTable;

pub use compile::service_specs;

use crate::view::{follow, ViewSnapshot};

/// Where compiled service tables go (the engine, or a test's recorder).
pub trait ServiceSink: Send + Sync {
    /// Puts `table` in force; `Err` with a message if it could not.
    fn set_services(&self, table: Arc<ServiceTable>) -> BoxFuture<'_, Result<(), String>>;
}

impl ServiceSink for crate::engine::Dataplane {
    fn set_services(&self, table: Arc<ServiceTable>) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            crate::engine::Dataplane::set_services(self, table)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// Compiles `view` for node `node` into a table (blocking work).
pub fn compile_table(view: &ViewSnapshot, node: &str) -> Result<ServiceTable, String> {
    let specs = service_specs(view, node);
    ServiceTable::compile(&specs).map_err(|e| e.to_string())
}

/// Follows `views` until `stop`, handing each compiled table to `sink`
/// (see the module docs).
pub async fn run(
    views: watch::Receiver<Arc<ViewSnapshot>>,
    node: String,
    sink: Arc<dyn ServiceSink>,
    stop: watch::Receiver<bool>,
) {
    let mut last_problems = Vec::new();
    let compile = move |view: &ViewSnapshot| compile_table(view, &node);
    follow(views, stop, "the Services", compile, |compiled, version| {
        let table = match compiled {
            Ok(table) => {
                let problems: Vec<String> =
                    table.problems().iter().map(|p| format!("{p:?}")).collect();
                if problems != last_problems {
                    for p in &problems {
                        tracing::warn!(problem = %p, "a Service is not fully translated");
                    }
                    last_problems = problems;
                }
                Some(table)
            }
            Err(e) => {
                tracing::warn!(error = %e, version, "cannot compile the Services");
                None
            }
        };
        let sink = sink.clone();
        async move {
            let Some(table) = table else { return };
            let (services, frontends, endpoints) = table.sizes();
            match sink.set_services(Arc::new(table)).await {
                Ok(()) => tracing::debug!(
                    version,
                    services,
                    frontends,
                    endpoints,
                    "service table in force"
                ),
                Err(e) => tracing::warn!(error = %e, "the data plane refused the service table"),
            }
        }
    })
    .await;
}
