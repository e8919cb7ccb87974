//! A timer wheel with one-second ticks. Lifetimes are 300 to 3600 s, so rounding every
//! deadline up to the next tick costs nothing and makes inserting and expiring O(1) per timer:
//! expiring never scans live allocations.

use std::time::{Duration, Instant};

const SLOTS: usize = 4096;
const TICK: Duration = Duration::from_secs(1);
/// Timers a drained slot keeps room for; more is freed when the slot is drained.
const KEEP: usize = 16;

/// Timers of type `T`, each with a deadline.
#[derive(Debug)]
pub struct TimerWheel<T> {
    origin: Instant,
    /// Ticks up to and including this one have been expired.
    cursor: u64,
    slots: Vec<Vec<(Instant, T)>>,
    len: usize,
}

impl<T> TimerWheel<T> {
    /// An empty wheel whose tick 0 is `origin`.
    pub fn new(origin: Instant) -> Self {
        Self {
            origin,
            cursor: 0,
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            len: 0,
        }
    }

    fn tick_of(&self, t: Instant) -> u64 {
        let d = t.saturating_duration_since(self.origin);
        d.as_secs() + u64::from(d.subsec_nanos() > 0)
    }

    /// Schedules `item` at `deadline` (fires at the first tick at or after it).
    pub fn insert(&mut self, deadline: Instant, item: T) {
        let tick = self.tick_of(deadline).max(self.cursor + 1);
        self.slots[(tick % SLOTS as u64) as usize].push((deadline, item));
        self.len += 1;
    }

    /// Timers scheduled.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no timer is scheduled.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// When [`TimerWheel::expire`] should next be called.
    pub fn next_tick(&self) -> Option<Instant> {
        (self.len > 0).then(|| self.origin + TICK * (self.cursor + 1) as u32)
    }

    /// Moves every timer whose deadline is at or before `now` into `out`.
    pub fn expire(&mut self, now: Instant, out: &mut Vec<T>) {
        let target = now.saturating_duration_since(self.origin).as_secs();
        if target <= self.cursor {
            return;
        }
        // After a long pause, one pass over every slot is enough.
        let steps = (target - self.cursor).min(SLOTS as u64);
        for step in 1..=steps {
            let slot = &mut self.slots[((self.cursor + step) % SLOTS as u64) as usize];
            // A deadline more than a wheel turn away stays in place.
            for (_, item) in slot.extract_if(.., |(deadline, _)| *deadline <= now) {
                out.push(item);
                self.len -= 1;
            }
            // A slot is used again only a wheel turn (SLOTS seconds) later: give back what a
            // burst made it hold, or every slot a burst ever touched would keep that memory.
            if slot.capacity() > KEEP {
                slot.shrink_to(slot.len().max(KEEP));
            }
        }
        self.cursor = target;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::disallowed_methods)] // any origin will do in a test
    fn fires_on_the_tick_after_the_deadline() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        w.insert(t0 + Duration::from_millis(1500), 'a');
        w.insert(t0 + Duration::from_secs(3), 'b');
        w.insert(t0 + Duration::from_secs(5000), 'c');
        let mut out = Vec::new();
        w.expire(t0 + Duration::from_secs(1), &mut out);
        assert!(out.is_empty());
        assert_eq!(w.next_tick(), Some(t0 + Duration::from_secs(2)));
        w.expire(t0 + Duration::from_secs(2), &mut out);
        assert_eq!(out, vec!['a']);
        w.expire(t0 + Duration::from_secs(3), &mut out);
        assert_eq!(out, vec!['a', 'b']);
        w.expire(t0 + Duration::from_secs(4200), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(w.len(), 1);
        w.expire(t0 + Duration::from_secs(5000), &mut out);
        assert_eq!(out, vec!['a', 'b', 'c']);
        assert!(w.is_empty());
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // any origin will do in a test
    fn a_drained_slot_gives_back_what_a_burst_made_it_hold() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        for i in 0..10_000u32 {
            w.insert(t0 + Duration::from_millis(1500), i);
        }
        w.insert(
            t0 + Duration::from_millis(1500) + TICK * SLOTS as u32,
            u32::MAX,
        );
        let held = |w: &TimerWheel<u32>| w.slots.iter().map(Vec::capacity).sum::<usize>();
        assert!(held(&w) >= 10_001);
        let mut out = Vec::new();
        w.expire(t0 + Duration::from_secs(2), &mut out);
        assert_eq!(out.len(), 10_000);
        assert_eq!(w.len(), 1, "the one a wheel turn away stays");
        assert!(held(&w) <= KEEP, "{} timers' room kept", held(&w));
        w.expire(t0 + Duration::from_secs(2) + TICK * SLOTS as u32, &mut out);
        assert_eq!(out.last(), Some(&u32::MAX));
    }
}
