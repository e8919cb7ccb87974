//! Binding requests, and datagrams that must be dropped without a panic.

mod common;

use common::*;
use tern_proto::{ClientOutput, DropReason};
use tern_wire::{attr, Class, MessageWriter, Method};

fn binding(h: &mut Harness, c: &mut Client, extra: &dyn Fn(&mut MessageWriter)) -> Response {
    let tid = c.fresh_tid();
    let req = c.build(Method::BINDING, Class::Request, tid, false, &[], extra);
    c.exchange(h, &req)
}

#[test]
fn binding_reflects_the_client_address() {
    let mut h = Harness::new(config());
    for client in ["192.0.2.10:40000", "[2001:db8::7]:61000"] {
        let mut c = Client::rest(client, "alice");
        let r = binding(&mut h, &mut c, &|_| {});
        assert_eq!(r.class(), Class::Success);
        assert_eq!(r.method(), Method::BINDING);
        assert_eq!(r.xor_address(attr::XOR_MAPPED_ADDRESS), Some(c.five.client));
        // MAPPED-ADDRESS is only for RFC 3489 clients, whose requests lack the magic cookie
        // (RFC 8489 §14.1); those are dropped as malformed, so no answer carries it.
        assert_eq!(r.address(attr::MAPPED_ADDRESS), None);
        let address_len = if c.five.client.is_ipv4() { 8 } else { 20 };
        assert_eq!(
            r.bytes.len(),
            20 + 4 + address_len,
            "header and XOR-MAPPED-ADDRESS only"
        );
        assert!(!r.has(attr::FINGERPRINT), "no FINGERPRINT unless asked");
        assert!(!r.has(attr::SOFTWARE), "no SOFTWARE by default");
        assert!(!r.has(attr::MESSAGE_INTEGRITY));
    }
    assert_eq!(h.stats().allocations, 0, "Binding creates no state");
    assert_eq!(h.server.poll_timeout(), None);
}

#[test]
fn binding_fingerprint_iff_requested_or_configured() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("192.0.2.10:40000", "alice");
    c.fingerprint = true;
    let r = binding(&mut h, &mut c, &|_| {});
    assert_eq!(r.msg().check_fingerprint(), Some(true));

    let mut cfg = config();
    cfg.always_fingerprint = true;
    cfg.software = Some("tern test".into());
    let mut h = Harness::new(cfg);
    c.fingerprint = false;
    let r = binding(&mut h, &mut c, &|_| {});
    assert_eq!(r.msg().check_fingerprint(), Some(true));
    assert_eq!(r.value(attr::SOFTWARE).as_deref(), Some(&b"tern test"[..]));
}

#[test]
fn binding_with_unknown_required_attribute_is_420() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("192.0.2.10:40000", "alice");
    let r = binding(&mut h, &mut c, &|w| {
        w.attr(0x7777, b"what");
        w.attr(0x8888, b"fine");
        w.attr(0x7777, b"twice");
        w.attr(0x0042, b"");
    });
    assert_eq!(r.code(), 420);
    assert_eq!(r.unknown_attributes(), vec![0x7777, 0x0042]);
    assert!(!r.has(attr::XOR_MAPPED_ADDRESS));

    let r = binding(&mut h, &mut c, &|w| {
        w.attr(0x8888, b"optional");
    });
    assert!(
        r.is_success(),
        "comprehension-optional attributes are ignored: {r:?}"
    );
    assert_eq!(r.xor_address(attr::XOR_MAPPED_ADDRESS), Some(c.five.client));
}

fn valid_binding(fingerprint: bool) -> Vec<u8> {
    let mut c = Client::rest("192.0.2.10:40000", "alice");
    c.fingerprint = fingerprint;
    let tid = c.fresh_tid();
    c.build(Method::BINDING, Class::Request, tid, false, &[], &|w| {
        w.attr(attr::SOFTWARE, b"client");
    })
}

#[test]
fn garbage_is_dropped() {
    let mut h = Harness::new(config());
    let five = Client::rest("192.0.2.10:40000", "alice").five;
    let malformed = ClientOutput::Drop(DropReason::Malformed);
    let good = valid_binding(true);
    assert_eq!(h.datagram(five, &good).0, ClientOutput::Reply);

    // Empty, too short, truncated, and one byte too many.
    assert_eq!(h.datagram(five, &[]).0, malformed);
    assert_eq!(h.datagram(five, &good[..19]).0, malformed);
    assert_eq!(h.datagram(five, &good[..good.len() - 4]).0, malformed);
    let mut long = good.clone();
    long.push(0);
    assert_eq!(h.datagram(five, &long).0, malformed);

    // Bad FINGERPRINT.
    let mut bad_fp = good.clone();
    *bad_fp.last_mut().unwrap() ^= 1;
    assert_eq!(h.datagram(five, &bad_fp).0, malformed);

    // Wrong magic cookie.
    let mut cookie = good.clone();
    cookie[5] ^= 0xFF;
    assert_eq!(h.datagram(five, &cookie).0, malformed);

    // A length field that is not a multiple of four, and an attribute that overruns.
    let mut odd = good.clone();
    odd[3] |= 1;
    assert_eq!(h.datagram(five, &odd).0, malformed);
    let mut overrun = valid_binding(false);
    overrun[22..24].copy_from_slice(&200u16.to_be_bytes());
    assert_eq!(h.datagram(five, &overrun).0, malformed);

    // First bits 10 / 11: neither STUN nor ChannelData.
    assert_eq!(h.datagram(five, &[0x80; 24]).0, malformed);
    assert_eq!(h.datagram(five, &[0xC0; 24]).0, malformed);
    // ChannelData with a channel number outside 0x4000..=0x4FFF.
    assert_eq!(h.datagram(five, &[0x7F, 0xFF, 0, 1, 9]).0, malformed);
}

#[test]
fn responses_and_other_indications_are_dropped() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("192.0.2.10:40000", "alice");
    let unexpected = ClientOutput::Drop(DropReason::UnexpectedMessage);
    for (method, class) in [
        (Method::BINDING, Class::Success),
        (Method::BINDING, Class::Error),
        (Method::ALLOCATE, Class::Success),
        (Method::DATA, Class::Indication),
        (Method::BINDING, Class::Indication),
    ] {
        let tid = c.fresh_tid();
        let msg = c.build(method, class, tid, false, &[], &|w| {
            w.xor_address(attr::XOR_MAPPED_ADDRESS, c.five.client);
        });
        let (out, reply) = h.datagram(c.five, &msg);
        assert_eq!(out, unexpected, "{method:?} {class:?}");
        assert!(reply.is_empty());
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut h = Harness::new(config());
    let five = Client::rest("192.0.2.10:40000", "alice").five;
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    for _ in 0..20_000 {
        let len = rng.below(120);
        let data = rng.bytes(len);
        let (out, _) = h.datagram(five, &data);
        assert!(
            matches!(out, ClientOutput::Drop(_)),
            "{data:02x?} → {out:?}"
        );
    }
    assert_eq!(h.stats().allocations, 0);
}

/// Valid requests with random bytes flipped, truncated or extended, against a server that
/// has an allocation, a permission and a channel: any outcome but a panic, and every reply
/// is a STUN message for the same transaction.
#[test]
fn mutated_requests_never_panic() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("192.0.2.10:40000", "alice");
    c.fingerprint = true;
    c.allocate(&mut h);
    assert!(c.channel_bind(&mut h, 0x4000, peer_a()).is_success());
    let mut seeds = vec![valid_binding(true), channel_data(0x4000, b"hello")];
    for method in [Method::ALLOCATE, Method::REFRESH, Method::CREATE_PERMISSION] {
        let tid = c.fresh_tid();
        seeds.push(c.build(method, Class::Request, tid, true, &[], &|w| {
            w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
            w.u32(attr::LIFETIME, 600);
            w.xor_address(attr::XOR_PEER_ADDRESS, peer_a());
        }));
    }
    seeds.push(c.send(&mut h, peer_a(), b"payload").1);
    let mut rng = Rng(0xF00D_0000_0000_0042);
    for i in 0..20_000 {
        let mut data = seeds[i % seeds.len()].clone();
        match rng.below(4) {
            0 => data.truncate(rng.below(data.len() + 1)),
            1 => {
                let n = rng.below(9);
                data.extend(rng.bytes(n));
            }
            _ => {}
        }
        for _ in 0..1 + rng.below(3) {
            if !data.is_empty() {
                let at = rng.below(data.len());
                data[at] ^= 1 << rng.below(8);
            }
        }
        let (out, reply) = h.datagram(c.five, &data);
        match out {
            ClientOutput::Reply => {
                let r = Response { bytes: reply };
                assert_eq!(r.msg().transaction_id().0, data[8..20]);
            }
            ClientOutput::Relay { payload, .. } => assert!(payload.end <= data.len()),
            ClientOutput::Drop(_) => assert!(reply.is_empty()),
            other => panic!("an output this test does not know: {other:?}"),
        }
    }
}

#[test]
fn fingerprinted_requests_get_fingerprinted_signed_answers() {
    let mut h = Harness::new(config());
    let mut c = Client::rest("192.0.2.10:40000", "alice");
    c.fingerprint = true;
    let r = c.challenge(&mut h, Method::ALLOCATE);
    assert_eq!(r.msg().check_fingerprint(), Some(true), "the 401 too");
    let r = c.allocate_with(&mut h, None);
    assert!(r.is_success(), "{r:?}");
    assert_eq!(r.msg().check_fingerprint(), Some(true));
    assert_eq!(r.integrity(&c.key), tern_wire::Integrity::Valid);
    c.fingerprint = false;
    let r = c.refresh(&mut h, None);
    assert!(r.is_success());
    assert!(!r.has(attr::FINGERPRINT));
    assert_eq!(r.integrity(&c.key), tern_wire::Integrity::Valid);
}
