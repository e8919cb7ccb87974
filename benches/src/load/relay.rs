//! The data-path modes (closed, open, c2c): set up sessions, then relay timestamped packets
//! through the server to echo peers (or to the partner allocation) on one epoll thread.
//!
//! Each session sends from its own socket; `--shape` decides whether a session's queued
//! datagrams leave as separate messages of one `sendmmsg` (browser) or as UDP GSO bursts.
//!
//! Payload layout: bytes 0..4 the session index, 4..12 the send time in nanoseconds since the
//! generator started (little endian), then filler up to `--size`.

use std::io;
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use super::hist::Histogram;
use super::net::bind_udp;
use super::stun::{self, Credentials, Tids, TurnClient};
use super::sys::{precise_timers, raise_nofile_limit, Epoll, Interest, RecvBatch, SendBatch};
use super::window::Window;
use super::{bare, Args, Mode, Report, Shape, Target};

const BATCH: usize = 64;
const PEER_TOKEN: u64 = 1 << 32;
const STALE_NS: u64 = 300_000_000;

#[derive(PartialEq, Eq, Clone, Copy)]
enum Role {
    /// Sends timestamped packets and measures round trips.
    Initiator,
    /// c2c only: sends back what it receives.
    Echo,
}

struct Endpoint {
    sock: UdpSocket,
    index: u32,
    role: Role,
    /// Where data goes on the wire: the server (channel or Send indication).
    server: SocketAddrV4,
    channel: u16,
    /// Send indications instead of ChannelData (`--data-path`).
    indication: bool,
    /// The peer the Send indications name.
    peer: SocketAddrV4,
    inflight: u32,
    last_rx: u64,
    out: SendBatch,
}

#[derive(Default, Clone, Copy)]
struct Counters {
    /// Data packets the clients sent (both roles).
    tx: u64,
    peer_rx: u64,
    peer_tx: u64,
    /// Data packets the clients received (both roles).
    rx: u64,
    round_trips: u64,
    drops: u64,
}

/// Runs closed, open or c2c.
pub fn run(args: &Args) -> io::Result<Report> {
    let clock = Instant::now();
    let ns = || clock.elapsed().as_nanos() as u64;
    let lo = args.peer_ip;
    // A socket per session and per peer, plus a few.
    let fds = (args.sessions + usize::from(args.peers) + 64) as u64;
    if raise_nofile_limit(fds) < fds {
        return Err(io::Error::other(format!(
            "need {fds} open files (RLIMIT_NOFILE): raise ulimit -n"
        )));
    }
    let peers: Vec<UdpSocket> = (0..args.peers)
        .map(|j| bind_udp(SocketAddrV4::new(lo, args.peer_port + j)))
        .collect::<io::Result<_>>()?;
    let peer_addr = |i: usize| SocketAddrV4::new(lo, args.peer_port + (i % peers.len()) as u16);
    let (mut eps, failures) = set_up(args, &peer_addr)?;
    if eps.is_empty() {
        return Err(io::Error::other("no session could be set up"));
    }

    let mut epoll = Epoll::new()?;
    for (k, ep) in eps.iter().enumerate() {
        epoll.add(&ep.sock, k as u64, Interest::READABLE)?;
    }
    for (j, p) in peers.iter().enumerate() {
        epoll.add(p, PEER_TOKEN + j as u64, Interest::READABLE)?;
    }
    let mut rb = RecvBatch::new(BATCH, 2048, 0);
    let mut ready = Vec::with_capacity(256);
    let mut hist = Histogram::new();
    let mut c = Counters::default();
    let mut tx = Tx {
        payload: vec![0xAB; args.size],
        scratch: Vec::with_capacity(args.size + 64),
        tids: Tids::new(),
    };
    let mut window = Window::new(args, ns());
    let open = args.mode == Mode::Open;
    if open {
        precise_timers();
    }
    let initiators: Vec<usize> = (0..eps.len())
        .filter(|&k| eps[k].role == Role::Initiator)
        .collect();
    let (mut paced, mut rr, send_start, mut next_sweep) = (0u64, 0usize, ns(), 0u64);
    // Open loop: the sessions with datagrams queued since the last flush.
    let mut queued: Vec<usize> = Vec::with_capacity(initiators.len());
    if !open {
        let now = ns();
        for &k in &initiators {
            refill(&mut eps[k], args, &mut tx, &mut c, now)?;
        }
    }

    loop {
        let now = ns();
        if !window.tick(now, &c, c.tx) {
            break;
        }
        let sending = !window.ended() && c.tx < args.max_packets;
        if sending && open {
            let target =
                (u128::from(args.rate) * u128::from(now - send_start) / 1_000_000_000) as u64;
            let deficit = target
                .saturating_sub(paced)
                .min((BATCH * initiators.len()) as u64);
            for _ in 0..deficit {
                let k = initiators[rr % initiators.len()];
                rr += 1;
                let ep = &mut eps[k];
                if ep.out.is_full() {
                    c.drops += flush(ep)?;
                }
                if ep.out.is_empty() {
                    queued.push(k);
                }
                tx.push(ep, now);
                c.tx += 1;
            }
            paced += deficit;
            for &k in &queued {
                c.drops += flush(&mut eps[k])?;
            }
            queued.clear();
        }
        if sending && !open && now >= next_sweep {
            next_sweep = now + 50_000_000;
            for &k in &initiators {
                let ep = &mut eps[k];
                if ep.inflight > 0 && now.saturating_sub(ep.last_rx) > STALE_NS {
                    ep.inflight = 0;
                    ep.last_rx = now;
                }
                refill(ep, args, &mut tx, &mut c, now)?;
            }
        }
        // Open loop: wake up when the next packet is due (each one on time, not a
        // millisecond's worth at once); otherwise at least every millisecond.
        let wait = if sending && open {
            let due = send_start
                + ((u128::from(paced) + 1) * 1_000_000_000).div_ceil(u128::from(args.rate.max(1)))
                    as u64;
            due.saturating_sub(ns()).min(1_000_000)
        } else {
            1_000_000
        };
        epoll.wait_precise(&mut ready, Duration::from_nanos(wait))?;
        for token in ready.iter().map(|r| r.token()) {
            if token >= PEER_TOKEN {
                let fd = peers[(token - PEER_TOKEN) as usize].as_fd();
                loop {
                    let n = rb.recv(fd)?;
                    if n == 0 {
                        break;
                    }
                    c.peer_rx += n as u64;
                    let sent = rb.echo(fd)?;
                    c.peer_tx += sent as u64;
                    c.drops += (n - sent) as u64;
                    if n < BATCH {
                        break;
                    }
                }
                continue;
            }
            let ep = &mut eps[token as usize];
            loop {
                let n = rb.recv(&ep.sock)?;
                if n == 0 {
                    break;
                }
                let now = ns();
                for i in 0..n {
                    let Some(payload) = payload_of(rb.get(i).0) else {
                        continue;
                    };
                    if payload.len() < 12 {
                        continue;
                    }
                    c.rx += 1;
                    ep.last_rx = now;
                    if ep.role == Role::Echo {
                        if ep.out.is_full() {
                            c.drops += flush(ep)?;
                        }
                        tx.push_echo(ep, payload);
                        c.tx += 1;
                        continue;
                    }
                    c.round_trips += 1;
                    ep.inflight = ep.inflight.saturating_sub(1);
                    let sent_at = u64::from_le_bytes(payload[4..12].try_into().unwrap());
                    if window.measuring() && sent_at <= now {
                        hist.record(now - sent_at);
                    }
                }
                if n < BATCH {
                    break;
                }
            }
            if ep.role == Role::Initiator && !open && !window.ended() {
                refill(ep, args, &mut tx, &mut c, ns())?;
            } else {
                c.drops += flush(ep)?;
            }
        }
    }

    let m = window.finish();
    let (b, e) = (&m.begin, &m.end);
    let d = |f: fn(&Counters) -> u64| f(&e.counters) - f(&b.counters);
    let c2c = args.mode == Mode::C2c;
    let relayed = if c2c {
        2 * d(|c| c.rx)
    } else {
        d(|c| c.peer_rx) + d(|c| c.rx)
    };
    let (sent, received) = if c2c {
        (c.tx, c.rx)
    } else {
        (c.tx + c.peer_tx, c.peer_rx + c.rx)
    };
    Ok(Report {
        label: args.label.clone(),
        target: format!("{:?}", args.target).to_lowercase(),
        transport: "udp".into(),
        mode: mode_name(args.mode).into(),
        shape: shape_name(args.shape).into(),
        data_path: format!("{:?}", args.data_path).to_lowercase(),
        peers: usize::from(args.peers),
        sessions: eps.len(),
        size: args.size,
        seconds: (e.at - b.at) as f64 / 1e9,
        round_trips: d(|c| c.round_trips),
        relayed,
        sent,
        received,
        generator_drops: c.drops,
        latency_us: [0.5, 0.99, 0.999].map(|q| hist.quantile(q) as f64 / 1e3),
        server_cpu: m.server_cpu,
        generator_cpu: m.generator_cpu,
        other_cpu: m.other_cpu,
        stat_cpu: m.stat_cpu,
        failures,
        ..Report::default()
    })
}

/// The name used in reports and on the command line.
pub fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Closed => "closed",
        Mode::Open => "open",
        Mode::AllocRate => "alloc-rate",
        Mode::C2c => "c2c",
        Mode::Hold => "hold",
    }
}

/// The name used in reports and on the command line.
pub fn shape_name(s: Shape) -> &'static str {
    match s {
        Shape::Browser => "browser",
        Shape::Bursty => "bursty",
    }
}

/// The payload of a ChannelData message (or the bare framing) or of a Data indication.
fn payload_of(b: &[u8]) -> Option<&[u8]> {
    if b.len() >= 4 && b[0] & 0xC0 == 0x40 {
        let len = usize::from(u16::from_be_bytes([b[2], b[3]]));
        return b.get(4..4 + len);
    }
    stun::data_indication(b)
}

fn flush(ep: &mut Endpoint) -> io::Result<u64> {
    if ep.out.is_empty() {
        return Ok(0);
    }
    let n = ep.out.len();
    let sent = ep.out.flush(&ep.sock)?;
    Ok((n - sent) as u64)
}

fn refill(
    ep: &mut Endpoint,
    args: &Args,
    tx: &mut Tx,
    c: &mut Counters,
    now: u64,
) -> io::Result<()> {
    while ep.inflight < args.window && c.tx < args.max_packets {
        if ep.out.is_full() {
            c.drops += flush(ep)?;
        }
        tx.push(ep, now);
        ep.inflight += 1;
        c.tx += 1;
    }
    c.drops += flush(ep)?;
    Ok(())
}

/// Builds outgoing data packets.
struct Tx {
    payload: Vec<u8>,
    scratch: Vec<u8>,
    tids: Tids,
}

impl Tx {
    fn push(&mut self, ep: &mut Endpoint, now: u64) {
        self.payload[..4].copy_from_slice(&ep.index.to_le_bytes());
        self.payload[4..12].copy_from_slice(&now.to_le_bytes());
        let payload = std::mem::take(&mut self.payload);
        self.push_echo(ep, &payload);
        self.payload = payload;
    }

    fn push_echo(&mut self, ep: &mut Endpoint, payload: &[u8]) {
        if ep.indication {
            stun::send_indication(&mut self.scratch, self.tids.next_tid(), ep.peer, payload);
            ep.out.push(ep.server, &self.scratch);
            return;
        }
        let ch = ep.channel;
        ep.out.push_with(ep.server, |b| {
            b[..2].copy_from_slice(&ch.to_be_bytes());
            b[2..4].copy_from_slice(&(payload.len() as u16).to_be_bytes());
            b[4..4 + payload.len()].copy_from_slice(payload);
            4 + payload.len()
        });
    }
}

type PeerOf<'a> = dyn Fn(usize) -> SocketAddrV4 + 'a;

/// Binds the client sockets and sets up every session; returns them and how many failed.
fn set_up(args: &Args, peer_of: &PeerOf) -> io::Result<(Vec<Endpoint>, u64)> {
    let lo = args.client_ip;
    let creds = Credentials::rest(&args.secret, "load");
    let mut socks = Vec::with_capacity(args.sessions);
    for i in 0..args.sessions {
        socks.push(bind_udp(SocketAddrV4::new(
            lo,
            args.client_ports.0 + i as u16,
        ))?);
    }
    // A session's queue holds a window (closed) or what one wake-up paces out (open); GSO
    // only in the bursty shape.
    let cap = (args.window as usize).clamp(1, BATCH);
    let gso = args.shape == Shape::Bursty;
    let new_ep = |sock, i: usize, role, channel| Endpoint {
        sock,
        index: i as u32,
        role,
        server: args.server,
        channel,
        indication: args.mode != Mode::C2c && args.data_path.indications_for(i),
        peer: peer_of(i),
        inflight: 0,
        last_rx: 0,
        out: SendBatch::new(cap, args.size + 128, gso),
    };
    let mut eps = Vec::new();
    let mut failures = 0;
    let channel = |i: usize| 0x4000 + (i % 0x1000) as u16;
    if args.mode == Mode::C2c {
        // Allocate everything, then bind each pair's channels to each other's relayed address.
        let mut relayed = Vec::new();
        let mut clients = Vec::new();
        for s in &socks {
            let mut cl = TurnClient::new(s, args.server, creds.clone());
            relayed.push(cl.allocate());
            clients.push(cl);
        }
        let mut ok = vec![false; socks.len()];
        for pair in 0..socks.len() / 2 {
            let (a, b) = (2 * pair, 2 * pair + 1);
            let (Ok(ra), Ok(rb)) = (&relayed[a], &relayed[b]) else {
                failures += 2;
                continue;
            };
            let (ra, rb) = (*ra, *rb);
            let ra_ok = clients[a]
                .create_permission(rb)
                .and_then(|_| clients[a].channel_bind(channel(a), rb));
            let rb_ok = clients[b]
                .create_permission(ra)
                .and_then(|_| clients[b].channel_bind(channel(b), ra));
            match (ra_ok, rb_ok) {
                (Ok(()), Ok(())) => {
                    ok[a] = true;
                    ok[b] = true;
                }
                (x, y) => {
                    eprintln!("c2c pair {pair}: {x:?} {y:?}");
                    failures += 2;
                }
            }
        }
        drop(clients);
        for (i, s) in socks.into_iter().enumerate() {
            if ok[i] {
                let role = if i % 2 == 0 {
                    Role::Initiator
                } else {
                    Role::Echo
                };
                eps.push(new_ep(s, i, role, channel(i)));
            }
        }
        return Ok((eps, failures));
    }
    for (i, s) in socks.into_iter().enumerate() {
        let peer = peer_of(i);
        let r = match args.target {
            Target::Bare => bare::handshake(&s, args.server, peer).map(drop),
            Target::Turn => {
                let mut cl = TurnClient::new(&s, args.server, creds.clone());
                cl.allocate()
                    .and_then(|_| cl.create_permission(peer))
                    .and_then(|_| {
                        if args.data_path.indications_for(i) {
                            Ok(())
                        } else {
                            cl.channel_bind(channel(i), peer)
                        }
                    })
            }
        };
        match r {
            Ok(()) => eps.push(new_ep(s, i, Role::Initiator, channel(i))),
            Err(e) => {
                eprintln!("session {i}: set-up failed: {e}");
                failures += 1;
            }
        }
    }
    // Let stray set-up traffic settle so it is not counted as data.
    std::thread::sleep(Duration::from_millis(20));
    Ok((eps, failures))
}
