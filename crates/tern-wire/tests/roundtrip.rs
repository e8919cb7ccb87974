//! Property tests: what `MessageWriter` writes, `Message::parse` reads back unchanged; the
//! integrity and fingerprint checks catch every single-byte change; and no input, however
//! malformed, makes the parser, the decoders or the checks panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;
use tern_wire::{
    attr, classify, ChannelData, ChannelNumber, Class, Integrity, Message, MessageType,
    MessageWriter, Method, PacketKind, TransactionId, WireError, CHANNEL_DATA_HEADER_LEN,
    HEADER_LEN,
};

/// One attribute as the test wants it written.
#[derive(Debug, Clone)]
enum Attr {
    Raw(u16, Vec<u8>),
    XorAddress(u16, SocketAddr),
    Address(u16, SocketAddr),
    U32(u16, u32),
    ErrorCode(u16, String),
    AddressErrorCode(u8, u16, String),
    AddressFamily(u16, u8),
    Unknown(Vec<u16>),
}

impl Attr {
    fn typ(&self) -> u16 {
        match self {
            Attr::Raw(t, _) | Attr::XorAddress(t, _) | Attr::Address(t, _) | Attr::U32(t, _) => *t,
            Attr::ErrorCode(..) => attr::ERROR_CODE,
            Attr::AddressErrorCode(..) => attr::ADDRESS_ERROR_CODE,
            Attr::AddressFamily(t, _) => *t,
            Attr::Unknown(_) => attr::UNKNOWN_ATTRIBUTES,
        }
    }

    fn write(&self, w: &mut MessageWriter<'_>) {
        match self {
            Attr::Raw(t, v) => w.attr(*t, v),
            Attr::XorAddress(t, a) => w.xor_address(*t, *a),
            Attr::Address(t, a) => w.address(*t, *a),
            Attr::U32(t, v) => w.u32(*t, *v),
            Attr::ErrorCode(code, reason) => w.error_code(*code, reason),
            Attr::AddressErrorCode(family, code, reason) => {
                w.address_error_code(*family, *code, reason)
            }
            Attr::AddressFamily(t, f) => w.attr(*t, &attr::encode_address_family(*f)),
            Attr::Unknown(types) => w.unknown_attributes(types),
        };
    }

    /// Asserts that `value`, read back for attribute type `typ`, is what was written.
    fn check(&self, typ: u16, value: &[u8], tid: &TransactionId) -> Result<(), TestCaseError> {
        prop_assert_eq!(typ, self.typ());
        match self {
            Attr::Raw(_, v) => prop_assert_eq!(value, &v[..]),
            Attr::XorAddress(t, a) => {
                prop_assert_eq!(attr::decode_xor_address(value, *t, tid).unwrap(), *a);
            }
            Attr::Address(t, a) => prop_assert_eq!(attr::decode_address(value, *t).unwrap(), *a),
            Attr::U32(t, v) => prop_assert_eq!(attr::decode_u32(value, *t).unwrap(), *v),
            Attr::ErrorCode(code, reason) => {
                prop_assert_eq!(
                    attr::decode_error_code(value).unwrap(),
                    (*code, reason.as_str())
                );
            }
            Attr::AddressErrorCode(family, code, reason) => {
                prop_assert_eq!(
                    attr::decode_address_error_code(value).unwrap(),
                    (*family, *code, reason.as_str())
                );
            }
            Attr::AddressFamily(t, f) => {
                prop_assert_eq!(attr::decode_address_family(value, *t).unwrap(), *f);
            }
            Attr::Unknown(types) => {
                prop_assert_eq!(
                    attr::decode_unknown_attributes(value).collect::<Vec<_>>(),
                    types.clone()
                );
            }
        }
        Ok(())
    }
}

fn is_special(t: u16) -> bool {
    matches!(
        t,
        attr::MESSAGE_INTEGRITY | attr::MESSAGE_INTEGRITY_SHA256 | attr::FINGERPRINT
    )
}

fn plain_type() -> impl Strategy<Value = u16> {
    any::<u16>().prop_filter(
        "integrity and fingerprint are written by their own methods",
        |t| !is_special(*t),
    )
}

fn socket_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<u32>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)),
        (any::<u128>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)),
    ]
}

fn attribute() -> impl Strategy<Value = Attr> {
    prop_oneof![
        (plain_type(), prop::collection::vec(any::<u8>(), 0..48))
            .prop_map(|(t, v)| Attr::Raw(t, v)),
        (plain_type(), socket_addr()).prop_map(|(t, a)| Attr::XorAddress(t, a)),
        (plain_type(), socket_addr()).prop_map(|(t, a)| Attr::Address(t, a)),
        (plain_type(), any::<u32>()).prop_map(|(t, v)| Attr::U32(t, v)),
        (300u16..=699, "\\PC{0,40}").prop_map(|(c, r)| Attr::ErrorCode(c, r)),
        (any::<u8>(), 300u16..=699, "\\PC{0,40}")
            .prop_map(|(f, c, r)| Attr::AddressErrorCode(f, c, r)),
        (
            prop_oneof![
                Just(attr::REQUESTED_ADDRESS_FAMILY),
                Just(attr::ADDITIONAL_ADDRESS_FAMILY)
            ],
            any::<u8>()
        )
            .prop_map(|(t, f)| Attr::AddressFamily(t, f)),
        prop::collection::vec(any::<u16>(), 0..20).prop_map(Attr::Unknown),
    ]
}

fn class() -> impl Strategy<Value = Class> {
    prop_oneof![
        Just(Class::Request),
        Just(Class::Indication),
        Just(Class::Success),
        Just(Class::Error)
    ]
}

fn message_type() -> impl Strategy<Value = MessageType> {
    (0u16..=0x0FFF, class()).prop_map(|(m, c)| MessageType::new(Method(m), c))
}

fn tid() -> impl Strategy<Value = TransactionId> {
    any::<[u8; 12]>().prop_map(TransactionId)
}

/// Writes a message; returns the offset of MESSAGE-INTEGRITY if one was written.
fn write(
    buf: &mut Vec<u8>,
    typ: MessageType,
    tid: TransactionId,
    attrs: &[Attr],
    key: Option<&[u8]>,
    fingerprint: bool,
) -> Option<usize> {
    let mut w = MessageWriter::new(buf, typ, tid);
    for a in attrs {
        a.write(&mut w);
    }
    let mut mi = None;
    if let Some(key) = key {
        mi = Some(HEADER_LEN + attrs_len(attrs));
        w.message_integrity(key);
    }
    if fingerprint {
        w.fingerprint();
    }
    w.finish();
    mi
}

fn attrs_len(attrs: &[Attr]) -> usize {
    let mut buf = Vec::new();
    write(
        &mut buf,
        MessageType::new(Method::BINDING, Class::Request),
        TransactionId::default(),
        attrs,
        None,
        false,
    );
    buf.len() - HEADER_LEN
}

/// Byte positions whose change alters the message's framing rather than its content: the top
/// bits of byte 0, the length field, the magic cookie, and each attribute's type and length.
fn structural_positions(buf: &[u8]) -> Vec<usize> {
    let mut out = vec![2, 3, 4, 5, 6, 7];
    let mut off = HEADER_LEN;
    while off < buf.len() {
        out.extend(off..off + 4);
        let len = usize::from(u16::from_be_bytes([buf[off + 2], buf[off + 3]]));
        off += 4 + ((len + 3) & !3);
    }
    out
}

/// Every decoder and check run over a parsed message; none may panic.
fn exercise(msg: &Message<'_>, key: &[u8]) {
    let tid = msg.transaction_id();
    let len = msg.as_bytes().len();
    for a in msg.attributes() {
        assert!(a.offset >= HEADER_LEN && a.offset + 4 + a.value.len() <= len);
        assert_eq!(
            &msg.as_bytes()[a.offset + 4..a.offset + 4 + a.value.len()],
            a.value
        );
        decode_everything(a.value, a.typ, &tid);
        assert_eq!(msg.get(a.typ).map(|first| first.typ), Some(a.typ));
    }
    for t in [
        attr::MESSAGE_INTEGRITY,
        attr::MESSAGE_INTEGRITY_SHA256,
        attr::FINGERPRINT,
    ] {
        if let Some(a) = msg.get(t) {
            assert_eq!(a.typ, t);
            assert!(a.offset + 4 + a.value.len() <= len);
        }
    }
    let _ = msg.check_integrity(key);
    let _ = msg.check_fingerprint();
}

fn decode_everything(value: &[u8], typ: u16, tid: &TransactionId) {
    let _ = attr::decode_address(value, typ);
    let _ = attr::decode_xor_address(value, typ, tid);
    let _ = attr::decode_u32(value, typ);
    let _ = attr::decode_str(value, typ);
    let _ = attr::decode_channel_number(value);
    let _ = attr::decode_requested_transport(value);
    let _ = attr::decode_address_family(value, typ);
    let _ = attr::decode_error_code(value);
    let _ = attr::decode_address_error_code(value);
    let _ = attr::decode_unknown_attributes(value).count();
}

/// A STUN-looking datagram: a valid header around TLVs of random (often special) types and
/// lengths, so the fuzzing reaches the attribute loop rather than dying on the cookie.
fn stun_shaped() -> impl Strategy<Value = Vec<u8>> {
    let tlv_type = prop_oneof![
        3 => Just(attr::MESSAGE_INTEGRITY),
        2 => Just(attr::MESSAGE_INTEGRITY_SHA256),
        3 => Just(attr::FINGERPRINT),
        2 => Just(attr::XOR_MAPPED_ADDRESS),
        2 => Just(attr::ERROR_CODE),
        4 => any::<u16>(),
    ];
    let tlv_len = prop_oneof![
        Just(4u16),
        Just(20),
        Just(32),
        Just(16),
        0u16..40,
        any::<u16>()
    ];
    let tlv = (tlv_type, tlv_len, prop::collection::vec(any::<u8>(), 0..40));
    (
        any::<u16>(),
        tid(),
        prop::collection::vec(tlv, 0..6),
        0usize..4,
        any::<bool>(),
    )
        .prop_map(|(typ, tid, tlvs, trim, keep_len)| {
            let mut body = Vec::new();
            for (t, l, v) in tlvs {
                body.extend_from_slice(&t.to_be_bytes());
                body.extend_from_slice(&l.to_be_bytes());
                body.extend_from_slice(&v);
            }
            body.truncate(body.len().saturating_sub(trim));
            let mut buf = Vec::new();
            buf.extend_from_slice(&(typ & 0x3FFF).to_be_bytes());
            let len = if keep_len {
                body.len()
            } else {
                (body.len() + 3) & !3
            };
            buf.extend_from_slice(&(len as u16).to_be_bytes());
            buf.extend_from_slice(&0x2112_A442u32.to_be_bytes());
            buf.extend_from_slice(&tid.0);
            body.resize(len, 0);
            buf.extend_from_slice(&body);
            buf
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn written_messages_parse_back_unchanged(
        typ in message_type(),
        tid in tid(),
        attrs in prop::collection::vec(attribute(), 0..8),
        key in prop::option::of(prop::collection::vec(any::<u8>(), 0..64)),
        fingerprint in any::<bool>(),
    ) {
        let mut buf = Vec::new();
        let mi = write(&mut buf, typ, tid, &attrs, key.as_deref(), fingerprint);
        prop_assert_eq!(buf.len() % 4, 0);
        prop_assert_eq!(usize::from(u16::from_be_bytes([buf[2], buf[3]])), buf.len() - HEADER_LEN);
        prop_assert_eq!(classify(&buf), PacketKind::Stun);

        let msg = Message::parse(&buf).unwrap();
        prop_assert_eq!(msg.message_type(), typ);
        prop_assert_eq!(msg.method(), typ.method);
        prop_assert_eq!(msg.class(), typ.class);
        prop_assert_eq!(msg.transaction_id(), tid);
        let read: Vec<_> = msg.attributes().collect();
        prop_assert_eq!(read.len(), attrs.len());
        for (a, r) in attrs.iter().zip(&read) {
            a.check(r.typ, r.value, &tid)?;
            // Padding is zero.
            let end = r.offset + 4 + r.value.len();
            prop_assert!(buf[end..(end + 3) & !3].iter().all(|b| *b == 0));
        }
        // `get` finds the first attribute of each type.
        for a in &attrs {
            let first = attrs.iter().position(|b| b.typ() == a.typ()).unwrap();
            prop_assert_eq!(msg.get(a.typ()).unwrap().offset, read[first].offset);
        }
        prop_assert_eq!(msg.integrity_offset(), mi);
        match &key {
            Some(key) => prop_assert_eq!(msg.check_integrity(key), Integrity::Valid),
            None => prop_assert_eq!(msg.check_integrity(b"any"), Integrity::Absent),
        }
        prop_assert_eq!(msg.check_fingerprint(), fingerprint.then_some(true));
    }

    #[test]
    fn integrity_rejects_the_wrong_key_and_any_changed_byte(
        typ in message_type(),
        tid in tid(),
        attrs in prop::collection::vec(attribute(), 0..5),
        key in prop::collection::vec(any::<u8>(), 0..64),
        fingerprint in any::<bool>(),
        delta in 1u8..=255,
    ) {
        let mut buf = Vec::new();
        let mi = write(&mut buf, typ, tid, &attrs, Some(&key), fingerprint).unwrap();
        let msg = Message::parse(&buf).unwrap();
        prop_assert_eq!(msg.check_integrity(&key), Integrity::Valid);
        // Another key. (Changing the first byte always changes the HMAC key block; appending
        // zeros would not, as HMAC pads short keys with zeros.)
        let mut wrong = key.clone();
        match wrong.first_mut() {
            Some(b) => *b ^= delta,
            None => wrong.push(delta),
        }
        prop_assert_eq!(msg.check_integrity(&wrong), Integrity::Invalid);

        let structural = structural_positions(&buf);
        // Every byte before the MAC, and the MAC itself.
        for i in 0..mi + 24 {
            let mut bad = buf.clone();
            bad[i] ^= delta;
            // Framing bytes may make the message unparseable; content bytes (and the MAC) never.
            let framing = structural.contains(&i) || (i == 0 && delta & 0xC0 != 0);
            match Message::parse(&bad) {
                Ok(m) => prop_assert_ne!(m.check_integrity(&key), Integrity::Valid, "flip at {}", i),
                Err(_) => prop_assert!(framing, "a content byte flip at {} must still parse", i),
            }
            if !framing {
                let m = Message::parse(&bad).unwrap();
                prop_assert_eq!(m.integrity_offset(), Some(mi));
                prop_assert_eq!(m.check_integrity(&key), Integrity::Invalid, "flip at {}", i);
            }
        }
    }

    #[test]
    fn fingerprint_catches_any_changed_byte(
        typ in message_type(),
        tid in tid(),
        attrs in prop::collection::vec(attribute(), 0..5),
        key in prop::option::of(prop::collection::vec(any::<u8>(), 0..32)),
        delta in 1u8..=255,
    ) {
        let mut buf = Vec::new();
        write(&mut buf, typ, tid, &attrs, key.as_deref(), true);
        prop_assert_eq!(Message::parse(&buf).unwrap().check_fingerprint(), Some(true));
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= delta;
            if let Ok(m) = Message::parse(&bad) {
                prop_assert_ne!(m.check_fingerprint(), Some(true), "flip at {} of {}", i, buf.len());
            }
        }
        // A flip inside the CRC value itself leaves the framing alone: exactly `Some(false)`.
        let mut bad = buf.clone();
        let last = bad.len() - 1;
        bad[last] ^= delta;
        prop_assert_eq!(Message::parse(&bad).unwrap().check_fingerprint(), Some(false));
    }

    #[test]
    fn truncated_or_extended_messages_are_rejected(
        typ in message_type(),
        tid in tid(),
        attrs in prop::collection::vec(attribute(), 0..5),
        cut in 1usize..64,
        extra in prop::collection::vec(any::<u8>(), 1..8),
    ) {
        let mut buf = Vec::new();
        write(&mut buf, typ, tid, &attrs, None, true);
        let cut = cut.min(buf.len());
        prop_assert!(Message::parse(&buf[..buf.len() - cut]).is_err());
        let mut longer = buf.clone();
        longer.extend_from_slice(&extra);
        prop_assert!(
            matches!(Message::parse(&longer), Err(WireError::LengthMismatch { .. })),
            "the header's length must match the datagram"
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        buf in prop::collection::vec(any::<u8>(), 0..200),
        key in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        if let Ok(msg) = Message::parse(&buf) {
            exercise(&msg, &key);
        }
        let _ = ChannelData::parse(&buf);
        let _ = classify(&buf);
        let t = u16::from_be_bytes([buf.first().copied().unwrap_or(0), buf.get(1).copied().unwrap_or(0)]);
        decode_everything(&buf, t, &TransactionId([0x5a; 12]));
    }

    #[test]
    fn stun_shaped_bytes_never_panic(buf in stun_shaped(), key in prop::collection::vec(any::<u8>(), 0..40)) {
        if let Ok(msg) = Message::parse(&buf) {
            prop_assert_eq!(msg.as_bytes().len(), buf.len());
            exercise(&msg, &key);
        }
    }

    #[test]
    fn mutated_messages_never_panic(
        typ in message_type(),
        tid in tid(),
        attrs in prop::collection::vec(attribute(), 0..5),
        key in prop::collection::vec(any::<u8>(), 0..32),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut buf = Vec::new();
        write(&mut buf, typ, tid, &attrs, Some(&key), true);
        for (at, byte) in edits {
            let i = at.index(buf.len());
            buf[i] = byte;
        }
        if let Ok(msg) = Message::parse(&buf) {
            exercise(&msg, &key);
        }
    }

    #[test]
    fn channel_data_round_trips(
        number in ChannelNumber::MIN..=ChannelNumber::MAX,
        payload in prop::collection::vec(any::<u8>(), 0..300),
        trailing in prop::collection::vec(any::<u8>(), 0..4),
    ) {
        let channel = ChannelNumber::new(number).unwrap();
        prop_assert_eq!(channel.get(), number);
        let mut header = [0u8; CHANNEL_DATA_HEADER_LEN];
        ChannelData::write_header(channel, payload.len() as u16, &mut header);
        let mut datagram = header.to_vec();
        datagram.extend_from_slice(&payload);
        prop_assert_eq!(classify(&datagram), PacketKind::ChannelData);
        let parsed = ChannelData::parse(&datagram).unwrap();
        prop_assert_eq!(parsed.channel, channel);
        prop_assert_eq!(parsed.payload, &payload[..]);
        // Padding (or anything else) after the claimed length is ignored.
        datagram.extend_from_slice(&trailing);
        let parsed = ChannelData::parse(&datagram).unwrap();
        prop_assert_eq!(parsed.payload, &payload[..]);
        // A length one past what the datagram holds is an overrun.
        let available = datagram.len() - CHANNEL_DATA_HEADER_LEN;
        let claimed = available + 1;
        datagram[2..4].copy_from_slice(&(claimed as u16).to_be_bytes());
        prop_assert_eq!(
            ChannelData::parse(&datagram),
            Err(WireError::ChannelDataOverrun { length: claimed, available })
        );
    }

    #[test]
    fn channel_numbers_outside_the_range_are_rejected(
        number in any::<u16>().prop_filter("outside 0x4000..=0x4FFF", |n| !(0x4000..=0x4FFF).contains(n)),
        payload in prop::collection::vec(any::<u8>(), 0..16),
    ) {
        prop_assert_eq!(ChannelNumber::new(number), Err(WireError::BadChannelNumber { number }));
        let mut datagram = number.to_be_bytes().to_vec();
        datagram.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        datagram.extend_from_slice(&payload);
        prop_assert_eq!(ChannelData::parse(&datagram), Err(WireError::BadChannelNumber { number }));
    }

    #[test]
    fn short_channel_data_is_rejected(buf in prop::collection::vec(any::<u8>(), 0..CHANNEL_DATA_HEADER_LEN)) {
        prop_assert_eq!(
            ChannelData::parse(&buf),
            Err(WireError::TooShort { needed: CHANNEL_DATA_HEADER_LEN, got: buf.len() })
        );
    }
}

#[test]
fn channel_number_bounds() {
    assert!(ChannelNumber::new(0x3FFF).is_err());
    assert_eq!(ChannelNumber::new(0x4000).unwrap().get(), 0x4000);
    assert_eq!(ChannelNumber::new(0x4FFF).unwrap().get(), 0x4FFF);
    assert!(ChannelNumber::new(0x5000).is_err());
    // 0x5000..=0x7FFF still classify as ChannelData on the wire, yet are not valid channels.
    assert_eq!(classify(&[0x7F, 0xFF, 0, 0]), PacketKind::ChannelData);
    assert_eq!(
        ChannelData::parse(&[0x7F, 0xFF, 0, 0]),
        Err(WireError::BadChannelNumber { number: 0x7FFF })
    );
}

#[test]
fn attributes_after_message_integrity_are_ignored() {
    // RFC 8489 §14.5: only MESSAGE-INTEGRITY-SHA256 and FINGERPRINT count after MESSAGE-INTEGRITY.
    let key = b"key";
    let tid = TransactionId([1; 12]);
    let mut buf = Vec::new();
    let mut w = MessageWriter::new(
        &mut buf,
        MessageType::new(Method::BINDING, Class::Request),
        tid,
    );
    w.attr(attr::USERNAME, b"alice")
        .message_integrity(key)
        .attr(attr::SOFTWARE, b"ignored")
        .fingerprint();
    w.finish();
    let msg = Message::parse(&buf).unwrap();
    assert_eq!(
        msg.attributes().map(|a| a.typ).collect::<Vec<_>>(),
        [attr::USERNAME]
    );
    assert!(msg.get(attr::SOFTWARE).is_none());
    assert_eq!(msg.check_integrity(key), Integrity::Valid);
    assert_eq!(msg.check_fingerprint(), Some(true));
}

#[test]
fn message_integrity_sha256_round_trips() {
    let key = b"a long-term key of some sort";
    let mut buf = Vec::new();
    let mut w = MessageWriter::new(
        &mut buf,
        MessageType::new(Method::ALLOCATE, Class::Request),
        TransactionId([9; 12]),
    );
    w.u32(attr::LIFETIME, 600)
        .message_integrity_sha256(key)
        .fingerprint();
    w.finish();
    let msg = Message::parse(&buf).unwrap();
    assert_eq!(msg.integrity_offset(), None);
    assert!(msg.integrity_sha256_offset().is_some());
    assert_eq!(msg.check_integrity(key), Integrity::Valid);
    assert_eq!(msg.check_integrity(b"another key"), Integrity::Invalid);
    assert_eq!(msg.check_fingerprint(), Some(true));
    let mut bad = buf.clone();
    bad[HEADER_LEN + 7] ^= 1; // the LIFETIME value
    assert_eq!(
        Message::parse(&bad).unwrap().check_integrity(key),
        Integrity::Invalid
    );
}

/// The RFC 8656 §18.11 and §18.12 layouts, byte for byte, and the IPv6 XOR address of
/// §18.5 (the address XORed with the magic cookie and the transaction id).
#[test]
fn dual_allocation_attributes_have_their_rfc_layout() {
    let tid = TransactionId([0xA0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0xBB]);
    let mut buf = Vec::new();
    let mut w = MessageWriter::new(
        &mut buf,
        MessageType::new(Method::ALLOCATE, Class::Success),
        tid,
    );
    w.attr(
        attr::ADDITIONAL_ADDRESS_FAMILY,
        &attr::encode_address_family(attr::FAMILY_IPV6),
    );
    w.address_error_code(attr::FAMILY_IPV6, 440, "Address Family not Supported");
    let v6: SocketAddr = "[2001:db8::1]:49152".parse().unwrap();
    w.xor_address(attr::XOR_RELAYED_ADDRESS, v6);
    let len = w.finish();
    let body = &buf[HEADER_LEN..len];
    // ADDITIONAL-ADDRESS-FAMILY: type 0x8000, length 4, family 0x02 and three RFFU bytes.
    assert_eq!(&body[..8], &[0x80, 0x00, 0, 4, 0x02, 0, 0, 0]);
    // ADDRESS-ERROR-CODE: type 0x8001, length 4 + 28, family, reserved, class 4, number 40.
    assert_eq!(&body[8..16], &[0x80, 0x01, 0, 32, 0x02, 0, 4, 40]);
    assert_eq!(&body[16..44], b"Address Family not Supported");
    // XOR-RELAYED-ADDRESS of an IPv6 address: family 2, the port XOR 0x2112, the address
    // XOR the cookie and the transaction id.
    let x = &body[44..];
    assert_eq!(&x[..4], &[0x00, 0x16, 0, 20]);
    let port = (49152u16 ^ 0x2112).to_be_bytes();
    assert_eq!(&x[4..8], &[0, 0x02, port[0], port[1]]);
    let octets = match v6.ip() {
        IpAddr::V6(a) => a.octets(),
        IpAddr::V4(_) => unreachable!(),
    };
    let pad = 0x2112_A442u32.to_be_bytes().into_iter().chain(tid.0);
    let want: Vec<u8> = octets.iter().zip(pad).map(|(a, b)| a ^ b).collect();
    assert_eq!(&x[8..24], &want[..]);

    let msg = Message::parse(&buf[..len]).unwrap();
    let aaf = msg.get(attr::ADDITIONAL_ADDRESS_FAMILY).unwrap();
    assert_eq!(
        attr::decode_address_family(aaf.value, aaf.typ),
        Ok(attr::FAMILY_IPV6)
    );
    let aec = msg.get(attr::ADDRESS_ERROR_CODE).unwrap();
    assert_eq!(
        attr::decode_address_error_code(aec.value),
        Ok((attr::FAMILY_IPV6, 440, "Address Family not Supported"))
    );
    let relayed = msg.get(attr::XOR_RELAYED_ADDRESS).unwrap();
    assert_eq!(
        attr::decode_xor_address(relayed.value, relayed.typ, &tid),
        Ok(v6)
    );
}

#[test]
fn malformed_dual_allocation_attributes_are_errors() {
    assert_eq!(
        attr::decode_address_family(&[2, 0, 0], attr::ADDITIONAL_ADDRESS_FAMILY),
        Err(WireError::BadAttributeLength {
            attr_type: attr::ADDITIONAL_ADDRESS_FAMILY,
            len: 3
        })
    );
    assert_eq!(
        attr::decode_address_error_code(&[2, 0, 4]),
        Err(WireError::BadAttributeLength {
            attr_type: attr::ADDRESS_ERROR_CODE,
            len: 3
        })
    );
    assert_eq!(
        attr::decode_address_error_code(&[2, 0, 7, 0]),
        Err(WireError::BadErrorCode)
    );
    assert_eq!(
        attr::decode_address_error_code(&[2, 0, 5, 100]),
        Err(WireError::BadErrorCode)
    );
    assert_eq!(
        attr::decode_address_error_code(&[2, 0, 5, 8, 0xff]),
        Err(WireError::NotUtf8 {
            attr_type: attr::ADDRESS_ERROR_CODE
        })
    );
}
