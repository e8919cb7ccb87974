//! `--mode hold`: idle authenticated allocations over TCP or TLS, and how fast they open.
//!
//! Opens `--sessions` connections, `--concurrency` at a time, each a full TLS handshake (no
//! resumption) and its own Allocate with the 401 round, as fast as the server answers: that
//! phase gives connections per second of wall time and per second of server CPU. Then holds
//! them all idle for `--duration` seconds, reads the server's resident memory
//! (`/proc/PID/status` VmRSS) before the first connection and at the end of the hold, and
//! finally sends a signed Refresh on every connection: each one answered is a held
//! allocation, the rest are lost.

use std::io;
use std::time::{Duration, Instant};

use super::hist::Histogram;
use super::setup::{Engine, Session, Step};
use super::sys::{cpu_seconds, raise_nofile_limit, vm_rss_kib};
use super::tls::{negotiated, TlsClient};
use super::{transport_name, Args, Report, Transport};

/// The LIFETIME the verifying Refresh asks for (the allocations stay).
const REFRESH_LIFETIME: u32 = 600;

/// Runs hold.
pub fn run(args: &Args) -> io::Result<Report> {
    let fds = (args.sessions + 64) as u64;
    if raise_nofile_limit(fds) < fds {
        return Err(io::Error::other(format!(
            "need {fds} open files (RLIMIT_NOFILE): raise ulimit -n"
        )));
    }
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
    let pid = args.server_pid;
    let rss_before = pid.and_then(vm_rss_kib);
    let own0 = cpu_seconds(std::process::id()).unwrap_or(0.0);
    let cpu0 = pid.and_then(cpu_seconds);
    let t0 = Instant::now();
    let mut slots: Vec<Option<Session>> = (0..args.sessions).map(|_| None).collect();
    let opened = engine.run(
        &mut slots,
        &|_| vec![Step::Allocate],
        args.concurrency,
        true,
    )?;
    let seconds = t0.elapsed().as_secs_f64();
    let cpu1 = pid.and_then(cpu_seconds);
    let own1 = cpu_seconds(std::process::id()).unwrap_or(0.0);

    let mut hist = Histogram::new();
    let mut failures = 0u64;
    let mut shown = 0;
    for (i, o) in opened.iter().enumerate() {
        match o {
            Some(Ok(ns)) => hist.record(*ns),
            other => {
                failures += 1;
                // A failed session is closed, so that it holds nothing in the server.
                slots[i] = None;
                if shown < 5 {
                    shown += 1;
                    eprintln!("connection {i}: {other:?}");
                }
            }
        }
    }
    let allocations = hist.count();
    let tls_session = slots
        .iter()
        .flatten()
        .find_map(|s| s.conn.tls().map(negotiated))
        .unwrap_or_default();

    // Idle: nothing is sent; a connection the server closes meanwhile fails its Refresh.
    std::thread::sleep(Duration::from_secs_f64(args.duration));
    let rss_after = pid.and_then(vm_rss_kib);
    let verified = engine.run(
        &mut slots,
        &|_| vec![Step::Refresh(REFRESH_LIFETIME)],
        args.concurrency,
        false,
    )?;
    let held = verified.iter().filter(|o| matches!(o, Some(Ok(_)))).count() as u64;
    shown = 0;
    for (i, o) in verified.iter().enumerate() {
        if let Some(Err(e)) = o {
            if shown < 5 {
                shown += 1;
                eprintln!("held connection {i} lost: {e}");
            }
        }
    }
    Ok(Report {
        label: args.label.clone(),
        target: "turn".into(),
        transport: transport_name(args.transport).into(),
        tls: tls_session,
        mode: "hold".into(),
        sessions: args.sessions,
        seconds,
        latency_us: [0.5, 0.99, 0.999].map(|q| hist.quantile(q) as f64 / 1e3),
        server_cpu: cpu0.zip(cpu1).map(|(a, b)| b - a),
        generator_cpu: own1 - own0,
        failures,
        allocations,
        held: Some(held),
        hold_seconds: args.duration,
        rss_kib: rss_before.zip(rss_after),
        ..Report::default()
    })
}
