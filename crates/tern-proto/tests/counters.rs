//! The core's counters move by exactly what happened.

mod common;

use common::*;
use tern_proto::counters::{AuthFailureReason, RequestMethod};
use tern_proto::{DropReason, Family, PathCount, RequestResult, TransportLabel};

fn request_count(h: &Harness, method: &str, result: u16) -> u64 {
    let m = RequestMethod::ALL
        .into_iter()
        .find(|x| x.label() == method)
        .unwrap();
    let r = RequestResult::ALL
        .into_iter()
        .find(|x| x.code() == result)
        .unwrap();
    h.server.counters().requests(m, r)
}

#[test]
fn relayed_packets_and_bytes_by_path() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("198.51.100.1:1000", "count");
    let relayed = c.allocate(&mut h);
    assert!(c.channel_bind(&mut h, 0x4000, peer_a()).is_success());
    assert!(c.create_permission(&mut h, &[peer_b()]).is_success());
    for i in 0..5 {
        c.channel_data(&mut h, 0x4000, &vec![1u8; 10 + i]);
        h.peer_datagram(relayed.port(), peer_a(), &[2u8; 7]);
    }
    for _ in 0..3 {
        c.send(&mut h, peer_b(), &[3u8; 20]);
        h.peer_datagram(relayed.port(), peer_b(), &[4u8; 30]);
    }
    let k = h.server.counters().clone();
    // Every count is under UDP, the client's transport, and IPv4, the relayed address's
    // family; TCP, TLS and IPv6 have none.
    let (udp, v4) = (TransportLabel::Udp.index(), Family::V4.index());
    let pc = |packets, bytes| PathCount { packets, bytes };
    assert_eq!(k.channel_to_peer[udp][v4], pc(5, 10 + 11 + 12 + 13 + 14));
    assert_eq!(k.channel_to_client[udp][v4], pc(5, 35));
    assert_eq!(k.send_to_peer[udp][v4], pc(3, 60));
    assert_eq!(k.data_to_client[udp][v4], pc(3, 90));
    assert_eq!(k.allocations_created, [[1, 0], [0, 0], [0, 0]]);
    for path in [
        k.channel_to_peer,
        k.channel_to_client,
        k.send_to_peer,
        k.data_to_client,
    ] {
        assert_eq!(PathCount::total(&path), path[udp][v4]);
    }
    assert_eq!(request_count(&h, "allocate", 401), 1, "the challenge");
    assert_eq!(request_count(&h, "allocate", 0), 1);
    assert_eq!(request_count(&h, "channel_bind", 0), 1);
    assert_eq!(request_count(&h, "create_permission", 0), 1);
    assert_eq!(k.auth_failures, [0; 4], "a challenge is not a failure");
}

#[test]
fn drops_auth_failures_and_ends_by_reason() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("198.51.100.1:1000", "count");
    let relayed = c.allocate(&mut h);
    // Drops: garbage, ChannelData on an unbound channel, data from a peer without permission.
    h.datagram(c.five, &[0xFF, 1, 2]);
    c.channel_data(&mut h, 0x4001, b"x");
    h.peer_datagram(relayed.port(), peer_b(), b"y");
    let dropped = |h: &Harness, r: DropReason| h.server.counters().dropped(r);
    assert_eq!(dropped(&h, DropReason::Malformed), 1);
    assert_eq!(dropped(&h, DropReason::NoChannel), 1);
    assert_eq!(dropped(&h, DropReason::NoPermission), 1);
    // An expired REST credential and a wrong key.
    let (expired, key) = rest_credential(SECRET, WALL - 1, "old");
    let mut e = Client::with_key("198.51.100.2:1000", &expired, key);
    assert_eq!(e.allocate_with(&mut h, None).code(), 401);
    let (user, _) = rest_credential(SECRET, WALL + 60, "bad");
    let mut b = Client::with_key("198.51.100.3:1000", &user, [9; 16]);
    assert_eq!(b.allocate_with(&mut h, None).code(), 401);
    let auth = |h: &Harness, r: AuthFailureReason| h.server.counters().auth_failures(r);
    assert_eq!(auth(&h, AuthFailureReason::ExpiredRestCredential), 1);
    assert_eq!(auth(&h, AuthFailureReason::BadIntegrity), 1);
    assert_eq!(
        request_count(&h, "allocate", 401),
        3 + 2,
        "three challenges, two failures"
    );
    // Ends: one deleted, one expired.
    let mut d = Client::rest("198.51.100.4:1000", "count");
    d.allocate(&mut h);
    assert!(d.refresh(&mut h, Some(0)).is_success());
    h.advance(601);
    assert_eq!(h.server.counters().created_total(), 2);
    assert_eq!(h.server.counters().live(TransportLabel::Udp, Family::V4), 0);
    assert_eq!(
        h.server.counters().allocations_ended[TransportLabel::Udp.index()],
        [[1, 1, 0, 0, 0], [0; 5]],
        "expired, deleted, shutdown, connection_closed, revoked"
    );
}
