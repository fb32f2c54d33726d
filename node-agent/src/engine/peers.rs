//! The engine's peer table: one slot per [`PeerId`], found by name and by
//! public key on the control and handshake paths, and by WireGuard receiver
//! index on the data path without hashing.
//!
//! Contract:
//! - Ids are dense and recycled (the lowest free slot), at most
//!   [`MAX_ID`](weft_switch::MAX_ID), because the switch indexes vectors
//!   by them.
//! - A peer's [`Tunnel`] index is `generation << 16 | id`: 24 bits, so it
//!   fits boringtun's session indexes. The generation of a slot changes with
//!   every new tunnel in it (a new peer in a recycled slot, or a new key), so
//!   datagrams for an old session never reach the new one:
//!   [`PeerTable::by_index`] checks the whole index, not just the id.

use std::collections::HashMap;
use std::net::SocketAddr;

use ipnet::IpNet;
use tracing::Span;

use super::slots::Slots;
use super::udp::TxBatch;
use crate::wg::Tunnel;
use weft_switch::PeerId;

/// Per-peer traffic, counted by the engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct PeerTraffic {
    /// Bytes of authenticated datagrams received from the peer.
    pub(super) rx_bytes: u64,
    /// Authenticated datagrams received from the peer.
    pub(super) rx_packets: u64,
    /// Bytes of datagrams sent to the peer.
    pub(super) tx_bytes: u64,
    /// Datagrams sent to the peer.
    pub(super) tx_packets: u64,
    /// Packets for the peer that found no session: held by the tunnel for
    /// its handshake (it keeps only the newest few; the rest are lost).
    pub(super) queued_packets: u64,
}

/// One peer.
#[derive(Debug)]
pub(super) struct Peer {
    pub(super) name: String,
    pub(super) public_key: [u8; 32],
    /// Where datagrams go: the configured endpoint, or where the peer last
    /// sent an authenticated datagram from.
    pub(super) endpoint: Option<SocketAddr>,
    /// The endpoint last configured; a later [`PeerSpec`](super::PeerSpec)
    /// with the same one does not undo roaming.
    pub(super) configured_endpoint: Option<SocketAddr>,
    pub(super) allowed: Vec<IpNet>,
    pub(super) tunnel: Tunnel,
    pub(super) traffic: PeerTraffic,
    /// Whether the session is expired (logged once per expiry).
    pub(super) expired: bool,
    /// Whether the control plane reports the node Ready (see
    /// [`PeerSpec::ready`](super::PeerSpec::ready)).
    pub(super) ready: bool,
    /// Handshake initiations the timers sent since the last completed
    /// handshake, and when that was last logged (rate-limited).
    pub(super) unanswered: u32,
    pub(super) unanswered_logged: Option<std::time::Instant>,
    pub(super) span: Span,
}

impl Peer {
    /// Counts a datagram of `len` bytes sent to the peer.
    pub(super) fn count_tx(&mut self, len: usize) {
        self.traffic.tx_bytes = self.traffic.tx_bytes.wrapping_add(len as u64);
        self.traffic.tx_packets = self.traffic.tx_packets.wrapping_add(1);
    }

    /// Whether the data plane may start a handshake toward it: only while
    /// its node is Ready, or while a session exists (rekeying it).
    pub(super) fn may_initiate(&self) -> bool {
        self.ready || self.tunnel.last_handshake().is_some()
    }

    /// Sends a handshake initiation to the peer's endpoint, if it has one
    /// (and the tunnel is not rate limited).
    pub(super) fn initiate(&mut self, tx: &mut TxBatch) {
        let Some(dst) = self.endpoint else {
            return;
        };
        if let Some(n) = self.tunnel.initiate(tx.slot()) {
            tx.commit(n, dst);
            self.count_tx(n);
        }
    }

    /// Counts an authenticated datagram of `len` bytes from the peer.
    pub(super) fn count_rx(&mut self, len: usize) {
        self.traffic.rx_bytes = self.traffic.rx_bytes.wrapping_add(len as u64);
        self.traffic.rx_packets = self.traffic.rx_packets.wrapping_add(1);
    }
}

/// All peers.
#[derive(Debug, Default)]
pub(super) struct PeerTable {
    slots: Slots<Peer>,
    /// Per slot: the generation of the next tunnel made for it.
    generations: Vec<u8>,
    by_name: HashMap<String, PeerId>,
    by_key: HashMap<[u8; 32], PeerId>,
}

impl PeerTable {
    /// The lowest free id, or `None` if all are taken.
    pub(super) fn free_id(&self) -> Option<PeerId> {
        self.slots.free().map(PeerId)
    }

    /// A fresh tunnel index for slot `id`.
    pub(super) fn next_index(&mut self, id: PeerId) -> u32 {
        let i = id.0 as usize;
        if self.generations.len() <= i {
            self.generations.resize(i + 1, 0);
        }
        let generation = self.generations[i];
        self.generations[i] = generation.wrapping_add(1);
        (u32::from(generation) << 16) | (id.0 & 0xffff)
    }

    /// Puts `peer` in slot `id` (which must be free or hold the same name).
    pub(super) fn insert(&mut self, id: PeerId, peer: Peer) {
        if let Some(old) = self.slots.remove(id.0) {
            self.by_key.remove(&old.public_key);
            self.by_name.remove(&old.name);
        }
        self.by_name.insert(peer.name.clone(), id);
        self.by_key.insert(peer.public_key, id);
        self.slots.insert(id.0, peer);
    }

    /// Removes the peer in slot `id`.
    pub(super) fn remove(&mut self, id: PeerId) -> Option<Peer> {
        let peer = self.slots.remove(id.0)?;
        self.by_name.remove(&peer.name);
        self.by_key.remove(&peer.public_key);
        Some(peer)
    }

    /// Changes the key of the peer in slot `id`, with its new tunnel.
    pub(super) fn rekey(&mut self, id: PeerId, public_key: [u8; 32], tunnel: Tunnel) {
        if let Some(peer) = self.slots.get_mut(id.0) {
            self.by_key.remove(&peer.public_key);
            self.by_key.insert(public_key, id);
            peer.public_key = public_key;
            peer.tunnel = tunnel;
            peer.expired = false;
        }
    }

    pub(super) fn id_by_name(&self, name: &str) -> Option<PeerId> {
        self.by_name.get(name).copied()
    }

    pub(super) fn id_by_key(&self, key: &[u8; 32]) -> Option<PeerId> {
        self.by_key.get(key).copied()
    }

    /// The peer whose tunnel has index `index` (hot path: no hashing).
    pub(super) fn by_index(&mut self, index: u32) -> Option<(PeerId, &mut Peer)> {
        let id = PeerId(index & 0xffff);
        let peer = self.slots.get_mut(id.0)?;
        (peer.tunnel.index() == index).then_some((id, peer))
    }

    pub(super) fn get(&self, id: PeerId) -> Option<&Peer> {
        self.slots.get(id.0)
    }

    pub(super) fn get_mut(&mut self, id: PeerId) -> Option<&mut Peer> {
        self.slots.get_mut(id.0)
    }

    /// Every peer with its id.
    pub(super) fn iter(&self) -> impl Iterator<Item = (PeerId, &Peer)> {
        self.slots.iter().map(|(i, p)| (PeerId(i), p))
    }

    /// Every peer with its id, mutably.
    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (PeerId, &mut Peer)> {
        self.slots.iter_mut().map(|(i, p)| (PeerId(i), p))
    }

    /// The names of all peers.
    pub(super) fn names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wg::NodeKey;

    fn peer(name: &str, key: u8, index: u32) -> Peer {
        let me = NodeKey::from_bytes([1; 32]);
        let public_key = crate::wg::public_key_of([key; 32]);
        Peer {
            name: name.into(),
            public_key,
            endpoint: None,
            configured_endpoint: None,
            allowed: vec![],
            tunnel: Tunnel::new(&me, public_key, None, index).unwrap(),
            traffic: PeerTraffic::default(),
            expired: false,
            ready: true,
            unanswered: 0,
            unanswered_logged: None,
            span: Span::none(),
        }
    }

    #[test]
    fn ids_are_recycled_and_indexes_are_not() {
        let mut t = PeerTable::default();
        let a = t.free_id().unwrap();
        let ia = t.next_index(a);
        t.insert(a, peer("a", 2, ia));
        let b = t.free_id().unwrap();
        let ib = t.next_index(b);
        t.insert(b, peer("b", 3, ib));
        assert_eq!((a, b), (PeerId(0), PeerId(1)));
        assert_eq!(t.by_index(ib).map(|(id, _)| id), Some(b));

        t.remove(a).unwrap();
        assert_eq!(t.free_id(), Some(a));
        let ic = t.next_index(a);
        assert_ne!(ic, ia, "a recycled slot gets a new generation");
        t.insert(a, peer("c", 4, ic));
        assert!(t.by_index(ia).is_none(), "the old session's index is gone");
        assert_eq!(t.by_index(ic).map(|(id, _)| id), Some(a));
        assert_eq!(t.id_by_name("c"), Some(a));
        assert_eq!(t.id_by_name("a"), None);
        assert_eq!(t.id_by_key(&crate::wg::public_key_of([4; 32])), Some(a));
        assert!(ic <= crate::wg::MAX_TUNNEL_INDEX);
    }

    #[test]
    fn rekey_moves_the_key_and_the_index() {
        let mut t = PeerTable::default();
        let id = t.free_id().unwrap();
        let i0 = t.next_index(id);
        t.insert(id, peer("a", 2, i0));
        let i1 = t.next_index(id);
        let me = NodeKey::from_bytes([1; 32]);
        let key = crate::wg::public_key_of([9; 32]);
        t.rekey(id, key, Tunnel::new(&me, key, None, i1).unwrap());
        assert_eq!(t.id_by_key(&key), Some(id));
        assert_eq!(t.id_by_key(&crate::wg::public_key_of([2; 32])), None);
        assert!(t.by_index(i0).is_none());
        assert!(t.by_index(i1).is_some());
    }
}
