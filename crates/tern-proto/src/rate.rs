//! Per-allocation bandwidth limits (coturn's `max-bps`): each direction of an allocation has
//! its own budget of payload bytes per second, kept as a generic cell rate algorithm, that is
//! one timestamp per direction and no timer. A full budget lets a burst of one second's worth
//! through (and always at least one datagram); beyond it datagrams are dropped, not queued.

use std::time::{Duration, Instant};

/// How far ahead of the clock a direction's budget may run: the burst it allows.
const BURST: Duration = Duration::from_secs(1);

/// The two budgets of one allocation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RateState {
    /// Payload bytes per second in each direction (not 0).
    bytes_per_second: u64,
    /// When the client → peer budget is spent up to ("theoretical arrival time").
    to_peers: Instant,
    /// The same for peer → client.
    to_client: Instant,
}

/// A direction through an allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    ToPeers,
    ToClient,
}

impl RateState {
    /// Full budgets of `bytes_per_second` (not 0) both ways at `now`.
    pub fn new(now: Instant, bytes_per_second: u64) -> Self {
        Self {
            bytes_per_second: bytes_per_second.max(1),
            to_peers: now,
            to_client: now,
        }
    }

    /// Whether `len` payload bytes may go in `direction` at `now`; spends the budget when
    /// they may. Out of line: only allocations with a limit get here.
    #[inline(never)]
    pub fn admit(&mut self, direction: Direction, now: Instant, len: usize) -> bool {
        let tat = match direction {
            Direction::ToPeers => &mut self.to_peers,
            Direction::ToClient => &mut self.to_client,
        };
        let start = (*tat).max(now);
        if start.duration_since(now) > BURST {
            return false;
        }
        let nanos = (len as u128 * 1_000_000_000 / u128::from(self.bytes_per_second)) as u64;
        *tat = start + Duration::from_nanos(nanos);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Any origin will do: the tests move time by hand from there.
    #[allow(clippy::disallowed_methods)]
    fn origin() -> Instant {
        Instant::now()
    }

    fn passed(state: &mut RateState, now: Instant, len: usize, n: usize) -> usize {
        (0..n)
            .filter(|_| state.admit(Direction::ToPeers, now, len))
            .count()
    }

    #[test]
    fn a_full_budget_passes_one_second_and_one_datagram() {
        let t0 = origin();
        let mut s = RateState::new(t0, 1000);
        // 1000 B/s, 100 B datagrams: 10 fill the second, the 11th starts exactly at the edge.
        assert_eq!(passed(&mut s, t0, 100, 50), 11);
    }

    #[test]
    fn the_budget_refills_with_time_without_losing_fractions() {
        let t0 = origin();
        let mut s = RateState::new(t0, 3000);
        assert_eq!(passed(&mut s, t0, 1000, 10), 4);
        // Every 1/3 ms earns one byte; a 1000 B datagram needs 333.33 ms of refill.
        let mut now = t0;
        let mut got = 0;
        for _ in 0..3000 {
            now += Duration::from_millis(1);
            got += passed(&mut s, now, 1000, 1);
        }
        // 3 s at 3000 B/s is 9 datagrams of 1000 B, no more and no fewer.
        assert_eq!(got, 9);
    }

    #[test]
    fn directions_are_separate() {
        let t0 = origin();
        let mut s = RateState::new(t0, 1000);
        assert_eq!(passed(&mut s, t0, 1000, 5), 2);
        assert!(s.admit(Direction::ToClient, t0, 1000));
    }

    #[test]
    fn a_datagram_larger_than_the_burst_passes_on_a_full_budget() {
        let t0 = origin();
        let mut s = RateState::new(t0, 100);
        assert!(s.admit(Direction::ToPeers, t0, 1200));
        assert!(!s.admit(Direction::ToPeers, t0, 1));
        // 12 s of debt, of which 1 s may be outstanding: open again after 11 s.
        let later = |ms| t0 + Duration::from_millis(ms);
        assert!(!s.admit(Direction::ToPeers, later(10_999), 1));
        assert!(s.admit(Direction::ToPeers, later(11_000), 1));
    }
}
