//! Targets for the codec (tern-wire): the STUN message decoder, the attribute decoders,
//! ChannelData, and the encoders read back by the decoders.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tern_wire::stream::{self, Decoded, FrameKind, Framing};
use tern_wire::{
    attr, classify, frame_data_indication, ChannelData, ChannelNumber, Class, Integrity, Message,
    MessageType, MessageWriter, Method, PacketKind, TransactionId, CHANNEL_DATA_HEADER_LEN,
    DATA_INDICATION_HEADROOM, DATA_INDICATION_MAX_PAYLOAD, DATA_INDICATION_TAILROOM, HEADER_LEN,
};

use crate::input::Reader;

/// The key the rebuilt messages are signed with.
const KEY: &[u8] = b"fuzz-key";

/// The longest STUN message: the 16-bit length field counts the attributes.
const MAX_MESSAGE: usize = HEADER_LEN + u16::MAX as usize;

/// The three attributes whose place in a message is fixed by RFC 8489 §14.5–14.7.
fn is_trailer(typ: u16) -> bool {
    matches!(
        typ,
        attr::MESSAGE_INTEGRITY | attr::MESSAGE_INTEGRITY_SHA256 | attr::FINGERPRINT
    )
}

/// A datagram as a STUN message: parsed, every attribute decoded every way, the integrity
/// and fingerprint checked, and the message rebuilt with [`MessageWriter`] and parsed again.
pub fn stun_message(data: &[u8]) {
    let Ok(msg) = Message::parse(data) else {
        return;
    };
    assert_eq!(classify(data), PacketKind::Stun);
    assert!(data.len() >= HEADER_LEN && data.len().is_multiple_of(4));
    let typ = u16::from_be_bytes([data[0], data[1]]);
    assert_eq!(msg.message_type().to_u16(), typ, "the type round-trips");
    let tid = msg.transaction_id();
    assert_eq!(tid.0, data[8..20]);

    let mut listed = Vec::new();
    for a in msg.attributes() {
        assert!(a.offset >= HEADER_LEN && a.offset % 4 == 0, "{a:?}");
        let end = a.offset + 4 + a.value.len();
        assert!(end <= data.len(), "{a:?}");
        assert_eq!(
            u16::from_be_bytes([data[a.offset], data[a.offset + 1]]),
            a.typ
        );
        assert_eq!(&data[a.offset + 4..end], a.value);
        assert!(
            !is_trailer(a.typ),
            "integrity and fingerprint are not among the attributes that count: {a:?}"
        );
        decode_all(a.typ, a.value, &tid);
        listed.push((a.typ, a.value));
    }
    for (i, &(typ, _)) in listed.iter().enumerate() {
        let first = listed.iter().position(|a| a.0 == typ).expect("itself");
        if first == i {
            let got = msg.get(typ).expect("a listed attribute is found");
            assert_eq!(got.value, listed[i].1, "get finds the first of its type");
        }
    }
    let integrity = msg.integrity_offset();
    let sha256 = msg.integrity_sha256_offset();
    if let Some(at) = integrity {
        assert_eq!(
            msg.get(attr::MESSAGE_INTEGRITY).map(|a| a.value.len()),
            Some(20)
        );
        assert_eq!(msg.get(attr::MESSAGE_INTEGRITY).map(|a| a.offset), Some(at));
    }
    if let Some(at) = sha256 {
        let a = msg
            .get(attr::MESSAGE_INTEGRITY_SHA256)
            .expect("found at its offset");
        assert_eq!(a.offset, at);
        assert!((16..=32).contains(&a.value.len()) && a.value.len() % 4 == 0);
    }
    let fingerprint = msg.check_fingerprint();
    let checked = msg.check_integrity(KEY);
    assert_eq!(
        checked == Integrity::Absent,
        integrity.is_none() && sha256.is_none()
    );

    // Rebuilt from the attributes that count, with fresh integrity and fingerprint.
    let mut buf = Vec::new();
    let mut w = MessageWriter::new(&mut buf, msg.message_type(), tid);
    for &(typ, value) in &listed {
        w.attr(typ, value);
    }
    if integrity.is_some() {
        w.message_integrity(KEY);
    }
    if sha256.is_some() {
        w.message_integrity_sha256(KEY);
    }
    if fingerprint.is_some() {
        w.fingerprint();
    }
    let len = w.finish();
    if len > MAX_MESSAGE {
        // A short MESSAGE-INTEGRITY-SHA256 rewritten at full length can push a message
        // of the largest size past what the length field holds; the writer is not asked to
        // write that.
        return;
    }
    let back = Message::parse(&buf).expect("a rebuilt message parses");
    let again: Vec<_> = back.attributes().map(|a| (a.typ, a.value)).collect();
    assert_eq!(again, listed, "the rebuilt message has the same attributes");
    assert_eq!(back.message_type(), msg.message_type());
    assert_eq!(back.integrity_offset().is_some(), integrity.is_some());
    assert_eq!(back.integrity_sha256_offset().is_some(), sha256.is_some());
    if integrity.is_some() || sha256.is_some() {
        assert_eq!(back.check_integrity(KEY), Integrity::Valid);
        assert_eq!(back.check_integrity(b"another key"), Integrity::Invalid);
    }
    assert_eq!(back.check_fingerprint(), fingerprint.map(|_| true));
}

/// One attribute value: two bytes of type, twelve of transaction id, then the value. Every
/// decoder reads it, and a message carrying it alone parses back to it.
pub fn attribute(data: &[u8]) {
    let mut r = Reader::new(data);
    let typ = r.u16();
    let tid = TransactionId(r.array());
    let value = &data[data.len().min(14)..];
    decode_all(typ, value, &tid);
    if value.len() > usize::from(u16::MAX) - 4 {
        return;
    }
    let mut buf = Vec::new();
    let mut w = MessageWriter::new(
        &mut buf,
        MessageType::new(Method::BINDING, Class::Request),
        tid,
    );
    w.attr(typ, value);
    w.finish();
    let parsed = Message::parse(&buf);
    if is_trailer(typ) {
        return; // Their lengths are checked by the parser; the decoders above saw the value.
    }
    let msg = parsed.expect("one attribute of any type and length parses");
    let all: Vec<_> = msg.attributes().collect();
    assert_eq!(all.len(), 1);
    assert_eq!((all[0].typ, all[0].value), (typ, value));
}

/// Every decoder on `value`, whatever `typ` says, each checked against what it must mean.
fn decode_all(typ: u16, value: &[u8], tid: &TransactionId) {
    match attr::decode_address(value, typ) {
        Ok(addr) => {
            let mut out = [0u8; 20];
            let n = attr::encode_address(addr, &mut out);
            assert_eq!(n, value.len(), "an address decodes from 8 or 20 bytes");
            assert_eq!(out[1..n], value[1..], "the address re-encodes alike");
            let xored = attr::decode_xor_address(value, typ, tid).expect("same checks");
            assert_eq!(attr::xor_addr(xored, tid), addr, "XOR is its own inverse");
        }
        Err(_) => assert!(attr::decode_xor_address(value, typ, tid).is_err()),
    }
    assert_eq!(attr::decode_u32(value, typ).is_ok(), value.len() == 4);
    assert_eq!(attr::decode_channel_number(value).is_ok(), value.len() == 4);
    assert_eq!(
        attr::decode_requested_transport(value).is_ok(),
        value.len() == 4
    );
    assert_eq!(
        attr::decode_address_family(value, typ).is_ok(),
        value.len() == 4
    );
    assert_eq!(
        attr::decode_str(value, typ).is_ok(),
        std::str::from_utf8(value).is_ok()
    );
    if let Ok((code, reason)) = attr::decode_error_code(value) {
        assert!((300..=699).contains(&code), "{code}");
        assert_eq!(reason.as_bytes(), &value[4..]);
        let mut buf = Vec::new();
        let mut w = MessageWriter::new(
            &mut buf,
            MessageType::new(Method::BINDING, Class::Error),
            *tid,
        );
        w.error_code(code, reason);
        w.finish();
        if buf.len() <= MAX_MESSAGE {
            let msg = Message::parse(&buf).expect("an ERROR-CODE message parses");
            let a = msg.get(attr::ERROR_CODE).expect("ERROR-CODE");
            assert_eq!(attr::decode_error_code(a.value), Ok((code, reason)));
        }
    }
    assert_eq!(
        attr::decode_unknown_attributes(value).count(),
        value.len() / 2
    );
    if let Ok(n) = attr::decode_channel_number(value) {
        assert_eq!(
            ChannelNumber::new(n).is_ok(),
            (0x4000..=0x4FFF).contains(&n)
        );
        assert_eq!(
            ChannelNumber::new_rfc5766(n).is_ok(),
            (0x4000..=0x7FFF).contains(&n)
        );
    }
}

/// A datagram as ChannelData, by both channel number rules, and the message written again
/// for a stream and framed back.
pub fn channel_data(data: &[u8]) {
    let strict = ChannelData::parse(data);
    let loose = ChannelData::parse_rfc5766(data);
    if let Ok(cd) = strict {
        assert_eq!(loose, Ok(cd), "RFC 5766's range includes RFC 8656's");
    }
    let Ok(cd) = loose else {
        return;
    };
    assert_eq!(classify(data), PacketKind::ChannelData);
    let number = u16::from_be_bytes([data[0], data[1]]);
    let len = usize::from(u16::from_be_bytes([data[2], data[3]]));
    assert_eq!(cd.channel.get(), number);
    assert_eq!(
        cd.payload,
        &data[CHANNEL_DATA_HEADER_LEN..CHANNEL_DATA_HEADER_LEN + len]
    );
    assert_eq!(strict.is_ok(), number <= ChannelNumber::MAX);

    let mut header = [0u8; CHANNEL_DATA_HEADER_LEN];
    ChannelData::write_header(cd.channel, len as u16, &mut header);
    assert_eq!(header, data[..CHANNEL_DATA_HEADER_LEN]);

    let mut framed = Vec::new();
    let written = stream::write_channel_data(cd.channel, cd.payload, &mut framed);
    assert_eq!(written, framed.len());
    assert_eq!(written % 4, 0);
    let framing = Framing {
        rfc5766_channels: true,
        ..Framing::default()
    };
    match stream::decode_frame(&framed, framing) {
        Ok(Decoded::Frame(f)) => {
            assert_eq!(f.kind, FrameKind::ChannelData);
            assert_eq!(f.consumed, written);
            assert_eq!(ChannelData::parse_rfc5766(f.message(&framed)), Ok(cd));
        }
        Ok(Decoded::NeedMore { .. }) => panic!("a whole frame was written"),
        Err(e) => {
            // Only a frame beyond the largest accepted may be refused.
            assert_eq!(e, stream::StreamError::OversizedChannelData);
            assert!(written > stream::MAX_FRAME_LEN);
        }
    }
}

/// The encoders: a message of arbitrary attributes with integrity and fingerprint, an
/// ERROR-CODE, and a Data indication framed in place, each read back by the decoders.
pub fn writer(data: &[u8]) {
    let mut r = Reader::new(data);
    let typ = MessageType::from_u16(r.u16());
    let tid = TransactionId(r.array());
    let count = r.u8() % 16;
    let attrs: Vec<(u16, &[u8])> = (0..count).map(|_| (r.u16(), r.bytes())).collect();
    let flags = r.u8();
    let mut buf = Vec::new();
    let mut w = MessageWriter::new(&mut buf, typ, tid);
    for &(t, v) in &attrs {
        w.attr(t, v);
    }
    if flags & 1 != 0 {
        w.message_integrity(KEY);
    }
    if flags & 2 != 0 {
        w.message_integrity_sha256(KEY);
    }
    if flags & 4 != 0 {
        w.fingerprint();
    }
    let len = w.finish();
    let plain = attrs.iter().all(|(t, _)| !is_trailer(*t));
    if plain && len <= MAX_MESSAGE {
        let msg = Message::parse(&buf).expect("what the writer wrote parses");
        let back: Vec<_> = msg.attributes().map(|a| (a.typ, a.value)).collect();
        assert_eq!(back, attrs);
        assert_eq!(msg.message_type(), typ);
        assert_eq!(msg.transaction_id(), tid);
        let signed = flags & 3 != 0;
        assert_eq!(
            msg.check_integrity(KEY),
            if signed {
                Integrity::Valid
            } else {
                Integrity::Absent
            }
        );
        assert_eq!(msg.check_fingerprint(), (flags & 4 != 0).then_some(true));
    }

    // ERROR-CODE: every code the writer is asked for, any reason phrase.
    let code = 300 + r.u16() % 400;
    let reason = String::from_utf8_lossy(r.bytes()).into_owned();
    let mut buf = Vec::new();
    let mut w = MessageWriter::new(&mut buf, MessageType::new(typ.method, Class::Error), tid);
    w.error_code(code, &reason);
    if w.finish() <= MAX_MESSAGE {
        let msg = Message::parse(&buf).expect("an ERROR-CODE message parses");
        let a = msg.get(attr::ERROR_CODE).expect("ERROR-CODE");
        assert_eq!(
            attr::decode_error_code(a.value),
            Ok((code, reason.as_str()))
        );
    }

    // A Data indication framed around a payload in place, as the relay does.
    let peer = socket_addr(&mut r);
    let payload = r.bytes();
    let fingerprint = r.u8() & 1 != 0;
    if payload.len() <= DATA_INDICATION_MAX_PAYLOAD {
        let start = DATA_INDICATION_HEADROOM;
        let mut frame = vec![0xEE; start + payload.len() + DATA_INDICATION_TAILROOM];
        frame[start..start + payload.len()].copy_from_slice(payload);
        let range = frame_data_indication(
            &mut frame,
            start..start + payload.len(),
            peer,
            &tid,
            fingerprint,
        );
        let msg = Message::parse(&frame[range]).expect("a Data indication parses");
        assert_eq!(
            msg.message_type(),
            MessageType::new(Method::DATA, Class::Indication)
        );
        let a = msg.get(attr::XOR_PEER_ADDRESS).expect("XOR-PEER-ADDRESS");
        assert_eq!(attr::decode_xor_address(a.value, a.typ, &tid), Ok(peer));
        assert_eq!(msg.get(attr::DATA).map(|a| a.value), Some(payload));
        assert_eq!(msg.check_fingerprint(), fingerprint.then_some(true));
    }
}

/// A socket address of either family from the input.
pub(crate) fn socket_addr(r: &mut Reader<'_>) -> SocketAddr {
    let v6 = r.u8() & 1 != 0;
    let port = r.u16();
    let ip = if v6 {
        IpAddr::V6(Ipv6Addr::from(r.array::<16>()))
    } else {
        IpAddr::V4(Ipv4Addr::from(r.array::<4>()))
    };
    SocketAddr::new(ip, port)
}
