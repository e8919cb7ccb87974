//! alloc-rate: with `--concurrency` cycles in flight, each on a new 5-tuple (a fresh client
//! port from `--client-ports`): Allocate → 401 → signed Allocate → Refresh LIFETIME 0.
//! Counts successful allocations, failures and 508 (Insufficient Capacity) per second.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use tern_wire::{attr, Method};

use super::hist::Histogram;
use super::net::bind_udp;
use super::stun::{parse_response, request, Auth, Credentials, Response, Tids};
use super::sys::{cpu_seconds, Epoll, Interest};
use super::{Args, Report};

const STEP_TIMEOUT_NS: u64 = 1_000_000_000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Step {
    Idle,
    Allocate,
    SignedAllocate,
    Release,
}

struct Slot {
    sock: Option<UdpSocket>,
    step: Step,
    tid: [u8; 12],
    deadline: u64,
    started: u64,
    auth: Option<Auth>,
    retries: u8,
}

enum Outcome {
    Ok,
    Failure,
    E508,
}

struct Run<'a> {
    args: &'a Args,
    creds: Credentials,
    tids: Tids,
    out: Vec<u8>,
    next_port: u16,
    epoll: Epoll,
}

impl Run<'_> {
    fn send(&mut self, slot: &mut Slot, step: Step, now: u64) -> io::Result<()> {
        slot.step = step;
        slot.tid = self.tids.next_tid();
        slot.deadline = now + STEP_TIMEOUT_NS;
        let auth = if step == Step::Allocate {
            None
        } else {
            slot.auth.as_ref()
        };
        request(
            &mut self.out,
            method(step),
            slot.tid,
            auth,
            |w| match step {
                Step::Release => {
                    w.u32(attr::LIFETIME, 0);
                }
                _ => {
                    w.attr(attr::REQUESTED_TRANSPORT, &[attr::TRANSPORT_UDP, 0, 0, 0]);
                }
            },
        );
        let sock = slot.sock.as_ref().expect("a running slot has a socket");
        match sock.send_to(&self.out, self.args.server) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Starts a cycle on a fresh 5-tuple.
    fn start(&mut self, slot: &mut Slot, token: u64, now: u64) -> io::Result<()> {
        if let Some(s) = slot.sock.take() {
            let _ = self.epoll.delete(&s);
        }
        let (lo, hi) = self.args.client_ports;
        let mut tries = u32::from(hi - lo) + 1;
        let sock = loop {
            let port = self.next_port;
            self.next_port = if port >= hi { lo } else { port + 1 };
            match bind_udp(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)) {
                Ok(s) => break s,
                Err(e) if tries > 1 && e.kind() == io::ErrorKind::AddrInUse => tries -= 1,
                Err(e) => return Err(e),
            }
        };
        self.epoll.add(&sock, token, Interest::READABLE)?;
        slot.sock = Some(sock);
        slot.auth = None;
        slot.retries = 0;
        slot.started = now;
        self.send(slot, Step::Allocate, now)
    }

    /// Advances `slot` on response `r`; returns the outcome when the allocation step ended.
    fn on_response(
        &mut self,
        slot: &mut Slot,
        r: &Response,
        now: u64,
    ) -> io::Result<Option<Outcome>> {
        let stale = !r.success && r.code == Some(438) && slot.retries < 2;
        match slot.step {
            Step::Allocate if !r.success && r.code == Some(401) => {
                slot.auth = Auth::from_401(&self.creds, r);
                if slot.auth.is_none() {
                    slot.step = Step::Idle;
                    return Ok(Some(Outcome::Failure));
                }
                self.send(slot, Step::SignedAllocate, now)?;
                Ok(None)
            }
            Step::Allocate | Step::SignedAllocate if r.success => {
                self.send(slot, Step::Release, now)?;
                Ok(Some(Outcome::Ok))
            }
            Step::SignedAllocate | Step::Release if stale => {
                if let (Some(a), Some(n)) = (slot.auth.as_mut(), r.nonce.clone()) {
                    a.nonce = n;
                }
                slot.retries += 1;
                self.send(slot, slot.step, now)?;
                Ok(None)
            }
            Step::Release if r.success => {
                slot.step = Step::Idle;
                Ok(None)
            }
            Step::Release => {
                slot.step = Step::Idle;
                Ok(Some(Outcome::Failure))
            }
            _ => {
                slot.step = Step::Idle;
                Ok(Some(if r.code == Some(508) {
                    Outcome::E508
                } else {
                    Outcome::Failure
                }))
            }
        }
    }
}

fn method(step: Step) -> Method {
    match step {
        Step::Release => Method::REFRESH,
        _ => Method::ALLOCATE,
    }
}

/// Runs alloc-rate.
pub fn run(args: &Args) -> io::Result<Report> {
    let clock = Instant::now();
    let ns = || clock.elapsed().as_nanos() as u64;
    let mut run = Run {
        args,
        creds: Credentials::rest(&args.secret, "load"),
        tids: Tids::new(),
        out: Vec::with_capacity(512),
        next_port: args.client_ports.0,
        epoll: Epoll::new()?,
    };
    let mut slots: Vec<Slot> = (0..args.concurrency)
        .map(|_| Slot {
            sock: None,
            step: Step::Idle,
            tid: [0; 12],
            deadline: u64::MAX,
            started: 0,
            auth: None,
            retries: 0,
        })
        .collect();
    let begin = ns() + (args.warmup * 1e9) as u64;
    let end = begin + (args.duration * 1e9) as u64;
    let drain_end = end + args.drain_ms * 1_000_000;
    let seconds = args.duration.ceil() as usize;
    let mut per_second = vec![(0u64, 0u64, 0u64); seconds.max(1)];
    let mut hist = Histogram::new();
    let (mut started, mut real_end) = (0u64, end);
    let (mut cpu0, mut own0) = (None, 0.0);
    let (mut cpu1, mut own1) = (None, 0.0);
    let mut measuring = false;
    let mut ready = Vec::with_capacity(256);
    let mut rx = vec![0u8; 2048];
    let (mut ok, mut failures, mut e508) = (0u64, 0u64, 0u64);

    loop {
        let now = ns();
        if !measuring && now >= begin && real_end == end {
            measuring = true;
            cpu0 = args.server_pid.and_then(cpu_seconds);
            own0 = cpu_seconds(std::process::id()).unwrap_or(0.0);
        }
        let launching = now < end && started < args.max_allocations;
        if measuring && !launching {
            measuring = false;
            real_end = now;
            cpu1 = args.server_pid.and_then(cpu_seconds);
            own1 = cpu_seconds(std::process::id()).unwrap_or(0.0);
        }
        if !launching && (now >= drain_end || slots.iter().all(|s| s.step == Step::Idle)) {
            break;
        }
        let mut record = |o: Outcome, slot: &Slot, now: u64| {
            if !(measuring && now >= begin) {
                return;
            }
            let sec =
                &mut per_second[(((now - begin) / 1_000_000_000) as usize).min(seconds.max(1) - 1)];
            match o {
                Outcome::Ok => {
                    ok += 1;
                    sec.0 += 1;
                    hist.record(now - slot.started);
                }
                Outcome::Failure => {
                    failures += 1;
                    sec.1 += 1;
                }
                Outcome::E508 => {
                    e508 += 1;
                    sec.2 += 1;
                }
            }
        };
        for (k, slot) in slots.iter_mut().enumerate() {
            if slot.step != Step::Idle && now >= slot.deadline {
                record(Outcome::Failure, slot, now);
                slot.step = Step::Idle;
            }
            if slot.step == Step::Idle && launching && started < args.max_allocations {
                started += 1;
                run.start(slot, k as u64, now)?;
            }
        }
        run.epoll.wait(&mut ready, Duration::from_millis(2))?;
        for token in ready.iter().map(|r| r.token()) {
            let slot = &mut slots[token as usize];
            while let Some(sock) = slot.sock.as_ref() {
                let n = match sock.recv_from(&mut rx) {
                    Ok((n, _)) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => break,
                    Err(e) => return Err(e),
                };
                let Some(r) = parse_response(&rx[..n]) else {
                    continue;
                };
                if r.tid != slot.tid || slot.step == Step::Idle {
                    continue;
                }
                let now = ns();
                if let Some(o) = run.on_response(slot, &r, now)? {
                    record(o, slot, now);
                }
            }
        }
    }
    let secs = (real_end.saturating_sub(begin)) as f64 / 1e9;
    let full = ((secs.floor() as usize).max(1)).min(per_second.len());
    per_second.truncate(full);
    Ok(Report {
        label: args.label.clone(),
        target: "turn".into(),
        transport: "udp".into(),
        mode: "alloc-rate".into(),
        sessions: args.concurrency,
        size: 0,
        seconds: secs,
        latency_us: [0.5, 0.99, 0.999].map(|q| hist.quantile(q) as f64 / 1e3),
        server_cpu: cpu0.zip(cpu1).map(|(a, b)| b - a),
        generator_cpu: own1 - own0,
        failures,
        allocations: ok,
        e508,
        per_second,
        ..Report::default()
    })
}
