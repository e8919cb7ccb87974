//! The coturn server the suites probe, and how they run `tern probe`.
use std::net::{Ipv4Addr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tern_e2e::prereq;
use tern_wire::{Class, Message, MessageType, MessageWriter, Method, TransactionId};

pub const SECRET: &str = "s3cret";
const REALM: &str = "probe.test";
const BLOCK: u16 = 64;

/// A coturn `turnserver` on 127.0.0.1, killed on drop (also when a test panics).
pub struct Coturn {
    child: Child,
    /// UDP and TCP.
    pub port: u16,
    /// TLS, when started with [`Listeners::Tls`].
    pub tls_port: u16,
    dir: PathBuf,
}

/// Which client listeners coturn opens besides UDP on [`Coturn::port`].
pub enum Listeners {
    /// UDP only (`--no-tcp --no-tls`).
    Udp,
    /// TCP on the same port.
    Tcp,
    /// TCP, and TLS on [`Coturn::tls_port`] with this certificate chain and key.
    Tls { cert: PathBuf, pkey: PathBuf },
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Reserves a free block of 64 loopback ports (listener first, TLS listener second, relay
/// range from +16).
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
        let tcp_free = |p| TcpListener::bind((Ipv4Addr::LOCALHOST, p)).is_ok();
        if !taken.contains(&base)
            && (base..base + BLOCK).all(free)
            && (base..base + 2).all(tcp_free)
        {
            taken.push(base);
            return base;
        }
    }
    panic!("no free block of {BLOCK} loopback ports in 20000..32768");
}

/// Starts coturn on UDP with `auth` flags; `None` (after a printed note) if it is not
/// installed.
pub fn coturn(auth: &[&str], allow_loopback_peers: bool) -> Option<Coturn> {
    coturn_with(auth, allow_loopback_peers, Listeners::Udp)
}

/// Starts coturn with `auth` flags and `listeners`.
pub fn coturn_with(
    auth: &[&str],
    allow_loopback_peers: bool,
    listeners: Listeners,
) -> Option<Coturn> {
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
        .args(["--no-dtls", "--no-cli", "--fingerprint"])
        .args(["--log-file=stdout", "--simple-log"])
        .arg(format!("--pidfile={}", dir.join("pid").display()))
        .arg(format!("--userdb={}", dir.join("turndb").display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if allow_loopback_peers {
        cmd.arg("--allow-loopback-peers");
    }
    let tls_port = port + 1;
    match &listeners {
        Listeners::Udp => {
            cmd.args(["--no-tcp", "--no-tls"]);
        }
        Listeners::Tcp => {
            cmd.arg("--no-tls");
        }
        Listeners::Tls { cert, pkey } => {
            cmd.arg(format!("--tls-listening-port={tls_port}"))
                .arg(format!("--cert={}", cert.display()))
                .arg(format!("--pkey={}", pkey.display()));
        }
    }
    let server = Coturn {
        child: cmd.spawn().expect("start turnserver"),
        port,
        tls_port,
        dir,
    };
    wait_ready(port);
    match listeners {
        Listeners::Udp => {}
        Listeners::Tcp => wait_accepting(port),
        Listeners::Tls { .. } => wait_accepting(tls_port),
    }
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

/// Connects until `port` accepts TCP connections: at most 50 tries, 100 ms apart.
fn wait_accepting(port: u16) {
    for _ in 0..50 {
        let addr = (Ipv4Addr::LOCALHOST, port).into();
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return;
        }
        sleep(Duration::from_millis(100));
    }
    panic!("turnserver did not accept TCP on 127.0.0.1:{port} within 5 s");
}

/// Runs `tern probe ARGS` (bounded by the probe's own timeouts); returns exit code and stdout.
pub fn probe(args: &[&str]) -> (i32, String) {
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

/// `127.0.0.1:PORT`.
pub fn addr(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// A line of each step of a probe that passed them all.
pub const SUCCESS_STEPS: [&str; 10] = [
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

/// Asserts that the probe passed every step.
pub fn assert_success(code: i32, out: &str) {
    for step in SUCCESS_STEPS {
        assert!(out.contains(step), "missing {step:?}");
    }
    assert!(!out.contains("[FAIL]"));
    assert_eq!(code, 0);
}
