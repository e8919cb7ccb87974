//! Faults, against the built tern: `kill -9` and an immediate restart, SIGSTOP/SIGCONT, too
//! few file descriptors at start, a reload that fails halfway, datagrams too big to relay.
//! Each checks that the server (or a second client's allocation) comes through, and that
//! what was dropped is counted.

use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tern_e2e::{
    binding_request_once, http_get, tern_bin, Auth, PortBlock, RawClient, ServerKind,
    ServerOptions, TestServer,
};

const SECRET: &str = "faults-secret-5e1d";
const REALM: &str = "faults.test";

fn tern(extra: &[&str]) -> TestServer {
    let mut options = ServerOptions::rest(SECRET, REALM);
    options.extra_args = extra.iter().map(|s| s.to_string()).collect();
    let server = TestServer::start(ServerKind::Tern, &options);
    server.wait_healthy(Duration::from_secs(5));
    server
}

fn peer() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

/// An allocation with channel 0x4000 bound to a fresh peer socket: (client, relayed, peer).
fn session(server: &TestServer, tcp: bool) -> (RawClient, SocketAddr, UdpSocket) {
    let mut client = if tcp {
        RawClient::tcp(server.addr(), SECRET, REALM)
    } else {
        RawClient::new(server.addr(), SECRET, REALM)
    };
    let relayed = client.allocate_ok();
    let peer = peer();
    client.bind_channel(0x4000, peer.local_addr().unwrap());
    (client, relayed, peer)
}

fn pool_size(server: &TestServer) -> f64 {
    let r = server.relay_range();
    f64::from(*r.end() - *r.start() + 1)
}

/// `kill -9` while a UDP and a TCP client hold allocations, then the same command again at
/// once: every relay port and both listeners bind again (no "address in use": the UDP
/// sockets died with the process, and the TCP listener sets SO_REUSEADDR past the killed
/// connection's TIME_WAIT), and new clients over UDP and TCP relay.
#[test]
fn kill_9_and_an_immediate_restart_serve_at_once() {
    let mut server = tern(&[]);
    let (udp, relayed, peer_sock) = session(&server, false);
    udp.relay_over_channel(relayed, &peer_sock, 3);
    let (tcp, relayed_tcp, peer_tcp) = session(&server, true);
    tcp.relay_over_channel(relayed_tcp, &peer_tcp, 3);

    let killed = Instant::now();
    server.kill_and_restart();
    let restarted = killed.elapsed();
    server.wait_healthy(Duration::from_secs(5));
    server.wait_metric(
        r#"tern_relay_ports_free{family="ipv4"}"#,
        pool_size(&server),
    );
    let out = server.output();
    let second_run = out.split("started again").nth(1).unwrap_or_default();
    for complaint in ["unavailable", "in use", "skipped", "ERROR"] {
        assert!(
            !second_run.contains(complaint),
            "the restarted server complained ({complaint}):\n{second_run}"
        );
    }

    let (udp, relayed, peer_sock) = session(&server, false);
    udp.relay_over_channel(relayed, &peer_sock, 10);
    let (tcp, relayed_tcp, peer_tcp) = session(&server, true);
    tcp.relay_over_channel(relayed_tcp, &peer_tcp, 10);
    server.assert_alive();
    eprintln!("killed and serving again over UDP and TCP {restarted:?} later");
}

/// SIGSTOP for 3 s, then SIGCONT: `/healthz` answers 200 again and the allocation made
/// before the stop relays both ways; what the peer sent during the stop was kept by the
/// socket and arrives.
#[test]
fn sigstop_then_sigcont_recovers_health_and_keeps_relaying() {
    let server = tern(&[]);
    let (client, relayed, peer_sock) = session(&server, false);
    client.relay_over_channel(relayed, &peer_sock, 3);

    server.signal("STOP");
    std::thread::sleep(Duration::from_millis(300));
    let during = http_get(server.admin_addr(), "/healthz");
    assert!(
        during.is_err(),
        "a stopped server answered /healthz: {during:?}"
    );
    peer_sock.send_to(b"sent while stopped", relayed).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    server.signal("CONT");

    server.wait_healthy(Duration::from_secs(10));
    let got = client.recv_relayed(peer_sock.local_addr().unwrap());
    assert_eq!(got, Some((0x4000, b"sent while stopped".to_vec())));
    client.relay_over_channel(relayed, &peer_sock, 20);
    let (code, body) = http_get(server.admin_addr(), "/healthz").unwrap();
    assert_eq!(code, 200, "{body}");
}

/// tern started under `ulimit -n LIMIT` with its test port block (48 relay ports), at
/// most 10 s; returns (exit status if it exited, output).
/// `tern serve` on `ports` (loopback, REST secret, one relay thread unless more are added):
/// the arguments the tests that start tern by hand share.
fn serve_args(ports: &PortBlock) -> Vec<String> {
    let relay = ports.relay_range();
    vec![
        "serve".to_owned(),
        "--listening-ip=127.0.0.1".to_owned(),
        format!("--listening-port={}", ports.listen_port()),
        "--relay-ip=127.0.0.1".to_owned(),
        format!("--min-port={}", relay.start()),
        format!("--max-port={}", relay.end()),
        format!("--admin-listen=127.0.0.1:{}", ports.admin_port()),
        "--relay-threads=1".to_owned(),
        "--use-auth-secret".to_owned(),
        format!("--static-auth-secret={SECRET}"),
    ]
}

fn start_with_file_limit(
    limit: u64,
    ports: &PortBlock,
) -> (Option<std::process::ExitStatus>, String, bool) {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
        .arg(tern_bin())
        .args(serve_args(ports))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sh");
    let addr = SocketAddr::from(([127, 0, 0, 1], ports.listen_port()));
    let start = Instant::now();
    let (status, served) = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break (Some(status), false);
        }
        if binding_request_once(addr, Duration::from_millis(200)).is_ok() {
            break (None, true);
        }
        if start.elapsed() > Duration::from_secs(10) {
            break (None, false);
        }
    };
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (status, text, served)
}

/// Too few file descriptors for the relay pool: tern does not start half-bound; it exits
/// at once with a message naming `ulimit -n` and the number it needs, and that number is
/// enough.
#[test]
fn too_few_file_descriptors_fail_at_start_naming_ulimit_and_the_number() {
    let ports = PortBlock::reserve();
    let (status, text, served) = start_with_file_limit(40, &ports);
    assert!(
        !served,
        "tern served with 40 open files for 48 relay ports:\n{text}"
    );
    let status = status.unwrap_or_else(|| panic!("tern neither exited nor served:\n{text}"));
    assert!(!status.success(), "{status}\n{text}");
    let needed: u64 = text
        .split("`ulimit -n ")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `ulimit -n N` in the error:\n{text}"));
    let ports_in_pool = u64::from(*ports.relay_range().end() - *ports.relay_range().start() + 1);
    assert!(
        (ports_in_pool..ports_in_pool + 200).contains(&needed),
        "needs {needed} for {ports_in_pool} relay ports?\n{text}"
    );
    assert!(text.contains("open-file limit is 40"), "{text}");

    let (status, text, served) = start_with_file_limit(needed, &ports);
    assert!(
        served,
        "with `ulimit -n {needed}`, as the error said, tern did not serve ({status:?}):\n{text}"
    );
}

/// A configuration file whose new version is valid up to a bad line: the SIGHUP reload is
/// refused as a whole. The first version's user keeps working, the new password and the new
/// user do not, and the allocation made before keeps relaying.
#[test]
fn a_reload_that_fails_halfway_changes_nothing() {
    let dir = std::env::temp_dir().join(format!("tern-faults-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("turnserver.conf");
    std::fs::write(&conf, "user=alice:first-pw\n").unwrap();
    let options = ServerOptions {
        auth: Auth::Users(Vec::new()),
        extra_args: vec!["-c".to_owned(), conf.display().to_string()],
        ..ServerOptions::rest("", REALM)
    };
    let server = TestServer::start(ServerKind::Tern, &options);
    let user = |name: &str, password: &str| {
        RawClient::new(server.addr(), "", REALM).as_user(name, password)
    };
    let mut alice = user("alice", "first-pw");
    let relayed = alice.allocate_ok();
    let peer_sock = peer();
    alice.bind_channel(0x4000, peer_sock.local_addr().unwrap());

    let failures = r#"tern_config_reloads_total{result="failure"}"#;
    let before = server.metric(failures);
    // Lines 1 and 2 are valid changes; line 3 is not.
    std::fs::write(
        &conf,
        "user=alice:second-pw\nuser=bob:bob-pw\ndenied-peer-ip=not-an-address\n",
    )
    .unwrap();
    server.signal("HUP");
    server.wait_metric(failures, before + 1.0);
    let out = server.output();
    assert!(out.contains("reload refused"), "{out}");
    assert!(
        out.contains("denied-peer-ip"),
        "the refusal names the key:\n{out}"
    );
    assert!(out.contains(":3"), "the refusal names the line:\n{out}");

    assert_eq!(
        user("alice", "first-pw").allocate().0,
        0,
        "the old password stopped working"
    );
    assert_eq!(
        user("alice", "second-pw").allocate().0,
        401,
        "half the reload was applied"
    );
    assert_eq!(
        user("bob", "bob-pw").allocate().0,
        401,
        "half the reload was applied"
    );
    alice.relay_over_channel(relayed, &peer_sock, 10);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A peer datagram too big for a Data indication (65,507 bytes, the most UDP carries) to a
/// client with a permission but no channel: dropped and counted as `too_big`; a malformed
/// ChannelData from the client (its length says more than the datagram holds): dropped and
/// counted as `malformed`. The same allocation and another client's relay on.
#[test]
fn datagrams_too_big_to_relay_or_malformed_are_dropped_and_counted() {
    let server = tern(&[]);
    let (other, other_relayed, other_peer) = session(&server, false);
    let mut client = RawClient::new(server.addr(), SECRET, REALM);
    let relayed = client.allocate_ok();
    let peer_sock = peer();
    let peer_addr = peer_sock.local_addr().unwrap();
    client.permit(peer_addr);

    let too_big = r#"tern_dropped_packets_total{reason="too_big"}"#;
    let malformed = r#"tern_dropped_packets_total{reason="malformed"}"#;
    let (big0, bad0) = (server.metric(too_big), server.metric(malformed));
    let huge = vec![0x5a; 65_507];
    peer_sock.send_to(&huge, relayed).unwrap();
    server.wait_metric(too_big, big0 + 1.0);

    // ChannelData on channel 0x4000 claiming 1,000 bytes, carrying 8.
    client.send_raw(&[0x40, 0x00, 0x03, 0xe8, 1, 2, 3, 4, 5, 6, 7, 8]);
    server.wait_metric(malformed, bad0 + 1.0);

    // A datagram that fits still goes through as a Data indication, both ways.
    peer_sock.send_to(b"fits", relayed).unwrap();
    assert_eq!(client.recv_relayed(peer_addr), Some((0, b"fits".to_vec())));
    client.send_indication(peer_addr, b"back");
    let mut buf = [0u8; 64];
    let (n, from) = peer_sock.recv_from(&mut buf).unwrap();
    assert_eq!((from, &buf[..n]), (relayed, &b"back"[..]));
    other.relay_over_channel(other_relayed, &other_peer, 5);
}

/// A peer that is gone: every datagram relayed to it draws an ICMP port unreachable, which
/// tern reads from the relay socket's error queue and counts
/// (`tern_io_errors_total{kind="icmp_port_unreachable"}`), logging nothing per packet. The
/// allocation survives, and a live peer of the same allocation, sent to in between, gets
/// every datagram (the error an ICMP leaves pending on the socket costs no other datagram).
#[test]
fn a_peer_answering_icmp_port_unreachable_is_counted_and_the_allocation_survives() {
    let server = tern(&[]);
    let (client, relayed, live) = session(&server, false);
    let gone = peer();
    let dead = gone.local_addr().unwrap();
    drop(gone);
    let mut client = client;
    client.bind_channel(0x4001, dead);

    let icmp = r#"tern_io_errors_total{kind="icmp_port_unreachable"}"#;
    let lines_before = server.output().lines().count();
    let mut buf = [0u8; 64];
    for i in 0..20u8 {
        client.send_channel(0x4001, &[i; 8]);
        client.send_channel(0x4000, &[i; 12]);
        let (n, from) = live
            .recv_from(&mut buf)
            .expect("the live peer gets every datagram");
        assert_eq!((from, &buf[..n]), (relayed, &[i; 12][..]), "datagram {i}");
        // Linux rate-limits ICMP errors to a host (about one every 1000/HZ·net.ipv4.icmp_ratelimit
        // ms, with a burst); pacing keeps each one answered.
        std::thread::sleep(Duration::from_millis(20));
    }
    let start = Instant::now();
    while server.metric(icmp) < 3.0 && start.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let counted = server.metric(icmp);
    assert!(
        counted >= 3.0,
        "{counted} ICMP port unreachable counted for 20 datagrams to a closed port"
    );
    assert!(counted <= 20.0, "{counted}");
    let receive_errors = server.metric(r#"tern_io_errors_total{kind="receive"}"#);
    assert_eq!(
        receive_errors, 0.0,
        "an ICMP report counted as a failed receive"
    );
    // The allocation relays on, both ways, and nothing was logged per datagram.
    client.relay_over_channel(relayed, &live, 5);
    let new_lines = server.output().lines().count() - lines_before;
    assert!(
        new_lines < 40,
        "{new_lines} log lines for 45 datagrams (debug level included)"
    );
}

/// A log destination that fails: tern's stdout and stderr are pipes whose reading ends are
/// closed, so every log line's write fails (EPIPE), as on a full disk. Allocations, which log
/// at info level on both workers, and relaying go on; the workers do not die with the log.
#[test]
fn a_log_destination_that_fails_stops_nothing() {
    let ports = PortBlock::reserve();
    let mut child = Command::new(tern_bin())
        .args(serve_args(&ports))
        .args([
            "--relay-threads=2".to_owned(),
            format!("--realm={REALM}"),
            "--allow-loopback-peers".to_owned(),
            "--verbose".to_owned(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tern");
    let addr = SocketAddr::from(([127, 0, 0, 1], ports.listen_port()));
    let start = Instant::now();
    while binding_request_once(addr, Duration::from_millis(200)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "tern did not start"
        );
    }
    // Close the reading ends: from now on every write of a log line fails.
    drop(child.stdout.take());
    drop(child.stderr.take());
    // Enough clients (each from its own port, so over both workers) to log on every worker.
    for round in 0..8 {
        let mut client = RawClient::new(addr, SECRET, REALM);
        let relayed = client.allocate_ok();
        let peer = peer();
        client.bind_channel(0x4000, peer.local_addr().unwrap());
        client.relay_over_channel(relayed, &peer, 3);
        assert_eq!(client.refresh(0), 0, "round {round}");
    }
    let (status, body) = http_get(
        SocketAddr::from(([127, 0, 0, 1], ports.admin_port())),
        "/healthz",
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(child.try_wait().unwrap().is_none(), "tern exited");
    let _ = child.kill();
    let _ = child.wait();
}
