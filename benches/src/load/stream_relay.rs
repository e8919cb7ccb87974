//! closed and open over TCP or TLS (`--transport tcp|tls`): every session is its own stream
//! connection to the server, set up with [`super::setup`] (Allocate, CreatePermission,
//! ChannelBind unless on Send indications; against the bare forwarder, over TCP only, its
//! hello), then relays timestamped packets to the UDP echo peers and back, on the same epoll
//! thread as the peers.
//!
//! Client to server, a packet is a ChannelData message padded to four bytes (RFC 8656 §12.5),
//! a Send indication, or the bare forwarder's frame (the same shape as padded ChannelData,
//! [`super::bare::push_stream_frame`]). `--shape browser` writes each packet with its own
//! `write` (one TLS record each), as a browser's TURN/TCP does; `--shape bursty` writes a
//! closed session's window with one `write` (coalesced). Server to client, ChannelData or Data
//! indications arrive on the stream and are framed with `tern_wire::stream` (the bare
//! forwarder's frames with [`super::bare::stream_frames`]).
//!
//! The payload layout is [`super::relay`]'s: the session index, the send time, filler.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use tern_wire::stream::{write_channel_data, FrameKind};
use tern_wire::{ChannelData, ChannelNumber};

use super::bare;
use super::conn::Wire;
use super::hist::Histogram;
use super::net::bind_udp;
use super::relay::{mode_name, shape_name};
use super::setup::{interest, Engine, Session, Step};
use super::stun::{self, Tids};
use super::sys::{precise_timers, raise_nofile_limit, RecvBatch};
use super::tls::{negotiated, TlsClient};
use super::window::Window;
use super::{Args, Interest, Mode, Report, Shape, Target, Transport};

const BATCH: usize = 64;
const PEER_TOKEN: u64 = 1 << 32;
const STALE_NS: u64 = 300_000_000;

/// A set-up session relaying data.
struct Ep {
    s: Session,
    index: u32,
    channel: ChannelNumber,
    indication: bool,
    peer: SocketAddrV4,
    inflight: u32,
    last_rx: u64,
    /// Send time of the newest packet back from the peer (out-of-order detection).
    newest: u64,
    /// Whether epoll watches it for room to write.
    watching_writes: bool,
}

#[derive(Default, Clone, Copy)]
struct Counters {
    tx: u64,
    peer_rx: u64,
    peer_tx: u64,
    rx: u64,
    round_trips: u64,
    drops: u64,
    reordered: u64,
}

/// Builds outgoing packets.
struct Tx {
    payload: Vec<u8>,
    scratch: Vec<u8>,
    tids: Tids,
    /// The bare forwarder's frames instead of ChannelData (the channel number is the tag).
    bare: bool,
}

impl Tx {
    /// Queues one timestamped packet on `ep`'s connection; false when the queue is full.
    fn push(&mut self, ep: &mut Ep, now: u64) -> bool {
        self.payload[..4].copy_from_slice(&ep.index.to_le_bytes());
        self.payload[4..12].copy_from_slice(&now.to_le_bytes());
        if ep.indication {
            stun::send_indication(
                &mut self.scratch,
                self.tids.next_tid(),
                ep.peer,
                &self.payload,
            );
            return ep.s.conn.queue(&self.scratch);
        }
        let (channel, payload) = (ep.channel, &self.payload);
        if self.bare {
            let tag = channel.get().to_be_bytes();
            return ep
                .s
                .conn
                .queue_with(|out| bare::push_stream_frame(out, tag, payload));
        }
        ep.s.conn.queue_with(|out| {
            write_channel_data(channel, payload, out);
        })
    }
}

/// Runs closed or open over `--transport tcp|tls`.
pub fn run(args: &Args) -> io::Result<Report> {
    let clock = Instant::now();
    let ns = || clock.elapsed().as_nanos() as u64;
    let lo = Ipv4Addr::LOCALHOST;
    let fds = (args.sessions + usize::from(args.peers) + 64) as u64;
    if raise_nofile_limit(fds) < fds {
        return Err(io::Error::other(format!(
            "need {fds} open files (RLIMIT_NOFILE): raise ulimit -n"
        )));
    }
    let peers: Vec<UdpSocket> = (0..args.peers)
        .map(|j| bind_udp(SocketAddrV4::new(lo, args.peer_port + j)))
        .collect::<io::Result<_>>()?;
    let peer_of = |i: usize| SocketAddrV4::new(lo, args.peer_port + (i % peers.len()) as u16);
    let channel_of =
        |i: usize| ChannelNumber::new(0x4000 + (i % 0x1000) as u16).expect("0x4000..=0x4FFF");
    let tls = match args.transport {
        Transport::Tls => Some(TlsClient::new(
            args.server,
            args.ca.as_deref(),
            args.insecure,
            args.tls12,
        )?),
        _ => None,
    };
    let mut engine = Engine::new(args.server, tls, &args.secret)?;
    let to_bare = args.target == Target::Bare;
    if to_bare {
        engine.wire = Wire::Bare;
    }
    let mut slots: Vec<Option<Session>> = (0..args.sessions).map(|_| None).collect();
    let plan = |i: usize| {
        if to_bare {
            return vec![Step::Hello(peer_of(i))];
        }
        let mut steps = vec![Step::Allocate, Step::Permission(peer_of(i))];
        if !args.data_path.indications_for(i) {
            steps.push(Step::Bind(channel_of(i).get(), peer_of(i)));
        }
        steps
    };
    let outcomes = engine.run(&mut slots, &plan, args.concurrency, true)?;
    let mut failures = 0;
    let mut eps: Vec<Option<Ep>> = Vec::with_capacity(slots.len());
    for (i, (slot, outcome)) in slots.into_iter().zip(outcomes).enumerate() {
        match (slot, outcome) {
            (Some(s), Some(Ok(_))) => eps.push(Some(Ep {
                watching_writes: s.conn.wants_write(),
                s,
                index: i as u32,
                channel: channel_of(i),
                indication: args.data_path.indications_for(i),
                peer: peer_of(i),
                inflight: 0,
                last_rx: 0,
                newest: 0,
            })),
            (_, outcome) => {
                eprintln!(
                    "session {i}: set-up failed: {:?}",
                    outcome.and_then(Result::err)
                );
                failures += 1;
                eps.push(None);
            }
        }
    }
    let tls_session = eps
        .iter()
        .flatten()
        .find_map(|ep| ep.s.conn.tls().map(negotiated))
        .unwrap_or_default();
    if eps.iter().all(Option::is_none) {
        return Err(io::Error::other("no session could be set up"));
    }
    let mut epoll = engine.epoll;
    for (j, p) in peers.iter().enumerate() {
        epoll.add(p, PEER_TOKEN + j as u64, Interest::READABLE)?;
    }
    let live: Vec<usize> = (0..eps.len()).filter(|&k| eps[k].is_some()).collect();
    let mut rb = RecvBatch::new(BATCH, 2048, 0);
    let mut ready = Vec::with_capacity(256);
    let mut hist = Histogram::new();
    let mut c = Counters::default();
    let mut tx = Tx {
        payload: vec![0xAB; args.size],
        scratch: Vec::with_capacity(args.size + 64),
        tids: Tids::new(),
        bare: to_bare,
    };
    let mut window = Window::new(args, ns());
    let open = args.mode == Mode::Open;
    let coalesce = args.shape == Shape::Bursty;
    if open {
        precise_timers();
    }
    let (mut paced, mut rr, send_start, mut next_sweep) = (0u64, 0usize, ns(), 0u64);
    let mut closed_conns = 0u64;

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
                .min((BATCH * live.len()) as u64);
            for _ in 0..deficit {
                let k = live[rr % live.len()];
                rr += 1;
                let Some(ep) = eps[k].as_mut() else { continue };
                // One write per packet (browser shape).
                send_one(ep, &mut tx, &mut c, now)?;
                watch(&epoll, ep, k)?;
            }
            paced += deficit;
        }
        if sending && !open && now >= next_sweep {
            next_sweep = now + 50_000_000;
            for &k in &live {
                let Some(ep) = eps[k].as_mut() else { continue };
                if ep.inflight > 0 && now.saturating_sub(ep.last_rx) > STALE_NS {
                    ep.inflight = 0;
                    ep.last_rx = now;
                }
                refill(ep, args, coalesce, &mut tx, &mut c, now)?;
                watch(&epoll, ep, k)?;
            }
        }
        let wait = if sending && open {
            let due = send_start
                + ((u128::from(paced) + 1) * 1_000_000_000).div_ceil(u128::from(args.rate.max(1)))
                    as u64;
            due.saturating_sub(ns()).min(1_000_000)
        } else {
            1_000_000
        };
        epoll.wait_precise(&mut ready, Duration::from_nanos(wait))?;
        for r in ready.iter() {
            let token = r.token();
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
            let k = token as usize;
            let Some(ep) = eps[k].as_mut() else { continue };
            let now = ns();
            let measuring = window.measuring();
            let (inflight, last_rx, newest) = (&mut ep.inflight, &mut ep.last_rx, &mut ep.newest);
            let mut on_message = |kind: FrameKind, m: &[u8]| {
                let payload = match kind {
                    FrameKind::ChannelData if to_bare => m.get(bare::HEADER_LEN..),
                    FrameKind::ChannelData => ChannelData::parse_rfc5766(m).ok().map(|d| d.payload),
                    FrameKind::Stun => stun::data_indication(m),
                };
                let Some(payload) = payload.filter(|p| p.len() >= 12) else {
                    return;
                };
                c.rx += 1;
                c.round_trips += 1;
                *last_rx = now;
                *inflight = inflight.saturating_sub(1);
                let sent_at = u64::from_le_bytes(payload[4..12].try_into().unwrap());
                if sent_at < *newest {
                    c.reordered += 1;
                }
                *newest = (*newest).max(sent_at);
                if measuring && sent_at <= now {
                    hist.record(now - sent_at);
                }
            };
            let result = ep.s.conn.receive(&mut on_message);
            match result {
                Ok(true) => {}
                Ok(false) | Err(_) => {
                    if let Err(e) = result {
                        eprintln!("session {k}: {e}");
                    }
                    let _ = epoll.delete(&ep.s.conn);
                    eps[k] = None;
                    closed_conns += 1;
                    continue;
                }
            }
            if !open && !window.ended() {
                refill(ep, args, coalesce, &mut tx, &mut c, ns())?;
            } else {
                ep.s.conn.flush()?;
            }
            watch(&epoll, ep, k)?;
        }
    }

    let m = window.finish();
    let (b, e) = (&m.begin, &m.end);
    let d = |f: fn(&Counters) -> u64| f(&e.counters) - f(&b.counters);
    Ok(Report {
        label: args.label.clone(),
        target: format!("{:?}", args.target).to_lowercase(),
        transport: super::transport_name(args.transport).into(),
        tls: tls_session,
        mode: mode_name(args.mode).into(),
        shape: shape_name(args.shape).into(),
        data_path: format!("{:?}", args.data_path).to_lowercase(),
        peers: usize::from(args.peers),
        sessions: live.len(),
        size: args.size,
        seconds: (e.at - b.at) as f64 / 1e9,
        round_trips: d(|c| c.round_trips),
        relayed: d(|c| c.peer_rx) + d(|c| c.rx),
        sent: c.tx + c.peer_tx,
        received: c.peer_rx + c.rx,
        generator_drops: c.drops,
        reordered: Some(c.reordered),
        latency_us: [0.5, 0.99, 0.999].map(|q| hist.quantile(q) as f64 / 1e3),
        server_cpu: m.server_cpu,
        generator_cpu: m.generator_cpu,
        other_cpu: m.other_cpu,
        stat_cpu: m.stat_cpu,
        failures: failures + closed_conns,
        ..Report::default()
    })
}

/// Queues one packet and writes it at once (its own `write`).
fn send_one(ep: &mut Ep, tx: &mut Tx, c: &mut Counters, now: u64) -> io::Result<()> {
    if tx.push(ep, now) {
        c.tx += 1;
    } else {
        c.drops += 1;
    }
    ep.s.conn.flush()
}

/// Tops a closed session's window up: each packet its own `write`, or with `coalesce` the
/// whole top-up in one.
fn refill(
    ep: &mut Ep,
    args: &Args,
    coalesce: bool,
    tx: &mut Tx,
    c: &mut Counters,
    now: u64,
) -> io::Result<()> {
    while ep.inflight < args.window && c.tx < args.max_packets {
        if !tx.push(ep, now) {
            c.drops += 1;
            break;
        }
        ep.inflight += 1;
        c.tx += 1;
        if !coalesce {
            ep.s.conn.flush()?;
        }
    }
    ep.s.conn.flush()
}

/// Watches `ep` for room to write while bytes wait, and only then.
fn watch(epoll: &tern_sys::Epoll, ep: &mut Ep, k: usize) -> io::Result<()> {
    let want = ep.s.conn.wants_write();
    if want != ep.watching_writes {
        ep.watching_writes = want;
        epoll.modify(&ep.s.conn, k as u64, interest(&ep.s.conn))?;
    }
    Ok(())
}
