//! The output queue's order is the seam's contract: a relay claim before the reply that names
//! its address, a channel bound before its success response, and an ended allocation's
//! channels unbound and relayed endpoint released after its last transmit. The data paths
//! queue nothing.

mod common;

use common::*;
use tern_proto::{
    AllocationId, ClientOutput, Config, Destination, EndReason, Event, PeerOutput, RelayEndpoint,
};
use tern_wire::{attr, Class, Method};

/// The relayed address a transmitted Allocate success names.
fn relayed_in(bytes: &[u8]) -> RelayEndpoint {
    let r = Response {
        bytes: bytes.to_vec(),
    };
    RelayEndpoint::of(
        r.xor_address(attr::XOR_RELAYED_ADDRESS)
            .expect("a relayed address"),
    )
}

/// Allocates for `c`; returns the outputs it queued and the claim's endpoint and handle.
fn allocate(h: &mut Harness, c: &mut Client) -> (Vec<Seen>, RelayEndpoint, AllocationId) {
    c.challenge(h, Method::ALLOCATE);
    h.outputs();
    c.allocate(h);
    let seen = h.outputs();
    let Some(Seen::Claim {
        relayed,
        allocation,
    }) = seen.first().cloned()
    else {
        panic!("the claim comes first: {seen:?}");
    };
    (seen, relayed, allocation)
}

#[test]
fn a_claim_comes_before_the_reply_that_names_its_address() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("192.0.2.10:40000", "alice");
    c.challenge(&mut h, Method::ALLOCATE);
    h.outputs();
    let tid = c.fresh_tid();
    let req = c.build(Method::ALLOCATE, Class::Request, tid, true, &[], &|w| {
        w.attr(attr::REQUESTED_TRANSPORT, &[attr::TRANSPORT_UDP, 0, 0, 0]);
    });
    assert!(c.exchange(&mut h, &req).is_success());
    match h.outputs().as_slice() {
        [Seen::Claim { relayed, .. }, Seen::Event(Event::AllocationCreated { five_tuple, .. }), Seen::Transmit {
            destination: Destination::Client(to),
            bytes,
        }] => {
            assert_eq!((*five_tuple, *to), (c.five, c.five));
            assert_eq!(
                relayed_in(bytes),
                *relayed,
                "the reply names the claimed endpoint"
            );
        }
        other => panic!("{other:?}"),
    }
    // A retransmitted Allocate is answered again, without a second claim.
    assert!(c.exchange(&mut h, &req).is_success());
    assert!(matches!(h.outputs().as_slice(), [Seen::Transmit { .. }]));
}

#[test]
fn a_channel_is_bound_before_its_success_response_and_data_queues_nothing() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("192.0.2.10:40000", "alice");
    let (_, relayed, allocation) = allocate(&mut h, &mut c);
    assert!(c.channel_bind(&mut h, 0x4000, peer_a()).is_success());
    match h.outputs().as_slice() {
        [Seen::ChannelBound(b), Seen::Transmit {
            destination: Destination::Client(to),
            ..
        }] => {
            assert_eq!(
                (
                    b.allocation,
                    b.five_tuple,
                    b.relayed,
                    b.number.get(),
                    b.peer
                ),
                (allocation, c.five, relayed, 0x4000, peer_a())
            );
            assert_eq!(*to, c.five);
        }
        other => panic!("{other:?}"),
    }
    // Refreshing a binding binds nothing new.
    assert!(c.channel_bind(&mut h, 0x4000, peer_a()).is_success());
    assert!(matches!(h.outputs().as_slice(), [Seen::Transmit { .. }]));
    // Both data paths decide at once and queue nothing.
    assert!(matches!(
        c.channel_data(&mut h, 0x4000, b"hi"),
        ClientOutput::Relay { .. }
    ));
    assert!(matches!(
        h.peer_datagram(relayed.port, peer_a(), b"yo").0,
        PeerOutput::Forward { .. }
    ));
    assert!(h.outputs().is_empty());
}

#[test]
fn a_deleted_allocation_is_released_after_its_last_reply() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("192.0.2.10:40000", "alice");
    let (_, relayed, allocation) = allocate(&mut h, &mut c);
    assert!(c.channel_bind(&mut h, 0x4000, peer_a()).is_success());
    h.outputs();
    let r = c.refresh(&mut h, Some(0));
    assert_eq!(r.lifetime(), Some(0));
    match h.outputs().as_slice() {
        [Seen::Transmit {
            destination: Destination::Client(to),
            bytes,
        }, Seen::ChannelUnbound(b), Seen::Release {
            relayed: released,
            allocation: a,
        }, Seen::Event(Event::AllocationEnded {
            reason: EndReason::Deleted,
            ..
        })] => {
            assert_eq!((*to, bytes), (c.five, &r.bytes), "the reply goes first");
            assert_eq!((b.number.get(), b.allocation), (0x4000, allocation));
            assert_eq!((*released, *a), (relayed, allocation));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn expiry_unbinds_channels_then_releases() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("192.0.2.10:40000", "alice");
    let (_, relayed, allocation) = allocate(&mut h, &mut c);
    assert!(c.channel_bind(&mut h, 0x4000, peer_a()).is_success());
    h.advance_to(290);
    assert!(c.refresh(&mut h, Some(900)).is_success());
    // The permission is kept (a lapsed one would unbind the channel at once).
    assert!(c.create_permission(&mut h, &[peer_a()]).is_success());
    h.advance_to(580);
    assert!(c.create_permission(&mut h, &[peer_a()]).is_success());
    h.outputs();
    // The channel lapses at 600 while the allocation lives on.
    h.advance_to(601);
    match h.outputs().as_slice() {
        [Seen::ChannelUnbound(b)] => assert_eq!((b.number.get(), b.peer), (0x4000, peer_a())),
        other => panic!("{other:?}"),
    }
    assert!(c.channel_bind(&mut h, 0x4001, peer_b()).is_success());
    h.advance_to(890);
    assert!(c.create_permission(&mut h, &[peer_b()]).is_success());
    h.advance_to(1180);
    assert!(c.create_permission(&mut h, &[peer_b()]).is_success());
    h.outputs();
    h.advance_to(1201);
    match h.outputs().as_slice() {
        [Seen::ChannelUnbound(b), Seen::Release {
            relayed: released,
            allocation: a,
        }, Seen::Event(Event::AllocationEnded {
            reason: EndReason::Expired,
            ..
        })] => {
            assert_eq!(b.number.get(), 0x4001);
            assert_eq!((*released, *a), (relayed, allocation));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_reused_port_gets_a_new_handle_and_stale_timers_change_nothing() {
    let mut cfg = Config::new(REALM, "203.0.113.1".parse().unwrap(), 50000..=50000);
    cfg.auth_secrets = vec![SECRET.to_vec()];
    let mut h = Harness::new(cfg);
    let mut a = Client::rest("192.0.2.10:40000", "alice");
    let mut b = Client::rest("192.0.2.11:40000", "bob");
    let (_, first, id_a) = allocate(&mut h, &mut a);
    // Alice's permission timer is due at 300; her allocation ends before that.
    assert!(a.create_permission(&mut h, &[peer_a()]).is_success());
    assert!(a.refresh(&mut h, Some(0)).is_success());
    h.advance_to(100);
    let (_, second, id_b) = allocate(&mut h, &mut b);
    assert_eq!(first, second, "one port, reused at once");
    assert_ne!(id_a, id_b, "a new allocation, a new handle");
    assert!(b.create_permission(&mut h, &[peer_a()]).is_success());
    h.outputs();
    // Alice's stale timer fires at 300 and leaves Bob's permission (due at 400) alone.
    h.advance_to(301);
    assert!(h.outputs().is_empty());
    assert_eq!(h.stats().permissions, 1);
    assert!(matches!(
        h.peer_datagram(second.port, peer_a(), b"x").0,
        PeerOutput::Forward { .. }
    ));
    h.advance_to(401);
    assert_eq!(h.stats().permissions, 0);
}

#[test]
fn shutdown_releases_every_allocation_after_unbinding() {
    let mut h = Harness::new(config());
    let mut clients: Vec<Client> = (0..3)
        .map(|i| Client::rest(&format!("192.0.2.{}:40000", 10 + i), "alice"))
        .collect();
    let mut claimed = Vec::new();
    for c in &mut clients {
        claimed.push(allocate(&mut h, c).1);
        assert!(c.channel_bind(&mut h, 0x4000, peer_a()).is_success());
    }
    h.outputs();
    h.server.shutdown(h.now);
    let seen = h.outputs();
    let mut released = Vec::new();
    for group in seen.chunks(3) {
        match group {
            [Seen::ChannelUnbound(b), Seen::Release { relayed, .. }, Seen::Event(Event::AllocationEnded {
                reason: EndReason::Shutdown,
                ..
            })] => {
                assert_eq!(b.relayed, *relayed);
                released.push(*relayed);
            }
            other => panic!("{other:?}"),
        }
    }
    released.sort_by_key(|r| r.port);
    claimed.sort_by_key(|r| r.port);
    assert_eq!(released, claimed);
}

/// A fast path relays a channel only while its peer has a permission: a lapsed permission
/// unbinds the channel for it at once, a new one binds it again, and the channel's own
/// expiry then says nothing more (one `ChannelUnbound` per `ChannelBound`).
#[test]
fn a_lapsed_permission_unbinds_its_channels_and_a_new_one_binds_them_again() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("192.0.2.10:40000", "alice");
    allocate(&mut h, &mut c);
    assert!(c.refresh(&mut h, Some(3600)).is_success());
    h.outputs();
    assert!(c.channel_bind(&mut h, 0x4000, peer_a()).is_success());
    assert!(matches!(
        h.outputs().as_slice(),
        [Seen::ChannelBound(_), Seen::Transmit { .. }]
    ));
    h.advance_to(301);
    match h.outputs().as_slice() {
        [Seen::ChannelUnbound(b)] => assert_eq!((b.number.get(), b.peer), (0x4000, peer_a())),
        other => panic!("{other:?}"),
    }
    // ChannelData on it is dropped now, as the fast path must.
    let mut data = vec![0x40, 0x00, 0x00, 0x04];
    data.extend_from_slice(b"ping");
    assert!(matches!(h.datagram(c.five, &data).0, ClientOutput::Drop(_)));
    assert!(c.create_permission(&mut h, &[peer_a()]).is_success());
    match h.outputs().as_slice() {
        [Seen::ChannelBound(b), Seen::Transmit { .. }] => {
            assert_eq!((b.number.get(), b.peer), (0x4000, peer_a()))
        }
        other => panic!("{other:?}"),
    }
    // Lapsing again at 601, then the channel's own expiry at 600 + 1: one unbind only.
    h.advance_to(650);
    let unbinds = h
        .outputs()
        .iter()
        .filter(|s| matches!(s, Seen::ChannelUnbound(_)))
        .count();
    assert_eq!(unbinds, 1);
    // Rebinding a channel whose permission lapsed binds it again, once.
    assert!(c.channel_bind(&mut h, 0x4001, peer_b()).is_success());
    h.advance_to(960);
    assert!(matches!(
        h.outputs().as_slice(),
        [.., Seen::ChannelUnbound(_)]
    ));
    assert!(c.channel_bind(&mut h, 0x4001, peer_b()).is_success());
    match h.outputs().as_slice() {
        [Seen::ChannelBound(b), Seen::Transmit { .. }] => {
            assert_eq!((b.number.get(), b.peer), (0x4001, peer_b()))
        }
        other => panic!("{other:?}"),
    }
}
