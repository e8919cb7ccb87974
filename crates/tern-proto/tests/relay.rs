//! CreatePermission, ChannelBind, and data both ways: Send/Data indications and ChannelData.

mod common;

use std::net::SocketAddr;

use common::*;
use tern_proto::{ClientOutput, DropReason, PathCount, PeerOutput};
use tern_wire::{attr, Class, Message, Method};

fn allocated(config: tern_proto::Config) -> (Harness, Client, u16) {
    let mut h = Harness::new(config);
    let mut c = Client::rest("192.0.2.10:40000", "alice");
    let port = c.allocate(&mut h).port();
    (h, c, port)
}

#[test]
fn create_permission_installs_every_peer() {
    let (mut h, mut c, port) = allocated(config());
    let p3: SocketAddr = "5.6.7.8:53".parse().unwrap();
    let r = c.create_permission(&mut h, &[peer_a(), peer_b(), p3]);
    assert!(r.is_success(), "{r:?}");
    assert_eq!(r.method(), Method::CREATE_PERMISSION);
    assert_eq!(h.stats().permissions, 3);
    for p in [peer_a(), peer_b(), p3] {
        // Permissions are per IP: any port of the peer may send.
        let other_port = SocketAddr::new(p.ip(), 9);
        assert!(matches!(
            h.peer_datagram(port, other_port, b"x").0,
            PeerOutput::Forward { .. }
        ));
    }
    // Installing again refreshes, it does not duplicate.
    assert!(c.create_permission(&mut h, &[peer_a()]).is_success());
    assert_eq!(h.stats().permissions, 3);
}

#[test]
fn create_permission_needs_a_peer_and_is_all_or_nothing() {
    let (mut h, mut c, port) = allocated(config());
    assert_eq!(c.create_permission(&mut h, &[]).code(), 400);
    let refused: SocketAddr = "192.168.1.1:5000".parse().unwrap();
    let r = c.create_permission(&mut h, &[peer_a(), refused, peer_b()]);
    assert_eq!(r.code(), 403);
    assert_eq!(h.stats().permissions, 0, "none installed");
    assert_eq!(
        h.peer_datagram(port, peer_a(), b"x").0,
        PeerOutput::Drop(DropReason::NoPermission)
    );
}

#[test]
fn send_indication_needs_a_permission() {
    let (mut h, mut c, port) = allocated(config());
    let (out, _) = c.send(&mut h, peer_a(), b"hello");
    assert_eq!(out, ClientOutput::Drop(DropReason::NoPermission));
    assert!(c.create_permission(&mut h, &[peer_a()]).is_success());
    let (out, datagram) = c.send(&mut h, peer_a(), b"hello");
    let ClientOutput::Relay {
        relayed,
        peer,
        payload,
    } = out
    else {
        panic!("{out:?}");
    };
    assert_eq!((relayed, peer), (h.relayed(port), peer_a()));
    assert_eq!(&datagram[payload], b"hello");
    // Without DATA or XOR-PEER-ADDRESS a Send indication is dropped.
    let tid = c.fresh_tid();
    let ind = c.build(Method::SEND, Class::Indication, tid, false, &[], &|w| {
        w.xor_address(attr::XOR_PEER_ADDRESS, peer_a());
    });
    assert_eq!(
        h.datagram(c.five, &ind).0,
        ClientOutput::Drop(DropReason::Malformed)
    );
    // From a 5-tuple without allocation.
    let mut stranger = Client::rest("192.0.2.11:40000", "bob");
    assert_eq!(
        stranger.send(&mut h, peer_a(), b"x").0,
        ClientOutput::Drop(DropReason::NoAllocation)
    );
}

#[test]
fn peer_data_becomes_a_data_indication() {
    let (mut h, mut c, port) = allocated(config());
    assert_eq!(
        h.peer_datagram(port, peer_a(), b"hi").0,
        PeerOutput::Drop(DropReason::NoPermission)
    );
    assert!(c.create_permission(&mut h, &[peer_a()]).is_success());
    for len in 0..9 {
        let payload: Vec<u8> = (0..len as u8).map(|i| i + 1).collect();
        let (out, framed) = h.peer_datagram(port, peer_a(), &payload);
        let PeerOutput::Forward { five_tuple, .. } = out else {
            panic!("{out:?}");
        };
        assert_eq!(five_tuple, c.five);
        let (peer, data) = data_indication(&framed);
        assert_eq!((peer, data), (peer_a(), payload));
        assert!(Message::parse(&framed)
            .unwrap()
            .get(attr::FINGERPRINT)
            .is_none());
    }
    // A peer that writes from an IPv4-mapped address is the IPv4 peer.
    let mapped: SocketAddr = "[::ffff:93.184.216.34]:5000".parse().unwrap();
    let (out, framed) = h.peer_datagram(port, mapped, b"v4");
    assert!(matches!(out, PeerOutput::Forward { .. }));
    assert_eq!(data_indication(&framed).0, peer_a());
    // No allocation on that relay port.
    assert_eq!(
        h.peer_datagram(port.wrapping_add(1), peer_a(), b"x").0,
        PeerOutput::Drop(DropReason::NoAllocation)
    );
}

#[test]
fn data_indication_with_fingerprint() {
    let mut cfg = config();
    cfg.always_fingerprint = true;
    let (mut h, mut c, port) = allocated(cfg);
    assert!(c.create_permission(&mut h, &[peer_a()]).is_success());
    for payload in [&b""[..], b"a", b"abcde", b"abcdefgh"] {
        let (_, framed) = h.peer_datagram(port, peer_a(), payload);
        assert_eq!(data_indication(&framed), (peer_a(), payload.to_vec()));
        let msg = Message::parse(&framed).unwrap();
        assert_eq!(msg.check_fingerprint(), Some(true), "{payload:?}");
    }
}

#[test]
fn channel_numbers_outside_the_range_are_400() {
    let (mut h, mut c, _) = allocated(config());
    for n in [0x0000, 0x3FFF, 0x5000, 0x7FFF, 0xFFFF] {
        assert_eq!(c.channel_bind(&mut h, n, peer_a()).code(), 400, "{n:#06x}");
    }
    let r = c.request(&mut h, Method::CHANNEL_BIND, &|w| {
        w.attr(attr::CHANNEL_NUMBER, &[0x40, 0, 0, 0]);
    });
    assert_eq!(r.code(), 400, "XOR-PEER-ADDRESS is required");
    let r = c.request(&mut h, Method::CHANNEL_BIND, &|w| {
        w.xor_address(attr::XOR_PEER_ADDRESS, peer_a());
    });
    assert_eq!(r.code(), 400, "CHANNEL-NUMBER is required");
    let s = h.stats();
    assert_eq!((s.channels, s.permissions), (0, 0));
    assert!(c.channel_bind(&mut h, 0x4FFF, peer_a()).is_success());
}

#[test]
fn channel_data_both_ways() {
    let (mut h, mut c, port) = allocated(config());
    assert_eq!(
        c.channel_data(&mut h, 0x4000, b"early"),
        ClientOutput::Drop(DropReason::NoChannel)
    );
    let r = c.channel_bind(&mut h, 0x4000, peer_a());
    assert!(r.is_success(), "{r:?}");
    assert_eq!(r.method(), Method::CHANNEL_BIND);
    let s = h.stats();
    assert_eq!(
        (s.channels, s.permissions),
        (1, 1),
        "ChannelBind installs the permission"
    );

    assert_eq!(
        c.channel_data(&mut h, 0x4000, b"hello"),
        ClientOutput::Relay {
            relayed: h.relayed(port),
            peer: peer_a(),
            payload: 4..9
        }
    );
    // Padding after the payload is ignored.
    let padded = [0x40, 0x00, 0x00, 0x03, b'a', b'b', b'c', 0];
    assert_eq!(
        h.datagram(c.five, &padded).0,
        ClientOutput::Relay {
            relayed: h.relayed(port),
            peer: peer_a(),
            payload: 4..7
        }
    );
    // A length beyond the datagram is dropped.
    let short = [0x40, 0x00, 0x00, 0x0A, b'a', b'b'];
    assert_eq!(
        h.datagram(c.five, &short).0,
        ClientOutput::Drop(DropReason::Malformed)
    );
    assert_eq!(
        c.channel_data(&mut h, 0x4001, b"x"),
        ClientOutput::Drop(DropReason::NoChannel)
    );

    // Peer → client: ChannelData framed in place.
    let (out, framed) = h.peer_datagram(port, peer_a(), b"yo!");
    assert!(matches!(out, PeerOutput::Forward { five_tuple, .. } if five_tuple == c.five));
    assert_eq!(framed, [0x40, 0x00, 0x00, 0x03, b'y', b'o', b'!']);
    // The same IP from another port has the permission but not the channel.
    let (_, framed) = h.peer_datagram(port, SocketAddr::new(peer_a().ip(), 1), b"yo");
    assert_eq!(
        data_indication(&framed),
        (SocketAddr::new(peer_a().ip(), 1), b"yo".to_vec())
    );

    // ChannelData from a 5-tuple without allocation.
    let other = Client::rest("192.0.2.11:40000", "bob");
    assert_eq!(
        h.datagram(other.five, &channel_data(0x4000, b"x")).0,
        ClientOutput::Drop(DropReason::NoAllocation)
    );
}

#[test]
fn rebinding_rules() {
    let (mut h, mut c, port) = allocated(config());
    assert!(c.channel_bind(&mut h, 0x4000, peer_a()).is_success());
    assert!(
        c.channel_bind(&mut h, 0x4000, peer_a()).is_success(),
        "same pair refreshes"
    );
    assert_eq!(h.stats().channels, 1);
    assert_eq!(
        c.channel_bind(&mut h, 0x4000, peer_b()).code(),
        400,
        "channel taken"
    );
    assert_eq!(
        c.channel_bind(&mut h, 0x4001, peer_a()).code(),
        400,
        "peer taken"
    );
    // The same IP with another port is another peer transport address.
    let same_ip = SocketAddr::new(peer_a().ip(), peer_a().port() + 1);
    assert!(c.channel_bind(&mut h, 0x4001, same_ip).is_success());
    assert!(c.channel_bind(&mut h, 0x4002, peer_b()).is_success());
    let s = h.stats();
    assert_eq!((s.channels, s.permissions), (3, 2));
    assert_eq!(
        c.channel_data(&mut h, 0x4001, b"z"),
        ClientOutput::Relay {
            relayed: h.relayed(port),
            peer: same_ip,
            payload: 4..5
        }
    );
}

#[test]
fn per_allocation_limits_are_508() {
    let mut cfg = config();
    cfg.max_permissions_per_allocation = 2;
    cfg.max_channels_per_allocation = 1;
    let (mut h, mut c, _) = allocated(cfg);
    let p3: SocketAddr = "5.6.7.8:53".parse().unwrap();
    assert_eq!(
        c.create_permission(&mut h, &[peer_a(), peer_b(), p3])
            .code(),
        508
    );
    assert_eq!(h.stats().permissions, 0);
    assert!(c
        .create_permission(&mut h, &[peer_a(), peer_b()])
        .is_success());
    assert_eq!(c.create_permission(&mut h, &[p3]).code(), 508);
    assert!(c.channel_bind(&mut h, 0x4000, peer_a()).is_success());
    assert_eq!(c.channel_bind(&mut h, 0x4001, peer_b()).code(), 508);
}

#[test]
fn traffic_is_counted_per_allocation() {
    let (mut h, mut c, port) = allocated(config());
    assert!(c.channel_bind(&mut h, 0x4000, peer_a()).is_success());
    assert!(c.create_permission(&mut h, &[peer_b()]).is_success());
    c.channel_data(&mut h, 0x4000, b"hello");
    c.channel_data(&mut h, 0x4000, b"abc");
    c.send(&mut h, peer_b(), b"four");
    c.channel_data(&mut h, 0x4001, b"dropped");
    h.peer_datagram(port, peer_a(), b"12345678");
    h.peer_datagram(port, peer_b(), b"x");
    h.peer_datagram(port, "1.2.3.4:1".parse().unwrap(), b"no permission");
    h.events();
    assert!(c.refresh(&mut h, Some(0)).is_success());
    match h.events().as_slice() {
        [tern_proto::Event::AllocationEnded { traffic, .. }] => {
            assert_eq!(
                *traffic,
                tern_proto::Traffic {
                    packets_to_peers: 3,
                    bytes_to_peers: 12,
                    packets_to_client: 2,
                    bytes_to_client: 9,
                    peers: 2,
                }
            );
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn peer_datagrams_need_room_and_a_relay_port() {
    let (mut h, mut c, port) = allocated(config());
    assert!(c.create_permission(&mut h, &[peer_a()]).is_success());
    let mut buf = vec![0u8; tern_proto::PEER_HEADROOM + 4 + tern_proto::PEER_TAILROOM - 1];
    assert_eq!(
        h.server
            .handle_peer_datagram(h.now, h.relayed(port), peer_a(), &mut buf, 4),
        PeerOutput::Drop(DropReason::TooBig)
    );
    for other in [0, 1, *PORTS.start() - 1, *PORTS.end() + 1, u16::MAX] {
        assert_eq!(
            h.peer_datagram(other, peer_a(), b"x").0,
            PeerOutput::Drop(DropReason::NoAllocation),
            "{other}"
        );
    }
    // The largest payload a Data indication can carry still frames; one byte more is too big.
    let big = vec![7u8; tern_wire::DATA_INDICATION_MAX_PAYLOAD];
    let (out, framed) = h.peer_datagram(port, peer_a(), &big);
    assert!(matches!(out, PeerOutput::Forward { .. }), "{out:?}");
    assert_eq!(data_indication(&framed).1, big);
    let bigger = vec![7u8; tern_wire::DATA_INDICATION_MAX_PAYLOAD + 1];
    assert_eq!(
        h.peer_datagram(port, peer_a(), &bigger).0,
        PeerOutput::Drop(DropReason::TooBig)
    );
}

#[test]
fn ipv6_relay() {
    let mut cfg = tern_proto::Config::new(REALM, "2001:db8::1".parse().unwrap(), PORTS);
    cfg.auth_secrets = vec![SECRET.to_vec()];
    cfg.always_fingerprint = true;
    let mut h = Harness::new(cfg);
    let mut c = Client::rest("192.0.2.10:40000", "alice");
    let r = c.request(&mut h, Method::ALLOCATE, &|w| {
        w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        w.attr(
            attr::REQUESTED_ADDRESS_FAMILY,
            &[attr::FAMILY_IPV4, 0, 0, 0],
        );
    });
    assert_eq!(r.code(), 440);
    // Without REQUESTED-ADDRESS-FAMILY the family is IPv4 (RFC 8656 §7.2): 440 too.
    assert_eq!(c.allocate_with(&mut h, None).code(), 440);
    let r = c.allocate_families(&mut h, Some(attr::FAMILY_IPV6), None);
    assert!(r.is_success(), "{r:?}");
    let relayed = r.xor_address(attr::XOR_RELAYED_ADDRESS).unwrap();
    assert_eq!(relayed.ip().to_string(), "2001:db8::1");
    let v6: SocketAddr = "[2606:4700::1111]:443".parse().unwrap();
    assert_eq!(c.create_permission(&mut h, &[peer_a()]).code(), 443);
    assert!(c.create_permission(&mut h, &[v6]).is_success());
    for payload in [&b""[..], b"a", b"abcdefg"] {
        let (_, framed) = h.peer_datagram(relayed.port(), v6, payload);
        assert_eq!(data_indication(&framed), (v6, payload.to_vec()));
        assert_eq!(
            Message::parse(&framed).unwrap().check_fingerprint(),
            Some(true)
        );
    }
    assert!(c.channel_bind(&mut h, 0x4abc, v6).is_success());
    let (_, framed) = h.peer_datagram(relayed.port(), v6, b"cd");
    assert_eq!(framed, [0x4a, 0xbc, 0, 2, b'c', b'd']);
}

#[test]
fn rfc5766_channel_numbers_are_opt_in() {
    let mut cfg = config();
    cfg.rfc5766_channels = true;
    let (mut h, mut c, port) = allocated(cfg);
    assert!(c.channel_bind(&mut h, 0x5000, peer_a()).is_success());
    assert!(c.channel_bind(&mut h, 0x7FFF, peer_b()).is_success());
    assert_eq!(c.channel_bind(&mut h, 0x8000, peer_a()).code(), 400);
    assert_eq!(c.channel_bind(&mut h, 0x3FFF, peer_a()).code(), 400);
    assert_eq!(
        c.channel_data(&mut h, 0x7FFF, b"hi"),
        ClientOutput::Relay {
            relayed: h.relayed(port),
            peer: peer_b(),
            payload: 4..6
        }
    );
    let (_, framed) = h.peer_datagram(port, peer_a(), b"yo");
    assert_eq!(framed, [0x50, 0x00, 0, 2, b'y', b'o']);
}

/// `max_bps` of 1000 B/s: each direction of each allocation has its own budget, a full budget
/// passes one second's worth and one datagram more, the rest is dropped as rate-limited and
/// not counted as relayed, and the budget comes back with time.
#[test]
fn max_bps_limits_each_direction_of_each_allocation() {
    let mut cfg = config();
    cfg.max_bps = 1000;
    let (mut h, mut c, port) = allocated(cfg);
    assert!(c.channel_bind(&mut h, 0x4000, peer_a()).is_success());
    let payload = [0x55u8; 100];

    let to_peer = |h: &mut Harness, c: &mut Client, n: usize| {
        (0..n)
            .filter(|_| match c.channel_data(h, 0x4000, &payload) {
                ClientOutput::Relay { .. } => true,
                ClientOutput::Drop(DropReason::RateLimited) => false,
                other => panic!("{other:?}"),
            })
            .count()
    };
    let to_client = |h: &mut Harness, n: usize| {
        (0..n)
            .filter(|_| match h.peer_datagram(port, peer_a(), &payload).0 {
                PeerOutput::Forward { .. } => true,
                PeerOutput::Drop(DropReason::RateLimited) => false,
                other => panic!("{other:?}"),
            })
            .count()
    };
    assert_eq!(to_peer(&mut h, &mut c, 20), 11);
    // A Send indication spends the same client → peer budget.
    assert_eq!(
        c.send(&mut h, peer_a(), &payload).0,
        ClientOutput::Drop(DropReason::RateLimited)
    );
    // The other direction has its own.
    assert_eq!(to_client(&mut h, 20), 11);

    // Another allocation is not touched by this one's budget.
    let mut bob = Client::rest("192.0.2.11:40000", "bob");
    bob.allocate(&mut h);
    assert!(bob.channel_bind(&mut h, 0x4000, peer_a()).is_success());
    assert!(matches!(
        bob.channel_data(&mut h, 0x4000, &payload),
        ClientOutput::Relay { .. }
    ));

    let c0 = h.server.counters().clone();
    assert_eq!(c0.dropped(DropReason::RateLimited), 9 + 1 + 9);
    assert_eq!(PathCount::total(&c0.channel_to_peer).packets, 11 + 1);
    assert_eq!(PathCount::total(&c0.channel_to_client).packets, 11);

    // A tenth of a second earns 100 bytes: one datagram each way.
    h.now += std::time::Duration::from_millis(100);
    assert_eq!(to_peer(&mut h, &mut c, 5), 1);
    assert_eq!(to_client(&mut h, 5), 1);
    // A second earns a second's worth.
    h.advance(1);
    assert_eq!(to_peer(&mut h, &mut c, 20), 10);
    let (out, _) = c.send(&mut h, peer_a(), b"x");
    assert_eq!(out, ClientOutput::Drop(DropReason::RateLimited));
    h.advance(2);
    assert!(matches!(
        c.send(&mut h, peer_a(), &payload).0,
        ClientOutput::Relay { .. }
    ));
}

#[test]
fn no_limit_by_default() {
    let (mut h, mut c, port) = allocated(config());
    assert!(c.channel_bind(&mut h, 0x4000, peer_a()).is_success());
    let big = vec![0u8; 1200];
    for _ in 0..10_000 {
        assert!(matches!(
            c.channel_data(&mut h, 0x4000, &big),
            ClientOutput::Relay { .. }
        ));
        assert!(matches!(
            h.peer_datagram(port, peer_a(), &big).0,
            PeerOutput::Forward { .. }
        ));
    }
}
