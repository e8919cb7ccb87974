//! Giving freed memory back to the system.
//!
//! glibc's malloc keeps what a thread frees in that thread's arena, and returns only the top
//! of an arena on its own. Under sustained allocation churn on a busy machine
//! (`benches/soak.sh` with other work beside it) the worker threads' arenas held about 4 MiB
//! each for 0.3 MiB in use after a minute, and more every round: resident memory grew while
//! the live heap stayed flat (massif, DHAT). Two remedies, measured in the README's Soak
//! section:
//!
//! - With glibc (the default build), the main thread calls `malloc_trim(0)` every
//!   [`TRIM_EVERY`], which hands every free page of every arena back (glibc 2.8 and later). It
//!   takes each arena's lock for the walk, so a worker allocating on the request path may wait
//!   that long; the relay path allocates nothing and never waits. What it cannot return are
//!   pages that still hold a live object, and those still grow slowly under churn.
//! - With the `jemalloc` feature (the container image and the soak), jemalloc is the global
//!   allocator: its size-class slabs and time-based purging keep resident memory flat under
//!   the same load, and [`trim`] does nothing.

use std::time::Duration;

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// How often freed memory is handed back (glibc builds).
pub const TRIM_EVERY: Duration = Duration::from_secs(10);

/// The allocator in use, for the start-up log line.
pub const ALLOCATOR_NAME: &str = if cfg!(feature = "jemalloc") {
    "jemalloc"
} else {
    "system (glibc malloc, trimmed every 10 s)"
};

/// Returns the free pages of every malloc arena to the system (glibc builds without
/// jemalloc; elsewhere a no-op).
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu", not(feature = "jemalloc")))]
    // SAFETY: malloc_trim takes no pointers and is thread-safe (it locks each arena).
    unsafe {
        libc::malloc_trim(0);
    }
}
