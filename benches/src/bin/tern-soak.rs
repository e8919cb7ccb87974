//! `tern-soak`: a bounded soak of a running tern on loopback, in rounds. Each round runs, at
//! once and for `--round-seconds`:
//!
//! - allocation churn: Allocate (401, signed) and Refresh 0 on a new 5-tuple, back to back;
//! - a steady relay load: `--relay-sessions` allocations sending ChannelData at
//!   `--relay-rate` packets per second in all to an echo peer, refreshed (allocation and
//!   channel) every 5 s;
//! - refresh, permission and channel churn: allocations that refresh, permit a new peer and
//!   bind a new channel on every step, and start over on a new allocation after 60 channels;
//! - SIGHUP to tern every 3 s (a live reload);
//! - a burst of 2,000 garbage datagrams (random bytes, STUN-like and ChannelData-like
//!   headers) every 2 s, to the listening port and to relay ports;
//! - every 15 s, the pool exhausted: allocations until a 508, held 1 s, released.
//!
//! Then every client stops; allocations still open are abandoned and must expire (run tern
//! with a short `max-allocate-lifetime`). The round settles when tern's allocation gauges are
//! 0, `tern_relay_ports_free` is back to its value before the soak and the open file count
//! to within 4 of it, and `--quiet-seconds` have passed (so that the server's timers of ended
//! allocations, permissions and channels have fired); `--settle-seconds` bounds the wait. Resident memory is compared between
//! settled rounds: the last may exceed the first by at most `--rss-tolerance-kib` (the
//! first round grows the allocator's caches and the allocation table to their working size;
//! a leak grows every round). Every second a CSV row (`--csv`) records RSS, open files,
//! free relay ports and allocations. Exit status 0 only if every check held.
//!
//! Every address is on loopback; every loop is bounded by the round's deadline.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::Parser;
use tern_bench::load::net::{is_loopback, parse_port_range};
use tern_bench::load::stun::{Credentials, TurnClient};
use tern_bench::load::sys::vm_rss_kib;
use tern_wire::{attr, Method};

#[derive(Parser, Debug)]
#[command(about = "A bounded soak of a running tern on loopback (see the source's header).")]
struct Args {
    /// tern's UDP listening address.
    #[arg(long)]
    server: SocketAddrV4,
    /// tern's admin address (/metrics).
    #[arg(long)]
    admin: SocketAddrV4,
    /// tern's process id (RSS, open files, SIGHUP).
    #[arg(long)]
    pid: u32,
    /// The REST shared secret.
    #[arg(long)]
    secret: String,
    /// tern's relay ports, A-B (garbage goes to them too).
    #[arg(long, value_parser = parse_port_range)]
    relay_ports: (u16, u16),
    /// Rounds of load, each followed by a settle.
    #[arg(long, default_value_t = 2)]
    rounds: u32,
    /// Seconds of load per round.
    #[arg(long, default_value_t = 40.0)]
    round_seconds: f64,
    /// Longest wait for a round to settle (allocation lifetime + some).
    #[arg(long, default_value_t = 40.0)]
    settle_seconds: f64,
    /// Least time a settle waits, so that the server's timers of ended allocations,
    /// permissions and channels have all fired (their lifetime + a little).
    #[arg(long, default_value_t = 0.0)]
    quiet_seconds: f64,
    /// ChannelData packets per second of the steady relay load, all sessions together.
    #[arg(long, default_value_t = 2_000)]
    relay_rate: u64,
    /// Allocations of the steady relay load.
    #[arg(long, default_value_t = 16)]
    relay_sessions: usize,
    /// How much more resident memory the last settled round may hold than the first.
    #[arg(long, default_value_t = 8 * 1024)]
    rss_tolerance_kib: u64,
    /// The parts of the load to run (comma-separated: churn, relay, channels, hup, garbage,
    /// exhaust), to find which one a failure comes from.
    #[arg(
        long,
        default_value = "churn,relay,channels,hup,garbage,exhaust",
        value_delimiter = ','
    )]
    parts: Vec<String>,
    /// Where to write the per-second samples.
    #[arg(long)]
    csv: Option<std::path::PathBuf>,
}

/// One reading of the server.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    rss_kib: u64,
    fds: u64,
    ports_free: u64,
    allocations: u64,
}

fn metrics(admin: SocketAddrV4) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&admin.into(), Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {admin}\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    Ok(text)
}

fn sample(args: &Args) -> Sample {
    let text = metrics(args.admin).unwrap_or_default();
    let sum = |prefix: &str| -> u64 {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    Sample {
        rss_kib: vm_rss_kib(args.pid).unwrap_or(0),
        fds: std::fs::read_dir(format!("/proc/{}/fd", args.pid)).map_or(0, |d| d.count() as u64),
        // One series, or one per family (`{family="ipv4"}`).
        ports_free: sum("tern_relay_ports_free ") + sum("tern_relay_ports_free{"),
        allocations: sum("tern_allocations{"),
    }
}

/// What the load did in one round.
#[derive(Default)]
struct Counts {
    churn_cycles: AtomicU64,
    churn_errors: AtomicU64,
    relay_sent: AtomicU64,
    relay_received: AtomicU64,
    relay_errors: AtomicU64,
    channel_steps: AtomicU64,
    channel_errors: AtomicU64,
    reloads: AtomicU64,
    garbage: AtomicU64,
    exhaustions: AtomicU64,
    exhaustion_held: AtomicU64,
    exhaustion_errors: AtomicU64,
    /// The first error of each kind of client, for the report.
    first_errors: Mutex<Vec<String>>,
}

impl Counts {
    fn failed(&self, counter: &AtomicU64, what: &str, e: &std::io::Error) {
        if counter.fetch_add(1, Relaxed) == 0 {
            self.first_errors
                .lock()
                .unwrap()
                .push(format!("{what}: {e}"));
        }
    }
}

/// xorshift64*: the garbage needs variety, not quality.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn client_socket() -> std::io::Result<UdpSocket> {
    let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    s.set_nonblocking(true)?;
    Ok(s)
}

fn creds(args: &Args, name: &str) -> Credentials {
    Credentials::rest(&args.secret, name)
}

/// Allocate and release on a fresh 5-tuple, back to back.
fn churn(args: &Args, stop: &AtomicBool, c: &Counts) {
    while !stop.load(Relaxed) {
        let ok = client_socket().and_then(|sock| {
            let mut t = TurnClient::new(&sock, args.server, creds(args, "soak-churn"));
            t.allocate()?;
            t.refresh(0)
        });
        match ok {
            Ok(()) => {
                c.churn_cycles.fetch_add(1, Relaxed);
            }
            Err(e) => {
                // 508 while the pool is exhausted, mostly; try again shortly.
                c.failed(&c.churn_errors, "allocation churn", &e);
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// An echo peer: sends every datagram back to where it came from.
fn echo(sock: &UdpSocket, stop: &AtomicBool) {
    let mut buf = [0u8; 2048];
    while !stop.load(Relaxed) {
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                let _ = sock.send_to(&buf[..n], from);
            }
            Err(_) => std::thread::sleep(Duration::from_micros(200)),
        }
    }
}

/// Steady relay: ChannelData to the echo peer at a fixed total rate, evenly paced.
fn relay(args: &Args, peer: SocketAddrV4, stop: &AtomicBool, c: &Counts) -> std::io::Result<()> {
    let sessions = (0..args.relay_sessions)
        .map(|_| client_socket())
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut clients: Vec<TurnClient<'_>> = sessions
        .iter()
        .map(|s| TurnClient::new(s, args.server, creds(args, "soak-relay")))
        .collect();
    for t in &mut clients {
        t.allocate()?;
        t.channel_bind(0x4000, peer)?;
    }
    let gap = Duration::from_secs_f64(1.0 / args.relay_rate as f64);
    let start = Instant::now();
    let mut next_refresh = start + Duration::from_secs(5);
    let mut sent = 0u64;
    let mut frame = [0u8; 4 + 160];
    frame[..4].copy_from_slice(&[0x40, 0x00, 0, 160]);
    let mut buf = [0u8; 2048];
    while !stop.load(Relaxed) {
        let due = (start.elapsed().as_secs_f64() / gap.as_secs_f64()) as u64;
        while sent < due {
            let s = &sessions[sent as usize % sessions.len()];
            frame[4..12].copy_from_slice(&sent.to_be_bytes());
            if s.send_to(&frame, args.server).is_ok() {
                c.relay_sent.fetch_add(1, Relaxed);
            }
            sent += 1;
        }
        for s in &sessions {
            while let Ok((n, _)) = s.recv_from(&mut buf) {
                if n >= 4 && buf[0] == 0x40 {
                    c.relay_received.fetch_add(1, Relaxed);
                }
            }
        }
        if Instant::now() >= next_refresh {
            // Keep them alive under a short max-allocate-lifetime; answers are read by the
            // client (it skips the ChannelData it meets, which the counts then miss).
            // The allocation, the channel and its permission each have their own lifetime
            // (all short here): refresh the allocation, bind the channel again.
            for t in &mut clients {
                if let Err(e) = t.refresh(600).and_then(|()| t.channel_bind(0x4000, peer)) {
                    c.failed(&c.relay_errors, "relay load, refresh", &e);
                }
            }
            next_refresh += Duration::from_secs(5);
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    // Abandoned: these allocations must expire on their own.
    Ok(())
}

/// Channels (and permissions) one churned allocation gets before it is released: under tern's
/// cap of 64 of each per allocation (a 65th gets 508).
const CHANNELS_PER_ALLOCATION: u16 = 60;

/// Refresh, permission and channel churn on a few allocations.
fn channels(args: &Args, worker: u16, stop: &AtomicBool, c: &Counts) {
    let mut k: u16 = 0;
    while !stop.load(Relaxed) {
        let Ok(sock) = client_socket() else { return };
        let mut t = TurnClient::new(&sock, args.server, creds(args, "soak-channels"));
        if let Err(e) = t.allocate() {
            c.failed(&c.channel_errors, "channel churn, allocate", &e);
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        for n in 0..CHANNELS_PER_ALLOCATION {
            if stop.load(Relaxed) {
                return; // abandoned: expires on its own
            }
            k = k.wrapping_add(1);
            let peer =
                SocketAddrV4::new(Ipv4Addr::new(127, 0, 3, worker as u8), 10_000 + k % 20_000);
            let step = t
                .refresh(600)
                .and_then(|()| t.create_permission(peer))
                .and_then(|()| t.channel_bind(0x4000 + n, peer));
            match step {
                Ok(()) => {
                    c.channel_steps.fetch_add(1, Relaxed);
                }
                Err(e) => c.failed(&c.channel_errors, "channel churn", &e),
            }
        }
        let _ = t.refresh(0);
    }
}

fn sighup(pid: u32, stop: &AtomicBool, c: &Counts) {
    let mut next = Instant::now() + Duration::from_secs(3);
    while !stop.load(Relaxed) {
        if Instant::now() >= next {
            // SAFETY: kill(2) with a pid the caller gave and a valid signal number has no
            // memory-safety preconditions.
            if unsafe { libc::kill(pid as libc::pid_t, libc::SIGHUP) } == 0 {
                c.reloads.fetch_add(1, Relaxed);
            }
            next += Duration::from_secs(3);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn garbage(args: &Args, stop: &AtomicBool, c: &Counts) {
    let Ok(sock) = client_socket() else { return };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id()));
    let (lo, hi) = args.relay_ports;
    let mut buf = [0u8; 1500];
    let mut next = Instant::now();
    while !stop.load(Relaxed) {
        if Instant::now() < next {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        for _ in 0..2_000 {
            let len = (rng.next() % 1_500) as usize;
            for b in buf[..len].iter_mut() {
                *b = rng.next() as u8;
            }
            match rng.next() % 3 {
                // STUN-like: top bits 00, the magic cookie, a length that may lie.
                0 if len >= 20 => {
                    buf[0] &= 0x01;
                    buf[4..8].copy_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
                }
                // ChannelData-like: top bits 01.
                1 if len >= 4 => buf[0] = 0x40 | (buf[0] & 0x3f),
                _ => {}
            }
            let to = if rng.next().is_multiple_of(2) {
                args.server
            } else {
                SocketAddrV4::new(
                    Ipv4Addr::LOCALHOST,
                    lo + (rng.next() % u64::from(hi - lo + 1)) as u16,
                )
            };
            if sock.send_to(&buf[..len], to).is_ok() {
                c.garbage.fetch_add(1, Relaxed);
            }
        }
        next += Duration::from_secs(2);
    }
}

/// Every 15 s: allocations until a 508 (at most the pool size + 16), held 1 s, released.
fn exhaust(args: &Args, stop: &AtomicBool, c: &Counts) {
    let pool = usize::from(args.relay_ports.1 - args.relay_ports.0) + 1;
    let mut next = Instant::now() + Duration::from_secs(5);
    while !stop.load(Relaxed) {
        if Instant::now() < next {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        next += Duration::from_secs(15);
        let socks: Vec<UdpSocket> = (0..pool + 16)
            .filter_map(|_| client_socket().ok())
            .collect();
        let mut held = Vec::new();
        let mut saw_508 = false;
        for s in &socks {
            let mut t = TurnClient::new(s, args.server, creds(args, "soak-exhaust"));
            let r = t.transact(Method::ALLOCATE, &|w| {
                w.attr(attr::REQUESTED_TRANSPORT, &[attr::TRANSPORT_UDP, 0, 0, 0]);
            });
            match r {
                Ok(r) if r.success => held.push(t),
                Ok(r) if r.code == Some(508) => {
                    saw_508 = true;
                    break;
                }
                Ok(r) => c.failed(
                    &c.exhaustion_errors,
                    "exhaustion",
                    &std::io::Error::other(format!("Allocate: error {:?}", r.code)),
                ),
                Err(e) => c.failed(&c.exhaustion_errors, "exhaustion", &e),
            }
        }
        if saw_508 {
            c.exhaustions.fetch_add(1, Relaxed);
        }
        c.exhaustion_held.fetch_add(held.len() as u64, Relaxed);
        std::thread::sleep(Duration::from_secs(1));
        for t in &mut held {
            if let Err(e) = t.refresh(0) {
                c.failed(&c.exhaustion_errors, "exhaustion, release", &e);
            }
        }
    }
}

fn sampler(
    args: &Args,
    stop: &AtomicBool,
    phase: &Mutex<String>,
    csv: &Mutex<Vec<String>>,
    t0: Instant,
) {
    while !stop.load(Relaxed) {
        let s = sample(args);
        let p = phase.lock().unwrap().clone();
        csv.lock().unwrap().push(format!(
            "{:.1},{p},{},{},{},{}",
            t0.elapsed().as_secs_f64(),
            s.rss_kib,
            s.fds,
            s.ports_free,
            s.allocations
        ));
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn round(args: &Args, peer: &UdpSocket) -> Counts {
    let counts = Counts::default();
    let stop = AtomicBool::new(false);
    let peer_addr = match peer.local_addr() {
        Ok(SocketAddr::V4(a)) => a,
        _ => unreachable!("bound to 127.0.0.1"),
    };
    let on = |part: &str| args.parts.iter().any(|p| p == part);
    std::thread::scope(|s| {
        s.spawn(|| echo(peer, &stop));
        if on("churn") {
            s.spawn(|| churn(args, &stop, &counts));
        }
        if on("relay") {
            s.spawn(|| {
                if let Err(e) = relay(args, peer_addr, &stop, &counts) {
                    eprintln!("relay load could not start: {e}");
                }
            });
        }
        if on("channels") {
            for w in 0..4 {
                let (stop, counts) = (&stop, &counts);
                s.spawn(move || channels(args, w, stop, counts));
            }
        }
        if on("hup") {
            s.spawn(|| sighup(args.pid, &stop, &counts));
        }
        if on("garbage") {
            s.spawn(|| garbage(args, &stop, &counts));
        }
        if on("exhaust") {
            s.spawn(|| exhaust(args, &stop, &counts));
        }
        std::thread::sleep(Duration::from_secs_f64(args.round_seconds));
        stop.store(true, Relaxed);
    });
    counts
}

/// Waits until the allocations are gone, the pool and the open files are back to `base`.
fn settle(args: &Args, base: Sample) -> (Sample, f64, bool) {
    let start = Instant::now();
    loop {
        let s = sample(args);
        let settled = s.allocations == 0
            && s.ports_free == base.ports_free
            && s.fds <= base.fds + 4
            && start.elapsed().as_secs_f64() >= args.quiet_seconds;
        if settled || start.elapsed().as_secs_f64() > args.settle_seconds {
            return (s, start.elapsed().as_secs_f64(), settled);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        is_loopback(args.server) && is_loopback(args.admin),
        "--server and --admin must be loopback addresses"
    );
    anyhow::ensure!(
        args.rounds >= 1 && args.round_seconds > 0.0 && args.round_seconds <= 3_600.0,
        "--rounds at least 1, --round-seconds in (0, 3600]"
    );
    let peer = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    peer.set_nonblocking(true)?;
    let base = sample(&args);
    anyhow::ensure!(
        base.rss_kib > 0 && base.ports_free > 0,
        "cannot read tern (pid {}, admin {}): {base:?}",
        args.pid,
        args.admin
    );
    println!(
        "baseline: RSS {} KiB, {} open files, {} relay ports free, {} allocations",
        base.rss_kib, base.fds, base.ports_free, base.allocations
    );
    let t0 = Instant::now();
    let phase = Mutex::new("baseline".to_owned());
    let csv = Mutex::new(vec![
        "seconds,phase,rss_kib,open_files,relay_ports_free,allocations".to_owned(),
    ]);
    let stop_sampler = AtomicBool::new(false);
    let mut failures = Vec::new();
    let mut settled_rss = Vec::new();
    let mut peak = Sample::default();
    std::thread::scope(|s| {
        s.spawn(|| sampler(&args, &stop_sampler, &phase, &csv, t0));
        for r in 1..=args.rounds {
            *phase.lock().unwrap() = format!("load{r}");
            let c = round(&args, &peer);
            let during = sample(&args);
            peak.rss_kib = peak.rss_kib.max(during.rss_kib);
            peak.fds = peak.fds.max(during.fds);
            *phase.lock().unwrap() = format!("settle{r}");
            let (after, waited, ok) = settle(&args, base);
            let g = |a: &AtomicU64| a.load(Relaxed);
            println!(
                "round {r}: {} allocate/release cycles ({} refused or failed), relay {} sent / {} back ({} refreshes failed), \
                 {} refresh+permission+channel steps ({} failed), {} reloads, {} garbage datagrams, \
                 pool exhausted {} times ({} allocations held, {} errors); at the end of the load: RSS {} KiB, \
                 {} open files, {} ports free, {} allocations; settled after {waited:.1} s: RSS {} KiB, {} open \
                 files, {} ports free, {} allocations",
                g(&c.churn_cycles), g(&c.churn_errors), g(&c.relay_sent), g(&c.relay_received),
                g(&c.relay_errors), g(&c.channel_steps), g(&c.channel_errors), g(&c.reloads), g(&c.garbage),
                g(&c.exhaustions), g(&c.exhaustion_held), g(&c.exhaustion_errors),
                during.rss_kib, during.fds, during.ports_free, during.allocations,
                after.rss_kib, after.fds, after.ports_free, after.allocations
            );
            for e in c.first_errors.lock().unwrap().iter() {
                println!("  first error of its kind: {e}");
            }
            if !ok {
                failures.push(format!(
                    "round {r} did not settle within {} s: {after:?}, baseline {base:?}",
                    args.settle_seconds
                ));
            }
            let idle = [
                ("churn", &c.churn_cycles),
                ("relay", &c.relay_received),
                ("channels", &c.channel_steps),
                ("hup", &c.reloads),
                ("garbage", &c.garbage),
                ("exhaust", &c.exhaustions),
            ]
            .into_iter()
            .filter(|(part, n)| args.parts.iter().any(|p| p == part) && g(n) == 0)
            .map(|(part, _)| part)
            .collect::<Vec<_>>();
            if !idle.is_empty() {
                failures.push(format!(
                    "round {r}: {idle:?} did nothing (see the counts above)"
                ));
            }
            settled_rss.push(after.rss_kib);
        }
        stop_sampler.store(true, Relaxed);
    });
    if let (Some(first), Some(last)) = (settled_rss.first(), settled_rss.last()) {
        println!(
            "resident memory settled: {} KiB after round 1, {} KiB after round {} ({:+} KiB; tolerance {} KiB); \
             peak {} KiB, baseline {} KiB",
            first, last, settled_rss.len(), *last as i64 - *first as i64, args.rss_tolerance_kib, peak.rss_kib, base.rss_kib
        );
        if *last > first + args.rss_tolerance_kib {
            failures.push(format!(
                "resident memory grew {} KiB from round 1 to round {} (tolerance {} KiB)",
                last - first,
                settled_rss.len(),
                args.rss_tolerance_kib
            ));
        }
    }
    if let Some(path) = &args.csv {
        std::fs::write(path, csv.lock().unwrap().join("\n") + "\n")?;
    }
    if failures.is_empty() {
        println!("PASS");
        Ok(())
    } else {
        for f in &failures {
            println!("FAIL {f}");
        }
        std::process::exit(1);
    }
}
