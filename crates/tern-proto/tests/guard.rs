//! Floods and brute force in virtual time: unauthenticated answers per source, lockouts
//! after failed integrity checks, and that legitimate clients never notice either.

mod common;

use std::time::Duration;

use common::*;
use tern_proto::counters::{AuthFailureReason, RequestMethod};
use tern_proto::{
    ClientOutput, ConnId, DropReason, Event, FiveTuple, GuardConfig, LockoutTrigger, RequestResult,
    SharedState, Transport,
};
use tern_wire::{attr, Class, Method};

/// An unsigned Allocate, as the first message of every client.
fn unsigned_allocate(c: &mut Client) -> Vec<u8> {
    let tid = c.fresh_tid();
    c.build(Method::ALLOCATE, Class::Request, tid, false, &[], &|w| {
        w.attr(attr::REQUESTED_TRANSPORT, &[attr::TRANSPORT_UDP, 0, 0, 0]);
    })
}

/// A client whose REST credential was made with the wrong secret: every signed request
/// fails its integrity check.
fn guesser(client: &str, name: &str) -> Client {
    let (username, key) = rest_credential(b"wrong guess", WALL + 3600, name);
    Client::with_key(client, &username, key)
}

fn config_with(guard: GuardConfig) -> tern_proto::Config {
    let mut c = config();
    c.guard = guard;
    c
}

fn lockouts_of(n: u32, lockout_secs: u64) -> GuardConfig {
    GuardConfig {
        auth_failures: n,
        auth_failure_window: Duration::from_secs(60),
        lockout: Duration::from_secs(lockout_secs),
        ..GuardConfig::default()
    }
}

#[test]
fn a_flood_from_one_source_gets_its_burst_and_a_legitimate_client_is_untouched() {
    let mut h = Harness::new(config());
    let mut flooder = Client::rest("198.51.100.66:5000", "mallory");
    let mut answered = 0;
    for _ in 0..1000 {
        let req = unsigned_allocate(&mut flooder);
        match h.datagram(flooder.five, &req).0 {
            ClientOutput::Reply => answered += 1,
            ClientOutput::Drop(DropReason::UnauthorizedRateLimited) => {}
            other => panic!("{other:?}"),
        }
    }
    // The default: a burst of 100 at once (ten seconds of 10 a second).
    assert_eq!(answered, 100);
    let c = h.server.counters();
    assert_eq!(c.dropped(DropReason::UnauthorizedRateLimited), 900);
    // Dropped requests were not answered, so they are not counted as answered.
    assert_eq!(
        c.requests(RequestMethod::Allocate, RequestResult::Unauthorized),
        100
    );

    // Meanwhile a client elsewhere takes one 401 and succeeds, in the same instant.
    let mut alice = Client::rest("192.0.2.10:40000", "alice");
    alice.allocate(&mut h);

    // Binding success is not an error answer: never limited.
    for _ in 0..100 {
        let tid = flooder.fresh_tid();
        let req = flooder.build(Method::BINDING, Class::Request, tid, false, &[], &|_| {});
        assert!(flooder.exchange(&mut h, &req).is_success());
    }
    // The flooder's budget comes back at 10 a second.
    h.advance(1);
    let req = unsigned_allocate(&mut flooder);
    assert_eq!(h.datagram(flooder.five, &req).0, ClientOutput::Reply);
}

#[test]
fn many_clients_behind_one_address_each_get_their_challenge_at_the_default_rate() {
    let mut h = Harness::new(config());
    // Ten at once (a burst), then ten new clients every second for a minute: every one of
    // them gets its 401 and its allocation on the first try.
    for second in 0..60u32 {
        for i in 0..10u32 {
            let port = 10_000 + second * 10 + i;
            let mut c = Client::rest(&format!("198.51.100.20:{port}"), "office");
            c.allocate(&mut h);
            let r = c.refresh(&mut h, Some(0));
            assert!(r.is_success(), "{r:?}");
        }
        h.advance(1);
    }
    let c = h.server.counters();
    assert_eq!(c.dropped(DropReason::UnauthorizedRateLimited), 0);
    assert_eq!(c.created_total(), 600);
}

#[test]
fn every_unauthenticated_error_counts_and_authenticated_ones_do_not() {
    let mut h = Harness::new(config_with(GuardConfig {
        unauthorized_per_second: 3,
        ..GuardConfig::default()
    }));
    let mut alice = Client::rest("192.0.2.10:40000", "alice");
    alice.allocate(&mut h); // the challenge spends one
                            // Authenticated errors (here 437: a second Allocate) are answered however many.
    for _ in 0..20 {
        let r = alice.allocate_with(&mut h, None);
        assert_eq!(r.code(), 437);
    }
    // An unknown method (400) and a Binding with an unknown required attribute (420) spend
    // the same budget as 401s: 30 in a burst, one of them spent, then silence.
    let mut stranger = Client::rest("192.0.2.10:40001", "x");
    let tid = stranger.fresh_tid();
    let unknown_method = stranger.build(Method(0x00F), Class::Request, tid, false, &[], &|_| {});
    assert_eq!(stranger.exchange(&mut h, &unknown_method).code(), 400);
    let tid = stranger.fresh_tid();
    let bad_binding = stranger.build(Method::BINDING, Class::Request, tid, false, &[], &|w| {
        w.attr(0x7777, b"what");
    });
    assert_eq!(stranger.exchange(&mut h, &bad_binding).code(), 420);
    let mut more = 0;
    while h.datagram(stranger.five, &unknown_method).0 == ClientOutput::Reply {
        more += 1;
        assert!(more < 100);
    }
    assert_eq!(more, 30 - 3);
    for req in [&unknown_method, &bad_binding] {
        assert_eq!(
            h.datagram(stranger.five, req).0,
            ClientOutput::Drop(DropReason::UnauthorizedRateLimited)
        );
    }
}

#[test]
fn stream_clients_are_not_limited() {
    let mut h = Harness::new(config_with(GuardConfig {
        unauthorized_per_second: 1,
        ..GuardConfig::default()
    }));
    let mut c = Client::rest("198.51.100.66:5000", "mallory");
    c.five = FiveTuple {
        transport: Transport::Stream {
            conn: ConnId(7),
            tls: false,
        },
        ..c.five
    };
    for _ in 0..100 {
        let req = unsigned_allocate(&mut c);
        assert_eq!(h.datagram(c.five, &req).0, ClientOutput::Reply);
    }
}

#[test]
fn zero_turns_the_limit_off() {
    let mut h = Harness::new(config_with(GuardConfig {
        unauthorized_per_second: 0,
        ..GuardConfig::default()
    }));
    let mut c = Client::rest("198.51.100.66:5000", "mallory");
    for _ in 0..1000 {
        let req = unsigned_allocate(&mut c);
        assert_eq!(h.datagram(c.five, &req).0, ClientOutput::Reply);
    }
}

/// Fails `n` integrity checks from `c`, each answered 401.
fn fail(h: &mut Harness, c: &mut Client, n: usize) {
    for _ in 0..n {
        let r = c.allocate_with(h, None);
        assert_eq!(r.code(), 401, "{r:?}");
    }
}

#[test]
fn failures_from_one_source_lock_it_out_and_the_lockout_ends() {
    let mut h = Harness::new(config_with(lockouts_of(3, 30)));
    let mut mallory = guesser("198.51.100.7:5000", "alice");
    fail(&mut h, &mut mallory, 2);
    assert!(h.events().is_empty());
    fail(&mut h, &mut mallory, 1);
    let events = h.events();
    assert_eq!(
        events,
        vec![Event::AuthLockout {
            client: addr("198.51.100.7:5000"),
            trigger: LockoutTrigger::Source,
            failures: 3,
            window: Duration::from_secs(60),
            duration: Duration::from_secs(30),
        }]
    );
    assert_eq!(h.server.counters().lockouts(LockoutTrigger::Source), 1);
    assert_eq!(h.server.locked_out_sources(h.now), 1);
    assert_eq!(
        h.server
            .counters()
            .auth_failures(AuthFailureReason::BadIntegrity),
        3
    );

    // Now every request from that address is dropped, whoever sends it and whatever port:
    // the guess, and the right key too.
    let tid = mallory.fresh_tid();
    let guess = mallory.build(Method::ALLOCATE, Class::Request, tid, true, &[], &|w| {
        w.attr(attr::REQUESTED_TRANSPORT, &[attr::TRANSPORT_UDP, 0, 0, 0]);
    });
    assert_eq!(
        h.datagram(mallory.five, &guess).0,
        ClientOutput::Drop(DropReason::LockedOut)
    );
    let mut alice = Client::rest("198.51.100.7:6000", "alice");
    let req = unsigned_allocate(&mut alice);
    assert_eq!(
        h.datagram(alice.five, &req).0,
        ClientOutput::Drop(DropReason::LockedOut)
    );
    assert_eq!(h.server.counters().dropped(DropReason::LockedOut), 2);
    // Binding carries no credentials and is still answered.
    let tid = alice.fresh_tid();
    let binding = alice.build(Method::BINDING, Class::Request, tid, false, &[], &|_| {});
    assert!(alice.exchange(&mut h, &binding).is_success());
    // Another address is not affected.
    let mut bob = Client::rest("198.51.100.8:6000", "bob");
    bob.allocate(&mut h);

    // 30 s later the lockout is over and the right key works at once.
    h.advance(29);
    assert_eq!(
        h.datagram(alice.five, &req).0,
        ClientOutput::Drop(DropReason::LockedOut)
    );
    h.advance(1);
    alice.allocate(&mut h);
    assert!(h
        .events()
        .iter()
        .all(|e| !matches!(e, Event::AuthLockout { .. })));
}

#[test]
fn a_hot_username_locks_out_each_further_source_that_fails_for_it() {
    let mut h = Harness::new(config_with(lockouts_of(3, 30)));
    for i in 1..=2 {
        let mut g = guesser(&format!("198.51.100.{i}:5000"), "alice");
        fail(&mut h, &mut g, 1);
    }
    assert!(h.events().is_empty());
    // The third failure for alice, from a third address, locks that address out ...
    let mut third = guesser("198.51.100.3:5000", "alice");
    fail(&mut h, &mut third, 1);
    // ... and so does the first failure of a fourth.
    let mut fourth = guesser("198.51.100.4:5000", "alice");
    fail(&mut h, &mut fourth, 1);
    let triggers: Vec<_> = h
        .events()
        .into_iter()
        .map(|e| match e {
            Event::AuthLockout {
                client, trigger, ..
            } => (client, trigger),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        triggers,
        vec![
            (addr("198.51.100.3:5000"), LockoutTrigger::Username),
            (addr("198.51.100.4:5000"), LockoutTrigger::Username),
        ]
    );
    assert_eq!(h.server.counters().lockouts(LockoutTrigger::Username), 2);
    // The first two addresses, which failed once each, are not locked out ...
    let mut dave = Client::rest("198.51.100.1:7000", "dave");
    dave.allocate(&mut h);
    // ... until they fail for the hot name again.
    let mut first = guesser("198.51.100.1:5000", "alice");
    fail(&mut h, &mut first, 1);
    assert_eq!(h.server.counters().lockouts(LockoutTrigger::Username), 3);
    let lockouts = h.events().into_iter();
    assert_eq!(
        lockouts
            .filter(|e| matches!(e, Event::AuthLockout { .. }))
            .count(),
        1
    );
    // The real alice, with the right key, is never refused for the failures of others.
    let mut alice = Client::rest("192.0.2.10:40000", "alice");
    alice.allocate(&mut h);
    // Another user is unaffected by alice's hot name.
    let mut g = guesser("198.51.100.9:5000", "bob");
    fail(&mut h, &mut g, 1);
    assert_eq!(h.server.counters().lockouts(LockoutTrigger::Username), 3);
    assert_eq!(h.server.counters().lockouts(LockoutTrigger::Source), 0);
}

#[test]
fn an_allocation_keeps_working_when_its_address_is_locked_out() {
    // A carrier-grade NAT: the user and the guesser share an address.
    let mut h = Harness::new(config_with(lockouts_of(3, 300)));
    let mut alice = Client::rest("198.51.100.7:6000", "alice");
    let relayed = alice.allocate(&mut h);
    let mut mallory = guesser("198.51.100.7:5000", "bob");
    fail(&mut h, &mut mallory, 3);
    assert_eq!(h.server.locked_out_sources(h.now), 1);
    // alice's 5-tuple refreshes, permits and binds with the key its allocation holds.
    assert!(alice.refresh(&mut h, None).is_success());
    assert!(alice.create_permission(&mut h, &[peer_a()]).is_success());
    assert!(alice.channel_bind(&mut h, 0x4000, peer_a()).is_success());
    assert_eq!(
        alice.channel_data(&mut h, 0x4000, b"media"),
        ClientOutput::Relay {
            relayed: h.relayed(relayed.port()),
            peer: peer_a(),
            payload: 4..9,
        }
    );
    // Other usernames on that 5-tuple are refused like any request from the address.
    let (username, key) = rest_credential(SECRET, WALL + 3600, "carol");
    let mut carol = alice.as_user(&username, key);
    let req = unsigned_allocate(&mut carol);
    assert_eq!(
        h.datagram(carol.five, &req).0,
        ClientOutput::Drop(DropReason::LockedOut)
    );
}

#[test]
fn failures_on_two_workers_add_up() {
    let config = config_with(lockouts_of(4, 30));
    let shared = SharedState::new(config.relay_ports.clone(), 11);
    let t0 = Harness::new(config.clone()).t0;
    let mut w0 = Harness::worker(config.clone(), t0, shared.clone(), 0);
    let mut w1 = Harness::worker(config, t0, shared, 1);
    // Two source ports of one address, hashed by the kernel to two workers.
    let mut a = guesser("198.51.100.7:5000", "alice");
    let mut b = guesser("198.51.100.7:5001", "alice");
    fail(&mut w0, &mut a, 2);
    fail(&mut w1, &mut b, 1);
    assert!(w0.events().is_empty() && w1.events().is_empty());
    fail(&mut w0, &mut a, 1);
    assert_eq!(w0.events().len(), 1);
    // Locked out on both.
    let req = unsigned_allocate(&mut b);
    assert_eq!(
        w1.datagram(b.five, &req).0,
        ClientOutput::Drop(DropReason::LockedOut)
    );
}

#[test]
fn unauthenticated_answers_are_counted_over_workers_too() {
    let config = config();
    let shared = SharedState::new(config.relay_ports.clone(), 12);
    let t0 = Harness::new(config.clone()).t0;
    let mut workers: Vec<Harness> = (0..4)
        .map(|i| Harness::worker(config.clone(), t0, shared.clone(), i))
        .collect();
    let mut answered = 0;
    for i in 0..400u16 {
        let mut c = Client::rest(&format!("198.51.100.66:{}", 1000 + i), "m");
        let req = unsigned_allocate(&mut c);
        let w = &mut workers[usize::from(i % 4)];
        answered += usize::from(w.datagram(c.five, &req).0 == ClientOutput::Reply);
    }
    assert_eq!(
        answered, 100,
        "one budget for the source, not one per worker"
    );
}

#[test]
fn an_unknown_user_counts_as_a_failed_check_and_an_expired_credential_does_not() {
    let mut cfg = config_with(lockouts_of(2, 30));
    cfg.auth_secrets.clear();
    cfg.users = vec![tern_proto::StaticUser {
        name: "alice".into(),
        secret: tern_proto::UserSecret::Password("right".into()),
    }];
    let mut h = Harness::new(cfg);
    let mut nobody = Client::password("198.51.100.7:5000", "nobody", "x");
    fail(&mut h, &mut nobody, 2);
    assert_eq!(h.server.counters().lockouts(LockoutTrigger::Source), 1);

    let mut h = Harness::new(config_with(lockouts_of(2, 30)));
    let (username, key) = rest_credential(SECRET, WALL - 1, "late");
    let mut late = Client::with_key("198.51.100.8:5000", &username, key);
    fail(&mut h, &mut late, 5);
    assert_eq!(h.server.counters().lockouts(LockoutTrigger::Source), 0);
}

#[test]
fn unauthenticated_errors_carry_no_reason_phrase_and_authenticated_ones_do() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("192.0.2.10:40000", "alice");
    let r = c.challenge(&mut h, Method::ALLOCATE);
    assert_eq!(r.error(), Some((401, String::new())));
    // 20 header + ERROR-CODE 8 + REALM 4 + "example.org" padded to 12 + NONCE 4 + 16.
    assert_eq!(r.bytes.len(), 20 + 8 + 16 + 20);
    let tid = c.fresh_tid();
    let req = c.build(Method::BINDING, Class::Request, tid, false, &[], &|w| {
        w.attr(0x7777, b"what");
    });
    assert_eq!(c.exchange(&mut h, &req).error(), Some((420, String::new())));
    c.allocate(&mut h);
    let r = c.allocate_with(&mut h, None);
    assert_eq!(r.error(), Some((437, "Allocation Mismatch".to_owned())));
}

#[test]
fn an_ipv6_slash_64_is_one_source_and_the_next_slash_64_another() {
    let mut h = Harness::new(config_with(GuardConfig {
        unauthorized_per_second: 1, // a burst of 10
        ..GuardConfig::default()
    }));
    let answered = |h: &mut Harness, client: &str| {
        let mut c = Client::rest(client, "x");
        let req = unsigned_allocate(&mut c);
        h.datagram(c.five, &req).0 == ClientOutput::Reply
    };
    // Twenty hosts of one /64 (an attacker picks any of its 2^64 addresses): one budget.
    let same: usize = (1..=20)
        .map(|i| usize::from(answered(&mut h, &format!("[2001:db8:0:1::{i:x}]:5000"))))
        .sum();
    assert_eq!(same, 10);
    // The neighbouring /64 has its own.
    assert!(answered(&mut h, "[2001:db8:0:2::1]:5000"));
    // An IPv4-mapped address is its IPv4 address.
    for _ in 0..10 {
        assert!(answered(&mut h, "192.0.2.44:5000"));
    }
    assert!(!answered(&mut h, "[::ffff:192.0.2.44]:5000"));
}
