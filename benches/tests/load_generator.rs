//! The load generator itself, tested: a few seconds of closed-mode relaying and of alloc-rate
//! against the real tern binary on loopback must report relayed packets (or allocations) and
//! no failures; many sessions with their own peers and a ChannelData/Send mix relay without
//! loss; and a probe socket with UDP GRO on, standing in for a server's listening socket,
//! sees what each `--shape` puts on the wire. Over TCP and TLS (a test CA made with rcgen),
//! closed and open loads relay in order without loss, and a small hold of TLS allocations
//! reports the server's RSS growth and loses none.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_bench::load::bare;
use tern_bench::load::net::bind_udp;
use tern_bench::load::sys::{enable_gro, RecvBatch};
use tern_e2e::{run_bounded, PortBlock, ServerKind, ServerOptions, TestServer};

const SECRET: &str = "load-test-secret";

#[path = "../../tests/tests/tls_pki/mod.rs"]
mod tls_pki;

mod common;
use common::field;

fn tern() -> TestServer {
    let mut opts = ServerOptions::rest(SECRET, "bench");
    opts.fingerprint = false;
    TestServer::start(ServerKind::Tern, &opts)
}

/// Runs tern-load against `server` with `args`; returns its JSON line.
fn load(server: &TestServer, args: &[&str]) -> String {
    let base = server.addr().port();
    let client_ports = format!("{}-{}", base + 4, base + 15);
    let out = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_tern-load"))
            .args(["--server", &server.addr().to_string(), "--secret", SECRET])
            .args(["--client-ports", &client_ports])
            .args(["--peer-port", &server.peer_port().to_string()])
            .args([
                "--warmup",
                "0.3",
                "--duration",
                "1.5",
                "--drain-ms",
                "300",
                "--json",
            ])
            .args(args),
        Duration::from_secs(20),
    );
    assert!(
        out.success(),
        "tern-load failed:\n{}\nserver:\n{}",
        out.text,
        server.output()
    );
    out.text
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line in:\n{}", out.text))
        .to_owned()
}

#[test]
fn closed_mode_relays_through_tern() {
    let server = tern();
    let json = load(
        &server,
        &["--mode", "closed", "--sessions", "4", "--window", "4"],
    );
    assert!(field(&json, "relayed") > 0.0, "{json}");
    assert!(field(&json, "round_trips") > 0.0, "{json}");
    assert_eq!(field(&json, "failures"), 0.0, "{json}");
    assert_eq!(field(&json, "loss"), 0.0, "{json}");
    assert!(field(&json, "p50_us") > 0.0, "{json}");
}

#[test]
fn alloc_rate_mode_allocates_and_releases_on_tern() {
    // Every cycle is a new client behind one address taking its 401: thousands a second,
    // far over the per-source limit on unauthenticated answers (10 a second), which a load
    // test from one address turns off.
    let mut opts = ServerOptions::rest(SECRET, "bench");
    opts.fingerprint = false;
    opts.extra_args
        .push("--unauthorized-ratelimit=false".to_owned());
    let server = TestServer::start(ServerKind::Tern, &opts);
    let json = load(&server, &["--mode", "alloc-rate", "--concurrency", "4"]);
    assert!(field(&json, "allocations") > 0.0, "{json}");
    assert_eq!(field(&json, "failures"), 0.0, "{json}");
    assert_eq!(field(&json, "e508"), 0.0, "{json}");
}

#[test]
fn many_sessions_with_their_own_peers_and_a_channel_send_mix_relay_without_loss() {
    let server = tern();
    // Clients and peers from a second block, so that 16 sessions each have their own peer
    // (tern's relay range is 48 ports of the server's block).
    let spare = PortBlock::reserve();
    let base = spare.listen_port();
    let out = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_tern-load"))
            .args(["--server", &server.addr().to_string(), "--secret", SECRET])
            .args(["--client-ports", &format!("{}-{}", base, base + 15)])
            .args(["--peer-port", &(base + 32).to_string(), "--peers", "16"])
            .args(["--sessions", "16", "--mode", "open", "--rate", "2000"])
            .args(["--size", "1200", "--data-path", "mix"])
            .args(["--warmup", "0.3", "--duration", "1.5", "--drain-ms", "300"])
            .arg("--json"),
        Duration::from_secs(20),
    );
    assert!(
        out.success(),
        "tern-load failed:\n{}\nserver:\n{}",
        out.text,
        server.output()
    );
    let json = out.text.lines().find(|l| l.starts_with('{')).unwrap();
    assert_eq!(field(json, "sessions"), 16.0, "{json}");
    assert_eq!(field(json, "peers"), 16.0, "{json}");
    assert!(json.contains("\"data_path\":\"mix\""), "{json}");
    assert_eq!(field(json, "failures"), 0.0, "{json}");
    // Half the sessions on Send/Data indications, half on ChannelData: had either path
    // failed, its packets would be missing.
    assert_eq!(field(json, "loss"), 0.0, "{json}");
    assert!(field(json, "round_trips") > 1000.0, "{json}");
}

/// What a probe socket with UDP GRO on received from one tern-load run.
#[derive(Debug, Default)]
struct Probe {
    /// Receive entries holding data (the hellos not counted).
    entries: u64,
    /// Datagrams in them (an entry the kernel coalesced holds several).
    datagrams: u64,
    /// Entries that held more than one datagram.
    coalesced: u64,
    /// Most datagrams in one entry.
    largest: u64,
}

/// Runs `tern-load --target bare` in closed mode with `shape` against a probe socket that
/// stands in for a server's listening socket: UDP GRO on (as tern's and the bare forwarder's
/// are), answering the bare hello and never relaying, so each session re-sends its window of 8
/// every 300 ms. Returns what the probe saw and the generator's JSON line; `None` when the
/// kernel refuses UDP GRO.
fn probe_shape(shape: &str) -> Option<(Probe, String)> {
    let block = PortBlock::reserve();
    let base = block.listen_port();
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, base);
    let sock = bind_udp(addr).expect("bind the probe");
    if !enable_gro(sock.as_fd()) {
        eprintln!("kernel without UDP_GRO: nothing to test");
        return None;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let probe = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut rb = RecvBatch::new(64, 65_535, 0);
            let mut p = Probe::default();
            let hard_stop = Instant::now() + Duration::from_secs(30);
            let mut stop_at: Option<Instant> = None;
            while Instant::now() < hard_stop && stop_at.is_none_or(|t| Instant::now() < t) {
                if stop_at.is_none() && stop.load(Ordering::Relaxed) {
                    // The generator is gone; take what is still queued.
                    stop_at = Some(Instant::now() + Duration::from_millis(200));
                }
                let n = rb.recv(&sock).expect("recvmmsg");
                if n == 0 {
                    std::thread::sleep(Duration::from_micros(200));
                    continue;
                }
                for i in 0..n {
                    let (bytes, src) = rb.get(i);
                    if bare::parse_hello(bytes).is_some() {
                        let mut answer = [0u8; 6];
                        answer[..4].copy_from_slice(bare::PORT);
                        answer[4..].copy_from_slice(&(base + 1).to_be_bytes());
                        sock.send_to(&answer, src).expect("answer the hello");
                        continue;
                    }
                    let seg = rb.segment(i).max(1);
                    let count = bytes.len().div_ceil(seg) as u64;
                    // Every datagram in the entry is one whole bare frame.
                    for frame in bytes.chunks(seg) {
                        let len = usize::from(u16::from_be_bytes([frame[2], frame[3]]));
                        assert_eq!(frame.len(), 4 + len, "a whole frame per segment");
                    }
                    p.entries += 1;
                    p.datagrams += count;
                    p.coalesced += u64::from(count > 1);
                    p.largest = p.largest.max(count);
                }
            }
            p
        })
    };
    let out = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_tern-load"))
            .args(["--server", &addr.to_string(), "--target", "bare"])
            .args(["--client-ports", &format!("{}-{}", base + 4, base + 7)])
            .args(["--peer-port", &(base + 2).to_string()])
            .args(["--mode", "closed", "--sessions", "4", "--window", "8"])
            .args(["--size", "200", "--shape", shape])
            .args(["--warmup", "0.2", "--duration", "1", "--drain-ms", "100"])
            .arg("--json")
            .env_remove("NO_GSO"),
        Duration::from_secs(20),
    );
    stop.store(true, Ordering::Relaxed);
    let probe = probe.join().expect("probe thread");
    assert!(out.success(), "tern-load failed:\n{}", out.text);
    let json = out
        .text
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line in:\n{}", out.text))
        .to_owned();
    assert!(json.contains(&format!("\"shape\":\"{shape}\"")), "{json}");
    eprintln!("--shape {shape}: the probe saw {probe:?}");
    Some((probe, json))
}

#[test]
fn browser_shape_reaches_the_listening_socket_one_datagram_per_receive_entry() {
    let Some((p, json)) = probe_shape("browser") else {
        return;
    };
    // At least one window of 8 from each of the 4 sessions, all of it seen by the probe.
    assert!(p.datagrams >= 32, "{p:?} {json}");
    assert_eq!(
        p.datagrams as f64,
        field(&json, "sent") - field(&json, "generator_drops"),
        "{p:?} {json}"
    );
    assert_eq!(p.coalesced, 0, "a GRO-coalesced entry: {p:?}");
    assert_eq!(p.entries, p.datagrams, "{p:?}");
}

#[test]
fn bursty_shape_reaches_the_listening_socket_as_gro_buffers() {
    let Some((p, json)) = probe_shape("bursty") else {
        return;
    };
    assert!(p.datagrams >= 32, "{p:?} {json}");
    assert_eq!(
        p.datagrams as f64,
        field(&json, "sent") - field(&json, "generator_drops"),
        "{p:?} {json}"
    );
    // A session's window leaves as one GSO send and arrives as one buffer.
    assert!(p.coalesced > 0, "no GRO-coalesced entry: {p:?}");
    assert!(p.entries < p.datagrams, "{p:?}");
    assert!(p.largest <= 8, "more than a window in one entry: {p:?}");
}

/// tern with TLS on a port of a second block (and on the listening port, by the first byte);
/// returns the server, the TLS port's block and the PKI (both must outlive the server).
fn tern_tls(pki: &tls_pki::Pki) -> (TestServer, PortBlock) {
    let tls_port = PortBlock::reserve();
    let mut opts = ServerOptions::rest(SECRET, "bench");
    opts.fingerprint = false;
    opts.extra_args = vec![
        format!("--cert={}", pki.cert.display()),
        format!("--pkey={}", pki.key.display()),
        format!("--tls-listening-port={}", tls_port.listen_port()),
    ];
    let server = TestServer::start(ServerKind::Tern, &opts);
    server.wait_healthy(Duration::from_secs(5));
    (server, tls_port)
}

/// Runs tern-load against `server` at `addr` with `args` (a stream transport); returns its
/// JSON line.
fn stream_load(server: &TestServer, addr: &str, args: &[&str]) -> String {
    let out = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_tern-load"))
            .args(["--server", addr, "--secret", SECRET])
            .args(["--peer-port", &server.peer_port().to_string()])
            .args(["--server-pid", &server.pid().to_string(), "--json"])
            .args(args),
        Duration::from_secs(20),
    );
    assert!(
        out.success(),
        "tern-load failed:\n{}\nserver:\n{}",
        out.text,
        server.output()
    );
    out.text
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line in:\n{}", out.text))
        .to_owned()
}

/// Relayed, nothing lost, nothing out of order, every session set up.
fn assert_relayed_in_order(json: &str) {
    assert!(field(json, "relayed") > 100.0, "{json}");
    assert_eq!(field(json, "failures"), 0.0, "{json}");
    assert_eq!(field(json, "loss"), 0.0, "{json}");
    assert_eq!(field(json, "reordered"), 0.0, "{json}");
    assert!(field(json, "p50_us") > 0.0, "{json}");
    assert!(field(json, "server_cpu_s") >= 0.0, "{json}");
}

#[test]
fn tcp_and_tls_loads_relay_through_tern_in_order_without_loss() {
    let pki = tls_pki::Pki::new("load-generator");
    let (server, tls_port) = tern_tls(&pki);
    let window = ["--warmup", "0.2", "--duration", "1", "--drain-ms", "300"];
    let tcp = stream_load(
        &server,
        &server.addr().to_string(),
        &[
            &["--transport", "tcp", "--mode", "closed", "--sessions", "4"][..],
            &window,
        ]
        .concat(),
    );
    assert!(tcp.contains("\"transport\":\"tcp\""), "{tcp}");
    assert_relayed_in_order(&tcp);
    let tls_addr = format!("127.0.0.1:{}", tls_port.listen_port());
    let ca = pki.ca.display().to_string();
    // TLS, paced, half the sessions on Send/Data indications.
    let tls = stream_load(
        &server,
        &tls_addr,
        &[
            &[
                "--transport",
                "tls",
                "--ca",
                &ca,
                "--mode",
                "open",
                "--rate",
                "2000",
            ][..],
            &["--sessions", "4", "--data-path", "mix", "--size", "1200"],
            &window,
        ]
        .concat(),
    );
    assert!(tls.contains("\"transport\":\"tls\""), "{tls}");
    assert!(tls.contains("TLSv1_3"), "{tls}");
    assert_relayed_in_order(&tls);
    assert!(field(&tls, "round_trips") > 1000.0, "{tls}");
}

#[test]
fn tls_hold_keeps_every_allocation_and_reports_the_servers_rss() {
    let pki = tls_pki::Pki::new("load-generator-hold");
    let (server, tls_port) = tern_tls(&pki);
    let tls_addr = format!("127.0.0.1:{}", tls_port.listen_port());
    let ca = pki.ca.display().to_string();
    let json = stream_load(
        &server,
        &tls_addr,
        &[
            "--transport",
            "tls",
            "--ca",
            &ca,
            "--mode",
            "hold",
            "--sessions",
            "40",
            "--concurrency",
            "8",
            "--duration",
            "0.5",
        ],
    );
    // 40 of the test server's 48 relay ports.
    assert_eq!(field(&json, "allocations"), 40.0, "{json}");
    assert_eq!(field(&json, "held"), 40.0, "{json}");
    assert_eq!(field(&json, "lost"), 0.0, "{json}");
    assert_eq!(field(&json, "failures"), 0.0, "{json}");
    assert!(field(&json, "allocations_per_s") > 0.0, "{json}");
    assert!(field(&json, "rss_before_kib") > 0.0, "{json}");
    assert!(field(&json, "rss_after_kib") > 0.0, "{json}");
    // A plain number (the growth may be anything from a little negative to tens of KiB).
    assert!(field(&json, "rss_per_allocation_kib").is_finite(), "{json}");
}
