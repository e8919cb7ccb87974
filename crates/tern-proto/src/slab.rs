//! Where a core keeps its allocations: a slab of slots, each handle carrying the generation of
//! the slot it names, so that a handle kept after its allocation ended (a timer, an I/O
//! layer's table) reaches nothing rather than the allocation that reused the slot.

use std::num::NonZeroU32;

/// An allocation's handle: its slot in the core and that slot's generation. It says nothing
/// about ports or addresses; a handle outlives its allocation harmlessly. Handles order by
/// slot, then generation: the order of [`crate::Server::sessions`] and its cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AllocationId {
    index: u32,
    generation: NonZeroU32,
}

impl AllocationId {
    /// The slot, for an I/O layer that keeps a table by allocation. A slot is reused after
    /// its allocation ends; compare whole handles to tell allocations apart.
    pub fn slot(self) -> usize {
        self.index as usize
    }

    /// The slot's generation: with the slot, it names this allocation and no other for the
    /// life of the core (an API's stable id).
    pub fn generation(self) -> u32 {
        self.generation.get()
    }

    /// The handle of `slot` at `generation` (an API's id read back); `None` for generation
    /// 0, which no handle has. It may name nothing: every lookup checks the generation.
    pub fn from_parts(slot: u32, generation: u32) -> Option<Self> {
        Some(Self {
            index: slot,
            generation: NonZeroU32::new(generation)?,
        })
    }
}

#[derive(Debug)]
struct Entry<T> {
    /// The generation of the slot's current or next occupant.
    generation: NonZeroU32,
    value: Option<T>,
}

/// Values under generation-checked handles; a freed slot is reused first.
#[derive(Debug)]
pub(crate) struct Slab<T> {
    entries: Vec<Entry<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Slab<T> {
    pub fn new() -> Self {
        Self {
            entries: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }

    /// Stores `value`; returns its handle.
    pub fn insert(&mut self, value: T) -> AllocationId {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                let i = u32::try_from(self.entries.len()).expect("fewer than 2^32 allocations");
                self.entries.push(Entry {
                    generation: NonZeroU32::MIN,
                    value: None,
                });
                i
            }
        };
        let entry = &mut self.entries[index as usize];
        let id = AllocationId {
            index,
            generation: entry.generation,
        };
        entry.value = Some(value);
        self.len += 1;
        id
    }

    /// The value under `id`, unless it was removed.
    #[inline]
    pub fn get(&self, id: AllocationId) -> Option<&T> {
        let e = self.entries.get(id.index as usize)?;
        if e.generation != id.generation {
            return None;
        }
        e.value.as_ref()
    }

    /// The value under `id`, unless it was removed.
    #[inline]
    pub fn get_mut(&mut self, id: AllocationId) -> Option<&mut T> {
        let e = self.entries.get_mut(id.index as usize)?;
        if e.generation != id.generation {
            return None;
        }
        e.value.as_mut()
    }

    /// Removes the value under `id`; the slot's next occupant gets a new generation.
    pub fn remove(&mut self, id: AllocationId) -> Option<T> {
        let e = self.entries.get_mut(id.index as usize)?;
        if e.generation != id.generation {
            return None;
        }
        let value = e.value.take()?;
        // After 2^32 - 1 reuses of one slot the generation wraps; a handle that old is long
        // gone (timers live an hour at most).
        e.generation = e.generation.checked_add(1).unwrap_or(NonZeroU32::MIN);
        self.free.push(id.index);
        self.len -= 1;
        Some(value)
    }

    /// The handles of every value.
    pub fn ids(&self) -> Vec<AllocationId> {
        (0u32..)
            .zip(&self.entries)
            .filter(|(_, e)| e.value.is_some())
            .map(|(index, e)| AllocationId {
                index,
                generation: e.generation,
            })
            .collect()
    }

    /// The values after `after` (all without it), in handle order.
    pub fn iter_after(
        &self,
        after: Option<AllocationId>,
    ) -> impl Iterator<Item = (AllocationId, &T)> + '_ {
        let start = after.map_or(0, |a| a.index as usize);
        (0u32..)
            .zip(&self.entries)
            .skip(start)
            .filter_map(|(index, e)| {
                let id = AllocationId {
                    index,
                    generation: e.generation,
                };
                e.value.as_ref().map(|v| (id, v))
            })
            .filter(move |(id, _)| after.is_none_or(|a| *id > a))
    }

    /// Values stored.
    pub fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_handle_reaches_nothing_after_its_slot_is_reused() {
        let mut s = Slab::new();
        let a = s.insert('a');
        let b = s.insert('b');
        assert_eq!((s.get(a), s.get(b), s.len()), (Some(&'a'), Some(&'b'), 2));
        assert_eq!(s.remove(a), Some('a'));
        assert_eq!(s.remove(a), None);
        let c = s.insert('c');
        assert_eq!(c.slot(), a.slot(), "the freed slot is reused");
        assert_ne!(a, c);
        assert_eq!((s.get(a), s.get(c)), (None, Some(&'c')));
        assert_eq!(s.get_mut(a), None);
        assert_eq!(s.ids(), vec![c, b]);
        let after: Vec<_> = s.iter_after(Some(a)).map(|(id, v)| (id, *v)).collect();
        assert_eq!(
            after,
            vec![(c, 'c'), (b, 'b')],
            "c reuses a's slot at a later generation"
        );
        let after: Vec<_> = s.iter_after(Some(c)).map(|(_, v)| *v).collect();
        assert_eq!(after, vec!['b']);
        assert_eq!(
            AllocationId::from_parts(c.slot() as u32, c.generation()),
            Some(c)
        );
        assert_eq!(AllocationId::from_parts(0, 0), None);
    }
}
