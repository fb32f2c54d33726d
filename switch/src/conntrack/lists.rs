//! Intrusive doubly linked lists of entry ids, oldest first: the global
//! lists of evictable and protected entries, and each owner's list of
//! evictable entries.
//!
//! Contract: the links live in the entries ([`Links`]); a list is a head,
//! a tail and a length. Operations never allocate or panic: a missing id
//! is skipped. An entry is on at most one global list and at most one
//! owner list, which the table keeps in step with `Entry::protected`.

use super::entry::{Entry, Links, NIL};

/// Which pair of links a list uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chain {
    Global,
    Owner,
}

/// Head, tail and length of one list.
#[derive(Debug, Clone, Copy)]
pub(super) struct List {
    pub(super) head: u32,
    pub(super) tail: u32,
    pub(super) len: u32,
}

impl Default for List {
    fn default() -> Self {
        Self {
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }
}

fn links(entries: &mut [Entry], id: u32) -> Option<&mut Links> {
    entries
        .get_mut(usize::try_from(id).ok()?)
        .map(|e| &mut e.links)
}

fn get(l: &Links, chain: Chain) -> (u32, u32) {
    match chain {
        Chain::Global => (l.prev, l.next),
        Chain::Owner => (l.owner_prev, l.owner_next),
    }
}

fn set_prev(entries: &mut [Entry], id: u32, chain: Chain, v: u32) {
    if let Some(l) = links(entries, id) {
        match chain {
            Chain::Global => l.prev = v,
            Chain::Owner => l.owner_prev = v,
        }
    }
}

fn set_next(entries: &mut [Entry], id: u32, chain: Chain, v: u32) {
    if let Some(l) = links(entries, id) {
        match chain {
            Chain::Global => l.next = v,
            Chain::Owner => l.owner_next = v,
        }
    }
}

impl List {
    /// Appends `id` (which must be on no list of this chain).
    pub(super) fn push_back(&mut self, entries: &mut [Entry], chain: Chain, id: u32) {
        set_prev(entries, id, chain, self.tail);
        set_next(entries, id, chain, NIL);
        if self.tail == NIL {
            self.head = id;
        } else {
            set_next(entries, self.tail, chain, id);
        }
        self.tail = id;
        self.len = self.len.saturating_add(1);
    }

    /// Takes `id` (which must be on this list) out.
    pub(super) fn unlink(&mut self, entries: &mut [Entry], chain: Chain, id: u32) {
        let Some((prev, next)) = links(entries, id).map(|l| get(l, chain)) else {
            return;
        };
        if prev == NIL {
            self.head = next;
        } else {
            set_next(entries, prev, chain, next);
        }
        if next == NIL {
            self.tail = prev;
        } else {
            set_prev(entries, next, chain, prev);
        }
        set_prev(entries, id, chain, NIL);
        set_next(entries, id, chain, NIL);
        self.len = self.len.saturating_sub(1);
    }

    /// The oldest id, if any.
    pub(super) fn first(&self) -> Option<u32> {
        (self.head != NIL).then_some(self.head)
    }
}
