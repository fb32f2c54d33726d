//! An open-addressing hash index from keyed hashes to small ids: linear
//! probing, deletion by backward shift (no tombstones, so lookups never
//! slow down as entries come and go).
//!
//! Contract: the index stores only `(hash, id)` pairs; the owner keeps the
//! keys and answers "is id `i` the key I look for" through a closure. It
//! is sized once, for at most `keys` ids, to at least twice as many slots
//! (a load factor of at most 1/2: expected probes ~1.5 for a hit, ~2.5 for
//! a miss with a good hash), and never allocates afterwards. Nothing here
//! panics: every slot access is through `get`.

/// A slot: the hash's high 32 bits and `id + 1`; 0 is empty.
type Slot = u64;

/// See the module docs.
#[derive(Debug, Clone)]
pub(crate) struct Index {
    slots: Vec<Slot>,
    mask: usize,
}

fn pack(hash32: u32, id: u32) -> Slot {
    (u64::from(hash32) << 32) | (u64::from(id) + 1)
}

fn hash_of(slot: Slot) -> u32 {
    // The high half, so the conversion always fits.
    u32::try_from(slot >> 32).unwrap_or(0)
}

fn id_of(slot: Slot) -> Option<u32> {
    u32::try_from(slot & 0xffff_ffff)
        .ok()
        .and_then(|v| v.checked_sub(1))
}

fn fold(hash: u64) -> u32 {
    // The high bits of SipHash are as good as the low ones.
    u32::try_from(hash >> 32).unwrap_or(0)
}

impl Index {
    /// An index for at most `keys` ids (at most 2^31).
    pub(crate) fn with_capacity(keys: usize) -> Self {
        let n = keys.saturating_mul(2).max(16).next_power_of_two();
        // Zeroed memory: pages are only touched as slots fill.
        Self {
            slots: vec![0; n],
            mask: n - 1,
        }
    }

    fn home(&self, h: u32) -> usize {
        usize::try_from(h).unwrap_or(0) & self.mask
    }

    /// The id whose key `eq` accepts among those stored under `hash`.
    pub(crate) fn find(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        let h = fold(hash);
        let mut i = self.home(h);
        for _ in 0..self.slots.len() {
            let slot = *self.slots.get(i)?;
            let id = id_of(slot)?;
            if hash_of(slot) == h && eq(id) {
                return Some(id);
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    /// Stores `id` under `hash`. False only if the index is full, which
    /// the owner's capacity rules out.
    pub(crate) fn insert(&mut self, hash: u64, id: u32) -> bool {
        let h = fold(hash);
        let mut i = self.home(h);
        for _ in 0..self.slots.len() {
            match self.slots.get_mut(i) {
                Some(slot) if *slot == 0 => {
                    *slot = pack(h, id);
                    return true;
                }
                Some(_) => i = (i + 1) & self.mask,
                None => return false,
            }
        }
        false
    }

    /// Removes `id` stored under `hash`; false if it was not there.
    pub(crate) fn remove(&mut self, hash: u64, id: u32) -> bool {
        let want = pack(fold(hash), id);
        let mut i = self.home(fold(hash));
        let mut found = None;
        for _ in 0..self.slots.len() {
            match self.slots.get(i) {
                Some(&s) if s == want => {
                    found = Some(i);
                    break;
                }
                Some(&0) | None => return false,
                Some(_) => i = (i + 1) & self.mask,
            }
        }
        let Some(mut hole) = found else {
            return false;
        };
        // Backward shift: pull later members of the cluster into the hole
        // when their home is not between the hole and where they sit.
        let mut j = hole;
        for _ in 0..self.slots.len() {
            j = (j + 1) & self.mask;
            let slot = self.slots.get(j).copied().unwrap_or(0);
            if slot == 0 {
                break;
            }
            let home = self.home(hash_of(slot));
            let from_home = j.wrapping_sub(home) & self.mask;
            let from_hole = j.wrapping_sub(hole) & self.mask;
            if from_home >= from_hole {
                if let Some(h) = self.slots.get_mut(hole) {
                    *h = slot;
                }
                hole = j;
            }
        }
        if let Some(h) = self.slots.get_mut(hole) {
            *h = 0;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u64),
        Remove(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few distinct hashes, so clusters and wrap-around are common.
        prop_oneof![
            (any::<u8>(), 0u64..8).prop_map(|(k, h)| Op::Insert(k, h << 60 | u64::from(k) << 32)),
            any::<u8>().prop_map(Op::Remove),
        ]
    }

    proptest! {
        /// Against a HashMap model: every stored id is found, removed ones
        /// are not, whatever the collisions.
        #[test]
        fn behaves_like_a_map(ops in proptest::collection::vec(op(), 1..300)) {
            let mut index = Index::with_capacity(64);
            let mut model: HashMap<u8, u64> = HashMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, h) => {
                        if model.contains_key(&k) || model.len() >= 64 {
                            continue;
                        }
                        prop_assert!(index.insert(h, u32::from(k)));
                        model.insert(k, h);
                    }
                    Op::Remove(k) => {
                        let had = model.remove(&k);
                        let h = had.unwrap_or(0);
                        prop_assert_eq!(index.remove(h, u32::from(k)), had.is_some());
                    }
                }
                for k in 0..=255u8 {
                    let h = model.get(&k).copied().unwrap_or(u64::from(k) << 32);
                    let found = index.find(h, |id| id == u32::from(k));
                    prop_assert_eq!(found.is_some(), model.contains_key(&k), "key {}", k);
                }
            }
        }
    }

    #[test]
    fn full_index_refuses_instead_of_looping() {
        let mut index = Index::with_capacity(4);
        let n = index.slots.len();
        for id in 0..n {
            assert!(index.insert(7, id as u32));
        }
        assert!(!index.insert(7, 999));
        assert_eq!(index.find(7, |id| id == 999), None);
        assert_eq!(index.find(7, |id| id as usize == n - 1), Some(n as u32 - 1));
    }
}
