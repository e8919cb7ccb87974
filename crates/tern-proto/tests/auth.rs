//! The long-term credential mechanism: REST and static users, nonces, 441.

mod common;

use common::*;
use tern_proto::{StaticUser, UserSecret};
use tern_wire::{attr, Class, Integrity, MessageType, MessageWriter, Method};

fn assert_401(r: &Response) {
    assert_eq!(r.code(), 401, "{r:?}");
    assert_eq!(r.value(attr::REALM).as_deref(), Some(REALM.as_bytes()));
    assert!(r.has(attr::NONCE));
    assert!(!r.has(attr::MESSAGE_INTEGRITY));
}

#[test]
fn wrong_password_is_401() {
    let mut h = Harness::new(config());
    let (username, _) = rest_credential(SECRET, WALL + 3600, "alice");
    let (_, wrong) = rest_credential(b"south", WALL + 3600, "alice");
    let mut c = Client::with_key("192.0.2.10:40000", &username, wrong);
    assert_401(&c.allocate_with(&mut h, None));
    assert_eq!(h.stats().allocations, 0);
}

#[test]
fn static_users_by_password_and_by_key() {
    let mut cfg = config();
    cfg.auth_secrets.clear();
    cfg.users = vec![
        StaticUser {
            name: "bob".into(),
            secret: UserSecret::Password("hunter2".into()),
        },
        StaticUser {
            name: "carol".into(),
            secret: UserSecret::Key(tern_proto::auth::long_term_key("carol", REALM, "s3cret")),
        },
    ];
    let mut h = Harness::new(cfg);
    Client::password("192.0.2.10:1", "bob", "hunter2").allocate(&mut h);
    Client::password("192.0.2.11:1", "carol", "s3cret").allocate(&mut h);
    assert_401(&Client::password("192.0.2.12:1", "bob", "hunter3").allocate_with(&mut h, None));
    assert_401(&Client::password("192.0.2.13:1", "dave", "hunter2").allocate_with(&mut h, None));
    // No REST secret configured: a REST-shaped name is just an unknown user.
    assert_401(&Client::rest("192.0.2.14:1", "alice").allocate_with(&mut h, None));
    assert_eq!(h.stats().allocations, 2);
}

#[test]
fn unknown_and_expired_rest_users_are_401() {
    let mut h = Harness::new(config());
    assert_401(&Client::password("192.0.2.10:1", "mallory", "x").allocate_with(&mut h, None));
    let (username, key) = rest_credential(SECRET, WALL - 1, "alice");
    let mut expired = Client::with_key("192.0.2.11:1", &username, key);
    assert_401(&expired.allocate_with(&mut h, None));
    assert_eq!(h.stats().allocations, 0);
}

#[test]
fn rest_expiry_applies_to_existing_allocations() {
    let mut h = Harness::new(config());
    let (username, key) = rest_credential(SECRET, WALL + 100, "alice");
    let mut c = Client::with_key("192.0.2.10:1", &username, key);
    c.allocate(&mut h);
    h.advance(100);
    assert!(
        c.refresh(&mut h, None).is_success(),
        "valid up to its expiry second"
    );
    h.advance(2);
    assert_401(&c.refresh(&mut h, None));
}

#[test]
fn secret_rotation() {
    let mut cfg = config();
    cfg.auth_secrets = vec![b"old".to_vec(), b"new".to_vec()];
    let mut h = Harness::new(cfg.clone());
    let (u_old, k_old) = rest_credential(b"old", WALL + 3600, "alice");
    let (u_new, k_new) = rest_credential(b"new", WALL + 3600, "bob");
    Client::with_key("192.0.2.10:1", &u_old, k_old).allocate(&mut h);
    Client::with_key("192.0.2.11:1", &u_new, k_new).allocate(&mut h);

    cfg.auth_secrets = vec![b"new".to_vec()];
    let mut h = Harness::new(cfg);
    assert_401(&Client::with_key("192.0.2.10:1", &u_old, k_old).allocate_with(&mut h, None));
    Client::with_key("192.0.2.11:1", &u_new, k_new).allocate(&mut h);
}

#[test]
fn stale_nonce_is_438_with_a_fresh_nonce() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("192.0.2.10:40000", "alice");
    c.challenge(&mut h, Method::ALLOCATE);
    let issued = c.nonce.clone().unwrap();
    h.advance(599);
    let tid = c.fresh_tid();
    let r = c.request_once(&mut h, Method::ALLOCATE, tid, &|w| {
        w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    });
    assert!(r.is_success(), "accepted at T+599: {r:?}");
    h.advance(1);
    let tid = c.fresh_tid();
    let r = c.request_once(&mut h, Method::REFRESH, tid, &|_| {});
    assert_eq!(r.code(), 438, "stale at T+600");
    assert_eq!(r.value(attr::REALM).as_deref(), Some(REALM.as_bytes()));
    let fresh = r.value(attr::NONCE).expect("a fresh NONCE");
    assert_ne!(fresh, issued);
    assert!(!r.has(attr::MESSAGE_INTEGRITY));
    c.nonce = Some(fresh);
    let tid = c.fresh_tid();
    assert!(c
        .request_once(&mut h, Method::REFRESH, tid, &|_| {})
        .is_success());
}

#[test]
fn nonce_lifetime_is_configurable() {
    let mut cfg = config();
    cfg.nonce_lifetime = std::time::Duration::from_secs(60);
    let mut h = Harness::new(cfg);
    let mut c = Client::rest("192.0.2.10:40000", "alice");
    c.challenge(&mut h, Method::ALLOCATE);
    h.advance(60);
    let tid = c.fresh_tid();
    let r = c.request_once(&mut h, Method::ALLOCATE, tid, &|w| {
        w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    });
    assert_eq!(r.code(), 438);
}

#[test]
fn nonce_is_bound_to_the_client_ip() {
    let mut h = Harness::new(config());
    let mut a = Client::rest("192.0.2.10:40000", "alice");
    a.challenge(&mut h, Method::ALLOCATE);
    // Another port on the same IP may use it ...
    let mut same_ip = Client::rest("192.0.2.10:40001", "alice");
    same_ip.nonce = a.nonce.clone();
    let tid = same_ip.fresh_tid();
    let r = same_ip.request_once(&mut h, Method::ALLOCATE, tid, &|w| {
        w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    });
    assert!(r.is_success(), "{r:?}");
    // ... another IP may not.
    let mut other = Client::rest("192.0.2.11:40000", "alice");
    other.nonce = a.nonce.clone();
    let tid = other.fresh_tid();
    let r = other.request_once(&mut h, Method::ALLOCATE, tid, &|w| {
        w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    });
    assert_eq!(r.code(), 438);
    assert!(r.has(attr::NONCE));
    // And a nonce we never issued is stale too.
    other.nonce = Some(b"0000000065536000aaaaaaaaaaaaaaaaaaaaaaaa".to_vec());
    let tid = other.fresh_tid();
    assert_eq!(
        other
            .request_once(&mut h, Method::REFRESH, tid, &|_| {})
            .code(),
        438
    );
}

#[test]
fn another_user_on_the_same_five_tuple_is_441() {
    let mut h = Harness::new(config());
    let mut alice = Client::rest("192.0.2.10:40000", "alice");
    alice.allocate(&mut h);
    let (u, k) = rest_credential(SECRET, WALL + 3600, "bob");
    let mut bob = alice.as_user(&u, k);
    let r = bob.refresh(&mut h, Some(0));
    assert_eq!(r.code(), 441);
    assert_eq!(
        r.integrity(&bob.key),
        Integrity::Valid,
        "signed with bob's key"
    );
    let r = bob.create_permission(&mut h, &[peer_a()]);
    assert_eq!(r.code(), 441);
    let r = bob.channel_bind(&mut h, 0x4000, peer_a());
    assert_eq!(r.code(), 441);
    let s = h.stats();
    assert_eq!((s.allocations, s.permissions, s.channels), (1, 0, 0));
    assert!(alice.refresh(&mut h, None).is_success());
}

#[test]
fn missing_credential_attributes_with_integrity_are_400() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("192.0.2.10:40000", "alice");
    c.challenge(&mut h, Method::ALLOCATE);
    for omit in [attr::USERNAME, attr::REALM, attr::NONCE] {
        let tid = c.fresh_tid();
        let req = c.build(Method::ALLOCATE, Class::Request, tid, true, &[omit], &|w| {
            w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        });
        let r = c.exchange(&mut h, &req);
        assert_eq!(r.code(), 400, "without {omit:#06x}");
    }
    assert_eq!(h.stats().allocations, 0);
}

#[test]
fn errors_after_authentication_are_signed() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("192.0.2.10:40000", "alice");
    c.allocate(&mut h);
    let errors = [
        c.allocate_with(&mut h, None),                      // 437
        c.create_permission(&mut h, &[]),                   // 400
        c.channel_bind(&mut h, 0x3FFF, peer_a()),           // 400
        c.create_permission(&mut h, &[addr("10.0.0.1:1")]), // 403
        c.request(&mut h, Method::REFRESH, &|w| {
            w.attr(0x7777, b"?");
        }), // 420
    ];
    let codes: Vec<u16> = errors.iter().map(Response::code).collect();
    assert_eq!(codes, vec![437, 400, 400, 403, 420]);
    for r in &errors {
        assert_eq!(r.integrity(&c.key), Integrity::Valid, "{r:?}");
    }
    assert_eq!(errors[4].unknown_attributes(), vec![0x7777]);
}

#[test]
fn unsigned_requests_on_an_allocation_are_challenged() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("192.0.2.10:40000", "alice");
    c.allocate(&mut h);
    for method in [
        Method::REFRESH,
        Method::CREATE_PERMISSION,
        Method::CHANNEL_BIND,
    ] {
        let tid = c.fresh_tid();
        let req = c.build(method, Class::Request, tid, false, &[], &|w| {
            w.u32(attr::LIFETIME, 0);
        });
        assert_401(&c.exchange(&mut h, &req));
    }
    assert_eq!(h.stats().allocations, 1);
}

/// A request signed only with MESSAGE-INTEGRITY-SHA256 is verified, and its response is
/// signed the same way (RFC 8489 §9.2.4), with the same long-term key.
#[test]
fn sha256_only_request_gets_sha256_response() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("198.51.100.20:40000", "sha");
    c.challenge(&mut h, Method::ALLOCATE);
    let nonce = c.nonce.clone().unwrap();
    let tid = c.fresh_tid();
    let mut req = Vec::new();
    let mut w = MessageWriter::new(
        &mut req,
        MessageType::new(Method::ALLOCATE, Class::Request),
        tid,
    );
    w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])
        .attr(attr::USERNAME, c.username.as_bytes())
        .attr(attr::REALM, REALM.as_bytes())
        .attr(attr::NONCE, &nonce)
        .message_integrity_sha256(&c.key);
    w.finish();
    let r = c.exchange(&mut h, &req);
    assert!(r.is_success(), "{:?}", r.error());
    assert!(!r.has(attr::MESSAGE_INTEGRITY));
    assert!(r.msg().integrity_sha256_offset().is_some());
    assert_eq!(r.integrity(&c.key), Integrity::Valid);
    let mut wrong = c.key;
    wrong[0] ^= 1;
    assert_eq!(r.integrity(&wrong), Integrity::Invalid);
}
