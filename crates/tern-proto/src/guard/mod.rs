//! Defences against floods and brute force, shared by every worker's core.
//!
//! - **Unauthenticated answers per source.** An error response to a request that did not
//!   authenticate (the 401 challenge, 438, 400, 420) goes to an address nobody has verified,
//!   so a spoofed flood could aim them at a victim. Over UDP each source (an IPv4 /32, an
//!   IPv6 /64) gets [`GuardConfig::unauthorized_per_second`] of them, after a burst of ten
//!   seconds' worth (100 by default: a meeting's worth of browsers behind one NAT, each
//!   taking its 401 at once); beyond that its requests are dropped unanswered. A client that
//!   takes one 401 and then authenticates never comes near it. Stream clients proved their
//!   address with a handshake and are not limited.
//! - **Brute force.** [`GuardConfig::auth_failures`] failed integrity checks within
//!   [`GuardConfig::auth_failure_window`] from one source, or for one username from any
//!   sources, lock the failing source out for [`GuardConfig::lockout`]: its requests are
//!   dropped unanswered. Once a username has had that many failures, each further source that
//!   fails for it is locked out at its first failure, so spreading guesses over addresses
//!   buys one guess per address. The user with the right key is never refused for the
//!   failures of others, and a 5-tuple keeps its own allocation through a lockout of its
//!   address (its requests carry the key the allocation holds; see
//!   [`crate::Server`]'s request handling).
//!
//! All state lives in fixed tables ([`table`]) allocated and made resident when the shared
//! state is created: a flood of distinct sources or usernames changes which entries they
//! hold, never how much memory they take. Time is the `now` every input carries, counted
//! from the first one any worker saw.

mod table;

use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ahash::RandomState;
use tern_wire::{attr, Message, Method};

use crate::addr::{FiveTuple, Transport};
use crate::auth::quota_name;
use crate::error::{AuthFailure, RequestError};
use crate::output::{Event, Output};
use crate::server::Server;
use table::Table;

/// A source's burst of unauthenticated answers, in seconds of its rate.
pub const UNAUTHORIZED_BURST_SECONDS: u32 = 10;
/// Slots of the table of unauthenticated answers per source.
const UNAUTHORIZED_SLOTS: usize = 16_384;
/// Slots of each failure table (per source, per username) and of the lockout table.
const FAILURE_SLOTS: usize = 4_096;

/// The limits, part of [`crate::Config`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardConfig {
    /// Error responses to unauthenticated UDP requests per second per source (/32, /64),
    /// after a burst of [`UNAUTHORIZED_BURST_SECONDS`] seconds' worth (coturn's
    /// `unauthorized-ratelimit-rps`); 0: no limit.
    pub unauthorized_per_second: u32,
    /// Failed integrity checks within the window that lock a source out; 0: never.
    pub auth_failures: u32,
    /// The window the failures are counted in.
    pub auth_failure_window: Duration,
    /// How long a lockout lasts.
    pub lockout: Duration,
}

impl Default for GuardConfig {
    /// 10 unauthenticated answers per second per source (coturn's default rate) after a
    /// burst of 100; 10 failures within 60 s lock a source out for 60 s.
    fn default() -> Self {
        Self {
            unauthorized_per_second: 10,
            auth_failures: 10,
            auth_failure_window: Duration::from_secs(60),
            lockout: Duration::from_secs(60),
        }
    }
}

crate::label_enum! {
    /// What locked a source out; the `reason` label of `auth_lockouts`.
    pub enum LockoutTrigger {
        /// Too many failures from the source itself.
        Source => "source",
        /// Too many failures for the username it tried, from any sources.
        Username => "username",
    }
}

/// The shared tables.
#[derive(Debug)]
pub(crate) struct Guard {
    hasher: RandomState,
    /// The `now` of the first call: the zero of the times in the tables.
    origin: OnceLock<Instant>,
    /// Per source: the theoretical arrival time of its next answer (GCRA), nanoseconds.
    unauthorized: Table,
    /// Per source: failures (low 16 bits) in the window that began at the high 48 bits (ms).
    source_failures: Table,
    /// The same per username (the name of a REST username).
    user_failures: Table,
    /// Per source: the end of its lockout, nanoseconds.
    lockouts: Table,
}

/// A source's key: the family and the address bits that count (all 32 of IPv4, the /64 of
/// IPv6; an IPv4-mapped IPv6 address is its IPv4 address).
fn source_key(ip: IpAddr) -> (u8, u64) {
    match ip {
        IpAddr::V4(v4) => (4, u64::from(u32::from(v4))),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => (4, u64::from(u32::from(v4))),
            None => (6, (u128::from(v6) >> 64) as u64),
        },
    }
}

fn pack(start_ms: u64, count: u64) -> u64 {
    start_ms << 16 | count.min(0xFFFF)
}

fn unpack(word: u64) -> (u64, u64) {
    (word >> 16, word & 0xFFFF)
}

impl Guard {
    pub(crate) fn new(seed: u64) -> Self {
        let mut rng = crate::pool::SplitMix64::new(seed ^ 0x6a09_e667_f3bc_c908);
        let mut word = || rng.next_u64();
        Self {
            hasher: RandomState::with_seeds(word(), word(), word(), word()),
            origin: OnceLock::new(),
            unauthorized: Table::new(UNAUTHORIZED_SLOTS),
            source_failures: Table::new(FAILURE_SLOTS),
            user_failures: Table::new(FAILURE_SLOTS),
            lockouts: Table::new(FAILURE_SLOTS),
        }
    }

    /// Nanoseconds since the origin.
    fn ticks(&self, now: Instant) -> u64 {
        let origin = *self.origin.get_or_init(|| now);
        now.saturating_duration_since(origin).as_nanos() as u64
    }

    fn source(&self, ip: IpAddr) -> u64 {
        self.hasher.hash_one(source_key(ip))
    }

    /// Bytes the tables hold (fixed).
    pub(crate) fn footprint(&self) -> usize {
        [
            &self.unauthorized,
            &self.source_failures,
            &self.user_failures,
            &self.lockouts,
        ]
        .iter()
        .map(|t| t.footprint())
        .sum()
    }

    /// Whether `ip` may have one more unauthenticated answer at `now`; spends it if so.
    pub(crate) fn admit_unauthorized(&self, now: Instant, ip: IpAddr, per_second: u32) -> bool {
        if per_second == 0 {
            return true;
        }
        let t = self.ticks(now);
        let interval = 1_000_000_000 / u64::from(per_second);
        // A burst of ten seconds' worth, then one every `interval`.
        let burst = u64::from(per_second) * u64::from(UNAUTHORIZED_BURST_SECONDS);
        let tolerance = interval * (burst - 1);
        self.unauthorized
            .update(self.source(ip), |tat| {
                let start = tat.unwrap_or(0).max(t);
                (start - t <= tolerance).then_some(start + interval)
            })
            .is_some()
    }

    /// Whether `ip` is locked out at `now`.
    pub(crate) fn is_locked(&self, now: Instant, ip: IpAddr) -> bool {
        let t = self.ticks(now);
        self.lockouts
            .get(self.source(ip))
            .is_some_and(|until| until > t)
    }

    /// Counts a failed integrity check by `ip` for `username`; returns what locked `ip` out,
    /// if this failure did.
    pub(crate) fn record_failure(
        &self,
        now: Instant,
        ip: IpAddr,
        username: &str,
        limits: &GuardConfig,
    ) -> Option<LockoutTrigger> {
        if limits.auth_failures == 0 {
            return None;
        }
        let t = self.ticks(now);
        let (ms, window) = (t / 1_000_000, limits.auth_failure_window.as_millis() as u64);
        let count = |table: &Table, hash: u64| {
            let word = table.update(hash, |word| {
                Some(match word.map(unpack) {
                    Some((start, n)) if ms.saturating_sub(start) < window => pack(start, n + 1),
                    _ => pack(ms, 1),
                })
            });
            unpack(word.expect("always updated")).1
        };
        let source = self.source(ip);
        let by_source = count(&self.source_failures, source);
        let user = self.hasher.hash_one((b'u', quota_name(username)));
        let by_user = count(&self.user_failures, user);
        let limit = u64::from(limits.auth_failures);
        let trigger = if by_source >= limit {
            LockoutTrigger::Source
        } else if by_user >= limit {
            LockoutTrigger::Username
        } else {
            return None;
        };
        let until = t.saturating_add(limits.lockout.as_nanos() as u64);
        // Only the failure that starts a lockout reports it (another worker may have).
        self.lockouts
            .update(source, |end| {
                end.is_none_or(|end| end <= t).then_some(until)
            })
            .map(|_| trigger)
    }

    /// Sources locked out at `now` (for tests and figures; scans the table).
    pub(crate) fn locked_sources(&self, now: Instant) -> usize {
        self.lockouts.count_above(self.ticks(now))
    }
}

impl Server {
    /// Whether a request from `five_tuple` is refused because its source is locked out.
    /// Binding carries no credentials and is always answered. A 5-tuple with an allocation
    /// keeps it through a lockout of its address: requests with the allocation's username
    /// are checked against the key the allocation holds, which guesses nothing.
    pub(crate) fn locked_out(
        &self,
        now: Instant,
        five_tuple: FiveTuple,
        msg: &Message<'_>,
    ) -> bool {
        if msg.method() == Method::BINDING || self.config.guard.auth_failures == 0 {
            return false;
        }
        if !self.shared.guard().is_locked(now, five_tuple.client.ip()) {
            return false;
        }
        let own = self
            .by_five_tuple
            .get(&five_tuple)
            .and_then(|id| self.allocations.get(*id))
            .zip(msg.get(attr::USERNAME))
            .is_some_and(|(a, u)| a.username.as_bytes() == u.value);
        !own
    }

    /// Whether an unauthenticated error response may go to `five_tuple` now (UDP only).
    pub(crate) fn admit_unauthorized(&self, now: Instant, five_tuple: FiveTuple) -> bool {
        if !matches!(five_tuple.transport, Transport::Udp { .. }) {
            return true;
        }
        let rate = self.config.guard.unauthorized_per_second;
        self.shared
            .guard()
            .admit_unauthorized(now, five_tuple.client.ip(), rate)
    }

    /// Counts a failed authentication toward the lockouts, if it was a failed integrity
    /// check (a MESSAGE-INTEGRITY no key of the named user validates); queues the event
    /// and counts the lockout if it started one.
    pub(crate) fn note_auth_failure(
        &mut self,
        now: Instant,
        five_tuple: FiveTuple,
        msg: &Message<'_>,
        error: RequestError,
    ) {
        let RequestError::Unauthorized(AuthFailure::BadIntegrity | AuthFailure::UnknownUser) =
            error
        else {
            return;
        };
        let Some(username) = msg
            .get(attr::USERNAME)
            .and_then(|a| attr::decode_str(a.value, attr::USERNAME).ok())
        else {
            return;
        };
        let limits = self.config.guard;
        let client = five_tuple.client;
        let Some(trigger) = self
            .shared
            .guard()
            .record_failure(now, client.ip(), username, &limits)
        else {
            return;
        };
        self.counters.lockouts[trigger.index()] += 1;
        self.out.push(Output::Event(Event::AuthLockout {
            client,
            trigger,
            failures: limits.auth_failures,
            window: limits.auth_failure_window,
            duration: limits.lockout,
        }));
    }

    /// Sources locked out now over every worker (scans the lockout table; not for a hot
    /// path).
    pub fn locked_out_sources(&self, now: Instant) -> usize {
        self.shared.guard().locked_sources(now)
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

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn sources_are_ipv4_hosts_and_ipv6_slash_64s() {
        assert_eq!(source_key(ip("192.0.2.1")), (4, 0xC000_0201));
        assert_eq!(source_key(ip("::ffff:192.0.2.1")), (4, 0xC000_0201));
        assert_eq!(
            source_key(ip("2001:db8:1:2:aaaa::1")),
            source_key(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            source_key(ip("2001:db8:1:2::1")),
            source_key(ip("2001:db8:1:3::1"))
        );
        assert_ne!(source_key(ip("192.0.2.1")), source_key(ip("192.0.2.2")));
    }

    #[test]
    fn a_burst_then_the_rate() {
        let g = Guard::new(1);
        let t0 = origin();
        let a = ip("198.51.100.1");
        let passed = |now| {
            (0..1000)
                .filter(|_| g.admit_unauthorized(now, a, 10))
                .count()
        };
        assert_eq!(passed(t0), 100);
        // One every 100 ms after that, and no more.
        assert_eq!(passed(t0 + Duration::from_millis(99)), 0);
        assert_eq!(passed(t0 + Duration::from_millis(100)), 1);
        assert_eq!(passed(t0 + Duration::from_millis(350)), 2);
        // Ten quiet seconds refill the burst.
        assert_eq!(passed(t0 + Duration::from_millis(10_400)), 100);
        // Others are not affected; 0 means no limit.
        assert!(g.admit_unauthorized(t0, ip("198.51.100.2"), 10));
        assert!((0..1000).all(|_| g.admit_unauthorized(t0, a, 0)));
    }

    #[test]
    fn a_steady_rate_at_the_limit_is_never_refused() {
        let g = Guard::new(2);
        let t0 = origin();
        let a = ip("2001:db8::1");
        for i in 0..10_000u64 {
            assert!(
                g.admit_unauthorized(t0 + Duration::from_millis(100 * i), a, 10),
                "#{i}"
            );
        }
    }

    #[test]
    fn a_flood_of_distinct_sources_keeps_the_table_bounded_and_a_victim_limited() {
        let g = Guard::new(3);
        let t0 = origin();
        let before = g.footprint();
        let victim = ip("203.0.113.9");
        let mut answered = 0;
        for i in 0..200_000u32 {
            let now = t0 + Duration::from_micros(u64::from(i) * 5); // one second in all
                                                                    // One spoofed request from a fresh source, one aimed at the victim.
            let fresh = IpAddr::from(std::net::Ipv4Addr::from(0x0A00_0000 | i));
            assert!(g.admit_unauthorized(now, fresh, 10));
            answered += usize::from(g.admit_unauthorized(now, victim, 10));
        }
        assert_eq!(g.footprint(), before);
        // The victim's entry is never the stalest of its set, so it is never evicted: it
        // gets its burst and the rate over that second, not one answer per fresh source.
        assert!(answered <= 100 + 10 + 1, "{answered}");
    }

    fn limits(n: u32) -> GuardConfig {
        GuardConfig {
            auth_failures: n,
            auth_failure_window: Duration::from_secs(60),
            lockout: Duration::from_secs(30),
            ..GuardConfig::default()
        }
    }

    #[test]
    fn failures_from_one_source_lock_it_out_for_the_duration() {
        let g = Guard::new(4);
        let t0 = origin();
        let (a, l) = (ip("198.51.100.7"), limits(3));
        let at = |s| t0 + Duration::from_secs(s);
        assert_eq!(g.record_failure(at(0), a, "alice", &l), None);
        assert_eq!(g.record_failure(at(10), a, "bob", &l), None);
        assert!(!g.is_locked(at(10), a));
        assert_eq!(
            g.record_failure(at(20), a, "carol", &l),
            Some(LockoutTrigger::Source)
        );
        assert!(g.is_locked(at(20), a));
        assert!(g.is_locked(at(49), a));
        assert!(!g.is_locked(at(50), a));
        assert!(!g.is_locked(at(20), ip("198.51.100.8")));
        assert_eq!(g.locked_sources(at(20)), 1);
    }

    #[test]
    fn failures_spread_over_the_window_do_not_add_up() {
        let g = Guard::new(5);
        let t0 = origin();
        let (a, l) = (ip("198.51.100.7"), limits(3));
        for i in 0..20 {
            // Two failures a minute, one minute apart: never three within one window.
            let minute = t0 + Duration::from_secs(60 * i);
            assert_eq!(g.record_failure(minute, a, "alice", &l), None);
            assert_eq!(
                g.record_failure(minute + Duration::from_secs(1), a, "alice", &l),
                None
            );
        }
    }

    #[test]
    fn a_hot_username_locks_each_further_failing_source_at_once() {
        let g = Guard::new(6);
        let t0 = origin();
        let l = limits(3);
        let src = |i: u8| IpAddr::from([198, 51, 100, i]);
        assert_eq!(g.record_failure(t0, src(1), "1700000000:alice", &l), None);
        assert_eq!(g.record_failure(t0, src(2), "1700000001:alice", &l), None);
        // The REST name counts, whatever the expiry in front of it.
        assert_eq!(
            g.record_failure(t0, src(3), "1700000002:alice", &l),
            Some(LockoutTrigger::Username)
        );
        assert_eq!(
            g.record_failure(t0, src(4), "alice", &l),
            Some(LockoutTrigger::Username)
        );
        assert!(g.is_locked(t0, src(3)) && g.is_locked(t0, src(4)));
        assert!(!g.is_locked(t0, src(1)) && !g.is_locked(t0, src(2)));
        // Another username from a fresh source is not affected.
        assert_eq!(g.record_failure(t0, src(5), "bob", &l), None);
    }

    #[test]
    fn no_lockouts_when_off() {
        let g = Guard::new(7);
        let t0 = origin();
        let a = ip("198.51.100.7");
        for _ in 0..100 {
            assert_eq!(g.record_failure(t0, a, "alice", &limits(0)), None);
        }
        assert!(!g.is_locked(t0, a));
    }
}
