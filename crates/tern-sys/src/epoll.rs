//! A level-triggered epoll set whose events carry a caller's `u64` token, with the interests a
//! datagram socket needs (input) and those a stream connection will (room to write, the
//! peer's half-close), and `modify` to switch between them. Not on the per-packet path:
//! [`rustix`] does the system calls, except `epoll_pwait2` for a wait to the nanosecond,
//! which rustix uses only when built for Linux 5.11 and later.

use std::io;
use std::ops::BitOr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

use rustix::buffer::spare_capacity;
use rustix::event::{epoll, Timespec};

/// Most ready descriptors one [`Epoll::wait`] reports.
const MAX_EVENTS: usize = 256;

/// What to watch a descriptor for; combine with `|`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interest(epoll::EventFlags);

impl Interest {
    /// Data to read (or a connection to accept).
    pub const READABLE: Self = Self(epoll::EventFlags::IN);
    /// Room to write.
    pub const WRITABLE: Self = Self(epoll::EventFlags::OUT);
    /// The peer closed its writing half (`EPOLLRDHUP`): a stream will read no more.
    pub const READ_CLOSED: Self = Self(epoll::EventFlags::RDHUP);
}

impl BitOr for Interest {
    type Output = Self;
    fn bitor(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

/// One ready descriptor: its token and what it is ready for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    token: u64,
    flags: epoll::EventFlags,
}

impl Ready {
    /// The token the descriptor was registered with.
    pub fn token(self) -> u64 {
        self.token
    }

    /// There is data to read (or a hang-up or error, which a read reports).
    pub fn is_readable(self) -> bool {
        self.flags.intersects(epoll::EventFlags::IN)
    }

    /// There is room to write.
    pub fn is_writable(self) -> bool {
        self.flags.intersects(epoll::EventFlags::OUT)
    }

    /// The peer closed its writing half, or the connection hung up altogether.
    pub fn is_read_closed(self) -> bool {
        self.flags
            .intersects(epoll::EventFlags::RDHUP | epoll::EventFlags::HUP)
    }

    /// An error is pending on the descriptor.
    pub fn is_error(self) -> bool {
        self.flags.intersects(epoll::EventFlags::ERR)
    }
}

/// An epoll set, level-triggered.
pub struct Epoll {
    fd: OwnedFd,
    events: Vec<epoll::Event>,
    /// For [`Epoll::wait_precise`], which rustix does not offer on every kernel.
    precise: Vec<libc::epoll_event>,
}

// SAFETY: `epoll::Event` is not `Send` only because its data may be a pointer. This set
// registers every descriptor with a `u64` token (`EventData::new_u64`), so the buffer holds
// plain integers, which any thread may own.
unsafe impl Send for Epoll {}

impl std::fmt::Debug for Epoll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Epoll")
            .field("fd", &self.fd)
            .finish_non_exhaustive()
    }
}

impl Epoll {
    /// A new, empty set (close-on-exec).
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            fd: epoll::create(epoll::CreateFlags::CLOEXEC)?,
            events: Vec::with_capacity(MAX_EVENTS),
            precise: Vec::new(),
        })
    }

    /// Watches `fd` for `interest` under `token`. Adding a descriptor already in the set
    /// changes nothing and is not an error (a relay socket claimed again by the worker that
    /// already watches it).
    pub fn add(&self, fd: impl AsFd, token: u64, interest: Interest) -> io::Result<()> {
        match epoll::add(&self.fd, fd, epoll::EventData::new_u64(token), interest.0) {
            Err(e) if e == rustix::io::Errno::EXIST => Ok(()),
            r => Ok(r?),
        }
    }

    /// Changes what `fd`, already in the set, is watched for, and its token.
    pub fn modify(&self, fd: impl AsFd, token: u64, interest: Interest) -> io::Result<()> {
        Ok(epoll::modify(
            &self.fd,
            fd,
            epoll::EventData::new_u64(token),
            interest.0,
        )?)
    }

    /// Stops watching `fd`.
    pub fn delete(&self, fd: impl AsFd) -> io::Result<()> {
        Ok(epoll::delete(&self.fd, fd)?)
    }

    /// Waits up to `timeout` (rounded up to the millisecond) for ready descriptors and puts
    /// them in `out`, which is cleared first. An interrupted wait returns none.
    pub fn wait(&mut self, out: &mut Vec<Ready>, timeout: Duration) -> io::Result<()> {
        out.clear();
        self.events.clear();
        let timeout = Timespec {
            tv_sec: timeout.as_secs().min(i64::MAX as u64) as i64,
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        match epoll::wait(&self.fd, spare_capacity(&mut self.events), Some(&timeout)) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        out.extend(self.events.iter().map(|e| Ready {
            token: e.data.u64(),
            flags: e.flags,
        }));
        Ok(())
    }

    /// [`Epoll::wait`] to the nanosecond (`epoll_pwait2`, Linux 5.11+), for a paced sender
    /// whose gaps are shorter than a millisecond (see [`crate::precise_timers`]).
    pub fn wait_precise(&mut self, out: &mut Vec<Ready>, timeout: Duration) -> io::Result<()> {
        out.clear();
        self.precise.clear();
        self.precise.reserve(MAX_EVENTS);
        let ts = libc::timespec {
            tv_sec: timeout.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
            tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
        };
        // SAFETY: the kernel writes at most MAX_EVENTS events into `precise`, whose capacity
        // is at least that; `ts` lives across the call; a null sigmask leaves the mask alone.
        let n = unsafe {
            libc::epoll_pwait2(
                self.fd.as_raw_fd(),
                self.precise.as_mut_ptr(),
                MAX_EVENTS as libc::c_int,
                &ts,
                std::ptr::null(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(e)
            };
        }
        // SAFETY: epoll_pwait2 initialised the first n events.
        unsafe { self.precise.set_len(n as usize) };
        out.extend(self.precise.iter().map(|e| Ready {
            token: e.u64,
            flags: epoll::EventFlags::from_bits_retain(e.events),
        }));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};

    const NOW: Duration = Duration::ZERO;
    const SOON: Duration = Duration::from_secs(2);

    fn tcp_pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        (a, b)
    }

    #[test]
    fn readable_writable_modify_and_read_closed_on_a_tcp_pair() {
        let (mut a, mut b) = tcp_pair();
        let mut ep = Epoll::new().unwrap();
        let mut ready = Vec::new();
        ep.add(&b, 7, Interest::READABLE | Interest::READ_CLOSED)
            .unwrap();
        ep.add(&b, 7, Interest::READABLE).unwrap(); // twice is not an error
        ep.wait(&mut ready, NOW).unwrap();
        assert!(ready.is_empty(), "nothing to read yet: {ready:?}");

        a.write_all(b"hi").unwrap();
        ep.wait(&mut ready, SOON).unwrap();
        assert_eq!(ready.len(), 1);
        let r = ready[0];
        assert_eq!(r.token(), 7);
        assert!(r.is_readable() && !r.is_writable() && !r.is_read_closed() && !r.is_error());
        // Level-triggered: still ready until read.
        ep.wait(&mut ready, NOW).unwrap();
        assert_eq!(ready.len(), 1);
        let mut buf = [0u8; 8];
        assert_eq!(b.read(&mut buf).unwrap(), 2);

        // Modify: now for room to write, under another token.
        ep.modify(&b, 9, Interest::WRITABLE).unwrap();
        ep.wait(&mut ready, SOON).unwrap();
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].token(), 9);
        assert!(ready[0].is_writable() && !ready[0].is_readable());

        // The peer's half-close shows as READ_CLOSED (and readable: the read returns 0).
        ep.modify(&b, 11, Interest::READABLE | Interest::READ_CLOSED)
            .unwrap();
        a.shutdown(Shutdown::Write).unwrap();
        ep.wait(&mut ready, SOON).unwrap();
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].token(), 11);
        assert!(ready[0].is_read_closed() && ready[0].is_readable());
        assert_eq!(b.read(&mut buf).unwrap(), 0);

        ep.delete(&b).unwrap();
        ep.wait(&mut ready, NOW).unwrap();
        assert!(ready.is_empty(), "deleted: {ready:?}");
        assert!(
            ep.modify(&b, 1, Interest::READABLE).is_err(),
            "not in the set"
        );
    }

    #[test]
    fn a_precise_wait_reports_the_same_and_times_out_below_a_millisecond() {
        let (mut a, b) = tcp_pair();
        let mut ep = Epoll::new().unwrap();
        let mut ready = Vec::new();
        ep.add(&b, 5, Interest::READABLE).unwrap();
        let start = std::time::Instant::now();
        ep.wait_precise(&mut ready, Duration::from_micros(200))
            .unwrap();
        assert!(ready.is_empty());
        assert!(start.elapsed() < SOON);
        a.write_all(b"x").unwrap();
        ep.wait_precise(&mut ready, SOON).unwrap();
        assert_eq!(ready.len(), 1);
        assert!(ready[0].token() == 5 && ready[0].is_readable());
    }
}
