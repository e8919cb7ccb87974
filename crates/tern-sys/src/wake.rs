//! An eventfd that wakes a thread blocked in [`crate::Epoll::wait`]: another thread calls
//! [`Waker::wake`], the sleeper watches [`Waker`] (it is [`AsFd`]) and calls
//! [`Waker::reset`] when it reports ready. No `unsafe`: [`rustix`] does the system calls.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::event::{eventfd, EventfdFlags};

/// A wake-up counter: readable while a wake is pending.
#[derive(Debug)]
pub struct Waker {
    fd: OwnedFd,
}

impl Waker {
    /// A waker with no wake pending (non-blocking, close-on-exec).
    pub fn new() -> io::Result<Self> {
        let fd = eventfd(0, EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC)?;
        Ok(Self { fd })
    }

    /// Wakes the watcher. Wakes before it resets collapse into one.
    pub fn wake(&self) -> io::Result<()> {
        match rustix::io::write(&self.fd, &1u64.to_ne_bytes()) {
            // The counter is at its maximum: a wake is pending anyway.
            Ok(_) | Err(rustix::io::Errno::AGAIN) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Clears pending wakes; returns how many there were (0 if none).
    pub fn reset(&self) -> io::Result<u64> {
        let mut count = [0u8; 8];
        match rustix::io::read(&self.fd, &mut count) {
            Ok(_) => Ok(u64::from_ne_bytes(count)),
            Err(rustix::io::Errno::AGAIN) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }
}

impl AsFd for Waker {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Epoll, Interest};
    use std::time::{Duration, Instant};

    #[test]
    fn a_wake_from_another_thread_ends_a_wait_at_once() {
        let waker = std::sync::Arc::new(Waker::new().unwrap());
        let mut ep = Epoll::new().unwrap();
        ep.add(&*waker, 3, Interest::READABLE).unwrap();
        let mut ready = Vec::new();
        ep.wait(&mut ready, Duration::ZERO).unwrap();
        assert!(ready.is_empty());
        assert_eq!(waker.reset().unwrap(), 0);

        let w = waker.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            w.wake().unwrap();
            w.wake().unwrap();
        });
        let start = Instant::now();
        ep.wait(&mut ready, Duration::from_secs(10)).unwrap();
        t.join().unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "woken, not timed out"
        );
        assert_eq!(ready.iter().map(|r| r.token()).collect::<Vec<_>>(), [3]);
        assert_eq!(waker.reset().unwrap(), 2, "wakes collapse into one wake-up");
        ep.wait(&mut ready, Duration::ZERO).unwrap();
        assert!(ready.is_empty(), "reset clears it");
    }
}
