//! Store events to the changes the feed sends: a node record decoded with
//! its revision, an object's JSON with its `resourceVersion`, and the
//! change encoded once as the `WatchEvent` every watcher sends.

use prost::Message as _;
use weft_proto::v1;

use super::{Batch, Event, Payload};
use crate::model::NODES_PREFIX;
use crate::objects::{codec, keys};
use crate::registry::decode_node_kv;
use crate::store::{self, EventKind, KeyValue, Revision};

/// Whether the feed carries changes to `key`.
pub(super) fn carried(key: &str) -> bool {
    key.starts_with(NODES_PREFIX) || key.starts_with(keys::OBJECTS_PREFIX)
}

/// The payload of a key/value at `revision`; `None` (logged) if it cannot
/// be read. A delete whose last value the store no longer holds yields the
/// bare name.
pub(super) fn payload(kv: &KeyValue, revision: Revision) -> Option<Payload> {
    if kv.key.starts_with(NODES_PREFIX) {
        if kv.value.is_empty() {
            return Some(Payload::Node(v1::Node {
                name: kv.key[NODES_PREFIX.len()..].to_string(),
                revision,
                ..Default::default()
            }));
        }
        let mut kv = kv.clone();
        kv.mod_revision = revision;
        return match decode_node_kv(&kv) {
            Ok(n) => Some(Payload::Node(n)),
            Err(e) => {
                tracing::error!(error = %e, "skipping an unreadable node record");
                None
            }
        };
    }
    let (kind, ns, name) = keys::parse(&kv.key)?;
    if kv.value.is_empty() {
        return Some(Payload::Object(v1::Object {
            kind: kind.kind_name().into(),
            namespace: ns.into(),
            name: name.into(),
            revision,
            json: Default::default(),
        }));
    }
    match codec::to_proto(kv, revision) {
        Ok(o) => Some(Payload::Object(o)),
        Err(e) => {
            tracing::error!(error = %e, "skipping an unreadable object");
            None
        }
    }
}

/// The batch of one transaction's store events (all at `revision`).
pub(super) fn batch(revision: Revision, events: &[store::Event]) -> Batch {
    let mut out = Vec::with_capacity(events.len());
    let mut size = 0;
    for ev in events.iter().filter(|e| carried(&e.kv.key)) {
        let deleted = ev.kind == EventKind::Delete;
        if let Some(payload) = payload(&ev.kv, revision) {
            let encoded: bytes::Bytes = watch_event(revision, deleted, &payload)
                .encode_to_vec()
                .into();
            size += payload.size() + encoded.len();
            out.push(Event {
                key: ev.kv.key.clone(),
                deleted,
                payload,
                encoded,
            });
        }
    }
    Batch {
        revision,
        events: out,
        size,
    }
}

/// The `WatchEvent` of one change at `revision`.
fn watch_event(revision: Revision, deleted: bool, payload: &Payload) -> v1::WatchEvent {
    let kind = if deleted {
        v1::ChangeType::Delete
    } else {
        v1::ChangeType::Put
    };
    let object = match payload {
        Payload::Node(n) => v1::change::Object::Node(n.clone()),
        Payload::Object(o) => v1::change::Object::ClusterObject(o.clone()),
    };
    v1::WatchEvent {
        revision,
        event: Some(v1::watch_event::Event::Change(v1::Change {
            r#type: kind as i32,
            object: Some(object),
        })),
    }
}
