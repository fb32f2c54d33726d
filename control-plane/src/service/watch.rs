//! The `Watch` stream: a snapshot (or a resume point), then every change to
//! `nodes/`, each with its store revision, and keepalives in between.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use weft_proto::v1::{watch_event, Change, ChangeType, Keepalive, Snapshot, WatchEvent};

use crate::model::NODES_PREFIX;
use crate::registry::{decode_node_kv, Registry};
use crate::store::{EventKind, StoreError};

/// The stream type of `Cluster.Watch`.
pub type WatchEventStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, Status>> + Send>>;

/// Start a watch for one client.
pub async fn watch_nodes(
    registry: Arc<Registry>,
    resume: u64,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<WatchEventStream, Status> {
    let store = registry.store().clone();
    let (first, mut events) = if resume == 0 {
        let (nodes, rev) = registry.list_nodes().await?;
        let events = store.watch(NODES_PREFIX, rev).await.map_err(store_status)?;
        let snapshot = WatchEvent {
            revision: rev,
            event: Some(watch_event::Event::Snapshot(Snapshot {
                nodes,
                settings: Some(registry.cluster_settings()),
            })),
        };
        (Some(snapshot), events)
    } else {
        let events = store
            .watch(NODES_PREFIX, resume)
            .await
            .map_err(|e| match e {
                StoreError::Compacted { .. } => Status::out_of_range(format!(
                    "{e}: watch again with resume_revision 0 for a fresh snapshot"
                )),
                e => store_status(e),
            })?;
        (None, events)
    };
    let mut last = first.as_ref().map_or(resume, |f| f.revision);
    let keepalive = registry.settings().watch_keepalive;
    let (tx, rx) = mpsc::channel::<Result<WatchEvent, Status>>(256);
    tokio::spawn(async move {
        if let Some(first) = first {
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
        }
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
        loop {
            let out = tokio::select! {
                ev = events.next() => match ev {
                    Some(Ok(ev)) => {
                        let node = match decode_node_kv(&ev.kv) {
                            Ok(n) => n,
                            Err(e) => {
                                tracing::error!(error = %e, "skipping unreadable node record in watch");
                                continue;
                            }
                        };
                        last = ev.revision;
                        let kind = match ev.kind {
                            EventKind::Put => ChangeType::Put,
                            EventKind::Delete => ChangeType::Delete,
                        };
                        Ok(WatchEvent {
                            revision: ev.revision,
                            event: Some(watch_event::Event::Change(Change {
                                r#type: kind as i32,
                                object: Some(weft_proto::v1::change::Object::Node(node)),
                            })),
                        })
                    }
                    Some(Err(StoreError::Lagged)) => Err(Status::aborted(format!(
                        "this watch fell behind the control plane's buffers; watch again with resume_revision {last}"
                    ))),
                    Some(Err(e)) => Err(store_status(e)),
                    None => Err(Status::unavailable("the control plane's store closed the watch; watch again")),
                },
                _ = tick.tick() => Ok(WatchEvent { revision: last, event: Some(watch_event::Event::Keepalive(Keepalive {})) }),
                _ = tx.closed() => return,
                _ = shutdown.changed() => {
                    let _ = tx.send(Err(Status::unavailable("the control plane is shutting down; watch again"))).await;
                    return;
                }
            };
            let end = out.is_err();
            if tx.send(out).await.is_err() || end {
                return;
            }
        }
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}

fn store_status(e: StoreError) -> Status {
    crate::registry::RegistryError::Store(e).into_status()
}
