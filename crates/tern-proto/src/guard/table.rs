//! A fixed-capacity table of one 64-bit word per key, shared by every worker without a lock.
//!
//! The table is set-associative: a key's hash picks one set of [`WAYS`] slots, and a slot
//! holds the key's tag (its hash, never 0) and a word whose meaning belongs to the caller.
//! Every use in this crate orders words so that a smaller word is staler (a bucket's
//! theoretical arrival time, a window's start, a lockout's end), so a key that finds no slot
//! takes the empty slot of its set or else the one with the smallest word. Capacity never
//! grows: a flood of distinct keys only replaces the stalest entries of each set.
//!
//! The hash is keyed with the server's secret seed, so nobody outside can aim keys at one
//! set. Updates are compare-and-swap loops on the word. Two workers that claim the same slot
//! for different keys in the same instant may leave one key with the other's word; that is
//! the tolerance of the design, and it can only share or reset one entry's state, never make
//! the table grow.

use std::sync::atomic::{AtomicU64, Ordering};

/// Slots per set.
pub(crate) const WAYS: usize = 8;

#[derive(Debug, Default)]
struct Slot {
    /// The key's hash with the low bit set (0: empty).
    tag: AtomicU64,
    /// The caller's word.
    word: AtomicU64,
}

/// The table.
#[derive(Debug)]
pub(crate) struct Table {
    slots: Box<[Slot]>,
    /// Sets - 1 (a power of two less one).
    mask: usize,
}

impl Table {
    /// A table of at least `capacity` slots (rounded up to a power of two of [`WAYS`]-slot
    /// sets). Every slot is written once here, so the memory is resident from the start and
    /// filling the table later costs no more of it.
    pub(crate) fn new(capacity: usize) -> Self {
        let sets = capacity.div_ceil(WAYS).max(1).next_power_of_two();
        let slots: Box<[Slot]> = (0..sets * WAYS).map(|_| Slot::default()).collect();
        for s in slots.iter() {
            s.tag.store(0, Ordering::Relaxed);
            s.word.store(0, Ordering::Relaxed);
        }
        Self {
            slots,
            mask: sets - 1,
        }
    }

    /// Slots in all.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Bytes the table holds.
    pub(crate) fn footprint(&self) -> usize {
        std::mem::size_of_val(&*self.slots)
    }

    fn set(&self, hash: u64) -> &[Slot] {
        let set = (hash as usize) & self.mask;
        &self.slots[set * WAYS..(set + 1) * WAYS]
    }

    fn find(&self, hash: u64) -> Option<&Slot> {
        let tag = hash | 1;
        self.set(hash)
            .iter()
            .find(|s| s.tag.load(Ordering::Relaxed) == tag)
    }

    /// The word of `hash`'s entry, if it has one.
    pub(crate) fn get(&self, hash: u64) -> Option<u64> {
        self.find(hash).map(|s| s.word.load(Ordering::Relaxed))
    }

    /// Updates `hash`'s entry: `f` gets its word (`None` for a key without an entry) and
    /// returns the new word, or `None` to leave the entry as it is. Returns what `f` returned
    /// last. A key without an entry gets the empty slot of its set, or else the slot with
    /// the smallest (stalest) word.
    pub(crate) fn update(
        &self,
        hash: u64,
        mut f: impl FnMut(Option<u64>) -> Option<u64>,
    ) -> Option<u64> {
        if let Some(slot) = self.find(hash) {
            let mut old = slot.word.load(Ordering::Relaxed);
            loop {
                let new = f(Some(old))?;
                match slot.word.compare_exchange_weak(
                    old,
                    new,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Some(new),
                    Err(now) => old = now,
                }
            }
        }
        let new = f(None)?;
        let victim = self
            .set(hash)
            .iter()
            .min_by_key(|s| {
                let empty = s.tag.load(Ordering::Relaxed) == 0;
                (!empty, s.word.load(Ordering::Relaxed))
            })
            .expect("a set has slots");
        victim.tag.store(hash | 1, Ordering::Relaxed);
        victim.word.store(new, Ordering::Relaxed);
        Some(new)
    }

    /// Entries whose word is above `floor` (live ones, for words that are end times).
    pub(crate) fn count_above(&self, floor: u64) -> usize {
        self.slots
            .iter()
            .filter(|s| {
                s.tag.load(Ordering::Relaxed) != 0 && s.word.load(Ordering::Relaxed) > floor
            })
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_is_rounded_up_to_whole_sets() {
        assert_eq!(Table::new(1).capacity(), WAYS);
        assert_eq!(Table::new(100).capacity(), 16 * WAYS);
        assert_eq!(Table::new(4096).capacity(), 4096);
        assert_eq!(Table::new(4096).footprint(), 4096 * 16);
    }

    #[test]
    fn update_inserts_changes_and_declines() {
        let t = Table::new(64);
        assert_eq!(t.get(42), None);
        assert_eq!(t.update(42, |w| Some(w.unwrap_or(0) + 5)), Some(5));
        assert_eq!(t.update(42, |w| Some(w.unwrap() + 1)), Some(6));
        assert_eq!(t.update(42, |_| None), None);
        assert_eq!(t.get(42), Some(6));
        // A declined insert leaves no entry.
        assert_eq!(t.update(7, |_| None), None);
        assert_eq!(t.get(7), None);
    }

    #[test]
    fn a_full_set_gives_up_its_stalest_entry_and_never_grows() {
        let t = Table::new(WAYS); // one set
        for k in 0..WAYS as u64 {
            // Distinct tags, words 100, 200, ...
            t.update(k << 8, |_| Some((k + 1) * 100));
        }
        assert_eq!(t.count_above(0), WAYS);
        // A newcomer replaces the smallest word (key 0's).
        t.update(99 << 8, |_| Some(1000));
        assert_eq!(t.get(0), None);
        assert_eq!(t.get(1 << 8), Some(200));
        assert_eq!(t.get(99 << 8), Some(1000));
        assert_eq!(t.count_above(0), WAYS);
        // A flood of distinct keys keeps the table at its capacity.
        for k in 1000..101_000u64 {
            t.update(k << 8, |_| Some(k));
        }
        assert_eq!(t.count_above(0), WAYS);
    }
}
