//! A timer wheel with one-second ticks. Lifetimes are 300 to 3600 s, so rounding every
//! deadline up to the next tick costs nothing and makes inserting and expiring O(1) per timer:
//! expiring never scans live allocations.

use std::time::{Duration, Instant};

const SLOTS: usize = 4096;
const TICK: Duration = Duration::from_secs(1);

/// Timers of type `T`, each with a deadline.
#[derive(Debug)]
pub struct TimerWheel<T> {
    origin: Instant,
    /// Ticks up to and including this one have been expired.
    cursor: u64,
    slots: Vec<Vec<(Instant, T)>>,
    scratch: Vec<(Instant, T)>,
    len: usize,
}

impl<T> TimerWheel<T> {
    /// An empty wheel whose tick 0 is `origin`.
    pub fn new(origin: Instant) -> Self {
        Self {
            origin,
            cursor: 0,
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            scratch: Vec::new(),
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
            let slot = ((self.cursor + step) % SLOTS as u64) as usize;
            std::mem::swap(&mut self.scratch, &mut self.slots[slot]);
            for (deadline, item) in self.scratch.drain(..) {
                if deadline <= now {
                    out.push(item);
                    self.len -= 1;
                } else {
                    // Not due yet: a deadline more than a wheel turn away, kept in place.
                    self.slots[slot].push((deadline, item));
                }
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
}
