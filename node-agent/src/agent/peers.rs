//! The peer set: the other nodes of the cluster, as the watch stream
//! describes them, and the [`PeerSink`] they are applied to.
//!
//! [`PeerTable`] is sans-IO: it takes watch events and returns the
//! [`PeerAction`]s that bring a sink up to date, plus what it learnt about
//! this node's own record. Contract:
//! - every node but this one (by name) is a peer, NotReady ones included
//!   (their tunnels may still work); a node leaves the set only by a
//!   `DELETE` or by its absence from a snapshot;
//! - a snapshot replaces the set ([`PeerAction::SetAll`]); a `PUT` yields
//!   [`PeerAction::Set`] only if the peer's data-plane view (key, endpoint,
//!   allowed prefixes) changed; a `DELETE` yields [`PeerAction::Remove`];
//! - a record whose key or pod CIDR does not parse is not a peer (logged),
//!   an unparseable endpoint makes a peer without endpoint (it can still
//!   reach us);
//! - the revision only moves forward along a stream; a snapshot sets it.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use base64::Engine as _;
use futures::future::BoxFuture;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use weft_proto::v1::{change, watch_event, ChangeType, Node, NodeState, WatchEvent};

use crate::dataplane::{Dataplane, DataplaneError, PeerSpec};

/// Why a sink could not apply a change.
#[derive(Debug, thiserror::Error)]
pub enum PeerSinkError {
    /// The data plane refused or is not running.
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    /// Any other sink's failure.
    #[error("{0}")]
    Other(String),
}

/// Where the peer set is applied: the data plane in production, a
/// recording fake in tests. Calls come from one task, in order.
pub trait PeerSink: Send + Sync + 'static {
    /// Replace the whole peer set.
    fn set_peers(&self, peers: Vec<PeerSpec>) -> BoxFuture<'_, Result<(), PeerSinkError>>;
    /// Add or update one peer (by name).
    fn set_peer(&self, peer: PeerSpec) -> BoxFuture<'_, Result<(), PeerSinkError>>;
    /// Remove one peer by name.
    fn remove_peer(&self, name: String) -> BoxFuture<'_, Result<(), PeerSinkError>>;
}

impl PeerSink for Dataplane {
    fn set_peers(&self, peers: Vec<PeerSpec>) -> BoxFuture<'_, Result<(), PeerSinkError>> {
        Box::pin(async move { Ok(Dataplane::set_peers(self, peers).await?) })
    }

    fn set_peer(&self, peer: PeerSpec) -> BoxFuture<'_, Result<(), PeerSinkError>> {
        Box::pin(async move { Ok(Dataplane::set_peer(self, peer).await?) })
    }

    fn remove_peer(&self, name: String) -> BoxFuture<'_, Result<(), PeerSinkError>> {
        Box::pin(async move {
            Dataplane::remove_peer(self, &name).await?;
            Ok(())
        })
    }
}

/// One change for a [`PeerSink`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerAction {
    /// Replace the whole set.
    SetAll(Vec<PeerSpec>),
    /// Add or update one peer.
    Set(PeerSpec),
    /// Remove one peer by name.
    Remove(String),
}

/// Another node as the agent remembers it (and keeps in `peers.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PeerRecord {
    /// The node name.
    pub name: String,
    /// The node id.
    pub id: u64,
    /// Its WireGuard public key (base64).
    pub public_key: String,
    /// Its underlay endpoints, most preferred first.
    pub endpoints: Vec<String>,
    /// Its pod CIDR.
    pub pod_cidr: String,
    /// Whether its lease is current.
    pub ready: bool,
}

impl PeerRecord {
    /// The record of a node from the control plane.
    pub fn from_node(n: &Node) -> Self {
        Self {
            name: n.name.clone(),
            id: n.id,
            public_key: n.public_key.clone(),
            endpoints: n.endpoints.clone(),
            pod_cidr: n.pod_cidr.clone(),
            ready: n.state != NodeState::NotReady as i32,
        }
    }

    /// The first endpoint that parses as `ip:port`.
    pub fn endpoint(&self) -> Option<SocketAddr> {
        self.endpoints.iter().find_map(|e| e.trim().parse().ok())
    }

    /// The data plane's view of this peer, or why it cannot be one.
    pub fn to_spec(&self) -> Result<PeerSpec, String> {
        let key = base64::engine::general_purpose::STANDARD
            .decode(self.public_key.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
            .ok_or_else(|| format!("bad public key {:?}", self.public_key))?;
        let cidr: IpNet = self
            .pod_cidr
            .parse()
            .map_err(|_| format!("bad pod CIDR {:?}", self.pod_cidr))?;
        Ok(PeerSpec {
            name: self.name.clone(),
            public_key: key,
            endpoint: self.endpoint(),
            allowed: vec![cidr.trunc()],
        })
    }
}

/// What [`PeerTable::apply`] learnt from one event.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Changes for the sink, in order.
    pub actions: Vec<PeerAction>,
    /// This node's own record changed: `Some(Some(r))` it is `r` now,
    /// `Some(None)` it is gone from the cluster.
    pub me: Option<Option<PeerRecord>>,
    /// The peer set or the revision changed (persist it).
    pub changed: bool,
}

/// The peer set and the watch revision it is at.
#[derive(Debug, Clone)]
pub struct PeerTable {
    self_name: String,
    revision: u64,
    peers: BTreeMap<String, PeerRecord>,
    me: Option<PeerRecord>,
    /// Parts of a snapshot still coming (`Snapshot.more`): its revision and
    /// the nodes so far.
    partial: Option<(u64, Vec<Node>)>,
}

impl PeerTable {
    /// A table for the node `self_name`, starting from a persisted set.
    pub fn new(self_name: &str, revision: u64, peers: Vec<PeerRecord>) -> Self {
        let peers = peers
            .into_iter()
            .filter(|p| p.name != self_name)
            .map(|p| (p.name.clone(), p))
            .collect();
        Self {
            self_name: self_name.to_string(),
            revision,
            peers,
            me: None,
            partial: None,
        }
    }

    /// The last revision seen (0: none; watch from a snapshot).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Forget the revision, so the next watch starts with a snapshot.
    pub fn reset_revision(&mut self) {
        self.revision = 0;
        self.partial = None;
    }

    /// Drop a snapshot whose parts stopped coming (the stream broke).
    pub fn abandon_partial(&mut self) {
        self.partial = None;
    }

    /// The peers, by name.
    pub fn records(&self) -> Vec<PeerRecord> {
        self.peers.values().cloned().collect()
    }

    /// This node's own record, as last seen on the watch.
    pub fn me(&self) -> Option<&PeerRecord> {
        self.me.as_ref()
    }

    /// The data plane's view of every usable peer.
    pub fn specs(&self) -> Vec<PeerSpec> {
        self.peers
            .values()
            .filter_map(|r| r.to_spec().ok())
            .collect()
    }

    /// Applies one watch event.
    pub fn apply(&mut self, event: &WatchEvent) -> Applied {
        let mut out = Applied::default();
        match &event.event {
            Some(watch_event::Event::Snapshot(s)) => {
                // A snapshot may come in parts: gather them, apply the whole.
                let mut nodes = match self.partial.take() {
                    Some((rev, nodes)) if rev == event.revision => nodes,
                    _ => Vec::new(),
                };
                nodes.extend(s.nodes.iter().cloned());
                if s.more {
                    self.partial = Some((event.revision, nodes));
                    return out;
                }
                let mut peers = BTreeMap::new();
                let mut me = None;
                for n in &nodes {
                    let r = PeerRecord::from_node(n);
                    if r.name == self.self_name {
                        me = Some(r);
                    } else if usable(&r) {
                        peers.insert(r.name.clone(), r);
                    }
                }
                self.peers = peers;
                self.revision = event.revision;
                out.me = Some(me.clone());
                self.me = me;
                out.actions.push(PeerAction::SetAll(self.specs()));
                out.changed = true;
            }
            Some(watch_event::Event::Change(c)) => {
                // Several changes of one store transaction share a revision,
                // so only an older revision means "already applied".
                if event.revision < self.revision {
                    tracing::debug!(
                        revision = event.revision,
                        seen = self.revision,
                        "skipping an event already applied"
                    );
                    return out;
                }
                self.revision = event.revision;
                out.changed = true;
                let Some(change::Object::Node(n)) = &c.object else {
                    return out;
                };
                let r = PeerRecord::from_node(n);
                let put = c.r#type == ChangeType::Put as i32;
                let delete = c.r#type == ChangeType::Delete as i32;
                if r.name == self.self_name {
                    if put {
                        self.me = Some(r.clone());
                        out.me = Some(Some(r));
                    } else if delete {
                        self.me = None;
                        out.me = Some(None);
                    }
                } else if put {
                    self.put(r, &mut out.actions);
                } else if delete && self.peers.remove(&r.name).is_some() {
                    out.actions.push(PeerAction::Remove(r.name));
                }
            }
            Some(watch_event::Event::Keepalive(_)) if event.revision > self.revision => {
                self.revision = event.revision;
                out.changed = true;
            }
            Some(watch_event::Event::Keepalive(_)) => {}
            None => {}
        }
        out
    }

    fn put(&mut self, r: PeerRecord, actions: &mut Vec<PeerAction>) {
        let old = self.peers.get(&r.name).and_then(|o| o.to_spec().ok());
        match r.to_spec() {
            Ok(spec) => {
                let name = r.name.clone();
                self.peers.insert(name, r);
                if old.as_ref() != Some(&spec) {
                    actions.push(PeerAction::Set(spec));
                }
            }
            Err(why) => {
                tracing::warn!(peer = %r.name, reason = %why, "ignoring a node that cannot be a peer");
                if self.peers.remove(&r.name).is_some() {
                    actions.push(PeerAction::Remove(r.name));
                }
            }
        }
    }
}

fn usable(r: &PeerRecord) -> bool {
    match r.to_spec() {
        Ok(spec) => {
            if spec.endpoint.is_none() && !r.endpoints.is_empty() {
                tracing::warn!(peer = %r.name, endpoints = ?r.endpoints, "no endpoint of this peer parses; waiting for it to reach us");
            }
            true
        }
        Err(why) => {
            tracing::warn!(peer = %r.name, reason = %why, "ignoring a node that cannot be a peer");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_proto::v1::{Change, Keepalive, Snapshot};

    fn node(name: &str, seed: u8, cidr: &str, ready: bool) -> Node {
        Node {
            id: u64::from(seed),
            name: name.into(),
            public_key: base64::engine::general_purpose::STANDARD.encode([seed; 32]),
            endpoints: vec![format!("192.0.2.{seed}:51820")],
            pod_cidr: cidr.into(),
            state: if ready {
                NodeState::Ready
            } else {
                NodeState::NotReady
            } as i32,
            ..Default::default()
        }
    }

    fn snapshot(rev: u64, nodes: Vec<Node>) -> WatchEvent {
        WatchEvent {
            revision: rev,
            event: Some(watch_event::Event::Snapshot(Snapshot {
                nodes,
                settings: None,
                more: false,
            })),
        }
    }

    fn change(rev: u64, t: ChangeType, n: Node) -> WatchEvent {
        WatchEvent {
            revision: rev,
            event: Some(watch_event::Event::Change(Change {
                r#type: t as i32,
                object: Some(change::Object::Node(n)),
            })),
        }
    }

    fn names(a: &PeerAction) -> Vec<String> {
        match a {
            PeerAction::SetAll(v) => v.iter().map(|p| p.name.clone()).collect(),
            PeerAction::Set(p) => vec![p.name.clone()],
            PeerAction::Remove(n) => vec![n.clone()],
        }
    }

    #[test]
    fn snapshot_then_changes() {
        let mut t = PeerTable::new("a", 0, vec![]);
        let out = t.apply(&snapshot(
            5,
            vec![
                node("a", 1, "10.244.0.0/24", true),
                node("b", 2, "10.244.1.0/24", true),
                node("c", 3, "10.244.2.0/24", false),
            ],
        ));
        assert_eq!(t.revision(), 5);
        assert_eq!(out.actions.len(), 1);
        assert_eq!(names(&out.actions[0]), ["b", "c"]);
        assert_eq!(out.me.unwrap().unwrap().name, "a");
        let spec = &t.specs()[0];
        assert_eq!(spec.endpoint, Some("192.0.2.2:51820".parse().unwrap()));
        assert_eq!(
            spec.allowed,
            vec!["10.244.1.0/24".parse::<IpNet>().unwrap()]
        );

        // A state-only change is no data-plane change.
        let out = t.apply(&change(
            6,
            ChangeType::Put,
            node("b", 2, "10.244.1.0/24", false),
        ));
        assert!(out.actions.is_empty() && out.changed);
        assert!(!t.records()[0].ready);
        // A new endpoint is.
        let mut b = node("b", 2, "10.244.1.0/24", true);
        b.endpoints = vec!["192.0.2.99:51820".into()];
        let out = t.apply(&change(7, ChangeType::Put, b));
        assert_eq!(out.actions.len(), 1);
        // An event older than what was applied is skipped.
        let out = t.apply(&change(6, ChangeType::Delete, node("b", 2, "", true)));
        assert_eq!(out, Applied::default());
        let out = t.apply(&change(
            8,
            ChangeType::Delete,
            node("b", 2, "10.244.1.0/24", true),
        ));
        assert_eq!(out.actions, vec![PeerAction::Remove("b".into())]);
        // Removing an unknown node is no action.
        let out = t.apply(&change(9, ChangeType::Delete, node("zz", 9, "", true)));
        assert!(out.actions.is_empty());
        // Self.
        let out = t.apply(&change(
            10,
            ChangeType::Delete,
            node("a", 1, "10.244.0.0/24", true),
        ));
        assert_eq!(out.me, Some(None));
        assert!(out.actions.is_empty());
        let out = t.apply(&WatchEvent {
            revision: 12,
            event: Some(watch_event::Event::Keepalive(Keepalive {})),
        });
        assert!(out.changed);
        assert_eq!(t.revision(), 12);
    }

    #[test]
    fn bad_records_are_not_peers() {
        let mut t = PeerTable::new("a", 0, vec![]);
        let mut bad_key = node("b", 2, "10.244.1.0/24", true);
        bad_key.public_key = "nope".into();
        let mut bad_ep = node("c", 3, "10.244.2.0/24", true);
        bad_ep.endpoints = vec!["junk".into()];
        t.apply(&snapshot(
            1,
            vec![bad_key.clone(), bad_ep, node("d", 4, "bad", true)],
        ));
        let specs = t.specs();
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].name, "c");
        assert_eq!(specs[0].endpoint, None);
        // A peer whose key turns bad is removed.
        t.apply(&change(
            2,
            ChangeType::Put,
            node("b", 2, "10.244.1.0/24", true),
        ));
        let out = t.apply(&change(3, ChangeType::Put, bad_key));
        assert_eq!(out.actions, vec![PeerAction::Remove("b".into())]);
    }

    #[test]
    fn persisted_self_is_dropped() {
        let r = PeerRecord::from_node(&node("a", 1, "10.244.0.0/24", true));
        let t = PeerTable::new("a", 3, vec![r]);
        assert!(t.specs().is_empty());
        assert_eq!(t.revision(), 3);
    }

    #[test]
    fn changes_sharing_a_revision_are_all_applied() {
        let mut t = PeerTable::new("me", 0, vec![]);
        t.apply(&snapshot(4, vec![node("me", 1, "10.244.0.0/24", true)]));
        let a = t.apply(&change(
            5,
            ChangeType::Put,
            node("a", 2, "10.244.1.0/24", true),
        ));
        let b = t.apply(&change(
            5,
            ChangeType::Put,
            node("b", 3, "10.244.2.0/24", true),
        ));
        assert_eq!(a.actions.len(), 1);
        assert_eq!(
            b.actions.len(),
            1,
            "a second change of one transaction is not skipped"
        );
        assert_eq!(t.records().len(), 2);
        // An older revision is skipped.
        let old = t.apply(&change(
            4,
            ChangeType::Put,
            node("c", 4, "10.244.3.0/24", true),
        ));
        assert!(old.actions.is_empty());
    }

    #[test]
    fn a_snapshot_in_parts_is_applied_whole() {
        let mut t = PeerTable::new("me", 0, vec![]);
        let mut first = snapshot(7, vec![node("a", 2, "10.244.1.0/24", true)]);
        if let Some(watch_event::Event::Snapshot(s)) = &mut first.event {
            s.more = true;
        }
        let out = t.apply(&first);
        assert!(
            out.actions.is_empty(),
            "nothing applied before the last part"
        );
        assert_eq!(t.revision(), 0);
        let out = t.apply(&snapshot(7, vec![node("b", 3, "10.244.2.0/24", true)]));
        assert_eq!(out.actions.len(), 1);
        assert_eq!(names(&out.actions[0]), vec!["a", "b"]);
        assert_eq!(t.revision(), 7);
        // A part of an abandoned snapshot is not mixed into a new one.
        t.apply(&first);
        t.abandon_partial();
        let out = t.apply(&snapshot(9, vec![node("b", 3, "10.244.2.0/24", true)]));
        assert_eq!(names(&out.actions[0]), vec!["b"]);
    }
}
