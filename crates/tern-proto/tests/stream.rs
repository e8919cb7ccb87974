//! Clients over a stream connection (TCP or TLS): the 5-tuple names the connection, the data
//! paths work as over UDP, and a closed connection ends its allocation at once.

mod common;

use common::*;
use tern_proto::{
    ClientOutput, ConnId, EndReason, Event, FiveTuple, PeerOutput, Transport, TransportLabel,
};
use tern_wire::attr;

/// A client on stream connection `conn`, over TCP.
fn stream_client(client: &str, name: &str, conn: u32) -> Client {
    tls_client(client, name, conn, false)
}

/// A client on stream connection `conn`, over TLS if `tls`.
fn tls_client(client: &str, name: &str, conn: u32, tls: bool) -> Client {
    let mut c = Client::rest(client, name);
    c.five = FiveTuple {
        transport: Transport::Stream {
            conn: ConnId(conn),
            tls,
        },
        ..c.five
    };
    c
}

#[test]
fn allocate_over_a_stream_relays_udp_and_refuses_tcp_relaying() {
    let mut h = Harness::new(config());
    let mut c = stream_client("192.0.2.10:40000", "alice", 1);
    let relayed = c.allocate(&mut h);
    assert_eq!(h.stats().allocations, 1);
    // The reply went to the connection, not to a UDP listener.
    let created = h.events();
    assert!(
        created.iter().any(|e| matches!(
            e,
            Event::AllocationCreated { five_tuple, .. } if *five_tuple == c.five
        )),
        "{created:?}"
    );
    // REQUESTED-TRANSPORT TCP (RFC 6062) is not offered: 442.
    let mut d = stream_client("192.0.2.11:40000", "bob", 2);
    d.challenge(&mut h, tern_wire::Method::ALLOCATE);
    let r = d.request(&mut h, tern_wire::Method::ALLOCATE, &|w| {
        w.attr(attr::REQUESTED_TRANSPORT, &[6, 0, 0, 0]);
    });
    assert_eq!(r.code(), 442, "{:?}", r.error());
    assert_eq!(h.stats().allocations, 1);
    assert_ne!(relayed.port(), 0);
}

#[test]
fn channel_data_and_send_relay_over_a_stream() {
    let mut h = Harness::new(config());
    let mut c = stream_client("192.0.2.10:40000", "alice", 1);
    let port = c.allocate(&mut h).port();
    assert!(c.create_permission(&mut h, &[peer_a()]).is_success());
    let (out, _) = c.send(&mut h, peer_a(), b"hello");
    assert!(
        matches!(out, ClientOutput::Relay { peer, .. } if peer == peer_a()),
        "{out:?}"
    );
    assert!(c.channel_bind(&mut h, 0x4000, peer_b()).is_success());
    let out = c.channel_data(&mut h, 0x4000, b"abc");
    assert!(
        matches!(out, ClientOutput::Relay { peer, ref payload, .. } if peer == peer_b() && *payload == (4..7)),
        "{out:?}"
    );
    // The peer's answer goes to the connection's 5-tuple, framed as ChannelData.
    let (out, framed) = h.peer_datagram(port, peer_b(), b"xyz");
    let PeerOutput::Forward { five_tuple, .. } = out else {
        panic!("{out:?}")
    };
    assert_eq!(five_tuple, c.five);
    assert_eq!(framed, channel_data(0x4000, b"xyz"));
}

#[test]
fn a_closed_connection_ends_its_allocation_at_once_and_frees_the_port() {
    let mut cfg = config();
    cfg.relay_port_range = 50000..=50000;
    cfg.relay_ports[tern_proto::Family::V4.index()] = vec![50000];
    let mut h = Harness::new(cfg);
    let mut c = stream_client("192.0.2.10:40000", "alice", 1);
    let port = c.allocate(&mut h).port();
    assert!(c.channel_bind(&mut h, 0x4000, peer_b()).is_success());
    // A second client on another connection, holding nothing yet.
    let mut d = stream_client("192.0.2.10:40001", "bob", 2);
    h.outputs();
    h.server.handle_connection_closed(h.now, c.five);
    let outs = h.outputs();
    // Channels unbound, then the release, then the event.
    assert!(matches!(outs[0], Seen::ChannelUnbound(_)), "{outs:?}");
    assert!(
        matches!(outs[1], Seen::Release { relayed, .. } if relayed.port == port),
        "{outs:?}"
    );
    assert!(
        matches!(&outs[2], Seen::Event(Event::AllocationEnded { reason: EndReason::ConnectionClosed, five_tuple, .. }) if *five_tuple == c.five),
        "{outs:?}"
    );
    assert_eq!(outs.len(), 3, "{outs:?}");
    assert!(!outs.iter().any(|o| matches!(o, Seen::Transmit { .. })));
    assert_eq!(h.stats().allocations, 0);
    assert_eq!(
        h.server.counters().ended_total(EndReason::ConnectionClosed),
        1
    );
    // The one port is free again without waiting: the other connection gets it.
    assert_eq!(d.allocate(&mut h).port(), port);
    // Closing a connection without an allocation, or twice, queues nothing.
    h.outputs();
    h.server.handle_connection_closed(h.now, c.five);
    assert!(h.outputs().is_empty());
    // The other client keeps relaying.
    assert!(d.channel_bind(&mut h, 0x4001, peer_a()).is_success());
    let (out, _) = h.peer_datagram(port, peer_a(), b"still");
    assert!(
        matches!(out, PeerOutput::Forward { five_tuple, .. } if five_tuple == d.five),
        "{out:?}"
    );
}

#[test]
fn counters_keep_each_transport_apart() {
    let mut h = Harness::new(config());
    let mut udp = Client::rest("192.0.2.10:40000", "u");
    let mut tcp = tls_client("192.0.2.11:40000", "t", 1, false);
    let mut tls = tls_client("192.0.2.12:40000", "s", 2, true);
    let mut relayed = Vec::new();
    for c in [&mut udp, &mut tcp, &mut tls] {
        relayed.push(c.allocate(&mut h));
        assert!(c.create_permission(&mut h, &[peer_a()]).is_success());
    }
    // TLS relays twice each way, TCP once, UDP not at all.
    for (c, r, n) in [(&mut tcp, relayed[1], 1), (&mut tls, relayed[2], 2)] {
        for _ in 0..n {
            c.send(&mut h, peer_a(), &[1u8; 10]);
            h.peer_datagram(r.port(), peer_a(), &[2u8; 20]);
        }
    }
    let k = h.server.counters().clone();
    let [u, t, s] = TransportLabel::ALL.map(TransportLabel::index);
    let v4 = tern_proto::Family::V4.index();
    assert_eq!(k.allocations_created, [[1, 0], [1, 0], [1, 0]]);
    assert_eq!(
        [
            k.send_to_peer[u][v4].packets,
            k.send_to_peer[t][v4].packets,
            k.send_to_peer[s][v4].packets
        ],
        [0, 1, 2]
    );
    assert_eq!(
        [
            k.data_to_client[u][v4].bytes,
            k.data_to_client[t][v4].bytes,
            k.data_to_client[s][v4].bytes
        ],
        [0, 20, 40]
    );
    // Allocate (401, then success) and CreatePermission, once per client.
    for i in [u, t, s] {
        let requests: u64 = k.requests[i].as_flattened().iter().sum();
        assert_eq!(requests, 3, "transport {i}");
    }
    h.server.handle_connection_closed(h.now, tls.five);
    let k = h.server.counters();
    assert_eq!(
        k.allocations_ended[s][v4][EndReason::ConnectionClosed.index()],
        1
    );
    assert_eq!(
        TransportLabel::ALL.map(|l| k.live(l, tern_proto::Family::V4)),
        [1, 1, 0],
        "the TLS allocation ended with its connection"
    );
}
