//! Sending datagrams: one, or many to many destinations in one `sendmmsg`, with runs to one
//! destination coalesced into UDP GSO sends.
//!
//! Why not quinn-udp: its send takes one destination per call and builds its headers each
//! time. tern's worker sends a batch of relayed datagrams to many clients at once: here that
//! is one `sendmmsg`, with runs of equal-size datagrams to one client as one GSO send, and
//! only the header entries used are written (zeroing the whole scratch arrays on every call
//! was 2.8 % of the server's CPU under load, 0.8 % after, commit d848df2). The repository
//! has no A/B of this send against quinn-udp's; the README's Performance section has the
//! server-wide figures.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

use socket2::{SockAddr, SockRef};

/// Most segments in one GSO send (the kernel's UDP_MAX_SEGMENTS is at least this).
const GSO_MAX_SEGMENTS: usize = 64;
/// Most bytes in one GSO send (one UDP datagram's worth).
const GSO_MAX_BYTES: usize = 65_000;
/// Datagrams per `sendmmsg`.
const CHUNK: usize = crate::mmsg::MAX;

/// Whether one socket sends with UDP GSO: probed on its first batched send, and off for good
/// once the kernel or the route refuses it. Each socket has its own; sockets shared between
/// threads share theirs (it is atomic).
#[derive(Debug)]
pub struct Gso(AtomicU8);

const GSO_UNKNOWN: u8 = 0;
const GSO_ON: u8 = 1;
const GSO_OFF: u8 = 2;

impl Gso {
    /// Not known yet: the first batched send asks the kernel.
    pub const fn new() -> Self {
        Self(AtomicU8::new(GSO_UNKNOWN))
    }

    /// Never use GSO on this socket (every datagram its own message).
    pub const fn off() -> Self {
        Self(AtomicU8::new(GSO_OFF))
    }

    /// Turns GSO off for this socket.
    pub fn disable(&self) {
        self.0.store(GSO_OFF, Relaxed);
    }

    /// Whether to use GSO on `fd`, probing the kernel the first time.
    pub fn enabled(&self, fd: BorrowedFd<'_>) -> bool {
        match self.0.load(Relaxed) {
            GSO_ON => true,
            GSO_OFF => false,
            _ => {
                let on = crate::sockopt::set_udp_int(fd, crate::sockopt::UDP_SEGMENT, 0);
                self.0.store(if on { GSO_ON } else { GSO_OFF }, Relaxed);
                on
            }
        }
    }
}

impl Default for Gso {
    fn default() -> Self {
        Self::new()
    }
}

/// What a [`send_many`] did: datagrams the kernel took, those it refused (no route, an
/// address of the wrong family, ...), each lost while the others still went, and those a full
/// buffer left unsent: the socket's (EAGAIN: the rest of the batch is dropped, as the network
/// would) or the device's queue (ENOBUFS, reported on sockets with `IP_RECVERR`: that
/// datagram is dropped and the others still go).
#[derive(Debug, Default)]
pub struct SendReport {
    /// Datagrams the kernel took.
    pub sent: usize,
    /// Datagrams refused.
    pub refused: u64,
    /// Datagrams dropped because the socket buffer or the device queue was full.
    pub unsent: u64,
    /// The error of the last refusal, for the log.
    pub last_error: Option<io::Error>,
}

impl SendReport {
    fn refuse(&mut self, datagrams: usize, error: io::Error) {
        self.refused += datagrams as u64;
        self.last_error = Some(error);
    }

    fn send_one(&mut self, fd: BorrowedFd<'_>, data: &[u8], to: SocketAddr) {
        let mut sent = try_send_to(fd, data, to);
        if sent.as_ref().is_err_and(crate::is_icmp_report) {
            // The error of an earlier datagram's ICMP answer, not of this one (see
            // `crate::errqueue`): reading it cleared it, so this one goes now.
            sent = try_send_to(fd, data, to);
        }
        match sent {
            Ok(true) => self.sent += 1,
            Ok(false) => self.unsent += 1,
            Err(e) if is_queue_full(&e) => self.unsent += 1,
            Err(e) => self.refuse(1, e),
        }
    }
}

/// Sends `data` to `to` from `fd` without blocking. A full socket buffer drops the datagram,
/// as the network would; that is not an error.
pub fn send_to(fd: BorrowedFd<'_>, data: &[u8], to: SocketAddr) -> io::Result<()> {
    match try_send_to(fd, data, to) {
        // An earlier datagram's ICMP answer, reported here once (`crate::errqueue`).
        Err(e) if crate::is_icmp_report(&e) => try_send_to(fd, data, to).map(drop),
        sent => sent.map(drop),
    }
}

/// Whether a send failed because the device's queue was full (ENOBUFS: the qdisc dropped
/// the datagram; the kernel reports it only on sockets with `IP_RECVERR`/`IPV6_RECVERR`).
/// Like a full socket buffer, a congestion drop, not a refusal.
fn is_queue_full(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOBUFS)
}

/// [`send_to`], saying whether the kernel took the datagram.
fn try_send_to(fd: BorrowedFd<'_>, data: &[u8], to: SocketAddr) -> io::Result<bool> {
    match SockRef::from(&fd).send_to_with_flags(data, &SockAddr::from(to), libc::MSG_DONTWAIT) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(e),
    }
}

/// Sends each `(data, to)` from `fd`. Batched: one sendmmsg per 64 datagrams, and within it
/// consecutive datagrams to the same destination with the same length (the last may be
/// shorter) go as one UDP GSO send when `gso` allows, which the kernel splits into the same
/// datagrams after a single pass through the stack. Plain: one sendto each. Datagrams the
/// kernel does not take at once are dropped, as the network would; those it refuses are
/// skipped (the rest still go) and counted.
pub fn send_many<'a>(
    fd: BorrowedFd<'_>,
    gso: &Gso,
    msgs: impl Iterator<Item = (&'a [u8], SocketAddr)>,
    batched: bool,
) -> SendReport {
    let mut report = SendReport::default();
    if !batched {
        for (data, to) in msgs {
            report.send_one(fd, data, to);
        }
        return report;
    }
    let mut msgs = msgs.peekable();
    let Some(first) = msgs.next() else {
        return report;
    };
    if msgs.peek().is_none() {
        // One datagram (the common case at light load): sendto spares the kernel the
        // message-header copies of sendmmsg.
        report.send_one(fd, first.0, first.1);
        return report;
    }
    let use_gso = gso.enabled(fd);
    let mut pending: [(&[u8], SocketAddr); CHUNK] = [(&[], first.1); CHUNK];
    pending[0] = first;
    let mut n = 1;
    loop {
        for m in msgs.by_ref().take(CHUNK - n) {
            pending[n] = m;
            n += 1;
        }
        send_chunk(fd, &pending[..n], use_gso, gso, &mut report);
        if msgs.peek().is_none() {
            return report;
        }
        n = 0;
    }
}

/// Consecutive datagrams of `msgs` that go as one message: `(first, count)` of each, at most
/// `CHUNK`. With `gso`, a run to one destination whose datagrams all have the first one's
/// length (the last may be shorter), within the kernel's segment and byte limits.
fn groups(msgs: &[(&[u8], SocketAddr)], gso: bool, out: &mut [(usize, usize); CHUNK]) -> usize {
    let (mut h, mut i) = (0, 0);
    while i < msgs.len() && h < CHUNK {
        let (first, to) = msgs[i];
        let size = first.len();
        let (mut j, mut bytes) = (i + 1, size);
        while gso
            && size > 0
            && j < msgs.len()
            && j - i < GSO_MAX_SEGMENTS
            && msgs[j].1 == to
            && msgs[j - 1].0.len() == size
            && !msgs[j].0.is_empty()
            && msgs[j].0.len() <= size
            && bytes + msgs[j].0.len() <= GSO_MAX_BYTES
        {
            bytes += msgs[j].0.len();
            j += 1;
        }
        out[h] = (i, j - i);
        h += 1;
        i = j;
    }
    h
}

/// One sendmmsg for up to 64 datagrams, grouped for GSO when `use_gso`. A group the kernel
/// refuses for its GSO turns `gso` off and goes again datagram by datagram.
fn send_chunk(
    fd: BorrowedFd<'_>,
    msgs: &[(&[u8], SocketAddr)],
    use_gso: bool,
    gso: &Gso,
    report: &mut SendReport,
) {
    let msgs = &msgs[..msgs.len().min(CHUNK)];
    let mut groups_of = [(0, 0); CHUNK];
    let h = groups(msgs, use_gso, &mut groups_of);
    let mut headers = crate::mmsg::SendHeaders::new();
    for &(first, count) in &groups_of[..h] {
        let run = &msgs[first..first + count];
        headers.push(
            run.iter().map(|m| m.0),
            SockAddr::from(run[0].1),
            run[0].0.len(),
        );
    }
    let mut done = 0;
    let mut icmp_retried = false;
    while done < h {
        match headers.send(fd.as_raw_fd(), done) {
            Ok(k) => {
                report.sent += groups_of[done..done + k].iter().map(|g| g.1).sum::<usize>();
                done += k;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                report.unsent += groups_of[done..h].iter().map(|g| g.1 as u64).sum::<u64>();
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // The device queue dropped the first datagram of the next group: count it (and
            // its group) as unsent and go on with the rest.
            Err(e) if is_queue_full(&e) => {
                report.unsent += groups_of[done].1 as u64;
                done += 1;
            }
            // The pending error of an earlier datagram's ICMP answer (`crate::errqueue`),
            // cleared by this report: send the same datagrams again, once.
            Err(e) if !icmp_retried && crate::is_icmp_report(&e) => icmp_retried = true,
            Err(e) => {
                let (first, count) = groups_of[done];
                if count > 1 && matches!(e.raw_os_error(), Some(libc::EIO | libc::EINVAL)) {
                    // The kernel or the route refuses GSO: stop using it on this socket and
                    // send these plainly.
                    gso.disable();
                    for (data, to) in &msgs[first..first + count] {
                        report.send_one(fd, data, *to);
                    }
                } else {
                    // The kernel refuses these datagrams (e.g. no route): skip them.
                    report.refuse(count, e);
                }
                done += 1;
            }
        }
    }
}
