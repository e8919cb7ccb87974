//! The bare forwarder's TCP path against the generator: `bare-forwarder` on a free loopback
//! port, `tern-load --target bare --transport tcp` through it to its echo peer and back. Closed
//! loads with and without padding relay without loss, and free their relay ports when they
//! end (the range holds exactly one load's sessions, and a second load gets them again); a
//! paced open load relays without loss too.

use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tern_e2e::{run_bounded, PortBlock};

mod common;
use common::field;

/// Sessions per load; the forwarder's relay range has exactly this many ports.
const SESSIONS: u16 = 3;

/// A running `bare-forwarder`, killed when dropped (it also ends by itself after 60 s).
struct Forwarder {
    child: Child,
    addr: SocketAddrV4,
}

impl Forwarder {
    /// Starts one on `block`'s listening port, relaying from [`SESSIONS`] ports of its
    /// relay range, and waits until it takes TCP connections.
    fn start(block: &PortBlock) -> Self {
        let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, block.listen_port());
        let min = *block.relay_range().start();
        let child = Command::new(env!("CARGO_BIN_EXE_bare-forwarder"))
            .args(["--listen", &addr.to_string(), "--relay-ip", "127.0.0.1"])
            .args(["--min-port", &min.to_string()])
            .args(["--max-port", &(min + SESSIONS - 1).to_string()])
            .args(["--max-seconds", "60"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start bare-forwarder");
        let forwarder = Self { child, addr };
        let end = Instant::now() + Duration::from_secs(10);
        // A probe connection: the forwarder accepts it and closes it when it goes.
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < end,
                "bare-forwarder did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        forwarder
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `tern-load --target bare --transport tcp` against `fwd` with `args`, its echo peer on
/// `block`'s peer port; returns its JSON line.
fn load(fwd: &Forwarder, block: &PortBlock, args: &[&str]) -> String {
    let out = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_tern-load"))
            .args(["--server", &fwd.addr.to_string()])
            .args(["--target", "bare", "--transport", "tcp"])
            .args(["--sessions", &SESSIONS.to_string()])
            .args(["--peer-port", &block.peer_port().to_string()])
            .args(["--duration", "2", "--warmup", "0.3", "--drain-ms", "300"])
            .args(["--server-pid", &fwd.child.id().to_string(), "--json"])
            .args(args),
        Duration::from_secs(20),
    );
    assert!(out.success(), "tern-load failed:\n{}", out.text);
    out.text
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line in:\n{}", out.text))
        .to_owned()
}

/// Relayed over TCP to the bare forwarder, every session set up, nothing lost or reordered.
fn assert_relayed_without_loss(json: &str) {
    assert!(json.contains("\"target\":\"bare\""), "{json}");
    assert!(json.contains("\"transport\":\"tcp\""), "{json}");
    assert_eq!(field(json, "sessions"), f64::from(SESSIONS), "{json}");
    assert!(field(json, "relayed") > 0.0, "{json}");
    assert!(field(json, "round_trips") > 0.0, "{json}");
    assert_eq!(field(json, "failures"), 0.0, "{json}");
    assert_eq!(field(json, "loss"), 0.0, "{json}");
    assert_eq!(field(json, "reordered"), 0.0, "{json}");
    assert!(field(json, "server_cpu_s") >= 0.0, "{json}");
}

#[test]
fn closed_loads_relay_through_the_bare_forwarder_over_tcp_and_free_their_ports() {
    let block = PortBlock::reserve();
    let fwd = Forwarder::start(&block);
    // 100 B: frames of 104 bytes, no padding.
    let json = load(&fwd, &block, &["--mode", "closed"]);
    assert_relayed_without_loss(&json);
    // 1201 B: three bytes of padding on each frame, both ways. The range holds only
    // SESSIONS ports, so this load gets them only if the first load's closed connections
    // gave them back.
    let json = load(&fwd, &block, &["--mode", "closed", "--size", "1201"]);
    assert_relayed_without_loss(&json);
    assert_eq!(field(&json, "size"), 1201.0, "{json}");
}

#[test]
fn an_open_load_relays_through_the_bare_forwarder_over_tcp() {
    let block = PortBlock::reserve();
    let fwd = Forwarder::start(&block);
    // 1202 B: two bytes of padding; 2,000 packets/s in all, paced.
    let json = load(
        &fwd,
        &block,
        &["--mode", "open", "--rate", "2000", "--size", "1202"],
    );
    assert_relayed_without_loss(&json);
    assert!(field(&json, "round_trips") > 1000.0, "{json}");
}
