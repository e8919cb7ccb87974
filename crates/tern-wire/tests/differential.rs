//! Differential tests against stun-rs, an independent STUN implementation: what one writes, the
//! other reads to the same values, and each validates the other's MESSAGE-INTEGRITY (long-term
//! credential) and FINGERPRINT.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use md5::{Digest, Md5};
use proptest::prelude::*;
use stun_rs::attributes::stun::{
    ErrorCode, Fingerprint, MessageIntegrity, Nonce, Realm, Software, UnknownAttributes, UserName,
    XorMappedAddress,
};
use stun_rs::attributes::turn::{LifeTime, XorRelayedAddress};
use stun_rs::methods::{ALLOCATE, BINDING};
use stun_rs::{
    Algorithm, AlgorithmId, DecoderContextBuilder, HMACKey, MessageClass, MessageDecoderBuilder,
    MessageEncoderBuilder, MessageMethod, StunMessage, StunMessageBuilder,
};
use tern_wire::{
    attr, Class, Integrity, Message, MessageType, MessageWriter, Method, TransactionId,
};

const USERNAME: &str = "user";
const REALM: &str = "tern.example";
const PASSWORD: &str = "hunter2";

fn tern_key() -> [u8; 16] {
    Md5::digest(format!("{USERNAME}:{REALM}:{PASSWORD}").as_bytes()).into()
}

fn stun_key() -> HMACKey {
    HMACKey::new_long_term(USERNAME, REALM, PASSWORD, Algorithm::from(AlgorithmId::MD5)).unwrap()
}

/// Decodes with stun-rs, validating MESSAGE-INTEGRITY with `key` and FINGERPRINT.
fn stun_decode(buf: &[u8], key: HMACKey) -> Result<StunMessage, String> {
    let ctx = DecoderContextBuilder::default()
        .with_key(key)
        .with_validation()
        .build();
    let (msg, size) = MessageDecoderBuilder::default()
        .with_context(ctx)
        .build()
        .decode(buf)
        .map_err(|e| format!("{e:?}"))?;
    assert_eq!(size, buf.len());
    Ok(msg)
}

fn stun_encode(msg: &StunMessage) -> Vec<u8> {
    let mut buf = vec![0u8; 1500];
    let n = MessageEncoderBuilder::default()
        .build()
        .encode(&mut buf, msg)
        .unwrap();
    buf.truncate(n);
    buf
}

fn stun_class(class: Class) -> MessageClass {
    match class {
        Class::Request => MessageClass::Request,
        Class::Indication => MessageClass::Indication,
        Class::Success => MessageClass::SuccessResponse,
        Class::Error => MessageClass::ErrorResponse,
    }
}

fn socket_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<u32>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)),
        (any::<u128>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)),
    ]
}

#[test]
fn long_term_keys_agree() {
    assert_eq!(stun_key().as_bytes(), tern_key());
}

#[test]
fn message_types_agree_for_every_method_and_class() {
    for m in 0..=0x0FFFu16 {
        for class in [
            Class::Request,
            Class::Indication,
            Class::Success,
            Class::Error,
        ] {
            let ours = MessageType::new(Method(m), class).to_u16();
            let theirs =
                stun_rs::MessageType::new(MessageMethod::try_from(m).unwrap(), stun_class(class))
                    .as_u16();
            assert_eq!(ours, theirs, "method {m:#05x} {class:?}");
            let back = stun_rs::MessageType::from(ours);
            assert_eq!(back.method().as_u16(), m);
            assert_eq!(back.class(), stun_class(class));
        }
    }
}

/// stun-rs keeps UNKNOWN-ATTRIBUTES as a set (a repeated type is listed once), so the
/// differential cases use distinct attribute types; tern's own round trip keeps repeats.
fn distinct_u16s() -> impl Strategy<Value = Vec<u16>> {
    prop::collection::btree_set(any::<u16>(), 0..12).prop_map(|set| set.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// tern writes a Binding success response; stun-rs reads the address and validates both checks.
    #[test]
    fn tern_binding_response_decodes_in_stun_rs(tid in any::<[u8; 12]>(), mapped in socket_addr(), software in "[ -~]{0,40}") {
        let mut buf = Vec::new();
        let mut w = MessageWriter::new(&mut buf, MessageType::new(Method::BINDING, Class::Success), TransactionId(tid));
        w.attr(attr::SOFTWARE, software.as_bytes())
            .xor_address(attr::XOR_MAPPED_ADDRESS, mapped)
            .message_integrity(&tern_key())
            .fingerprint();
        w.finish();

        let msg = stun_decode(&buf, stun_key()).unwrap();
        prop_assert_eq!(msg.method(), BINDING);
        prop_assert_eq!(msg.class(), MessageClass::SuccessResponse);
        prop_assert_eq!(msg.transaction_id().as_bytes(), &tid);
        let xma = msg.get::<XorMappedAddress>().unwrap().as_xor_mapped_address().unwrap();
        prop_assert_eq!(*xma.socket_address(), mapped);
        prop_assert_eq!(msg.get::<Software>().unwrap().as_software().unwrap().as_str(), software.as_str());
        prop_assert!(msg.get::<MessageIntegrity>().is_some());
        prop_assert!(msg.get::<Fingerprint>().is_some());

        // stun-rs refuses the message under another password ...
        let wrong = HMACKey::new_long_term(USERNAME, REALM, "hunter3", Algorithm::from(AlgorithmId::MD5)).unwrap();
        prop_assert!(stun_decode(&buf, wrong).is_err());
        // ... and when any covered byte changes (here: the last byte of the transaction id).
        let mut bad = buf.clone();
        bad[19] ^= 0x01;
        prop_assert!(stun_decode(&bad, stun_key()).is_err());
    }

    /// tern writes a Binding request; stun-rs reads it.
    #[test]
    fn tern_binding_request_decodes_in_stun_rs(tid in any::<[u8; 12]>()) {
        let mut buf = Vec::new();
        let mut w = MessageWriter::new(&mut buf, MessageType::new(Method::BINDING, Class::Request), TransactionId(tid));
        w.attr(attr::USERNAME, USERNAME.as_bytes())
            .attr(attr::REALM, REALM.as_bytes())
            .attr(attr::NONCE, b"nonce-123")
            .message_integrity(&tern_key())
            .fingerprint();
        w.finish();
        let msg = stun_decode(&buf, stun_key()).unwrap();
        prop_assert_eq!(msg.method(), BINDING);
        prop_assert_eq!(msg.class(), MessageClass::Request);
        prop_assert_eq!(msg.transaction_id().as_bytes(), &tid);
        prop_assert_eq!(msg.get::<UserName>().unwrap().as_user_name().unwrap().as_str(), USERNAME);
        prop_assert_eq!(msg.get::<Realm>().unwrap().as_realm().unwrap().as_str(), REALM);
        prop_assert_eq!(msg.get::<Nonce>().unwrap().as_nonce().unwrap().as_str(), "nonce-123");
    }

    /// tern writes an error response with ERROR-CODE and UNKNOWN-ATTRIBUTES.
    #[test]
    fn tern_error_response_decodes_in_stun_rs(
        tid in any::<[u8; 12]>(),
        code in 300u16..=699,
        reason in "[ -~]{0,60}",
        unknown in distinct_u16s(),
    ) {
        let mut buf = Vec::new();
        let mut w = MessageWriter::new(&mut buf, MessageType::new(Method::BINDING, Class::Error), TransactionId(tid));
        w.error_code(code, &reason).unknown_attributes(&unknown).fingerprint();
        w.finish();

        let msg = stun_decode(&buf, stun_key()).unwrap();
        prop_assert_eq!(msg.class(), MessageClass::ErrorResponse);
        prop_assert_eq!(msg.transaction_id().as_bytes(), &tid);
        let err = msg.get::<ErrorCode>().unwrap().as_error_code().unwrap().error_code();
        prop_assert_eq!(err.error_code(), code);
        prop_assert_eq!(err.reason(), reason.as_str());
        let ua = msg.get::<UnknownAttributes>().unwrap().as_unknown_attributes().unwrap();
        prop_assert_eq!(ua.attributes(), &unknown[..]);
    }

    /// tern writes an Allocate success response with the long-term credential.
    #[test]
    fn tern_allocate_response_decodes_in_stun_rs(
        tid in any::<[u8; 12]>(),
        relayed in socket_addr(),
        mapped in socket_addr(),
        lifetime in any::<u32>(),
    ) {
        let mut buf = Vec::new();
        let mut w = MessageWriter::new(&mut buf, MessageType::new(Method::ALLOCATE, Class::Success), TransactionId(tid));
        w.xor_address(attr::XOR_RELAYED_ADDRESS, relayed)
            .xor_address(attr::XOR_MAPPED_ADDRESS, mapped)
            .u32(attr::LIFETIME, lifetime)
            .message_integrity(&tern_key())
            .fingerprint();
        w.finish();

        let msg = stun_decode(&buf, stun_key()).unwrap();
        prop_assert_eq!(msg.method(), ALLOCATE);
        prop_assert_eq!(msg.class(), MessageClass::SuccessResponse);
        let xra = msg.get::<XorRelayedAddress>().unwrap().as_xor_relayed_address().unwrap();
        prop_assert_eq!(*xra.socket_address(), relayed);
        let xma = msg.get::<XorMappedAddress>().unwrap().as_xor_mapped_address().unwrap();
        prop_assert_eq!(*xma.socket_address(), mapped);
        prop_assert_eq!(msg.get::<LifeTime>().unwrap().as_life_time().unwrap().as_u32(), lifetime);
        let mut bad = buf.clone();
        let at = 20 + 4 + 5; // inside XOR-RELAYED-ADDRESS's value
        bad[at] ^= 0x40;
        prop_assert!(stun_decode(&bad, stun_key()).is_err());
    }

    /// stun-rs writes an Allocate success response; tern reads it and validates both checks.
    #[test]
    fn stun_rs_allocate_response_parses_in_tern(
        tid in any::<[u8; 12]>(),
        relayed in socket_addr(),
        mapped in socket_addr(),
        lifetime in any::<u32>(),
    ) {
        let msg = StunMessageBuilder::new(ALLOCATE, MessageClass::SuccessResponse)
            .with_transaction_id(stun_rs::TransactionId::from(tid))
            .with_attribute(XorRelayedAddress::from(relayed))
            .with_attribute(XorMappedAddress::from(mapped))
            .with_attribute(LifeTime::from(lifetime))
            .with_attribute(MessageIntegrity::new(stun_key()))
            .with_attribute(Fingerprint::default())
            .build();
        let buf = stun_encode(&msg);

        let m = Message::parse(&buf).unwrap();
        prop_assert_eq!(m.method(), Method::ALLOCATE);
        prop_assert_eq!(m.class(), Class::Success);
        let tid = TransactionId(tid);
        prop_assert_eq!(m.transaction_id(), tid);
        let types: Vec<u16> = m.attributes().map(|a| a.typ).collect();
        prop_assert_eq!(types, vec![attr::XOR_RELAYED_ADDRESS, attr::XOR_MAPPED_ADDRESS, attr::LIFETIME]);
        let xra = m.get(attr::XOR_RELAYED_ADDRESS).unwrap().value;
        prop_assert_eq!(attr::decode_xor_address(xra, attr::XOR_RELAYED_ADDRESS, &tid).unwrap(), relayed);
        let xma = m.get(attr::XOR_MAPPED_ADDRESS).unwrap().value;
        prop_assert_eq!(attr::decode_xor_address(xma, attr::XOR_MAPPED_ADDRESS, &tid).unwrap(), mapped);
        prop_assert_eq!(attr::decode_u32(m.get(attr::LIFETIME).unwrap().value, attr::LIFETIME).unwrap(), lifetime);
        prop_assert_eq!(m.check_integrity(&tern_key()), Integrity::Valid);
        prop_assert_eq!(m.check_integrity(b"not the key"), Integrity::Invalid);
        prop_assert_eq!(m.check_fingerprint(), Some(true));

        // The same attributes written by tern give the same bytes: both sides zero-pad and
        // place MESSAGE-INTEGRITY and FINGERPRINT the same way.
        let mut ours = Vec::new();
        let mut w = MessageWriter::new(&mut ours, MessageType::new(Method::ALLOCATE, Class::Success), tid);
        w.xor_address(attr::XOR_RELAYED_ADDRESS, relayed)
            .xor_address(attr::XOR_MAPPED_ADDRESS, mapped)
            .u32(attr::LIFETIME, lifetime)
            .message_integrity(&tern_key())
            .fingerprint();
        w.finish();
        prop_assert_eq!(hex::encode(&ours), hex::encode(&buf));
    }

    /// stun-rs writes an error response; tern reads ERROR-CODE and UNKNOWN-ATTRIBUTES.
    #[test]
    fn stun_rs_error_response_parses_in_tern(
        tid in any::<[u8; 12]>(),
        code in 300u16..=699,
        reason in "[ -~]{0,60}",
        unknown in distinct_u16s(),
    ) {
        let msg = StunMessageBuilder::new(BINDING, MessageClass::ErrorResponse)
            .with_transaction_id(stun_rs::TransactionId::from(tid))
            .with_attribute(ErrorCode::from(stun_rs::ErrorCode::new(code, &reason).unwrap()))
            .with_attribute(UnknownAttributes::from(&unknown[..]))
            .with_attribute(MessageIntegrity::new(stun_key()))
            .with_attribute(Fingerprint::default())
            .build();
        let buf = stun_encode(&msg);

        let m = Message::parse(&buf).unwrap();
        prop_assert_eq!(m.method(), Method::BINDING);
        prop_assert_eq!(m.class(), Class::Error);
        prop_assert_eq!(m.transaction_id(), TransactionId(tid));
        let ec = m.get(attr::ERROR_CODE).unwrap().value;
        prop_assert_eq!(attr::decode_error_code(ec).unwrap(), (code, reason.as_str()));
        let ua = m.get(attr::UNKNOWN_ATTRIBUTES).unwrap().value;
        prop_assert_eq!(attr::decode_unknown_attributes(ua).collect::<Vec<_>>(), unknown);
        prop_assert_eq!(m.check_integrity(&tern_key()), Integrity::Valid);
        prop_assert_eq!(m.check_fingerprint(), Some(true));
    }
}

/// stun-rs writes a long-term-authenticated Binding request; tern reads and validates it.
#[test]
fn stun_rs_long_term_request_parses_in_tern() {
    let tid = [0x42; 12];
    let msg = StunMessageBuilder::new(BINDING, MessageClass::Request)
        .with_transaction_id(stun_rs::TransactionId::from(tid))
        .with_attribute(UserName::new(USERNAME).unwrap())
        .with_attribute(Nonce::new("f//499k954d6OL34oL9FSTvy64sA").unwrap())
        .with_attribute(Realm::new(REALM).unwrap())
        .with_attribute(Software::new("stun-rs differential").unwrap())
        .with_attribute(MessageIntegrity::new(stun_key()))
        .with_attribute(Fingerprint::default())
        .build();
    let buf = stun_encode(&msg);

    let m = Message::parse(&buf).unwrap();
    assert_eq!(m.method(), Method::BINDING);
    assert_eq!(m.class(), Class::Request);
    assert_eq!(m.transaction_id(), TransactionId(tid));
    let text = |t| attr::decode_str(m.get(t).unwrap().value, t).unwrap();
    assert_eq!(text(attr::USERNAME), USERNAME);
    assert_eq!(text(attr::NONCE), "f//499k954d6OL34oL9FSTvy64sA");
    assert_eq!(text(attr::REALM), REALM);
    assert_eq!(text(attr::SOFTWARE), "stun-rs differential");
    assert_eq!(m.check_integrity(&tern_key()), Integrity::Valid);
    assert_eq!(m.check_fingerprint(), Some(true));

    // Byte for byte what tern writes for the same message.
    let mut ours = Vec::new();
    let mut w = MessageWriter::new(
        &mut ours,
        MessageType::new(Method::BINDING, Class::Request),
        TransactionId(tid),
    );
    w.attr(attr::USERNAME, USERNAME.as_bytes())
        .attr(attr::NONCE, b"f//499k954d6OL34oL9FSTvy64sA")
        .attr(attr::REALM, REALM.as_bytes())
        .attr(attr::SOFTWARE, b"stun-rs differential")
        .message_integrity(&tern_key())
        .fingerprint();
    w.finish();
    assert_eq!(hex::encode(&ours), hex::encode(&buf));
}
