//! Allocate, lifetime negotiation, Refresh, the port pool and quotas.

mod common;

use common::*;
use tern_proto::{Config, EndReason, Event, Family};
use tern_wire::{attr, Integrity, Method};

fn udp(w: &mut tern_wire::MessageWriter) {
    w.attr(attr::REQUESTED_TRANSPORT, &[attr::TRANSPORT_UDP, 0, 0, 0]);
}

#[test]
fn challenge_then_success() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("192.0.2.10:40000", "alice");
    let r = c.challenge(&mut h, Method::ALLOCATE);
    assert_eq!(r.code(), 401);
    assert_eq!(r.value(attr::REALM).as_deref(), Some(REALM.as_bytes()));
    assert!(r.has(attr::NONCE));
    assert!(!r.has(attr::MESSAGE_INTEGRITY), "a 401 cannot be signed");
    assert_eq!(h.stats().allocations, 0);

    let r = c.allocate_with(&mut h, None);
    assert!(r.is_success(), "{r:?}");
    assert_eq!(r.method(), Method::ALLOCATE);
    let relayed = r.xor_address(attr::XOR_RELAYED_ADDRESS).unwrap();
    assert_eq!(relayed.ip().to_string(), "203.0.113.1");
    assert!(PORTS.contains(&relayed.port()));
    assert_eq!(r.xor_address(attr::XOR_MAPPED_ADDRESS), Some(c.five.client));
    assert_eq!(r.lifetime(), Some(600));
    assert_eq!(r.integrity(&c.key), Integrity::Valid);
    assert_eq!(r.integrity(&[0; 16]), Integrity::Invalid);

    let stats = h.stats();
    assert_eq!((stats.allocations, stats.free_ports), (1, 99));
    assert_eq!(
        h.events(),
        vec![Event::AllocationCreated {
            five_tuple: c.five,
            relayed,
            additional: None,
            username: c.username.clone(),
        }]
    );
}

#[test]
fn bad_requested_transport() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("192.0.2.10:40000", "alice");
    let r = c.request(&mut h, Method::ALLOCATE, &|_| {});
    assert_eq!(r.code(), 400, "REQUESTED-TRANSPORT is required");
    assert_eq!(r.integrity(&c.key), Integrity::Valid);
    let r = c.request(&mut h, Method::ALLOCATE, &|w| {
        w.attr(attr::REQUESTED_TRANSPORT, &[6, 0, 0, 0]);
    });
    assert_eq!(r.code(), 442, "TCP is not relayed");
    assert_eq!(r.integrity(&c.key), Integrity::Valid);
    let r = c.request(&mut h, Method::ALLOCATE, &|w| {
        w.attr(attr::REQUESTED_TRANSPORT, &[17, 0]);
    });
    assert_eq!(r.code(), 400);
    assert_eq!(h.stats().allocations, 0);
    assert_eq!(h.stats().free_ports, 100);
}

fn granted(config: Config, requested: Option<u32>) -> u32 {
    let mut h = Harness::new(config);
    let mut c = Client::rest("192.0.2.10:40000", "alice");
    let r = c.allocate_with(&mut h, requested);
    assert!(r.is_success(), "{r:?}");
    r.lifetime().expect("LIFETIME")
}

#[test]
fn lifetime_negotiation() {
    assert_eq!(granted(config(), None), 600);
    assert_eq!(granted(config(), Some(0)), 600);
    assert_eq!(granted(config(), Some(30)), 600);
    assert_eq!(granted(config(), Some(1200)), 1200);
    assert_eq!(granted(config(), Some(3600)), 3600);
    assert_eq!(granted(config(), Some(99999)), 3600);
    assert_eq!(granted(config(), Some(u32::MAX)), 3600);
    let mut c = config();
    c.max_lifetime = std::time::Duration::from_secs(1800);
    assert_eq!(granted(c.clone(), Some(99999)), 1800);
    assert_eq!(granted(c, Some(900)), 900);
}

#[test]
fn retransmitted_allocate_gets_the_same_answer() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("192.0.2.10:40000", "alice");
    c.challenge(&mut h, Method::ALLOCATE);
    let tid = c.fresh_tid();
    let first = c.request_once(&mut h, Method::ALLOCATE, tid, &|w| {
        udp(w);
        w.u32(attr::LIFETIME, 1200);
    });
    assert!(first.is_success(), "{first:?}");
    h.advance(2);
    let again = c.request_once(&mut h, Method::ALLOCATE, tid, &|w| {
        udp(w);
        w.u32(attr::LIFETIME, 1200);
    });
    assert!(again.is_success(), "{again:?}");
    assert_eq!(
        again.xor_address(attr::XOR_RELAYED_ADDRESS),
        first.xor_address(attr::XOR_RELAYED_ADDRESS)
    );
    assert_eq!(again.lifetime(), Some(1200));
    assert_eq!(again.integrity(&c.key), Integrity::Valid);
    assert_eq!(h.stats().allocations, 1);
    assert_eq!(h.stats().free_ports, 99);

    // Another transaction on the same 5-tuple is a second allocation: refused.
    let r = c.allocate_with(&mut h, None);
    assert_eq!(r.code(), 437);
    assert_eq!(r.integrity(&c.key), Integrity::Valid);
    assert_eq!(h.stats().allocations, 1);
}

/// Found by the `core` fuzz target (fuzz/seeds/core/crash-retransmit-other-user): carol
/// allocates, then the same 5-tuple repeats her Allocate's transaction signed as alice, a
/// valid REST user. That is a request for carol's allocation from another user: 441, as for
/// every other request on it (RFC 8656 §5), not a success signed with alice's key. It was
/// answered as a retransmission.
#[test]
fn retransmitted_allocate_from_another_user_is_441() {
    let mut c = config();
    c.users = vec![tern_proto::StaticUser {
        name: "carol".into(),
        secret: tern_proto::UserSecret::Password("carol-pw".into()),
    }];
    let mut h = Harness::new(c);
    let mut carol = Client::password("192.0.2.10:40000", "carol", "carol-pw");
    carol.challenge(&mut h, Method::ALLOCATE);
    let tid = carol.fresh_tid();
    let first = carol.request_once(&mut h, Method::ALLOCATE, tid, &udp);
    assert!(first.is_success(), "{first:?}");

    let (username, key) = rest_credential(SECRET, WALL + 3600, "alice");
    let mut alice = carol.as_user(&username, key);
    alice.nonce = carol.nonce.clone();
    let again = alice.request_once(&mut h, Method::ALLOCATE, tid, &udp);
    assert_eq!(again.code(), 441, "{again:?}");
    assert_eq!(again.integrity(&key), Integrity::Valid);

    // A new transaction from alice is a second allocation on the 5-tuple: 437, as for carol.
    let other = alice.fresh_tid();
    assert_eq!(
        alice
            .request_once(&mut h, Method::ALLOCATE, other, &udp)
            .code(),
        437
    );

    // Carol's own retransmission still gets her answer.
    let mine = carol.request_once(&mut h, Method::ALLOCATE, tid, &udp);
    assert!(mine.is_success(), "{mine:?}");
    assert_eq!(mine.integrity(&carol.key), Integrity::Valid);
    assert_eq!(h.stats().allocations, 1);
}

#[test]
fn ipv6_family_on_an_ipv4_relay_is_440() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("192.0.2.10:40000", "alice");
    let r = c.request(&mut h, Method::ALLOCATE, &|w| {
        udp(w);
        w.attr(
            attr::REQUESTED_ADDRESS_FAMILY,
            &[attr::FAMILY_IPV6, 0, 0, 0],
        );
    });
    assert_eq!(r.code(), 440);
    assert_eq!(h.stats().allocations, 0);
    let r = c.request(&mut h, Method::ALLOCATE, &|w| {
        udp(w);
        w.attr(
            attr::REQUESTED_ADDRESS_FAMILY,
            &[attr::FAMILY_IPV4, 0, 0, 0],
        );
    });
    assert!(r.is_success(), "{r:?}");
}

#[test]
fn refresh_extends_and_deletes() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("192.0.2.10:40000", "alice");
    let relayed = c.allocate(&mut h);
    h.events();
    h.advance_to(500);
    let r = c.refresh(&mut h, None);
    assert!(r.is_success(), "{r:?}");
    assert_eq!(r.lifetime(), Some(600));
    assert_eq!(r.integrity(&c.key), Integrity::Valid);
    h.advance_to(601);
    assert_eq!(h.stats().allocations, 1, "alive past its first expiry");
    assert!(h.events().is_empty());
    let r = c.refresh(&mut h, Some(99999));
    assert_eq!(r.lifetime(), Some(3600));

    let r = c.refresh(&mut h, Some(0));
    assert!(r.is_success(), "{r:?}");
    assert_eq!(r.lifetime(), Some(0));
    let stats = h.stats();
    assert_eq!((stats.allocations, stats.free_ports), (0, 100));
    let events = h.events();
    assert!(
        matches!(
            events.as_slice(),
            [Event::AllocationEnded { five_tuple, relayed: r, reason: EndReason::Deleted, .. }]
                if *five_tuple == c.five && *r == relayed
        ),
        "{events:?}"
    );
    let r = c.refresh(&mut h, None);
    assert_eq!(r.code(), 437, "nothing left to refresh");
}

#[test]
fn refresh_without_allocation_is_437() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("192.0.2.10:40000", "alice");
    let r = c.refresh(&mut h, Some(600));
    assert_eq!(r.code(), 437);
    assert_eq!(r.integrity(&c.key), Integrity::Valid);
    for method in [Method::CREATE_PERMISSION, Method::CHANNEL_BIND] {
        let r = c.request(&mut h, method, &|w| {
            w.attr(attr::CHANNEL_NUMBER, &[0x40, 0, 0, 0]);
            w.xor_address(attr::XOR_PEER_ADDRESS, peer_a());
        });
        assert_eq!(r.code(), 437, "{method:?}");
    }
}

fn small_pool(ports: std::ops::RangeInclusive<u16>) -> Config {
    let mut c = Config::new(REALM, "203.0.113.1".parse().unwrap(), ports);
    c.auth_secrets = vec![SECRET.to_vec()];
    c
}

#[test]
fn pool_exhaustion_and_reuse() {
    let mut h = Harness::new(small_pool(50000..=50002));
    let mut clients: Vec<Client> = (0..4)
        .map(|i| Client::rest(&format!("192.0.2.{}:40000", 10 + i), "alice"))
        .collect();
    let mut ports: Vec<u16> = clients[..3]
        .iter_mut()
        .map(|c| c.allocate(&mut h).port())
        .collect();
    ports.sort_unstable();
    assert_eq!(ports, vec![50000, 50001, 50002]);
    assert_eq!(h.stats().free_ports, 0);
    let r = clients[3].allocate_with(&mut h, None);
    assert_eq!(r.code(), 508);
    assert_eq!(r.integrity(&clients[3].key), Integrity::Valid);

    let freed = {
        let r = clients[1].refresh(&mut h, Some(0));
        assert!(r.is_success());
        match h.events().pop() {
            Some(Event::AllocationEnded { relayed, .. }) => relayed.port(),
            e => panic!("{e:?}"),
        }
    };
    assert_eq!(h.stats().free_ports, 1);
    assert_eq!(clients[3].allocate(&mut h).port(), freed);
}

#[test]
fn only_bound_ports_are_handed_out() {
    let mut cfg = small_pool(50000..=50009);
    cfg.relay_ports[Family::V4.index()] = vec![50007, 50003, 60000];
    let mut h = Harness::new(cfg);
    assert_eq!(
        h.stats().pool_size,
        2,
        "ports outside the range are ignored"
    );
    let mut got: Vec<u16> = (0..2)
        .map(|i| {
            Client::rest(&format!("192.0.2.{}:1", 10 + i), "a")
                .allocate(&mut h)
                .port()
        })
        .collect();
    got.sort_unstable();
    assert_eq!(got, vec![50003, 50007]);
    let r = Client::rest("192.0.2.99:1", "a").allocate_with(&mut h, None);
    assert_eq!(r.code(), 508);
}

#[test]
fn user_quota() {
    let mut cfg = config();
    cfg.user_quota = 2;
    let mut h = Harness::new(cfg);
    // REST usernames with different expiries still count for the same name.
    let (u1, k1) = rest_credential(SECRET, WALL + 100, "alice");
    let (u2, k2) = rest_credential(SECRET, WALL + 200, "alice");
    Client::with_key("192.0.2.10:1", &u1, k1).allocate(&mut h);
    Client::with_key("192.0.2.11:1", &u2, k2).allocate(&mut h);
    let mut third = Client::rest("192.0.2.12:1", "alice");
    let r = third.allocate_with(&mut h, None);
    assert_eq!(r.code(), 486);
    assert_eq!(r.integrity(&third.key), Integrity::Valid);
    Client::rest("192.0.2.13:1", "bob").allocate(&mut h);
    assert_eq!(h.stats().allocations, 3);
}

#[test]
fn total_quota() {
    let mut cfg = config();
    cfg.total_quota = 2;
    let mut h = Harness::new(cfg);
    let mut a = Client::rest("192.0.2.10:1", "alice");
    a.allocate(&mut h);
    Client::rest("192.0.2.11:1", "bob").allocate(&mut h);
    let mut carol = Client::rest("192.0.2.12:1", "carol");
    assert_eq!(carol.allocate_with(&mut h, None).code(), 486);
    assert!(a.refresh(&mut h, Some(0)).is_success());
    carol.allocate(&mut h);
}

#[test]
fn user_quota_is_released_when_an_allocation_ends() {
    let mut cfg = config();
    cfg.user_quota = 1;
    let mut h = Harness::new(cfg);
    let mut first = Client::rest("192.0.2.10:1", "alice");
    first.allocate(&mut h);
    let mut second = Client::rest("192.0.2.11:1", "alice");
    assert_eq!(second.allocate_with(&mut h, None).code(), 486);
    assert!(first.refresh(&mut h, Some(0)).is_success());
    second.allocate(&mut h);
    h.advance(601);
    assert_eq!(h.stats().allocations, 0);
    Client::rest("192.0.2.12:1", "alice").allocate(&mut h);
}

#[test]
fn refresh_with_another_family_is_443() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("192.0.2.10:40000", "alice");
    c.allocate(&mut h);
    let r = c.request(&mut h, Method::REFRESH, &|w| {
        w.attr(
            attr::REQUESTED_ADDRESS_FAMILY,
            &[attr::FAMILY_IPV6, 0, 0, 0],
        );
    });
    assert_eq!(r.code(), 443);
    let r = c.request(&mut h, Method::REFRESH, &|w| {
        w.u32(attr::LIFETIME, 0);
        w.attr(
            attr::REQUESTED_ADDRESS_FAMILY,
            &[attr::FAMILY_IPV4, 0, 0, 0],
        );
    });
    assert!(r.is_success(), "{r:?}");
    assert_eq!(h.stats().allocations, 0);
}

#[test]
fn even_port_and_reservations() {
    let mut h = Harness::new(small_pool(50000..=50003));
    let even_port = |r_bit: u8| {
        move |w: &mut tern_wire::MessageWriter| {
            udp(w);
            w.attr(attr::EVEN_PORT, &[r_bit]);
        }
    };
    let mut a = Client::rest("192.0.2.10:1", "alice");
    let r = a.request(&mut h, Method::ALLOCATE, &even_port(0));
    let port = r.xor_address(attr::XOR_RELAYED_ADDRESS).unwrap().port();
    assert_eq!(port % 2, 0);
    assert!(!r.has(attr::RESERVATION_TOKEN));

    // R bit: an even port, and its successor held under a token.
    let mut b = Client::rest("192.0.2.11:1", "bob");
    let r = b.request(&mut h, Method::ALLOCATE, &even_port(0x80));
    assert!(r.is_success(), "{r:?}");
    let even = r.xor_address(attr::XOR_RELAYED_ADDRESS).unwrap().port();
    assert_eq!(even % 2, 0);
    let token = r.value(attr::RESERVATION_TOKEN).expect("RESERVATION-TOKEN");
    assert_eq!(token.len(), 8);
    assert_eq!(
        h.stats().free_ports,
        1,
        "one allocated, one reserved, one in use"
    );
    assert_eq!(h.server.shared().reserved_ports(), 1);

    // EVEN-PORT with RESERVATION-TOKEN is a bad request; an unknown token gets nothing.
    let mut c = Client::rest("192.0.2.12:1", "carol");
    let r = c.request(&mut h, Method::ALLOCATE, &|w| {
        even_port(0)(w);
        w.attr(attr::RESERVATION_TOKEN, &token);
    });
    assert_eq!(r.code(), 400);
    let r = c.request(&mut h, Method::ALLOCATE, &|w| {
        udp(w);
        w.attr(attr::RESERVATION_TOKEN, &[1; 8]);
    });
    assert_eq!(r.code(), 508);
    let r = c.request(&mut h, Method::ALLOCATE, &|w| {
        udp(w);
        w.attr(attr::RESERVATION_TOKEN, &token);
    });
    assert!(r.is_success(), "{r:?}");
    assert_eq!(
        r.xor_address(attr::XOR_RELAYED_ADDRESS).unwrap().port(),
        even + 1
    );
    assert_eq!(h.stats().free_ports, 1);
    assert_eq!(h.server.shared().reserved_ports(), 0, "redeemed");
    // The token is spent.
    let mut d = Client::rest("192.0.2.13:1", "dave");
    let r = d.request(&mut h, Method::ALLOCATE, &|w| {
        udp(w);
        w.attr(attr::RESERVATION_TOKEN, &token);
    });
    assert_eq!(r.code(), 508);
    // The reservation timer of a spent token must not free the port in use.
    h.advance(60);
    assert_eq!(h.stats().free_ports, 1);
}

#[test]
fn unused_reservations_lapse() {
    let mut h = Harness::new(small_pool(50000..=50001));
    let mut b = Client::rest("192.0.2.11:1", "bob");
    let r = b.request(&mut h, Method::ALLOCATE, &|w| {
        udp(w);
        w.attr(attr::EVEN_PORT, &[0x80]);
    });
    assert!(r.has(attr::RESERVATION_TOKEN), "{r:?}");
    assert_eq!(h.stats().free_ports, 0);
    h.advance(29);
    assert_eq!(h.stats().free_ports, 0);
    h.advance(2);
    assert_eq!(
        h.stats().free_ports,
        1,
        "the reserved port is back after ~30 s"
    );
    assert_eq!(h.server.shared().reserved_ports(), 0, "lapsed");
    assert_eq!(
        Client::rest("192.0.2.12:1", "c").allocate(&mut h).port(),
        50001
    );
    h.server.shutdown(h.now);
    assert_eq!(h.stats().free_ports, 2);
}
