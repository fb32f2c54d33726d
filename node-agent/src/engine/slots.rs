//! [`Slots`]: the dense, recycled slot vector behind the engine's port and
//! peer tables, indexed by the switch's ids (`PortId`, `PeerId`: a `u32`).
//!
//! Contract: the lowest free slot is handed out first, never one above
//! [`MAX_ID`](weft_switch::MAX_ID) (the switch indexes vectors by these
//! ids); trailing free slots are dropped on removal, so the vector stays
//! as short as the highest id in use. Lookups are by index, no hashing.

use weft_switch::MAX_ID;

/// Values in slots numbered from 0.
#[derive(Debug)]
pub(super) struct Slots<T> {
    slots: Vec<Option<T>>,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Self { slots: Vec::new() }
    }
}

impl<T> Slots<T> {
    /// The lowest free slot, or `None` if all [`MAX_ID`] + 1 are taken.
    pub(super) fn free(&self) -> Option<u32> {
        let i = self
            .slots
            .iter()
            .position(Option::is_none)
            .unwrap_or(self.slots.len());
        u32::try_from(i).ok().filter(|i| *i <= MAX_ID)
    }

    /// Puts `value` in slot `i`, returning what was there.
    pub(super) fn insert(&mut self, i: u32, value: T) -> Option<T> {
        let i = i as usize;
        if self.slots.len() <= i {
            self.slots.resize_with(i + 1, || None);
        }
        self.slots.get_mut(i)?.replace(value)
    }

    /// Empties slot `i`, returning what was there.
    pub(super) fn remove(&mut self, i: u32) -> Option<T> {
        let value = self.slots.get_mut(i as usize)?.take()?;
        while self.slots.last().is_some_and(Option::is_none) {
            self.slots.pop();
        }
        Some(value)
    }

    pub(super) fn get(&self, i: u32) -> Option<&T> {
        self.slots.get(i as usize)?.as_ref()
    }

    pub(super) fn get_mut(&mut self, i: u32) -> Option<&mut T> {
        self.slots.get_mut(i as usize)?.as_mut()
    }

    /// Every taken slot with its number.
    pub(super) fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        (0u32..)
            .zip(&self.slots)
            .filter_map(|(i, v)| Some((i, v.as_ref()?)))
    }

    /// Every taken slot with its number, mutably.
    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (u32, &mut T)> {
        (0u32..)
            .zip(&mut self.slots)
            .filter_map(|(i, v)| Some((i, v.as_mut()?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_free_slot_is_reused_and_trailing_ones_dropped() {
        let mut s = Slots::default();
        assert_eq!(s.free(), Some(0));
        s.insert(0, 'a');
        s.insert(1, 'b');
        s.insert(2, 'c');
        assert_eq!(s.free(), Some(3));
        assert_eq!(s.remove(1), Some('b'));
        assert_eq!(s.free(), Some(1));
        assert_eq!(s.remove(2), Some('c'));
        assert_eq!(s.slots.len(), 1);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![(0, &'a')]);
        assert_eq!(s.insert(0, 'z'), Some('a'));
        assert_eq!(s.get(0), Some(&'z'));
        assert_eq!(s.get(5), None);
        assert_eq!(s.remove(7), None);
    }
}
