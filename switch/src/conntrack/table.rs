//! The table: preallocated entries, the two-key index, the eviction lists
//! and per-owner accounting. See the module docs of `conntrack`.

use std::time::{Duration, Instant};

use super::entry::{Entry, Owner};
use super::index::Index;
use super::key::{FlowKey, HashSeed};
use super::lists::{Chain, List};
use super::state::{FlowState, Timeouts};
use super::tcp::{Dir, TcpFlags};

/// The table's size and limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConntrackConfig {
    /// Entries at most (at most 2^30).
    pub capacity: usize,
    /// Entries one owner may hold at most.
    pub per_source: usize,
    /// Owner slots for per-source accounting (owners beyond share slots).
    pub owner_slots: usize,
    pub timeouts: Timeouts,
    /// Entries the expiry sweep looks at on each insert (amortised
    /// expiry: the sweep keeps up with any insert rate).
    pub expire_per_insert: usize,
}

impl Default for ConntrackConfig {
    fn default() -> Self {
        Self {
            capacity: 131_072,
            per_source: 16_384,
            owner_slots: 65_536 + 1024,
            timeouts: Timeouts::default(),
            expire_per_insert: 4,
        }
    }
}

/// A live entry's number in the table; valid until the entry is removed
/// (use it within the handling of one packet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EntryId(pub(super) u32);

/// Why [`Conntrack::create`] made no entry. Each is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CreateError {
    /// One of the two keys belongs to a live entry.
    #[error("a live entry holds the key")]
    KeyTaken,
    /// The owner is at its limit with nothing of its own to evict.
    #[error("the source is at its entry limit")]
    SourceLimit,
    /// The table is full of protected (established) entries.
    #[error("the table is full")]
    TableFull,
}

/// The table's counters (monotonic, except `entries`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConntrackStats {
    pub entries: u64,
    pub inserts: u64,
    /// Entries removed because their timeout passed.
    pub expired: u64,
    /// Evictable entries removed to make room in a full table.
    pub evicted: u64,
    /// An owner's own oldest evictable entry removed to stay within its
    /// limit (or its fair share of a full table).
    pub source_evicted: u64,
    /// Creates refused: the owner at its limit, nothing to evict.
    pub source_limited: u64,
    /// Creates refused: the table full of protected entries.
    pub table_full: u64,
    /// Creates refused: a key already in use.
    pub key_taken: u64,
    /// Entries removed by the caller.
    pub removed: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct OwnerSlot {
    count: u32,
    evictable: List,
}

/// The connection tracking table. See the module docs of `conntrack`.
#[derive(Debug, Clone)]
pub struct Conntrack {
    cfg: ConntrackConfig,
    seed: HashSeed,
    epoch: Instant,
    entries: Vec<Entry>,
    free: Vec<u32>,
    index: Index,
    evictable: List,
    protected: List,
    owners: Vec<OwnerSlot>,
    active_owners: usize,
    cursor: usize,
    len: usize,
    stats: ConntrackStats,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The LRU order is kept to this precision: an entry moves to the tail of
/// its lists at most once per interval.
const TOUCH_MS: u64 = 1000;

impl Conntrack {
    /// A table for `cfg`, hashing with `seed`; times are kept relative to
    /// `now`. Reserves all its memory here.
    pub fn new(cfg: ConntrackConfig, seed: HashSeed, now: Instant) -> Self {
        let capacity = cfg.capacity.clamp(1, 1 << 30);
        let cfg = ConntrackConfig {
            capacity,
            per_source: cfg.per_source.max(1),
            owner_slots: cfg.owner_slots.max(1),
            ..cfg
        };
        Self {
            cfg,
            seed,
            epoch: now,
            entries: Vec::with_capacity(capacity),
            free: Vec::with_capacity(capacity),
            index: Index::with_capacity(capacity * 2),
            evictable: List::default(),
            protected: List::default(),
            owners: vec![OwnerSlot::default(); cfg.owner_slots.max(1)],
            active_owners: 0,
            cursor: 0,
            len: 0,
            stats: ConntrackStats::default(),
        }
    }

    fn tick(&self, now: Instant) -> u64 {
        ms(now.saturating_duration_since(self.epoch))
    }

    fn owner_slot(&self, owner: Owner) -> usize {
        usize::try_from(owner.0).unwrap_or(0) % self.owners.len().max(1)
    }

    fn entry_at(&self, id: u32) -> Option<&Entry> {
        self.entries
            .get(usize::try_from(id).ok()?)
            .filter(|e| e.live)
    }

    fn find(&self, key: &FlowKey) -> Option<u32> {
        let entries = &self.entries;
        self.index.find(key.hash(&self.seed), |id| {
            usize::try_from(id)
                .ok()
                .and_then(|i| entries.get(i))
                .is_some_and(|e| e.live && (e.orig == *key || e.reply == *key))
        })
    }

    /// The live entry `key` belongs to and the direction it travels. An
    /// entry whose timeout has passed is removed here (counted as
    /// expired) and not returned.
    pub fn lookup(&mut self, key: &FlowKey, now: Instant) -> Option<(EntryId, Dir)> {
        let id = self.find(key)?;
        let e = self.entry_at(id)?;
        let dir = if e.orig == *key {
            Dir::Original
        } else {
            Dir::Reply
        };
        if e.deadline <= self.tick(now) {
            self.unlink_and_free(id);
            self.stats.expired += 1;
            return None;
        }
        Some((EntryId(id), dir))
    }

    /// The entry `id`, if it is live.
    pub fn get(&self, id: EntryId) -> Option<&Entry> {
        self.entry_at(id.0)
    }

    /// The entry `id`, if it is live, to fill in its policy and service
    /// slots.
    pub fn get_mut(&mut self, id: EntryId) -> Option<&mut Entry> {
        self.entries
            .get_mut(usize::try_from(id.0).ok()?)
            .filter(|e| e.live)
    }

    /// Creates the entry of a new connection whose first packet has key
    /// `orig` and whose replies will carry `reply` (`orig.reverse()`
    /// without translation), owned by `owner`, in `state`. Its timeout is
    /// armed by the first [`Self::track`] of that packet.
    ///
    /// Room is made, in this order: the owner at its limit (or, in a full
    /// table, above its fair share: capacity / owners holding entries)
    /// gives up its own oldest evictable entry; a full table gives up its
    /// oldest evictable entry, or an expired protected one. Protected
    /// entries that have not expired are never taken.
    pub fn create(
        &mut self,
        orig: FlowKey,
        reply: FlowKey,
        owner: Owner,
        state: FlowState,
        now: Instant,
    ) -> Result<EntryId, CreateError> {
        if self.lookup(&orig, now).is_some() || self.lookup(&reply, now).is_some() {
            self.stats.key_taken += 1;
            return Err(CreateError::KeyTaken);
        }
        let tick = self.tick(now);
        self.sweep(tick, self.cfg.expire_per_insert);
        self.make_room(owner, tick)?;
        let id = match self.free.pop() {
            Some(id) => id,
            None => match u32::try_from(self.entries.len()) {
                Ok(id) if self.entries.len() < self.cfg.capacity => {
                    self.entries.push(Entry::new(orig, reply, state, owner));
                    id
                }
                _ => {
                    self.stats.table_full += 1;
                    return Err(CreateError::TableFull);
                }
            },
        };
        let mut entry = Entry::new(orig, reply, state, owner);
        entry.created = tick;
        entry.last_seen = tick;
        entry.moved = tick;
        entry.deadline = tick.saturating_add(ms(state.timeout(&self.cfg.timeouts)));
        if let Some(slot) = self
            .entries
            .get_mut(usize::try_from(id).unwrap_or(usize::MAX))
        {
            *slot = entry;
        }
        self.index.insert(orig.hash(&self.seed), id);
        self.index.insert(reply.hash(&self.seed), id);
        self.link(id, false);
        let slot = self.owner_slot(owner);
        if let Some(o) = self.owners.get_mut(slot) {
            if o.count == 0 {
                self.active_owners += 1;
            }
            o.count = o.count.saturating_add(1);
        }
        self.len += 1;
        self.stats.inserts += 1;
        self.stats.entries = self.len as u64;
        Ok(EntryId(id))
    }

    fn make_room(&mut self, owner: Owner, tick: u64) -> Result<(), CreateError> {
        let slot = self.owner_slot(owner);
        let (count, own_oldest) = self
            .owners
            .get(slot)
            .map_or((0, None), |o| (o.count as usize, o.evictable.first()));
        let full = self.len >= self.cfg.capacity;
        let fair_share = self.cfg.capacity / self.active_owners.max(1);
        if count >= self.cfg.per_source || (full && count >= fair_share && own_oldest.is_some()) {
            let Some(victim) = own_oldest else {
                self.stats.source_limited += 1;
                return Err(CreateError::SourceLimit);
            };
            self.remove_counted(victim, tick, true);
            return Ok(());
        }
        if !full {
            return Ok(());
        }
        if let Some(victim) = self.evictable.first() {
            self.remove_counted(victim, tick, false);
            return Ok(());
        }
        match self.protected.first() {
            Some(v) if self.entry_at(v).is_some_and(|e| e.deadline <= tick) => {
                self.unlink_and_free(v);
                self.stats.expired += 1;
                Ok(())
            }
            _ => {
                self.stats.table_full += 1;
                Err(CreateError::TableFull)
            }
        }
    }

    /// Removes `id` to make room, counting it as expired if its time had
    /// come anyway.
    fn remove_counted(&mut self, id: u32, tick: u64, own: bool) {
        let expired = self.entry_at(id).is_some_and(|e| e.deadline <= tick);
        self.unlink_and_free(id);
        match (expired, own) {
            (true, _) => self.stats.expired += 1,
            (false, true) => self.stats.source_evicted += 1,
            (false, false) => self.stats.evicted += 1,
        }
    }

    /// Accounts a packet travelling `dir` (with `flags` if TCP) of
    /// `bytes` bytes that stands for `packets` packets on the wire (a
    /// TSO/GRO super-packet is tracked once, for all its segments):
    /// advances the state, re-arms the timeout, counts. Returns the new
    /// state, or `None` if `id` is not live.
    pub fn track(
        &mut self,
        id: EntryId,
        dir: Dir,
        flags: TcpFlags,
        bytes: usize,
        packets: u32,
        now: Instant,
    ) -> Option<FlowState> {
        let tick = self.tick(now);
        let timeouts = self.cfg.timeouts;
        let e = self.get_mut(id)?;
        let age = Duration::from_millis(tick.saturating_sub(e.created));
        let state = e.state.advance(dir, flags, age);
        e.state = state;
        let d = dir.index();
        if let Some(p) = e.packets.get_mut(d) {
            *p = p.saturating_add(u64::from(packets.max(1)));
        }
        if let Some(b) = e.bytes.get_mut(d) {
            *b = b.saturating_add(bytes as u64);
        }
        e.last_seen = tick;
        e.deadline = tick.saturating_add(ms(state.timeout(&timeouts)));
        let (was, now_protected) = (e.protected, state.protected());
        let stale = tick >= e.moved.saturating_add(TOUCH_MS);
        if was != now_protected || stale {
            e.moved = tick;
            self.unlink(id.0);
            self.link(id.0, now_protected);
        }
        Some(state)
    }

    /// Removes entry `id` (e.g. a UDP flow whose endpoint went away).
    pub fn remove(&mut self, id: EntryId) -> bool {
        if self.entry_at(id.0).is_none() {
            return false;
        }
        self.unlink_and_free(id.0);
        self.stats.removed += 1;
        true
    }

    /// Looks at up to `budget` entries from where the last sweep stopped
    /// and removes those whose timeout has passed. Returns how many.
    pub fn expire(&mut self, now: Instant, budget: usize) -> usize {
        self.sweep(self.tick(now), budget)
    }

    fn sweep(&mut self, tick: u64, budget: usize) -> usize {
        let n = self.entries.len();
        if n == 0 {
            return 0;
        }
        let mut removed = 0;
        for _ in 0..budget.min(n) {
            self.cursor = if self.cursor + 1 >= n {
                0
            } else {
                self.cursor + 1
            };
            let id = u32::try_from(self.cursor).unwrap_or(u32::MAX);
            if self.entry_at(id).is_some_and(|e| e.deadline <= tick) {
                self.unlink_and_free(id);
                self.stats.expired += 1;
                removed += 1;
            }
        }
        removed
    }

    /// Puts `id` at the tail of the global list of its kind and, if
    /// evictable, of its owner's list.
    fn link(&mut self, id: u32, protected: bool) {
        let Some(owner) = self.entry_at(id).map(|e| e.owner) else {
            return;
        };
        let slot = self.owner_slot(owner);
        if let Some(e) = self
            .entries
            .get_mut(usize::try_from(id).unwrap_or(usize::MAX))
        {
            e.protected = protected;
        }
        if protected {
            self.protected
                .push_back(&mut self.entries, Chain::Global, id);
        } else {
            self.evictable
                .push_back(&mut self.entries, Chain::Global, id);
            if let Some(o) = self.owners.get_mut(slot) {
                o.evictable.push_back(&mut self.entries, Chain::Owner, id);
            }
        }
    }

    fn unlink(&mut self, id: u32) {
        let Some((owner, protected)) = self.entry_at(id).map(|e| (e.owner, e.protected)) else {
            return;
        };
        let slot = self.owner_slot(owner);
        if protected {
            self.protected.unlink(&mut self.entries, Chain::Global, id);
        } else {
            self.evictable.unlink(&mut self.entries, Chain::Global, id);
            if let Some(o) = self.owners.get_mut(slot) {
                o.evictable.unlink(&mut self.entries, Chain::Owner, id);
            }
        }
    }

    fn unlink_and_free(&mut self, id: u32) {
        let Some((orig, reply, owner)) = self.entry_at(id).map(|e| (e.orig, e.reply, e.owner))
        else {
            return;
        };
        self.unlink(id);
        self.index.remove(orig.hash(&self.seed), id);
        self.index.remove(reply.hash(&self.seed), id);
        if let Some(e) = self
            .entries
            .get_mut(usize::try_from(id).unwrap_or(usize::MAX))
        {
            e.live = false;
        }
        let slot = self.owner_slot(owner);
        if let Some(o) = self.owners.get_mut(slot) {
            o.count = o.count.saturating_sub(1);
            if o.count == 0 {
                self.active_owners = self.active_owners.saturating_sub(1);
            }
        }
        self.free.push(id);
        self.len = self.len.saturating_sub(1);
        self.stats.entries = self.len as u64;
    }

    /// Live entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The configuration in force (capacity clamped).
    pub fn config(&self) -> &ConntrackConfig {
        &self.cfg
    }

    /// Entries `owner`'s slot holds.
    pub fn owner_entries(&self, owner: Owner) -> usize {
        self.owners
            .get(self.owner_slot(owner))
            .map_or(0, |o| o.count as usize)
    }

    /// The counters.
    pub fn stats(&self) -> &ConntrackStats {
        &self.stats
    }

    /// Whether `key` belongs to no live entry (for choosing a hairpin
    /// source port).
    pub fn is_free(&self, key: &FlowKey, now: Instant) -> bool {
        let tick = self.tick(now);
        self.find(key)
            .and_then(|id| self.entry_at(id))
            .is_none_or(|e| e.deadline <= tick)
    }

    /// Every live entry (control path: status, traces).
    pub fn iter(&self) -> impl Iterator<Item = (EntryId, &Entry)> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.live)
            .filter_map(|(i, e)| Some((EntryId(u32::try_from(i).ok()?), e)))
    }

    /// The time left before `id` expires, if it is live.
    pub fn time_left(&self, id: EntryId, now: Instant) -> Option<Duration> {
        let e = self.get(id)?;
        Some(Duration::from_millis(
            e.deadline.saturating_sub(self.tick(now)),
        ))
    }
}
