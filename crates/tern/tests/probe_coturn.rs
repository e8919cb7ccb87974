//! `tern probe` against coturn's `turnserver` on loopback: success with REST and long-term
//! credentials, and the diagnosis of each failure it is meant to explain.
//!
//! Network rule: every socket here binds and sends to 127.0.0.1 only. Each server gets its
//! own block of ports in 20000–32767, below Linux's ephemeral range, so no client socket
//! takes a relay port. Tests needing coturn skip with a note on stderr when `turnserver` is
//! not installed, and fail if `CI` is set (`tern_e2e::prereq`; CI installs coturn).
use std::net::{Ipv4Addr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tern_e2e::prereq;
use tern_wire::{Class, Message, MessageType, MessageWriter, Method, TransactionId};

const SECRET: &str = "s3cret";
const REALM: &str = "probe.test";
const BLOCK: u16 = 64;

/// A coturn `turnserver` on 127.0.0.1, killed on drop (also when a test panics).
struct Coturn {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Reserves a free block of 64 loopback ports (listener first, relay range from +16).
fn port_block() -> u16 {
    static TAKEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let blocks = (32_768 - 20_000) / BLOCK;
    let seed = (nanos ^ std::process::id().wrapping_mul(2_654_435_761)) as u16;
    for i in 0..blocks {
        let base = 20_000 + (seed.wrapping_add(i) % blocks) * BLOCK;
        let free = |p| UdpSocket::bind((Ipv4Addr::LOCALHOST, p)).is_ok();
        if !taken.contains(&base) && (base..base + BLOCK).all(free) {
            taken.push(base);
            return base;
        }
    }
    panic!("no free block of {BLOCK} loopback ports in 20000..32768");
}

/// Starts coturn with `auth` flags; `None` (after a printed note) if it is not installed.
fn coturn(auth: &[&str], allow_loopback_peers: bool) -> Option<Coturn> {
    let bin = prereq::tool("turnserver", prereq::COTURN_INSTALL)?;
    let port = port_block();
    let dir = std::env::temp_dir().join(format!("tern-probe-coturn-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("-n")
        .args(["--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1"])
        .arg(format!("--listening-port={port}"))
        .arg(format!("--min-port={}", port + 16))
        .arg(format!("--max-port={}", port + BLOCK - 1))
        .arg(format!("--realm={REALM}"))
        .args(auth)
        .args([
            "--no-tcp",
            "--no-tls",
            "--no-dtls",
            "--no-cli",
            "--fingerprint",
        ])
        .args(["--log-file=stdout", "--simple-log"])
        .arg(format!("--pidfile={}", dir.join("pid").display()))
        .arg(format!("--userdb={}", dir.join("turndb").display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if allow_loopback_peers {
        cmd.arg("--allow-loopback-peers");
    }
    let server = Coturn {
        child: cmd.spawn().expect("start turnserver"),
        port,
        dir,
    };
    wait_ready(port);
    Some(server)
}

/// Sends Binding requests until one is answered: at most 50 tries, 100 ms apart.
fn wait_ready(port: u16) {
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = Vec::new();
    let typ = MessageType::new(Method::BINDING, Class::Request);
    let len = MessageWriter::new(&mut buf, typ, TransactionId([7; 12])).finish();
    let mut answer = [0u8; 1500];
    for _ in 0..50 {
        let _ = sock.send_to(&buf[..len], (Ipv4Addr::LOCALHOST, port));
        match sock.recv_from(&mut answer) {
            Ok((n, _)) if Message::parse(&answer[..n]).is_ok() => return,
            Ok(_) => {}
            Err(_) => sleep(Duration::from_millis(100)),
        }
    }
    panic!("turnserver on 127.0.0.1:{port} did not answer within 5 s");
}

/// Runs `tern probe ARGS` (bounded by the probe's own timeouts); returns exit code and stdout.
fn probe(args: &[&str]) -> (i32, String) {
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_tern"))
        .arg("probe")
        .args(args)
        .env_remove("TERN_PROBE_SECRET")
        .env_remove("TERN_PROBE_PASSWORD")
        .output()
        .expect("run tern probe");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!(
        "tern probe {args:?} ({:?}):\n{stdout}{stderr}",
        start.elapsed()
    );
    (out.status.code().unwrap_or(-1), stdout)
}

fn addr(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

const SUCCESS_STEPS: [&str; 10] = [
    "[ok] binding: ",
    "reflexive address (XOR-MAPPED-ADDRESS) 127.0.0.1:",
    "[ok] allocate: relayed address (XOR-RELAYED-ADDRESS) 127.0.0.1:",
    "[ok] create-permission: ",
    "[ok] send-indication: the peer got",
    "[ok] data-indication: the client got",
    "[ok] channel-bind: channel 0x4000",
    "[ok] channel-data: the peer got",
    "[ok] channel-data: the client got",
    "[ok] refresh: allocation released",
];

fn assert_success(code: i32, out: &str) {
    for step in SUCCESS_STEPS {
        assert!(out.contains(step), "missing {step:?}");
    }
    assert!(!out.contains("[FAIL]"));
    assert_eq!(code, 0);
}

#[test]
fn rest_secret_relays_both_ways() {
    let auth = ["--use-auth-secret", "--static-auth-secret=s3cret"];
    let Some(server) = coturn(&auth, true) else {
        return;
    };
    let (code, out) = probe(&[&addr(server.port), "--secret", SECRET]);
    assert_success(code, &out);
    assert!(out.contains("lifetime 600 s, realm \"probe.test\""));
}

#[test]
fn long_term_user_relays_both_ways() {
    let auth = ["--lt-cred-mech", "--user=alice:wonderland"];
    let Some(server) = coturn(&auth, true) else {
        return;
    };
    let (code, out) = probe(&[
        &addr(server.port),
        "--user",
        "alice",
        "--password",
        "wonderland",
    ]);
    assert_success(code, &out);
}

#[test]
fn binding_only_without_credentials() {
    let Some(server) = coturn(&["--use-auth-secret", "--static-auth-secret=s3cret"], true) else {
        return;
    };
    let (code, out) = probe(&[&addr(server.port)]);
    assert_eq!(code, 0);
    assert!(out.contains("[ok] binding: reflexive address (XOR-MAPPED-ADDRESS) 127.0.0.1:"));
    assert!(out.contains("valid FINGERPRINT"));
    assert!(!out.contains("[ok] allocate"));
}

#[test]
fn wrong_secret_is_diagnosed() {
    let Some(server) = coturn(&["--use-auth-secret", "--static-auth-secret=s3cret"], true) else {
        return;
    };
    let (code, out) = probe(&[&addr(server.port), "--secret", "not-the-secret"]);
    assert_eq!(code, 1);
    assert!(out.contains("[FAIL] allocate: the server answered 401"));
    assert!(out.contains(
        "diagnosis: the server rejected the credentials: is the secret the server's \
         static-auth-secret, and are the clocks in sync?"
    ));
}

#[test]
fn refused_loopback_peer_is_diagnosed() {
    let Some(server) = coturn(&["--use-auth-secret", "--static-auth-secret=s3cret"], false) else {
        return;
    };
    let (code, out) = probe(&[&addr(server.port), "--secret", SECRET]);
    assert_eq!(code, 1);
    assert!(out.contains("[FAIL] create-permission: the server answered 403"));
    assert!(out.contains("diagnosis: the server refuses this peer address (peer filtering"));
    assert!(
        out.contains("[ok] refresh: allocation released"),
        "cleans up after a failure"
    );
}

/// A socket that never answers: the probe retransmits, then gives up at --timeout.
#[test]
fn silent_server_is_diagnosed() {
    let silent = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = silent.local_addr().unwrap().port();
    let start = Instant::now();
    let (code, out) = probe(&[&addr(port), "--timeout", "1.6", "--secret", SECRET]);
    assert_eq!(code, 1);
    let expected = format!(
        "diagnosis: no answer from 127.0.0.1:{port} over UDP within 1.6 s: is the server \
         running, is UDP {port} open/forwarded?"
    );
    assert!(out.contains(&expected));
    assert!(start.elapsed() < Duration::from_secs(10));
    // RFC 8489 retransmissions: sent at 0, 0.5 and 1.5 s.
    silent
        .set_read_timeout(Some(Duration::from_millis(10)))
        .unwrap();
    let mut buf = [0u8; 1500];
    let received = (0..10)
        .take_while(|_| silent.recv_from(&mut buf).is_ok())
        .count();
    assert_eq!(received, 3, "requests seen by the silent server");
}

/// Nothing bound on the port: the host answers ICMP port unreachable.
#[test]
fn no_server_is_diagnosed() {
    let port = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (code, out) = probe(&[&addr(port), "--timeout", "1"]);
    assert_eq!(code, 1);
    assert!(out.contains("[FAIL] binding: "));
    assert!(out.contains(&format!(
        "diagnosis: no answer from 127.0.0.1:{port} over UDP"
    )));
}
