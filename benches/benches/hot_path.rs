//! Per-packet cost of the codec and the core, without sockets: ChannelData both ways, a Send
//! indication, a Data indication, an authenticated Refresh and a Binding request.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use tern_bench::Fixture;
use tern_proto::{ClientOutput, PeerOutput, PEER_HEADROOM, PEER_TAILROOM};
use tern_wire::{attr, Class, MessageType, MessageWriter, Method, TransactionId};

fn channel_data(c: &mut Criterion) {
    let mut g = c.benchmark_group("channel_data");
    for size in [100usize, 1200] {
        let mut fx = Fixture::new();
        let mut reply = Vec::new();
        let mut datagram = vec![0x40, 0x00, (size >> 8) as u8, size as u8];
        datagram.resize(4 + size, 0xAB);
        assert!(matches!(
            fx.client(&datagram, &mut reply),
            ClientOutput::Relay { .. }
        ));
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(
            BenchmarkId::new("client_to_peer", size),
            &datagram,
            |b, d| b.iter(|| black_box(fx.client(black_box(d), &mut reply))),
        );
        let mut buf = vec![0u8; PEER_HEADROOM + size + PEER_TAILROOM];
        let (relayed, peer) = (fx.relayed, fx.peer);
        assert!(matches!(
            fx.server
                .handle_peer_datagram(fx.now, relayed, peer, &mut buf, size),
            PeerOutput::Forward { .. }
        ));
        g.bench_function(BenchmarkId::new("peer_to_client", size), |b| {
            b.iter(|| {
                black_box(fx.server.handle_peer_datagram(
                    fx.now,
                    relayed,
                    peer,
                    black_box(&mut buf),
                    size,
                ))
            })
        });
    }
    g.finish();
}

fn indications(c: &mut Criterion) {
    let mut g = c.benchmark_group("indications");
    let mut fx = Fixture::new();
    let mut reply = Vec::new();
    let mut send = Vec::new();
    MessageWriter::new(
        &mut send,
        MessageType::new(Method::SEND, Class::Indication),
        TransactionId([9; 12]),
    )
    .xor_address(attr::XOR_PEER_ADDRESS, fx.peer)
    .attr(attr::DATA, &[0xCD; 100]);
    assert!(matches!(
        fx.client(&send, &mut reply),
        ClientOutput::Relay { .. }
    ));
    g.bench_function("send_100", |b| {
        b.iter(|| black_box(fx.client(black_box(&send), &mut reply)))
    });
    // A peer without a channel gets Data indications.
    let other: std::net::SocketAddr = "198.51.100.7:50001".parse().unwrap();
    let mut buf = vec![0u8; PEER_HEADROOM + 100 + PEER_TAILROOM];
    let relayed = fx.relayed;
    assert!(matches!(
        fx.server
            .handle_peer_datagram(fx.now, relayed, other, &mut buf, 100),
        PeerOutput::Forward { .. }
    ));
    g.bench_function("data_100", |b| {
        b.iter(|| {
            black_box(fx.server.handle_peer_datagram(
                fx.now,
                relayed,
                other,
                black_box(&mut buf),
                100,
            ))
        })
    });
    g.finish();
}

fn requests(c: &mut Criterion) {
    let mut g = c.benchmark_group("requests");
    let mut fx = Fixture::new();
    let mut reply = Vec::new();
    let mut refresh = Vec::new();
    fx.signed(&mut refresh, Method::REFRESH, 4, |w| {
        w.u32(attr::LIFETIME, 600);
    });
    assert_eq!(fx.client(&refresh, &mut reply), ClientOutput::Reply);
    assert_eq!(
        tern_wire::Message::parse(&reply).unwrap().class(),
        Class::Success
    );
    g.bench_function("refresh_authenticated", |b| {
        b.iter(|| black_box(fx.client(black_box(&refresh), &mut reply)))
    });
    let mut binding = Vec::new();
    MessageWriter::new(
        &mut binding,
        MessageType::new(Method::BINDING, Class::Request),
        TransactionId([5; 12]),
    )
    .fingerprint();
    g.bench_function("binding", |b| {
        b.iter(|| black_box(fx.client(black_box(&binding), &mut reply)))
    });
    g.finish();
}

criterion_group!(benches, channel_data, indications, requests);
criterion_main!(benches);
