//! Giving freed memory back to the system.
//!
//! glibc's malloc keeps what a thread frees in that thread's arena, and only the top of an
//! arena is ever returned on its own. Under sustained allocation churn on a busy machine
//! (`benches/soak.sh` with other work beside it) the worker threads' arenas held about 4 MiB
//! each for 0.3 MiB in use after a minute, and more every round: resident memory grew
//! without bound while the live heap stayed flat. `malloc_trim(0)` returns every free page
//! of every arena (glibc 2.8 and later); the main thread calls it every [`TRIM_EVERY`].
//! It takes each arena's lock for the walk, so a worker allocating on the request path may
//! wait that long; the relay path allocates nothing and never waits.

use std::time::Duration;

/// How often freed memory is handed back.
pub const TRIM_EVERY: Duration = Duration::from_secs(10);

/// Returns the free pages of every malloc arena to the system (glibc only; elsewhere a no-op).
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers and is thread-safe (it locks each arena).
    unsafe {
        libc::malloc_trim(0);
    }
}
