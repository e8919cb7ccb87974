//! The load tools' view of the system calls, all from `tern-sys` (the same ring and send as
//! the server): a batch receiver and a batch sender shaped for the generator and the bare
//! forwarder, and CPU accounting from `/proc`. No `unsafe` here.
//!
//! Everything the benchmarks do is IPv4 on 127.0.0.0/8, so sources are `SocketAddrV4`.

use std::io;
use std::net::{SocketAddr, SocketAddrV4};
use std::os::fd::AsFd;

pub use tern_sys::{enable_gro, precise_timers, raise_nofile_limit, Epoll, Interest, Ready};
use tern_sys::{send_many, Gso, RecvRing};

/// A refused destination (ICMP port unreachable on a connected socket) is no error for a load
/// tool: the datagram is lost, as the network would lose it.
fn refused_is_none(r: io::Result<usize>) -> io::Result<usize> {
    match r {
        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => Ok(0),
        r => r,
    }
}

fn v4(a: SocketAddr) -> SocketAddrV4 {
    match a {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(a) => SocketAddrV4::new(
            a.ip()
                .to_ipv4_mapped()
                .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
            a.port(),
        ),
    }
}

/// Receives up to `cap` datagrams per `recvmmsg` call ([`RecvRing`]), each into a slot of
/// `headroom` spare bytes followed by up to `max_len` bytes of datagram.
pub struct RecvBatch {
    ring: RecvRing,
    cap: usize,
    n: usize,
}

impl RecvBatch {
    /// Room for `cap` datagrams of up to `max_len` bytes, each after `headroom` bytes.
    pub fn new(cap: usize, max_len: usize, headroom: usize) -> Self {
        Self {
            ring: RecvRing::new(cap, headroom, max_len, 0),
            cap,
            n: 0,
        }
    }

    /// One non-blocking `recvmmsg` on `fd`; returns how many datagrams arrived (0 when none).
    pub fn recv(&mut self, fd: impl AsFd) -> io::Result<usize> {
        self.n = 0;
        self.n = refused_is_none(self.ring.recv(fd.as_fd(), 0, self.cap, true))?;
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
        self.ring.meta(i).segment
    }

    /// Datagram `i` of the last `recv` and its source.
    pub fn get(&self, i: usize) -> (&[u8], SocketAddrV4) {
        (self.ring.received(i), v4(self.ring.meta(i).from))
    }

    /// Datagram `i` with its headroom in front (`headroom + len` bytes), mutable, and its source.
    pub fn get_with_headroom(&mut self, i: usize) -> (&mut [u8], SocketAddrV4) {
        let meta = self.ring.meta(i);
        let end = self.ring.headroom() + meta.len;
        (&mut self.ring.slot_mut(i)[..end], v4(meta.from))
    }

    /// Sends every datagram of the last `recv` back to its source on `fd` (an echo), each its
    /// own message of one `sendmmsg`; returns how many the kernel took.
    pub fn echo(&mut self, fd: impl AsFd) -> io::Result<usize> {
        let ring = &self.ring;
        let msgs = (0..self.n).map(|i| (ring.received(i), ring.meta(i).from));
        Ok(send_many(fd.as_fd(), &Gso::off(), msgs, true).sent)
    }
}

/// Datagrams queued for one `sendmmsg` on one socket; each is copied in.
pub struct SendBatch {
    data: Vec<u8>,
    slot: usize,
    lens: Vec<usize>,
    dests: Vec<SocketAddrV4>,
    cap: usize,
    /// Whether runs of datagrams go out as one UDP GSO send.
    gso: Gso,
    gso_on: bool,
}

impl SendBatch {
    /// Room for `cap` datagrams of up to `max_len` bytes. With `gso`, runs of equal-size
    /// datagrams to one destination leave as one UDP GSO send (see [`SendBatch::flush`]);
    /// without it every datagram is its own message of the `sendmmsg`.
    pub fn new(cap: usize, max_len: usize, gso: bool) -> Self {
        Self {
            data: vec![0; cap * max_len],
            slot: max_len,
            lens: Vec::with_capacity(cap),
            dests: Vec::with_capacity(cap),
            cap,
            gso: if gso { Gso::new() } else { Gso::off() },
            gso_on: gso,
        }
    }

    /// Whether this batch sends runs as UDP GSO.
    pub fn gso(&self) -> bool {
        self.gso_on
    }

    /// Whether no more datagram fits.
    pub fn is_full(&self) -> bool {
        self.lens.len() == self.cap
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
        assert!(i < self.cap, "SendBatch full");
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

    /// Sends everything queued on `fd` ([`tern_sys::send_many`], batched) and empties the
    /// batch; returns how many the kernel took (the rest was dropped because the socket
    /// buffer was full, or refused). With GSO on, consecutive datagrams to the same
    /// destination with the same length (the last may be shorter) go as one UDP GSO send:
    /// the kernel splits them into the same datagrams after one pass through its stack, but
    /// a receiver with UDP GRO on gets them as one buffer. With GSO off, each datagram is its
    /// own message and reaches the receiver as its own datagram.
    pub fn flush(&mut self, fd: impl AsFd) -> io::Result<usize> {
        let (data, slot) = (&self.data, self.slot);
        let msgs = self
            .lens
            .iter()
            .zip(&self.dests)
            .enumerate()
            .map(|(i, (&len, &to))| (&data[i * slot..i * slot + len], SocketAddr::V4(to)));
        let report = send_many(fd.as_fd(), &self.gso, msgs, true);
        self.lens.clear();
        self.dests.clear();
        Ok(report.sent)
    }
}

/// CPU seconds every CPU of the machine spent busy so far (user, nice, system, irq, softirq
/// and steal from the first line of `/proc/stat`). Over a window, this minus the server's and
/// the generator's own CPU is what everything else took: other processes, interrupts, the
/// hypervisor.
pub fn machine_busy_seconds() -> Option<f64> {
    busy_seconds("cpu ")
}

/// CPU seconds CPU `n` spent busy so far (the same fields, from its `cpuN` line): with the
/// XDP fast path the relaying moves into softirq and NAPI threads, which no process's own
/// times show.
pub fn cpu_busy_seconds(n: usize) -> Option<f64> {
    busy_seconds(&format!("cpu{n} "))
}

fn busy_seconds(prefix: &str) -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find_map(|l| l.strip_prefix(prefix))?;
    let f: Vec<f64> = line
        .split_whitespace()
        .map(|x| x.parse::<f64>())
        .collect::<Result<_, _>>()
        .ok()?;
    // user nice system idle iowait irq softirq steal (guest time is inside user already).
    let busy = f.first()? + f.get(1)? + f.get(2)? + f.get(5)? + f.get(6)? + f.get(7)?;
    Some(busy / ticks_per_second())
}

/// utime + stime of process `pid` in seconds, from `/proc/PID/stat`.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / ticks_per_second())
}

/// The resident memory of process `pid` in KiB (`VmRSS` of `/proc/PID/status`).
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    line.split_whitespace().next()?.parse().ok()
}

fn ticks_per_second() -> f64 {
    match tern_sys::clock_ticks_per_second() {
        0 => 100.0,
        hz => hz as f64,
    }
}
