//! tern-only end-to-end checks against the built binary: `tern probe` against tern, garbage
//! that must not hurt anyone's allocation, the relay pool running dry and refilling, and a
//! relay port held by another process being skipped.
//!
//! The client here is a small raw one written on tern's codec: it is used for what the
//! independent clients cannot do (send garbage from an allocation's own 5-tuple, count
//! ports), while the independent clients' suites prove interoperability.

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use tern_e2e::{
    assert_probe_relayed, run_bounded, tern_bin, PortBlock, RawClient, ServerKind, ServerOptions,
    TestServer,
};
use tern_wire::{attr, Class, MessageType, MessageWriter, Method, TransactionId};

const SECRET: &str = "tern-only-secret";
const REALM: &str = "tern.test";

fn server(extra: &[&str]) -> TestServer {
    let mut options = ServerOptions::rest(SECRET, REALM);
    options.extra_args = extra.iter().map(|s| s.to_string()).collect();
    TestServer::start(ServerKind::Tern, &options)
}

fn probe(server: &TestServer, extra: &[&str]) -> tern_e2e::Output {
    let addr = server.addr().to_string();
    let mut args = vec!["probe", &addr, "--secret", SECRET, "--timeout", "2"];
    args.extend_from_slice(extra);
    run_bounded(Command::new(tern_bin()).args(args), Duration::from_secs(30))
}

#[test]
fn probe_passes_every_step_against_tern() {
    let mut server = server(&[]);
    let out = probe(&server, &[]);
    assert_probe_relayed(&out, "tern probe");
    server.assert_alive();
}

#[test]
fn probe_explains_peer_filtering() {
    let mut options = ServerOptions::rest(SECRET, REALM);
    options.allow_loopback_peers = false;
    let mut server = TestServer::start(ServerKind::Tern, &options);
    // The peer sits on 127.0.0.2: loopback, and not the relay's own address (tern's own
    // relayed addresses are always allowed, so a peer on 127.0.0.1 would pass here).
    let out = probe(&server, &["--peer-bind", "127.0.0.2"]);
    assert!(
        !out.success(),
        "the probe must fail when loopback peers are refused:\n{}",
        out.text
    );
    assert!(out.text.contains("403"), "{}", out.text);
    assert!(
        out.text.contains("peer filtering"),
        "no diagnosis in:\n{}",
        out.text
    );
    server.assert_alive();
}

/// Garbage from strangers and from the allocation's own 5-tuple is dropped or answered,
/// never fatal, and the allocation keeps working.
#[test]
fn garbage_never_hurts_a_live_allocation() {
    let mut server = server(&[]);
    let mut client = RawClient::new(server.addr(), SECRET, REALM);
    let relayed = client.allocate_ok();
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let (code, _) = client.request(Method::CREATE_PERMISSION, |w| {
        w.xor_address(attr::XOR_PEER_ADDRESS, peer_addr);
    });
    assert_eq!(code, 0);

    // A bounded flood of hostile shapes: random bytes, STUN headers with lying lengths,
    // ChannelData on unbound channels, truncated attributes; from a stranger and from the
    // client's own socket, to the listener and to the relayed address.
    let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..3000u32 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x % 120) as usize;
        let mut d: Vec<u8> = (0..len).map(|j| (x >> (j % 56)) as u8).collect();
        match i % 4 {
            0 if d.len() >= 20 => {
                d[0] = 0x00;
                d[1] = 0x03;
                d[4..8].copy_from_slice(&tern_wire::MAGIC_COOKIE.to_be_bytes());
            }
            1 if d.len() >= 4 => d[0] = 0x40 | (d[0] & 0x3F),
            _ => {}
        }
        let (from, to) = match i % 3 {
            0 => (&stranger, server.addr()),
            1 => (&client.sock, server.addr()),
            _ => (&stranger, relayed),
        };
        let _ = from.send_to(&d, to);
    }
    // Drain whatever the server answered to the client's garbage.
    client
        .sock
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 2048];
    while client.sock.recv_from(&mut buf).is_ok() {}
    client
        .sock
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    server.assert_alive();

    // The allocation still relays: a Send indication reaches the peer ...
    let mut send = Vec::new();
    MessageWriter::new(
        &mut send,
        MessageType::new(Method::SEND, Class::Indication),
        TransactionId([0xEE; 12]),
    )
    .xor_address(attr::XOR_PEER_ADDRESS, peer_addr)
    .attr(attr::DATA, b"still here");
    client.sock.send_to(&send, server.addr()).unwrap();
    let (n, from) = peer.recv_from(&mut buf).expect("the peer gets the data");
    assert_eq!(&buf[..n], b"still here");
    assert_eq!(from, relayed);
    // ... and it can still be refreshed.
    let (code, _) = client.request(Method::REFRESH, |w| {
        w.u32(attr::LIFETIME, 600);
    });
    assert_eq!(code, 0, "{}", server.output());
    server.assert_alive();
}

/// With two relay ports, two allocations fill the pool, the third gets 508, and deleting
/// one (Refresh LIFETIME 0) makes its port available to the next Allocate at once.
#[test]
fn pool_runs_dry_with_508_and_refills_at_once() {
    let block = PortBlock::reserve();
    let lo = *block.relay_range().start();
    let mut server = server(&[
        &format!("--min-port={lo}"),
        &format!("--max-port={}", lo + 1),
    ]);
    let mut a = RawClient::new(server.addr(), SECRET, REALM);
    let mut b = RawClient::new(server.addr(), SECRET, REALM);
    let mut c = RawClient::new(server.addr(), SECRET, REALM);
    let (ca, ra) = a.allocate();
    let (cb, rb) = b.allocate();
    assert_eq!((ca, cb), (0, 0));
    let mut ports = [ra.unwrap().port(), rb.unwrap().port()];
    ports.sort_unstable();
    assert_eq!(ports, [lo, lo + 1]);
    assert_eq!(c.allocate(), (508, None));
    let (code, _) = a.request(Method::REFRESH, |w| {
        w.u32(attr::LIFETIME, 0);
    });
    assert_eq!(code, 0);
    let (code, relayed) = c.allocate();
    assert_eq!(code, 0);
    assert_eq!(relayed, ra, "the freed port is handed out again at once");
    server.assert_alive();
}

/// A relay port another process holds is skipped with a warning, not fatal, and never
/// handed out.
#[test]
fn busy_relay_port_is_skipped_with_a_warning() {
    let block = PortBlock::reserve();
    let lo = *block.relay_range().start();
    let squatter = UdpSocket::bind(("127.0.0.1", lo)).expect("hold the first relay port");
    let mut server = server(&[
        &format!("--min-port={lo}"),
        &format!("--max-port={}", lo + 1),
    ]);
    let mut a = RawClient::new(server.addr(), SECRET, REALM);
    let (code, relayed) = a.allocate();
    assert_eq!(code, 0);
    assert_eq!(relayed.unwrap().port(), lo + 1);
    assert_eq!(
        RawClient::new(server.addr(), SECRET, REALM).allocate(),
        (508, None)
    );
    let out = server.output();
    assert!(
        out.contains("relay port unavailable") && out.contains(&lo.to_string()),
        "no warning about port {lo} in:\n{out}"
    );
    server.assert_alive();
    drop(squatter);
}
