//! ClusterView: applying snapshots and changes, skipping what was applied,
//! leaving out what does not read, copy on write, and persisting and
//! restoring through `objects.json` and the [`ViewFeed`].

use std::sync::Arc;

use weft_objects::{Namespace, Pod};
use weft_proto::v1::{
    change, watch_event, Change, ChangeType, Keepalive, Object, Snapshot, WatchEvent,
};

use super::*;
use crate::view::feed::ViewFeed;
use crate::view::file::{self, ViewFile};

fn pod(ns: &str, name: &str, node: &str, ip: &str, revision: u64) -> Object {
    let mut p = Pod::new(ns, name);
    p.api_version = "v1".into();
    p.kind = "Pod".into();
    p.spec.node_name = node.into();
    p.status.pod_ip = ip.into();
    p.metadata.resource_version = revision.to_string();
    p.metadata.labels.insert("app".into(), name.into());
    Object {
        kind: "Pod".into(),
        namespace: ns.into(),
        name: name.into(),
        revision,
        json: serde_json::to_vec(&p).unwrap().into(),
    }
}

fn namespace(name: &str, revision: u64) -> Object {
    let n: Namespace = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}
    }))
    .unwrap();
    Object {
        kind: "Namespace".into(),
        namespace: String::new(),
        name: name.into(),
        revision,
        json: serde_json::to_vec(&n).unwrap().into(),
    }
}

fn service(ns: &str, name: &str, cluster_ip: &str, revision: u64) -> Object {
    let json = serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "resourceVersion": revision.to_string()},
        "spec": {"selector": {"app": name}, "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
                 "ports": [{"port": 80, "protocol": "TCP", "targetPort": "http"}]}
    });
    Object {
        kind: "Service".into(),
        namespace: ns.into(),
        name: name.into(),
        revision,
        json: serde_json::to_vec(&json).unwrap().into(),
    }
}

fn snapshot(revision: u64, objects: Vec<Object>, more: bool) -> WatchEvent {
    WatchEvent {
        revision,
        event: Some(watch_event::Event::Snapshot(Snapshot {
            objects,
            more,
            ..Snapshot::default()
        })),
    }
}

fn change(revision: u64, put: bool, obj: Object) -> WatchEvent {
    let r#type = if put {
        ChangeType::Put
    } else {
        ChangeType::Delete
    };
    WatchEvent {
        revision,
        event: Some(watch_event::Event::Change(Change {
            r#type: r#type as i32,
            object: Some(change::Object::ClusterObject(obj)),
        })),
    }
}

fn keepalive(revision: u64) -> WatchEvent {
    WatchEvent {
        revision,
        event: Some(watch_event::Event::Keepalive(Keepalive {})),
    }
}

fn pod_names(s: &ViewSnapshot) -> Vec<String> {
    s.pods.keys().map(ToString::to_string).collect()
}

#[test]
fn a_snapshot_in_parts_replaces_everything_when_the_last_part_arrives() {
    let mut view = ClusterView::new();
    assert!(view.apply(&snapshot(
        3,
        vec![pod("a", "old", "n1", "10.0.0.9", 3)],
        false
    )));
    assert_eq!(pod_names(&view.snapshot()), ["a/old"]);

    let first = snapshot(
        9,
        vec![
            namespace("shop", 5),
            pod("shop", "web-1", "n1", "10.244.1.2", 7),
        ],
        true,
    );
    assert!(!view.apply(&first), "a part alone changes nothing");
    assert_eq!(pod_names(&view.snapshot()), ["a/old"]);
    assert_eq!(view.revision(), 3);
    let last = snapshot(
        9,
        vec![
            pod("shop", "web-2", "n2", "10.244.2.2", 8),
            service("shop", "web", "10.96.0.20", 9),
        ],
        false,
    );
    assert!(view.apply(&last));
    let s = view.snapshot();
    assert_eq!(pod_names(&s), ["shop/web-1", "shop/web-2"]);
    assert_eq!(s.namespaces.keys().collect::<Vec<_>>(), ["shop"]);
    assert_eq!(s.services.len(), 1);
    assert_eq!(
        s.service("shop", "web").unwrap().spec.cluster_ip,
        "10.96.0.20"
    );
    assert_eq!((s.revision, view.revision()), (9, 9));
    assert_eq!(s.pods_on("n2").count(), 1);

    // A part of another revision (a stream that broke mid-snapshot, then a
    // new snapshot) does not mix with the old parts.
    assert!(!view.apply(&snapshot(
        12,
        vec![pod("x", "stale", "n1", "10.0.0.3", 12)],
        true
    )));
    view.abandon_partial();
    assert!(view.apply(&snapshot(
        14,
        vec![pod("y", "fresh", "n1", "10.0.0.4", 14)],
        false
    )));
    assert_eq!(pod_names(&view.snapshot()), ["y/fresh"]);
}

#[test]
fn changes_put_and_delete_and_old_events_are_skipped() {
    let mut view = ClusterView::new();
    view.apply(&snapshot(
        10,
        vec![pod("shop", "web-1", "n1", "10.244.1.2", 10)],
        false,
    ));
    let v0 = view.snapshot().version;

    assert!(view.apply(&change(
        11,
        true,
        pod("shop", "web-2", "n2", "10.244.2.2", 11)
    )));
    // Two changes of one transaction share a revision: both apply.
    assert!(view.apply(&change(11, true, service("shop", "web", "10.96.0.20", 11))));
    let s = view.snapshot();
    assert_eq!(pod_names(&s), ["shop/web-1", "shop/web-2"]);
    assert_eq!(s.version, v0 + 2);
    assert_eq!(s.revision, 11);

    // An update replaces the object.
    assert!(view.apply(&change(
        12,
        true,
        pod("shop", "web-2", "n3", "10.244.3.2", 12)
    )));
    assert_eq!(
        view.snapshot().pods[&ObjectKey::new("shop", "web-2")]
            .spec
            .node_name,
        "n3"
    );

    // A delete goes by kind, namespace and name: its JSON may be empty.
    let mut gone = pod("shop", "web-1", "n1", "", 13);
    gone.json.clear();
    assert!(view.apply(&change(13, false, gone)));
    assert_eq!(pod_names(&view.snapshot()), ["shop/web-2"]);
    // Deleting what is not there changes nothing, but moves the revision.
    let mut again = pod("shop", "web-1", "n1", "", 14);
    again.json.clear();
    assert!(!view.apply(&change(14, false, again)));
    assert_eq!(view.revision(), 14);

    // Events older than the revision were applied already.
    assert!(!view.apply(&change(12, true, pod("shop", "late", "n1", "10.0.0.1", 12))));
    assert_eq!(pod_names(&view.snapshot()), ["shop/web-2"]);

    // Keepalives and node changes move the revision, not the version.
    let version = view.snapshot().version;
    assert!(!view.apply(&keepalive(20)));
    assert_eq!(view.revision(), 20);
    let node_change = WatchEvent {
        revision: 21,
        event: Some(watch_event::Event::Change(Change {
            r#type: ChangeType::Put as i32,
            object: Some(change::Object::Node(weft_proto::v1::Node::default())),
        })),
    };
    assert!(!view.apply(&node_change));
    assert_eq!(view.revision(), 21);
    assert_eq!(view.snapshot().version, version);

    view.reset_revision();
    assert_eq!(view.revision(), 0);
}

#[test]
fn unreadable_objects_are_left_out_and_unknown_kinds_ignored() {
    let mut view = ClusterView::new();
    view.apply(&snapshot(
        5,
        vec![pod("shop", "web-1", "n1", "10.244.1.2", 5)],
        false,
    ));
    let mut broken = pod("shop", "web-1", "n1", "", 6);
    broken.json = b"{\"metadata\": 7".to_vec().into();
    // The stale version goes: no object is better than an old one.
    assert!(view.apply(&change(6, true, broken)));
    assert!(view.snapshot().pods.is_empty());
    assert_eq!(view.unreadable(), 1);

    let mut wrong_type = pod("shop", "web-3", "n1", "", 7);
    wrong_type.json = br#"{"spec": {"nodeName": 5}}"#.to_vec().into();
    assert!(!view.apply(&change(7, true, wrong_type)));
    assert_eq!(view.unreadable(), 2);

    let config_map = Object {
        kind: "ConfigMap".into(),
        namespace: "shop".into(),
        name: "cm".into(),
        revision: 8,
        json: b"{}".to_vec().into(),
    };
    assert!(!view.apply(&change(8, true, config_map)));
    assert_eq!(view.unreadable(), 2);
    assert!(view.snapshot().is_empty());
    assert_eq!(view.revision(), 8);
}

#[test]
fn published_snapshots_never_change_and_untouched_kinds_are_shared() {
    let mut view = ClusterView::new();
    view.apply(&snapshot(
        5,
        vec![
            pod("shop", "web-1", "n1", "10.244.1.2", 5),
            service("shop", "web", "10.96.0.20", 5),
        ],
        false,
    ));
    let before = view.snapshot();
    view.apply(&change(
        6,
        true,
        pod("shop", "web-2", "n2", "10.244.2.2", 6),
    ));
    let after = view.snapshot();
    assert_eq!(pod_names(&before), ["shop/web-1"]);
    assert_eq!(pod_names(&after), ["shop/web-1", "shop/web-2"]);
    assert!(after.version > before.version);
    // Services did not change: one map for both snapshots.
    assert!(Arc::ptr_eq(&before.services, &after.services));
    assert!(!Arc::ptr_eq(&before.pods, &after.pods));
    // The unchanged pod itself is shared too.
    let key = ObjectKey::new("shop", "web-1");
    assert!(Arc::ptr_eq(&before.pods[&key], &after.pods[&key]));
}

#[test]
fn the_file_restores_the_same_objects_and_revision() {
    let mut view = ClusterView::new();
    view.apply(&snapshot(
        40,
        vec![
            namespace("shop", 3),
            pod("shop", "web-1", "n1", "10.244.1.2", 30),
            service("shop", "web", "10.96.0.20", 40),
        ],
        false,
    ));
    let s = view.snapshot();
    let bytes = file::encode(&s, 41).unwrap();
    let back = ClusterView::from_file(ViewFile::decode(&bytes).unwrap());
    assert_eq!(back.revision(), 41);
    let r = back.snapshot();
    assert_eq!(pod_names(&r), pod_names(&s));
    assert_eq!(r.namespaces.keys().collect::<Vec<_>>(), ["shop"]);
    assert_eq!(
        **r.service("shop", "web").unwrap(),
        **s.service("shop", "web").unwrap()
    );
    let key = ObjectKey::new("shop", "web-1");
    assert_eq!(*r.pods[&key], *s.pods[&key]);
    assert!(r.version > 0);

    // Another format, or garbage, is not read.
    let other = String::from_utf8(bytes)
        .unwrap()
        .replace("\"format\":1", "\"format\":2");
    assert!(ViewFile::decode(other.as_bytes())
        .unwrap_err()
        .contains("format 2"));
    assert!(ViewFile::decode(b"{").is_err());
}

#[test]
fn the_feed_publishes_changes_and_persists_them_for_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(file::FILE_NAME);
    let feed = ViewFeed::open(&path);
    assert!(feed.current().is_empty());
    assert_eq!(feed.revision(), 0);
    let mut rx = feed.subscribe();
    rx.borrow_and_update();

    // A response whose events change nothing publishes nothing.
    assert!(!feed.apply(&[keepalive(3)]));
    assert!(!rx.has_changed().unwrap());
    assert!(feed.apply(&[
        snapshot(7, vec![pod("shop", "web-1", "n1", "10.244.1.2", 7)], false),
        change(8, true, service("shop", "web", "10.96.0.20", 8)),
    ]));
    assert!(rx.has_changed().unwrap());
    let published = rx.borrow_and_update().clone();
    assert_eq!(published.services.len(), 1);
    assert_eq!(published.revision, 8);

    assert!(feed.save_if_needed(1000).unwrap());
    assert!(!feed.save_if_needed(1000).unwrap(), "nothing new to write");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    // Restarted: the same objects, before any control plane says a word.
    let again = ViewFeed::open(&path);
    assert_eq!(again.revision(), 8);
    let s = again.current();
    assert_eq!(pod_names(&s), ["shop/web-1"]);
    assert_eq!(s.services.len(), 1);

    // A broken file is an empty view at revision 0.
    std::fs::write(&path, "{\"format\":1,").unwrap();
    let broken = ViewFeed::open(&path);
    assert_eq!(broken.revision(), 0);
    assert!(broken.current().is_empty());
}
