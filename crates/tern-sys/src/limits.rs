//! Process and thread settings the server and the load tools adjust, through rustix.

use std::num::NonZeroU64;

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Raises the soft `RLIMIT_NOFILE` to at least `wanted` (bounded by the hard limit, never
/// lowered); returns the soft limit in force afterwards (0 if it cannot be read).
pub fn raise_nofile_limit(wanted: u64) -> u64 {
    let lim = getrlimit(Resource::Nofile);
    let current = lim.current.unwrap_or(u64::MAX);
    if current >= wanted {
        return current;
    }
    let target = lim.maximum.map_or(wanted, |max| wanted.min(max));
    let new = Rlimit {
        current: Some(target),
        maximum: lim.maximum,
    };
    match setrlimit(Resource::Nofile, new) {
        Ok(()) => target,
        Err(_) => current,
    }
}

/// Sets the calling thread's timer slack to 1 ns, so that a paced sender's waits end when
/// asked (the default slack is 50 us, coarser than the gap between packets at 40,000/s).
pub fn precise_timers() {
    let _ = rustix::thread::set_current_timer_slack(NonZeroU64::new(1));
}

/// Clock ticks per second (`_SC_CLK_TCK`), the unit of the CPU times in `/proc`.
pub fn clock_ticks_per_second() -> u64 {
    rustix::param::clock_ticks_per_second()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_file_limit_is_raised_within_the_hard_limit() {
        let before = getrlimit(Resource::Nofile);
        let now = raise_nofile_limit(64);
        assert!(now >= 64.min(before.maximum.unwrap_or(u64::MAX)));
        assert!(raise_nofile_limit(1) >= now, "never lowered");
        assert!(clock_ticks_per_second() > 0);
    }
}
