//! What an ended allocation reports for its usage record: the username, the traffic, the
//! distinct peers it gave permissions to over its life, and whether it relayed at all (and
//! the counter of allocations that never did).

mod common;

use std::net::{IpAddr, SocketAddr};

use common::*;
use tern_proto::{EndReason, Event, Traffic, TransportLabel, PEERS_COUNTED};

fn ended(h: &mut Harness) -> (String, Traffic, EndReason) {
    let events = h.events();
    match events.as_slice() {
        [Event::AllocationEnded {
            username,
            traffic,
            reason,
            ..
        }] => (username.clone(), *traffic, *reason),
        e => panic!("{e:?}"),
    }
}

fn peer(i: u8, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::from([93, 184, 216, i]), port)
}

#[test]
fn peers_are_distinct_ips_over_the_allocation_life() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("192.0.2.10:40000", "alice");
    c.allocate(&mut h);
    // Two ports of one IP are one peer; a ChannelBind's implicit permission counts too.
    assert!(c
        .create_permission(&mut h, &[peer(1, 1000), peer(1, 2000), peer(2, 1000)])
        .is_success());
    assert!(c.channel_bind(&mut h, 0x4000, peer(3, 7)).is_success());
    // Refreshing a live permission is not a new peer.
    assert!(c.create_permission(&mut h, &[peer(1, 1000)]).is_success());
    // Permissions expire (300 s); coming back to a peer seen before is not a new one.
    // The allocation is refreshed so that it outlives them.
    h.advance(290);
    assert!(c.refresh(&mut h, Some(600)).is_success());
    h.advance(20);
    assert!(
        h.stats().permissions <= 1,
        "the first CreatePermission's permissions expired"
    );
    assert!(c
        .create_permission(&mut h, &[peer(2, 1000), peer(4, 1)])
        .is_success());
    h.events();
    assert!(c.refresh(&mut h, Some(0)).is_success());
    let (username, traffic, reason) = ended(&mut h);
    assert_eq!(traffic.peers, 4);
    assert!(!traffic.relayed());
    assert_eq!(reason, EndReason::Deleted);
    assert!(username.ends_with(":alice"), "{username}");
}

#[test]
fn peers_saturate() {
    let mut cfg = config();
    cfg.max_permissions_per_allocation = 200;
    let mut h = Harness::new(cfg);
    let mut c = Client::rest("192.0.2.10:40000", "alice");
    c.allocate(&mut h);
    let many: Vec<SocketAddr> = (1..=PEERS_COUNTED as u8 + 10).map(|i| peer(i, 9)).collect();
    for chunk in many.chunks(8) {
        assert!(c.create_permission(&mut h, chunk).is_success());
    }
    h.events();
    assert!(c.refresh(&mut h, Some(0)).is_success());
    assert_eq!(ended(&mut h).1.peers, PEERS_COUNTED as u32);
}

#[test]
fn never_relayed_allocations_are_counted_apart() {
    let mut h = Harness::new(config());
    let udp = TransportLabel::Udp.index();
    let v4 = tern_proto::Family::V4.index();
    let deleted = EndReason::Deleted.index();

    // One relays a datagram to its peer, then is deleted.
    let mut busy = Client::rest("192.0.2.10:40000", "alice");
    busy.allocate(&mut h);
    assert!(busy.create_permission(&mut h, &[peer_a()]).is_success());
    busy.send(&mut h, peer_a(), b"hello");
    h.events();
    assert!(busy.refresh(&mut h, Some(0)).is_success());
    let (_, traffic, _) = ended(&mut h);
    assert!(traffic.relayed());
    assert_eq!((traffic.packets_to_peers, traffic.bytes_to_peers), (1, 5));

    // One only receives from its peer: that is relaying too.
    let mut receiver = Client::rest("192.0.2.12:40000", "carol");
    let port = receiver.allocate(&mut h).port();
    assert!(receiver.create_permission(&mut h, &[peer_a()]).is_success());
    h.peer_datagram(port, peer_a(), b"in");
    h.events();
    assert!(receiver.refresh(&mut h, Some(0)).is_success());
    assert!(ended(&mut h).1.relayed());

    // One gets a permission and relays nothing.
    let mut idle = Client::rest("192.0.2.11:40000", "bob");
    idle.allocate(&mut h);
    assert!(idle.create_permission(&mut h, &[peer_b()]).is_success());
    h.events();
    assert!(idle.refresh(&mut h, Some(0)).is_success());
    let (username, traffic, _) = ended(&mut h);
    assert!(username.ends_with(":bob"));
    assert_eq!((traffic.relayed(), traffic.peers), (false, 1));

    let k = h.server.counters();
    assert_eq!(k.allocations_ended[udp][v4][deleted], 3);
    assert_eq!(k.allocations_ended_unrelayed[udp][v4][deleted], 1);
    assert_eq!(k.ended_unrelayed_total(EndReason::Deleted), 1);
    assert_eq!(k.ended_total(EndReason::Deleted), 3);

    // Expiry counts the same way.
    let mut late = Client::rest("192.0.2.13:40000", "dave");
    assert!(late.allocate_with(&mut h, Some(600)).is_success());
    h.events();
    h.advance(700);
    assert_eq!(ended(&mut h).2, EndReason::Expired);
    assert_eq!(
        h.server
            .counters()
            .ended_unrelayed_total(EndReason::Expired),
        1
    );
}
