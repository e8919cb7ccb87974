//! The one place with `unsafe` in the load tools: epoll, `recvmmsg` and `sendmmsg` over IPv4
//! UDP sockets (everything the benchmarks do is on 127.0.0.0/8).
//!
//! Invariants, shared by every `unsafe` block below:
//! - every pointer handed to the kernel points into a `Vec` owned by the struct whose `&mut self`
//!   the call holds, so nothing can move or free it during the syscall;
//! - the header arrays (`mmsghdr`, `iovec`, `sockaddr_in`) are rebuilt right before each call
//!   from the current buffer addresses, so they never dangle after a `Vec` reallocates;
//! - lengths passed to the kernel never exceed the buffers they describe, and `vlen` never
//!   exceeds the number of headers built;
//! - file descriptors are borrowed from live sockets for the duration of the call only.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

fn to_sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
    let mut s: libc::sockaddr_in = unsafe { zeroed() };
    s.sin_family = libc::AF_INET as libc::sa_family_t;
    s.sin_port = a.port().to_be();
    s.sin_addr.s_addr = u32::from(*a.ip()).to_be();
    s
}

fn from_sockaddr(s: &libc::sockaddr_in) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(s.sin_addr.s_addr)),
        u16::from_be(s.sin_port),
    )
}

fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// A level-triggered epoll set whose events carry a caller-chosen `u64` token.
pub struct Epoll {
    fd: OwnedFd,
    events: Vec<libc::epoll_event>,
}

impl Epoll {
    /// A new epoll set reporting up to 256 ready sockets per wait.
    pub fn new() -> io::Result<Self> {
        // SAFETY: epoll_create1 takes no pointers.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        Ok(Self { fd, events })
    }

    /// Watches `fd` for readability, reporting `token`.
    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: ev is a live local; the kernel copies it.
        let r = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Stops watching `fd`.
    pub fn remove(&self, fd: RawFd) {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: as in `add`; errors (fd already gone) are irrelevant here.
        unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, &mut ev) };
    }

    /// Waits up to `timeout_ms` and appends the tokens of ready sockets to `out`.
    pub fn wait(&mut self, out: &mut Vec<u64>, timeout_ms: i32) -> io::Result<()> {
        self.wait_for(out, Duration::from_millis(timeout_ms.max(0) as u64))
    }

    /// Waits up to `timeout` (to the nanosecond: epoll_pwait2, with the thread's timer slack
    /// set by [`precise_timers`]) and appends the tokens of ready sockets to `out`.
    pub fn wait_for(&mut self, out: &mut Vec<u64>, timeout: Duration) -> io::Result<()> {
        out.clear();
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
        };
        // SAFETY: `events` is ours, its length bounds maxevents; ts is a live local; a null
        // sigmask leaves the mask alone.
        let n = unsafe {
            libc::epoll_pwait2(
                self.fd.as_raw_fd(),
                self.events.as_mut_ptr(),
                self.events.len() as i32,
                &ts,
                std::ptr::null(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if would_block(&e) { Ok(()) } else { Err(e) };
        }
        out.extend(self.events[..n as usize].iter().map(|e| e.u64));
        Ok(())
    }
}

/// The UDP_GRO socket option and control message (Linux 5.0+).
const UDP_GRO: libc::c_int = 104;

/// Asks the kernel to hand over runs of datagrams from one source as one buffer (UDP GRO),
/// with the segment size in a control message ([`RecvBatch::segment`]); whether it took it.
pub fn enable_gro(fd: RawFd) -> bool {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt reads `one`, which lives across the call, for its size.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_UDP,
            UDP_GRO,
            (&one as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

/// Sets the calling thread's timer slack to 1 ns, so that a paced sender's waits end when
/// asked (the default slack is 50 us, coarser than the gap between packets at 40,000/s).
pub fn precise_timers() {
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer and changes only this thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
}

/// Receives up to `cap` datagrams per `recvmmsg` call, each into a slot of `headroom` spare
/// bytes followed by up to `max_len` bytes of datagram.
pub struct RecvBatch {
    data: Vec<u8>,
    slot: usize,
    headroom: usize,
    names: Vec<libc::sockaddr_in>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    /// Control buffers, for the UDP_GRO segment size (see [`enable_gro`]).
    ctrls: Vec<[u64; 4]>,
    n: usize,
}

impl RecvBatch {
    /// Room for `cap` datagrams of up to `max_len` bytes, each after `headroom` bytes.
    pub fn new(cap: usize, max_len: usize, headroom: usize) -> Self {
        let slot = headroom + max_len;
        // SAFETY: plain old data; zeroed is valid.
        let (name, iov, hdr) = unsafe { (zeroed(), zeroed(), zeroed()) };
        Self {
            data: vec![0; cap * slot],
            slot,
            headroom,
            names: vec![name; cap],
            iovs: vec![iov; cap],
            hdrs: vec![hdr; cap],
            ctrls: vec![[0; 4]; cap],
            n: 0,
        }
    }

    /// One non-blocking `recvmmsg` on `fd`; returns how many datagrams arrived (0 when none).
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let cap = self.hdrs.len();
        let base = self.data.as_mut_ptr();
        for i in 0..cap {
            self.iovs[i] = libc::iovec {
                // SAFETY: i * slot + headroom < data.len() by construction.
                iov_base: unsafe { base.add(i * self.slot + self.headroom) }.cast(),
                iov_len: self.slot - self.headroom,
            };
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = (&mut self.names[i] as *mut libc::sockaddr_in).cast();
            h.msg_namelen = size_of::<libc::sockaddr_in>() as u32;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = self.ctrls[i].as_mut_ptr().cast();
            h.msg_controllen = size_of::<[u64; 4]>();
            h.msg_flags = 0;
        }
        // SAFETY: see the module invariants; vlen == cap headers built above.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                cap as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            self.n = 0;
            let e = io::Error::last_os_error();
            return if would_block(&e) || e.raw_os_error() == Some(libc::ECONNREFUSED) {
                Ok(0)
            } else {
                Err(e)
            };
        }
        self.n = r as usize;
        Ok(self.n)
    }

    /// How many datagrams the last `recv` returned.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether the last `recv` returned nothing.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The size of the datagrams the kernel coalesced into entry `i` of the last `recv` (UDP
    /// GRO; the last may be shorter), or its length when it holds one datagram.
    pub fn segment(&self, i: usize) -> usize {
        let h = &self.hdrs[i].msg_hdr;
        // SAFETY: msg_control points at ctrls[i] and msg_controllen is what the kernel wrote
        // there; CMSG_FIRSTHDR/CMSG_NXTHDR stay within it.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(h);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_UDP
                    && (*c).cmsg_type == UDP_GRO
                    && (*c).cmsg_len as usize >= libc::CMSG_LEN(4) as usize
                {
                    let seg = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                    if seg > 0 {
                        return seg as usize;
                    }
                }
                c = libc::CMSG_NXTHDR(h, c);
            }
        }
        self.hdrs[i].msg_len as usize
    }

    /// Datagram `i` of the last `recv` and its source.
    pub fn get(&self, i: usize) -> (&[u8], SocketAddrV4) {
        let start = i * self.slot + self.headroom;
        let len = self.hdrs[i].msg_len as usize;
        (
            &self.data[start..start + len],
            from_sockaddr(&self.names[i]),
        )
    }

    /// Datagram `i` with its headroom in front (`headroom + len` bytes), mutable, and its source.
    pub fn get_with_headroom(&mut self, i: usize) -> (&mut [u8], SocketAddrV4) {
        let start = i * self.slot;
        let len = self.hdrs[i].msg_len as usize;
        let src = from_sockaddr(&self.names[i]);
        (&mut self.data[start..start + self.headroom + len], src)
    }

    /// Sends every datagram of the last `recv` back to its source on `fd` with `sendmmsg`,
    /// in place (an echo); returns how many the kernel took.
    pub fn echo(&mut self, fd: RawFd) -> io::Result<usize> {
        for i in 0..self.n {
            // iov_base still points at slot i (set in `recv`, the Vec has not moved).
            self.iovs[i].iov_len = self.hdrs[i].msg_len as usize;
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_iov = &mut self.iovs[i];
            h.msg_name = (&mut self.names[i] as *mut libc::sockaddr_in).cast();
            h.msg_namelen = size_of::<libc::sockaddr_in>() as u32;
        }
        send_all(fd, &mut self.hdrs[..self.n])
    }
}

/// `sendmmsg` until all of `hdrs` went out or the socket is full; returns how many went out.
fn send_all(fd: RawFd, hdrs: &mut [libc::mmsghdr]) -> io::Result<usize> {
    let mut done = 0;
    while done < hdrs.len() {
        // SAFETY: see the module invariants; the slice bounds vlen.
        let r = unsafe {
            libc::sendmmsg(
                fd,
                hdrs[done..].as_mut_ptr(),
                (hdrs.len() - done) as u32,
                libc::MSG_DONTWAIT,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if would_block(&e) || e.raw_os_error() == Some(libc::ECONNREFUSED) {
                break;
            }
            return Err(e);
        }
        if r == 0 {
            break;
        }
        done += r as usize;
    }
    Ok(done)
}

/// Datagrams queued for one `sendmmsg` on one socket; each is copied in.
pub struct SendBatch {
    data: Vec<u8>,
    slot: usize,
    lens: Vec<usize>,
    dests: Vec<SocketAddrV4>,
    names: Vec<libc::sockaddr_in>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    /// One control buffer per header, for a UDP_SEGMENT cmsg.
    cmsgs: Vec<[u64; 4]>,
    /// Per header of the next `sendmmsg`: (first datagram, how many); reused across flushes.
    groups: Vec<(usize, usize)>,
    /// Whether runs of datagrams go out as one UDP GSO send.
    gso: bool,
}

impl SendBatch {
    /// Room for `cap` datagrams of up to `max_len` bytes. With `gso`, runs of equal-size
    /// datagrams to one destination leave as one UDP GSO send (see [`SendBatch::flush`]);
    /// without it every datagram is its own message of the `sendmmsg`.
    pub fn new(cap: usize, max_len: usize, gso: bool) -> Self {
        // SAFETY: plain old data; zeroed is valid.
        let (name, iov, hdr) = unsafe { (zeroed(), zeroed(), zeroed()) };
        Self {
            data: vec![0; cap * max_len],
            slot: max_len,
            lens: Vec::with_capacity(cap),
            dests: Vec::with_capacity(cap),
            names: vec![name; cap],
            iovs: vec![iov; cap],
            hdrs: vec![hdr; cap],
            cmsgs: vec![[0; 4]; cap],
            groups: Vec::with_capacity(cap),
            gso,
        }
    }

    /// Whether this batch sends runs as UDP GSO.
    pub fn gso(&self) -> bool {
        self.gso
    }

    /// Whether no more datagram fits.
    pub fn is_full(&self) -> bool {
        self.lens.len() == self.hdrs.len()
    }

    /// How many datagrams are queued.
    pub fn len(&self) -> usize {
        self.lens.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// Queues a datagram to `dest` written by `fill` into a buffer of the slot size; `fill`
    /// returns its length. The caller flushes first when [`SendBatch::is_full`].
    pub fn push_with(&mut self, dest: SocketAddrV4, fill: impl FnOnce(&mut [u8]) -> usize) {
        let i = self.lens.len();
        assert!(i < self.hdrs.len(), "SendBatch full");
        let slot = &mut self.data[i * self.slot..(i + 1) * self.slot];
        let len = fill(slot).min(self.slot);
        self.lens.push(len);
        self.dests.push(dest);
    }

    /// Queues a copy of `bytes` to `dest`.
    pub fn push(&mut self, dest: SocketAddrV4, bytes: &[u8]) {
        self.push_with(dest, |b| {
            b[..bytes.len()].copy_from_slice(bytes);
            bytes.len()
        });
    }

    /// Sends everything queued on `fd` and empties the batch; returns how many the kernel took
    /// (the rest was dropped because the socket buffer was full). With GSO on (see
    /// [`SendBatch::new`]), consecutive datagrams to the same destination with the same length
    /// (the last may be shorter) go as one UDP GSO send: the kernel splits them into the same
    /// datagrams after one pass through its stack, but a receiver with UDP GRO on gets them as
    /// one buffer. With GSO off, each datagram is its own `mmsghdr` and reaches the receiver
    /// as its own datagram.
    pub fn flush(&mut self, fd: RawFd) -> io::Result<usize> {
        let n = self.lens.len();
        let base = self.data.as_mut_ptr();
        let gso = self.gso;
        for i in 0..n {
            self.iovs[i] = libc::iovec {
                // SAFETY: slot i lies inside data (i < cap).
                iov_base: unsafe { base.add(i * self.slot) }.cast(),
                iov_len: self.lens[i],
            };
        }
        // Group datagrams into headers: (first datagram, count) per header.
        let mut groups = std::mem::take(&mut self.groups);
        groups.clear();
        let mut i = 0;
        while i < n {
            let size = self.lens[i];
            let mut j = i + 1;
            let mut bytes = size;
            while gso
                && size > 0
                && j < n
                && j - i < 64
                && self.dests[j] == self.dests[i]
                && self.lens[j - 1] == size
                && self.lens[j] > 0
                && self.lens[j] <= size
                && bytes + self.lens[j] <= 65_000
            {
                bytes += self.lens[j];
                j += 1;
            }
            groups.push((i, j - i));
            i = j;
        }
        for (h, &(first, count)) in groups.iter().enumerate() {
            self.names[h] = to_sockaddr(self.dests[first]);
            let hdr = &mut self.hdrs[h].msg_hdr;
            hdr.msg_name = (&mut self.names[h] as *mut libc::sockaddr_in).cast();
            hdr.msg_namelen = size_of::<libc::sockaddr_in>() as u32;
            hdr.msg_iov = &mut self.iovs[first];
            hdr.msg_iovlen = count;
            hdr.msg_flags = 0;
            if count > 1 {
                let c = &mut self.cmsgs[h];
                hdr.msg_control = c.as_mut_ptr().cast();
                // SAFETY: CMSG_SPACE is arithmetic on a length.
                hdr.msg_controllen = unsafe { libc::CMSG_SPACE(2) } as usize;
                // SAFETY: msg_control points at `c` (32 bytes, 8-aligned, >= CMSG_SPACE(2)), so
                // CMSG_FIRSTHDR and CMSG_DATA point inside it with room for the u16.
                unsafe {
                    let cm = libc::CMSG_FIRSTHDR(hdr);
                    (*cm).cmsg_level = SOL_UDP;
                    (*cm).cmsg_type = UDP_SEGMENT;
                    (*cm).cmsg_len = libc::CMSG_LEN(2) as usize;
                    std::ptr::write_unaligned(
                        libc::CMSG_DATA(cm).cast::<u16>(),
                        self.lens[first] as u16,
                    );
                }
            } else {
                hdr.msg_control = std::ptr::null_mut();
                hdr.msg_controllen = 0;
            }
        }
        let sent_groups = send_all(fd, &mut self.hdrs[..groups.len()]);
        self.lens.clear();
        self.dests.clear();
        let sent = sent_groups.map(|k| groups[..k].iter().map(|g| g.1).sum());
        self.groups = groups;
        sent
    }
}

/// `setsockopt`/cmsg level and option for UDP generic segmentation offload.
const SOL_UDP: libc::c_int = 17;
const UDP_SEGMENT: libc::c_int = 103;

/// Raises this process's soft limit of open files towards `wanted` (never above the hard
/// limit, never lowering it); returns the soft limit in force afterwards. The generator holds
/// a client socket per session and a socket per echo peer.
pub fn raise_nofile_limit(wanted: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into `lim`, a live local of the right type.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    let target = wanted.min(lim.rlim_max);
    if target <= lim.rlim_cur {
        return lim.rlim_cur;
    }
    let new = libc::rlimit {
        rlim_cur: target,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: setrlimit reads `new`, a live local of the right type.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } == 0 {
        target
    } else {
        lim.rlim_cur
    }
}

/// CPU seconds every CPU of the machine spent busy so far (user, nice, system, irq, softirq
/// and steal from the first line of `/proc/stat`). Over a window, this minus the server's and
/// the generator's own CPU is what everything else took: other processes, interrupts, the
/// hypervisor.
pub fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let f: Vec<f64> = line
        .split_whitespace()
        .map(|x| x.parse::<f64>())
        .collect::<Result<_, _>>()
        .ok()?;
    // user nice system idle iowait irq softirq steal (guest time is inside user already).
    let busy = f.first()? + f.get(1)? + f.get(2)? + f.get(5)? + f.get(6)? + f.get(7)?;
    // SAFETY: sysconf takes no pointers.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Some(busy / if hz > 0 { hz as f64 } else { 100.0 })
}

/// utime + stime of process `pid` in seconds, from `/proc/PID/stat` (no unsafe needed).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf takes no pointers.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Some(ticks / if hz > 0 { hz as f64 } else { 100.0 })
}
