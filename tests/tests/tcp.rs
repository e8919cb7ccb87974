//! TURN over TCP against tern (RFC 8656 §3.1): `tern probe --transport tcp` passes every
//! step, a closed connection frees its relay port at once, and a client that breaks the
//! stream framing loses its own connection and nobody else's allocation. (uclient over TCP,
//! against tern and coturn, is in turnutils.rs.)

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use tern_e2e::{
    assert_probe_relayed, http_get, run_bounded, tern_bin, RawClient, ServerKind, ServerOptions,
    TestServer,
};

const SECRET: &str = "tcp-e2e-secret";
const REALM: &str = "tern.test";

fn server(extra: &[String]) -> TestServer {
    let mut options = ServerOptions::rest(SECRET, REALM);
    options.extra_args = extra.to_vec();
    let server = TestServer::start(ServerKind::Tern, &options);
    server.wait_healthy(Duration::from_secs(5));
    server
}

fn peer() -> (UdpSocket, SocketAddr) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let a = s.local_addr().unwrap();
    (s, a)
}

#[test]
fn probe_over_tcp_passes_every_step_against_tern() {
    let mut server = server(&[]);
    let addr = server.addr().to_string();
    let args = [
        "probe",
        &addr,
        "--transport",
        "tcp",
        "--secret",
        SECRET,
        "--timeout",
        "2",
    ];
    let out = run_bounded(Command::new(tern_bin()).args(args), Duration::from_secs(30));
    assert_probe_relayed(&out, "tern probe --transport tcp");
    server.assert_alive();
}

#[test]
fn a_closed_connection_frees_its_relay_port_at_once() {
    // One relay port: the second allocation gets it only if the first one let it go.
    let block = tern_e2e::PortBlock::reserve();
    let port = *block.relay_range().start();
    let mut server = server(&[format!("--min-port={port}"), format!("--max-port={port}")]);
    let (peer_sock, peer_addr) = peer();
    let mut tcp = RawClient::tcp(server.addr(), SECRET, REALM);
    let relayed = tcp.allocate_ok();
    assert_eq!(relayed.port(), port);
    tcp.bind_channel(0x4000, peer_addr);
    tcp.relay_over_channel(relayed, &peer_sock, 20);
    server.wait_metric("tern_allocations{transport=\"tcp\",family=\"ipv4\"}", 1.0);
    server.wait_metric(
        "tern_relayed_packets_total{path=\"channel_data\",direction=\"to_peer\",transport=\"tcp\",family=\"ipv4\"}",
        20.0,
    );
    // While the TCP allocation lives, the one port is taken.
    let mut udp = RawClient::new(server.addr(), SECRET, REALM);
    assert_eq!(udp.allocate().0, 508, "the only port is held");
    drop(tcp);
    // Without waiting for any lifetime: the next Allocate gets the port (allow the server
    // the moment it takes to read the close).
    let start = Instant::now();
    let again = loop {
        match udp.allocate() {
            (0, Some(a)) => break a,
            (code, _) => {
                assert!(
                    start.elapsed() < Duration::from_secs(2),
                    "still {code} 2 s after the close"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    assert_eq!(again.port(), port);
    server.wait_metric(
        "tern_allocations_ended_total{reason=\"connection_closed\",relayed=\"true\",transport=\"tcp\",family=\"ipv4\"}",
        1.0,
    );
    server.wait_metric("tern_stream_closes_total{reason=\"peer_closed\"}", 1.0);
    server.wait_metric("tern_allocations{transport=\"udp\",family=\"ipv4\"}", 1.0);
    server.wait_metric("tern_allocations{transport=\"tcp\",family=\"ipv4\"}", 0.0);
    server.wait_metric("tern_connections", 0.0);
    server.assert_alive();
}

#[test]
fn a_bad_stream_closes_its_connection_only() {
    let mut server = server(&[]);
    let (peer_sock, peer_addr) = peer();
    let mut good = RawClient::tcp(server.addr(), SECRET, REALM);
    let relayed = good.allocate_ok();
    good.bind_channel(0x4000, peer_addr);
    good.relay_over_channel(relayed, &peer_sock, 5);
    // The first two bits 11: neither STUN nor ChannelData. The server closes at once.
    let bad = RawClient::tcp(server.addr(), SECRET, REALM);
    bad.send_raw(&[0xC0, 0, 0, 4, 1, 2, 3, 4]);
    let err = bad.recv().expect_err("the connection is closed");
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
        ),
        "{err:?}"
    );
    server.wait_metric("tern_stream_closes_total{reason=\"bad_first_byte\"}", 1.0);
    // The other client's allocation keeps relaying, over the same worker or another.
    good.relay_over_channel(relayed, &peer_sock, 20);
    assert_eq!(
        server.metric("tern_allocations{transport=\"tcp\",family=\"ipv4\"}"),
        1.0
    );
    server.assert_alive();
}

#[test]
fn a_client_that_does_not_read_loses_relayed_data_not_its_connection() {
    let mut server = server(&[]);
    let (peer_sock, peer_addr) = peer();
    let mut slow = RawClient::tcp(server.addr(), SECRET, REALM);
    let relayed = slow.allocate_ok();
    slow.bind_channel(0x4000, peer_addr);
    // The client reads nothing while its peer sends: the kernel's buffers fill, then the
    // connection's write queue (256 KiB), then relayed data is dropped and counted.
    let payload = [0x55u8; 1200];
    let series = "tern_dropped_packets_total{reason=\"client_backlog\"}";
    let mut dropped = 0.0;
    for round in 0..200 {
        for _ in 0..500 {
            peer_sock.send_to(&payload, relayed).unwrap();
        }
        std::thread::sleep(Duration::from_millis(10));
        dropped = server.metric(series);
        if dropped > 0.0 {
            break;
        }
        assert!(round < 199, "no backlog drop after 120 MB");
    }
    assert!(dropped > 0.0);
    assert_eq!(
        server.metric("tern_connections"),
        1.0,
        "the connection stays"
    );
    // Everything the client then reads is whole frames, and its allocation still works.
    for _ in 0..100 {
        let (ch, data) = slow.recv_relayed(peer_addr).expect("queued data arrives");
        assert_eq!((ch, data.len()), (0x4000, payload.len()));
    }
    assert_eq!(
        server.metric("tern_allocations{transport=\"tcp\",family=\"ipv4\"}"),
        1.0
    );
    server.assert_alive();
}

#[test]
fn a_drain_treats_tcp_allocations_as_udp_ones() {
    let mut server = server(&["--drain-timeout=15".to_owned()]);
    let (peer_sock, peer_addr) = peer();
    let mut tcp = RawClient::tcp(server.addr(), SECRET, REALM);
    let relayed = tcp.allocate_ok();
    tcp.bind_channel(0x4000, peer_addr);
    tcp.relay_over_channel(relayed, &peer_sock, 5);
    server.signal("TERM");
    let start = Instant::now();
    while http_get(server.admin_addr(), "/readyz").is_ok_and(|(code, _)| code == 200) {
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "/readyz still 200"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300)); // The workers take the drain.
                                                    // No new allocation over TCP while draining; the existing one relays and refreshes.
    let mut late = RawClient::tcp(server.addr(), SECRET, REALM);
    assert_eq!(late.allocate().0, 508);
    drop(late);
    tcp.relay_over_channel(relayed, &peer_sock, 50);
    assert_eq!(tcp.refresh(600), 0);
    assert!(
        server.wait_exit(Duration::from_millis(500)).is_none(),
        "exited while a TCP allocation lives"
    );
    // Its connection closes: that was the last allocation, so the drain is complete.
    drop(tcp);
    let status = server
        .wait_exit(Duration::from_secs(5))
        .expect("exits once the last (TCP) allocation ended");
    assert!(status.success(), "{status}");
    let out = server.output();
    assert!(out.contains("drain complete"), "{out}");
}
