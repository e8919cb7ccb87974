//! Several workers' cores sharing one [`SharedState`]: one port pool, one set of
//! reservations, one set of quotas; nonces valid on every worker.

mod common;

use std::time::Instant;

use common::*;
use tern_proto::SharedState;
use tern_wire::{attr, Method};

fn two_workers(config: tern_proto::Config) -> (Harness, Harness) {
    #[allow(clippy::disallowed_methods)] // the clocks' origin
    let t0 = Instant::now();
    let shared = SharedState::new(config.relay_ports.clone(), 11);
    let a = Harness::worker(config.clone(), t0, shared.clone(), 0);
    let b = Harness::worker(config, t0, shared, 1);
    (a, b)
}

fn small_pool(ports: std::ops::RangeInclusive<u16>) -> tern_proto::Config {
    let mut c = config();
    c.relay_ports[tern_proto::Family::V4.index()] = ports.collect();
    c
}

#[test]
fn one_pool_for_all_workers() {
    let (mut a, mut b) = two_workers(small_pool(49152..=49153));
    let mut ca = Client::rest("198.51.100.1:1000", "a");
    let mut cb = Client::rest("198.51.100.2:1000", "b");
    let mut cc = Client::rest("198.51.100.3:1000", "c");
    let ra = ca.allocate(&mut a);
    let rb = cb.allocate(&mut b);
    assert_ne!(ra.port(), rb.port(), "workers never hand out the same port");
    // Both ports are taken, whichever worker asks.
    assert_eq!(cc.allocate_with(&mut a, None).code(), 508);
    assert_eq!(cc.allocate_with(&mut b, None).code(), 508);
    assert_eq!(a.stats().free_ports, 0);
    // Worker A frees its port; worker B hands it out at once.
    assert!(ca.refresh(&mut a, Some(0)).is_success());
    assert_eq!(b.stats().free_ports, 1);
    assert_eq!(cc.allocate(&mut b), ra);
}

#[test]
fn quotas_count_over_all_workers() {
    let mut c = config();
    c.total_quota = 2;
    c.user_quota = 1;
    let (mut a, mut b) = two_workers(c);
    let mut alice1 = Client::rest("198.51.100.1:1000", "alice");
    let mut alice2 = Client::rest("198.51.100.2:1000", "alice");
    let mut bob = Client::rest("198.51.100.3:1000", "bob");
    let mut carol = Client::rest("198.51.100.4:1000", "carol");
    alice1.allocate(&mut a);
    assert_eq!(
        alice2.allocate_with(&mut b, None).code(),
        486,
        "user quota over workers"
    );
    bob.allocate(&mut b);
    assert_eq!(
        carol.allocate_with(&mut a, None).code(),
        486,
        "total quota over workers"
    );
    assert!(bob.refresh(&mut b, Some(0)).is_success());
    carol.allocate(&mut a);
}

#[test]
fn reservation_made_on_one_worker_is_redeemed_on_another() {
    let (mut a, mut b) = two_workers(config());
    let mut rtp = Client::rest("198.51.100.1:1000", "rtp");
    let r = rtp.request(&mut a, Method::ALLOCATE, &|w| {
        w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        w.attr(attr::EVEN_PORT, &[0x80]);
    });
    assert!(r.is_success(), "{r:?}");
    let even = r.xor_address(attr::XOR_RELAYED_ADDRESS).unwrap().port();
    assert_eq!(even % 2, 0);
    let token = r.value(attr::RESERVATION_TOKEN).expect("RESERVATION-TOKEN");
    let mut rtcp = Client::rest("198.51.100.1:1001", "rtp");
    let r = rtcp.request(&mut b, Method::ALLOCATE, &|w| {
        w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        w.attr(attr::RESERVATION_TOKEN, &token);
    });
    assert!(r.is_success(), "{r:?}");
    assert_eq!(
        r.xor_address(attr::XOR_RELAYED_ADDRESS).unwrap().port(),
        even + 1
    );
}

#[test]
fn a_nonce_from_one_worker_is_valid_on_another() {
    let (mut a, mut b) = two_workers(config());
    let mut c = Client::rest("198.51.100.1:1000", "n");
    c.challenge(&mut a, Method::ALLOCATE);
    // The signed request lands on the other worker (as after a worker-count change).
    let r = c.allocate_with(&mut b, None);
    assert!(r.is_success(), "{r:?}");
}

/// Releases the harness saw since its outputs were last taken, after checking that every
/// `ChannelUnbound` of the allocation comes before them (a fast path removes its entries
/// there).
fn releases_after_unbinds(h: &mut Harness) -> Vec<tern_proto::RelayEndpoint> {
    let seen = h.outputs();
    let first_release = seen
        .iter()
        .position(|s| matches!(s, Seen::Release { .. }))
        .expect("a Release");
    assert!(
        seen[first_release..]
            .iter()
            .all(|s| !matches!(s, Seen::ChannelUnbound(_))),
        "every unbind comes before the release: {seen:?}"
    );
    assert!(seen[..first_release]
        .iter()
        .any(|s| matches!(s, Seen::ChannelUnbound(_))));
    seen.iter()
        .filter_map(|s| match s {
            Seen::Release { relayed, .. } => Some(*relayed),
            _ => None,
        })
        .collect()
}

#[test]
fn a_deferred_release_keeps_the_port_from_every_worker_until_acknowledged() {
    let (mut a, mut b) = two_workers(small_pool(49152..=49152));
    a.server.defer_port_release();
    b.server.defer_port_release();
    let mut ca = Client::rest("198.51.100.1:1000", "a");
    let mut cb = Client::rest("198.51.100.2:1000", "b");
    let ra = ca.allocate(&mut a);
    assert!(ca.channel_bind(&mut a, 0x4000, peer_a()).is_success());
    a.outputs();
    assert!(ca.refresh(&mut a, Some(0)).is_success());
    let released = releases_after_unbinds(&mut a);
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].port, ra.port());
    // Not acknowledged yet: the port is in nobody's pool, on either worker.
    assert_eq!(a.server.unreleased_ports(), 1);
    assert_eq!(b.stats().free_ports, 0);
    assert_eq!(cb.allocate_with(&mut b, None).code(), 508);
    // Another endpoint's acknowledgement frees nothing.
    a.server.handle_released(tern_proto::RelayEndpoint {
        family: tern_proto::Family::V4,
        port: 49153,
    });
    assert_eq!(b.stats().free_ports, 0);
    // The worker removed the entries: now the other worker may hand the port out.
    a.server.handle_released(released[0]);
    assert_eq!((a.server.unreleased_ports(), b.stats().free_ports), (0, 1));
    assert_eq!(cb.allocate(&mut b), ra);
    // A second acknowledgement never frees the port twice.
    a.server.handle_released(released[0]);
    assert_eq!(b.stats().free_ports, 0);
    let mut cc = Client::rest("198.51.100.3:1000", "c");
    assert_eq!(cc.allocate_with(&mut a, None).code(), 508);
}

#[test]
fn an_expired_allocation_holds_its_port_until_its_release_is_acknowledged() {
    let (mut a, mut b) = two_workers(small_pool(49152..=49152));
    a.server.defer_port_release();
    let mut ca = Client::rest("198.51.100.1:1000", "a");
    let ra = ca.allocate(&mut a);
    assert!(ca.channel_bind(&mut a, 0x4000, peer_a()).is_success());
    a.outputs();
    // Virtual time: the allocation (600 s) lapses with its channel bound and its
    // permission (300 s) kept.
    a.advance_to(290);
    assert!(ca.create_permission(&mut a, &[peer_a()]).is_success());
    a.advance_to(580);
    assert!(ca.create_permission(&mut a, &[peer_a()]).is_success());
    a.outputs();
    a.advance_to(599);
    assert!(a.outputs().is_empty());
    assert_eq!(a.stats().free_ports, 0);
    a.advance_to(601);
    let released = releases_after_unbinds(&mut a);
    assert_eq!(a.stats().allocations, 0);
    assert_eq!(a.stats().free_ports, 0, "held until acknowledged");
    for r in released {
        a.server.handle_released(r);
    }
    assert_eq!(a.stats().free_ports, 1);
    b.advance_to(601);
    let mut cb = Client::rest("198.51.100.2:1000", "b");
    assert_eq!(cb.allocate(&mut b), ra);
}

#[test]
fn without_deferral_a_port_is_free_when_its_allocation_ends() {
    let (mut a, b) = two_workers(small_pool(49152..=49152));
    let mut ca = Client::rest("198.51.100.1:1000", "a");
    ca.allocate(&mut a);
    assert!(ca.refresh(&mut a, Some(0)).is_success());
    assert_eq!(a.server.unreleased_ports(), 0);
    assert_eq!(b.stats().free_ports, 1);
}
