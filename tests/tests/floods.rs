//! Floods and brute force against the built binary, on loopback: a flood of Allocates from
//! 100,000 source addresses leaves tern's memory flat; unauthenticated answers are limited
//! per source while a legitimate client is not slowed; failed integrity checks lock an
//! address out, logged without a secret; and the amplification table (bytes out ÷ bytes in
//! for every unauthenticated exchange) against coturn's `turnserver` in the same run.
//!
//! Linux routes all of 127.0.0.0/8 to `lo`, so a socket bound to 127.x.y.z is a distinct
//! source without any set-up. Every loop here is bounded in count and in time.

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use tern_e2e::{prereq, RawClient, ServerKind, ServerOptions, TestServer};
use tern_wire::{attr, Class, MessageType, MessageWriter, Method, TransactionId};

const SECRET: &str = "flood-secret";
const REALM: &str = "tern.test";

fn loopback(a: u8, b: u8, c: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, a, b, c))
}

/// The resident set of process `pid` in KiB (`VmRSS` of /proc/PID/status).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// A request of `method` with transaction id `tid` and whatever `extra` writes.
fn request(method: Method, tid: u32, extra: impl Fn(&mut MessageWriter)) -> Vec<u8> {
    let mut t = [0x46; 12];
    t[8..].copy_from_slice(&tid.to_be_bytes());
    let mut buf = Vec::new();
    let mut w = MessageWriter::new(
        &mut buf,
        MessageType::new(method, Class::Request),
        TransactionId(t),
    );
    extra(&mut w);
    w.finish();
    buf
}

/// An Allocate without credentials, as every client's first message (28 bytes).
fn unsigned_allocate(tid: u32) -> Vec<u8> {
    request(Method::ALLOCATE, tid, |w| {
        w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    })
}

/// Sends one unsigned Allocate from each of `sources`, `batch` sockets at a time, and
/// counts the answers (each batch waits up to 1 s for its own). Returns (sent, answered).
fn flood(server: SocketAddr, sources: impl Iterator<Item = IpAddr>, batch: usize) -> (u64, u64) {
    let (mut sent, mut answered) = (0u64, 0u64);
    let request = unsigned_allocate(1);
    let mut buf = [0u8; 1500];
    let mut sources = sources.peekable();
    while sources.peek().is_some() {
        let socks: Vec<UdpSocket> = sources
            .by_ref()
            .take(batch)
            .map(|ip| {
                let s = UdpSocket::bind(SocketAddr::new(ip, 0)).expect("bind a loopback source");
                s.set_nonblocking(true).unwrap();
                s
            })
            .collect();
        for s in &socks {
            s.send_to(&request, server).expect("send");
            sent += 1;
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut waiting: Vec<&UdpSocket> = socks.iter().collect();
        while !waiting.is_empty() && Instant::now() < deadline {
            waiting.retain(|s| match s.recv_from(&mut buf) {
                Ok(_) => {
                    answered += 1;
                    false
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => true,
                Err(_) => false,
            });
            if !waiting.is_empty() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    (sent, answered)
}

/// `n` distinct sources: 127.1.0.1 upward.
fn flood_sources(n: u32) -> impl Iterator<Item = IpAddr> {
    (0..n).map(|i| IpAddr::V4(Ipv4Addr::from(0x7F01_0001 + i)))
}

#[test]
fn unauthenticated_flood_from_100000_addresses_leaves_rss_flat() {
    flood_and_measure(ServerKind::Tern, FLOOD_SOURCES);
}

/// coturn under the same flood, for the README's comparison; nothing is asserted of it.
/// coturn keeps a session per new 5-tuple, about 19 KiB each, so this floods from 20,000
/// addresses unless `TERN_FLOOD_COTURN_SOURCES` asks for more (100,000 takes about 2 GB).
#[test]
fn coturn_under_the_same_flood() {
    if !ServerKind::Coturn.available() {
        prereq::missing("coturn's `turnserver` not found", prereq::COTURN_INSTALL);
        return;
    }
    let sources = std::env::var("TERN_FLOOD_COTURN_SOURCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
        .min(FLOOD_SOURCES);
    flood_and_measure(ServerKind::Coturn, sources);
}

const FLOOD_SOURCES: u32 = 100_000;

fn flood_and_measure(kind: ServerKind, sources: u32) {
    let mut opts = ServerOptions::rest(SECRET, REALM);
    opts.fingerprint = false;
    // Logging stays at info: nothing is logged per unauthenticated request.
    opts.env.push(("RUST_LOG".into(), "info".into()));
    let mut server = TestServer::start(kind, &opts);
    let started = Instant::now();
    // Warm up every path first (allocator arenas, buffers, the workers' first messages),
    // from other addresses (127.3.x.y).
    let warm = (0..5_000u32).map(|i| IpAddr::V4(Ipv4Addr::from(0x7F03_0001 + i)));
    let (_, warm_answered) = flood(server.addr(), warm, 500);
    assert!(warm_answered > 4_000, "warm-up answered {warm_answered}");
    std::thread::sleep(Duration::from_millis(300));
    let before = rss_kib(server.pid());

    let t = Instant::now();
    let (sent, answered) = flood(server.addr(), flood_sources(sources), 500);
    let took = t.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    let after = rss_kib(server.pid());
    server.assert_alive();
    let line = format!(
        "{kind:?}: {sent} Allocates from {sources} addresses in {:.1} s ({:.0}/s), {answered} answered; RSS {before} KiB before, {after} KiB after ({:+} KiB, {:.2} KiB per address)",
        took.as_secs_f64(),
        sent as f64 / took.as_secs_f64(),
        after as i64 - before as i64,
        (after as f64 - before as f64) / f64::from(sources)
    );
    println!("{line}");
    assert_eq!(sent, u64::from(sources));
    assert!(
        started.elapsed() < Duration::from_secs(240),
        "bounded in time: {line}"
    );
    if kind == ServerKind::Tern {
        // Every source is new and under its limit: each gets its 401 (a few may be lost to
        // a full socket buffer on a loaded machine, none to the limit).
        assert!(answered >= sent * 99 / 100, "{line}");
        assert_eq!(
            server.metric(r#"tern_dropped_packets_total{reason="unauthorized_rate_limited"}"#),
            0.0
        );
        // Flat: no per-source state. The tolerance covers page-granular noise of the
        // allocator, not a per-source cost (100,000 sources at even 16 bytes each would be
        // 1.5 MiB).
        assert!(
            after <= before + 512,
            "RSS grew by {} KiB: {line}",
            after - before
        );
    }
}

#[test]
fn unauthenticated_answers_are_limited_per_source_and_legitimate_clients_are_not_slowed() {
    let mut opts = ServerOptions::rest(SECRET, REALM);
    opts.fingerprint = false;
    let server = TestServer::start(ServerKind::Tern, &opts);
    // A flood of 2,000 unsigned Allocates from one address, as fast as a socket sends.
    let flooder = UdpSocket::bind((Ipv4Addr::new(127, 0, 0, 77), 0)).unwrap();
    let start = Instant::now();
    for i in 0..2_000 {
        flooder
            .send_to(&unsigned_allocate(i), server.addr())
            .unwrap();
    }
    // Meanwhile ten clients elsewhere, one after another: each takes one 401 and is
    // allocated at its first try (RawClient never retransmits: a dropped answer would fail
    // it after 2 s), in well under the 500 ms of a STUN client's first retransmission.
    for i in 0..10 {
        let mut c = RawClient::bound(loopback(0, 0, 1), server.addr(), SECRET, REALM);
        let t = Instant::now();
        c.allocate_ok();
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "client {i} took {:?}",
            t.elapsed()
        );
        assert_eq!(c.refresh(0), 0);
    }
    let elapsed = start.elapsed();
    flooder
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 1500];
    let mut answered = 0;
    while flooder.recv_from(&mut buf).is_ok() {
        answered += 1;
    }
    // The burst (100) and 10 a second after it; the rest dropped and counted.
    let most = 100 + 10 * (elapsed.as_secs_f64() + 0.3).ceil() as usize + 1;
    assert!(
        (100..=most).contains(&answered),
        "the flooder got {answered} answers in {elapsed:?}"
    );
    let limited = r#"tern_dropped_packets_total{reason="unauthorized_rate_limited"}"#;
    let t = Instant::now();
    while server.metric(limited) < (2_000 - answered) as f64 {
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "{}",
            server.metric(limited)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        server.metric(r#"tern_requests_total{method="allocate",result="success",transport="udp"}"#),
        10.0
    );
}

#[test]
fn failed_integrity_checks_lock_the_address_out_and_the_log_holds_no_secret() {
    let mut opts = ServerOptions::rest(SECRET, REALM);
    opts.extra_args.extend([
        "--auth-failure-limit=3".to_owned(),
        "--auth-failure-window=60".to_owned(),
        "--auth-lockout-duration=3".to_owned(),
    ]);
    let mut server = TestServer::start(ServerKind::Tern, &opts);
    let locked = loopback(0, 0, 66);
    // REST credentials under a wrong secret: every signed request fails its check.
    let mut guesser = RawClient::bound(locked, server.addr(), "not-the-secret", REALM);
    let (username, password) = {
        let (u, p) = guesser.credentials();
        (u.to_owned(), p.to_owned())
    };
    for i in 0..3 {
        assert_eq!(guesser.try_allocate(), Some(401), "guess {i}");
    }
    // Locked out: the next guess, and the right credential from the same address on
    // another port, go unanswered; a Binding is still answered.
    let quick = Duration::from_millis(500);
    guesser.sock.set_read_timeout(Some(quick)).unwrap();
    assert_eq!(guesser.try_allocate(), None);
    let mut right = RawClient::bound(locked, server.addr(), SECRET, REALM);
    right.sock.set_read_timeout(Some(quick)).unwrap();
    let locked_at = Instant::now();
    assert_eq!(right.try_allocate(), None, "the address is locked out");
    assert_eq!(right.mapped_address().ip(), locked);
    // Another address is not.
    RawClient::bound(loopback(0, 0, 67), server.addr(), SECRET, REALM).allocate_ok();
    server.wait_metric(r#"tern_auth_lockouts_total{reason="source"}"#, 1.0);
    server.wait_metric(r#"tern_dropped_packets_total{reason="locked_out"}"#, 2.0);
    server.wait_metric(r#"tern_auth_failures_total{reason="bad_integrity"}"#, 3.0);

    // Three seconds later the right credential works from that address.
    std::thread::sleep(Duration::from_secs(3).saturating_sub(locked_at.elapsed()));
    let t = Instant::now();
    loop {
        let mut c = RawClient::bound(locked, server.addr(), SECRET, REALM);
        c.sock.set_read_timeout(Some(quick)).unwrap();
        match c.try_allocate() {
            Some(0) => break,
            other => assert!(
                t.elapsed() < Duration::from_secs(3),
                "still refused after the lockout: {other:?}"
            ),
        }
    }

    // One log line for the lockout, with the address; no secret anywhere in the log, and
    // not the username either on that line.
    server.assert_alive();
    let log = server.output();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("authentication lockout"))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(lines[0].contains("127.0.0.66:"), "{}", lines[0]);
    assert!(lines[0].contains("trigger=\"source\"") || lines[0].contains("trigger=source"));
    assert!(!lines[0].contains(&username), "{}", lines[0]);
    for secret in [SECRET, "not-the-secret", password.as_str()] {
        assert!(!log.contains(secret), "`{secret}` is in the log");
    }
}

#[test]
fn failures_for_one_username_from_many_addresses_lock_out_each_further_address() {
    let mut opts = ServerOptions::rest(SECRET, REALM);
    opts.extra_args.push("--auth-failure-limit=3".to_owned());
    let server = TestServer::start(ServerKind::Tern, &opts);
    // RawClient's username is `<expiry>:raw`; the name `raw` is what is counted.
    for i in 1..=3u8 {
        let mut g = RawClient::bound(loopback(0, 1, i), server.addr(), "wrong", REALM);
        assert_eq!(g.try_allocate(), Some(401));
    }
    server.wait_metric(r#"tern_auth_lockouts_total{reason="username"}"#, 1.0);
    // A fourth address gets one guess, and is locked out with it.
    let mut g = RawClient::bound(loopback(0, 1, 4), server.addr(), "wrong", REALM);
    assert_eq!(g.try_allocate(), Some(401));
    server.wait_metric(r#"tern_auth_lockouts_total{reason="username"}"#, 2.0);
    g.sock
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    assert_eq!(g.try_allocate(), None);
    // The user with the right key, from an address of its own, is not refused.
    RawClient::bound(loopback(0, 1, 9), server.addr(), SECRET, REALM).allocate_ok();
}

/// One unauthenticated exchange of the amplification table.
struct Exchange {
    /// What the client sends, for the table.
    name: &'static str,
    /// Builds the datagram; gets a nonce the server issued to this source (fetched first,
    /// not counted) when `needs_nonce`.
    build: fn(Option<&[u8]>) -> Vec<u8>,
    needs_nonce: bool,
}

/// The signed part of a request: a REST credential under `secret` and `nonce`.
fn signed(method: Method, secret: &str, nonce: &[u8]) -> Vec<u8> {
    let (username, password) = tern_e2e::rest_credentials(secret, "amp", 3600);
    let key = tern_proto::auth::long_term_key(&username, REALM, &password);
    request(method, 9, |w| {
        w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        w.attr(attr::USERNAME, username.as_bytes())
            .attr(attr::REALM, REALM.as_bytes())
            .attr(attr::NONCE, nonce)
            .message_integrity(&key);
    })
}

fn exchanges() -> Vec<Exchange> {
    vec![
        Exchange {
            name: "Binding request",
            build: |_| request(Method::BINDING, 1, |_| {}),
            needs_nonce: false,
        },
        Exchange {
            name: "Binding request with FINGERPRINT",
            build: |_| {
                request(Method::BINDING, 2, |w| {
                    w.fingerprint();
                })
            },
            needs_nonce: false,
        },
        Exchange {
            name: "Binding with an unknown comprehension-required attribute (420)",
            build: |_| {
                request(Method::BINDING, 3, |w| {
                    w.attr(0x7777, b"abcd");
                })
            },
            needs_nonce: false,
        },
        Exchange {
            name: "Allocate without credentials (401)",
            build: |_| unsigned_allocate(4),
            needs_nonce: false,
        },
        Exchange {
            name: "Allocate without credentials, with FINGERPRINT (401)",
            build: |_| {
                request(Method::ALLOCATE, 5, |w| {
                    w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
                    w.fingerprint();
                })
            },
            needs_nonce: false,
        },
        Exchange {
            name: "Refresh without credentials (401)",
            build: |_| request(Method::REFRESH, 6, |_| {}),
            needs_nonce: false,
        },
        Exchange {
            name: "CreatePermission without credentials (401)",
            build: |_| {
                request(Method::CREATE_PERMISSION, 7, |w| {
                    w.xor_address(attr::XOR_PEER_ADDRESS, "127.0.0.1:9".parse().unwrap());
                })
            },
            needs_nonce: false,
        },
        Exchange {
            name: "Allocate signed with a nonce the server never issued (438)",
            build: |_| signed(Method::ALLOCATE, SECRET, b"0123456789abcdef"),
            needs_nonce: false,
        },
        Exchange {
            name: "Allocate signed with a valid nonce and a wrong key (401)",
            build: |nonce| signed(Method::ALLOCATE, "wrong", nonce.expect("a nonce")),
            needs_nonce: true,
        },
        Exchange {
            name: "Request of an unknown method (0x00F)",
            build: |_| request(Method(0x00F), 10, |_| {}),
            needs_nonce: false,
        },
        Exchange {
            name: "Binding success response sent by a client",
            build: |_| {
                let mut buf = Vec::new();
                let mut w = MessageWriter::new(
                    &mut buf,
                    MessageType::new(Method::BINDING, Class::Success),
                    TransactionId([0x47; 12]),
                );
                w.xor_address(attr::XOR_MAPPED_ADDRESS, "127.0.0.1:9".parse().unwrap());
                w.finish();
                buf
            },
            needs_nonce: false,
        },
        Exchange {
            name: "Send indication without an allocation",
            build: |_| {
                let mut buf = Vec::new();
                MessageWriter::new(
                    &mut buf,
                    MessageType::new(Method::SEND, Class::Indication),
                    TransactionId([0x48; 12]),
                )
                .xor_address(attr::XOR_PEER_ADDRESS, "127.0.0.1:9".parse().unwrap())
                .attr(attr::DATA, &[0x55; 100]);
                buf
            },
            needs_nonce: false,
        },
        Exchange {
            name: "ChannelData without an allocation (100 B payload)",
            build: |_| {
                let mut d = vec![0x40, 0x00, 0x00, 100];
                d.extend_from_slice(&[0x55; 100]);
                d
            },
            needs_nonce: false,
        },
        Exchange {
            name: "Malformed: STUN header whose length runs past the datagram",
            build: |_| {
                let mut d = request(Method::ALLOCATE, 11, |_| {});
                d[2..4].copy_from_slice(&400u16.to_be_bytes());
                d.extend_from_slice(&[0; 12]);
                d
            },
            needs_nonce: false,
        },
        Exchange {
            name: "Malformed: Binding with a wrong FINGERPRINT",
            build: |_| {
                let mut d = request(Method::BINDING, 12, |w| {
                    w.fingerprint();
                });
                let last = d.len() - 1;
                d[last] ^= 0xFF;
                d
            },
            needs_nonce: false,
        },
        Exchange {
            name: "Malformed: 100 bytes that are not STUN (first byte 0xFF)",
            build: |_| vec![0xFF; 100],
            needs_nonce: false,
        },
    ]
}

/// Sends `datagram` from a fresh socket on `source` and sums the bytes of everything that
/// comes back within 300 ms of the last answer.
fn bytes_back(server: SocketAddr, source: IpAddr, datagram: &[u8], nonce: bool) -> (Vec<u8>, u64) {
    let sock = UdpSocket::bind(SocketAddr::new(source, 0)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 1500];
    let mut nonce_value = Vec::new();
    if nonce {
        sock.send_to(&unsigned_allocate(99), server).unwrap();
        let (n, _) = sock.recv_from(&mut buf).expect("a 401 with a nonce");
        let m = tern_wire::Message::parse(&buf[..n]).expect("STUN");
        nonce_value = m.get(attr::NONCE).expect("NONCE").value.to_vec();
    }
    sock.send_to(datagram, server).unwrap();
    let mut total = 0;
    // Bounded: a server answers one datagram with one, at most a few.
    for _ in 0..8 {
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => total += n as u64,
            Err(_) => break,
        }
    }
    (nonce_value, total)
}

/// For each exchange: the bytes in and the bytes out, measured against `server`.
fn measure(server: &TestServer, subnet: u8) -> Vec<(u64, u64)> {
    exchanges()
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let source = loopback(0, subnet, i as u8 + 1);
            let datagram = if e.needs_nonce {
                // The nonce is bound to the source address: fetch it from the same one.
                let (nonce, _) = bytes_back(server.addr(), source, &[], true);
                (e.build)(Some(&nonce))
            } else {
                (e.build)(None)
            };
            let (_, out) = bytes_back(server.addr(), source, &datagram, false);
            (datagram.len() as u64, out)
        })
        .collect()
}

fn ratio((bytes_in, bytes_out): (u64, u64)) -> f64 {
    bytes_out as f64 / bytes_in as f64
}

#[test]
fn amplification_no_higher_than_coturn_for_any_unauthenticated_exchange() {
    let mut opts = ServerOptions::rest(SECRET, REALM);
    opts.fingerprint = false;
    let tern = TestServer::start(ServerKind::Tern, &opts);
    let t = measure(&tern, 4);
    // tern's own figures, whatever coturn does: XOR-MAPPED-ADDRESS alone answers a Binding
    // (20 + 12 bytes), a 401 is ERROR-CODE without a reason phrase, REALM ("tern.test") and
    // a 16-byte NONCE (20 + 8 + 16 + 20), and nothing answers what has no answer.
    let names: Vec<&str> = exchanges().iter().map(|e| e.name).collect();
    let out = |name: &str| t[names.iter().position(|n| *n == name).unwrap()].1;
    assert_eq!(out("Binding request"), 32);
    assert_eq!(out("Binding request with FINGERPRINT"), 40);
    assert_eq!(out("Allocate without credentials (401)"), 64);
    assert_eq!(
        out("Allocate without credentials, with FINGERPRINT (401)"),
        72
    );
    for (name, (_, bytes_out)) in names.iter().zip(&t) {
        if name.contains("without an allocation")
            || name.starts_with("Malformed")
            || name.contains("response sent by a client")
        {
            assert_eq!(*bytes_out, 0, "{name}");
        }
    }
    drop(tern);

    if !ServerKind::Coturn.available() {
        prereq::missing(
            "coturn's `turnserver` not found (the amplification comparison)",
            prereq::COTURN_INSTALL,
        );
        return;
    }
    let coturn = TestServer::start(ServerKind::Coturn, &opts);
    let c = measure(&coturn, 5);
    drop(coturn);
    let mut lean_opts = opts.clone();
    lean_opts
        .extra_args
        .push("--no-software-attribute".to_owned());
    let coturn_lean = TestServer::start(ServerKind::Coturn, &lean_opts);
    let l = measure(&coturn_lean, 6);
    drop(coturn_lean);

    let cell = |(i, o): (u64, u64)| format!("{o} ({:.2}×)", ratio((i, o)));
    let mut table = String::from(
        "| unauthenticated exchange (UDP) | bytes in | tern: bytes out (out ÷ in) | coturn 4.6.1 | coturn, `no-software-attribute` |\n|---|---:|---:|---:|---:|\n",
    );
    for (i, name) in names.iter().enumerate() {
        table.push_str(&format!(
            "| {name} | {} | {} | {} | {} |\n",
            t[i].0,
            cell(t[i]),
            cell(c[i]),
            cell(l[i])
        ));
    }
    println!("{table}");
    for (i, name) in names.iter().enumerate() {
        for (theirs, which) in [(c[i], "coturn"), (l[i], "coturn no-software-attribute")] {
            assert!(
                ratio(t[i]) <= ratio(theirs) + 1e-9,
                "{name}: tern {:.2} above {which} {:.2}\n{table}",
                ratio(t[i]),
                ratio(theirs)
            );
        }
    }
}
