//! The four test vectors of RFC 5769 ("Test Vectors for STUN"), parsed, checked attribute by
//! attribute, and rebuilt with `MessageWriter`.
//!
//! Known issues with the vectors, and how each is handled here:
//!
//! * Padding. §2.1–§2.3 fill attribute padding with 0x20 (ASCII space) where RFC 8489 §14 says
//!   senders write zeros (receivers must ignore the value); §2.4 pads with zeros. The padding is
//!   covered by MESSAGE-INTEGRITY and FINGERPRINT, so a zero-padding writer cannot reproduce the
//!   space-padded vectors byte for byte. For those three the rebuild test asserts that (a) the only
//!   bytes that differ from the RFC are the padding bytes and the MAC and CRC values, and (b) the
//!   rebuilt message equals the vector with its padding zeroed and its MAC and CRC recomputed by an
//!   independent implementation in this file. §2.4 is reproduced exactly, MAC included.
//! * §2.4's password. The RFC gives it before SASLprep ("The\u{AD}M\u{AA}tr\u{2168}") and after
//!   ("TheMatrIX"); the key is MD5 over the prepared form. RFC 8489 replaced SASLprep with the PRECIS
//!   OpaqueString profile, which does not map U+00AA or U+2168, so a current implementation cannot
//!   derive the prepared form itself: the test takes "TheMatrIX" as given and also asserts that the
//!   unprepared string does not yield a valid MAC. The username "マトリックス" is unchanged by
//!   either profile.
//! * §2.4 has no FINGERPRINT (it is not an ICE message), so `check_fingerprint` must be `None`.
//!
//! The RFC Editor's errata records for RFC 5769 could not be retrieved with the search tools
//! available when this was written; the items above are what the published text itself shows and
//! what independent implementations (pion, libre, webrtc) handle the same way. Re-check the errata
//! page (https://www.rfc-editor.org/errata/rfc5769) if one of these tests ever disagrees.

use std::net::SocketAddr;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;
use tern_wire::{
    attr, Class, Integrity, Message, MessageType, MessageWriter, Method, TransactionId, HEADER_LEN,
};

/// Short-term password of §2.1–§2.3 (the key is the password itself).
const SHORT_TERM_KEY: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";

const TID_1_TO_3: [u8; 12] = [
    0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
];
const TID_4: [u8; 12] = [
    0x78, 0xad, 0x34, 0x33, 0xc6, 0xad, 0x72, 0xc0, 0x29, 0xda, 0x41, 0x2e,
];

/// §2.1 Sample Request.
const SAMPLE_REQUEST: &str = concat!(
    "00010058",
    "2112a442",
    "b7e7a701bc34d686fa87dfae", // header
    "80220010",
    "5354554e207465737420636c69656e74", // SOFTWARE "STUN test client"
    "00240004",
    "6e0001ff", // PRIORITY
    "80290008",
    "932ff9b151263b36", // ICE-CONTROLLED tie breaker
    "00060009",
    "6576746a3a68367659202020", // USERNAME "evtj:h6vY" + 3 bytes of 0x20 padding
    "00080014",
    "9aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2", // MESSAGE-INTEGRITY
    "80280004",
    "e57a3bcf", // FINGERPRINT
);

/// §2.2 Sample IPv4 Response.
const SAMPLE_IPV4_RESPONSE: &str = concat!(
    "0101003c",
    "2112a442",
    "b7e7a701bc34d686fa87dfae",
    "8022000b",
    "7465737420766563746f7220", // SOFTWARE "test vector" + one 0x20 of padding
    "00200008",
    "0001a147e112a643", // XOR-MAPPED-ADDRESS 192.0.2.1:32853
    "00080014",
    "2b91f599fd9e90c38c7489f92af9ba53f06be7d7",
    "80280004",
    "c07d4c96",
);

/// §2.3 Sample IPv6 Response.
const SAMPLE_IPV6_RESPONSE: &str = concat!(
    "01010048",
    "2112a442",
    "b7e7a701bc34d686fa87dfae",
    "8022000b",
    "7465737420766563746f7220",
    "00200014",
    "0002a1470113a9faa5d3f179bc25f4b5bed2b9d9", // [2001:db8:1234:5678:11:2233:4455:6677]:32853
    "00080014",
    "a382954e4be67bf11784c97c8292c275bfe3ed41",
    "80280004",
    "c8fb0b4c",
);

/// §2.4 Sample Request with Long-Term Authentication.
const SAMPLE_LONG_TERM_REQUEST: &str = concat!(
    "00010060",
    "2112a442",
    "78ad3433c6ad72c029da412e",
    "00060012",
    "e3839ee38388e383aae38383e382afe382b90000", // USERNAME, 2 NUL bytes of padding
    "0015001c",
    "662f2f3439396b39353464364f4c33346f4c39465354767936347341", // NONCE "f//499k954d6OL34oL9FSTvy64sA"
    "0014000b",
    "6578616d706c652e6f726700", // REALM "example.org", 1 NUL of padding
    "00080014",
    "f67024656dd64a3e02b8e0712e85c9a28ca89666",
);

const LT_USERNAME: &str = "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}";
const LT_REALM: &str = "example.org";
const LT_NONCE: &str = "f//499k954d6OL34oL9FSTvy64sA";
const LT_PASSWORD_PREPARED: &str = "TheMatrIX";
const LT_PASSWORD_UNPREPARED: &str = "The\u{AD}M\u{AA}tr\u{2168}";

fn bytes(hex_text: &str) -> Vec<u8> {
    hex::decode(hex_text).expect("test vector is valid hex")
}

fn long_term_key(username: &str, realm: &str, password: &str) -> [u8; 16] {
    Md5::digest(format!("{username}:{realm}:{password}").as_bytes()).into()
}

fn types_of(msg: &Message<'_>) -> Vec<u16> {
    msg.attributes().map(|a| a.typ).collect()
}

/// Zeroes every attribute's padding bytes in place.
fn zero_padding(buf: &mut [u8]) {
    let mut off = HEADER_LEN;
    while off < buf.len() {
        let len = usize::from(u16::from_be_bytes([buf[off + 2], buf[off + 3]]));
        let padded = (len + 3) & !3;
        buf[off + 4 + len..off + 4 + padded].fill(0);
        off += 4 + padded;
    }
}

/// Offsets of the padding bytes of every attribute.
fn padding_positions(buf: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut off = HEADER_LEN;
    while off < buf.len() {
        let len = usize::from(u16::from_be_bytes([buf[off + 2], buf[off + 3]]));
        let padded = (len + 3) & !3;
        out.extend(off + 4 + len..off + 4 + padded);
        off += 4 + padded;
    }
    out
}

/// Recomputes MESSAGE-INTEGRITY at `mi` and FINGERPRINT at `fp` (if any) following RFC 8489
/// §14.5 and §14.7 directly; written here independently of tern-wire's `integrity` module.
fn resign(buf: &mut [u8], key: &[u8], mi: usize, fp: Option<usize>) {
    let mut prefix = buf[..mi].to_vec();
    prefix[2..4].copy_from_slice(&((mi + 24 - HEADER_LEN) as u16).to_be_bytes());
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(key).unwrap();
    mac.update(&prefix);
    buf[mi + 4..mi + 24].copy_from_slice(&mac.finalize().into_bytes());
    if let Some(fp) = fp {
        let mut prefix = buf[..fp].to_vec();
        prefix[2..4].copy_from_slice(&((fp + 8 - HEADER_LEN) as u16).to_be_bytes());
        let crc = crc32fast::hash(&prefix) ^ 0x5354_554E;
        buf[fp + 4..fp + 8].copy_from_slice(&crc.to_be_bytes());
    }
}

/// The rebuilt message differs from the RFC's only in padding and in the MAC/CRC values that
/// cover that padding; with the padding zeroed and the MAC/CRC recomputed the two are identical.
fn assert_rebuilt_matches_space_padded_vector(rebuilt: &[u8], vector: &[u8], key: &[u8]) {
    assert_eq!(
        rebuilt.len(),
        vector.len(),
        "same length, including the header's length field"
    );
    let msg = Message::parse(vector).unwrap();
    let mi = msg.integrity_offset().unwrap();
    let fp = msg.get(attr::FINGERPRINT).unwrap().offset;
    let mut allowed: Vec<usize> = padding_positions(vector);
    allowed.extend(mi + 4..mi + 24);
    allowed.extend(fp + 4..fp + 8);
    let differing: Vec<usize> = (0..vector.len())
        .filter(|&i| rebuilt[i] != vector[i])
        .collect();
    assert!(
        !differing.is_empty(),
        "the RFC pads with 0x20, a zero-padding writer cannot match exactly"
    );
    for i in &differing {
        assert!(
            allowed.contains(i),
            "byte {i} differs and is neither padding nor MAC/CRC"
        );
    }
    for i in padding_positions(vector) {
        assert_eq!(vector[i], 0x20, "the RFC's padding at {i}");
        assert_eq!(rebuilt[i], 0x00, "our padding at {i}");
    }

    let mut normalized = vector.to_vec();
    zero_padding(&mut normalized);
    // Zeroing the padding alone breaks the RFC's MAC: the padding is covered by it.
    assert_eq!(
        Message::parse(&normalized).unwrap().check_integrity(key),
        Integrity::Invalid
    );
    resign(&mut normalized, key, mi, Some(fp));
    assert_eq!(hex::encode(rebuilt), hex::encode(&normalized));
}

fn assert_integrity_and_fingerprint(msg: &Message<'_>, key: &[u8]) {
    assert_eq!(msg.check_integrity(key), Integrity::Valid);
    assert_eq!(
        msg.check_integrity(b"VOkJxbRl1RmTxUk/WvJxBT"),
        Integrity::Invalid
    );
    assert_eq!(msg.check_integrity(b""), Integrity::Invalid);
    assert_eq!(msg.check_fingerprint(), Some(true));
}

#[test]
fn sample_request_2_1() {
    let vector = bytes(SAMPLE_REQUEST);
    assert_eq!(vector.len(), 108);
    let msg = Message::parse(&vector).unwrap();
    assert_eq!(msg.method(), Method::BINDING);
    assert_eq!(msg.class(), Class::Request);
    assert_eq!(msg.transaction_id(), TransactionId(TID_1_TO_3));
    assert_eq!(
        types_of(&msg),
        [
            attr::SOFTWARE,
            attr::PRIORITY,
            attr::ICE_CONTROLLED,
            attr::USERNAME
        ]
    );

    let software = msg.get(attr::SOFTWARE).unwrap().value;
    assert_eq!(
        attr::decode_str(software, attr::SOFTWARE).unwrap(),
        "STUN test client"
    );
    let priority = msg.get(attr::PRIORITY).unwrap().value;
    assert_eq!(
        attr::decode_u32(priority, attr::PRIORITY).unwrap(),
        0x6e00_01ff
    );
    let tie_breaker = msg.get(attr::ICE_CONTROLLED).unwrap().value;
    assert_eq!(
        tie_breaker,
        [0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36]
    );
    let username = msg.get(attr::USERNAME).unwrap().value;
    assert_eq!(
        attr::decode_str(username, attr::USERNAME).unwrap(),
        "evtj:h6vY"
    );
    assert_integrity_and_fingerprint(&msg, SHORT_TERM_KEY);

    let mut buf = Vec::new();
    let mut w = MessageWriter::new(
        &mut buf,
        MessageType::new(Method::BINDING, Class::Request),
        TransactionId(TID_1_TO_3),
    );
    w.attr(attr::SOFTWARE, b"STUN test client")
        .u32(attr::PRIORITY, 0x6e00_01ff)
        .attr(attr::ICE_CONTROLLED, tie_breaker)
        .attr(attr::USERNAME, b"evtj:h6vY")
        .message_integrity(SHORT_TERM_KEY)
        .fingerprint();
    let len = w.finish();
    assert_eq!(len, 108);
    assert_rebuilt_matches_space_padded_vector(&buf, &vector, SHORT_TERM_KEY);
}

#[test]
fn sample_ipv4_response_2_2() {
    let vector = bytes(SAMPLE_IPV4_RESPONSE);
    assert_eq!(vector.len(), 80);
    let msg = Message::parse(&vector).unwrap();
    assert_eq!(msg.method(), Method::BINDING);
    assert_eq!(msg.class(), Class::Success);
    let tid = msg.transaction_id();
    assert_eq!(tid, TransactionId(TID_1_TO_3));
    assert_eq!(types_of(&msg), [attr::SOFTWARE, attr::XOR_MAPPED_ADDRESS]);

    let software = msg.get(attr::SOFTWARE).unwrap().value;
    assert_eq!(
        attr::decode_str(software, attr::SOFTWARE).unwrap(),
        "test vector"
    );
    let xma = msg.get(attr::XOR_MAPPED_ADDRESS).unwrap().value;
    let mapped: SocketAddr = "192.0.2.1:32853".parse().unwrap();
    assert_eq!(
        attr::decode_xor_address(xma, attr::XOR_MAPPED_ADDRESS, &tid).unwrap(),
        mapped
    );
    // Read without the XOR, the same bytes are a different address: the XOR is really applied.
    assert_ne!(
        attr::decode_address(xma, attr::XOR_MAPPED_ADDRESS).unwrap(),
        mapped
    );
    assert_integrity_and_fingerprint(&msg, SHORT_TERM_KEY);

    let mut buf = Vec::new();
    let mut w = MessageWriter::new(
        &mut buf,
        MessageType::new(Method::BINDING, Class::Success),
        tid,
    );
    w.attr(attr::SOFTWARE, b"test vector")
        .xor_address(attr::XOR_MAPPED_ADDRESS, mapped)
        .message_integrity(SHORT_TERM_KEY)
        .fingerprint();
    w.finish();
    assert_rebuilt_matches_space_padded_vector(&buf, &vector, SHORT_TERM_KEY);
}

#[test]
fn sample_ipv6_response_2_3() {
    let vector = bytes(SAMPLE_IPV6_RESPONSE);
    assert_eq!(vector.len(), 92);
    let msg = Message::parse(&vector).unwrap();
    assert_eq!(msg.method(), Method::BINDING);
    assert_eq!(msg.class(), Class::Success);
    let tid = msg.transaction_id();
    assert_eq!(tid, TransactionId(TID_1_TO_3));
    assert_eq!(types_of(&msg), [attr::SOFTWARE, attr::XOR_MAPPED_ADDRESS]);

    let software = msg.get(attr::SOFTWARE).unwrap().value;
    assert_eq!(
        attr::decode_str(software, attr::SOFTWARE).unwrap(),
        "test vector"
    );
    let xma = msg.get(attr::XOR_MAPPED_ADDRESS).unwrap().value;
    let mapped: SocketAddr = "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
        .parse()
        .unwrap();
    assert_eq!(
        attr::decode_xor_address(xma, attr::XOR_MAPPED_ADDRESS, &tid).unwrap(),
        mapped
    );
    // The IPv6 XOR uses the transaction id: with another id the address comes out different.
    let other = TransactionId([0; 12]);
    assert_ne!(
        attr::decode_xor_address(xma, attr::XOR_MAPPED_ADDRESS, &other).unwrap(),
        mapped
    );
    assert_integrity_and_fingerprint(&msg, SHORT_TERM_KEY);

    let mut buf = Vec::new();
    let mut w = MessageWriter::new(
        &mut buf,
        MessageType::new(Method::BINDING, Class::Success),
        tid,
    );
    w.attr(attr::SOFTWARE, b"test vector")
        .xor_address(attr::XOR_MAPPED_ADDRESS, mapped)
        .message_integrity(SHORT_TERM_KEY)
        .fingerprint();
    w.finish();
    assert_rebuilt_matches_space_padded_vector(&buf, &vector, SHORT_TERM_KEY);
}

#[test]
fn sample_long_term_request_2_4() {
    let vector = bytes(SAMPLE_LONG_TERM_REQUEST);
    assert_eq!(vector.len(), 116);
    let msg = Message::parse(&vector).unwrap();
    assert_eq!(msg.method(), Method::BINDING);
    assert_eq!(msg.class(), Class::Request);
    assert_eq!(msg.transaction_id(), TransactionId(TID_4));
    assert_eq!(types_of(&msg), [attr::USERNAME, attr::NONCE, attr::REALM]);

    let username = msg.get(attr::USERNAME).unwrap().value;
    assert_eq!(
        attr::decode_str(username, attr::USERNAME).unwrap(),
        LT_USERNAME
    );
    assert_eq!(username.len(), 18);
    let nonce = msg.get(attr::NONCE).unwrap().value;
    assert_eq!(attr::decode_str(nonce, attr::NONCE).unwrap(), LT_NONCE);
    let realm = msg.get(attr::REALM).unwrap().value;
    assert_eq!(attr::decode_str(realm, attr::REALM).unwrap(), LT_REALM);

    let key = long_term_key(LT_USERNAME, LT_REALM, LT_PASSWORD_PREPARED);
    assert_eq!(msg.check_integrity(&key), Integrity::Valid);
    let unprepared = long_term_key(LT_USERNAME, LT_REALM, LT_PASSWORD_UNPREPARED);
    assert_eq!(msg.check_integrity(&unprepared), Integrity::Invalid);
    // The short-term style (password as the key) is wrong for a long-term credential.
    assert_eq!(
        msg.check_integrity(LT_PASSWORD_PREPARED.as_bytes()),
        Integrity::Invalid
    );
    assert_eq!(
        msg.check_integrity(&long_term_key(
            LT_USERNAME,
            "example.com",
            LT_PASSWORD_PREPARED
        )),
        Integrity::Invalid
    );
    assert_eq!(msg.check_fingerprint(), None, "§2.4 carries no FINGERPRINT");

    // Zero padding here, so the rebuild is exact, MAC included.
    let mut buf = Vec::new();
    let mut w = MessageWriter::new(
        &mut buf,
        MessageType::new(Method::BINDING, Class::Request),
        TransactionId(TID_4),
    );
    w.attr(attr::USERNAME, LT_USERNAME.as_bytes())
        .attr(attr::NONCE, LT_NONCE.as_bytes())
        .attr(attr::REALM, LT_REALM.as_bytes())
        .message_integrity(&key);
    w.finish();
    assert_eq!(hex::encode(&buf), hex::encode(&vector));
}

#[test]
fn vectors_with_a_flipped_bit_fail_their_checks() {
    for (vector, key) in [
        (bytes(SAMPLE_REQUEST), SHORT_TERM_KEY.to_vec()),
        (bytes(SAMPLE_IPV4_RESPONSE), SHORT_TERM_KEY.to_vec()),
        (bytes(SAMPLE_IPV6_RESPONSE), SHORT_TERM_KEY.to_vec()),
        (
            bytes(SAMPLE_LONG_TERM_REQUEST),
            long_term_key(LT_USERNAME, LT_REALM, LT_PASSWORD_PREPARED).to_vec(),
        ),
    ] {
        let mi = Message::parse(&vector).unwrap().integrity_offset().unwrap();
        // Flip the lowest bit of the transaction id's last byte: covered by both MAC and CRC.
        let mut bad = vector.clone();
        bad[19] ^= 1;
        let msg = Message::parse(&bad).unwrap();
        assert_eq!(msg.check_integrity(&key), Integrity::Invalid);
        assert_ne!(msg.check_fingerprint(), Some(true));
        // Flip a bit of the MAC itself.
        let mut bad = vector.clone();
        bad[mi + 10] ^= 0x80;
        assert_eq!(
            Message::parse(&bad).unwrap().check_integrity(&key),
            Integrity::Invalid
        );
    }
}
