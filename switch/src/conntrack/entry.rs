//! One tracked connection: both keys, its state, counters, owner, and the
//! slots the later steps of the packet path fill in (policy verdicts, the
//! service translation it was made with).

use super::key::FlowKey;
use super::state::FlowState;
use super::tcp::Dir;
use crate::policy::Verdict;

/// "No entry" in a link.
pub(super) const NIL: u32 = u32::MAX;

/// Which pod (or other source) made an entry, for per-source limits: a
/// small dense number chosen by the caller (a port id, a peer id shifted
/// past the ports, ...). Numbers beyond the table's owner slots share
/// slots (modulo).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Owner(pub u32);

/// The policy verdicts of a connection, decided once on its first packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PolicySlot {
    /// The egress verdict of the source pod's policies, if decided here.
    pub egress: Option<Verdict>,
    /// The ingress verdict of the destination pod's policies, if decided
    /// here.
    pub ingress: Option<Verdict>,
    /// The policy table generation the verdicts come from.
    pub generation: u64,
}

/// The service translation an entry was made with: which frontend of
/// which service table generation, so that a packet of the entry after a
/// table change can check that its endpoint still serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceRef {
    /// [`ServiceTable::generation`](crate::service::ServiceTable::generation)
    /// the endpoint was last checked against.
    pub generation: u64,
    /// The source was rewritten too (hairpin).
    pub hairpin: bool,
}

/// Intrusive links: in the global list of its kind (evictable or
/// protected) and, while evictable, in its owner's list.
#[derive(Debug, Clone, Copy)]
pub(super) struct Links {
    pub(super) prev: u32,
    pub(super) next: u32,
    pub(super) owner_prev: u32,
    pub(super) owner_next: u32,
}

impl Default for Links {
    fn default() -> Self {
        Self {
            prev: NIL,
            next: NIL,
            owner_prev: NIL,
            owner_next: NIL,
        }
    }
}

/// A tracked connection. See the module docs.
#[derive(Debug, Clone)]
pub struct Entry {
    pub(super) orig: FlowKey,
    pub(super) reply: FlowKey,
    pub(super) state: FlowState,
    pub(super) owner: Owner,
    /// Milliseconds since the table's epoch.
    pub(super) created: u64,
    pub(super) last_seen: u64,
    pub(super) deadline: u64,
    /// When the entry last moved to the tail of its lists.
    pub(super) moved: u64,
    pub(super) packets: [u64; 2],
    pub(super) bytes: [u64; 2],
    pub(super) live: bool,
    /// Which global list it is on.
    pub(super) protected: bool,
    pub(super) links: Links,
    /// Filled in by the policy step.
    pub policy: PolicySlot,
    /// Filled in by the service step.
    pub service: Option<ServiceRef>,
}

impl Entry {
    /// The key of the original direction (as the first packet carried it).
    pub fn orig(&self) -> &FlowKey {
        &self.orig
    }

    /// The key replies carry (after translation of the first packet:
    /// from the endpoint to the client, or to the hairpin address).
    pub fn reply(&self) -> &FlowKey {
        &self.reply
    }

    /// What a packet travelling `dir` must be rewritten to: the key the
    /// other end expects, i.e. the reverse of the other direction's key.
    /// Equal to the packet's own key when nothing is translated.
    pub fn rewrite_for(&self, dir: Dir) -> FlowKey {
        match dir {
            Dir::Original => self.reply.reverse(),
            Dir::Reply => self.orig.reverse(),
        }
    }

    /// Whether packets are rewritten (the reply key is not the reverse of
    /// the original one).
    pub fn is_translated(&self) -> bool {
        self.reply != self.orig.reverse()
    }

    /// The protocol state.
    pub fn state(&self) -> FlowState {
        self.state
    }

    /// Which source made it.
    pub fn owner(&self) -> Owner {
        self.owner
    }

    /// Packets seen in direction `dir`.
    pub fn packets(&self, dir: Dir) -> u64 {
        self.packets.get(dir.index()).copied().unwrap_or(0)
    }

    /// Bytes (IP packets' lengths) seen in direction `dir`.
    pub fn bytes(&self, dir: Dir) -> u64 {
        self.bytes.get(dir.index()).copied().unwrap_or(0)
    }

    /// Whether a full table keeps this entry (see
    /// [`FlowState::protected`]).
    pub fn is_protected(&self) -> bool {
        self.protected
    }

    pub(super) fn new(orig: FlowKey, reply: FlowKey, state: FlowState, owner: Owner) -> Self {
        Self {
            orig,
            reply,
            state,
            owner,
            created: 0,
            last_seen: 0,
            deadline: 0,
            moved: 0,
            packets: [0; 2],
            bytes: [0; 2],
            live: true,
            protected: false,
            links: Links::default(),
            policy: PolicySlot::default(),
            service: None,
        }
    }
}
