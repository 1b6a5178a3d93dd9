//! The set of configurations the search has already explored, bounded in memory.
//!
//! It holds 128-bit fingerprints in an open-addressing table with linear probing, kept at most
//! half full. It starts small and doubles while under its memory budget; once the budget is
//! reached, an insertion that finds no free slot within a short probe *evicts* the fingerprint
//! in its home slot (like a chess engine's transposition table).
//!
//! Eviction is sound: the set only lets the search skip work it has done before. Forgetting a
//! configuration can make the search explore it again, never skip one it has not explored, and
//! the search still terminates because every move linearizes one more operation. So a memory
//! budget bounds memory without ever changing a verdict.

/// Fingerprint 0 marks an empty slot; a real fingerprint of 0 is stored as 1 (this merges two
/// fingerprints out of 2^128, which changes nothing measurable).
const EMPTY: u128 = 0;
const SLOT_BYTES: usize = std::mem::size_of::<u128>();
const MIN_SLOTS: usize = 1 << 10;
/// Slots of a new set: most keys' searches visit a few dozen configurations, and zeroing a
/// larger table for each would cost more than their search.
const INITIAL_SLOTS: usize = 1 << 6;
/// Longest probe sequence. At half load a run this long is vanishingly rare, so in practice
/// it only matters once the table is at its budget.
const MAX_PROBE: usize = 32;

pub(crate) struct VisitedSet {
    slots: Vec<u128>,
    /// Number of slots minus one (a power of two minus one).
    mask: usize,
    len: usize,
    max_slots: usize,
    evictions: u64,
}

impl VisitedSet {
    /// A set that will use at most about `max_bytes` bytes (at least 64 KiB).
    pub(crate) fn new(max_bytes: usize) -> VisitedSet {
        let cap = (max_bytes / SLOT_BYTES).max(MIN_SLOTS);
        // The largest power of two not above the budget.
        let max_slots = 1usize << (usize::BITS - 1 - cap.leading_zeros());
        VisitedSet {
            slots: vec![EMPTY; INITIAL_SLOTS],
            mask: INITIAL_SLOTS - 1,
            len: 0,
            max_slots,
            evictions: 0,
        }
    }

    /// Adds `fingerprint`; true if it was not already present.
    #[inline]
    pub(crate) fn insert(&mut self, fingerprint: u128) -> bool {
        let fp = if fingerprint == EMPTY { 1 } else { fingerprint };
        if 2 * (self.len + 1) > self.slots.len() && self.slots.len() < self.max_slots {
            self.grow();
        }
        let home = fp as usize & self.mask;
        for probe in 0..MAX_PROBE {
            let i = (home + probe) & self.mask;
            let slot = self.slots[i];
            if slot == fp {
                return false;
            }
            if slot == EMPTY {
                self.slots[i] = fp;
                self.len += 1;
                return true;
            }
        }
        // A long run of occupied slots: only when the table is at its budget (or extremely
        // unlucky). Forget the home slot's fingerprint.
        self.slots[home] = fp;
        self.evictions += 1;
        true
    }

    fn grow(&mut self) {
        let size = self.slots.len() * 2;
        let old = std::mem::replace(&mut self.slots, vec![EMPTY; size]);
        self.mask = size - 1;
        self.len = 0;
        for fp in old.into_iter().filter(|&fp| fp != EMPTY) {
            let home = fp as usize & self.mask;
            for probe in 0..MAX_PROBE {
                let i = (home + probe) & self.mask;
                if self.slots[i] == EMPTY {
                    self.slots[i] = fp;
                    self.len += 1;
                    break;
                }
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn evictions(&self) -> u64 {
        self.evictions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_what_it_holds() {
        let mut v = VisitedSet::new(1 << 20);
        for i in 1..10_000u128 {
            assert!(v.insert(i * 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834));
        }
        for i in 1..10_000u128 {
            assert!(!v.insert(i * 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834));
        }
        assert_eq!(v.len(), 9_999);
        assert_eq!(v.evictions(), 0);
    }

    #[test]
    fn stays_within_budget_by_evicting() {
        let budget = 64 * 1024;
        let mut v = VisitedSet::new(budget);
        for i in 1..100_000u128 {
            v.insert(crate::search::mix128(i as u64, 1));
        }
        assert!(v.slots.len() * SLOT_BYTES <= budget);
        assert!(v.evictions() > 0);
    }
}
