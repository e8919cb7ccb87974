//! The one place with `unsafe`: raising the open-file limit so a wide relay range can be
//! bound (one socket per relay port).

/// Raises the soft `RLIMIT_NOFILE` to at least `wanted` (bounded by the hard limit);
/// returns the soft limit in force afterwards.
#[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
pub fn raise_nofile_limit(wanted: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own; RLIMIT_NOFILE is a valid resource.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    if lim.rlim_cur as u64 >= wanted {
        return lim.rlim_cur as u64;
    }
    let new = libc::rlimit {
        rlim_cur: (wanted as libc::rlim_t).min(lim.rlim_max),
        rlim_max: lim.rlim_max,
    };
    // SAFETY: setrlimit reads the struct we own; lowering nothing, raising within the hard limit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } == 0 {
        new.rlim_cur as u64
    } else {
        lim.rlim_cur as u64
    }
}
