//! The peer set: the other nodes of the cluster, as the watch stream
//! describes them, and the [`PeerSink`] they are applied to.
//!
//! [`PeerDirectory`] is sans-IO: it takes watch events and returns the
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
//! - the revision only moves forward along a stream; a snapshot sets it;
//! - a public key belongs to one peer: when several nodes claim one key,
//!   the established claimant keeps it and the others are not peers
//!   (logged once per claimant and holder, and counted in
//!   [`PeerDirectory::key_conflicts`]). Established means: seen with that key
//!   at the earliest watch revision by this agent (persisted in
//!   `peers.json` as `key-since`), then the earliest join, then the lowest
//!   node id. So a newer node (or a node that changes its key) can never
//!   take an existing peer's key and cut it off, even across restarts;
//! - a peer carries its readiness ([`PeerSpec::ready`]): the data plane
//!   starts no handshake toward a NotReady node.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;

use base64::Engine as _;
use futures::future::BoxFuture;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use weft_proto::v1::{change, watch_event, ChangeType, Node, NodeState, WatchEvent};

use crate::engine::{Dataplane, DataplaneError, PeerSpec};

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
    /// When it first joined (Unix ms), as the control plane says.
    #[serde(default)]
    pub joined_unix_ms: i64,
    /// The watch revision at which this agent first saw the node with its
    /// current key (who holds a key first keeps it).
    #[serde(default)]
    pub key_since: u64,
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
            joined_unix_ms: n.joined_unix_ms,
            key_since: 0,
        }
    }

    /// Who holds a contested key: the smaller claims first.
    fn claim_order(&self) -> (u64, i64, u64, &str) {
        (self.key_since, self.joined_unix_ms, self.id, &self.name)
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
            ready: self.ready,
        })
    }
}

/// What [`PeerDirectory::apply`] learnt from one event.
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
pub struct PeerDirectory {
    self_name: String,
    revision: u64,
    peers: BTreeMap<String, PeerRecord>,
    me: Option<PeerRecord>,
    /// Parts of a snapshot still coming (`Snapshot.more`): its revision and
    /// the nodes so far.
    partial: Option<(u64, Vec<Node>)>,
    /// Claimants refused because another peer holds their key: claimant
    /// name -> holder name (as of the last event).
    refused: BTreeMap<String, String>,
    /// (claimant, holder) pairs already logged, so each conflict is logged
    /// once however often it comes back (bounded).
    logged: BTreeSet<(String, String)>,
    /// Refusals since start (each new claimant/holder conflict counts once).
    key_conflicts: u64,
}

/// At most this many conflicts are remembered as logged.
const MAX_LOGGED_CONFLICTS: usize = 1024;

impl PeerDirectory {
    /// A table for the node `self_name`, starting from a persisted set.
    pub fn new(self_name: &str, revision: u64, peers: Vec<PeerRecord>) -> Self {
        let peers = peers
            .into_iter()
            .filter(|p| p.name != self_name)
            .map(|mut p| {
                // A cache from before keys were tracked: as of its revision.
                if p.key_since == 0 {
                    p.key_since = revision;
                }
                (p.name.clone(), p)
            })
            .collect();
        let mut table = Self {
            self_name: self_name.to_string(),
            revision,
            peers,
            me: None,
            partial: None,
            refused: BTreeMap::new(),
            logged: BTreeSet::new(),
            key_conflicts: 0,
        };
        table.note_conflicts();
        table
    }

    /// Claimants refused since start because another peer holds their
    /// public key (each conflict counted once).
    pub fn key_conflicts(&self) -> u64 {
        self.key_conflicts
    }

    /// Claimants refused right now: claimant name -> the peer holding its
    /// key.
    pub fn refused(&self) -> &BTreeMap<String, String> {
        &self.refused
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

    /// The data plane's view of every usable peer: for each public key,
    /// only the claimant that holds it.
    pub fn specs(&self) -> Vec<PeerSpec> {
        self.effective().into_values().collect()
    }

    /// Every usable peer that holds its key, by name, and the refused
    /// claimants with their holders.
    fn resolve(&self) -> (BTreeMap<String, PeerSpec>, BTreeMap<String, String>) {
        let usable: Vec<(&PeerRecord, PeerSpec)> = self
            .peers
            .values()
            .filter_map(|r| Some((r, r.to_spec().ok()?)))
            .collect();
        let mut holders: HashMap<[u8; 32], &PeerRecord> = HashMap::new();
        for (r, spec) in &usable {
            let holder = holders.entry(spec.public_key).or_insert(r);
            if r.claim_order() < holder.claim_order() {
                *holder = r;
            }
        }
        let mut effective = BTreeMap::new();
        let mut refused = BTreeMap::new();
        for (r, spec) in usable {
            match holders.get(&spec.public_key) {
                Some(h) if h.name != r.name => {
                    refused.insert(r.name.clone(), h.name.clone());
                }
                _ => {
                    effective.insert(r.name.clone(), spec);
                }
            }
        }
        (effective, refused)
    }

    fn effective(&self) -> BTreeMap<String, PeerSpec> {
        self.resolve().0
    }

    /// Updates the refused set after a change: logs and counts each new
    /// conflict once.
    fn note_conflicts(&mut self) {
        let (_, refused) = self.resolve();
        for (claimant, holder) in &refused {
            if self.refused.get(claimant) == Some(holder) {
                continue;
            }
            let pair = (claimant.clone(), holder.clone());
            if !self.logged.contains(&pair) {
                self.key_conflicts += 1;
                tracing::warn!(
                    peer = %claimant,
                    holder = %holder,
                    "refusing node {claimant} as a peer: its public key is already held by peer {holder}, which had it first; \
                     {holder} stays. One key belongs to one node: remove the node that should not have it (`weftctl node remove`)"
                );
                if self.logged.len() < MAX_LOGGED_CONFLICTS {
                    self.logged.insert(pair);
                }
            }
        }
        for (claimant, holder) in &self.refused {
            if !refused.contains_key(claimant) {
                tracing::info!(peer = %claimant, was_held_by = %holder, "node no longer conflicts with another peer's key");
            }
        }
        self.refused = refused;
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
                    let mut r = PeerRecord::from_node(n);
                    if r.name == self.self_name {
                        me = Some(r);
                    } else if usable(&r) {
                        r.key_since = self.key_since(&r, event.revision);
                        peers.insert(r.name.clone(), r);
                    }
                }
                self.peers = peers;
                self.revision = event.revision;
                self.note_conflicts();
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
                let mut r = PeerRecord::from_node(n);
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
                } else if put || delete {
                    let before = self.effective();
                    if put {
                        r.key_since = self.key_since(&r, event.revision);
                        self.put(r);
                    } else {
                        self.peers.remove(&r.name);
                    }
                    self.note_conflicts();
                    out.actions = diff(&before, &self.effective());
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

    /// The `key_since` of `r` seen at `revision`: kept from the record
    /// this table has if the key is the same, else `revision`.
    fn key_since(&self, r: &PeerRecord, revision: u64) -> u64 {
        match self.peers.get(&r.name) {
            Some(old) if old.public_key.trim() == r.public_key.trim() && old.key_since > 0 => {
                old.key_since
            }
            _ => revision,
        }
    }

    fn put(&mut self, r: PeerRecord) {
        match r.to_spec() {
            Ok(_) => {
                self.peers.insert(r.name.clone(), r);
            }
            Err(why) => {
                tracing::warn!(peer = %r.name, reason = %why, "ignoring a node that cannot be a peer");
                self.peers.remove(&r.name);
            }
        }
    }
}

/// The actions that turn the peer set `before` into `after`: removals
/// first, then changed peers (which may free a key), then new ones.
fn diff(
    before: &BTreeMap<String, PeerSpec>,
    after: &BTreeMap<String, PeerSpec>,
) -> Vec<PeerAction> {
    let mut actions: Vec<PeerAction> = before
        .keys()
        .filter(|name| !after.contains_key(*name))
        .map(|name| PeerAction::Remove(name.clone()))
        .collect();
    let changed = after
        .iter()
        .filter(|(name, spec)| before.get(*name).is_some_and(|b| b != *spec));
    let added = after.iter().filter(|(name, _)| !before.contains_key(*name));
    actions.extend(
        changed
            .chain(added)
            .map(|(_, spec)| PeerAction::Set(spec.clone())),
    );
    actions
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
                ..Default::default()
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
        let mut t = PeerDirectory::new("a", 0, vec![]);
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

        // Readiness is part of the data plane's view (no handshakes toward
        // a NotReady node); a change of anything else is not.
        let out = t.apply(&change(
            6,
            ChangeType::Put,
            node("b", 2, "10.244.1.0/24", false),
        ));
        assert!(out.changed);
        assert!(matches!(&out.actions[..], [PeerAction::Set(p)] if p.name == "b" && !p.ready));
        assert!(!t.records()[0].ready);
        let mut relabelled = node("b", 2, "10.244.1.0/24", false);
        relabelled.labels.insert("k".into(), "v".into());
        let out = t.apply(&change(6, ChangeType::Put, relabelled));
        assert!(out.actions.is_empty() && out.changed);
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
        let mut t = PeerDirectory::new("a", 0, vec![]);
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

    fn with_key(mut n: Node, seed: u8) -> Node {
        n.public_key = base64::engine::general_purpose::STANDARD.encode([seed; 32]);
        n
    }

    fn set_names(actions: &[PeerAction]) -> Vec<String> {
        actions.iter().flat_map(names).collect()
    }

    /// Issue 10, item 1: a node that joins with another node's key (or
    /// takes it with UpdateNode) never displaces the peer that held it,
    /// on a change, in a snapshot, or after a restart from the cache.
    #[test]
    fn a_newer_claimant_of_a_key_never_displaces_the_established_peer() {
        let mut t = PeerDirectory::new("me", 0, vec![]);
        let mut n1 = node("n1", 2, "10.244.1.0/24", true);
        n1.joined_unix_ms = 1_000;
        t.apply(&snapshot(
            4,
            vec![node("me", 1, "10.244.0.0/24", true), n1.clone()],
        ));
        // "a-dup" sorts before "n1" and joins with n1's key.
        let mut dup = with_key(node("a-dup", 9, "10.244.9.0/24", true), 2);
        dup.joined_unix_ms = 2_000;
        let out = t.apply(&change(5, ChangeType::Put, dup.clone()));
        assert!(out.actions.is_empty(), "{:?}", out.actions);
        assert_eq!(
            t.specs()
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>(),
            ["n1"]
        );
        assert_eq!(t.refused().get("a-dup").map(String::as_str), Some("n1"));
        assert_eq!(t.key_conflicts(), 1);
        // Every later event keeps it that way, and counts the conflict once.
        let mut moved = dup.clone();
        moved.endpoints = vec!["192.0.2.99:51820".into()];
        assert!(t
            .apply(&change(6, ChangeType::Put, moved))
            .actions
            .is_empty());
        let out = t.apply(&snapshot(
            7,
            vec![
                node("me", 1, "10.244.0.0/24", true),
                dup.clone(),
                n1.clone(),
            ],
        ));
        assert_eq!(set_names(&out.actions), ["n1"]);
        assert_eq!(t.key_conflicts(), 1);

        // After a restart from the cache (peers.json): still n1.
        let mut restarted = PeerDirectory::new("me", t.revision(), t.records());
        assert_eq!(
            restarted
                .specs()
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>(),
            ["n1"]
        );
        let out = restarted.apply(&snapshot(8, vec![dup.clone(), n1.clone()]));
        assert_eq!(set_names(&out.actions), ["n1"]);

        // An established node that takes another's key (UpdateNode) loses
        // too, whatever its join time.
        let mut n3 = node("n3", 3, "10.244.3.0/24", true);
        n3.joined_unix_ms = 1;
        t.apply(&change(9, ChangeType::Put, n3.clone()));
        let out = t.apply(&change(10, ChangeType::Put, with_key(n3.clone(), 2)));
        assert_eq!(out.actions, vec![PeerAction::Remove("n3".into())]);
        assert_eq!(t.refused().get("n3").map(String::as_str), Some("n1"));

        // When the holder goes, the claimant that saw it first gets it.
        let out = t.apply(&change(11, ChangeType::Delete, n1.clone()));
        assert_eq!(out.actions[0], PeerAction::Remove("n1".into()));
        assert_eq!(set_names(&out.actions[1..]), ["a-dup"]);
        assert_eq!(t.refused().get("n3").map(String::as_str), Some("a-dup"));
        assert!(!t.refused().contains_key("a-dup"));
    }

    #[test]
    fn on_a_fresh_start_the_earliest_joined_claimant_holds_the_key() {
        let mut first = node("zz-first", 2, "10.244.1.0/24", true);
        first.joined_unix_ms = 1_000;
        let mut later = with_key(node("a-later", 3, "10.244.2.0/24", true), 2);
        later.joined_unix_ms = 5_000;
        let mut t = PeerDirectory::new("me", 0, vec![]);
        let out = t.apply(&snapshot(3, vec![later, first]));
        assert_eq!(set_names(&out.actions), ["zz-first"]);
        assert_eq!(t.key_conflicts(), 1);
    }

    #[test]
    fn persisted_self_is_dropped() {
        let r = PeerRecord::from_node(&node("a", 1, "10.244.0.0/24", true));
        let t = PeerDirectory::new("a", 3, vec![r]);
        assert!(t.specs().is_empty());
        assert_eq!(t.revision(), 3);
    }

    #[test]
    fn changes_sharing_a_revision_are_all_applied() {
        let mut t = PeerDirectory::new("me", 0, vec![]);
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
        let mut t = PeerDirectory::new("me", 0, vec![]);
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
